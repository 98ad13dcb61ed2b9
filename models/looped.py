"""Looped transformer: k weight-tied blocks applied r times, the input re-injected every loop.

    z = carry (zeros at the start)
    repeat r times:  z = blocks(z + x)          # the same k blocks every loop
    logits = head(z)

r = `loops` in training and `eval_loops` (if > 0) at test time, so depth can be extrapolated
beyond training (`test_time_compute_key`). Defaults follow HRM for the same task and preset:
k = HRM's low_layers and loops = 6, which gives the same effective depth as one HRM segment
(high_cycles·(low_cycles·low_layers + high_layers) = 6·k when high_layers = low_layers and the
cycles are 2 and 2). As in the transformer, the last state is carried (detached) between the
trainer's segments.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from models.registry import register_model
from models.transformer import Transformer


@dataclass
class LoopedConfig:
    hidden: int = 512
    num_heads: int = 8
    num_layers: int = 4           # k: blocks in the looped stack (resolve(): HRM's low_layers)
    loops: int = 6                # r in training
    eval_loops: int = 0           # r at test time; 0 = same as training
    expansion: float = 4.0
    ffn_multiple: int = 256
    pos_encoding: str = "rope"
    puzzle_emb_len: int = 1
    attention_backend: str = "sdpa"

    def __post_init__(self):
        if self.num_layers < 1 or self.loops < 1 or self.eval_loops < 0:
            raise ValueError("model.num_layers and model.loops must be >= 1 and model.eval_loops >= 0")


@register_model("looped", config=LoopedConfig,
                description="looped transformer: k tied blocks × r loops with input re-injection (eval_loops > loops extrapolates)")
class Looped(Transformer):
    """The transformer's embedding, block stack and head (and zero carry); the stack is looped."""

    test_time_compute_key = "eval_loops"
    progressive_iterations_key = "loops"
    reference_defaults = {"num_layers": lambda hrm: hrm.low_layers}

    @property
    def num_loops(self) -> int:
        return self.config.loops if self.training else (self.config.eval_loops or self.config.loops)

    # the recurrence, in the pieces progressive loss needs (models/protocol.py)
    def start_state(self, batch) -> torch.Tensor:
        return self.initial_carry(batch)["z"]

    def iterate(self, z: torch.Tensor, batch, count: int, first: int = 0) -> torch.Tensor:
        x, rotary = self.embedding(batch)
        z = z.to(x.dtype)
        for _ in range(count):
            new = self.blocks(z, injection=x, rotary=rotary)
            self.trace_residual("z", new, z)
            z = new
        return z

    def readout(self, z: torch.Tensor, batch) -> torch.Tensor:
        return self.head(z)

    def forward(self, carry, batch):
        z = self.iterate(carry["z"], batch, self.num_loops)
        return {"z": z}, {"logits": self.readout(z, batch)}
