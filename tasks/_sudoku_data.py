"""Sudoku data: solving, rating (tdoku's measure) and generating (threads over the numba core), loading
files, validity of solutions. Symmetries live in tasks/_sudoku_symmetry.py."""
from __future__ import annotations

import csv
import io
import zlib

import numpy as np

from tasks import _sudoku_generator as gen
from tasks import _sudoku_solver as core
from tasks._sudoku_symmetry import _equivalent_within, _in_chunks, _workers, grid_invariants
from tasks.files import read_text
from tasks.protocol import DataError


# --------------------------------------------------------------------------------------------
# Solving, rating, generating (thin wrappers over the numba core; threads over chunks).
def solve(puzzles: np.ndarray, limit: int = 2) -> dict[str, np.ndarray]:
    """Solve (N, 81) digit grids (0 = blank) in their given orientation. Returns solutions (first
    found), counts (≤ limit), guesses_first (guesses to the first solution) and guesses_complete
    (guesses of the whole search: complete, proving uniqueness, when a puzzle has < limit solutions)."""
    puzzles = np.ascontiguousarray(puzzles, dtype=np.int8).reshape(-1, 81)
    n = len(puzzles)
    solutions = np.zeros((n, 81), dtype=np.int8)
    counts, complete, first = (np.zeros(n, dtype=np.int64) for _ in range(3))
    _in_chunks(lambda *a: core.solve_batch(a[0], limit, *a[1:]), n, puzzles, solutions, counts, complete, first)
    return {"solutions": solutions, "counts": counts, "guesses_first": first, "guesses_complete": complete}


RATING_SYMMETRIES = 16  # random symmetries per puzzle in the stored rating (docs/tasks/sudoku.md, "Rater")


def rate(puzzles: np.ndarray, symmetries: int = RATING_SYMMETRIES, seed: int = 0) -> dict[str, np.ndarray]:
    """The suite's rating, tdoku's measure: per puzzle, guesses of the complete search (limit 2)
    averaged over `symmetries` random symmetric variants (seeded); "rating_first" averages the
    guesses to the first solution over the same variants."""
    if symmetries < 1:
        raise ValueError("symmetries must be >= 1")
    puzzles = np.ascontiguousarray(puzzles, dtype=np.int8).reshape(-1, 81)
    n = len(puzzles)
    complete, first = np.zeros(n), np.zeros(n)
    seeds = chain_seeds(seed, "rate", 0, n)
    _in_chunks(lambda *a: core.rate_batch(a[0], symmetries, *a[1:]), n, puzzles, seeds, complete, first)
    return {"rating": complete, "rating_first": first}


def chain_seeds(seed: int, stream: str, start: int, count: int) -> np.ndarray:
    """Independent 32-bit seeds for chains start..start+count of a named stream."""
    return np.array([zlib.crc32(f"{seed}:{stream}:{i}".encode()) for i in range(start, start + count)],
                    dtype=np.int64)


def random_minimal(count: int, seed: int) -> np.ndarray:
    """Random minimal puzzles (full grid, clues removed in random order while unique)."""
    puzzles = np.zeros((count, 81), dtype=np.int8)
    _in_chunks(gen.random_minimal_batch, count, chain_seeds(seed, "minimal", 0, count), puzzles)
    return puzzles


def _measured(questions: np.ndarray, seed: int) -> dict[str, np.ndarray]:
    """Solutions and every rating of unique puzzles (a bug if one is not unique)."""
    solved = solve(questions)
    if not (solved["counts"] == 1).all():
        raise AssertionError("sudoku: a generated puzzle without a unique solution")
    rated = rate(questions, seed=seed)
    return {"answers": solved["solutions"].astype(np.uint8), "ratings": rated["rating"],
            "ratings_first": rated["rating_first"], "guesses_first": solved["guesses_first"],
            "guesses_complete": solved["guesses_complete"]}


def generate(count: int, min_rating: float, max_rating: float = -1, seed: int = 0, stream: str = "train",
             pool_size: int = 2, max_drop: int = 2, max_iterations: int = 20000,
             rating_samples: int = 4, puzzles_per_chain: int = 1, max_shared: float = 0.5,
             restart_steps: int = 4000) -> dict[str, np.ndarray]:
    """`count` unique puzzles whose search rating (mean complete-search guesses over
    `rating_samples` random symmetries, re-checked on fresh ones) lies in [min_rating, max_rating]
    (-1: unbounded), seeded, on pairwise different solution grids up to symmetry.

    Chains run in seed order; those that miss the band are skipped, so the result does not depend on
    the number of threads. Each puzzle is returned in a random orientation ("search_orientation": as
    the search saw it, where puzzles of one chain can be compared clue by clue). "ratings" re-measures
    every puzzle on RATING_SYMMETRIES fresh symmetries (the rating the docs report).

    puzzles_per_chain > 1 (unbounded bands only) lets a chain go on emitting hard candidates after
    its pool has climbed, each sharing at most `max_shared` of its clues with the chain's earlier
    ones; a chain restarts its pool after `restart_steps` steps without an emission.
    """
    if (pool_size < 1 or max_drop < 1 or max_iterations < 0 or rating_samples < 1 or puzzles_per_chain < 1
            or restart_steps < 1):
        raise ValueError("task.pool_size, task.max_drop, task.rating_samples, task.puzzles_per_chain and "
                         "task.restart_steps must be >= 1, task.max_iterations >= 0")
    if not 0.0 <= max_shared <= 1.0:
        raise ValueError("task.max_shared must be in [0, 1]")
    per_chain = puzzles_per_chain if max_rating < 0 else 1
    kept: list[np.ndarray] = []
    searched: list[np.ndarray] = []
    ratings: list[np.ndarray] = []
    iterations: list[np.ndarray] = []
    chains = 0
    while sum(map(len, kept)) < count:
        if chains > 20 * count + 64:
            raise DataError(f"sudoku: only {sum(map(len, kept))} of {count} puzzles rated in "
                            f"[{min_rating}, {max_rating if max_rating >= 0 else '∞'}] after {chains} "
                            f"search chains; widen the band or raise task.max_iterations")
        needed = count - sum(map(len, kept))
        per_chain = min(per_chain, needed)  # a chain's k-th puzzle does not depend on its cap: still seeded
        batch = max(_workers(), -(-needed // per_chain) + needed // (10 * per_chain))  # spares for misses
        seeds = chain_seeds(seed, stream, chains, batch)
        chains += batch
        if per_chain == 1:
            puzzles = np.zeros((batch, 81), dtype=np.int8)
            originals = np.zeros_like(puzzles)
            rating = np.zeros(batch, dtype=np.float64)
            steps = np.zeros(batch, dtype=np.int64)
            _in_chunks(lambda *a: gen.generate_batch(a[0], min_rating, rating_samples, pool_size, max_iterations,
                                                     max_drop, *a[1:]), batch, seeds, puzzles, originals, rating,
                       steps, pieces=batch)  # one chain per piece: chain lengths vary a lot
            ok = (rating >= min_rating) & ((rating <= max_rating) if max_rating >= 0 else True)
            puzzles, originals, rating, steps = puzzles[ok], originals[ok], rating[ok], steps[ok]
        else:
            grid = np.zeros((batch, per_chain, 81), dtype=np.int8)
            rating = np.zeros((batch, per_chain), dtype=np.float64)
            steps = np.zeros((batch, per_chain), dtype=np.int64)
            emitted = np.zeros(batch, dtype=np.int64)
            originals = np.zeros_like(grid)
            _in_chunks(lambda *a: gen.generate_chains_batch(a[0], min_rating, rating_samples, pool_size,
                                                            max_iterations, max_drop, max_shared, restart_steps,
                                                            *a[1:]),
                       batch, seeds, grid, originals, rating, steps, emitted, pieces=batch)
            ok = np.arange(per_chain)[None, :] < emitted[:, None]   # chain order, then emission order
            puzzles, originals, rating, steps = grid[ok], originals[ok], rating[ok], steps[ok]
        everything = np.concatenate([*kept, puzzles])
        grids = solve(everything)["solutions"]
        fresh = ~_equivalent_within(grids, grid_invariants)[sum(map(len, kept)):]   # one puzzle per grid
        kept.append(puzzles[fresh])
        searched.append(originals[fresh])
        ratings.append(rating[fresh])
        iterations.append(steps[fresh])
    questions = np.concatenate(kept)[:count]
    return {"questions": questions.astype(np.uint8), **_measured(questions, zlib.crc32(f"{seed}:{stream}".encode())),
            "search_orientation": np.concatenate(searched)[:count].astype(np.uint8),
            "search_ratings": np.concatenate(ratings)[:count], "iterations": np.concatenate(iterations)[:count],
            "chains": np.array(chains)}


def fill_blanks(arrays: dict[str, np.ndarray], blanks: int, seed: int) -> dict[str, np.ndarray]:
    """Give each puzzle solution digits in random blank cells until at most `blanks` remain (0: as is).
    Extra true clues keep the solution unique; ratings are re-measured (they can only drop)."""
    if blanks <= 0:
        return arrays
    rng = np.random.default_rng(seed)
    questions = arrays["questions"].copy()
    for puzzle, answer in zip(questions, arrays["answers"]):
        empty = np.flatnonzero(puzzle == 0)
        if len(empty) > blanks:
            cells = rng.choice(empty, len(empty) - blanks, replace=False)
            puzzle[cells] = answer[cells]
    measured = _measured(questions, seed)
    if not (measured["answers"] == arrays["answers"]).all():
        raise AssertionError("sudoku: filling blanks changed a solution")  # impossible: a bug if raised
    return {**arrays, "questions": questions, **measured}


# --------------------------------------------------------------------------------------------
# Loading
def _parse_grid(text: str, path: str, line: int, what: str, blanks: str) -> np.ndarray:
    if len(text) != 81:
        raise DataError(f"{path}:{line}: {what} must have 81 characters, got {len(text)}")
    digits = []
    for char in text:
        if char in blanks:
            digits.append(0)
        elif "1" <= char <= "9":
            digits.append(int(char))
        else:
            raise DataError(f"{path}:{line}: {what} has character {char!r} (digits 1-9, blank "
                            f"{' or '.join(repr(b) for b in blanks)})")
    return np.array(digits, dtype=np.uint8)


def load(path: str) -> dict[str, np.ndarray]:
    """Reference CSV (`source,question,answer,rating`) or one 81-char puzzle per line (`#` comments).

    Plain-format answers come from our solver; every puzzle must have exactly one solution. Guess
    counts are of the given orientation (one search each, cheap for big files); `stats` measures the
    symmetry-averaged rating.
    """
    text = read_text(path, "sudoku data file")
    questions, answers, lines, source_ratings = [], [], [], []
    with io.StringIO(text, newline="") as handle:
        first = handle.readline()
        handle.seek(0)
        if first.startswith("source,"):
            reader = csv.reader(handle)
            header = next(reader)
            if [h.strip() for h in header[:4]] != ["source", "question", "answer", "rating"]:
                raise DataError(f"{path}:1: expected header 'source,question,answer,rating'")
            for line, row in enumerate(reader, start=2):
                if not row:
                    continue
                if len(row) < 4:
                    raise DataError(f"{path}:{line}: expected 4 columns, got {len(row)}")
                questions.append(_parse_grid(row[1].strip(), path, line, "question", ".0"))
                answers.append(_parse_grid(row[2].strip(), path, line, "answer", ""))
                try:
                    source_ratings.append(float(row[3]))
                except ValueError:
                    raise DataError(f"{path}:{line}: rating {row[3]!r} is not a number") from None
                lines.append(line)
        else:
            for line, text in enumerate(handle, start=1):
                text = text.strip()
                if not text or text.startswith("#"):
                    continue
                questions.append(_parse_grid(text.split()[0], path, line, "puzzle", ".0"))
                lines.append(line)
    if not questions:
        raise DataError(f"{path}: no puzzles in file")
    question_array = np.stack(questions)
    solved = solve(question_array)
    for i in np.flatnonzero(solved["counts"] == 0):
        raise DataError(f"{path}:{lines[i]}: puzzle has no solution")
    for i in np.flatnonzero(solved["counts"] > 1):   # solve() counts up to 2 solutions
        raise DataError(f"{path}:{lines[i]}: puzzle has several solutions (a Sudoku must have exactly one)")
    if answers:
        answer_array = np.stack(answers)
        bad = ~valid_solutions(question_array, answer_array)
        for i in np.flatnonzero(bad):
            raise DataError(f"{path}:{lines[i]}: answer is not a valid solution of the question")
    else:
        answer_array = solved["solutions"].astype(np.uint8)
    arrays = {"questions": question_array, "answers": answer_array, "guesses_first": solved["guesses_first"],
              "guesses_complete": solved["guesses_complete"], "solution_counts": solved["counts"]}
    if source_ratings:
        arrays["source_ratings"] = np.array(source_ratings)
    return arrays


# --------------------------------------------------------------------------------------------
# Scoring
def valid_solutions(questions: np.ndarray, grids: np.ndarray) -> np.ndarray:
    """valid[i] = grids[i] (digits) fills every cell, each row/column/box holds 1..9 once, and the
    givens of questions[i] are kept."""
    questions = np.asarray(questions).reshape(-1, 81).astype(np.int64)
    grids = np.asarray(grids).reshape(-1, 81).astype(np.int64)
    units = np.sort(grids[:, core.UNITS], axis=2)                  # (N, 27, 9)
    complete = (units == np.arange(1, 10)).all(axis=(1, 2))
    givens_kept = ((questions == 0) | (questions == grids)).all(1)
    return complete & givens_kept
