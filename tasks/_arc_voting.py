"""ARC evaluation: vote over augmented predictions; a task scores only when all its test inputs are right."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from tasks._arc_grids import grid_key


@dataclass
class Candidate:
    grid: np.ndarray
    votes: int = 0
    confidence_sum: float = 0.0
    first_seen: int = 0

    @property
    def mean_confidence(self) -> float:
        return self.confidence_sum / max(self.votes, 1)


def vote(grids: list[np.ndarray], slots: np.ndarray, confidences: np.ndarray, num_slots: int) -> list[list[Candidate]]:
    """Candidates per slot (one slot = one test input of one task), best first.

    grids are already cropped and de-augmented; empty grids (no colour at the corner) cast no vote.
    Ranking: votes, then mean confidence, then first appearance (deterministic).
    """
    tallies: list[dict[bytes, Candidate]] = [{} for _ in range(num_slots)]
    for index, (grid, slot) in enumerate(zip(grids, slots)):
        if grid.size == 0:
            continue
        key = grid_key(grid)
        candidate = tallies[slot].setdefault(key, Candidate(grid, first_seen=index))
        candidate.votes += 1
        candidate.confidence_sum += float(confidences[index])
    return [sorted(tally.values(), key=lambda c: (-c.votes, -c.mean_confidence, c.first_seen)) for tally in tallies]


def pass_at_k(ranked: list[list[Candidate]], answers: list[np.ndarray], slot_task: np.ndarray, ks) -> dict[str, Any]:
    """Task-level pass@k (every test input right), the pooled per-test-input rate, and HRM/TRM's
    fractional credit (a task scores the fraction of its test inputs that are right)."""
    num_tasks = int(slot_task.max()) + 1 if len(slot_task) else 0
    result: dict[str, Any] = {}
    for k in ks:
        right = np.array([any(np.array_equal(c.grid, answer) for c in candidates[:k])
                          for candidates, answer in zip(ranked, answers)], dtype=bool)
        per_task_all = np.ones(num_tasks, dtype=bool)
        np.logical_and.at(per_task_all, slot_task, right)
        per_task_fraction = np.bincount(slot_task, weights=right, minlength=num_tasks) / \
            np.maximum(np.bincount(slot_task, minlength=num_tasks), 1)
        result[f"pass@{k}"] = float(per_task_all.mean()) if num_tasks else 0.0
        result[f"per_test_input_pass@{k}"] = float(right.mean()) if len(right) else 0.0
        result[f"fractional_pass@{k}"] = float(per_task_fraction.mean()) if num_tasks else 0.0
        if k == 2:
            result["per_task_pass@2"] = per_task_all.tolist()
    return result
