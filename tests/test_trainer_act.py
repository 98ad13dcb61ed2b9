"""Trainer behaviour HRM/TRM rely on: ACT halting and exploration, the Q-learning target, detached
carry, stablemax CE, EMA, and the number of segments run at evaluation."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from bench.config import TrainConfig
from bench.losses import sequence_mean_loss, stablemax_cross_entropy
from bench.trainer import Sampler, Trainer
from models.protocol import SegmentModel
from models.registry import create_model
from tasks.protocol import TaskData, TaskSpec

SPEC = TaskSpec(vocab_size=4, seq_len=5)


class ScriptedQ(SegmentModel):
    """A tiny model whose Q head says whatever the test scripts; counts its forward calls."""

    def __init__(self, q_halt: float = -5.0, q_continue: float | None = 5.0):
        super().__init__(None, SPEC)
        self.bias = nn.Parameter(torch.zeros(SPEC.vocab_size))
        self.q_halt, self.q_continue = q_halt, q_continue
        self.calls = 0

    def initial_carry(self, batch):
        return {"h": torch.zeros(batch["inputs"].shape[0], 1)}

    def forward(self, carry, batch):
        self.calls += 1
        size, length = batch["inputs"].shape
        logits = F.one_hot(batch["inputs"], SPEC.vocab_size).float() + self.bias
        outputs = {"logits": logits, "q_halt_logits": torch.full((size,), self.q_halt) + 0 * self.bias.sum()}
        if self.q_continue is not None:
            outputs["q_continue_logits"] = torch.full((size,), self.q_continue) + 0 * self.bias.sum()
        return {"h": carry["h"] + 1}, outputs


def make_data(size: int = 32, seed: int = 0) -> TaskData:
    generator = torch.Generator().manual_seed(seed)
    inputs = torch.randint(0, SPEC.vocab_size, (size, SPEC.seq_len), generator=generator)
    return TaskData(inputs, inputs.clone(), torch.zeros(size, dtype=torch.long))


def make_trainer(model, data_size: int = 10_000, **train) -> Trainer:
    config = TrainConfig(**{"batch_size": 8, "lr_warmup_steps": 0, "lr": 1e-2, **train})
    config.validate()
    trainer = Trainer(model, SPEC, config, "cpu", progress=False)
    trainer.sampler = Sampler(data_size, seed=0)
    return trainer


def test_act_halts_at_max_steps_when_the_q_head_never_halts():
    torch.manual_seed(0)
    trainer = make_trainer(ScriptedQ(q_halt=-5.0, q_continue=5.0), segments=4, act=True, halt_exploration_prob=0.0)
    data = make_data(10_000)
    for step in range(1, 9):
        trainer.train_step(data)
        expected = step % 4 == 0
        assert bool(trainer.halted.all()) is expected and bool(trainer.halted.any()) is expected
        assert int(trainer.steps_in_carry.max()) == (step - 1) % 4 + 1
    assert trainer.examples == 8 * 2          # two rounds of fresh examples (at steps 1 and 5)


def test_act_halts_early_when_the_q_head_says_so():
    trainer = make_trainer(ScriptedQ(q_halt=5.0, q_continue=-5.0), segments=4, act=True, halt_exploration_prob=0.0)
    metrics = trainer.train_step(make_data(10_000))
    assert trainer.halted.all() and metrics["mean_segments"] == 1.0


def test_trm_style_halting_uses_q_halt_sign_without_an_extra_forward():
    model = ScriptedQ(q_halt=0.5, q_continue=None)
    trainer = make_trainer(model, segments=4, act=True, halt_exploration_prob=0.0)
    trainer.train_step(make_data(10_000))
    assert trainer.halted.all()
    assert model.calls == 1                    # no Q-learning target forward without q_continue


def test_exploration_draws_a_minimum_within_2_to_max_steps():
    torch.manual_seed(0)
    segments = 5
    # the Q head wants to halt at once; exploration (p = 1) forces a minimum drawn from {2..segments}
    trainer = make_trainer(ScriptedQ(q_halt=5.0, q_continue=-5.0), segments=segments, act=True,
                           halt_exploration_prob=1.0, batch_size=512)
    data = make_data(10_000)
    lengths = []
    for _ in range(12):
        trainer.train_step(data)
        lengths += trainer.steps_in_carry[trainer.halted].tolist()
    assert set(lengths) == set(range(2, segments + 1))
    # and without exploration every row halts after one segment
    trainer = make_trainer(ScriptedQ(q_halt=5.0, q_continue=-5.0), segments=segments, act=True,
                           halt_exploration_prob=0.0, batch_size=512)
    trainer.train_step(data)
    assert trainer.steps_in_carry.tolist() == [1] * 512 and trainer.halted.all()


def test_q_learning_target_comes_from_one_extra_forward():
    model = ScriptedQ(q_halt=-1.0, q_continue=2.0)
    trainer = make_trainer(model, segments=2, act=True, halt_exploration_prob=0.0)
    data = make_data(10_000)
    metrics = trainer.train_step(data)
    assert model.calls == 2
    # not the last step: target = sigmoid(max(next q_halt, next q_continue)) = sigmoid(2)
    expected = F.binary_cross_entropy_with_logits(torch.tensor(2.0), torch.sigmoid(torch.tensor(2.0))).item()
    assert metrics["q_continue_loss"] == pytest.approx(expected, rel=1e-6)
    metrics = trainer.train_step(data)
    # last step: target = sigmoid(next q_halt) = sigmoid(-1)
    expected = F.binary_cross_entropy_with_logits(torch.tensor(2.0), torch.sigmoid(torch.tensor(-1.0))).item()
    assert metrics["q_continue_loss"] == pytest.approx(expected, rel=1e-6)
    # the q_halt target is "whole sequence right": logits are one-hot(inputs) = labels here
    assert metrics["exact_accuracy"] == 1.0
    halt_loss = F.binary_cross_entropy_with_logits(torch.tensor(-1.0), torch.tensor(1.0)).item()
    assert metrics["q_halt_loss"] == pytest.approx(halt_loss, rel=1e-6)
    # total = lm + 0.5·(q_halt + q_continue)
    assert metrics["loss"] == pytest.approx(metrics["lm_loss"] + 0.5 * (halt_loss + expected), rel=1e-5)


@pytest.mark.parametrize("name, config", [
    ("transformer", dict(hidden=16, num_heads=2, ffn_multiple=16, num_layers=1)),
    ("hrm", dict(hidden=16, num_heads=2, ffn_multiple=16, high_layers=1, low_layers=1)),
])
def test_carry_is_detached_between_segments(name, config):
    """The transformer returns its carry with a graph attached; the trainer must cut it, or the second
    segment's backward would run through the first segment's freed graph."""
    torch.manual_seed(0)
    model = create_model(name, SPEC, **config)
    data = make_data(64)
    trainer = make_trainer(model, len(data), segments=3)
    for _ in range(3):
        trainer.train_step(data)
        assert all(v.grad_fn is None and not v.requires_grad for v in trainer.carry.values())
    assert trainer.steps_in_carry.tolist() == [3] * 8 and trainer.halted.all()


def test_stablemax_cross_entropy_matches_a_float64_hand_computation():
    logits = torch.tensor([[[2.0, -1.0, 0.5], [0.0, -3.0, 1.0]]])
    labels = torch.tensor([[0, 1]])
    # s(x) = x + 1 (x ≥ 0), 1/(1 − x) (x < 0):  row 1: s = (3, 1/2, 3/2), sum 5;  row 2: s = (1, 1/4, 2), sum 13/4
    expected = torch.tensor([[-math.log(3 / 5), -math.log((1 / 4) / (13 / 4))]], dtype=torch.float64)
    loss = stablemax_cross_entropy(logits, labels)
    assert loss.dtype == torch.float64
    torch.testing.assert_close(loss, expected, rtol=1e-12, atol=1e-12)
    ignored = stablemax_cross_entropy(logits, torch.tensor([[0, -100]]), ignore_index=-100)
    assert ignored[0, 1] == 0 and ignored[0, 0] == pytest.approx(-math.log(3 / 5), rel=1e-12)
    # the per-sequence mean divides by the supervised tokens of that sequence
    mean = sequence_mean_loss(ignored, torch.tensor([[0, -100]]), ignore_index=-100)
    assert mean.item() == pytest.approx(-math.log(3 / 5), rel=1e-12)


def test_ema_update_and_evaluation_uses_the_ema_copy():
    torch.manual_seed(0)
    model = ScriptedQ()
    trainer = make_trainer(model, ema=0.9, lr=0.1)
    data = make_data(10_000)
    ema = model.bias.detach().clone()
    for _ in range(3):
        trainer.train_step(data)
        ema = 0.9 * ema + 0.1 * model.bias.detach()
        torch.testing.assert_close(trainer.ema["bias"], ema)
    assert not torch.allclose(ema, model.bias.detach())      # the update really differs from the live weights
    shadow = trainer.eval_model()
    torch.testing.assert_close(shadow.bias.detach(), ema)
    assert shadow is not model


@pytest.mark.parametrize("k", [1, 3, 7])
def test_evaluation_with_k_segments_runs_exactly_k_forwards(k):
    model = ScriptedQ(q_halt=5.0, q_continue=-5.0)      # the Q head would halt at once
    trainer = make_trainer(model, segments=2, eval_batch_size=64)
    data = make_data(100)                              # two evaluation batches
    result = trainer.evaluate(data, segments=k)        # fixed halting (reference): all k segments
    assert model.calls == 2 * k
    assert result.segments_used.tolist() == [k] * 100
    model.calls = 0
    trainer.config.eval_segments = k                   # the train.eval_segments knob
    trainer.evaluate(data)
    assert model.calls == 2 * k


def test_learned_halting_evaluation_stops_when_every_row_halts():
    model = ScriptedQ(q_halt=5.0, q_continue=-5.0)
    trainer = make_trainer(model, segments=4, eval_batch_size=64)
    result = trainer.evaluate(make_data(50), halting="learned")
    assert model.calls == 1 and result.segments_used.float().mean().item() == 1.0
    model.calls = 0
    model.q_halt = -5.0                                # never halts: runs to the limit
    result = trainer.evaluate(make_data(50), halting="learned")
    assert model.calls == 4 and result.segments_used.tolist() == [4] * 50
