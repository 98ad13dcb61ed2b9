"""HRM's and TRM's numbers must not drift. Checked once against the public reference code (CPU, fp32,
weights mapped one to one: forward, losses and gradients bitwise identical; docs/reference.md), they
are guarded here by recorded outputs of a fixed tiny configuration: two segments (the second from
the detached carry of the first), logits, a loss and the sum of |gradient| over every parameter.
A change to initialisation, the recurrence, the gradient rule or the blocks moves these numbers;
if such a change is intended, re-check against the reference before re-recording."""
from __future__ import annotations

import pytest
import torch

from models.registry import create_model
from tasks.protocol import TaskSpec

RECORDED = {
    "hrm": (dict(high_layers=2, low_layers=2),
            -6.6693061441, [0.0482105017, -0.5583850145, 1.0508176088, 0.314073801, -0.8651847839, 0.7630300522,
                            0.3979030252, -0.7707516551, 0.7383860946], -17.4758262634, 375.45876621),
    "trm": (dict(num_layers=2, cycles=2, latent_updates=2, puzzle_emb_len=4),
            201.6229599938, [1.2140258551, 0.49322173, 0.9324890375, 0.6177871823, 0.6985090375, 0.5106115341,
                             0.9188715219, 0.6068074107, 0.7253563404], -17.1920166016, 345.74812187),
}


@pytest.mark.parametrize("name", list(RECORDED))
def test_outputs_of_a_fixed_tiny_config_are_the_recorded_ones(name):
    config, logits_sum, corner, loss_value, gradient_sum = RECORDED[name]
    torch.manual_seed(0)
    spec = TaskSpec(vocab_size=11, seq_len=16, num_puzzle_ids=3)
    model = create_model(name, spec, hidden=32, num_heads=2, ffn_multiple=32, **config)
    g = torch.Generator().manual_seed(1)
    batch = {"inputs": torch.randint(1, 11, (4, 16), generator=g),
             "labels": torch.randint(2, 11, (4, 16), generator=g), "puzzle_ids": torch.tensor([0, 1, 2, 1])}
    carry = model.initial_carry(batch)
    for _ in range(2):
        carry, outputs = model(carry, batch)
        carry = {k: v.detach() for k, v in carry.items()}
    logits = outputs["logits"]
    loss = (torch.nn.functional.cross_entropy(logits.flatten(0, 1), batch["labels"].flatten())
            + outputs["q_halt_logits"].sum())
    loss.backward()
    gradient = sum(float(p.grad.double().abs().sum()) for p in model.parameters() if p.grad is not None)
    assert float(logits.double().sum()) == pytest.approx(logits_sum, rel=1e-5)
    assert logits[0, :3, :3].flatten().tolist() == pytest.approx(corner, rel=1e-5, abs=1e-6)
    assert float(loss) == pytest.approx(loss_value, rel=1e-6)
    assert gradient == pytest.approx(gradient_sum, rel=1e-5)
