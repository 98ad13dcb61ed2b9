"""On-disk cache of generated data, keyed by (task, config, split, generator code): reruns are instant.

The key includes a fingerprint of the source of the task's module and of every module of the same
package it uses (transitively), so any change to a generator regenerates its data instead of
silently serving what the old code made.
"""
from __future__ import annotations

import dataclasses
import functools
import hashlib
import inspect
import json
import logging
import os
import sys
import types
from pathlib import Path
from typing import Callable

import numpy as np

from tasks.files import DataError, make_writable_folder

# What the suite is doing before its progress bar; the CLI shows INFO on stderr (bench/cli.py).
log = logging.getLogger("recurrent_bench")


def cache_dir() -> Path:
    return Path(os.environ.get("RECURRENT_BENCH_CACHE", Path.home() / ".cache" / "recurrent-bench"))


@functools.lru_cache(maxsize=None)
def code_fingerprint(module_name: str) -> str:
    """Hash of the module's source and of the same-package modules it references, transitively."""
    package = module_name.split(".", 1)[0]
    seen: set[str] = set()
    pending = [module_name]
    while pending:
        name = pending.pop()
        if name in seen or name not in sys.modules:
            continue
        seen.add(name)
        for value in vars(sys.modules[name]).values():
            referenced = value.__name__ if isinstance(value, types.ModuleType) else getattr(value, "__module__", None)
            if isinstance(referenced, str) and (referenced == package or referenced.startswith(package + ".")):
                pending.append(referenced)
    digest = hashlib.sha256()
    for name in sorted(seen):
        try:
            source = inspect.getsource(sys.modules[name])
        except (OSError, TypeError):  # no source file (a frozen or built-in module): its name stands in
            source = name
        digest.update(name.encode() + b"\0" + source.encode() + b"\0")
    return digest.hexdigest()[:16]


def cache_key(task, split: str) -> str:
    payload = json.dumps({"task": task.registry_name, "config": dataclasses.asdict(task.config), "split": split,
                          "code": code_fingerprint(type(task).__module__)}, sort_keys=True, default=str)
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def cached_arrays(task, split: str, make: Callable[[], dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """Return `make()`'s arrays, from disk when this task (config and code) built this split before."""
    path = cache_dir() / task.registry_name / f"{split}-{cache_key(task, split)}.npz"
    if path.exists():
        try:
            with np.load(path, allow_pickle=False) as archive:
                return {key: archive[key] for key in archive.files}
        except Exception:  # a corrupt cache entry is rebuilt, never trusted
            path.unlink(missing_ok=True)
    _writable(path.parent)   # before generating: a bad cache setting fails fast
    log.info("generating %s data: the %s split%s (once; cached in %s)…", task.registry_name, split,
             _size_note(task.config, split), path.parent)
    arrays = make()
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(temporary, "wb") as handle:
            np.savez(handle, **arrays)
        os.replace(temporary, path)
    except OSError as error:
        temporary.unlink(missing_ok=True)
        raise _cache_error(error) from None
    return arrays


def _size_note(config, split: str) -> str:
    """", 2,000 examples" when the config says how many (train_size, or test_size for test splits)."""
    size = getattr(config, f"{split}_size", None) or (getattr(config, "test_size", None) if split != "train" else None)
    return f", {size:,} examples" if isinstance(size, int) and not isinstance(size, bool) else ""


def _cache_error(error: OSError) -> DataError:
    return DataError(f"data cache {cache_dir()} (RECURRENT_BENCH_CACHE) is not writable: {error.strerror or error}")


def _writable(folder: Path) -> None:
    try:
        make_writable_folder(folder)
    except OSError as error:
        raise _cache_error(error) from None
