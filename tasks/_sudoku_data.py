"""Sudoku data: solving, rating and generating (threads over the numba core), symmetries (augmentation, canonical form, leakage guard), loading files, validity of solutions."""
from __future__ import annotations

import csv
import io
import os
import zlib
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from tasks import _sudoku_solver as core
from tasks.files import read_text
from tasks.protocol import DataError


# --------------------------------------------------------------------------------------------
# Solving, rating, generating (thin wrappers over the numba core; threads over chunks).
def _workers() -> int:
    return max(1, min(len(os.sched_getaffinity(0)), int(os.environ.get("RECURRENT_BENCH_WORKERS", 2))))


def _in_chunks(function, n: int, *arrays, pieces: int = 0) -> None:
    """Run function(*slice of each array) over `pieces` slices (default: one per worker) on ≤ workers
    threads (the numba core releases the GIL). Many small pieces balance uneven work (search chains)."""
    workers = min(_workers(), max(1, n))
    bounds = np.linspace(0, n, min(n, pieces or workers) + 1).astype(int)
    chunks = [tuple(a[lo:hi] for a in arrays) for lo, hi in zip(bounds[:-1], bounds[1:]) if hi > lo]
    if workers == 1 or len(chunks) <= 1:
        for chunk in chunks:
            function(*chunk)
        return
    with ThreadPoolExecutor(workers) as pool:
        list(pool.map(lambda chunk: function(*chunk), chunks))


def solve(puzzles: np.ndarray, limit: int = 2) -> dict[str, np.ndarray]:
    """Solve (N, 81) digit grids (0 = blank). Returns solutions (first found), counts (≤ limit),
    rating (guesses to the first solution) and full_rating (guesses of the complete search)."""
    puzzles = np.ascontiguousarray(puzzles, dtype=np.int8).reshape(-1, 81)
    n = len(puzzles)
    solutions = np.zeros((n, 81), dtype=np.int8)
    counts, full, first = (np.zeros(n, dtype=np.int64) for _ in range(3))
    _in_chunks(lambda *a: core.solve_batch(a[0], limit, *a[1:]), n, puzzles, solutions, counts, full, first)
    return {"solutions": solutions, "counts": counts, "rating": first, "full_rating": full}


def chain_seeds(seed: int, stream: str, start: int, count: int) -> np.ndarray:
    """Independent 32-bit seeds for chains start..start+count of a named stream."""
    return np.array([zlib.crc32(f"{seed}:{stream}:{i}".encode()) for i in range(start, start + count)],
                    dtype=np.int64)


def random_minimal(count: int, seed: int) -> np.ndarray:
    """Random minimal puzzles (full grid, clues removed in random order while unique)."""
    puzzles = np.zeros((count, 81), dtype=np.int8)
    _in_chunks(core.random_minimal_batch, count, chain_seeds(seed, "minimal", 0, count), puzzles)
    return puzzles


def generate(count: int, min_rating: int, max_rating: int = -1, seed: int = 0, stream: str = "train",
             pool_size: int = 2, max_drop: int = 2, max_iterations: int = 20000,
             rating_samples: int = 4, puzzles_per_chain: int = 16, max_shared: float = 1.0,
             restart_steps: int = 4000) -> dict[str, np.ndarray]:
    """`count` unique puzzles whose search rating (mean rating over `rating_samples` random
    symmetries) lies in [min_rating, max_rating] (-1: unbounded), seeded.

    Chains run in seed order; those that miss the band are skipped, so the result does not depend on
    the number of threads. Each puzzle is returned in a random orientation; "ratings" is its plain
    rating in that orientation (an unbiased draw of its symmetry-averaged rating).

    puzzles_per_chain > 1 (unbounded bands only: a bounded band is reached early in a climb, so one
    chain per puzzle is already cheap there) lets a chain go on emitting hard candidates after its
    pool has climbed, each sharing at most `max_shared` of its clues with the chain's earlier ones; a
    chain restarts its pool after `restart_steps` steps without an emission.
    """
    if (pool_size < 1 or max_drop < 1 or max_iterations < 0 or rating_samples < 1 or puzzles_per_chain < 1
            or restart_steps < 1):
        raise ValueError("task.pool_size, task.max_drop, task.rating_samples, task.puzzles_per_chain and "
                         "task.restart_steps must be >= 1, task.max_iterations >= 0")
    if not 0.0 <= max_shared <= 1.0:
        raise ValueError("task.max_shared must be in [0, 1]")
    per_chain = puzzles_per_chain if max_rating < 0 else 1
    kept: list[np.ndarray] = []
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
            rating = np.zeros(batch, dtype=np.float64)
            steps = np.zeros(batch, dtype=np.int64)
            _in_chunks(lambda *a: core.generate_batch(a[0], min_rating, rating_samples, pool_size, max_iterations,
                                                      max_drop, *a[1:]), batch, seeds, puzzles, rating, steps,
                       pieces=batch)  # one chain per piece: chain lengths vary a lot
            ok = (rating >= min_rating) & ((rating <= max_rating) if max_rating >= 0 else True)
            puzzles, rating, steps = puzzles[ok], rating[ok], steps[ok]
        else:
            grid = np.zeros((batch, per_chain, 81), dtype=np.int8)
            rating = np.zeros((batch, per_chain), dtype=np.float64)
            steps = np.zeros((batch, per_chain), dtype=np.int64)
            emitted = np.zeros(batch, dtype=np.int64)
            _in_chunks(lambda *a: core.generate_chains_batch(a[0], min_rating, rating_samples, pool_size,
                                                             max_iterations, max_drop, max_shared, restart_steps,
                                                             *a[1:]),
                       batch, seeds, grid, np.zeros_like(grid), rating, steps, emitted, pieces=batch)
            ok = np.arange(per_chain)[None, :] < emitted[:, None]   # chain order, then emission order
            puzzles, rating, steps = grid[ok], rating[ok], steps[ok]
        fresh = ~_equivalent_within(np.concatenate([*kept, puzzles]))[sum(map(len, kept)):]
        kept.append(puzzles[fresh])
        ratings.append(rating[fresh])
        iterations.append(steps[fresh])
    questions = np.concatenate(kept)[:count]
    solved = solve(questions)
    if not (solved["counts"] == 1).all():  # the search only ever keeps unique puzzles: a bug if not
        raise AssertionError("sudoku generator produced a puzzle without a unique solution")
    return {"questions": questions.astype(np.uint8), "answers": solved["solutions"].astype(np.uint8),
            "ratings": solved["rating"], "full_ratings": solved["full_rating"],
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
    solved = solve(questions)
    if not (solved["counts"] == 1).all() or not (solved["solutions"] == arrays["answers"]).all():
        raise AssertionError("sudoku: filling blanks changed a solution")  # impossible: a bug if raised
    return {**arrays, "questions": questions, "ratings": solved["rating"], "full_ratings": solved["full_rating"]}


# --------------------------------------------------------------------------------------------
# Symmetries: augmentation (as the reference's shuffle_sudoku), canonical form, leakage guard.
def augment(questions: np.ndarray, answers: np.ndarray, copies: int, seed: int,
            chunk: int = 65536) -> tuple[np.ndarray, np.ndarray]:
    """`copies` random symmetric variants of each puzzle, seeded and vectorised.

    Same distribution as HRM's shuffle_sudoku: digit permutation, transpose with p=0.5, band
    permutation + row permutation within each band, stack permutation + column permutation within
    each stack. Output is grouped by puzzle: [p0 copy 0..k-1, p1 copy 0..k-1, …].
    """
    n = len(questions)
    total = n * copies
    out_q = np.empty((total, 81), dtype=np.uint8)
    out_a = np.empty((total, 81), dtype=np.uint8)
    rng = np.random.default_rng(seed)
    for lo in range(0, total, chunk):
        hi = min(total, lo + chunk)
        m = hi - lo
        source = np.arange(lo, hi) // copies
        digit_map = np.zeros((m, 10), dtype=np.uint8)
        digit_map[:, 1:] = np.argsort(rng.random((m, 9)), axis=1) + 1
        transpose = rng.random(m) < 0.5

        def line_permutation() -> np.ndarray:  # (m, 9): band order × order within each band
            bands = np.argsort(rng.random((m, 3)), axis=1)
            within = np.argsort(rng.random((m, 3, 3)), axis=2)
            return (bands[:, :, None] * 3 + within).reshape(m, 9)

        rows, cols = line_permutation(), line_permutation()
        mapping = rows[:, :, None] * 9 + cols[:, None, :]  # new (i, j) ← old (rows[i], cols[j])
        for source_grids, out in ((questions, out_q), (answers, out_a)):
            grids = source_grids[source].reshape(m, 9, 9)
            grids = np.where(transpose[:, None, None], grids.transpose(0, 2, 1), grids).reshape(m, 81)
            moved = np.take_along_axis(grids, mapping.reshape(m, 81), axis=1)
            out[lo:hi] = np.take_along_axis(digit_map, moved.astype(np.int64), axis=1)
    return out_q, out_a


_LINE_ORDERS: np.ndarray | None = None


def canonical(puzzles: np.ndarray) -> np.ndarray:
    """Canonical form under all Sudoku symmetries: the lexicographically smallest grid (digits
    relabelled in order of appearance) over transpose × band/row × stack/column permutations.
    Equivalent puzzles — and only those — share it. Costs ≈20 CPU-ms per puzzle."""
    global _LINE_ORDERS
    if _LINE_ORDERS is None:
        _LINE_ORDERS = core._line_orders(core.PERMS3)
    puzzles = np.ascontiguousarray(puzzles, dtype=np.int8).reshape(-1, 81)
    out = np.zeros_like(puzzles)
    _in_chunks(lambda p, o: core.canonical_batch(p, _LINE_ORDERS, o), len(puzzles), puzzles, out)
    return out


_BOX_VARIANTS = np.array([[rows[i] * 3 + cols[j] for i in range(3) for j in range(3)]
                          for rows in core.PERMS3 for cols in core.PERMS3])


def invariants(puzzles: np.ndarray) -> list[bytes]:
    """A cheap key equal for equivalent puzzles (a necessary condition, vectorised): sorted digit
    counts, clue counts per row/column sorted within bands/stacks and across them (row and column
    signatures sorted as a pair for transposition), and the 3×3 box clue-count matrix minimised over
    row/column permutations and transposition."""
    puzzles = np.asarray(puzzles).reshape(-1, 81).astype(np.int64)
    n = len(puzzles)
    grid = puzzles.reshape(n, 9, 9)
    filled = grid > 0
    digit_counts = np.sort(np.stack([(puzzles == d).sum(1) for d in range(1, 10)], 1), 1)

    def line_signature(counts: np.ndarray) -> np.ndarray:  # (n, 9) → (n, 9) invariant
        within = np.sort(counts.reshape(n, 3, 3), axis=2)
        keys = within @ np.array([100, 10, 1])
        order = np.argsort(keys, axis=1)
        return np.take_along_axis(within, order[:, :, None], axis=1).reshape(n, 9)

    row_sig = line_signature(filled.sum(2))
    col_sig = line_signature(filled.sum(1))
    boxes = filled.reshape(n, 3, 3, 3, 3).sum((2, 4)).reshape(n, 9)
    box_variants = np.concatenate([boxes[:, _BOX_VARIANTS],
                                   boxes.reshape(n, 3, 3).transpose(0, 2, 1).reshape(n, 9)[:, _BOX_VARIANTS]], 1)
    weights = 10 ** np.arange(8, -1, -1)
    box_sig = (box_variants @ weights).min(1)
    keys = []
    for i in range(n):
        pair = sorted([tuple(row_sig[i]), tuple(col_sig[i])])
        keys.append(np.concatenate([digit_counts[i], pair[0], pair[1], [box_sig[i]]]).astype(np.int64).tobytes())
    return keys


def equivalent_to_any(candidates: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """mask[i] = candidates[i] is equivalent to some reference puzzle (canonical forms are computed
    only where the cheap invariant collides)."""
    reference_keys = invariants(reference)
    candidate_keys = invariants(candidates)
    lookup: dict[bytes, list[int]] = {}
    for j, key in enumerate(reference_keys):
        lookup.setdefault(key, []).append(j)
    mask = np.zeros(len(candidates), dtype=bool)
    suspects = [i for i, key in enumerate(candidate_keys) if key in lookup]
    if not suspects:
        return mask
    partners = sorted({j for i in suspects for j in lookup[candidate_keys[i]]})
    canon_ref = {bytes(c) for c in canonical(reference[partners])}
    for i, form in zip(suspects, canonical(candidates[suspects])):
        mask[i] = bytes(form) in canon_ref
    return mask


def _equivalent_within(puzzles: np.ndarray) -> np.ndarray:
    """mask[i] = puzzles[i] is equivalent to an earlier puzzle of the same set."""
    keys = invariants(puzzles)
    seen: dict[bytes, list[int]] = {}
    for i, key in enumerate(keys):
        seen.setdefault(key, []).append(i)
    mask = np.zeros(len(puzzles), dtype=bool)
    suspects = sorted(i for group in seen.values() if len(group) > 1 for i in group)
    if suspects:
        forms: set[bytes] = set()
        for i, form in zip(suspects, canonical(puzzles[suspects])):
            mask[i] = bytes(form) in forms
            forms.add(bytes(form))
    return mask


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

    Plain-format answers come from our solver; every puzzle must have exactly one solution.
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
    arrays = {"questions": question_array, "answers": answer_array, "ratings": solved["rating"],
              "full_ratings": solved["full_rating"], "solution_counts": solved["counts"]}
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
