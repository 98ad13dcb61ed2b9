"""Maze-Hard task: determinism, shortest-path answers (checked by an independent BFS), scorer."""
from collections import deque

import numpy as np
import pytest
import torch

from tasks._maze_generator import CHARSET, GOAL, OPEN, PATH, START, WALL, decode, generate, load_csv
from tasks.maze import MazeConfig, MazeTask
from tasks.protocol import DataError


def bfs_distances(grid_tokens: np.ndarray, side: int, source: int) -> dict[int, int]:
    """Plain-Python BFS, independent of the numba one under test."""
    distance = {source: 0}
    queue = deque([source])
    while queue:
        cell = queue.popleft()
        row, col = divmod(cell, side)
        for d_row, d_col in ((-1, 0), (1, 0), (0, -1), (0, 1)):
            r, c = row + d_row, col + d_col
            if 0 <= r < side and 0 <= c < side:
                neighbour = r * side + c
                if grid_tokens[neighbour] != WALL and neighbour not in distance:
                    distance[neighbour] = distance[cell] + 1
                    queue.append(neighbour)
    return distance


@pytest.fixture(scope="module")
def small_set():
    return generate(40, grid=10, min_path=20, wall_min=0.3, wall_max=0.5, seed=7)


def test_generator_is_deterministic(small_set):
    again = generate(40, grid=10, min_path=20, wall_min=0.3, wall_max=0.5, seed=7)
    assert np.array_equal(small_set["questions"], again["questions"])
    assert np.array_equal(small_set["answers"], again["answers"])
    other = generate(40, grid=10, min_path=20, wall_min=0.3, wall_max=0.5, seed=8)
    assert not np.array_equal(small_set["questions"], other["questions"])


def test_every_answer_is_a_shortest_path(small_set):
    side = 10
    for question, answer, length in zip(small_set["questions"], small_set["answers"], small_set["lengths"]):
        start = int(np.flatnonzero(question == START)[0])
        goal = int(np.flatnonzero(question == GOAL)[0])
        shortest = bfs_distances(question, side, start)[goal]
        assert shortest == length > 20
        path = set(np.flatnonzero(answer == PATH).tolist())
        assert len(path) == shortest - 1
        # walls/start/goal unchanged, path only on open cells
        assert np.array_equal(answer[answer != PATH], question[answer != PATH])
        assert all(question[c] == OPEN for c in path)
        # the marked cells connect S to G in exactly `shortest` moves
        only_path = np.where(np.isin(np.arange(side * side), list(path | {start, goal})), OPEN, WALL)
        assert bfs_distances(only_path, side, start)[goal] == shortest


def test_path_threshold_and_wall_fraction(small_set):
    assert small_set["lengths"].min() > 20
    walls = (small_set["questions"] == WALL).mean()
    assert 0.25 < walls < 0.55


def _task(**kw) -> MazeTask:
    return MazeTask(MazeConfig(grid=10, train_size=30, test_size=10, min_path=20, **kw))


def _alternative_path(question: np.ndarray, answer: np.ndarray, side: int) -> np.ndarray | None:
    """Another shortest path than the stored one, if the maze has one (greedy different tie-break)."""
    start = int(np.flatnonzero(question == START)[0])
    goal = int(np.flatnonzero(question == GOAL)[0])
    to_goal = bfs_distances(question, side, goal)
    for preference in ((0, 1), (0, -1), (1, 0), (-1, 0)):
        other = question.copy()
        cell = start
        while to_goal[cell] > 1:
            row, col = divmod(cell, side)
            options = []
            for d_row, d_col in ((-1, 0), (1, 0), (0, -1), (0, 1)):
                r, c = row + d_row, col + d_col
                if 0 <= r < side and 0 <= c < side and to_goal.get(r * side + c, -1) == to_goal[cell] - 1:
                    options.append(((d_row, d_col) != preference, r * side + c))
            cell = min(options)[1]
            other[cell] = PATH
        if not np.array_equal(other, answer):
            return other
    return None


def test_scorer_accepts_an_alternative_shortest_path_and_rejects_a_longer_one():
    task = _task()
    data = task.build("test")
    side = 10
    alternative = None
    for index in range(len(data)):
        question, answer = data.inputs[index].numpy(), data.labels[index].numpy()
        alternative = _alternative_path(question, answer, side)
        if alternative is not None:
            break
    assert alternative is not None, "no maze with two shortest paths in the sample"
    predictions = data.labels.clone()
    predictions[index] = torch.from_numpy(alternative)
    score = task.score(data, predictions)
    assert score["exact_accuracy"] == 1.0
    assert score["string_match"] < 1.0  # string equality alone would have marked it wrong

    # a longer path: the shortest one plus a detour cell marked as path
    longer = data.labels.clone()
    question = data.inputs[0].numpy()
    free = [c for c in np.flatnonzero(question == OPEN) if data.labels[0, c] != PATH]
    longer[0, int(free[0])] = PATH
    scored = task.score(data, longer)
    assert scored["per_example_correct"][0] is False
    assert scored["exact_accuracy"] == pytest.approx((len(data) - 1) / len(data))
    # an all-open prediction is wrong
    assert task.score(data, data.inputs.clone())["exact_accuracy"] == 0.0


def test_test_split_never_overlaps_train():
    task = _task()
    train = {bytes(q.numpy().astype(np.uint8)) for q in task.build("train").inputs}
    test = [bytes(q.numpy().astype(np.uint8)) for q in task.build("test").inputs]
    assert not train.intersection(test)


def test_dataset_cache_makes_reruns_identical(tmp_path, monkeypatch):
    monkeypatch.setenv("RECURRENT_BENCH_CACHE", str(tmp_path))
    first = _task().build("train")
    assert list(tmp_path.rglob("*.npz"))
    second = _task().build("train")
    assert torch.equal(first.inputs, second.inputs)


def test_csv_loader_roundtrip_and_errors(tmp_path):
    data = generate(3, grid=6, min_path=8, wall_min=0.3, wall_max=0.5, seed=1)
    path = tmp_path / "mazes.csv"
    lines = ["source,question,answer,rating"]
    for q, a, n in zip(data["questions"], data["answers"], data["lengths"]):
        lines.append(f"gen,{decode(q)},{decode(a)},{n}")
    path.write_text("\n".join(lines) + "\n")
    loaded = load_csv(str(path), grid=6)
    assert np.array_equal(loaded["questions"], data["questions"])
    assert set(decode(loaded["answers"][0])) <= set(CHARSET)

    bad = tmp_path / "bad.csv"
    bad.write_text("source,question,answer,rating\ngen,###,###,1\n")
    with pytest.raises(DataError, match=r"bad.csv:2"):
        load_csv(str(bad), grid=6)
    with pytest.raises(DataError, match="not found"):
        load_csv(str(tmp_path / "missing.csv"), grid=6)


def test_render_shows_grid():
    task = _task()
    data = task.build("test")
    text = task.render(data, 0, prediction=data.labels[0])
    assert "S" in text and "G" in text and "prediction" in text
