"""The one protocol the runner knows tasks by.

A task is a config dataclass plus a `Task` subclass with:

    spec                      -> TaskSpec (vocab, sequence length, puzzle ids, ignore label)
    sizing_spec               -> TaskSpec from the config alone (what parameter/FLOP sizing needs)
    build(split)              -> TaskData for "train" or any name in eval_splits() (seeded by config)
    eval_splits()             -> names of evaluation splits ("test", larger mazes, longer numbers …)
    curve_point(split)        -> (axis, x) for splits on an extrapolation curve, else None
    score(data, predictions)  -> dict with at least token_accuracy, exact_accuracy (+ task extras)
    write_artifacts(...)      -> optional files for the run directory (default none)
    render(data, index, prediction=None) -> text of one example
    stats(data)               -> dict of dataset statistics for `bench data`

Register it with `@register_task` (tasks/registry.py).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from tasks.files import DataError  # noqa: F401  (part of the protocol: tasks raise it for bad data)

IGNORE_LABEL = -100


@dataclass(frozen=True)
class TaskSpec:
    vocab_size: int
    seq_len: int
    num_puzzle_ids: int = 1  # HRM keeps a (1-row) puzzle table even when a task has no puzzle ids
    ignore_label: int = IGNORE_LABEL
    pad_id: int = 0
    max_len: int = 0  # longest sequence in any split (extrapolation splits may be longer); 0 = seq_len
    # False in a sizing spec whose puzzle-id count needs the data (ARC's augmentation plan): the
    # table's rows are then a placeholder. Puzzle tables are counted apart, so sizing never needs them.
    puzzle_ids_known: bool = True
    grid: bool = False  # every sequence is a row-major square grid (side √length): 2-D models may use it

    @property
    def max_seq_len(self) -> int:
        """Size position tables by this: evaluation splits may be longer than training."""
        return max(self.seq_len, self.max_len)


@dataclass
class TaskData:
    """One split, ready for the model: inputs/labels (N, L) int64, puzzle ids (N,) int64.

    `positions` (N, L) int64, optional: task-supplied position indices that batches carry as
    `batch["positions"]` (models' InputEmbedding uses them instead of 0..L-1).
    `meta["groups"]` / `meta["puzzles"]` (N,), optional, training split: the puzzle group (original
    puzzle, ARC task) and puzzle (augmented variant) of each row, for the reference's group sampler
    (bench/sampling.py); absent, every row is its own group and puzzle.
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
    """Base class; subclasses set `spec` in __init__ (or as a property) and implement build/score/render."""

    registry_name: str = ""   # set by @register_task
    legend: str = ""          # what the characters of `render` mean; `bench data --show` prints it once
    # presets at which the task cannot be learnt (10^13 training FLOPs where the published results
    # used 10^16–10^18): their runs check that the protocol works and are not evidence; the report
    # keeps them out of the headline table
    protocol_check_presets: tuple[str, ...] = ()

    def __init__(self, config):
        self.config = config

    spec: TaskSpec

    @property
    def sizing_spec(self) -> TaskSpec:
        """The spec as far as the config alone determines it. Override when `spec` needs the data."""
        return self.spec

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


def constant_answer_accuracy(train_labels: torch.Tensor, labels: torch.Tensor,
                             ignore_label: int = IGNORE_LABEL) -> dict[str, float]:
    """Scores of the answer that ignores the input: the most frequent training label at every
    supervised position. What a model that learned only the label prior gets: the floor to beat."""
    supervised = train_labels[train_labels != ignore_label]
    if not len(supervised):
        return {"token_accuracy": 0.0, "exact_accuracy": 0.0}
    constant = torch.full_like(labels, int(torch.mode(supervised).values))
    score = token_and_exact_accuracy(constant, labels, ignore_label)
    return {"token_accuracy": score["token_accuracy"], "exact_accuracy": score["exact_accuracy"]}


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
