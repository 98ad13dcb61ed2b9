"""Compiled (numba) Sudoku solver and rater on tdoku's scale, random symmetries, canonical form.

Grids are int8 arrays of 81 cells, row-major, 0 = blank, 1..9 = digits.

The search follows the rule of tdoku's `solver_dpll_triad_simd` (docs/tasks/sudoku.md, "Rater"),
written here from its description, not its code. A search node holds
- the candidate set of every cell (9 bits), and
- for each of the 6 *bands* (3 horizontal: rows 0-2, 3-5, 6-8; 3 vertical: the column stacks) and
  each of the 6 *configurations* of a digit in a band (which minirow — or minicolumn — of each of
  the band's three boxes holds the digit: the 3! permutations), the set of digits that may still take
  that configuration.
Propagation brings a node to a fixed point of: naked singles (a placed digit leaves its 20 peers);
cells → configurations (a digit absent from a minirow, or placed in another minirow of the same box,
rules out the configurations that put it there); configurations → cells (a digit no remaining
configuration puts in a minirow leaves its cells; a digit every remaining configuration puts there
and that only one of its cells allows is placed); and the minirow cardinality (a minirow holds exactly
three digits: three possible ⇒ all three there, three certain ⇒ no other). Hidden singles and locked
candidates follow from these. Branching is on configurations, as tdoku's: among the unfixed bands
pick the one with the fewest remaining (digit, configuration) pairs (ties: horizontal bands first,
top to bottom, then vertical), in it the lowest digit with exactly 2 configurations, else 3, else the
lowest with more; try its lowest-numbered configuration (numbering below), then its negation.

A *guess* is one branch point, counted when its first alternative is tried; the negation is forced,
not counted. The search counts solutions up to `limit` and reports both guess counts: to the first
solution (`guesses_first`, tdoku's limit-1 rating mode) and for the complete search that also proves
uniqueness (`guesses_complete`, limit 2: the quantity of tdoku's published means). 0 = solved by
propagation alone. `rate_batch` averages both over random symmetries of each puzzle (tdoku's
benchmarks permute every puzzle at random for the same reason: one orientation's count depends on
tie-breaking).

Scratch: a search needs a `(DEPTH, STATE)` int32 stack (`new_stack()`); each guess fixes one
(band, digit) pair, so 54 guesses deep at most.
"""
from __future__ import annotations

import numba
import numpy as np

ALL = 0x1FF      # candidates 1..9 as bits 0..8
DONE = 0x200     # "placed and eliminated from peers" flag, bit 9
CONF = 81        # state[CONF + band * 6 + k]: digits that may take configuration k in the band
STATE = CONF + 36
DEPTH = 56


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
    # band_cells[band, peer, elem]: the 3 cells of minirow `elem` (row within the band) of box `peer`
    # (box within the band) — for vertical bands, minicolumn `elem` of the stack's box `peer`.
    band_cells = np.zeros((6, 3, 3, 3), dtype=np.int64)
    for band in range(6):
        for peer in range(3):
            for elem in range(3):
                for q in range(3):
                    if band < 3:
                        band_cells[band, peer, elem, q] = (3 * band + elem) * 9 + 3 * peer + q
                    else:
                        band_cells[band, peer, elem, q] = (3 * peer + q) * 9 + 3 * (band - 3) + elem
    # configuration k puts the digit in element CONFIGS[k, peer] of each box peer: the three cyclic
    # shifts, then the three reflections (tdoku's numbering)
    configs = np.array([[0, 1, 2], [1, 2, 0], [2, 0, 1], [2, 1, 0], [0, 2, 1], [1, 0, 2]], dtype=np.int64)
    contains = np.zeros((3, 3), dtype=np.int64)   # contains[peer, elem]: 6-bit set of configurations
    for k in range(6):
        for peer in range(3):
            contains[peer, configs[k, peer]] |= 1 << k
    return units, peers, band_cells, configs, contains


UNITS, PEERS, BAND_CELLS, CONFIGS, CONTAINS = _tables()


def new_stack() -> np.ndarray:
    return np.empty((DEPTH, STATE), dtype=np.int32)


@numba.njit(cache=True, inline="always")
def _popcount(m):
    count = 0
    while m:
        m &= m - 1
        count += 1
    return count


@numba.njit(cache=True)
def _naked_singles(s, peers):
    """Place every single-candidate cell and remove its digit from its peers.
    Returns 1 if something changed, 0 if not, -1 on a contradiction."""
    progress = 0
    for cell in range(81):
        m = s[cell]
        if m & DONE:
            continue
        if m == 0:
            return -1
        if m & (m - 1) == 0:
            s[cell] = m | DONE
            for k in range(20):
                p = peers[cell, k]
                pm = s[p]
                if pm & m:
                    if pm & DONE:
                        return -1
                    pm &= ~m
                    if pm == 0:
                        return -1
                    s[p] = pm
            progress = 1
    return progress


@numba.njit(cache=True)
def _band(s, b, band_cells, contains):
    """One pass over band b: cells → configurations, then configurations → cells (and minirow
    cardinality). Returns 1 if something changed, 0 if not, -1 on a contradiction."""
    base = CONF + 6 * b
    progress = 0
    for p in range(3):
        for e in range(3):
            union = 0
            placed = 0
            for q in range(3):
                m = s[band_cells[b, p, e, q]] & ALL
                union |= m
                if m & (m - 1) == 0:
                    placed |= m
            inside = contains[p, e]
            for k in range(6):
                old = s[base + k]
                new = old & union if (inside >> k) & 1 else old & ~placed
                if new != old:
                    s[base + k] = new
                    progress = 1
    anywhere = 0
    for k in range(6):
        anywhere |= s[base + k]
    if anywhere != ALL:
        return -1
    for p in range(3):
        for e in range(3):
            inside = contains[p, e]
            possible = 0
            elsewhere = 0
            for k in range(6):
                if (inside >> k) & 1:
                    possible |= s[base + k]
                else:
                    elsewhere |= s[base + k]
            certain = ALL & ~elsewhere
            n_possible = _popcount(possible)
            n_certain = _popcount(certain)
            if n_possible < 3 or n_certain > 3:
                return -1
            if n_possible == 3 and certain != possible:      # all three possible digits are here
                for k in range(6):
                    if not (inside >> k) & 1 and s[base + k] & possible:
                        s[base + k] &= ~possible
                        progress = 1
                certain = possible
            elif n_certain == 3 and possible != certain:     # three digits certain: no other here
                for k in range(6):
                    if (inside >> k) & 1 and s[base + k] & ~certain:
                        s[base + k] &= certain
                        progress = 1
                possible = certain
            once = 0
            twice = 0
            for q in range(3):
                cell = band_cells[b, p, e, q]
                m = s[cell]
                if m & DONE:
                    if m & ~possible & ALL:
                        return -1
                else:
                    kept = m & possible
                    if kept != m:
                        if kept == 0:
                            return -1
                        s[cell] = kept
                        progress = 1
                        m = kept
                d = m & ALL
                twice |= once & d
                once |= d
            exactly = certain & once & ~twice   # certain here, and only one cell allows it
            if exactly:
                for q in range(3):
                    cell = band_cells[b, p, e, q]
                    m = s[cell]
                    if m & DONE == 0 and m & exactly:
                        d = m & exactly
                        if d & (d - 1):
                            return -1
                        if m != d:
                            s[cell] = d
                            progress = 1
    return progress


@numba.njit(cache=True)
def _propagate(s, peers, band_cells, contains):
    """Bring a state to the fixed point of the rules above; False on contradiction."""
    while True:
        changed = _naked_singles(s, peers)
        if changed < 0:
            return False
        for b in range(6):
            r = _band(s, b, band_cells, contains)
            if r < 0:
                return False
            changed |= r
        if changed == 0:
            return True


@numba.njit(cache=True)
def _load(grid, state):
    for cell in range(81):
        d = grid[cell]
        state[cell] = ALL if d == 0 else (1 << (d - 1))
    for k in range(CONF, STATE):
        state[k] = ALL


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
def _choose(state):
    """(band, digit bit) to branch on by tdoku's rule, or (-1, 0) when every band is fixed."""
    best = -1
    best_total = 1000
    for b in range(6):
        total = 0
        for k in range(6):
            total += _popcount(state[CONF + 6 * b + k])
        if 9 < total < best_total:
            best_total = total
            best = b
    if best < 0:
        return -1, 0
    two = 0
    three = 0
    more = 0
    for v in range(9):
        bit = 1 << v
        n = 0
        for k in range(6):
            if state[CONF + 6 * best + k] & bit:
                n += 1
        if n == 2:
            two |= bit
        elif n == 3:
            three |= bit
        elif n > 3:
            more |= bit
    chosen = two if two else three if three else more
    return best, chosen & -chosen


@numba.njit(cache=True)
def _search_state(limit, randomize, solution, second, stack, peers, band_cells, contains):
    """Count solutions from the state in stack[0], up to `limit`; returns (count, guesses of the
    search, guesses to the first solution). randomize: take a random configuration (np.random,
    seeded by the caller) instead of the lowest-numbered one, to draw random grids. solution and
    second receive the first two solutions found."""
    if not _propagate(stack[0], peers, band_cells, contains):
        return 0, 0, 0
    branch_band = np.empty(DEPTH, dtype=np.int64)
    branch_config = np.empty(DEPTH, dtype=np.int64)
    branch_bit = np.empty(DEPTH, dtype=np.int32)
    count = 0
    guesses = 0
    first = 0
    depth = 0
    while True:
        state = stack[depth]
        band, bit = _choose(state)
        if band < 0:  # every band fixed: a solution
            count += 1
            if count == 1:
                first = guesses
                _write_solution(state, solution)
            elif count == 2:
                _write_solution(state, second)
            if count >= limit:
                return count, guesses, first
        else:
            base = CONF + 6 * band
            k = 0
            while not state[base + k] & bit:
                k += 1
            if randomize:
                options = 0
                for j in range(6):
                    if state[base + j] & bit:
                        options += 1
                pick = np.random.randint(options)
                k = 0
                while True:
                    if state[base + k] & bit:
                        if pick == 0:
                            break
                        pick -= 1
                    k += 1
            branch_band[depth] = band
            branch_config[depth] = k
            branch_bit[depth] = bit
            guesses += 1
            child = stack[depth + 1]
            child[:] = state
            for j in range(6):
                if j != k:
                    child[base + j] &= ~bit
            depth += 1
            if _propagate(child, peers, band_cells, contains):
                continue
        # backtrack: negate the branch's configuration in the parent until a parent stays consistent
        while True:
            if depth == 0:
                return count, guesses, first
            depth -= 1
            state = stack[depth]
            state[CONF + 6 * branch_band[depth] + branch_config[depth]] &= ~branch_bit[depth]
            if _propagate(state, peers, band_cells, contains):
                break


@numba.njit(cache=True)
def _search(grid, limit, randomize, solution, stack):
    """_search_state from a grid; returns (count, guesses_complete, guesses_first)."""
    _load(grid, stack[0])
    second = np.empty(81, dtype=np.int8)
    return _search_state(limit, randomize, solution, second, stack, PEERS, BAND_CELLS, CONTAINS)


@numba.njit(cache=True, nogil=True)
def solve_batch(grids, limit, solutions, counts, complete, first):
    """Solve/rate many puzzles in their given orientation: solution counts (≤ limit), guesses of the
    search (complete when the puzzle has fewer than `limit` solutions), guesses to the first one."""
    stack = np.empty((DEPTH, STATE), dtype=np.int32)
    for i in range(grids.shape[0]):
        c, g, f = _search(grids[i], limit, False, solutions[i], stack)
        counts[i] = c
        complete[i] = g
        first[i] = f


# --------------------------------------------------------------------------------------------
# Random symmetries and the symmetry-averaged rating
@numba.njit(cache=True)
def random_symmetry(source, out):
    """out = source under a random symmetry, drawn as the reference augmentation draws it: digit
    relabelling, transpose with p = 0.5, band and row-in-band, stack and column-in-stack orders."""
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
def rate_symmetries(puzzle, samples, variant, solution, stack):
    """(mean guesses_complete, mean log(1 + guesses_complete), mean guesses_first) over `samples`
    random symmetric variants (np.random, seeded by the caller)."""
    complete = 0.0
    logs = 0.0
    first = 0.0
    for _ in range(samples):
        random_symmetry(puzzle, variant)
        _, g, f = _search(variant, 2, False, solution, stack)
        complete += g
        logs += np.log1p(g)
        first += f
    return complete / samples, logs / samples, first / samples


@numba.njit(cache=True, nogil=True)
def rate_batch(grids, samples, seeds, complete, first):
    """Per puzzle, seeded by seeds[i]: mean complete-search and first-solution guesses over
    `samples` random symmetries."""
    stack = np.empty((DEPTH, STATE), dtype=np.int32)
    variant = np.empty(81, dtype=np.int8)
    solution = np.empty(81, dtype=np.int8)
    for i in range(grids.shape[0]):
        np.random.seed(seeds[i])
        complete[i], _, first[i] = rate_symmetries(grids[i], samples, variant, solution, stack)
