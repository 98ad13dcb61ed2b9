"""Seeded samplers of a training split, their whole state checkpointable (bench/checkpoint.py).

- `Sampler` (`train.sampler=uniform`): every example of the split, shuffled, epoch after epoch; a batch
  may span two epochs. What the suite did before the reference sampler existed.
- `GroupSampler` (`train.sampler=groups`): the reference's (HRM's and TRM's puzzle_dataset). Examples
  belong to puzzles (an augmented variant) and puzzles to groups (the original puzzle or ARC task).
  Each epoch visits every group once, in a fresh random order, and takes one random puzzle of it; the
  puzzle's examples go into the batch together, in random order, cut off where the batch is full.
  `passes` epochs (the reference's eval_interval) are laid end to end and the last partial batch of
  the pass is dropped. With no groups given every example is its own group.

Both hand out indices through `next(count)` and keep `generator`, `order` and `position`, the state a
checkpoint saves and restores.
"""
from __future__ import annotations

import torch

from bench.config import ConfigError


class Sampler:
    """Seeded epoch-wise shuffling; its whole state can be checkpointed."""

    def __init__(self, size: int, seed: int):
        self.size = size
        self.generator = torch.Generator().manual_seed(seed)
        self.order = torch.randperm(size, generator=self.generator)
        self.position = 0

    def next(self, count: int) -> torch.Tensor:
        picked = []
        while count > 0:
            if self.position >= self.size:
                self.order = torch.randperm(self.size, generator=self.generator)
                self.position = 0
            take = min(count, self.size - self.position)
            picked.append(self.order[self.position:self.position + take])
            self.position += take
            count -= take
        return torch.cat(picked)


def _runs(keys: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Rows sorted by key (stable) and the offsets where each key's run starts (CSR, one extra at the end)."""
    rows = torch.argsort(keys, stable=True)
    _, counts = torch.unique_consecutive(keys[rows], return_counts=True)
    return rows, torch.cat([torch.zeros(1, dtype=torch.long), counts.cumsum(0)])


class GroupSampler:
    """The reference's group-wise sampler; `order` is the pass's group order, `position` the next group."""

    def __init__(self, size: int, seed: int, groups: torch.Tensor | None = None,
                 puzzles: torch.Tensor | None = None, passes: int = 1):
        groups = torch.arange(size) if groups is None else torch.as_tensor(groups, dtype=torch.long)
        puzzles = torch.arange(size) if puzzles is None else torch.as_tensor(puzzles, dtype=torch.long)
        if groups.shape != (size,) or puzzles.shape != (size,) or passes < 1:
            raise ValueError(f"groups and puzzles need one entry per example ({size}) and passes >= 1")
        # examples grouped by puzzle; puzzles grouped by group (a puzzle belongs to one group)
        self.rows, self.puzzle_start = _runs(puzzles)
        puzzle_group = groups[self.rows[self.puzzle_start[:-1]]]
        if not torch.equal(groups[self.rows], torch.repeat_interleave(puzzle_group, self.puzzle_start.diff())):
            raise ValueError("every puzzle must lie within one group")
        self.puzzle_order, self.group_start = _runs(puzzle_group)
        self.size, self.passes = size, passes
        self.num_groups = len(self.group_start) - 1
        self.generator = torch.Generator().manual_seed(seed)
        self.order = self._new_pass()
        self.position = 0

    def _new_pass(self) -> torch.Tensor:
        return torch.cat([torch.randperm(self.num_groups, generator=self.generator) for _ in range(self.passes)])

    def _draw(self, group: int, room: int) -> torch.Tensor:
        """A random puzzle of the group and up to `room` of its examples, in random order."""
        low, high = int(self.group_start[group]), int(self.group_start[group + 1])
        puzzle = int(self.puzzle_order[low + int(torch.randint(high - low, (), generator=self.generator))])
        first, last = int(self.puzzle_start[puzzle]), int(self.puzzle_start[puzzle + 1])
        pick = torch.randperm(last - first, generator=self.generator)[:room]
        return self.rows[first + pick]

    def next(self, count: int) -> torch.Tensor:
        """One full batch of `count` indices; a pass that cannot fill one more is dropped and a new one starts."""
        while True:
            picked, filled, start = [], 0, self.position
            while filled < count and self.position < len(self.order):
                rows = self._draw(int(self.order[self.position]), count - filled)
                self.position += 1
                picked.append(rows)
                filled += len(rows)
            if filled == count:
                return torch.cat(picked)
            if start == 0:
                raise ConfigError(f"one pass of the reference sampler has fewer than {count} examples: "
                                 "raise train.sampler_epochs or lower train.batch_size")
            self.order, self.position = self._new_pass(), 0


def make_sampler(config, data, seed: int):
    """The sampler `train.sampler` names, over a training split (its meta may give `groups`/`puzzles`)."""
    if getattr(config, "sampler", "uniform") == "uniform":
        return Sampler(len(data), seed)
    return GroupSampler(len(data), seed, data.meta.get("groups"), data.meta.get("puzzles"), config.sampler_epochs)
