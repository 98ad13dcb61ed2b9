"""Mazes: find the shortest path in a random-wall grid (HRM's Maze-Hard) or a perfect maze (DeepThinking).

`task.kind = hard` (default) is Maze-Hard; `task.kind = perfect` is DeepThinking's maze (Bansal et al.
2022): a randomised depth-first backtracker carves an n×n cell maze on an odd (2n+1)×(2n+1) board of
walls and passages (outer border wall), start and goal are two distinct random cells, and the label is
the one path between them. Same encoding, same scorer; `min_path`/`wall_*` are Maze-Hard's alone.
The rest of this docstring describes Maze-Hard and the size extrapolation both kinds share.

Recipe (docs/reference.md (data), after Lehnert et al. 2024): a uniform random 30–50% of cells are walls;
start and goal are the farthest pair found by two BFS passes (random start almost never gives a
long path); keep only instances whose shortest path is longer than `min_path` moves (110 at 30×30).
Encoding: charset `# SGo` → tokens 1..5, PAD 0; every cell is supervised. An answer is right when
it is *a* shortest path (several may exist), not only when it equals the stored one.

The generator is compiled with numba (a pure-Python BFS loop manages ≈170 hard 30×30 mazes per
minute; the target is ≥2000) and seeded; generated sets are cached on disk by (config, split).

Size extrapolation (`task.eval_grids=[20,30]`, DeepThinking-style): train at `grid`, evaluate at
each larger N in split `test_grid_N` (curve axis "grid"; the "test" split is its first point).
Every split then shares one geometry of width W = the largest grid, so "the cell below" is always
W positions away:
  positions  each maze keeps its own N² tokens; `positions` carries row·W + col (the position
             tables are sized W² via TaskSpec.max_len). Cheap; for models that use positions.
  canvas     each maze is drawn in the top-left corner of a W×W canvas of PAD (ignored in the loss)
             — every split has W² tokens; for models that need one length (MLP mixer) or read
             the sequence in order without positions (state-space models).
Recurrent models may run more iterations at test time (train.eval_segments, or the model's
test-time key). Larger grids keep the same relative hardness: min_path scales as default_min_path.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from tasks._maze_generator import (PAD_ID, VOCAB_SIZE, WALL, decode, generate, generate_perfect, load_csv,
                                   valid_shortest_paths)
from tasks.cache import cached_arrays
from tasks.protocol import IGNORE_LABEL, DataError, Task, TaskData, TaskSpec, token_and_exact_accuracy
from tasks.registry import added_later, register_task

KINDS = ("hard", "perfect")


@dataclass
class MazeConfig:
    grid: int = 30                 # side of the square grid
    train_size: int = 1000
    test_size: int = 1000
    min_path: int = 0              # keep mazes whose shortest path has > min_path moves; 0 = scaled default
    wall_min: float = 0.3          # wall fraction drawn uniformly from [wall_min, wall_max]
    wall_max: float = 0.5
    seed: int = 0                  # data seed (independent of the training seed: same data for every model)
    path: str = ""                 # load the reference CSV (source,question,answer,rating) instead of generating
    test_path: str = ""            # optional CSV for the test split when `path` is set
    eval_grids: list[int] = field(default_factory=list)  # size extrapolation: extra splits test_grid_N
    eval_layout: str = "positions"  # how larger grids reach the model: positions | canvas (see below)
    kind: str = added_later("hard")  # hard (Maze-Hard, random walls) | perfect (depth-first carving, odd grid)


def default_min_path(grid: int) -> int:
    """110 moves at 30×30, scaled to other sizes by the median farthest-pair distance.

    Measured on this generator (3000 layouts per size): the median farthest-pair distance is
    8, 12, 16, 19, 25, 35, 54 moves at sides 6, 8, 10, 12, 15, 20, 30 ≈ 1.9·side − 3. HRM's 110 is
    2.04× the 30×30 median; keeping that ratio keeps roughly the same top ≈0.3–0.5% of layouts
    "hard" at every size (a plain side/30 scaling would make small grids impossible).
    """
    return int(round(110 * (1.9 * grid - 3) / 54))


PRESETS: dict[str, dict[str, Any]] = {
    # seconds: for tests
    "smoke": {"task.grid": 6, "task.train_size": 64, "task.test_size": 32,
              "model.hidden": 32, "model.num_heads": 2, "model.ffn_multiple": 32,
              "train.steps": 4, "train.batch_size": 16, "train.lr": 1e-3, "train.lr_warmup_steps": 1,
              "train.weight_decay": 0.1, "train.segments": 2, "train.eval_batch_size": 32},
    # The cpu study's preset (v2): 6×6 hard mazes, HRM's outer loop (2 segments, ACT off: it is an
    # ablation) for every model, warm-up then cosine decay, a budget at which the best model's loss is
    # flat at the end, 1000 test mazes per split. How it was calibrated: docs/presets.md.
    "cpu": {"task.grid": 6, "task.train_size": 10000, "task.test_size": 1000, "task.eval_grids": [8],
            "model.hidden": 64, "model.num_heads": 4, "model.ffn_multiple": 32,
            "train.steps": 2400, "train.batch_size": 64, "train.lr": 1e-3, "train.lr_warmup_steps": 50,
            "train.lr_schedule": "cosine", "train.lr_min_ratio": 0.1,
            "train.weight_decay": 0.1, "train.segments": 2, "train.act": False, "train.eval_batch_size": 256,
            "train.diagnostics_examples": 128},
    # a first run (the README's command): the cpu preset at 300 steps and 256 test mazes, ≤ 3 minutes
    "quick": {"train.steps": 300, "task.test_size": 256},
    # HRM's Maze-Hard-1k command (docs/reference.md (HRM)): for GPUs. epochs=20000 eval_interval=2000
    # lr=1e-4 puzzle_emb_lr=1e-4 weight_decay=1.0 puzzle_emb_weight_decay=1.0, batch 768; the reference
    # sampler over 2000-epoch passes takes 10 × ⌊2000·1000/768⌋ = 26040 steps (docs/presets.md).
    "paper": {"task.grid": 30, "task.train_size": 1000, "task.test_size": 1000, "task.min_path": 110,
              "model.hidden": 512, "model.num_heads": 8,
              "train.steps": 26040, "train.batch_size": 768, "train.lr": 1e-4, "train.lr_warmup_steps": 2000,
              "train.weight_decay": 1.0, "train.puzzle_emb_lr": 1e-4, "train.puzzle_emb_weight_decay": 1.0,
              "train.segments": 16, "train.act": True, "train.sampler": "groups", "train.sampler_epochs": 2000,
              "train.eval_every": 2604,
              "train.loss": "stablemax", "train.optimizer": "adam_atan2", "train.eval_batch_size": 256},
}


@register_task("maze", config=MazeConfig, presets=PRESETS,
               description="Maze-Hard (HRM's random-wall 30×30 recipe) or perfect mazes (task.kind=perfect, DeepThinking): the shortest path, any grid size")
class MazeTask(Task):
    legend = "legend: '#' wall, ' ' open, 'S' start, 'G' goal, 'o' path (answer: the shortest path from S to G)"

    def __init__(self, config: MazeConfig):
        super().__init__(config)
        if not 4 <= config.grid <= 64:
            raise ValueError(f"task.grid must be in 4..64, got {config.grid}")
        if not 0.0 <= config.wall_min <= config.wall_max < 1.0:
            raise ValueError("task.wall_min/wall_max must satisfy 0 <= wall_min <= wall_max < 1")
        if config.train_size < 1 or config.test_size < 1:
            raise ValueError("task.train_size and task.test_size must be >= 1")
        if config.kind not in KINDS:
            raise ValueError(f"task.kind must be one of {', '.join(KINDS)}, got {config.kind!r}")
        if config.kind == "perfect":
            self._check_perfect(config)
        self.min_path = (config.min_path or default_min_path(config.grid)) if config.kind == "hard" else 0
        if self.min_path >= config.grid * config.grid // 2:
            raise ValueError(f"task.min_path={self.min_path} is unreachable on a {config.grid}×{config.grid} grid")
        if any(not config.grid < n <= 64 for n in config.eval_grids):
            raise ValueError(f"task.eval_grids must be larger than task.grid={config.grid} and <= 64")
        if config.eval_layout not in ("positions", "canvas"):
            raise ValueError(f"task.eval_layout must be 'positions' or 'canvas', got {config.eval_layout!r}")
        self.width = max([config.grid, *config.eval_grids])  # the geometry every split shares
        self.canvas = bool(config.eval_grids) and config.eval_layout == "canvas"
        side = self.width if self.canvas else config.grid
        self.spec = TaskSpec(vocab_size=VOCAB_SIZE, seq_len=side * side, max_len=self.width * self.width, grid=True)

    @staticmethod
    def _check_perfect(config: MazeConfig) -> None:
        even = [n for n in [config.grid, *config.eval_grids] if n % 2 == 0]
        if even:
            raise ValueError(f"task.kind=perfect needs odd grid sides (n cells span 2n+1), got {even[0]}: "
                             f"use task.grid / task.eval_grids of {even[0] - 1} or {even[0] + 1}")
        defaults = MazeConfig()
        if config.min_path or (config.wall_min, config.wall_max) != (defaults.wall_min, defaults.wall_max):
            raise ValueError("task.min_path, task.wall_min and task.wall_max are Maze-Hard's (task.kind=hard); "
                             "perfect mazes take none of them")
        if config.path:
            raise ValueError("task.path loads Maze-Hard CSV files; task.kind=perfect generates its mazes")

    def _generate(self, count: int, grid: int, seed: int) -> dict[str, np.ndarray]:
        if self.config.kind == "perfect":
            return generate_perfect(count, grid, seed)
        return generate(count, grid, self.grid_min_path(grid), self.config.wall_min, self.config.wall_max, seed)

    def eval_splits(self) -> list[str]:
        return ["test"] + [f"test_grid_{n}" for n in self.config.eval_grids]

    def curve_point(self, split: str) -> tuple[str, float] | None:
        if not self.config.eval_grids:
            return None
        if split == "test":
            return ("grid", self.config.grid)
        if split.startswith("test_grid_"):
            return ("grid", int(split.removeprefix("test_grid_")))
        return None

    def grid_min_path(self, grid: int) -> int:
        """min_path at another grid size: the same relative hardness as at the training grid."""
        if grid == self.config.grid or self.config.kind == "perfect":
            return self.min_path
        if not self.config.min_path:
            return default_min_path(grid)
        return round(self.config.min_path * default_min_path(grid) / default_min_path(self.config.grid))

    def _split_grid(self, split: str) -> int:
        if split.startswith("test_grid_") and split.removeprefix("test_grid_").isdigit():
            grid = int(split.removeprefix("test_grid_"))
            if grid in self.config.eval_grids:
                return grid
        if split in ("train", "test"):
            return self.config.grid
        raise DataError(f"unknown maze split {split!r}; splits: train, {', '.join(self.eval_splits())}")

    def _arrays(self, split: str) -> dict[str, np.ndarray]:
        config = self.config
        if config.path:
            if split == "train":
                return load_csv(config.path, config.grid)
            if split == "test" and config.test_path:
                return load_csv(config.test_path, config.grid)
            if split == "test":
                raise DataError("task.path is set but task.test_path is not: give both CSV files")
        if split == "train":
            return cached_arrays(self, "train", lambda: self._generate(config.train_size, config.grid,
                                                                       seed=2 * config.seed))
        if split == "test":
            def make_test() -> dict[str, np.ndarray]:
                # Leakage guard: draw extra, drop any layout that also occurs in train.
                train = set(map(bytes, self._arrays("train")["questions"]))
                arrays = self._generate(config.test_size + 16, config.grid, seed=2 * config.seed + 1)
                keep = [i for i, q in enumerate(arrays["questions"]) if bytes(q) not in train][: config.test_size]
                if len(keep) < config.test_size:
                    raise DataError("maze test split overlaps the training split; change task.seed")
                return {k: (v[keep] if v.ndim else v) for k, v in arrays.items()}
            return cached_arrays(self, "test", make_test)
        grid = self._split_grid(split)
        if grid != config.grid:
            # seeds odd like "test" (never a train seed) and distinct per size
            return cached_arrays(self, split, lambda: self._generate(config.test_size, grid,
                                                                     seed=2 * config.seed + 1 + 1000 * grid))
        raise DataError(f"unknown maze split {split!r}; splits: {', '.join(self.eval_splits())}")

    def build(self, split: str) -> TaskData:
        grid = self._split_grid(split)
        arrays = self._arrays(split)
        inputs = torch.from_numpy(arrays["questions"].astype(np.int64))
        labels = torch.from_numpy(arrays["answers"].astype(np.int64))
        meta = {"path_lengths": arrays["lengths"].tolist(), "grid": grid}
        if "drawn" in arrays:
            meta["layouts_drawn"] = int(arrays["drawn"])
        positions = None
        if self.canvas:
            inputs, labels = (self._on_canvas(inputs, grid, PAD_ID), self._on_canvas(labels, grid, IGNORE_LABEL))
        elif self.config.eval_grids:
            rows, cols = torch.meshgrid(torch.arange(grid), torch.arange(grid), indexing="ij")
            positions = (rows * self.width + cols).flatten().expand(len(inputs), -1)
        return TaskData(inputs, labels, torch.zeros(len(inputs), dtype=torch.long), meta, positions)

    def _on_canvas(self, cells: torch.Tensor, grid: int, fill: int) -> torch.Tensor:
        canvas = torch.full((len(cells), self.width, self.width), fill, dtype=cells.dtype)
        canvas[:, :grid, :grid] = cells.view(-1, grid, grid)
        return canvas.flatten(1)

    def _cells(self, tokens: torch.Tensor, grid: int) -> torch.Tensor:
        """(N, grid²) maze cells of (N, L) tokens (drops the canvas margin, if any)."""
        if not self.canvas:
            return tokens
        return tokens.reshape(len(tokens), self.width, self.width)[:, :grid, :grid].flatten(1)

    def score(self, data: TaskData, predictions: torch.Tensor, **extra) -> dict[str, Any]:
        result = token_and_exact_accuracy(predictions, data.labels, self.spec.ignore_label)
        grid = data.meta["grid"]
        valid = valid_shortest_paths(self._cells(data.inputs, grid).numpy(),
                                     self._cells(predictions.cpu(), grid).numpy(), grid)
        # exact accuracy = a valid shortest path (alternative shortest paths count as right)
        result["string_match"] = result["exact_accuracy"]
        result["exact_accuracy"] = float(valid.mean()) if len(valid) else 0.0
        result["per_example_correct"] = valid.tolist()
        return result

    def render(self, data: TaskData, index: int, prediction: torch.Tensor | None = None) -> str:
        grid = data.meta["grid"]
        def rows(tokens) -> list[str]:
            text = decode(self._cells(torch.as_tensor(tokens)[None], grid)[0])
            return [text[r * grid:(r + 1) * grid] for r in range(grid)]
        columns = [("question", rows(data.inputs[index])), ("answer", rows(data.labels[index]))]
        if prediction is not None:
            columns.append(("prediction", rows(prediction)))
        header = "   ".join(name.ljust(grid) for name, _ in columns)
        body = ["   ".join(col[r] for _, col in columns) for r in range(grid)]
        length = data.meta.get("path_lengths", [None] * (index + 1))[index]
        return "\n".join([f"maze {index}: {grid}×{grid}, shortest path {length} moves", header, *body])

    def stats(self, data: TaskData) -> dict[str, Any]:
        lengths = np.asarray(data.meta["path_lengths"], dtype=float)
        walls = (self._cells(data.inputs, data.meta["grid"]) == WALL).float().mean().item()
        stats = {"count": len(data), "grid": data.meta["grid"], "seq_len": int(data.inputs.shape[1]),
                 "min_path": self.grid_min_path(data.meta["grid"]), "path_length_mean": float(lengths.mean()),
                 "path_length_median": float(np.median(lengths)), "path_length_min": int(lengths.min()),
                 "path_length_max": int(lengths.max()), "wall_fraction": walls}
        if "layouts_drawn" in data.meta:
            stats["acceptance_rate"] = len(data) / data.meta["layouts_drawn"]
        return stats
