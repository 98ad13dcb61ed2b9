"""Compiled (numba) core for Sudoku: exact solver/rater, seeded hard-puzzle generator, canonical form.

Grids are int8 arrays of 81 cells, row-major, 0 = blank, 1..9 = digits.

Solver: DPLL-style search like tdoku's. Each search node is a candidate-mask state (9 bits per
cell) brought to a fixed point by constraint propagation — naked singles, hidden singles and
locked candidates (pointing / claiming on the 54 box–line intersections, tdoku's "triads") — then
it branches on a cell with the fewest candidates. A *guess* is one branching decision: place the
lowest candidate of that cell; when the branch is exhausted, that digit is eliminated in the
parent and propagation continues (so the last alternative is forced, not guessed).

The search counts solutions up to `limit` and reports two guess counts: to the first solution (the
rating, as tdoku reports it) and for the complete search (solve *and* prove unique; it does not
depend on which branch happens to hold the solution, so it is the generator's steadier fitness).
0 = solvable by propagation alone.

Generator (tdoku's recipe, docs/reference.md (data)): random full grid → remove clues in random order while
the puzzle stays unique (a random minimal puzzle) → pool-based local search: take a pool member,
drop a few clues, re-add random clues until the solution is unique again, minimise, rate; keep the
candidate if it beats the pool's worst. Each chain is seeded and emits one puzzle (_generate_one) or,
for unbounded bands, several (_generate_chain), so chains run in parallel (threads; the batch
functions release the GIL) and the result does not depend on the thread count. (numba's
parallel=True would do the same but costs ~1 min of compilation.)
"""
from __future__ import annotations

import numba
import numpy as np

ALL = 0x1FF      # candidates 1..9 as bits 0..8
DONE = 0x200     # "placed and eliminated from peers" flag, bit 9


def _tables():
    units = np.zeros((27, 9), dtype=np.int64)
    for i in range(9):
        for j in range(9):
            units[i, j] = i * 9 + j                                   # rows
            units[9 + i, j] = j * 9 + i                               # columns
            units[18 + i, j] = (i // 3 * 3 + j // 3) * 9 + i % 3 * 3 + j % 3  # boxes
    peers = np.zeros((81, 20), dtype=np.int64)
    for cell in range(81):
        row, col = divmod(cell, 9)
        found = sorted({u for unit in (units[row], units[9 + col], units[18 + row // 3 * 3 + col // 3])
                        for u in unit} - {cell})
        peers[cell] = found
    # 54 triads: (3 intersection cells, 6 rest-of-box cells, 6 rest-of-line cells)
    triads = np.zeros((54, 15), dtype=np.int64)
    t = 0
    for box in range(9):
        box_cells = set(units[18 + box])
        for line in range(18):
            line_cells = set(units[line])
            common = box_cells & line_cells
            if len(common) == 3:
                triads[t] = sorted(common) + sorted(box_cells - common) + sorted(line_cells - common)
                t += 1
    return units, peers, triads


UNITS, PEERS, TRIADS = _tables()


@numba.njit(cache=True, inline="always")
def _popcount(m):
    count = 0
    while m:
        m &= m - 1
        count += 1
    return count


@numba.njit(cache=True, inline="always")
def _eliminate(cand, triads, t, first, digits):
    """Remove `digits` from the 6 cells triads[t, first:first+6]; False if a cell is left empty."""
    for k in range(first, first + 6):
        cell = triads[t, k]
        if cand[cell] & digits:
            cand[cell] &= ~digits
            if cand[cell] & ALL == 0:
                return False
    return True


@numba.njit(cache=True)
def _propagate(cand, peers, units, triads):
    """Bring a candidate state to a fixed point; False on contradiction."""
    while True:
        progress = False
        # naked singles: place and eliminate from the 20 peers
        for cell in range(81):
            m = cand[cell]
            if m & DONE:
                continue
            if m == 0:
                return False
            if m & (m - 1) == 0:
                cand[cell] = m | DONE
                for k in range(20):
                    p = peers[cell, k]
                    pm = cand[p]
                    if pm & m:
                        if pm & DONE:
                            return False
                        pm &= ~m
                        if pm == 0:
                            return False
                        cand[p] = pm
                progress = True
        if progress:
            continue
        # hidden singles: a digit with one place in a unit
        for u in range(27):
            once = 0
            twice = 0
            for k in range(9):
                m = cand[units[u, k]] & ALL
                twice |= once & m
                once |= m
            if once != ALL:
                return False
            exactly = once & ~twice
            if exactly:
                for k in range(9):
                    cell = units[u, k]
                    m = cand[cell]
                    if m & DONE == 0 and m & exactly:
                        d = m & exactly
                        if d & (d - 1):
                            return False
                        cand[cell] = d
                        progress = True
        if progress:
            continue
        # locked candidates (pointing / claiming) on box–line intersections
        for t in range(54):
            inside = cand[triads[t, 0]] | cand[triads[t, 1]] | cand[triads[t, 2]]
            box_rest = 0
            line_rest = 0
            for k in range(3, 9):
                box_rest |= cand[triads[t, k]]
            for k in range(9, 15):
                line_rest |= cand[triads[t, k]]
            inside &= ALL
            pointing = inside & ~box_rest & line_rest   # only here in the box → not elsewhere in line
            claiming = inside & ~line_rest & box_rest   # only here in the line → not elsewhere in box
            if pointing:
                if not _eliminate(cand, triads, t, 9, pointing):
                    return False
                progress = True
            if claiming:
                if not _eliminate(cand, triads, t, 3, claiming):
                    return False
                progress = True
        if not progress:
            return True


@numba.njit(cache=True)
def _load(grid, state):
    for cell in range(81):
        d = grid[cell]
        state[cell] = ALL if d == 0 else (1 << (d - 1))


@numba.njit(cache=True)
def _write_solution(state, out):
    for cell in range(81):
        m = state[cell] & ALL
        d = 1
        while m > 1:
            m >>= 1
            d += 1
        out[cell] = d


@numba.njit(cache=True)
def _search(grid, limit, randomize, solution, stack, peers, units, triads):
    """Count solutions up to `limit`; returns (count, guesses, guesses_to_first_solution).

    randomize: branch on a random candidate (np.random, seeded by the caller) to draw random grids.
    stack: (82, 81) int32 scratch. solution receives the first solution found.
    """
    _load(grid, stack[0])
    second = np.empty(81, dtype=np.int8)
    return _search_state(limit, randomize, solution, second, stack, peers, units, triads)


@numba.njit(cache=True)
def _search_state(limit, randomize, solution, second, stack, peers, units, triads):
    """_search from the candidate state in stack[0]; `second` receives the second solution found."""
    if not _propagate(stack[0], peers, units, triads):
        return 0, 0, 0
    branch_cell = np.empty(82, dtype=np.int64)
    branch_value = np.empty(82, dtype=np.int32)
    count = 0
    guesses = 0
    first = 0
    depth = 0
    while True:
        state = stack[depth]
        best = -1
        best_count = 10
        for cell in range(81):
            m = state[cell]
            if m & DONE == 0:
                c = _popcount(m)
                if c < best_count:
                    best_count = c
                    best = cell
                    if c == 2:
                        break
        failed = True
        if best < 0:  # every cell placed: a solution
            count += 1
            if count == 1:
                first = guesses
                _write_solution(state, solution)
            elif count == 2:
                _write_solution(state, second)
            if count >= limit:
                return count, guesses, first
        else:
            m = state[best] & ALL
            if randomize:
                pick = np.random.randint(best_count)
                v = m & -m
                for _ in range(pick):
                    m &= m - 1
                    v = m & -m
            else:
                v = m & -m
            branch_cell[depth] = best
            branch_value[depth] = v
            guesses += 1
            child = stack[depth + 1]
            child[:] = state
            child[best] = v
            depth += 1
            failed = not _propagate(child, peers, units, triads)
            if not failed:
                continue
        # backtrack: eliminate the branch's digit in the parent until a parent stays consistent
        while True:
            if depth == 0:
                return count, guesses, first
            depth -= 1
            state = stack[depth]
            state[branch_cell[depth]] &= ~branch_value[depth]
            if _propagate(state, peers, units, triads):
                break


@numba.njit(cache=True, nogil=True)
def solve_batch(grids, limit, solutions, counts, guesses, first):
    """Solve/rate many puzzles: counts (≤ limit), complete-search guesses, guesses to first solution."""
    stack = np.empty((82, 81), dtype=np.int32)
    for i in range(grids.shape[0]):
        c, g, f = _search(grids[i], limit, False, solutions[i], stack, PEERS, UNITS, TRIADS)
        counts[i] = c
        guesses[i] = g
        first[i] = f


# --------------------------------------------------------------------------------------------
# Generator
@numba.njit(cache=True)
def _random_full_grid(out, stack, peers, units, triads):
    empty = np.zeros(81, dtype=np.int8)
    _search(empty, 1, True, out, stack, peers, units, triads)


@numba.njit(cache=True)
def _unique_without(puzzle, cell, stack, peers, units, triads):
    """Is the unique puzzle still unique with the clue at `cell` removed? Every solution with that
    cell's digit is the known one, so: unique iff no solution puts another digit there (a search
    for one solution, not a count to 2 — about half the work)."""
    _load(puzzle, stack[0])
    stack[0, cell] = ALL & ~(1 << (puzzle[cell] - 1))
    solution = np.empty(81, dtype=np.int8)
    return _search_state(1, False, solution, solution, stack, peers, units, triads)[0] == 0


@numba.njit(cache=True)
def _minimise(puzzle, stack, peers, units, triads):
    """Remove clues in random order while the (unique) puzzle stays unique (result is minimal)."""
    order = np.random.permutation(81)
    for k in range(81):
        cell = order[k]
        d = puzzle[cell]
        if d == 0:
            continue
        if _unique_without(puzzle, cell, stack, peers, units, triads):
            puzzle[cell] = 0


@numba.njit(cache=True)
def _rate(puzzle, stack, peers, units, triads):
    """(guesses to the first solution, guesses of the complete search)."""
    solution = np.empty(81, dtype=np.int8)
    result = _search(puzzle, 2, False, solution, stack, peers, units, triads)
    return result[2], result[1]


@numba.njit(cache=True)
def _mutate(puzzle, drop, stack, peers, units, triads):
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
        count = _search_state(2, False, solution, second, stack, peers, units, triads)[0]
        if count == 1:
            _minimise(puzzle, stack, peers, units, triads)
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
def _random_symmetry(source, out):
    """out = source under a random symmetry, drawn as the reference augmentation draws it."""
    digit = np.zeros(10, dtype=np.int8)
    perm = np.random.permutation(9)
    for k in range(9):
        digit[k + 1] = perm[k] + 1
    transpose = np.random.random() < 0.5
    rows = np.empty(9, dtype=np.int64)
    cols = np.empty(9, dtype=np.int64)
    for lines in (rows, cols):
        bands = np.random.permutation(3)
        for b in range(3):
            within = np.random.permutation(3)
            for k in range(3):
                lines[b * 3 + k] = bands[b] * 3 + within[k]
    for i in range(9):
        for j in range(9):
            r = rows[i]
            c = cols[j]
            out[i * 9 + j] = digit[source[c * 9 + r] if transpose else source[r * 9 + c]]


@numba.njit(cache=True)
def _robust_rate(puzzle, samples, variant, stack, peers, units, triads):
    """(mean guesses to the first solution, mean log(1 + complete-search guesses)) over `samples`
    random symmetric variants. A search that scored one orientation learns our solver's tie-breaking
    instead of hardness (measured: puzzles found that way rate 30 as found, 7 under random
    symmetries); tdoku's generator scores by mean log guesses over random permutations for the same
    reason — the log keeps one lucky-hard orientation from dominating."""
    first = 0.0
    full = 0.0
    for _ in range(samples):
        _random_symmetry(puzzle, variant)
        f, g = _rate(variant, stack, peers, units, triads)
        first += f
        full += np.log1p(g)
    return first / samples, full / samples


SCREEN_MARGIN = 1.0  # log-guesses: skip a candidate whose first orientation is e× below the bar


@numba.njit(cache=True)
def _start_pool(pool, rating, fitness, samples, variant, stack, peers, units, triads):
    """Fill the pool with random minimal puzzles and rate them."""
    grid = np.empty(81, dtype=np.int8)
    for p in range(pool.shape[0]):
        _random_full_grid(grid, stack, peers, units, triads)
        pool[p] = grid
        _minimise(pool[p], stack, peers, units, triads)
        rating[p], fitness[p] = _robust_rate(pool[p], samples, variant, stack, peers, units, triads)


@numba.njit(cache=True)
def _new_pool(pool_size, samples, stack, peers, units, triads):
    """A started pool with its ratings and fitness, plus scratch grids (variant, candidate)."""
    pool = np.zeros((pool_size, 81), dtype=np.int8)
    rating = np.zeros(pool_size, dtype=np.float64)
    fitness = np.zeros(pool_size, dtype=np.float64)
    variant = np.empty(81, dtype=np.int8)
    _start_pool(pool, rating, fitness, samples, variant, stack, peers, units, triads)
    return pool, rating, fitness, variant, np.empty(81, dtype=np.int8)


@numba.njit(cache=True)
def _weakest(fitness):
    worst = 0
    for p in range(fitness.shape[0]):
        if fitness[p] < fitness[worst]:
            worst = p
    return worst


@numba.njit(cache=True)
def _search_step(pool, rating, fitness, candidate, floor, samples, max_drop, variant, stack, peers, units, triads):
    """One local-search step: mutate a random pool member into `candidate`; unless its first random
    orientation rates e× below the bar — the pool's weakest fitness, or `floor` if lower (both log1p
    of complete-search guesses) — rate it on `samples` symmetries and let it replace the pool's
    weakest if at least as fit (ties too, so the pool keeps moving on plateaus). Returns the
    candidate's search rating, or -1 when it was not rated."""
    worst = _weakest(fitness)
    bar = min(fitness[worst], floor)
    candidate[:] = pool[np.random.randint(pool.shape[0])]
    if not _mutate(candidate, 1 + np.random.randint(max_drop), stack, peers, units, triads):
        return -1.0
    if samples > 1:
        # screen on one random orientation first: most candidates are far below the bar (rejected
        # anyway), and the other samples cost ~40% of a step
        _random_symmetry(candidate, variant)
        if np.log1p(_rate(variant, stack, peers, units, triads)[1]) < bar - SCREEN_MARGIN:
            return -1.0
    first, full = _robust_rate(candidate, samples, variant, stack, peers, units, triads)
    if full >= fitness[worst]:
        pool[worst] = candidate
        rating[worst] = first
        fitness[worst] = full
    return first


@numba.njit(cache=True)
def _generate_one(seed, min_rating, samples, pool_size, max_iterations, max_drop, out, stack, peers, units,
                  triads):
    """One seeded chain: returns (search rating, iterations); out receives the puzzle.

    Fitness is the complete-search guess count (steadier: it does not depend on which branch holds
    the solution); the chain stops when a pool member's rating (guesses to the first solution, the
    tdoku-comparable number) reaches min_rating, or after max_iterations (then: the highest
    rating). Both are symmetry-averaged (_robust_rate); the puzzle is returned in a random
    orientation so its plain rating is an unbiased draw, not the orientation the search saw.
    Used for bounded bands (the caller filters by max_rating) and one puzzle per chain.
    """
    np.random.seed(seed)
    pool, rating, fitness, variant, candidate = _new_pool(pool_size, samples, stack, peers, units, triads)
    iterations = 0
    while True:
        best = 0      # highest rating
        reached = -1  # lowest rating >= min_rating (so bounded bands such as [0, 0] accept often)
        for p in range(pool_size):
            if rating[p] > rating[best]:
                best = p
            if rating[p] >= min_rating and (reached < 0 or rating[p] < rating[reached]):
                reached = p
        if reached >= 0 and rating[reached] > 0:
            # winner's curse: the search picked the luckiest estimate, so re-rate with fresh samples
            # and keep the pooled mean; a candidate that falls below min_rating searches on.
            fresh = _robust_rate(pool[reached], samples, variant, stack, peers, units, triads)[0]
            rating[reached] = (rating[reached] + fresh) / 2
            if rating[reached] < min_rating:
                reached = -1
        if reached >= 0 or iterations >= max_iterations:
            if reached < 0:
                reached = best
            _random_symmetry(pool[reached], out)
            return rating[reached], iterations
        iterations += 1
        _search_step(pool, rating, fitness, candidate, np.inf, samples, max_drop, variant, stack, peers, units,
                     triads)


@numba.njit(cache=True)
def _shared_clues(a, b):
    shared = 0
    for cell in range(81):
        if a[cell] and a[cell] == b[cell]:
            shared += 1
    return shared


@numba.njit(cache=True)
def _generate_chain(seed, min_rating, samples, pool_size, max_iterations, max_drop, max_shared, restart, out,
                    emitted, ratings, iterations, stack, peers, units, triads):
    """One seeded chain that emits up to len(out) puzzles rated >= min_rating; returns how many.

    The pool climbs as in _generate_one, but the chain does not end at the first hard puzzle: once
    the pool is hard, many of its mutations are hard too, so every *candidate* whose search rating
    reaches min_rating (and holds up under fresh samples) is emitted — this is what makes extreme
    sets fast (the climb from random minimal puzzles is most of a chain's cost). Candidates of one
    chain are related (mutations of the same pool), so a candidate is emitted only if it differs from
    every earlier emission of the chain and shares at most `max_shared` of its clues (same cell, same
    digit) with each. Climbs are heavy-tailed (a pool can sit below min_rating for tens of thousands
    of steps), so the pool restarts from fresh random minimal puzzles after `restart` steps without
    an emission.
    The budget is max_iterations per requested puzzle. `emitted` receives the puzzles in the
    search's orientation (the one the clue-sharing test compares), `out` in a random one.
    """
    np.random.seed(seed)
    pool, rating, fitness, variant, candidate = _new_pool(pool_size, samples, stack, peers, units, triads)
    floor = np.log1p(min_rating)
    n = 0
    step = 0
    last = 0  # step of the last emission or restart
    while n < out.shape[0] and step < max_iterations * out.shape[0]:
        step += 1
        if step - last > restart:
            _start_pool(pool, rating, fitness, samples, variant, stack, peers, units, triads)
            last = step
        # screen only what can neither join the pool nor be emitted
        first = _search_step(pool, rating, fitness, candidate, floor, samples, max_drop, variant, stack, peers,
                             units, triads)
        if first < min_rating:
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
        # winner's curse (as in _generate_one): re-rate with fresh samples, keep the pooled mean
        first = (first + _robust_rate(candidate, samples, variant, stack, peers, units, triads)[0]) / 2
        if first < min_rating:
            continue
        emitted[n] = candidate
        _random_symmetry(candidate, out[n])
        ratings[n] = first
        iterations[n] = step
        last = step
        n += 1
    return n


@numba.njit(cache=True, nogil=True)
def generate_batch(seeds, min_rating, samples, pool_size, max_iterations, max_drop, puzzles, ratings,
                   iterations):
    stack = np.empty((82, 81), dtype=np.int32)
    for i in range(seeds.shape[0]):
        r, it = _generate_one(seeds[i], min_rating, samples, pool_size, max_iterations, max_drop, puzzles[i],
                              stack, PEERS, UNITS, TRIADS)
        ratings[i] = r
        iterations[i] = it


@numba.njit(cache=True, nogil=True)
def generate_chains_batch(seeds, min_rating, samples, pool_size, max_iterations, max_drop, max_shared, restart,
                          puzzles, originals, ratings, iterations, counts):
    """puzzles (chains, per_chain, 81): chain i emits counts[i] puzzles into puzzles[i, :counts[i]]."""
    stack = np.empty((82, 81), dtype=np.int32)
    for i in range(seeds.shape[0]):
        counts[i] = _generate_chain(seeds[i], min_rating, samples, pool_size, max_iterations, max_drop,
                                    max_shared, restart, puzzles[i], originals[i], ratings[i], iterations[i], stack,
                                    PEERS, UNITS, TRIADS)


@numba.njit(cache=True, nogil=True)
def random_minimal_batch(seeds, puzzles):
    """Random full grid, then clues removed in random order while unique (tdoku's 'unbiased'-like)."""
    stack = np.empty((82, 81), dtype=np.int32)
    for i in range(seeds.shape[0]):
        np.random.seed(seeds[i])
        _random_full_grid(puzzles[i], stack, PEERS, UNITS, TRIADS)
        _minimise(puzzles[i], stack, PEERS, UNITS, TRIADS)


# --------------------------------------------------------------------------------------------
# Canonical form: the lexicographically smallest relabelled string over all 2·6^4·6^4 symmetries
# (transpose × band, row-in-band, stack, column-in-stack permutations), digits relabelled in order of
# first appearance. Brute force with early exit; ≈20 CPU-ms per puzzle, so the leakage guard only
# calls it on puzzles whose cheap invariant collides (see tasks/sudoku.py).
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
                relabel[0] = 0
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
