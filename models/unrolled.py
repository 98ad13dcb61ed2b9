"""Unrolled HRM (the finite-impulse-response view): one HRM segment written out as a feed-forward stack.

    z_H, z_L = fixed initial states                  (every forward: nothing is carried)
    for h in 1..high_cycles:
        for l in 1..low_cycles:  z_L = L_{h,l}(z_L + z_H + x)
        z_H = H_h(z_H + z_L)
    logits = head(z_H);  (q_halt, q_continue) = q_head(z_H[:, 0])

With `tied=False` (default) every L-call and every H-call has its own block stack, so the model
has high_cycles·low_cycles L-stacks and high_cycles H-stacks (6 stacks at the paper schedule).
With `tied=True` all L-calls share one stack and all H-calls another: that is HRM's network with
full backprop through the segment and no outer loop (HRM's params exactly, Q head included).
Gradients flow through the whole stack (no one-step approximation). Per forward it does exactly
the block calls of one HRM segment, so its FLOPs equal one HRM segment's.

The schedule fields mirror HRM's config and presets (tests check they agree with HRM's).
"""
from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from models.blocks import BlockStack, HaltingHead, InputEmbedding, OutputHead, fixed_initial_state
from models.protocol import SegmentModel
from models.registry import register_model


@dataclass
class UnrolledConfig:
    hidden: int = 512
    num_heads: int = 8
    high_layers: int = 4          # blocks per H-call
    low_layers: int = 4           # blocks per L-call
    high_cycles: int = 2          # H-calls per forward
    low_cycles: int = 2           # L-calls per H-call
    expansion: float = 4.0
    ffn_multiple: int = 256
    pos_encoding: str = "rope"
    puzzle_emb_len: int = 1
    attention_backend: str = "sdpa"
    tied: bool = False            # True: HRM's weight sharing (one L-stack, one H-stack)

    def __post_init__(self):
        for key in ("high_layers", "low_layers", "high_cycles", "low_cycles"):
            if getattr(self, key) < 1:
                raise ValueError(f"model.{key} must be >= 1, got {getattr(self, key)}")


@register_model("unrolled", config=UnrolledConfig,
                description="HRM's segment schedule as a feed-forward stack, untied weights (tied=True: HRM, full backprop)")
class Unrolled(SegmentModel):
    # HRM's model presets (the task preset gives hidden/num_heads); one trainer segment, because
    # nothing is carried: further segments would repeat the same forward (use --set train.segments to)
    presets = {"smoke": {"model.high_layers": 1, "model.low_layers": 1, "train.segments": 1},
               "cpu": {"model.high_layers": 2, "model.low_layers": 2, "train.segments": 1},
               "paper": {"train.segments": 1}}

    def __init__(self, config: UnrolledConfig, spec):
        super().__init__(config, spec)
        self.embedding = InputEmbedding(spec.vocab_size, config.hidden, spec.max_seq_len, spec.num_puzzle_ids,
                                        config.puzzle_emb_len, config.pos_encoding, config.num_heads)
        block = dict(hidden=config.hidden, num_heads=config.num_heads, expansion=config.expansion,
                     ffn_multiple=config.ffn_multiple, backend=config.attention_backend)
        low_calls = config.high_cycles * config.low_cycles
        self.low = nn.ModuleList(BlockStack(config.low_layers, **block) for _ in range(1 if config.tied else low_calls))
        self.high = nn.ModuleList(BlockStack(config.high_layers, **block)
                                  for _ in range(1 if config.tied else config.high_cycles))
        self.head = OutputHead(config.hidden, spec.vocab_size, self.embedding.prefix_len)
        self.q_head = HaltingHead(config.hidden)
        self.register_buffer("z_H_init", fixed_initial_state(config.hidden), persistent=True)
        self.register_buffer("z_L_init", fixed_initial_state(config.hidden), persistent=True)

    def forward(self, carry, batch):
        config = self.config
        x, rotary = self.embedding(batch)
        z_H = self.z_H_init.to(x.dtype).expand_as(x)
        z_L = self.z_L_init.to(x.dtype).expand_as(x)
        low_call = 0
        for high_call in range(config.high_cycles):
            for _ in range(config.low_cycles):
                z_L = self.low[0 if config.tied else low_call](z_L, injection=z_H + x, rotary=rotary)
                low_call += 1
            new_H = self.high[0 if config.tied else high_call](z_H, injection=z_L, rotary=rotary)
            self.trace_residual("z_H", new_H, z_H)
            z_H = new_H
        q = self.q_head(z_H)
        return {}, {"logits": self.head(z_H), "q_halt_logits": q[:, 0], "q_continue_logits": q[:, 1]}
