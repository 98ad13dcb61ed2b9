"""The one protocol the trainer and runner know models by.

A model is an `nn.Module` with a config dataclass and the *segment* interface:

    carry = model.initial_carry(batch)            # dict of batch-first tensors (may be empty)
    carry, outputs = model(carry, batch)          # one segment

`outputs` holds `logits` (B, L, V), and optionally `q_halt_logits` (B,) and `q_continue_logits` (B,)
for ACT, `aux_loss` (a 0-dim term added to the loss) and the per-batch scalars the model declares in
`logged_outputs`. A single-pass model is the one-segment case. The trainer runs N segments with the
carry detached in between (deep supervision) and resets rows of the carry with `reset_carry`, so
outer-loop refinement works for any model without the trainer knowing which model it runs.

Everything else the trainer, the sizing step and the diagnostics need is declared here, not guessed:

    parameter_groups()         {"model": [...], "puzzle_embedding": [...]}: which optimiser trains what
    puzzle_embedding_parameters()   the per-puzzle tables (SignSGD, counted apart from the model)
    logged_outputs             names of 0-dim outputs logged into the training curve
    test_time_compute_key      config field of the model's inner iterations at test time (or None)
    reference_defaults         {field: f(HRM's resolved model config)} defaults taken from HRM
    full_budget                config changes that make the model spend its whole iteration budget
    presets                    {preset: {dotted key: value}} the model's own preset values
    progressive_iterations_key config field of the iteration count that progressive loss varies; such a
                               model implements start_state(batch), iterate(state, batch, count) and
                               readout(state, batch) (logits)
    iteration_count_key        config field of an iteration count inside one forward that the training
                               rules may vary (hrm: high_cycles, trm: cycles, deq: max_iter) in a model
                               without the incremental interface: it is run once per count, with the
                               field set for that forward (`iteration_count`)
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import Callable, ClassVar, Iterator

import torch
from torch import nn

from tasks.protocol import TaskSpec

Batch = dict[str, torch.Tensor]
Carry = dict[str, torch.Tensor]

PARAMETER_GROUPS = ("model", "puzzle_embedding")


class SegmentModel(nn.Module):
    """Base class: subclasses set `config` and implement `initial_carry` and `forward`.

    `trace_residual(name, new, old)`: recurrent models call it inside their loops; when
    `self.residual_trace` is a dict (the evaluator sets it) the mean relative residual
    ‖new − old‖ / ‖old‖ is appended under `name` (e.g. "z_high", "z_low").
    """

    registry_name: ClassVar[str] = ""                  # set by @register_model
    test_time_compute_key: ClassVar[str | None] = None  # None: the trainer's segments are the only knob
    reference_defaults: ClassVar[dict[str, Callable]] = {}
    full_budget: ClassVar[dict[str, object]] = {}
    presets: ClassVar[dict[str, dict[str, object]]] = {}
    logged_outputs: ClassVar[tuple[str, ...]] = ()
    progressive_iterations_key: ClassVar[str | None] = None
    iteration_count_key: ClassVar[str | None] = None

    def __init__(self, config, spec: TaskSpec):
        super().__init__()
        self.config = config
        self.spec = spec
        self.residual_trace: dict[str, list[float]] | None = None

    def trace_residual(self, name: str, new: torch.Tensor, old: torch.Tensor) -> None:
        if self.residual_trace is None:
            return
        with torch.no_grad():
            difference = (new.float() - old.float()).flatten(1).norm(dim=-1)
            scale = old.float().flatten(1).norm(dim=-1).clamp_min(1e-12)
            self.residual_trace.setdefault(name, []).append((difference / scale).mean().item())

    def initial_carry(self, batch: Batch) -> Carry:
        return {}

    @staticmethod
    def zero_state_carry(batch: Batch, prefix_len: int, hidden: int) -> Carry:
        """Outer-loop carry of a single-pass model: its last hidden state `z`, zero at the start and
        added to the next segment's input (with one segment the zeros change nothing)."""
        inputs = batch["inputs"]
        return {"z": torch.zeros(inputs.shape[0], prefix_len + inputs.shape[1], hidden, device=inputs.device)}

    def reset_carry(self, carry: Carry, reset: torch.Tensor, batch: Batch) -> Carry:
        """Rows where `reset` is True start over from `initial_carry`; the rest keep their state."""
        if not carry:
            return carry
        fresh = self.initial_carry(batch)
        out = {}
        for key, value in carry.items():
            mask = reset.view(-1, *([1] * (value.dim() - 1)))
            out[key] = torch.where(mask, fresh[key].to(value.dtype), value)
        return out

    def forward(self, carry: Carry, batch: Batch) -> tuple[Carry, dict[str, torch.Tensor]]:
        raise NotImplementedError

    # --- what each optimiser trains; puzzle-embedding tables are counted apart from the model ---
    def puzzle_embedding_parameters(self) -> list[nn.Parameter]:
        """Per-puzzle embedding tables (sparse rows, SignSGD): those of the model's input embedding
        (`self.embedding`, blocks.InputEmbedding) when it has one, so that a new model built on it
        counts and trains them apart without saying so; none otherwise."""
        embedding = getattr(self, "embedding", None)
        return embedding.puzzle_parameters() if hasattr(embedding, "puzzle_parameters") else []

    def parameter_groups(self) -> dict[str, list[nn.Parameter]]:
        puzzle = self.puzzle_embedding_parameters()
        puzzle_ids = {id(p) for p in puzzle}
        return {"model": [p for p in self.parameters() if id(p) not in puzzle_ids], "puzzle_embedding": puzzle}

    def parameter_counts(self) -> dict[str, int]:
        groups = self.parameter_groups()
        return {"params": sum(p.numel() for p in groups["model"]),
                "puzzle_emb_params": sum(p.numel() for p in groups["puzzle_embedding"])}


def iteration_count_field(model: SegmentModel) -> str | None:
    """The config field of the iteration count the training rules vary, or None if the model has none."""
    return model.progressive_iterations_key or model.iteration_count_key


@contextmanager
def iteration_count(model: SegmentModel, count: int) -> Iterator[None]:
    """Run the model's forwards with its iteration count set to `count`, then restore it: how the
    training rules vary a count that the model reads from its config at every forward."""
    key = iteration_count_field(model)
    if key is None:
        raise ValueError(f"model {model.registry_name!r} has no iteration count")
    old = getattr(model.config, key)
    setattr(model.config, key, count)
    try:
        yield
    finally:
        setattr(model.config, key, old)
