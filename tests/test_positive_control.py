"""The positive control: prefix sums, DeepThinking's recurrent net with recall, progressive loss, and
test-time compute curves on every evaluation split."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from bench.config import ConfigError, resolve
from bench.matching import prepare
from bench.runner import build, execute
from bench.trainer import Trainer
from models.dtnet import DTNet, DTNetConfig
from tasks.prefix_sums import ONE, ZERO, PrefixSumsConfig, PrefixSumsTask
from tasks.protocol import TaskSpec


def small_task(**changes) -> PrefixSumsTask:
    return PrefixSumsTask(PrefixSumsConfig(**{"train_length": 10, "eval_lengths": (20, 40), "train_size": 300,
                                              "test_size": 50, **changes}))


def test_labels_are_prefix_parities_and_splits_are_disjoint_and_seeded(tmp_path, monkeypatch):
    monkeypatch.setenv("RECURRENT_BENCH_CACHE", str(tmp_path))
    task = small_task()
    assert task.eval_splits() == ["test", "test_length_20", "test_length_40"]
    train, test = task.build("train"), task.build("test")
    for data in (train, test, task.build("test_length_40")):
        bits = (data.inputs - ZERO).numpy()
        assert set(np.unique(data.inputs.numpy())) <= {ZERO, ONE}
        parity = np.array([[sum(row[:i + 1]) % 2 for i in range(len(row))] for row in bits])
        assert np.array_equal((data.labels - ZERO).numpy(), parity)
    assert task.build("test_length_40").inputs.shape == (50, 40)
    train_rows = {bytes(row) for row in train.inputs.numpy().astype(np.int8)}
    test_rows = [bytes(row) for row in test.inputs.numpy().astype(np.int8)]
    assert len(train_rows) == 300 and len(set(test_rows)) == 50 and not train_rows & set(test_rows)
    assert torch.equal(small_task().build("test").inputs, test.inputs)            # seeded
    assert not torch.equal(small_task(seed=1).build("test").inputs, test.inputs)
    assert task.curve_point("test") == ("length", 10) and task.curve_point("test_length_40") == ("length", 40)


def test_too_many_distinct_strings_is_a_clear_error(tmp_path, monkeypatch):
    from tasks.protocol import DataError

    monkeypatch.setenv("RECURRENT_BENCH_CACHE", str(tmp_path))
    with pytest.raises(DataError, match="only 16 strings of 4 bits"):
        small_task(train_length=4, train_size=20).build("train")


@pytest.mark.parametrize("grid", [False, True])
def test_dtnet_shapes_in_1d_and_2d_and_any_size(grid):
    spec = TaskSpec(vocab_size=6, seq_len=36, grid=grid)
    torch.manual_seed(0)
    model = DTNet(DTNetConfig(hidden=8, iterations=3), spec).eval()
    for length in (36, 81):   # a larger grid or a longer string than in training
        batch = {"inputs": torch.randint(0, 6, (2, length))}
        _, outputs = model({}, batch)
        assert outputs["logits"].shape == (2, length, 6)
    assert model.conv_in.weight.dim() == (4 if grid else 3)


@pytest.mark.parametrize("recall", [True, False])
def test_recall_re_injects_the_input_every_iteration(recall):
    spec = TaskSpec(vocab_size=3, seq_len=12)
    torch.manual_seed(0)
    model = DTNet(DTNetConfig(hidden=8, iterations=2, recall=recall), spec)
    state = torch.rand(1, 8, 12)
    first, second = ({"inputs": torch.randint(1, 3, (1, 12), generator=torch.Generator().manual_seed(s))}
                     for s in (1, 2))
    with torch.no_grad():
        same_state_other_input = not torch.allclose(model.iterate(state, first, 2), model.iterate(state, second, 2))
    assert same_state_other_input == recall
    assert (model.recall is not None) == recall and (not recall or model.recall.in_channels == 8 + 3)


def test_untied_control_has_one_stack_per_iteration_and_cannot_run_longer():
    spec = TaskSpec(vocab_size=3, seq_len=8)
    untied = DTNet(DTNetConfig(hidden=8, iterations=4, tied=False), spec)
    assert len(untied.stacks) == 4 and len(DTNet(DTNetConfig(hidden=8, iterations=4), spec).stacks) == 1
    with pytest.raises(ValueError, match="cannot run"):
        DTNetConfig(hidden=8, iterations=4, tied=False, eval_iterations=8)


def test_progressive_loss_backpropagates_only_the_last_k_iterations(monkeypatch):
    """n iterations without gradient (no graph), then k with it, n and k drawn from the seeded RNG."""
    run = resolve("dtnet", "prefix_sums", "smoke", ["train.progressive_alpha=1", "model.iterations=6",
                                                     "model.tied=false", "train.batch_size=4"])
    task, model = build(run)
    trainer = Trainer(model, task.spec, run.train, "cpu", progress=False)
    calls: list[tuple[int, bool]] = []
    for index, stack in enumerate(model.stacks):
        stack.register_forward_hook(lambda module, args, out, index=index: calls.append((index, out.requires_grad)))
    torch.manual_seed(123)
    expected_n = int(torch.randint(0, 6, ()))
    expected_k = int(torch.randint(1, 6 - expected_n + 1, ()))
    torch.manual_seed(123)
    batch = {k: v[:4] for k, v in task.build("train").batch(torch.arange(4)).items()}
    logits = trainer._progressive_logits(batch)
    assert [index for index, _ in calls] == list(range(expected_n + expected_k))   # stacks n.., not from 0
    assert [grad for _, grad in calls] == [False] * expected_n + [True] * expected_k
    logits.sum().backward()
    untouched = [stack for index, stack in enumerate(model.stacks) if index < expected_n]
    assert all(p.grad is None for stack in untouched for p in stack.parameters())


def test_progressive_loss_is_refused_for_models_without_an_iteration_count_and_with_segments(tmp_path):
    for model in ("transformer", "hrm"):   # hrm has a count, but no state to continue iteration by iteration
        with pytest.raises(ConfigError, match="continues one state iteration by iteration; '"):
            execute(prepare(model, "prefix_sums", "smoke", ["train.progressive_alpha=0.5", "train.segments=1"]), tmp_path)
    with pytest.raises(ConfigError, match="segments=1"):
        resolve("dtnet", "prefix_sums", "smoke", ["train.progressive_alpha=0.5", "train.segments=2"])
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("model_name", ["dtnet", "looped"])
def test_a_run_records_test_time_curves_on_every_split(model_name, tmp_path, monkeypatch):
    monkeypatch.setenv("RECURRENT_BENCH_CACHE", str(tmp_path / "cache"))
    summary = execute(prepare(model_name, "prefix_sums", "smoke", ["train.progressive_alpha=0.5",
                                                                   "train.test_time_points=1,2,4"]),
                      tmp_path / "runs", progress=False)
    assert summary["status"] == "complete"
    by_split = summary["diagnostics"]["test_time_compute_by_split"]
    assert list(by_split) == ["test", "test_length_20"]
    key = f"model.{'eval_iterations' if model_name == 'dtnet' else 'eval_loops'}"
    for curves in by_split.values():
        assert [point["x"] for point in curves[key]["points"]] == [1, 2, 4]
    longer, shorter = (by_split[s][key]["points"][0]["flops_per_example"] for s in ("test_length_20", "test"))
    assert longer > shorter                                   # measured on that split's own examples


def test_the_report_tabulates_test_time_compute_on_every_split(tmp_path, monkeypatch):
    from bench.report import load_runs, test_time_by_split_table

    monkeypatch.setenv("RECURRENT_BENCH_CACHE", str(tmp_path / "cache"))
    summary = execute(prepare("dtnet", "prefix_sums", "smoke", ["train.test_time_points=1,3"]), tmp_path / "runs",
                      progress=False)
    variants, _ = load_runs(tmp_path / "runs")
    table = test_time_by_split_table(variants)
    assert list(table["split"]) == ["test", "test_length_20"]
    for _, row in table.iterrows():
        points = summary["diagnostics"]["test_time_compute_by_split"][row["split"]]["model.eval_iterations"]["points"]
        assert [row["1"], row["3"]] == [f"{100 * p['exact_accuracy']:.1f}" for p in points]
