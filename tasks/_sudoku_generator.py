"""Compiled (numba) seeded hard-puzzle generator over the solver of tasks/_sudoku_solver.py.

tdoku's recipe (docs/reference.md (data)): random full grid → remove clues in random order while the
puzzle stays unique (a random minimal puzzle) → pool-based local search: take a pool member, drop a
few clues, re-add random clues until the solution is unique again, minimise, rate; keep the
candidate if it beats the pool's worst.

Rating = the suite's measure (tdoku's): guesses of the complete search, averaged over random
symmetries. Fitness is the mean of log(1 + guesses) over the same symmetries, as tdoku's generator
scores (the log keeps one lucky-hard orientation from dominating). Each chain is seeded and emits one
puzzle (_generate_one) or, for unbounded bands, several (_generate_chain), so chains run in parallel
(threads; the batch functions release the GIL) and the result does not depend on the thread count.
"""
from __future__ import annotations

import numba
import numpy as np

from tasks._sudoku_solver import (ALL, BAND_CELLS, CONTAINS, DEPTH, PEERS, STATE, _load, _search,
                                  _search_state, random_symmetry, rate_symmetries)


@numba.njit(cache=True)
def _random_full_grid(out, stack):
    empty = np.zeros(81, dtype=np.int8)
    _search(empty, 1, True, out, stack)


@numba.njit(cache=True)
def _unique_without(puzzle, cell, stack):
    """Is the unique puzzle still unique with the clue at `cell` removed? Every solution with that
    cell's digit is the known one, so: unique iff no solution puts another digit there (a search
    for one solution, not a count to 2 — about half the work)."""
    _load(puzzle, stack[0])
    stack[0, cell] = ALL & ~(1 << (puzzle[cell] - 1))
    solution = np.empty(81, dtype=np.int8)
    return _search_state(1, False, solution, solution, stack, PEERS, BAND_CELLS, CONTAINS)[0] == 0


@numba.njit(cache=True)
def _minimise(puzzle, stack):
    """Remove clues in random order while the (unique) puzzle stays unique (result is minimal)."""
    order = np.random.permutation(81)
    for k in range(81):
        cell = order[k]
        if puzzle[cell] and _unique_without(puzzle, cell, stack):
            puzzle[cell] = 0


@numba.njit(cache=True)
def _mutate(puzzle, drop, stack):
    """Drop `drop` random clues, re-add random clues until unique, minimise.

    A re-added clue goes in a random cell where two solutions of the current puzzle differ, with the
    digit of one of them (random): it always keeps a solution and always rules one out, so no
    search is wasted on contradicting clues. Returns False when no unique puzzle was reached within
    the step cap (the caller keeps the old one).
    """
    clues = np.empty(81, dtype=np.int64)
    n = 0
    for cell in range(81):
        if puzzle[cell]:
            clues[n] = cell
            n += 1
    for _ in range(min(drop, n)):
        k = np.random.randint(n)
        puzzle[clues[k]] = 0
        clues[k] = clues[n - 1]
        n -= 1
    solution = np.empty(81, dtype=np.int8)
    second = np.empty(81, dtype=np.int8)
    differ = np.empty(81, dtype=np.int64)
    for _ in range(200):
        _load(puzzle, stack[0])
        count = _search_state(2, False, solution, second, stack, PEERS, BAND_CELLS, CONTAINS)[0]
        if count == 1:
            _minimise(puzzle, stack)
            return True
        if count == 0:
            return False  # cannot happen (dropping clues keeps the old solution); be safe
        m = 0
        for cell in range(81):
            if solution[cell] != second[cell]:
                differ[m] = cell
                m += 1
        cell = differ[np.random.randint(m)]
        puzzle[cell] = solution[cell] if np.random.random() < 0.5 else second[cell]
    return False


@numba.njit(cache=True)
def _rate(puzzle, samples, variant, solution, stack):
    """(rating, fitness): mean complete-search guesses and mean log(1 + guesses) over `samples`."""
    rating, fitness, _ = rate_symmetries(puzzle, samples, variant, solution, stack)
    return rating, fitness


SCREEN_MARGIN = 1.0  # log-guesses: skip a candidate whose first orientation is e× below the bar


@numba.njit(cache=True)
def _start_pool(pool, rating, fitness, samples, variant, solution, stack):
    """Fill the pool with random minimal puzzles and rate them."""
    for p in range(pool.shape[0]):
        _random_full_grid(pool[p], stack)
        _minimise(pool[p], stack)
        rating[p], fitness[p] = _rate(pool[p], samples, variant, solution, stack)


@numba.njit(cache=True)
def _new_pool(seed, pool_size, samples, stack):
    """Seed the chain; a started pool with its ratings and fitness, plus scratch grids (variant,
    solution, candidate)."""
    np.random.seed(seed)
    pool = np.zeros((pool_size, 81), dtype=np.int8)
    rating = np.zeros(pool_size)
    fitness = np.zeros(pool_size)
    variant = np.empty(81, dtype=np.int8)
    solution = np.empty(81, dtype=np.int8)
    _start_pool(pool, rating, fitness, samples, variant, solution, stack)
    return pool, rating, fitness, variant, solution, np.empty(81, dtype=np.int8)


@numba.njit(cache=True)
def _weakest(fitness):
    worst = 0
    for p in range(fitness.shape[0]):
        if fitness[p] < fitness[worst]:
            worst = p
    return worst


@numba.njit(cache=True)
def _search_step(pool, rating, fitness, candidate, floor, samples, max_drop, variant, solution, stack):
    """One local-search step: mutate a random pool member into `candidate`; unless its first random
    orientation rates e× below the bar — the pool's weakest fitness, or `floor` if lower — rate it on
    `samples` symmetries and let it replace the pool's weakest if at least as fit (ties too, so the
    pool keeps moving on plateaus). Returns the candidate's rating, or -1 when it was not rated."""
    worst = _weakest(fitness)
    bar = min(fitness[worst], floor)
    candidate[:] = pool[np.random.randint(pool.shape[0])]
    if not _mutate(candidate, 1 + np.random.randint(max_drop), stack):
        return -1.0
    if samples > 1:
        # screen on one random orientation first: most candidates are far below the bar
        random_symmetry(candidate, variant)
        if np.log1p(_search(variant, 2, False, solution, stack)[1]) < bar - SCREEN_MARGIN:
            return -1.0
    r, f = _rate(candidate, samples, variant, solution, stack)
    if f >= fitness[worst]:
        pool[worst] = candidate
        rating[worst] = r
        fitness[worst] = f
    return r


@numba.njit(cache=True)
def _generate_one(seed, min_rating, samples, pool_size, max_iterations, max_drop, out, searched, stack):
    """One seeded chain: returns (search rating, iterations); out receives the puzzle (and searched
    the same puzzle in the search's orientation).

    The chain stops when a pool member's rating reaches min_rating (the lowest such member, so
    bounded bands such as [0, 0] accept early), or after max_iterations (then: the highest rating).
    The puzzle is returned in a random orientation. Used for bounded bands (the caller filters by
    max_rating) and for one puzzle per chain.
    """
    pool, rating, fitness, variant, solution, candidate = _new_pool(seed, pool_size, samples, stack)
    iterations = 0
    while True:
        best = 0
        reached = -1
        for p in range(pool_size):
            if rating[p] > rating[best]:
                best = p
            if rating[p] >= min_rating and (reached < 0 or rating[p] < rating[reached]):
                reached = p
        if reached >= 0 and rating[reached] > 0:
            # winner's curse: the search picked the luckiest estimate, so re-rate with fresh samples
            # and keep the pooled mean; a candidate that falls below min_rating searches on.
            rating[reached] = (rating[reached] + _rate(pool[reached], samples, variant, solution, stack)[0]) / 2
            if rating[reached] < min_rating:
                reached = -1
        if reached >= 0 or iterations >= max_iterations:
            if reached < 0:
                reached = best
            searched[:] = pool[reached]
            random_symmetry(pool[reached], out)
            return rating[reached], iterations
        iterations += 1
        _search_step(pool, rating, fitness, candidate, np.inf, samples, max_drop, variant, solution, stack)


@numba.njit(cache=True)
def _shared_clues(a, b):
    shared = 0
    for cell in range(81):
        if a[cell] and a[cell] == b[cell]:
            shared += 1
    return shared


@numba.njit(cache=True)
def _generate_chain(seed, min_rating, samples, pool_size, max_iterations, max_drop, max_shared, restart, out,
                    emitted, ratings, iterations, stack):
    """One seeded chain that emits up to len(out) puzzles rated >= min_rating; returns how many.

    The pool climbs as in _generate_one, but the chain goes on after its first hard puzzle: every
    candidate whose rating reaches min_rating (and holds up under fresh samples) is emitted if it
    shares at most `max_shared` of its clues (same cell, same digit) with each earlier emission of
    the chain and is not one of them. The pool restarts from fresh random minimal puzzles after
    `restart` steps without an emission (climbs are heavy-tailed). The budget is max_iterations per
    requested puzzle. `emitted` receives the puzzles in the search's orientation (the one the
    clue-sharing test compares), `out` in a random one.
    """
    pool, rating, fitness, variant, solution, candidate = _new_pool(seed, pool_size, samples, stack)
    floor = np.log1p(min_rating)
    n = 0
    step = 0
    last = 0  # step of the last emission or restart
    while n < out.shape[0] and step < max_iterations * out.shape[0]:
        step += 1
        if step - last > restart:
            _start_pool(pool, rating, fitness, samples, variant, solution, stack)
            last = step
        r = _search_step(pool, rating, fitness, candidate, floor, samples, max_drop, variant, solution, stack)
        if r < min_rating:
            continue
        clues = 0
        for cell in range(81):
            if candidate[cell]:
                clues += 1
        distinct = True
        for q in range(n):
            shared = _shared_clues(candidate, emitted[q])
            if shared > max_shared * clues or shared == clues:  # all shared: the same minimal puzzle
                distinct = False
                break
        if not distinct:
            continue
        r = (r + _rate(candidate, samples, variant, solution, stack)[0]) / 2   # winner's curse
        if r < min_rating:
            continue
        emitted[n] = candidate
        random_symmetry(candidate, out[n])
        ratings[n] = r
        iterations[n] = step
        last = step
        n += 1
    return n


@numba.njit(cache=True, nogil=True)
def generate_batch(seeds, min_rating, samples, pool_size, max_iterations, max_drop, puzzles, searched, ratings,
                   iterations):
    stack = np.empty((DEPTH, STATE), dtype=np.int32)
    for i in range(seeds.shape[0]):
        r, it = _generate_one(seeds[i], min_rating, samples, pool_size, max_iterations, max_drop, puzzles[i],
                              searched[i], stack)
        ratings[i] = r
        iterations[i] = it


@numba.njit(cache=True, nogil=True)
def generate_chains_batch(seeds, min_rating, samples, pool_size, max_iterations, max_drop, max_shared, restart,
                          puzzles, originals, ratings, iterations, counts):
    """puzzles (chains, per_chain, 81): chain i emits counts[i] puzzles into puzzles[i, :counts[i]]."""
    stack = np.empty((DEPTH, STATE), dtype=np.int32)
    for i in range(seeds.shape[0]):
        counts[i] = _generate_chain(seeds[i], min_rating, samples, pool_size, max_iterations, max_drop,
                                    max_shared, restart, puzzles[i], originals[i], ratings[i], iterations[i], stack)


@numba.njit(cache=True, nogil=True)
def random_minimal_batch(seeds, puzzles):
    """Random full grid, then clues removed in random order while unique (tdoku's 'unbiased'-like)."""
    stack = np.empty((DEPTH, STATE), dtype=np.int32)
    for i in range(seeds.shape[0]):
        np.random.seed(seeds[i])
        _random_full_grid(puzzles[i], stack)
        _minimise(puzzles[i], stack)
