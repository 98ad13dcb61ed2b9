"""Data-parallel training of one run under torchrun, as the HRM reference trains (pretrain.py).

    torchrun --nproc-per-node 8 -m bench run --model hrm --task sudoku --preset paper

How the pieces map onto W processes (ranks):
- `train.batch_size` is the GLOBAL batch. Rank r holds rows [r·B/W, (r+1)·B/W) of it: its slice of
  the current examples, the carry, the halted flags and the segment counters (HRM's PuzzleDataset
  hands each rank the same slice of every global batch).
- Every rank runs the same seeded sampler, draws the whole global batch of indices and keeps its
  slice; per-row random draws (ACT exploration) are likewise drawn for the global batch and sliced.
  So W processes × B/W reproduce 1 process × B, up to the order of floating-point sums.
- After backward the gradients are summed over ranks and divided by W (the gradient of the global
  mean loss). The reference all-reduces by hand instead of wrapping the model in DDP, and so do we:
  the segment model's `initial_carry`/`reset_carry` and the extra no-grad ACT forward stay plain calls.
- Training metrics are averaged over ranks in one all-reduce per step; the divergence check reads the
  averaged loss, so every rank stops at the same step.
- Evaluation: each rank evaluates a contiguous shard of the split; predictions are gathered in rank
  order so every rank holds (and scores) the full split. Only rank 0 writes.
- Checkpoints gather the per-rank rows into the global batch and rank 0 writes them; on resume each
  rank takes its slice back, so a checkpoint does not depend on the number of processes. Resuming
  reads the checkpoint on every rank: multi-node runs need the results directory on a shared disk.
- The run directory (and any error choosing it) is decided on rank 0 and broadcast.

Backend: NCCL on CUDA (one GPU per process, `LOCAL_RANK`), gloo on CPU. A user error on one rank
ends that process; torchrun then stops the others.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Iterable

import torch
import torch.distributed as dist

from bench.config import ConfigError


@dataclass(frozen=True)
class World:
    """This process's place among the ranks. The default (one process) makes every collective a no-op."""

    rank: int = 0
    size: int = 1
    device: str = "cpu"  # where collective buffers live (NCCL needs this rank's GPU)

    @property
    def distributed(self) -> bool:
        return self.size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    # ------------------------------------------------------------ rows of the global batch
    def local_batch_size(self, global_batch_size: int) -> int:
        if global_batch_size % self.size:
            raise ConfigError(f"train.batch_size={global_batch_size} is the global batch and must be divisible "
                              f"by the number of processes ({self.size})")
        return global_batch_size // self.size

    def rows(self, tensor: torch.Tensor) -> torch.Tensor:
        """This rank's slice of a tensor whose first dimension is the global batch."""
        if not self.distributed:
            return tensor
        local = self.local_batch_size(tensor.shape[0])
        return tensor[self.rank * local:(self.rank + 1) * local]

    def gather_rows(self, tensor: torch.Tensor) -> torch.Tensor:
        """Inverse of `rows`: every rank's slice concatenated in rank order (equal shapes)."""
        if not self.distributed:
            return tensor
        # gloo cannot all-gather bool tensors; send bytes and cast back
        sendable = tensor.to(torch.uint8) if tensor.dtype == torch.bool else tensor.contiguous()
        parts = [torch.empty_like(sendable) for _ in range(self.size)]
        dist.all_gather(parts, sendable)
        return torch.cat(parts).to(tensor.dtype)

    def shard(self, count: int) -> tuple[int, int]:
        """[begin, end) of this rank's contiguous share of `count` evaluation examples."""
        per_rank = -(-count // self.size)
        begin = min(count, self.rank * per_rank)
        return begin, min(count, begin + per_rank)

    def broadcast_parameters(self, module: torch.nn.Module) -> None:
        """Start every rank from rank 0's weights and buffers (the reference does this too; the
        seeded init already agrees, this guards against any rank-dependent initialisation)."""
        if not self.distributed:
            return
        with torch.no_grad():
            for tensor in [*module.parameters(), *module.buffers()]:
                dist.broadcast(tensor.data, src=0)

    # ------------------------------------------------------------ reductions
    def average_gradients(self, parameters: Iterable[torch.nn.Parameter]) -> None:
        """grad ← mean over ranks, in one flat all-reduce (parameters without a gradient are skipped
        on every rank alike: the code path, and so the set, is the same on all ranks)."""
        if not self.distributed:
            return
        grads = [p.grad for p in parameters if p.grad is not None]
        if not grads:
            return
        flat = torch.cat([g.reshape(-1) for g in grads])
        dist.all_reduce(flat)
        flat /= self.size
        offset = 0
        for grad in grads:
            grad.copy_(flat[offset:offset + grad.numel()].view_as(grad))
            offset += grad.numel()

    def reduce_metrics(self, means: dict[str, torch.Tensor], sums: dict[str, torch.Tensor]) -> dict[str, float]:
        """Average `means` and add up `sums` over ranks in one all-reduce; returns Python floats."""
        keys = [*means, *sums]
        if not self.distributed:
            return {key: value.item() for key, value in {**means, **sums}.items()}
        packed = torch.stack([value.detach().to(torch.float64).reshape(()) for value in [*means.values(), *sums.values()]])
        dist.all_reduce(packed)
        values = packed.tolist()
        return {key: value / self.size if index < len(means) else value
                for index, (key, value) in enumerate(zip(keys, values))}

    def sum_int(self, value: int) -> int:
        if not self.distributed:
            return value
        total = torch.tensor([value], dtype=torch.float64, device=self.device)
        dist.all_reduce(total)
        return int(total.item())

    def gather_objects(self, value: Any) -> list[Any]:
        if not self.distributed:
            return [value]
        gathered: list[Any] = [None] * self.size
        dist.all_gather_object(gathered, value)
        return gathered

    def broadcast_object(self, value: Any) -> Any:
        """Rank 0's `value` on every rank."""
        if not self.distributed:
            return value
        box = [value]
        dist.broadcast_object_list(box, src=0)
        return box[0]


def current_world(device: str = "cpu") -> World:
    """The World torchrun describes in the environment (RANK, WORLD_SIZE, LOCAL_RANK); one
    process when WORLD_SIZE is unset or 1. Initialises the process group once."""
    size = int(os.environ.get("WORLD_SIZE", "1"))
    if size <= 1:
        return World()
    on_gpu = device.startswith("cuda")
    if on_gpu:
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    if not dist.is_initialized():
        dist.init_process_group("nccl" if on_gpu else "gloo")
    collective_device = f"cuda:{torch.cuda.current_device()}" if on_gpu else "cpu"
    return World(dist.get_rank(), dist.get_world_size(), collective_device)


def shutdown() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
