"""The mazes' compiled core (numba): BFS, Maze-Hard's farthest-pair generator, the perfect-maze (depth-first)
generator, shortest-path validity, and the text encoding."""
from __future__ import annotations

import csv
import io

import numba
import numpy as np

from tasks.files import read_text
from tasks.protocol import DataError

CHARSET = "# SGo"  # wall, open, start, goal, path → tokens 1..5 (0 = PAD)
WALL, OPEN, START, GOAL, PATH = 1, 2, 3, 4, 5
VOCAB_SIZE = 6
PAD_ID = 0
# --------------------------------------------------------------------------------------------
# Compiled core: BFS, farthest-pair generator, shortest-path validity.
@numba.njit(cache=True)
def _bfs(open_cells, grid, source, distance, queue):
    """Distances (in moves) from `source` over open cells; -1 where unreachable. Returns farthest cell."""
    distance[:] = -1
    distance[source] = 0
    head, tail = 0, 1
    queue[0] = source
    farthest = source
    while head < tail:
        cell = queue[head]
        head += 1
        if distance[cell] > distance[farthest]:
            farthest = cell
        row, col = cell // grid, cell % grid
        for step in range(4):
            if step == 0:
                if row == 0:
                    continue
                neighbour = cell - grid
            elif step == 1:
                if row == grid - 1:
                    continue
                neighbour = cell + grid
            elif step == 2:
                if col == 0:
                    continue
                neighbour = cell - 1
            else:
                if col == grid - 1:
                    continue
                neighbour = cell + 1
            if open_cells[neighbour] and distance[neighbour] < 0:
                distance[neighbour] = distance[cell] + 1
                queue[tail] = neighbour
                tail += 1
    return farthest


@numba.njit(cache=True)
def _mark_path(open_cells, grid, start, goal, distance_back, queue, answer):
    """Mark one shortest start→goal path with PATH in `answer`: walk from start towards goal, choosing a
    random neighbour one move nearer each step (in a perfect maze there is only ever one)."""
    _bfs(open_cells, grid, goal, distance_back, queue)
    options = np.empty(4, dtype=np.int64)
    cell = start
    while distance_back[cell] > 1:
        row, col = cell // grid, cell % grid
        n_options = 0
        for step in range(4):
            if step == 0 and row > 0:
                neighbour = cell - grid
            elif step == 1 and row < grid - 1:
                neighbour = cell + grid
            elif step == 2 and col > 0:
                neighbour = cell - 1
            elif step == 3 and col < grid - 1:
                neighbour = cell + 1
            else:
                continue
            if open_cells[neighbour] and distance_back[neighbour] == distance_back[cell] - 1:
                options[n_options] = neighbour
                n_options += 1
        cell = options[np.random.randint(n_options)]
        answer[cell] = PATH


@numba.njit(cache=True)
def _write_example(open_cells, grid, start, goal, distance_back, queue, question, answer):
    """One example: the layout with S and G as the question, the same with one shortest path marked as the
    answer (distance_back is left holding the distances to goal)."""
    for i in range(grid * grid):
        question[i] = OPEN if open_cells[i] else WALL
    question[start] = START
    question[goal] = GOAL
    answer[:] = question[:]
    _mark_path(open_cells, grid, start, goal, distance_back, queue, answer)


@numba.njit(cache=True)
def _generate(count, grid, min_path, wall_min, wall_max, seed, questions, answers, lengths):
    """Fill `count` hard mazes; returns the number of layouts drawn (acceptance statistics)."""
    np.random.seed(seed)
    cells = grid * grid
    open_cells = np.zeros(cells, dtype=np.bool_)
    distance = np.empty(cells, dtype=np.int32)
    distance_back = np.empty(cells, dtype=np.int32)
    queue = np.empty(cells, dtype=np.int32)
    made, drawn = 0, 0
    max_draws = 20000 * count + 1000000
    while made < count:
        drawn += 1
        if drawn > max_draws:
            return -1
        wall_fraction = wall_min + (wall_max - wall_min) * np.random.random()
        n_open = 0
        for i in range(cells):
            open_cells[i] = np.random.random() >= wall_fraction
            n_open += open_cells[i]
        if n_open < 2:
            continue
        pick = np.random.randint(n_open)
        first = -1
        for i in range(cells):
            if open_cells[i]:
                if pick == 0:
                    first = i
                    break
                pick -= 1
        start = _bfs(open_cells, grid, first, distance, queue)
        goal = _bfs(open_cells, grid, start, distance, queue)
        length = distance[goal]
        if length <= min_path:
            continue
        if np.random.random() < 0.5:  # which end is S is arbitrary
            start, goal = goal, start
        _write_example(open_cells, grid, start, goal, distance_back, queue, questions[made], answers[made])
        lengths[made] = length
        made += 1
    return drawn


@numba.njit(cache=True)
def _generate_perfect(count, grid, seed, questions, answers, lengths):
    """Fill `count` perfect mazes: a randomised depth-first backtracker over the n×n cells at odd
    (row, col) of a grid×grid board (n = (grid − 1) / 2; the rest starts as wall), then start and goal
    at two distinct random cells and their one path marked."""
    np.random.seed(seed)
    n = (grid - 1) // 2
    cells = grid * grid
    open_cells = np.zeros(cells, dtype=np.bool_)
    visited = np.zeros(n * n, dtype=np.bool_)
    stack = np.empty(n * n, dtype=np.int64)
    options = np.empty(4, dtype=np.int64)
    distance = np.empty(cells, dtype=np.int32)
    queue = np.empty(cells, dtype=np.int32)
    for made in range(count):
        open_cells[:] = False
        visited[:] = False
        first = np.random.randint(n * n)
        visited[first] = True
        open_cells[(2 * (first // n) + 1) * grid + 2 * (first % n) + 1] = True
        stack[0] = first
        top = 1
        while top > 0:
            cell = stack[top - 1]
            row, col = cell // n, cell % n
            n_options = 0
            if row > 0 and not visited[cell - n]:
                options[n_options] = cell - n
                n_options += 1
            if row < n - 1 and not visited[cell + n]:
                options[n_options] = cell + n
                n_options += 1
            if col > 0 and not visited[cell - 1]:
                options[n_options] = cell - 1
                n_options += 1
            if col < n - 1 and not visited[cell + 1]:
                options[n_options] = cell + 1
                n_options += 1
            if n_options == 0:
                top -= 1                      # dead end: backtrack
                continue
            chosen = options[np.random.randint(n_options)]
            visited[chosen] = True
            next_row, next_col = chosen // n, chosen % n
            open_cells[(row + next_row + 1) * grid + col + next_col + 1] = True   # the wall between
            open_cells[(2 * next_row + 1) * grid + 2 * next_col + 1] = True
            stack[top] = chosen
            top += 1
        start_cell = np.random.randint(n * n)
        goal_cell = np.random.randint(n * n - 1)
        if goal_cell >= start_cell:
            goal_cell += 1
        start = (2 * (start_cell // n) + 1) * grid + 2 * (start_cell % n) + 1
        goal = (2 * (goal_cell // n) + 1) * grid + 2 * (goal_cell % n) + 1
        _write_example(open_cells, grid, start, goal, distance, queue, questions[made], answers[made])
        lengths[made] = distance[start]


@numba.njit(cache=True)
def _valid_shortest_paths(questions, predictions, grid, valid):
    """valid[i] = prediction i keeps the maze and marks exactly one shortest S→G path."""
    cells = grid * grid
    open_cells = np.zeros(cells, dtype=np.bool_)
    path_cells = np.zeros(cells, dtype=np.bool_)
    distance = np.empty(cells, dtype=np.int32)
    queue = np.empty(cells, dtype=np.int32)
    for n in range(questions.shape[0]):
        ok = True
        start, goal, marked = -1, -1, 0
        for i in range(cells):
            q, p = questions[n, i], predictions[n, i]
            open_cells[i] = q != WALL
            if q == OPEN:
                if p == PATH:
                    marked += 1
                elif p != OPEN:
                    ok = False
            elif p != q:  # walls, start and goal must be copied
                ok = False
            if q == START:
                start = i
            elif q == GOAL:
                goal = i
        if not ok or start < 0 or goal < 0:
            valid[n] = False
            continue
        _bfs(open_cells, grid, start, distance, queue)
        shortest = distance[goal]
        if shortest < 0 or marked != shortest - 1:
            valid[n] = False
            continue
        for i in range(cells):
            path_cells[i] = predictions[n, i] == PATH or i == start or i == goal
        _bfs(path_cells, grid, start, distance, queue)
        valid[n] = distance[goal] == shortest


def generate(count: int, grid: int, min_path: int, wall_min: float, wall_max: float,
             seed: int) -> dict[str, np.ndarray]:
    cells = grid * grid
    questions = np.zeros((count, cells), dtype=np.uint8)
    answers = np.zeros((count, cells), dtype=np.uint8)
    lengths = np.zeros(count, dtype=np.int32)
    drawn = _generate(count, grid, min_path, wall_min, wall_max, seed, questions, answers, lengths)
    if drawn < 0:
        raise DataError(f"no {grid}×{grid} maze with a shortest path > {min_path} moves found in "
                        f"{20000 * count + 1000000} layouts; lower task.min_path")
    return {"questions": questions, "answers": answers, "lengths": lengths, "drawn": np.array(drawn)}


def generate_perfect(count: int, grid: int, seed: int) -> dict[str, np.ndarray]:
    """`count` perfect mazes on an odd grid×grid board (see _generate_perfect); lengths = path moves."""
    cells = grid * grid
    questions = np.zeros((count, cells), dtype=np.uint8)
    answers = np.zeros((count, cells), dtype=np.uint8)
    lengths = np.zeros(count, dtype=np.int32)
    _generate_perfect(count, grid, seed, questions, answers, lengths)
    return {"questions": questions, "answers": answers, "lengths": lengths}


def valid_shortest_paths(questions: np.ndarray, predictions: np.ndarray, grid: int) -> np.ndarray:
    valid = np.zeros(questions.shape[0], dtype=np.bool_)
    _valid_shortest_paths(np.ascontiguousarray(questions, dtype=np.int64),
                          np.ascontiguousarray(predictions, dtype=np.int64), grid, valid)
    return valid


def encode(text: str) -> np.ndarray:
    return np.array([CHARSET.index(c) + 1 for c in text], dtype=np.uint8)


def decode(tokens) -> str:
    return "".join(CHARSET[t - 1] if 1 <= t <= len(CHARSET) else "?" for t in np.asarray(tokens).tolist())


def load_csv(path: str, grid: int) -> dict[str, np.ndarray]:
    """Reference format: header `source,question,answer,rating`, grid² characters of `# SGo`."""
    text = read_text(path, "maze data file")
    questions, answers, ratings = [], [], []
    with io.StringIO(text, newline="") as handle:
        reader = csv.reader(handle)
        header = next(reader, None)
        if header is None or [h.strip() for h in header[:4]] != ["source", "question", "answer", "rating"]:
            raise DataError(f"{path}:1: expected header 'source,question,answer,rating'")
        for line, row in enumerate(reader, start=2):
            if len(row) < 4:
                raise DataError(f"{path}:{line}: expected 4 columns, got {len(row)}")
            question, answer = row[1], row[2]
            if len(question) != grid * grid or len(answer) != grid * grid:
                raise DataError(f"{path}:{line}: grids must have {grid * grid} characters (task.grid={grid})")
            if set(question) - set("# SG") or set(answer) - set(CHARSET):
                raise DataError(f"{path}:{line}: characters outside '{CHARSET}'")
            questions.append(encode(question))
            answers.append(encode(answer))
            try:
                ratings.append(int(float(row[3])))
            except ValueError:
                raise DataError(f"{path}:{line}: rating {row[3]!r} is not a number") from None
    if not questions:
        raise DataError(f"{path}: no mazes in file")
    return {"questions": np.stack(questions), "answers": np.stack(answers),
            "lengths": np.array(ratings, dtype=np.int32)}
