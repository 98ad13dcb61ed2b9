"""Model registry and the one protocol the runner knows models by.

A model is an `nn.Module` with a config dataclass and the *segment* interface:

    carry = model.initial_carry(batch)            # dict of batch-first tensors (may be empty)
    carry, outputs = model(carry, batch)          # one segment

`outputs` holds `logits` (B, L, V) and optionally `q_halt_logits` (B,) and `q_continue_logits` (B,)
for ACT, plus any diagnostics (`aux_loss`, `residuals`, ...). A single-pass model is the
one-segment case. The trainer runs N segments with the carry detached in between (deep
supervision) and resets rows of the carry with `reset_carry`, so outer-loop refinement works for
any model without the trainer knowing which model it runs.

Adding a model is one file with one decorator:

    @register_model("name", config=MyConfig, description="one line")
    class MyModel(SegmentModel): ...
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn

from tasks.registry import TaskSpec

Batch = dict[str, torch.Tensor]
Carry = dict[str, torch.Tensor]


class SegmentModel(nn.Module):
    """Base class: subclasses set `config` and implement `initial_carry` and `forward`.

    Optional hooks for the measurement layer:
    - `test_time_compute_key`: name of a config field that sets the model's *inner* iterations at
      test time (looped: loops, DEQ: solver iterations). None = the trainer's segments are the knob.
    - `trace_residual(name, new, old)`: recurrent models call it inside their loops; when
      `self.residual_trace` is a dict (the evaluator sets it) the mean relative residual
      ‖new − old‖ / ‖old‖ is appended under `name` (e.g. "z_H", "z_L").
    - `reference_defaults`: {config field: function of HRM's resolved model config} — values a
      baseline takes from HRM for the same task and preset (e.g. depth = HRM's total block count)
      unless a preset or --set gives them; applied by `bench.matching` inside `resolve()`.
    """

    test_time_compute_key: str | None = None
    reference_defaults: dict[str, Callable] = {}

    def __init__(self, config, spec: TaskSpec):
        super().__init__()
        self.config = config
        self.spec = spec
        self.residual_trace: dict[str, list[float]] | None = None

    def trace_residual(self, name: str, new: torch.Tensor, old: torch.Tensor) -> None:
        if self.residual_trace is None:
            return
        with torch.no_grad():
            difference = (new.float() - old.float()).flatten(1).norm(dim=-1)
            scale = old.float().flatten(1).norm(dim=-1).clamp_min(1e-12)
            self.residual_trace.setdefault(name, []).append((difference / scale).mean().item())

    def initial_carry(self, batch: Batch) -> Carry:
        return {}

    @staticmethod
    def zero_state_carry(batch: Batch, prefix_len: int, hidden: int) -> Carry:
        """Outer-loop carry of a single-pass model: its last hidden state `z`, zero at the start and
        added to the next segment's input (with one segment the zeros change nothing)."""
        inputs = batch["inputs"]
        return {"z": torch.zeros(inputs.shape[0], prefix_len + inputs.shape[1], hidden, device=inputs.device)}

    def reset_carry(self, carry: Carry, reset: torch.Tensor, batch: Batch) -> Carry:
        """Rows where `reset` is True start over from `initial_carry`; the rest keep their state."""
        if not carry:
            return carry
        fresh = self.initial_carry(batch)
        out = {}
        for key, value in carry.items():
            mask = reset.view(-1, *([1] * (value.dim() - 1)))
            out[key] = torch.where(mask, fresh[key].to(value.dtype), value)
        return out

    def forward(self, carry: Carry, batch: Batch) -> tuple[Carry, dict[str, torch.Tensor]]:
        raise NotImplementedError

    # --- parameter accounting: puzzle-embedding tables are counted apart from the model ---
    def parameter_counts(self) -> dict[str, int]:
        puzzle, model = 0, 0
        for name, parameter in self.named_parameters():
            if "puzzle_embedding" in name:
                puzzle += parameter.numel()
            else:
                model += parameter.numel()
        return {"params": model, "puzzle_emb_params": puzzle}


@dataclass
class ModelEntry:
    name: str
    cls: type
    config: type
    description: str


_MODELS: dict[str, ModelEntry] = {}


def register_model(name: str, config: type, description: str) -> Callable[[type], type]:
    def decorator(cls: type) -> type:
        if name in _MODELS:
            raise ValueError(f"model {name!r} registered twice")
        _MODELS[name] = ModelEntry(name, cls, config, description)
        cls.registry_name = name
        return cls

    return decorator


def _load_all() -> None:
    import models  # noqa: F401  (importing the package registers every model file)


def model_names() -> list[str]:
    _load_all()
    return sorted(_MODELS)


def get_model_entry(name: str) -> ModelEntry:
    _load_all()
    if name not in _MODELS:
        raise KeyError(f"unknown model {name!r}; choose from: {', '.join(sorted(_MODELS))}")
    return _MODELS[name]


def create_model(name: str, spec: TaskSpec, **config_values) -> SegmentModel:
    entry = get_model_entry(name)
    config = entry.config(**config_values)
    return entry.cls(config, spec)


def config_fields(config_class: type) -> dict[str, dataclasses.Field]:
    return {f.name: f for f in dataclasses.fields(config_class)}
