"""Deep transformer: one pass through a stack of HRM's post-norm blocks, no recurrence.

    x = embed(tokens) [+ z from the previous segment];  z = blocks(x);  logits = head(z)

Depth defaults to HRM's total block count for the same task and preset (high_layers + low_layers
of HRM's resolved config: 8 at paper, 4 at cpu, 2 at smoke) unless a preset or --set gives
model.num_layers; `bench.config.resolve()` fills it in through `reference_defaults`. Built directly
(without resolve) it has the paper's 8. With train.segments > 1 the last hidden
state is carried (detached) into the next segment and added to the input, so the outer refinement
loop of HRM's training recipe can be given to a plain transformer ("the transformer in HRM's
pipeline" of the ARC Prize analysis). With one segment the carry is zero and changes nothing.
"""
from __future__ import annotations

from dataclasses import dataclass


from models.blocks import BlockStack, InputEmbedding, OutputHead
from models.protocol import SegmentModel
from models.registry import register_model


@dataclass
class TransformerConfig:
    hidden: int = 512
    num_heads: int = 8
    num_layers: int = 8           # resolve(): HRM's high_layers + low_layers (paper: 4 + 4)
    expansion: float = 4.0
    ffn_multiple: int = 256
    pos_encoding: str = "rope"    # rope | learned | none
    puzzle_emb_len: int = 1       # prefix positions for the puzzle embedding (reference: 1)
    attention_backend: str = "sdpa"


@register_model("transformer", config=TransformerConfig,
                description="deep post-norm transformer, one pass (depth = HRM's total block count)")
class Transformer(SegmentModel):
    reference_defaults = {"num_layers": lambda hrm: hrm.high_layers + hrm.low_layers}

    def __init__(self, config: TransformerConfig, spec):
        super().__init__(config, spec)
        self.embedding = InputEmbedding(spec.vocab_size, config.hidden, spec.max_seq_len, spec.num_puzzle_ids,
                                        config.puzzle_emb_len, config.pos_encoding, config.num_heads)
        self.blocks = BlockStack(config.num_layers, hidden=config.hidden, num_heads=config.num_heads,
                                 expansion=config.expansion, ffn_multiple=config.ffn_multiple,
                                 backend=config.attention_backend)
        self.head = OutputHead(config.hidden, spec.vocab_size, self.embedding.prefix_len)

    def initial_carry(self, batch):
        return self.zero_state_carry(batch, self.embedding.prefix_len, self.config.hidden)

    def forward(self, carry, batch):
        x, rotary = self.embedding(batch)
        z = self.blocks(x, injection=carry["z"].to(x.dtype), rotary=rotary)
        return {"z": z}, {"logits": self.head(z)}
