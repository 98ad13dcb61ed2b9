"""Maze size extrapolation: train at one grid, evaluation splits at larger grids on a curve."""
from __future__ import annotations

import pytest
import torch

from bench.matching import prepare
from bench.runner import execute
from tasks._maze_generator import PATH, WALL
from tasks.protocol import IGNORE_LABEL
from tasks.registry import create_task


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("RECURRENT_BENCH_CACHE", str(tmp_path / "cache"))


def small(**values):
    config = dict(grid=6, train_size=16, test_size=8, eval_grids=[8, 10])
    config.update(values)
    return create_task("maze", **config)


def test_without_eval_grids_nothing_changes():
    task = create_task("maze", grid=6, train_size=16, test_size=8)
    assert task.eval_splits() == ["test"] and task.curve_point("test") is None
    assert task.spec.max_seq_len == 36
    assert "positions" not in task.build("train").batch(torch.arange(2))


@pytest.mark.parametrize("layout", ["positions", "canvas"])
def test_larger_grids_build_and_score(layout):
    task = small(eval_layout=layout)
    assert task.eval_splits() == ["test", "test_grid_8", "test_grid_10"]
    assert [task.curve_point(s) for s in task.eval_splits()] == [("grid", 6), ("grid", 8), ("grid", 10)]
    assert task.spec.max_seq_len == 100
    for split, grid in (("train", 6), ("test", 6), ("test_grid_8", 8), ("test_grid_10", 10)):
        data = task.build(split)
        assert data.meta["grid"] == grid and len(data) == (16 if split == "train" else 8)
        expected_len = 100 if layout == "canvas" else grid * grid
        assert data.inputs.shape[1] == expected_len
        answers = data.labels.clamp_min(0)  # the stored shortest path (canvas margin → PAD)
        assert task.score(data, answers)["exact_accuracy"] == 1.0
        broken = answers.clone()
        broken[broken == PATH] = WALL      # the path erased: no longer a valid answer
        assert task.score(data, broken)["exact_accuracy"] == 0.0
        assert task.stats(data)["grid"] == grid


def test_positions_share_one_row_width():
    task = small()
    batch = task.build("test_grid_8").batch(torch.arange(2))
    rows, cols = torch.arange(64) // 8, torch.arange(64) % 8
    assert torch.equal(batch["positions"][0], rows * 10 + cols)  # width 10 = the largest grid
    train = task.build("train").batch(torch.arange(2))
    assert train["positions"][0, 6].item() == 10                  # second row starts one width on


def test_canvas_margin_is_ignored():
    task = small(eval_layout="canvas")
    data = task.build("train")
    canvas = data.labels.view(-1, 10, 10)
    assert (canvas[:, 6:, :] == IGNORE_LABEL).all() and (canvas[:, :, 6:] == IGNORE_LABEL).all()
    assert (data.inputs.view(-1, 10, 10)[:, 6:, :] == 0).all()


def test_larger_grids_are_deterministic_and_harder():
    first, again = small().build("test_grid_10"), small().build("test_grid_10")
    assert torch.equal(first.inputs, again.inputs)
    assert min(first.meta["path_lengths"]) > small().grid_min_path(10) > small().grid_min_path(6)


def test_eval_grids_must_be_larger():
    with pytest.raises(ValueError):
        small(eval_grids=[6])
    with pytest.raises(ValueError):
        small(eval_layout="tiles")


def test_smoke_run_records_the_grid_curve(tmp_path):
    config = prepare("transformer", "maze", "smoke", ["task.eval_grids=[8]", "train.eval_segments=3"])
    summary = execute(config, tmp_path / "results", progress=False)
    assert [p["x"] for p in summary["curves"]["grid"]] == [6, 8]
    assert summary["metrics"]["test_grid_8"]["mean_segments_used"] == 3
    assert "grid" in summary["curve_reach"]
