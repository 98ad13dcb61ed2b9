"""The default Sudoku test split as the generator makes it (task defaults: min_rating 20, one chain per
puzzle, seed 0, stream "test", the 1,051 puzzles the task draws for 1,000 after its leakage guard),
measured on tdoku's scale: rating (complete-search guesses, mean over random symmetries), puzzles per
solution grid up to symmetry, and clue overlap between puzzles in the orientation the search saw them.

    python scripts/sudoku_test_set.py [--count 1051] [--out result.json]
"""
from __future__ import annotations

import argparse
import json
import time

import numpy as np

from tasks._sudoku_data import generate
from tasks._sudoku_symmetry import _equivalent_within, grid_invariants
from tasks.sudoku import SudokuConfig


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--count", type=int, default=1051)
    parser.add_argument("--out", default="")
    args = parser.parse_args()
    config = SudokuConfig()
    started, cpu = time.time(), time.process_time()
    made = generate(args.count, config.min_rating, config.max_rating, seed=config.seed, stream="test",
                    pool_size=config.pool_size, max_drop=config.max_drop, max_iterations=config.max_iterations,
                    rating_samples=config.rating_samples, puzzles_per_chain=config.puzzles_per_chain,
                    max_shared=config.max_shared, restart_steps=config.restart_steps)
    wall = time.time() - started
    ratings = made["ratings"].astype(float)
    duplicates = int(_equivalent_within(made["answers"].astype(np.int8), grid_invariants).sum())
    q = made["search_orientation"].astype(np.int64)
    clues = q > 0
    shared = (clues[:, None, :] & clues[None, :, :] & (q[:, None, :] == q[None, :, :])).sum(-1)
    fraction = shared / clues.sum(-1)[:, None]
    off_diagonal = fraction[~np.eye(len(q), dtype=bool)]
    result = {"count": int(len(ratings)), "rating_mean": ratings.mean(), "rating_median": float(np.median(ratings)),
              "rating_min": ratings.min(), "puzzles_sharing_a_grid": duplicates,
              "clue_overlap_mean": float(off_diagonal.mean()), "clue_overlap_max": float(off_diagonal.max()),
              "clues_mean": float(clues.sum(-1).mean()), "wall_seconds": wall,
              "cpu_seconds_main_thread": time.process_time() - cpu}
    print(json.dumps(result, indent=2))
    if args.out:
        with open(args.out, "w") as handle:
            json.dump(result, handle, indent=2)


if __name__ == "__main__":
    main()
