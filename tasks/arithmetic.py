"""Length extrapolation on integer addition and multiplication (docs/reference.md (data)).

Train on operands of 1..`train_digits` digits, evaluate at every length 1..`eval_digits` (both
operands exactly n digits): the summary's curve is exact accuracy against n.

Format (non-autoregressive, so every model in the zoo can use it): one sequence per problem, every
number written least-significant digit first (McLeish et al. 2024), the answer predicted at the
answer slots in one forward pass:

    inputs   a0 a1 … + b0 b1 … = _ _ … _ PAD PAD …         (`_` = an answer slot to fill)
    labels   ·  ·  … · ·  ·  … · c0 c1 … PAD PAD PAD …     (· = ignored; PAD is supervised)

The answer has max(|a|, |b|) + 1 slots for addition and |a| + |b| for multiplication (the most it
can need; unused slots are labelled PAD, so the model must also say where the number ends). The
sequence length is fixed by the largest evaluated length (addition 3M+3, multiplication 4M+2
for M = eval_digits), so short problems are followed by supervised PAD.
Tokens: PAD 0, digits 0–9 → 1..10, `+` 11, `*` 12, `=` 13, `_` 14.

Positions (`task.positions`; combine with the model's `model.pos_encoding` rope | learned | none):
  sequence       0..L-1, the model's default (no `batch["positions"]`)
  randomized     Ruoss et al. 2023: the problem's tokens get a random *sorted* subset of
                 [0, position_range), drawn afresh for every training batch and (seeded) at test
                 time; trailing PAD take the unused indices
  random_offset  the problem's tokens get the consecutive indices k..k+c-1 with a random k during
                 training (k = 0 at test); trailing PAD take the unused indices
  abacus         McLeish et al. 2024: each digit's index within its own number (1, 2, … restarting
                 at every number; answer slots count as the answer's digits) plus one random offset
                 per training example (0 at test); operators and PAD get 0
`model.pos_encoding=learned` with `abacus` is McLeish's Abacus embedding; with rope the same indices
rotate queries and keys. Default: abacus + rope — it extrapolated best in our CPU measurements
(docs/tasks/arithmetic.md has the numbers).
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import torch

from tasks.cache import cached_arrays
from tasks.protocol import IGNORE_LABEL, DataError, Task, TaskData, TaskSpec, token_and_exact_accuracy
from tasks.registry import register_task

PAD = 0
DIGIT_0 = 1          # digit d → token d + 1
PLUS, TIMES, EQUALS, SLOT = 11, 12, 13, 14
VOCAB_SIZE = 15
SYMBOLS = {PAD: ".", PLUS: "+", TIMES: "*", EQUALS: "=", SLOT: "_"}
POSITION_SCHEMES = ("sequence", "randomized", "random_offset", "abacus")


@dataclass
class ArithmeticConfig:
    train_digits: int = 10       # training operands have 1..train_digits digits (each drawn uniformly)
    eval_digits: int = 40        # one evaluation split per length 1..eval_digits (both operands n digits)
    train_size: int = 20000
    test_size: int = 100         # examples per evaluation length, and in the in-distribution "test" split
    positions: str = "abacus"    # sequence | randomized | random_offset | abacus (see module docstring)
    max_offset: int = -1         # abacus: training offset drawn from 0..max_offset; -1 = eval_digits
    position_range: int = 0      # randomized / random_offset: indices drawn from [0, range); 0 = sequence length
    seed: int = 0                # data seed (same data for every model)


# --------------------------------------------------------------------------------------------
# Generation: operands as digit arrays (they exceed int64); answers computed with Python integers.
def random_operands(rng: np.random.Generator, lengths: np.ndarray) -> list[int]:
    """One uniformly random integer with exactly `n` digits for each n in `lengths` (1 digit: 0..9)."""
    numbers = []
    for n in lengths.tolist():
        digits = rng.integers(0, 10, size=n)
        if n > 1:
            digits[0] = rng.integers(1, 10)
        numbers.append(int("".join(map(str, digits))))
    return numbers


def answer_slots(operation: str, a_digits: int, b_digits: int) -> int:
    return max(a_digits, b_digits) + 1 if operation == "+" else a_digits + b_digits


def sequence_length(operation: str, max_digits: int) -> int:
    return 2 * max_digits + 2 + answer_slots(operation, max_digits, max_digits)


def reversed_digit_tokens(number: int) -> list[int]:
    return [int(c) + DIGIT_0 for c in reversed(str(number))]


def encode(operation: str, a: int, b: int, length: int) -> tuple[np.ndarray, np.ndarray]:
    """(inputs, labels) of one problem in a sequence of `length` tokens (module docstring)."""
    a_tokens, b_tokens = reversed_digit_tokens(a), reversed_digit_tokens(b)
    answer = a + b if operation == "+" else a * b
    slots = answer_slots(operation, len(a_tokens), len(b_tokens))
    question = a_tokens + [PLUS if operation == "+" else TIMES] + b_tokens + [EQUALS]
    if len(question) + slots > length:
        raise ValueError(f"{a} {operation} {b} needs {len(question) + slots} tokens, the sequence has {length}")
    inputs = np.full(length, PAD, dtype=np.uint8)
    inputs[:len(question)] = question
    inputs[len(question):len(question) + slots] = SLOT
    labels = np.full(length, PAD, dtype=np.int16)
    labels[:len(question)] = IGNORE_LABEL
    answer_tokens = reversed_digit_tokens(answer)
    labels[len(question):len(question) + len(answer_tokens)] = answer_tokens
    return inputs, labels


def read_number(tokens) -> int | None:
    """The integer written (least significant digit first) by digit tokens up to the first non-digit."""
    digits = []
    for token in np.asarray(tokens).tolist():
        if not DIGIT_0 <= token < DIGIT_0 + 10:
            break
        digits.append(str(token - DIGIT_0))
    return int("".join(reversed(digits))) if digits else None


def decode(inputs, labels_or_prediction=None) -> tuple[int | None, int | None, int | None]:
    """(a, b, answer) from a sequence; answer from the labels/prediction at the answer slots."""
    inputs = np.asarray(inputs)
    equals = int(np.flatnonzero(inputs == EQUALS)[0])
    operator = int(np.flatnonzero((inputs == PLUS) | (inputs == TIMES))[0])
    a, b = read_number(inputs[:operator]), read_number(inputs[operator + 1:equals])
    answer = None if labels_or_prediction is None else read_number(np.asarray(labels_or_prediction)[equals + 1:])
    return a, b, answer


def generate(operation: str, count: int, min_digits: int, max_digits: int, length: int,
             seed: tuple[int, ...]) -> dict[str, np.ndarray]:
    """`count` problems, each operand's digit count uniform in min_digits..max_digits."""
    rng = np.random.default_rng(list(seed))
    a_lengths = rng.integers(min_digits, max_digits + 1, size=count)
    b_lengths = rng.integers(min_digits, max_digits + 1, size=count)
    a_values, b_values = random_operands(rng, a_lengths), random_operands(rng, b_lengths)
    inputs = np.zeros((count, length), dtype=np.uint8)
    labels = np.zeros((count, length), dtype=np.int16)
    for i, (a, b) in enumerate(zip(a_values, b_values)):
        inputs[i], labels[i] = encode(operation, a, b, length)
    return {"inputs": inputs, "labels": labels, "digits": np.maximum(a_lengths, b_lengths).astype(np.int32)}


# --------------------------------------------------------------------------------------------
# Position indices (B, L) for each scheme; `generator` None = torch's global RNG (seeded and
# checkpointed by the runner), so training draws are reproducible and survive a resume.
def abacus_positions(inputs: torch.Tensor, offset: torch.Tensor) -> torch.Tensor:
    """1-based index of each digit (or answer slot) within its number, + offset; 0 elsewhere."""
    in_number = ((inputs >= DIGIT_0) & (inputs < DIGIT_0 + 10)) | (inputs == SLOT)
    index = torch.arange(inputs.shape[1], device=inputs.device).expand_as(inputs)
    last_break = torch.where(in_number, -1, index).cummax(dim=1).values  # last non-number token so far
    return torch.where(in_number, index - last_break + offset[:, None], 0)


def spread_positions(inputs: torch.Tensor, chosen: torch.Tensor) -> torch.Tensor:
    """Problem tokens (the non-PAD prefix) take the `chosen` indices in order, trailing PAD the rest.

    chosen: (B, P) bool with as many True per row as the row has non-PAD tokens.
    """
    indices = torch.arange(chosen.shape[1], device=chosen.device)
    order = torch.argsort((~chosen).long() * chosen.shape[1] + indices, dim=1)  # chosen ascending, then the rest
    return order[:, :inputs.shape[1]]


def scheme_positions(scheme: str, inputs: torch.Tensor, train: bool, position_range: int, max_offset: int,
                     generator: torch.Generator | None = None) -> torch.Tensor | None:
    batch, length = inputs.shape
    if scheme == "sequence":
        return None
    if scheme == "abacus":
        offset = (torch.randint(0, max_offset + 1, (batch,), generator=generator) if train
                  else torch.zeros(batch, dtype=torch.long))
        return abacus_positions(inputs, offset.to(inputs.device))
    used = (inputs != PAD).sum(1, keepdim=True)  # problem tokens form a prefix; PAD only trails
    indices = torch.arange(position_range, device=inputs.device).expand(batch, -1)
    if scheme == "randomized":
        # a uniformly random subset of size `used`: the `used` smallest of P random keys
        keys = torch.rand(batch, position_range, generator=generator).to(inputs.device)
        rank = keys.argsort(dim=1).argsort(dim=1)
        return spread_positions(inputs, rank < used)
    if scheme == "random_offset":
        if train:
            start = (torch.rand(batch, 1, generator=generator).to(inputs.device)
                     * (position_range - used + 1)).floor().long()
        else:
            start = torch.zeros(batch, 1, dtype=torch.long, device=inputs.device)
        return spread_positions(inputs, (indices >= start) & (indices < start + used))
    raise ValueError(f"task.positions must be one of {POSITION_SCHEMES}, got {scheme!r}")


@dataclass
class ArithmeticData(TaskData):
    """TaskData whose training batches draw fresh `positions` (evaluation splits use fixed ones)."""

    draw_positions: Callable[[torch.Tensor], torch.Tensor | None] | None = None

    def batch(self, index: torch.Tensor) -> dict[str, torch.Tensor]:
        batch = super().batch(index)
        if self.draw_positions is not None:
            positions = self.draw_positions(batch["inputs"])
            if positions is not None:
                batch["positions"] = positions
        return batch


# --------------------------------------------------------------------------------------------
class ArithmeticTask(Task):
    operation = "+"

    def __init__(self, config: ArithmeticConfig):
        super().__init__(config)
        if not 1 <= config.train_digits <= config.eval_digits:
            raise ValueError("need 1 <= task.train_digits <= task.eval_digits")
        if config.eval_digits > 1000:
            raise ValueError("task.eval_digits must be <= 1000")
        if config.train_size < 1 or config.test_size < 1:
            raise ValueError("task.train_size and task.test_size must be >= 1")
        if config.positions not in POSITION_SCHEMES:
            raise ValueError(f"task.positions must be one of {', '.join(POSITION_SCHEMES)}, got {config.positions!r}")
        length = sequence_length(self.operation, config.eval_digits)
        self.max_offset = config.eval_digits if config.max_offset < 0 else config.max_offset
        self.position_range = config.position_range or length
        if self.position_range < length:
            raise ValueError(f"task.position_range={config.position_range} is shorter than the sequence ({length})")
        if config.positions == "abacus":
            largest = answer_slots(self.operation, config.eval_digits, config.eval_digits) + self.max_offset + 1
        elif config.positions == "sequence":
            largest = length
        else:
            largest = self.position_range
        # position tables (learned / rope) must hold the largest index any split can produce
        self.spec = TaskSpec(vocab_size=VOCAB_SIZE, seq_len=length, max_len=max(length, largest))

    def eval_splits(self) -> list[str]:
        return ["test"] + [f"test_length_{n}" for n in range(1, self.config.eval_digits + 1)]

    def curve_point(self, split: str) -> tuple[str, float] | None:
        if split.startswith("test_length_"):
            return ("length", int(split.removeprefix("test_length_")))
        return None

    def _arrays(self, split: str) -> dict[str, np.ndarray]:
        config, length = self.config, self.spec.seq_len
        name = self.registry_name
        if split == "train":
            return cached_arrays(self, split, lambda: generate(
                self.operation, config.train_size, 1, config.train_digits, length, (config.seed, 0)))
        if split == "test":  # in-distribution, independent draw (short lengths inevitably repeat train problems)
            return cached_arrays(self, split, lambda: generate(
                self.operation, config.test_size, 1, config.train_digits, length, (config.seed, 1)))
        if split.startswith("test_length_"):
            digits = int(split.removeprefix("test_length_"))
            if 1 <= digits <= config.eval_digits:
                return cached_arrays(self, split, lambda: generate(
                    self.operation, config.test_size, digits, digits, length, (config.seed, 2, digits)))
        raise DataError(f"unknown {name} split {split!r}; splits: train, test, test_length_1..{config.eval_digits}")

    def build(self, split: str) -> TaskData:
        arrays = self._arrays(split)
        inputs = torch.from_numpy(arrays["inputs"].astype(np.int64))
        labels = torch.from_numpy(arrays["labels"].astype(np.int64))
        meta = {"digits": arrays["digits"].tolist(), "positions": self.config.positions}
        data = ArithmeticData(inputs, labels, torch.zeros(len(inputs), dtype=torch.long), meta)
        scheme = self.config.positions
        if split == "train":
            data.draw_positions = lambda batch_inputs: scheme_positions(
                scheme, batch_inputs, True, self.position_range, self.max_offset)
        else:
            # evaluation positions are fixed per split (seeded: randomized draws them at test time too)
            seed = int.from_bytes(hashlib.sha256(f"{self.config.seed}/{split}".encode()).digest()[:8], "little")
            generator = torch.Generator().manual_seed(seed)
            data.positions = scheme_positions(scheme, inputs, False, self.position_range, self.max_offset,
                                                    generator)
        return data

    def score(self, data: TaskData, predictions: torch.Tensor, **extra) -> dict[str, Any]:
        """Exact accuracy = every answer slot and trailing PAD right; also split by operand length."""
        result = token_and_exact_accuracy(predictions, data.labels, self.spec.ignore_label)
        digits = np.asarray(data.meta["digits"])
        correct = np.asarray(result["per_example_correct"], dtype=float)
        result["exact_accuracy_by_digits"] = {int(n): float(correct[digits == n].mean()) for n in np.unique(digits)}
        return result

    def render(self, data: TaskData, index: int, prediction: torch.Tensor | None = None) -> str:
        a, b, answer = decode(data.inputs[index], data.labels[index])
        text = f"{a} {self.operation} {b} = {answer}"
        if prediction is not None:
            predicted = decode(data.inputs[index], prediction)[2]
            correct = bool(((prediction == data.labels[index]) | (data.labels[index] == self.spec.ignore_label)).all())
            text += f"   predicted {predicted} ({'right' if correct else 'wrong'})"
        tokens = "".join(str(t - DIGIT_0) if DIGIT_0 <= t < DIGIT_0 + 10 else SYMBOLS.get(t, "?")
                         for t in data.inputs[index].tolist())
        return f"{text}\n{tokens}"

    def stats(self, data: TaskData) -> dict[str, Any]:
        digits = np.asarray(data.meta["digits"])
        problem_tokens = (data.inputs != PAD).sum(1).float()
        return {"count": len(data), "seq_len": self.spec.seq_len, "position_table": self.spec.max_seq_len,
                "positions": self.config.positions, "digits_min": int(digits.min()), "digits_max": int(digits.max()),
                "problem_tokens_mean": problem_tokens.mean().item()}


def _presets(smoke_digits: tuple[int, int], cpu_digits: tuple[int, int], paper_digits: tuple[int, int],
             cpu_steps: int) -> dict[str, dict[str, Any]]:
    """Presets; (train_digits, eval_digits) per preset. model.* keys a model lacks are skipped."""
    def digits(pair: tuple[int, int]) -> dict[str, Any]:
        # abacus indices + RoPE: the best extrapolation we measured (docs/tasks/arithmetic.md)
        return {"task.train_digits": pair[0], "task.eval_digits": pair[1], "task.positions": "abacus",
                "model.pos_encoding": "rope"}
    return {
        # seconds: for tests
        "smoke": {**digits(smoke_digits), "task.train_size": 256, "task.test_size": 16,
                  "model.hidden": 32, "model.num_heads": 2, "model.ffn_multiple": 32, "model.num_layers": 2,
                  "train.steps": 4, "train.batch_size": 16, "train.lr": 1e-3, "train.lr_warmup_steps": 1,
                  "train.weight_decay": 0.1, "train.segments": 1, "train.eval_batch_size": 64},
        # The cpu study's preset (v2): warm-up then cosine decay to 0.1×, a budget at which the best model's
        # loss is flat at the end, 1000 test problems per length; 2 segments so every recurrent model can
        # run longer at test time; no num_layers, so each model takes its HRM-derived depth. How it was
        # calibrated: docs/presets.md.
        "cpu": {**digits(cpu_digits), "task.train_size": 20000, "task.test_size": 1000,
                "model.hidden": 64, "model.num_heads": 4, "model.ffn_multiple": 64,
                "train.steps": cpu_steps, "train.batch_size": 64, "train.lr": 3e-3, "train.lr_warmup_steps": 50,
                "train.lr_schedule": "cosine", "train.lr_min_ratio": 0.1,
                "train.weight_decay": 0.1, "train.segments": 2, "train.loss": "softmax",
                "train.optimizer": "adamw", "train.eval_batch_size": 256, "train.diagnostics_examples": 100},
        # a first run within a few minutes (not the study's numbers)
        "quick": {"train.steps": 200, "task.test_size": 100},
        # McLeish et al.'s scale for addition (train <= 20 digits, test to 100); for GPUs.
        # Step count and the multiplication lengths are our choice, not a published recipe.
        "paper": {**digits(paper_digits), "task.train_size": 1000000, "task.test_size": 100,
                  "model.hidden": 512, "model.num_heads": 8,
                  "train.steps": 50000, "train.batch_size": 512, "train.lr": 1e-4, "train.lr_warmup_steps": 2000,
                  "train.weight_decay": 0.1, "train.segments": 1, "train.loss": "softmax",
                  "train.optimizer": "adamw", "train.eval_batch_size": 256},
    }


@register_task("addition", config=ArithmeticConfig, presets=_presets((3, 6), (6, 12), (20, 100), cpu_steps=600),
               description="integer addition, reversed digits: train on short operands, exact accuracy vs length")
class AdditionTask(ArithmeticTask):
    operation = "+"


@register_task("multiplication", config=ArithmeticConfig, presets=_presets((2, 4), (3, 6), (15, 30), cpu_steps=1000),
               description="integer multiplication, reversed digits: train on short operands, exact accuracy vs length")
class MultiplicationTask(ArithmeticTask):
    operation = "*"
