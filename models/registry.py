"""The model registry: adding a model is one file with one decorator, even from another package.

    @register_model("name", config=MyConfig, description="one line")
    class MyModel(SegmentModel): ...          # models/protocol.py

Built-in models are the modules of this package; a plugin package registers its own through the
entry-point group `recurrent_bench.models` (see tasks/registry.py, which holds the one registry
implementation, and the README).
"""
from __future__ import annotations

import dataclasses
from typing import Callable

from tasks.registry import Entry, Registry

MODELS = Registry("model", package="models", group="recurrent_bench.models", decorator="register_model")


def register_model(name: str, config: type, description: str) -> Callable[[type], type]:
    return MODELS.register(name, config=config, description=description)


def model_names() -> list[str]:
    return MODELS.names()


def get_model_entry(name: str) -> Entry:
    return MODELS.get(name)


def create_model(name: str, spec, **config_values):
    entry = get_model_entry(name)
    return entry.cls(entry.config(**config_values), spec)


def config_fields(config_class: type) -> dict[str, dataclasses.Field]:
    return {f.name: f for f in dataclasses.fields(config_class)}
