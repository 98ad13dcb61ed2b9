"""Arithmetic length-extrapolation task: generation, encoding, position schemes, curve."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from bench.matching import prepare
from bench.runner import curve_reach, execute, extrapolation_curves
from models.blocks import InputEmbedding
from tasks.arithmetic import (DIGIT_0, EQUALS, PAD, PLUS, SLOT, TIMES, abacus_positions, decode, encode, generate,
                              sequence_length)
from tasks.protocol import IGNORE_LABEL
from tasks.registry import create_task


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("RECURRENT_BENCH_CACHE", str(tmp_path / "cache"))


def small(name="addition", **values):
    config = dict(train_digits=3, eval_digits=7, train_size=200, test_size=20)
    config.update(values)
    return create_task(name, **config)


def test_generator_is_deterministic():
    first = generate("+", 50, 1, 5, sequence_length("+", 5), (0, 0))
    again = generate("+", 50, 1, 5, sequence_length("+", 5), (0, 0))
    other = generate("+", 50, 1, 5, sequence_length("+", 5), (1, 0))
    for key in first:
        np.testing.assert_array_equal(first[key], again[key])
    assert not np.array_equal(first["inputs"], other["inputs"])


@pytest.mark.parametrize("name, operation", [("addition", lambda a, b: a + b),
                                             ("multiplication", lambda a, b: a * b)])
def test_answers_are_right_and_lengths_as_configured(name, operation):
    task = small(name)
    for split in ["train", "test", *[f"test_length_{n}" for n in range(1, 8)]]:
        data = task.build(split)
        assert data.inputs.shape[1] == task.spec.seq_len
        for row in range(len(data)):
            a, b, answer = decode(data.inputs[row], data.labels[row])
            assert answer == operation(a, b), (split, a, b, answer)
            if split.startswith("test_length_"):
                digits = int(split.removeprefix("test_length_"))
                assert len(str(a)) == len(str(b)) == digits
            else:  # nothing in training (or its in-distribution test) is longer than the range
                assert 1 <= len(str(a)) <= 3 and 1 <= len(str(b)) <= 3
                assert (data.inputs[row] != PAD).sum() <= sequence_length(task.operation, 3)


def test_longest_problem_fills_the_sequence():
    for name, operation in (("addition", "+"), ("multiplication", "*")):
        task = small(name)
        assert task.spec.seq_len == sequence_length(operation, 7)
        a = b = 10**7 - 1
        inputs, _ = encode(operation, a, b, task.spec.seq_len)
        assert inputs[-1] == SLOT  # the answer slots of the longest problem end exactly at the end


@settings(max_examples=200, deadline=None)
@given(a=st.integers(0, 10**12 - 1), b=st.integers(0, 10**12 - 1), operation=st.sampled_from("+*"))
def test_encoding_round_trip(a, b, operation):
    inputs, labels = encode(operation, a, b, sequence_length(operation, 12))
    answer = a + b if operation == "+" else a * b
    assert decode(inputs, labels) == (a, b, answer)
    equals = int(np.flatnonzero(inputs == EQUALS)[0])
    assert (labels[:equals + 1] == IGNORE_LABEL).all()          # the question is not supervised
    assert (labels[equals + 1:] != IGNORE_LABEL).all()          # answer digits and PAD are
    written = len(str(answer))
    assert (labels[equals + 1 + written:] == PAD).all()


def test_encoding_layout_is_reversed_digits():
    inputs, labels = encode("+", 123, 98, 14)
    digit = lambda d: d + DIGIT_0  # noqa: E731
    assert inputs.tolist() == [digit(3), digit(2), digit(1), PLUS, digit(8), digit(9), EQUALS,
                               SLOT, SLOT, SLOT, SLOT, PAD, PAD, PAD]
    assert labels.tolist()[7:] == [digit(1), digit(2), digit(2), PAD, PAD, PAD, PAD]  # 221 reversed
    inputs, _ = encode("*", 5, 7, 8)
    assert inputs.tolist()[:6] == [digit(5), TIMES, digit(7), EQUALS, SLOT, SLOT]


def test_abacus_index_restarts_per_number():
    inputs = torch.from_numpy(encode("+", 123, 98, 14)[0].astype(np.int64))[None]
    positions = abacus_positions(inputs, torch.tensor([0]))
    #                      3  2  1  +  8  9  =  _  _  _  _  PAD…
    assert positions[0].tolist() == [1, 2, 3, 0, 1, 2, 0, 1, 2, 3, 4, 0, 0, 0]
    shifted = abacus_positions(inputs, torch.tensor([5]))
    assert shifted[0].tolist() == [6, 7, 8, 0, 6, 7, 0, 6, 7, 8, 9, 0, 0, 0]


def test_abacus_training_offsets_are_random_and_test_offsets_zero():
    task = small(positions="abacus", max_offset=20)
    train = task.build("train")
    torch.manual_seed(0)
    offsets = {int(train.batch(torch.arange(64))["positions"][:, 0].min()) for _ in range(10)}
    assert len(offsets) > 1 and min(offsets) >= 1 and max(offsets) <= 21
    test = task.build("test_length_7")
    assert test.batch(torch.arange(len(test)))["positions"][:, 0].eq(1).all()  # first digit: index 1


@pytest.mark.parametrize("scheme", ["randomized", "random_offset"])
def test_spread_schemes_give_increasing_distinct_positions(scheme):
    task = small(positions=scheme, position_range=60)
    train = task.build("train")
    batch = train.batch(torch.arange(32))
    positions, inputs = batch["positions"], batch["inputs"]
    for row in range(len(inputs)):
        used = int((inputs[row] != PAD).sum())
        problem = positions[row, :used]
        assert (problem[1:] > problem[:-1]).all()                    # order kept
        assert len(set(positions[row].tolist())) == positions.shape[1]  # every token its own index
        assert positions[row].max() < task.spec.max_seq_len == 60
        if scheme == "random_offset":
            assert (problem[1:] - problem[:-1]).eq(1).all()          # one contiguous block
    assert not torch.equal(train.batch(torch.arange(32))["positions"], positions)  # fresh per batch
    # evaluation positions are fixed and reproducible
    assert torch.equal(task.build("test_length_5").positions, small(positions=scheme, position_range=60)
                       .build("test_length_5").positions)
    if scheme == "random_offset":
        test = task.build("test_length_7")
        assert torch.equal(test.positions[0], torch.arange(task.spec.seq_len))


def test_sequence_scheme_supplies_no_positions():
    batch = small(positions="sequence").build("train").batch(torch.arange(4))
    assert "positions" not in batch


@pytest.mark.parametrize("scheme", ["sequence", "randomized", "random_offset", "abacus"])
def test_position_table_covers_every_index(scheme):
    task = small(positions=scheme)
    for split in ["train", "test_length_7"]:
        batch = task.build(split).batch(torch.arange(20))
        largest = batch.get("positions", torch.tensor([task.spec.seq_len - 1])).max()
        assert largest < task.spec.max_seq_len
    # the embedding accepts the batch and the learned table covers it
    embedding = InputEmbedding(task.spec.vocab_size, 16, task.spec.max_seq_len, pos_encoding="learned")
    x, _ = embedding(batch)
    assert x.shape == (20, task.spec.seq_len, 16)


def test_bad_configs_are_value_errors():
    with pytest.raises(ValueError):
        small(train_digits=9, eval_digits=7)
    with pytest.raises(ValueError):
        small(positions="sinusoidal")
    with pytest.raises(ValueError):
        small(positions="randomized", position_range=5)


def test_curve_has_one_point_per_length_and_reach():
    task = small()
    accuracies = {1: 1.0, 2: 1.0, 3: 0.995, 4: 0.7, 5: 0.2, 6: 0.6, 7: 0.0}
    metrics = {"test": {"exact_accuracy": 1.0, "token_accuracy": 1.0}}
    metrics.update({f"test_length_{n}": {"exact_accuracy": a, "token_accuracy": a} for n, a in accuracies.items()})
    curves = extrapolation_curves(task, metrics)
    assert list(curves) == ["length"]
    assert [p["x"] for p in curves["length"]] == list(range(1, 8))
    assert curve_reach(curves) == {"length": {"exact_0.99": 3, "exact_0.5": 4}}  # 6 is past the first drop


def test_scorer_exact_accuracy_per_length():
    task = small()
    data = task.build("test")
    predictions = data.labels.clamp_min(0).clone()
    wrong = [i for i, d in enumerate(data.meta["digits"]) if d == 3]
    predictions[wrong[0], -1] = DIGIT_0  # a digit where PAD belongs
    score = task.score(data, predictions)
    count = sum(d == 3 for d in data.meta["digits"])
    assert score["exact_accuracy_by_digits"][3] == pytest.approx(1 - 1 / count)
    assert score["exact_accuracy"] == pytest.approx(1 - 1 / len(data))


@pytest.mark.parametrize("scheme, encoding", [("abacus", "rope"), ("randomized", "learned")])
def test_smoke_run_records_the_length_curve(tmp_path, scheme, encoding):
    config = prepare("transformer", "addition", "smoke",
                     [f"task.positions={scheme}", f"model.pos_encoding={encoding}"])
    summary = execute(config, tmp_path / "results", progress=False)
    points = summary["curves"]["length"]
    assert [p["x"] for p in points] == list(range(1, config.task.eval_digits + 1))
    assert set(summary["curve_reach"]["length"]) == {"exact_0.99", "exact_0.5"}
    assert summary["config"]["task"]["positions"] == scheme
