"""Seeded epoch-wise shuffling of a training split, its whole state checkpointable."""
from __future__ import annotations

import torch


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
