"""Prefix sums (DeepThinking's positive control): the running parity of a bit string.

Schwarzschild et al. 2021 and Bansal et al. 2022 trained recurrent conv nets on 32-bit strings and
solved 512-bit ones by iterating longer at test time; feed-forward nets of the same depth did not. A
benchmark of recurrence needs such a task, where a recurrence effect is known to appear at small
compute, to tell "recurrence does not help" from "the benchmark cannot show it".

    inputs   b_1 b_2 … b_n             (bits as tokens 1 and 2; PAD 0 is never used)
    labels   p_1 p_2 … p_n             p_i = (b_1 + … + b_i) mod 2, as tokens 1 and 2

Train on `train_length` bits; evaluate in distribution ("test", fresh strings) and at every length in
`eval_lengths` (split `test_length_N`, curve axis "length"). Each split has its own sequence length,
so models see longer inputs at test time (the position tables are sized for the longest split).
Strings are distinct within a split and never repeat a training string. Exact accuracy = the whole
string right.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from tasks.cache import cached_arrays
from tasks.protocol import DataError, Task, TaskData, TaskSpec
from tasks.registry import register_task

ZERO, ONE = 1, 2          # bit b → token b + 1
VOCAB_SIZE = 3
MAX_LENGTH = 4096


@dataclass
class PrefixSumsConfig:
    train_length: int = 16
    eval_lengths: tuple[int, ...] = (32, 64, 128, 256)
    train_size: int = 10000
    test_size: int = 1000            # strings per evaluation split
    seed: int = 0                    # data seed (same data for every model)


def distinct_strings(rng: np.random.Generator, count: int, length: int, exclude: set[bytes]) -> np.ndarray:
    """`count` distinct random bit strings of `length`, none of them in `exclude`."""
    if count > 2 ** min(length, 62) - len(exclude):
        raise DataError(f"prefix_sums: only {2 ** length:,} strings of {length} bits exist; "
                        f"{count:,} distinct ones (besides {len(exclude):,} used elsewhere) were asked for")
    chosen: dict[bytes, np.ndarray] = {}
    while len(chosen) < count:
        for row in rng.integers(0, 2, size=(2 * (count - len(chosen)) + 8, length), dtype=np.int8):
            key = row.tobytes()
            if key not in exclude and key not in chosen:
                chosen[key] = row
                if len(chosen) == count:
                    break
    return np.stack(list(chosen.values()))


def prefix_parity(bits: np.ndarray) -> np.ndarray:
    return (np.cumsum(bits, axis=-1) % 2).astype(np.int8)


PRESETS: dict[str, dict[str, Any]] = {
    # seconds: for tests
    "smoke": {"task.train_length": 10, "task.eval_lengths": (20,), "task.train_size": 256, "task.test_size": 64,
              "model.hidden": 32, "model.num_heads": 2, "model.ffn_multiple": 32,
              "train.steps": 4, "train.batch_size": 16, "train.lr": 1e-3, "train.lr_warmup_steps": 1,
              "train.segments": 1, "train.eval_batch_size": 64},
    # 16-bit strings, tested at 2×, 4×, 8× and 16× the length; DT-net's recipe (Adam 1e-3, batch 100)
    "cpu": {"task.train_length": 16, "task.eval_lengths": (32, 64, 128, 256), "task.train_size": 10000,
            "task.test_size": 1000, "model.hidden": 32, "model.num_heads": 2, "model.ffn_multiple": 32,
            "train.steps": 1200, "train.batch_size": 100, "train.optimizer": "adamw", "train.lr": 1e-3,
            "train.lr_warmup_steps": 100, "train.lr_schedule": "cosine", "train.lr_min_ratio": 0.1,
            "train.weight_decay": 2e-4, "train.loss": "softmax", "train.segments": 1, "train.grad_clip": 1.0,
            "train.eval_batch_size": 250, "train.diagnostics_examples": 256,
            # the DEQ only: at its default Jacobian weight (0.5) 15% of prefix-sum strings end short of the
            # forward tolerance after training; at 2.0, 1.6–4.3% over 3 seeds, though 2 of them do not
            # learn (docs/models/deq.md)
            "model.jacobian_weight": 2.0},
    # a first run within a few minutes (not the study's numbers)
    "quick": {"train.steps": 400, "task.test_size": 200},
    # Bansal et al. 2022: train on 32 bits (10,000 strings), test at 48, 64, 128, 256 and 512 bits
    "paper": {"task.train_length": 32, "task.eval_lengths": (48, 64, 128, 256, 512), "task.train_size": 10000,
              "task.test_size": 1000, "train.steps": 15000, "train.batch_size": 100, "train.optimizer": "adamw",
              "train.lr": 1e-3, "train.lr_warmup_steps": 1000, "train.weight_decay": 2e-4, "train.loss": "softmax",
              "train.segments": 1, "train.grad_clip": 1.0, "train.eval_batch_size": 500},
}


@register_task("prefix_sums", config=PrefixSumsConfig, presets=PRESETS,
               description="prefix sums (running parity of a bit string): DeepThinking's positive control")
class PrefixSumsTask(Task):
    def __init__(self, config: PrefixSumsConfig):
        super().__init__(config)
        lengths = [config.train_length, *config.eval_lengths]
        if min(lengths) < 1 or max(lengths) > MAX_LENGTH:
            raise ValueError(f"task.train_length and task.eval_lengths must be in 1..{MAX_LENGTH}, got {lengths}")
        if config.train_size < 1 or config.test_size < 1:
            raise ValueError("task.train_size and task.test_size must be >= 1")
        self.spec = TaskSpec(vocab_size=VOCAB_SIZE, seq_len=config.train_length, num_puzzle_ids=1,
                             max_len=max(lengths))

    def eval_splits(self) -> list[str]:
        return ["test", *(f"test_length_{n}" for n in sorted(set(self.config.eval_lengths)))]

    def curve_point(self, split: str) -> tuple[str, float] | None:
        if split == "test":
            return ("length", self.config.train_length)
        if split.startswith("test_length_"):
            return ("length", int(split.removeprefix("test_length_")))
        return None

    def _length(self, split: str) -> int:
        if split in ("train", "test"):
            return self.config.train_length
        if split.startswith("test_length_") and int(split.removeprefix("test_length_")) in self.config.eval_lengths:
            return int(split.removeprefix("test_length_"))
        raise DataError(f"unknown prefix_sums split {split!r}; splits: train, {', '.join(self.eval_splits())}")

    def _bits(self, split: str) -> np.ndarray:
        config, length = self.config, self._length(split)

        def make() -> dict[str, np.ndarray]:
            rng = np.random.default_rng([config.seed, length, split != "train", split == "test"])
            exclude = {row.tobytes() for row in self._bits("train")} if split != "train" else set()
            size = config.train_size if split == "train" else config.test_size
            return {"bits": distinct_strings(rng, size, length, exclude)}

        return cached_arrays(self, split, make)["bits"]

    def build(self, split: str) -> TaskData:
        bits = self._bits(split)
        inputs = torch.from_numpy(bits.astype(np.int64) + ZERO)
        labels = torch.from_numpy(prefix_parity(bits).astype(np.int64) + ZERO)
        return TaskData(inputs, labels, torch.zeros(len(bits), dtype=torch.long), meta={"length": bits.shape[1]})

    def render(self, data: TaskData, index: int, prediction: torch.Tensor | None = None) -> str:
        def text(tokens) -> str:
            return "".join(str(int(t) - ZERO) for t in tokens)

        lines = [f"bits    {text(data.inputs[index])}", f"parity  {text(data.labels[index])}"]
        if prediction is not None:
            lines.append(f"model   {text(prediction)}")
        return "\n".join(lines)
