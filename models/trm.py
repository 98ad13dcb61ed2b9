"""Tiny Recursive Model (Jolicoeur-Martineau 2025, arXiv 2510.04871), after the reference code.

One small network (2 post-norm blocks) updates both a latent z and an answer y. One call of
`forward` is one segment (one deep-supervision step):

    x = embed(tokens, puzzle id)                     # 16 prefix positions for the puzzle embedding
    for cycle in 1..T:                               # T = cycles (3)
        for step in 1..n:                            # n = latent_updates (6)
            z ← net(z + y + x)                       # "latent reasoning"
        y ← net(y + z)                               # "answer update"
    logits = head(y)            at the token positions
    q_halt = Q(y[:, 0])                              # halting head only: halt when q_halt > 0

Gradient (`gradient="last_cycle"`, the reference): the first T−1 cycles run under no_grad, the
last cycle is backpropagated in full (no 1-step approximation). The carry (y, z) leaves detached.
`mixer="mlp"` swaps attention for a SwiGLU across the sequence axis (the Sudoku variant; use it
with pos_encoding="none"). EMA of the weights (0.999) is a trainer option: the presets set
`train.ema`.
"""
from __future__ import annotations

from dataclasses import dataclass

from models._recurrence import broadcast_states, check_gradient_mode, run_cycles
from models.blocks import BlockStack, HaltingHead, InputEmbedding, OutputHead, fixed_initial_state
from models.protocol import SegmentModel
from models.registry import register_model


@dataclass
class TRMConfig:
    hidden: int = 512
    num_heads: int = 8
    num_layers: int = 2           # blocks of the one network (reference L_layers)
    cycles: int = 3               # T (reference H_cycles)
    latent_updates: int = 6       # n (reference L_cycles)
    expansion: float = 4.0
    ffn_multiple: int = 256
    pos_encoding: str = "rope"    # rope | learned | none (the MLP mixer uses no positions)
    puzzle_emb_len: int = 16      # prefix positions; the puzzle embedding (hidden floats) fills the first
    attention_backend: str = "sdpa"
    mixer: str = "attention"      # attention | mlp (SwiGLU over the sequence axis)
    gradient: str = "last_cycle"  # last_cycle (reference) | one_step (HRM's rule) | full (BPTT in a segment)


@register_model("trm", config=TRMConfig,
                description="Tiny Recursive Model: one 2-block net for latent z and answer y, last cycle backpropagated")
class TRM(SegmentModel):
    iteration_count_key = "cycles"        # the training rules vary T, the cycles of one forward
    presets = {
        # EMA: 0.999 is TRM's recipe; over a few hundred steps it would keep mostly the initial
        # weights (0.999^600 ≈ 0.55), so the short presets use faster decays.
        "smoke": {"model.cycles": 2, "model.latent_updates": 2, "model.puzzle_emb_len": 4, "train.ema": 0.9},
        "cpu": {"model.cycles": 2, "model.latent_updates": 2, "train.ema": 0.99},
        # the reference's commands (docs/models/trm.md (presets)): attention, T=3, n=6, EMA 0.999; on
        # Sudoku and Maze 50000 epochs in 5000-epoch passes (10 × ⌊5000·1000/768⌋ steps), Maze and ARC n=4
        "paper": {"model.hidden": 512, "model.num_heads": 8, "model.num_layers": 2, "model.cycles": 3,
                  "model.latent_updates": 6, "model.expansion": 4.0, "model.ffn_multiple": 256,
                  "model.pos_encoding": "rope", "model.puzzle_emb_len": 16, "model.mixer": "attention",
                  "model.gradient": "last_cycle", "train.ema": 0.999},
        "paper@sudoku": {"train.steps": 65100, "train.sampler_epochs": 5000, "train.eval_every": 6510},
        "paper@maze": {"model.latent_updates": 4, "train.steps": 65100, "train.sampler_epochs": 5000,
                       "train.eval_every": 6510},
        "paper@arc": {"model.latent_updates": 4},
        "paper@arc2": {"model.latent_updates": 4},
        # the headline Sudoku-Extreme variant (87.4%): MLP mixer over the sequence, no positional encoding
        "paper-mlp": {"model.mixer": "mlp", "model.pos_encoding": "none"},
    }

    def __init__(self, config: TRMConfig, spec):
        super().__init__(config, spec)
        check_gradient_mode(config.gradient)
        if min(config.num_layers, config.cycles, config.latent_updates) < 1:
            raise ValueError("num_layers, cycles and latent_updates must all be >= 1")
        if config.mixer == "mlp" and spec.max_seq_len != spec.seq_len:
            raise ValueError("the MLP mixer needs one fixed sequence length (this task has longer evaluation splits)")
        # the reference's puzzle embedding has hidden floats, zero-padded to fill the 16 prefix positions
        self.embedding = InputEmbedding(spec.vocab_size, config.hidden, spec.max_seq_len, spec.num_puzzle_ids,
                                        config.puzzle_emb_len, config.pos_encoding, config.num_heads,
                                        puzzle_emb_dim=config.hidden)
        self.net = BlockStack(config.num_layers, hidden=config.hidden, num_heads=config.num_heads,
                              expansion=config.expansion, ffn_multiple=config.ffn_multiple,
                              backend=config.attention_backend, mixer=config.mixer,
                              seq_len=self.embedding.prefix_len + spec.seq_len)
        self.head = OutputHead(config.hidden, spec.vocab_size, self.embedding.prefix_len)
        # two outputs as in the reference (its parameter count); only q_halt is used (no_ACT_continue)
        self.q_head = HaltingHead(config.hidden, outputs=2)
        self.register_buffer("y_init", fixed_initial_state(config.hidden))
        self.register_buffer("z_init", fixed_initial_state(config.hidden))

    def initial_carry(self, batch):
        return broadcast_states(batch, self.embedding.prefix_len, {"y": self.y_init, "z": self.z_init})

    def forward(self, carry, batch):
        config = self.config
        x, rotary = self.embedding(batch)

        def latent_update(z, y):                        # z ← net(z + y + x)
            new = self.net(z, injection=y + x, rotary=rotary)
            self.trace_residual("z", new, z)
            return new

        def answer_update(y, z):                        # y ← net(y + z)
            new = self.net(y, injection=z, rotary=rotary)
            self.trace_residual("y", new, y)
            return new

        # T cycles of [n latent updates, one answer update]; by default only the last cycle is backpropagated
        y, z = run_cycles(carry["y"].to(x.dtype), carry["z"].to(x.dtype), latent_update, answer_update,
                          config.cycles, config.latent_updates, config.gradient)
        outputs = {"logits": self.head(y), "q_halt_logits": self.q_head(y)[:, 0]}
        return {"y": y.detach(), "z": z.detach()}, outputs
