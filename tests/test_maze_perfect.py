"""Perfect mazes (task.kind=perfect, DeepThinking's depth-first carving): trees, seeded, disjoint splits,
labels = the one path, odd sides enforced; Maze-Hard's data and run identities unchanged."""
from __future__ import annotations

import hashlib

import numpy as np
import pytest
import torch

from bench.cli import main
from bench.config import resolve
from tasks._maze_generator import GOAL, OPEN, PATH, START, WALL, generate, generate_perfect
from tasks.registry import create_task
from test_maze import bfs_distances


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("RECURRENT_BENCH_CACHE", str(tmp_path / "cache"))


@pytest.fixture(scope="module")
def mazes():
    return generate_perfect(60, grid=13, seed=3)


def perfect(**values):
    config = dict(kind="perfect", grid=9, train_size=40, test_size=16, eval_grids=[15])
    config.update(values)
    return create_task("maze", **config)


def test_every_maze_is_a_spanning_tree_of_its_cells(mazes):
    side, cells = 13, 6 * 6
    for question in mazes["questions"]:
        board = question.reshape(side, side)
        open_board = board != WALL
        assert not open_board[0].any() and not open_board[-1].any()            # border wall
        assert not open_board[:, 0].any() and not open_board[:, -1].any()
        assert open_board[1::2, 1::2].all()                                    # every cell carved
        assert not open_board[::2, ::2].any()                                  # lattice corners stay wall
        open_count = int(open_board.sum())
        adjacencies = int((open_board[1:] & open_board[:-1]).sum() + (open_board[:, 1:] & open_board[:, :-1]).sum())
        assert open_count - 1 == adjacencies                                   # a tree: no cycle …
        start = int(np.flatnonzero(question == START)[0])
        assert len(bfs_distances(question, side, start)) == open_count          # … and connected
        assert open_count == 2 * cells - 1                                     # n² cells + n² − 1 passages


def test_labels_are_the_one_path(mazes):
    side = 13
    for question, answer, length in zip(mazes["questions"], mazes["answers"], mazes["lengths"]):
        assert (question == START).sum() == 1 and (question == GOAL).sum() == 1
        start, goal = int(np.flatnonzero(question == START)[0]), int(np.flatnonzero(question == GOAL)[0])
        assert start != goal
        keep = question != OPEN
        assert np.array_equal(answer[keep], question[keep])                    # walls, S and G copied
        assert set(np.unique(answer[~keep])) <= {OPEN, PATH}
        distance = bfs_distances(question, side, start)[goal]
        assert length == distance and (answer == PATH).sum() == distance - 1
        on_path = np.where((answer == PATH) | (question == START) | (question == GOAL), OPEN, WALL)
        assert bfs_distances(on_path, side, start).get(goal) == distance       # the marked cells join S to G
    assert mazes["lengths"].max() > 2 * mazes["lengths"].min()                 # random ends: lengths vary


def test_generator_is_seeded(mazes):
    again, other = generate_perfect(60, grid=13, seed=3), generate_perfect(60, grid=13, seed=4)
    for key in ("questions", "answers", "lengths"):
        assert np.array_equal(mazes[key], again[key])
    assert not np.array_equal(mazes["questions"], other["questions"])
    assert len({bytes(q) for q in mazes["questions"]}) == 60                   # no two alike


def test_task_splits_are_disjoint_scored_and_sized():
    task = perfect()
    assert task.eval_splits() == ["test", "test_grid_15"]
    train, test, large = task.build("train"), task.build("test"), task.build("test_grid_15")
    assert not {bytes(q.numpy()) for q in train.inputs} & {bytes(q.numpy()) for q in test.inputs}
    assert large.meta["grid"] == 15 and large.inputs.shape[1] == 225
    assert torch.equal(perfect().build("test_grid_15").inputs, large.inputs)   # deterministic
    for data in (test, large):
        assert task.score(data, data.labels)["exact_accuracy"] == 1.0
        broken = data.labels.clone()
        broken[broken == PATH] = OPEN                                          # the path erased
        assert task.score(data, broken)["exact_accuracy"] == 0.0
    stats = task.stats(large)
    assert stats["min_path"] == 0 and "acceptance_rate" not in stats
    assert stats["path_length_max"] > task.stats(test)["path_length_max"]


@pytest.mark.parametrize("values, message", [
    ({"grid": 10}, "needs odd grid sides"),
    ({"eval_grids": [16]}, "needs odd grid sides"),
    ({"min_path": 5}, "perfect mazes take none of them"),
    ({"wall_max": 0.4}, "perfect mazes take none of them"),
    ({"kind": "twisty"}, "task.kind must be one of hard, perfect"),
])
def test_bad_perfect_configs_are_refused(values, message):
    with pytest.raises(ValueError, match=message):
        perfect(**values)


def test_even_side_is_one_error_line_on_the_cli(capsys):
    code = main(["data", "--task", "maze", "--preset", "smoke", "--set", "task.kind=perfect", "--set", "task.grid=10"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and err[0].startswith("error: ") and "odd grid sides" in err[0]


def test_maze_hard_data_and_run_identities_are_unchanged():
    """Fixed values recorded with the code before task.kind existed."""
    expected = {(64, 6, 8, 0.3, 0.5, 0): "07f53e3d8c590f81", (32, 8, 12, 0.3, 0.5, 1): "7eda472c91a20e19"}
    for args, digest in expected.items():
        arrays, sha = generate(*args), hashlib.sha256()
        for key in sorted(arrays):
            sha.update(key.encode())
            sha.update(arrays[key].tobytes())
        assert sha.hexdigest()[:16] == digest
    # the v1 cpu preset's values (the cpu preset is v2's since the recipe issue) keep their hash
    v1 = ["train.steps=400", "task.test_size=256", "task.train_size=2000", "train.act=true", "train.lr_schedule=constant",
          "train.lr_min_ratio=1.0"]
    assert resolve("transformer", "maze", "cpu", v1).config_hash() == "145bdd58bfa3"
    assert resolve("dtnet", "maze", "smoke").config_hash() == "241fa82ece45"
    assert resolve("dtnet", "maze", "cpu", ["task.kind=perfect"]).config_hash() != resolve("dtnet", "maze", "cpu").config_hash()
