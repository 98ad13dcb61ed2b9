"""Sudoku symmetries: augmentation (as the reference's shuffle_sudoku), canonical form, cheap
invariants of puzzles and of solution grids, equivalence tests (leakage guard, one puzzle per grid);
and the thread helpers that run the numba core over chunks (shared by tasks/_sudoku_data.py)."""
from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

import numba
import numpy as np



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


# --------------------------------------------------------------------------------------------
# Canonical form: the lexicographically smallest relabelled string over all 2·6^4·6^4 symmetries
# (transpose × band, row-in-band, stack, column-in-stack permutations), digits relabelled in order of
# first appearance. Brute force with early exit; ≈20 CPU-ms per puzzle, so the leakage guard only
# calls it on puzzles whose cheap invariant collides (equivalent_to_any, _equivalent_within).
def _permutations3():
    return np.array([[0, 1, 2], [0, 2, 1], [1, 0, 2], [1, 2, 0], [2, 0, 1], [2, 1, 0]], dtype=np.int64)


PERMS3 = _permutations3()


@numba.njit(cache=True)
def _line_orders(perms):
    """All 1296 orders of 9 lines that keep bands: band order × order within each band."""
    orders = np.empty((1296, 9), dtype=np.int64)
    n = 0
    for b in range(6):
        for r0 in range(6):
            for r1 in range(6):
                for r2 in range(6):
                    inner = (r0, r1, r2)
                    for slot in range(3):
                        band = perms[b, slot]
                        for k in range(3):
                            orders[n, slot * 3 + k] = band * 3 + perms[inner[slot], k]
                    n += 1
    return orders


@numba.njit(cache=True)
def canonical_one(puzzle, orders, out):
    best = np.full(81, 127, dtype=np.int8)
    relabel = np.empty(10, dtype=np.int8)
    for transpose in range(2):
        for ro in range(1296):
            for co in range(1296):
                relabel[:] = 0
                next_label = 1
                state = 0  # 0 = equal so far, -1 = smaller (writing), 1 = larger (abandon)
                for i in range(81):
                    r = orders[ro, i // 9]
                    c = orders[co, i % 9]
                    d = puzzle[c * 9 + r] if transpose else puzzle[r * 9 + c]
                    if d and relabel[d] == 0:
                        relabel[d] = next_label
                        next_label += 1
                    v = relabel[d]
                    if state == 0:
                        if v > best[i]:
                            state = 1
                            break
                        if v < best[i]:
                            state = -1
                    if state == -1:
                        best[i] = v
    out[:] = best


@numba.njit(cache=True, nogil=True)
def canonical_batch(puzzles, orders, out):
    for i in range(puzzles.shape[0]):
        canonical_one(puzzles[i], orders, out[i])


_LINE_ORDERS: np.ndarray | None = None


def canonical(puzzles: np.ndarray) -> np.ndarray:
    """Canonical form under all Sudoku symmetries: the lexicographically smallest grid (digits
    relabelled in order of appearance) over transpose × band/row × stack/column permutations.
    Equivalent puzzles — and only those — share it. Costs ≈20 CPU-ms per puzzle."""
    global _LINE_ORDERS
    if _LINE_ORDERS is None:
        _LINE_ORDERS = _line_orders(PERMS3)
    puzzles = np.ascontiguousarray(puzzles, dtype=np.int8).reshape(-1, 81)
    out = np.zeros_like(puzzles)
    _in_chunks(lambda p, o: canonical_batch(p, _LINE_ORDERS, o), len(puzzles), puzzles, out)
    return out


_BOX_VARIANTS = np.array([[rows[i] * 3 + cols[j] for i in range(3) for j in range(3)]
                          for rows in PERMS3 for cols in PERMS3])


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


def grid_invariants(grids: np.ndarray) -> list[bytes]:
    """A cheap key equal for equivalent *solution grids* (full grids, where clue counts say nothing;
    a necessary condition, vectorised). For two rows, σ maps a column to the column of the same digit
    in the other row; its cycle type survives relabelling and column permutations. The key holds the
    sorted cycle types of the 9 row pairs within bands and of the 27 across bands, the same for
    columns, and the two sorted as a pair for transposition."""
    grids = np.asarray(grids).reshape(-1, 9, 9).astype(np.int64)
    n = len(grids)
    within = [(3 * b + i, 3 * b + j) for b in range(3) for i in range(3) for j in range(i + 1, 3)]
    across = [(i, j) for i in range(9) for j in range(i + 1, 9) if i // 3 != j // 3]

    def signature(lines: np.ndarray) -> np.ndarray:       # (n, 9, 9) lines → (n, 36) sorted codes
        where = np.argsort(lines, axis=2)                  # where[n, line, d - 1] = position of digit d
        codes = []
        for pairs in (within, across):
            a, b = np.array(pairs).T
            sigma = np.take_along_axis(where[:, b], lines[:, a] - 1, axis=2)    # (n, pairs, 9)
            length = np.zeros_like(sigma)
            position = np.broadcast_to(np.arange(9), sigma.shape).copy()
            for step in range(1, 10):
                position = np.take_along_axis(sigma, position, axis=2)
                length[(position == np.arange(9)) & (length == 0)] = step
            codes.append(np.sort(np.sort(length, axis=2) @ (10 ** np.arange(9)), axis=1))
        return np.concatenate(codes, axis=1)

    rows, cols = signature(grids), signature(grids.transpose(0, 2, 1))
    keys = []
    for i in range(n):
        pair = sorted([tuple(rows[i]), tuple(cols[i])])
        keys.append(np.array(pair, dtype=np.int64).tobytes())
    return keys


def _equivalent_within(puzzles: np.ndarray, keys=invariants) -> np.ndarray:
    """mask[i] = puzzles[i] is equivalent to an earlier puzzle of the same set (`keys`: the cheap
    invariant — `invariants` for puzzles, `grid_invariants` for solution grids)."""
    found = keys(puzzles)
    seen: dict[bytes, list[int]] = {}
    for i, key in enumerate(found):
        seen.setdefault(key, []).append(i)
    mask = np.zeros(len(puzzles), dtype=bool)
    suspects = sorted(i for group in seen.values() if len(group) > 1 for i in group)
    if suspects:
        forms: set[bytes] = set()
        for i, form in zip(suspects, canonical(puzzles[suspects])):
            mask[i] = bytes(form) in forms
            forms.add(bytes(form))
    return mask
