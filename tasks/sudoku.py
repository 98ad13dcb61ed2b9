"""Sudoku-Extreme: fill a 9×9 Sudoku (HRM/TRM's benchmark), generated hard by search or loaded.

The public Sudoku-Extreme set cannot be downloaded here, so puzzles are *made* (docs/reference.md (data)):
random full grid → random minimal puzzle → pool-based local search for difficulty (tdoku's
recipe), in the numba core (`tasks/_sudoku_solver.py`, `tasks/_sudoku_generator.py`), seeded, cached
on disk. By default every puzzle comes from its own search chain, and a split holds at most one
puzzle per solution grid up to symmetry.

rating = tdoku's measure: guesses of a complete search (find the solution and prove it unique) with
tdoku's propagation and branching rule, averaged over random symmetries (RATING_SYMMETRIES per puzzle
when stored; `min_rating`/`max_rating` refer to the generator's estimate of the same quantity).
Measured on forum_hardest_1106: 116.0 (4 symmetries per puzzle) vs tdoku's published 113.16
(docs/tasks/sudoku.md). `guesses_first` / `guesses_complete` are the plain counts of one orientation.

Encoding: PAD 0, blank 1, digits 1..9 → 2..10 (vocab 11); all 81 cells supervised.
exact_accuracy counts *valid solutions* (every row/column/box a permutation of 1..9 and the givens
kept): for a unique puzzle that is exactly the stored answer; for a loaded puzzle with several
solutions any of them counts. `string_match` is the plain comparison with the stored answer.

Splits: "train" (originals first, then `augmentations` reference-style augmentations of each),
"test" (same rating band, inequivalent to train under every Sudoku symmetry), and one split per
entry of `rating_bands` ("rating_0", "rating_1_3", "rating_11_up" …) for the difficulty-
extrapolation curve (x = the band's lower bound).
"""
from __future__ import annotations

import zlib
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from tasks._sudoku_data import RATING_SYMMETRIES, fill_blanks, generate, load, rate, solve, valid_solutions
from tasks._sudoku_symmetry import augment, equivalent_to_any
from tasks.cache import cached_arrays
from tasks.maze import PRESETS as MAZE_PRESETS
from tasks.protocol import DataError, Task, TaskData, TaskSpec
from tasks.registry import register_task

VOCAB_SIZE = 11  # PAD 0, blank 1, digits 2..10


@dataclass
class SudokuConfig:
    train_size: int = 1000
    test_size: int = 1000
    augmentations: int = 0        # augmented copies per training puzzle (paper: 1000), originals kept
    min_rating: int = 20          # generated train/test puzzles: min_rating <= search rating (complete-search
    max_rating: int = -1          # ... guesses, mean over random symmetries) <= max_rating; -1 = no upper bound
    rating_bands: str = ""        # extra eval splits, e.g. "0,1-3,4-10,11-" (one split per band)
    band_size: int = 200          # puzzles per rating-band split
    pool_size: int = 2            # local-search pool (measured: 2 is fastest to reach rating 20)
    max_drop: int = 2             # clues dropped per mutation: 1..max_drop
    max_iterations: int = 20000   # local-search steps per puzzle before giving up on min_rating
    rating_samples: int = 4       # generator rates each candidate as the mean over this many random symmetries
    puzzles_per_chain: int = 1    # unbounded bands: a search chain emits up to this many puzzles once its pool is
                                  # hard (1 = one independent chain per puzzle: the most varied, and measured faster)
    max_shared: float = 0.5       # ... each sharing at most this fraction of its clues with the chain's earlier ones
    restart_steps: int = 4000     # ... and restarting its pool after this many search steps without an emission
    blanks: int = 0               # > 0: re-add solution digits (random cells, seeded) until at most this many
                                  # blanks remain: an easier, still-unique band for CPU studies; 0 = minimal.
                                  # Generated puzzles only: a loaded file (task.path) is used as it is
    seed: int = 0                 # data seed (independent of the training seed)
    path: str = ""                # load puzzles (reference CSV or one per line) instead of generating
    test_path: str = ""           # optional file for the test split when `path` is set


def parse_bands(text: str) -> list[tuple[int, int]]:
    """ "0,1-3,11-" → [(0, 0), (1, 3), (11, -1)] (-1 = unbounded)."""
    bands = []
    for part in filter(None, (p.strip() for p in text.split(","))):
        try:
            if "-" in part:
                lo, hi = part.split("-", 1)
                band = (int(lo), int(hi) if hi else -1)
            else:
                band = (int(part), int(part))
        except ValueError:
            raise ValueError(f"task.rating_bands: {part!r} is not 'N', 'N-M' or 'N-'") from None
        if band[0] < 0 or (band[1] >= 0 and band[1] < band[0]):
            raise ValueError(f"task.rating_bands: {part!r} is an empty band")
        bands.append(band)
    return bands


def band_name(band: tuple[int, int]) -> str:
    lo, hi = band
    return f"rating_{lo}" if lo == hi else f"rating_{lo}_{hi}" if hi >= 0 else f"rating_{lo}_up"


PRESETS: dict[str, dict[str, Any]] = {
    # seconds: for tests
    "smoke": {"task.train_size": 32, "task.test_size": 16, "task.min_rating": 0, "task.max_rating": 0,
              "task.augmentations": 1, "task.rating_bands": "1-", "task.band_size": 8,
              "model.hidden": 32, "model.num_heads": 2, "model.ffn_multiple": 32,
              "train.steps": 4, "train.batch_size": 16, "train.lr": 1e-3, "train.lr_warmup_steps": 1,
              "train.weight_decay": 0.1, "train.segments": 2, "train.eval_batch_size": 32},
    # The cpu study's preset: NOT Sudoku-Extreme (rating-0 puzzles with 6 blanks), a protocol check at
    # CPU scale; the budget is set by the slowest models. How it was calibrated: docs/presets.md.
    "cpu": {"task.train_size": 1000, "task.test_size": 256, "task.min_rating": 0, "task.max_rating": 0,
            "task.blanks": 6, "task.augmentations": 7, "task.rating_bands": "",
            "model.hidden": 64, "model.num_heads": 4, "model.ffn_multiple": 32,
            "train.steps": 170, "train.batch_size": 64, "train.lr": 1e-3, "train.lr_warmup_steps": 50,
            "train.weight_decay": 0.1, "train.segments": 2, "train.eval_batch_size": 256,
            "train.diagnostics_examples": 128},
    # HRM's Sudoku-Extreme-1k recipe (docs/reference.md (HRM, data)): 1000 puzzles × 1000 augmentations, extreme
    # test set; model/optimiser settings are the Maze-Hard-1k ones (the paper uses one config for both).
    "paper": {"task.train_size": 1000, "task.test_size": 1000, "task.min_rating": 20,
              "task.augmentations": 1000, "task.rating_bands": "0,1-3,4-10,11-30,31-", "task.band_size": 200,
              **{key: value for key, value in MAZE_PRESETS["paper"].items() if not key.startswith("task.")}},
}


@register_task("sudoku", config=SudokuConfig, presets=PRESETS,
               description="Sudoku-Extreme: 9×9 Sudoku, generated hard by search (tdoku recipe) or loaded")
class SudokuTask(Task):
    protocol_check_presets = ("smoke", "quick", "cpu")   # CPU scale cannot learn it (docs/presets.md)

    def __init__(self, config: SudokuConfig):
        super().__init__(config)
        if config.train_size < 1 or config.test_size < 1 or config.band_size < 1:
            raise ValueError("task.train_size, task.test_size and task.band_size must be >= 1")
        if config.augmentations < 0:
            raise ValueError("task.augmentations must be >= 0")
        if not 0 <= config.blanks <= 81:
            raise ValueError(f"task.blanks must be in 0..81 (0 = minimal puzzles), got {config.blanks}")
        if config.min_rating < 0 or (0 <= config.max_rating < config.min_rating):
            raise ValueError("task.min_rating must be >= 0 and <= task.max_rating (or max_rating = -1)")
        if (config.pool_size < 1 or config.max_drop < 1 or config.rating_samples < 1 or config.max_iterations < 0
                or config.puzzles_per_chain < 1 or config.restart_steps < 1):
            raise ValueError("task.pool_size, task.max_drop, task.rating_samples, task.puzzles_per_chain and "
                             "task.restart_steps must be >= 1, task.max_iterations >= 0")
        if not 0.0 <= config.max_shared <= 1.0:
            raise ValueError("task.max_shared must be in [0, 1]")
        self.bands = {band_name(b): b for b in parse_bands(config.rating_bands)}
        self.spec = TaskSpec(vocab_size=VOCAB_SIZE, seq_len=81, grid=True)

    def eval_splits(self) -> list[str]:
        return ["test", *self.bands]

    def curve_point(self, split: str) -> tuple[str, float] | None:
        if split in self.bands:
            return ("rating", float(self.bands[split][0]))
        if split == "test" and self.bands and not self.config.path:  # the training band is a point too
            return ("rating", float(self.config.min_rating))
        return None

    # ----------------------------------------------------------------------------------------
    def _generate(self, count: int, band: tuple[int, int], stream: str) -> dict[str, np.ndarray]:
        config = self.config
        arrays = generate(count, band[0], band[1], seed=config.seed, stream=stream, pool_size=config.pool_size,
                          max_drop=config.max_drop, max_iterations=config.max_iterations,
                          rating_samples=config.rating_samples, puzzles_per_chain=config.puzzles_per_chain,
                          max_shared=config.max_shared, restart_steps=config.restart_steps)
        return fill_blanks(arrays, config.blanks, seed=zlib.crc32(f"{config.seed}:{stream}:blanks".encode()))

    def _arrays(self, split: str) -> dict[str, np.ndarray]:
        config = self.config
        if config.path:
            if split == "train":
                return load(config.path)
            if split == "test" and config.test_path:
                return self._guarded(load(config.test_path), self._arrays("train"), "test", config.test_path)
            if split == "test":
                raise DataError("task.path is set but task.test_path is not: give both files")
            raise DataError(f"split {split!r} is generated; it cannot be combined with task.path "
                            "(set task.rating_bands=\"\")")
        train_band = (config.min_rating, config.max_rating)
        if split == "train":
            return cached_arrays(self, "train", lambda: self._generate(config.train_size, train_band, "train"))
        if split == "test" or split in self.bands:
            band = train_band if split == "test" else self.bands[split]
            count = config.test_size if split == "test" else config.band_size

            def make() -> dict[str, np.ndarray]:
                # Leakage guard: drop any puzzle equivalent to a training puzzle (draw a few extra).
                arrays = self._generate(count + count // 20 + 1, band, split)
                return self._guarded(arrays, self._arrays("train"), split, None, count)
            return cached_arrays(self, split, make)
        raise DataError(f"unknown sudoku split {split!r}; splits: train, {', '.join(self.eval_splits())}")

    @staticmethod
    def _guarded(arrays: dict[str, np.ndarray], train: dict[str, np.ndarray], split: str, path: str | None,
                 count: int | None = None) -> dict[str, np.ndarray]:
        leaked = equivalent_to_any(arrays["questions"], train["questions"])
        if path is not None and leaked.any():
            raise DataError(f"{path}: {int(leaked.sum())} test puzzles are equivalent to training puzzles "
                            "under Sudoku symmetries")
        keep = np.flatnonzero(~leaked)[:count]
        if count is not None and len(keep) < count:
            raise DataError(f"sudoku {split} split overlaps the training split; change task.seed")
        out = {k: (v[keep] if v.ndim else v) for k, v in arrays.items()}
        out["leaked_dropped"] = np.array(int(leaked.sum()))
        return out

    def build(self, split: str) -> TaskData:
        arrays = self._arrays(split)
        questions, answers = arrays["questions"], arrays["answers"]
        originals = len(questions)
        if split == "train" and self.config.augmentations:
            extra_q, extra_a = augment(questions, answers, self.config.augmentations, seed=self.config.seed)
            questions = np.concatenate([questions, extra_q])
            answers = np.concatenate([answers, extra_a])
        inputs = torch.from_numpy(questions.astype(np.int64) + 1)  # blank 0 → 1, digits → 2..10
        labels = torch.from_numpy(answers.astype(np.int64) + 1)
        meta = {"originals": originals}
        for key in ("ratings", "ratings_first", "guesses_first", "guesses_complete", "iterations", "search_ratings",
                    "source_ratings", "solution_counts"):
            if key in arrays:
                meta[key] = arrays[key].tolist()
        for key in ("chains", "leaked_dropped"):
            if key in arrays:
                meta[key] = int(arrays[key])
        if len(questions) > originals:  # the puzzle each row was augmented from (the reference sampler's groups)
            copies = self.config.augmentations
            meta["groups"] = torch.cat([torch.arange(originals), torch.arange(originals).repeat_interleave(copies)])
        return TaskData(inputs, labels, torch.zeros(len(inputs), dtype=torch.long), meta)

    def score(self, data: TaskData, predictions: torch.Tensor, **extra) -> dict[str, Any]:
        questions = (data.inputs - 1).clamp(min=0).numpy()
        digits = (predictions.cpu() - 1).numpy()
        valid = valid_solutions(questions, digits)
        correct = predictions.cpu() == data.labels
        string_match = correct.all(1)
        blanks = data.inputs == 1  # token accuracy counts the givens too (copying them scores ~0.3)
        return {"token_accuracy": correct.float().mean().item() if len(correct) else 0.0,
                "blank_accuracy": (correct & blanks).sum().item() / max(blanks.sum().item(), 1),
                "exact_accuracy": float(valid.mean()) if len(valid) else 0.0,
                "valid_solution": float(valid.mean()) if len(valid) else 0.0,
                "string_match": string_match.float().mean().item() if len(valid) else 0.0,
                "per_example_correct": valid.tolist()}

    def render(self, data: TaskData, index: int, prediction: torch.Tensor | None = None) -> str:
        def rows(tokens) -> list[str]:
            text = "".join("." if t <= 1 else str(t - 1) for t in np.asarray(tokens).tolist())
            return [" ".join(text[r * 9 + c * 3:r * 9 + c * 3 + 3] for c in range(3)) for r in range(9)]
        columns = [("question", rows(data.inputs[index])), ("answer", rows(data.labels[index]))]
        if prediction is not None:
            columns.append(("prediction", rows(prediction)))
        header = "   ".join(name.ljust(11) for name, _ in columns)
        body = ["   ".join(col[r] for _, col in columns) for r in range(9)]
        ratings = data.meta.get("ratings", data.meta.get("guesses_complete", []))
        rating = f", rating {ratings[index]:g}" if index < len(ratings) else " (augmented)"
        return "\n".join([f"sudoku {index}{rating}", header, *body])

    def stats(self, data: TaskData) -> dict[str, Any]:
        """Measured on the original puzzles with our rater (not trusted from the cache or file):
        rating_* = tdoku's measure (complete search, mean over RATING_SYMMETRIES random symmetries per
        puzzle); guesses_first_* / guesses_complete_* = plain counts of the stored orientation."""
        originals = data.meta.get("originals", len(data))
        questions = (data.inputs[:originals] - 1).clamp(min=0).numpy()
        solved = solve(questions)
        rating = rate(questions)["rating"]
        first, complete = solved["guesses_first"].astype(float), solved["guesses_complete"].astype(float)
        stats = {"count": originals, "examples": len(data), "unique": int((solved["counts"] == 1).sum()),
                 "no_solution": int((solved["counts"] == 0).sum()), "rating_symmetries": RATING_SYMMETRIES,
                 "rating_mean": float(rating.mean()), "rating_median": float(np.median(rating)),
                 "rating_max": float(rating.max()), "zero_guess_fraction": float((complete == 0).mean()),
                 "guesses_first_mean": float(first.mean()), "guesses_complete_mean": float(complete.mean()),
                 "clues_mean": float((questions > 0).sum(1).mean())}
        if "source_ratings" in data.meta:
            stats["source_rating_mean"] = float(np.mean(data.meta["source_ratings"]))
        if "iterations" in data.meta:
            stats["search_iterations_mean"] = float(np.mean(data.meta["iterations"]))
            stats["search_rating_mean"] = float(np.mean(data.meta["search_ratings"]))
        if "chains" in data.meta:
            stats["chains"] = data.meta["chains"]
        return stats
