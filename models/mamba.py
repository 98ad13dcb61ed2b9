"""Bidirectional Mamba stack for non-causal tasks (no attention, no MLP: Mamba's block has neither).

    x = embed(tokens)                                  (no positional encoding by default: the scan is ordered)
    repeat num_layers:  x = x + BiMamba(rms_norm(x))   # pre-norm residual, as the Mamba reference
    logits = head(rms_norm(x))

BiMamba (models/mamba_ops.py `BidirectionalMamba`) scans the sequence forward and, with separate
conv/x_proj/dt_proj/A/D, the flipped sequence backward, sums the two and projects out; the input
and output projections are shared by both directions. Per layer: 6·h² + 2·(inner·(conv_width + 1)
+ inner·(dt_rank + 2·state_size) + dt_rank·inner + inner + inner·state_size + inner) parameters
(inner = expand·h, dt_rank = ceil(h/16)). On CUDA with mamba-ssm installed the scan runs on its
kernel, otherwise on models/mamba_ops.py's custom ops (numba-compiled CPU kernels, ≈ 30× mambapy's parallel scan). Depth defaults to HRM's total block
count for the task and preset. Deviation from HRM's blocks: mambapy's initialisation (PyTorch
default for conv/dt, Mamba's dt/A init) for the Mamba pieces; our LeCun init for the projections.
"""
from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from models.blocks import InputEmbedding, OutputHead, rms_norm
from models.mamba_ops import BidirectionalMamba
from models.protocol import SegmentModel
from models.registry import register_model


@dataclass
class MambaConfig:
    hidden: int = 512
    num_layers: int = 8          # resolve(): HRM's high_layers + low_layers
    state_size: int = 16         # N
    expand: int = 2              # inner = expand · hidden
    conv_width: int = 4
    pos_encoding: str = "none"   # none | learned | rope (= none here: RoPE acts inside attention, Mamba has none)
    puzzle_emb_len: int = 1

    def __post_init__(self):
        if min(self.num_layers, self.state_size, self.expand, self.conv_width, self.hidden) < 1:
            raise ValueError("model.hidden, num_layers, state_size, expand and conv_width must be >= 1")


@register_model("mamba", config=MambaConfig,
                description="bidirectional Mamba stack (mamba-ssm kernels on CUDA, compiled numba kernels on CPU)")
class Mamba(SegmentModel):
    reference_defaults = {"num_layers": lambda hrm: hrm.high_layers + hrm.low_layers}

    def __init__(self, config: MambaConfig, spec):
        super().__init__(config, spec)
        self.embedding = InputEmbedding(spec.vocab_size, config.hidden, spec.max_seq_len, spec.num_puzzle_ids,
                                        config.puzzle_emb_len, config.pos_encoding)
        self.layers = nn.ModuleList(BidirectionalMamba(config.hidden, config.state_size, config.expand,
                                                       config.conv_width) for _ in range(config.num_layers))
        self.head = OutputHead(config.hidden, spec.vocab_size, self.embedding.prefix_len)

    def initial_carry(self, batch):
        # like the transformer: the last hidden state is carried into the next deep-supervision
        # segment and added to the input, so train.segments gives Mamba the same outer loop
        return self.zero_state_carry(batch, self.embedding.prefix_len, self.config.hidden)

    def forward(self, carry, batch):
        x, _ = self.embedding(batch)
        x = x + carry["z"].to(x.dtype)
        for layer in self.layers:
            x = x + layer(rms_norm(x))
        return {"z": x}, {"logits": self.head(rms_norm(x))}
