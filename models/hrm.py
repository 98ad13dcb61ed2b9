"""Hierarchical Reasoning Model (Wang et al. 2025, arXiv 2506.21734), after the reference code.

Two recurrent modules of post-norm blocks with separate weights: a slow high level H and a fast
low level L. One call of `forward` is one *segment*:

    x = embed(tokens, puzzle id)                     # sqrt(h)·(tokens ++ puzzle prefix), RoPE
    for cycle in 1..high_cycles:
        for step in 1..low_cycles:
            z_L ← L(z_L + z_H + x)                   # input injection by addition
        z_H ← H(z_H + z_L)
    logits  = head(z_H)        at the token positions
    q_halt, q_continue = Q(z_H[:, 0])                # ACT's Q head, reads the first (puzzle) position

One-step gradient (`gradient="one_step"`, the reference): every call but the final L-call and the
final H-call runs under no_grad, so backprop sees one L and one H application per segment. The
carry (z_H, z_L) leaves the segment detached; the trainer runs up to halt_max_steps segments with
a loss and an optimiser step each (deep supervision) and decides halting with the Q head (ACT).
Initial states are fixed random vectors (buffers, never trained) broadcast to every position.
"""
from __future__ import annotations

from dataclasses import dataclass

from models._recurrence import broadcast_states, check_gradient_mode, run_cycles
from models.blocks import BlockStack, HaltingHead, InputEmbedding, OutputHead, fixed_initial_state
from models.protocol import SegmentModel
from models.registry import register_model


@dataclass
class HRMConfig:
    hidden: int = 512
    num_heads: int = 8
    high_layers: int = 4          # blocks in H
    low_layers: int = 4           # blocks in L
    high_cycles: int = 2          # H-updates per segment (reference H_cycles)
    low_cycles: int = 2           # L-updates per H-update (reference L_cycles)
    expansion: float = 4.0
    ffn_multiple: int = 256
    pos_encoding: str = "rope"    # rope | learned | none
    puzzle_emb_len: int = 1       # prefix positions for the puzzle embedding (reference: ceil(512/512) = 1)
    attention_backend: str = "sdpa"
    gradient: str = "one_step"    # one_step (reference) | last_cycle (TRM's rule) | full (BPTT in a segment)


@register_model("hrm", config=HRMConfig,
                description="Hierarchical Reasoning Model: H/L recurrent modules, one-step gradient, ACT Q head")
class HRM(SegmentModel):
    iteration_count_key = "high_cycles"   # the training rules vary the H-cycles of one forward
    presets = {
        "smoke": {"model.high_layers": 1, "model.low_layers": 1},
        "cpu": {"model.high_layers": 2, "model.low_layers": 2},
        # the exact reference configuration: 27,275,266 params on Sudoku (vocab 11), puzzle table apart
        "paper": {"model.hidden": 512, "model.num_heads": 8, "model.high_layers": 4, "model.low_layers": 4,
                  "model.high_cycles": 2, "model.low_cycles": 2, "model.expansion": 4.0,
                  "model.ffn_multiple": 256, "model.pos_encoding": "rope", "model.puzzle_emb_len": 1,
                  "model.gradient": "one_step"},
    }

    def __init__(self, config: HRMConfig, spec):
        super().__init__(config, spec)
        check_gradient_mode(config.gradient)
        if min(config.high_layers, config.low_layers, config.high_cycles, config.low_cycles) < 1:
            raise ValueError("high_layers, low_layers, high_cycles and low_cycles must all be >= 1")
        self.embedding = InputEmbedding(spec.vocab_size, config.hidden, spec.max_seq_len, spec.num_puzzle_ids,
                                        config.puzzle_emb_len, config.pos_encoding, config.num_heads)
        block = dict(hidden=config.hidden, num_heads=config.num_heads, expansion=config.expansion,
                     ffn_multiple=config.ffn_multiple, backend=config.attention_backend)
        self.high = BlockStack(config.high_layers, **block)
        self.low = BlockStack(config.low_layers, **block)
        self.head = OutputHead(config.hidden, spec.vocab_size, self.embedding.prefix_len)
        self.q_head = HaltingHead(config.hidden, outputs=2)
        self.register_buffer("z_high_init", fixed_initial_state(config.hidden))
        self.register_buffer("z_low_init", fixed_initial_state(config.hidden))

    def initial_carry(self, batch):
        return broadcast_states(batch, self.embedding.prefix_len, {"z_high": self.z_high_init, "z_low": self.z_low_init})

    def forward(self, carry, batch):
        config = self.config
        x, rotary = self.embedding(batch)

        def low_update(z_low, z_high):                  # z_L ← L(z_L + z_H + x)
            new = self.low(z_low, injection=z_high + x, rotary=rotary)
            self.trace_residual("z_low", new, z_low)
            return new

        def high_update(z_high, z_low):                 # z_H ← H(z_H + z_L)
            new = self.high(z_high, injection=z_low, rotary=rotary)
            self.trace_residual("z_high", new, z_high)
            return new

        # high_cycles × [low_cycles L-updates, one H-update]; `gradient` picks the calls backprop sees
        z_high, z_low = run_cycles(carry["z_high"].to(x.dtype), carry["z_low"].to(x.dtype), low_update, high_update,
                                   config.high_cycles, config.low_cycles, config.gradient)
        q_logits = self.q_head(z_high)
        outputs = {"logits": self.head(z_high), "q_halt_logits": q_logits[:, 0], "q_continue_logits": q_logits[:, 1]}
        return {"z_high": z_high.detach(), "z_low": z_low.detach()}, outputs
