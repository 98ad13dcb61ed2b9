"""Task registry and the one protocol the runner knows tasks by.

A task is a config dataclass plus a class with:

    spec                      -> TaskSpec (vocab, sequence length, puzzle ids, ignore label)
    build(split)              -> TaskData for "train" or any name in eval_splits() (seeded by config)
    eval_splits()             -> names of evaluation splits ("test", larger mazes, longer numbers …)
    score(data, predictions)  -> dict with at least token_accuracy, exact_accuracy (+ task extras)
    write_artifacts(...)      -> optional files for the run directory (default none)
    render(data, index, prediction=None) -> text of one example
    stats(data)               -> dict of dataset statistics for `bench data`

Adding a task is one file and one decorator:

    @register_task("name", config=MyConfig, description="one line", presets={...})
    class MyTask(Task): ...

`presets` maps "smoke" / "cpu" / "paper" to dotted overrides (`task.*`, `train.*`, `model.*`).
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

IGNORE_LABEL = -100
PRESETS = ("smoke", "cpu", "paper")


class DataError(Exception):
    """Missing, malformed or inconsistent task data: reported as one line by the CLI."""


@dataclass(frozen=True)
class TaskSpec:
    vocab_size: int
    seq_len: int
    num_puzzle_ids: int = 1  # HRM keeps a (1-row) puzzle table even when a task has no puzzle ids
    ignore_label: int = IGNORE_LABEL
    pad_id: int = 0
    max_len: int = 0  # longest sequence in any split (extrapolation splits may be longer); 0 = seq_len

    @property
    def max_seq_len(self) -> int:
        """Size position tables by this: evaluation splits may be longer than training."""
        return max(self.seq_len, self.max_len)


@dataclass
class TaskData:
    """One split, ready for the model: inputs/labels (N, L) int64, puzzle ids (N,) int64.

    `positions` (N, L) int64, optional: task-supplied position indices that batches carry as
    `batch["positions"]` (models' InputEmbedding uses them instead of 0..L-1).
    """

    inputs: torch.Tensor
    labels: torch.Tensor
    puzzle_ids: torch.Tensor
    meta: dict[str, Any] = field(default_factory=dict)
    positions: torch.Tensor | None = None

    def __len__(self) -> int:
        return self.inputs.shape[0]

    def batch(self, index: torch.Tensor) -> dict[str, torch.Tensor]:
        batch = {"inputs": self.inputs[index], "labels": self.labels[index], "puzzle_ids": self.puzzle_ids[index]}
        if self.positions is not None:
            batch["positions"] = self.positions[index]
        return batch


class Task:
    """Base class; subclasses set `spec` in __init__ and implement build/score/render."""

    def __init__(self, config):
        self.config = config

    spec: TaskSpec

    def eval_splits(self) -> list[str]:
        return ["test"]

    def curve_point(self, split: str) -> tuple[str, float] | None:
        """For extrapolation splits: (axis name, x), e.g. ("length", 24) or ("grid", 20).

        The runner collects every split that has one into summary["curves"][axis] so the report
        can plot exact accuracy against length / grid size / rating band. None = not on a curve.
        """
        return None

    def build(self, split: str) -> TaskData:
        raise NotImplementedError

    def score(self, data: TaskData, predictions: torch.Tensor, **extra) -> dict[str, Any]:
        return token_and_exact_accuracy(predictions, data.labels, self.spec.ignore_label)

    def write_artifacts(self, run_dir: Path, split: str, data: TaskData, predictions: torch.Tensor,
                        confidences: torch.Tensor | None = None) -> list[str]:
        """Task-specific files written into the run directory after scoring (e.g. ARC's Kaggle
        submission.json); returns their names. Default: none."""
        return []

    def render(self, data: TaskData, index: int, prediction: torch.Tensor | None = None) -> str:
        raise NotImplementedError

    def stats(self, data: TaskData) -> dict[str, Any]:
        return {"count": len(data), "seq_len": int(data.inputs.shape[1])}


def token_and_exact_accuracy(predictions: torch.Tensor, labels: torch.Tensor,
                             ignore_label: int = IGNORE_LABEL) -> dict[str, Any]:
    """Token accuracy over supervised positions and whole-sequence exact match."""
    mask = labels != ignore_label
    correct = (predictions == labels) & mask
    token_accuracy = correct.sum().item() / max(mask.sum().item(), 1)
    exact = (correct.sum(-1) == mask.sum(-1))
    return {
        "token_accuracy": token_accuracy,
        "exact_accuracy": exact.float().mean().item() if len(exact) else 0.0,
        "per_example_correct": exact.tolist(),
    }


# --------------------------------------------------------------------------------------------
# Registry
@dataclass
class TaskEntry:
    name: str
    cls: type
    config: type
    description: str
    presets: dict[str, dict[str, Any]]


_TASKS: dict[str, TaskEntry] = {}


def register_task(name: str, config: type, description: str,
                  presets: dict[str, dict[str, Any]]) -> Callable[[type], type]:
    missing = [p for p in PRESETS if p not in presets]
    if missing:
        raise ValueError(f"task {name!r} lacks presets {missing}")

    def decorator(cls: type) -> type:
        if name in _TASKS:
            raise ValueError(f"task {name!r} registered twice")
        _TASKS[name] = TaskEntry(name, cls, config, description, presets)
        cls.registry_name = name
        return cls

    return decorator


def _load_all() -> None:
    import tasks  # noqa: F401  (importing the package registers every task module)


def task_names() -> list[str]:
    _load_all()
    return sorted(_TASKS)


def get_task_entry(name: str) -> TaskEntry:
    _load_all()
    if name not in _TASKS:
        raise KeyError(f"unknown task {name!r}; choose from: {', '.join(sorted(_TASKS))}")
    return _TASKS[name]


def create_task(name: str, **config_values) -> Task:
    entry = get_task_entry(name)
    return entry.cls(entry.config(**config_values))


# --------------------------------------------------------------------------------------------
# On-disk cache of generated data, keyed by (task, config, split): reruns are instant.
def cache_dir() -> Path:
    return Path(os.environ.get("RECURRENT_BENCH_CACHE", Path.home() / ".cache" / "recurrent-bench"))


def cache_key(task_name: str, config, split: str, version: int = 1) -> str:
    payload = json.dumps({"task": task_name, "config": dataclasses.asdict(config), "split": split,
                          "version": version}, sort_keys=True, default=str)
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def cached_arrays(task_name: str, config, split: str, make: Callable[[], dict[str, np.ndarray]],
                  version: int = 1) -> dict[str, np.ndarray]:
    """Return `make()`'s arrays, from disk when this (task, config, split) was built before."""
    path = cache_dir() / task_name / f"{split}-{cache_key(task_name, config, split, version)}.npz"
    if path.exists():
        try:
            with np.load(path, allow_pickle=False) as archive:
                return {key: archive[key] for key in archive.files}
        except Exception:  # a corrupt cache entry is rebuilt, never trusted
            path.unlink(missing_ok=True)
    arrays = make()
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(temporary, "wb") as handle:
        np.savez(handle, **arrays)
    os.replace(temporary, path)
    return arrays
