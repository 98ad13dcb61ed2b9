"""Measurement depth recorded by every run: test-time compute, fixed points, ACT behaviour.

After training, `run_diagnostics` evaluates the first evaluation split's first
`train.diagnostics_examples` examples (0 turns diagnostics off) and returns summary["diagnostics"]
(`test_time_compute_by_split` repeats the test-time curves on every evaluation split):

    test_time_compute[knob] = {"trained": T, "points": [{x, exact_accuracy, token_accuracy,
                                                         flops_per_example}, ...]}
        exact accuracy at 1, 2, 4, … up to 4× the trained count (or `train.test_time_points`), and the
        inference FLOPs of one example at each point. Two kinds of knob:
          "segments"        the trainer's outer segments (train.eval_segments) — recorded when the run
                            trains with train.segments > 1 (HRM, TRM, any model given the outer loop);
          "model.<key>"     the model's `test_time_compute_key` (looped: loops, DEQ: solver
                            iterations). The model is rebuilt with that config field changed and the
                            trained weights loaded, so a model may read the field in __init__ or in
                            forward. A key whose trained value is 0 means "as trained" and takes its
                            trained value from the field without the `eval_` prefix (eval_loops → loops).
    fixed_point[knob] = {"at": x, "segments": S, "residuals": {state: [r_1, r_2, ...]}}
        relative residual ‖z_{k+1} − z_k‖ / ‖z_k‖ of every recurrent state the model traces
        (`SegmentModel.trace_residual`), per iteration in call order, averaged over the examples,
        recorded during the pass at the knob's largest point (beyond training: does it converge?);
        null where the residual is undefined (the previous state was zero, or a solver placeholder).
    act = {"segments": M, "learned": {...}, "fixed": {...}, "oracle": {...}, "segments_histogram": {...}}
        for models with a Q head and M > 1 evaluation segments: learned halting vs always running all
        M segments vs oracle halting (each example stopped at the first segment whose answer is
        right: the upper bound of any stopping policy).

    equilibrium = {"tol", "backward_tol", "init": {...}, "trained": {...}}
        for models that report `converged_fraction` (the DEQ): per evaluation segment, the fraction of
        examples whose relative residual ‖f(z)−z‖/‖f(z)‖ *at the returned state* is under the model's
        tolerance, the mean and largest residual and the solver's mean steps; with implicit
        differentiation, one backward pass (cotangent: a fixed random direction on the logits) and its
        solver's final residual. "init" is the same model rebuilt from the run's seed before any
        training (bench.runner.build seeds the same way), "trained" the evaluation copy.

The diagnostic passes run the subset as one batch (so a trace is one sequence of iterations over the
whole subset) and use the evaluation copy of the model (EMA when on).
"""
from __future__ import annotations

import copy
import dataclasses
import sys
import time
from typing import Any

import numpy as np
import torch

from bench.trainer import EvalResult, Trainer
from models.protocol import SegmentModel
from tasks.protocol import TaskData

AUTO_MAX_FACTOR = 4   # automatic curve points: powers of two up to 4× the trained count
UNDEFINED_RESIDUAL = 1e6   # relative residuals this large only come from a zero previous state


# ------------------------------------------------------------------------------------ helpers
def curve_points(trained: int, requested: tuple[int, ...] | list[int] = ()) -> list[int]:
    """The requested points, or 1, 2, 4, … ≤ 4·trained together with the trained value itself."""
    if requested:
        points = sorted({int(p) for p in requested})
        if points[0] < 1:
            raise ValueError(f"test-time points must be >= 1, got {points}")
        return points
    trained = max(int(trained), 1)
    limit = AUTO_MAX_FACTOR * trained
    points = {trained}
    power = 1
    while power <= limit:
        points.add(power)
        power *= 2
    return sorted(points)


def subset(data: TaskData, count: int) -> TaskData:
    """The first `count` examples: every per-example field (tensor, array or list of length N,
    including per-example lists in `meta`) is sliced; everything else is kept."""
    size = len(data)
    if count >= size:
        return data

    def cut(value: Any) -> Any:
        if isinstance(value, (torch.Tensor, np.ndarray)) and value.ndim > 0 and value.shape[0] == size:
            return value[:count]
        if isinstance(value, (list, tuple)) and len(value) == size:
            return value[:count]
        if isinstance(value, dict):
            return {k: cut(v) for k, v in value.items()}
        return value

    return dataclasses.replace(data, **{f.name: cut(getattr(data, f.name)) for f in dataclasses.fields(data)})


def trained_inner_value(model: SegmentModel) -> int | None:
    key = model.test_time_compute_key
    if key is None:
        return None
    value = getattr(model.config, key)
    if not value and key.startswith("eval_"):
        value = getattr(model.config, key[len("eval_"):], value)
    return int(value) if value else None


def with_config(model: SegmentModel, **changes: Any) -> SegmentModel:
    """A copy of `model` built with some config fields changed, carrying the same weights and buffers.

    Built inside a forked RNG so measuring never shifts the run's random stream. Raises ValueError
    when the change alters parameter shapes (then the knob is not a test-time knob)."""
    config = dataclasses.replace(model.config, **changes)
    with torch.random.fork_rng(devices=[]):
        clone = type(model)(config, model.spec)
    try:
        clone.load_state_dict(model.state_dict())
    except RuntimeError as error:
        raise ValueError(f"changing {changes} changes the model's parameters: {error}") from None
    clone_buffers = dict(clone.named_buffers())
    with torch.no_grad():
        for name, buffer in model.named_buffers():   # non-persistent buffers too
            if name in clone_buffers and clone_buffers[name].shape == buffer.shape:
                clone_buffers[name].copy_(buffer)
    device = next(model.parameters()).device
    return clone.to(device)


class CarryTracer(torch.nn.Module):
    """Wraps a model for the segment-curve pass: besides the model's own traces, records the relative
    change of every carry tensor from one segment to the next ("carry.<name>": entry k is segment
    k+1 vs segment k) — the fixed point of the outer refinement loop, for any segment model."""

    def __init__(self, model: SegmentModel):
        super().__init__()
        self.model = model
        self._segment = 0

    @property
    def residual_trace(self):
        return self.model.residual_trace

    @residual_trace.setter
    def residual_trace(self, value) -> None:
        self.model.residual_trace = value

    def initial_carry(self, batch):
        self._segment = 0
        return self.model.initial_carry(batch)

    def forward(self, carry, batch):
        new_carry, outputs = self.model(carry, batch)
        if self._segment > 0:   # the first segment starts from the initial state, often zeros
            for name, old in carry.items():
                if name in new_carry and new_carry[name].shape == old.shape and old.is_floating_point():
                    rows = old.shape[0]   # (B,) carries too: compare row vectors
                    self.model.trace_residual(f"carry.{name}", new_carry[name].reshape(rows, -1), old.reshape(rows, -1))
        self._segment += 1
        return new_carry, outputs


def _probe(trainer: Trainer, model: SegmentModel, batch_size: int) -> Trainer:
    """A view of the trainer that evaluates `model` (already the evaluation copy) in one batch."""
    probe = copy.copy(trainer)
    probe.model = model
    probe.ema = None
    probe.config = dataclasses.replace(trainer.config, eval_batch_size=max(batch_size, 1))
    return probe


def _accuracy(task, data: TaskData, predictions: torch.Tensor, confidences: torch.Tensor | None = None) -> dict[str, Any]:
    extra = {} if confidences is None else {"confidences": confidences}
    return task.score(data, predictions, **extra)


def _has_q_head(model: SegmentModel, data: TaskData, device: torch.device) -> bool:
    batch = {k: v.to(device) for k, v in data.batch(torch.arange(1)).items()}
    with torch.no_grad():
        _, outputs = model(model.initial_carry(batch), batch)
    return "q_halt_logits" in outputs


def _defined(trace: dict[str, list[float]]) -> dict[str, list[float | None]]:
    """None where a residual is undefined: the previous state was zero (a loop starting from a zero
    state gives ‖z_1‖ / 1e-12) or a solver's placeholder (torchdeq's first entry is 1e8)."""
    return {name: [None if value >= UNDEFINED_RESIDUAL else value for value in values]
            for name, values in trace.items()}


def _traced_evaluate(probe: Trainer, data: TaskData, **kwargs) -> tuple[EvalResult, dict[str, list[float | None]]]:
    probe.model.residual_trace = {}
    try:
        result = probe.evaluate(data, **kwargs)
        return result, _defined(probe.model.residual_trace)
    finally:
        probe.model.residual_trace = None


# ------------------------------------------------------------------------------------ measurements
def segment_curve(trainer: Trainer, task, data: TaskData, points: list[int]) -> tuple[dict, dict]:
    """Accuracy and FLOPs at each number of outer segments, from one pass at the largest."""
    model = CarryTracer(trainer.eval_model())
    probe = _probe(trainer, model, len(data))
    largest = max(points)
    result, trace = _traced_evaluate(probe, data, segments=largest, halting="fixed", keep_per_segment=True)
    curve = []
    for point in points:
        score = _accuracy(task, data, result.per_segment_predictions[point - 1])
        curve.append({"x": point, "exact_accuracy": score["exact_accuracy"], "token_accuracy": score["token_accuracy"],
                      "flops_per_example": probe.inference_flops_per_example(data, segments=point)})
    fixed_point = {"at": largest, "segments": largest, "residuals": trace} if trace else None
    return {"trained": trainer.config.segments, "points": curve}, fixed_point


def inner_curve(trainer: Trainer, task, data: TaskData, points: list[int]) -> tuple[dict, dict]:
    """Accuracy and FLOPs at each value of the model's test-time knob (e.g. loops, solver iterations)."""
    base = trainer.eval_model()
    key = base.test_time_compute_key
    segments = trainer.config.eval_segments or trainer.config.segments
    curve, fixed_point, skipped = [], None, {}
    runnable = []
    for point in points:
        try:
            runnable.append((point, with_config(base, **{key: point})))
        except ValueError as error:   # e.g. a feed-forward control cannot run more iterations than it has
            skipped[str(point)] = str(error)
    for point, model in runnable:
        probe = _probe(trainer, model, len(data))
        if point == runnable[-1][0]:
            result, trace = _traced_evaluate(probe, data, halting="fixed")
            if trace:
                fixed_point = {"at": point, "segments": segments, "residuals": trace}
        else:
            result = probe.evaluate(data, halting="fixed")
        score = _accuracy(task, data, result.predictions)
        curve.append({"x": point, "exact_accuracy": score["exact_accuracy"], "token_accuracy": score["token_accuracy"],
                      "flops_per_example": probe.inference_flops_per_example(data)})
    return {"trained": trained_inner_value(base), "points": curve, **({"skipped": skipped} if skipped else {})}, \
        fixed_point


def act_behaviour(trainer: Trainer, task, data: TaskData) -> dict[str, Any] | None:
    """Learned halting vs fixed maximum vs oracle halting at the evaluation segment count."""
    segments = trainer.config.eval_segments or trainer.config.segments
    model = trainer.eval_model()
    if segments < 2 or not _has_q_head(model, data, trainer.device):
        return None
    probe = _probe(trainer, model, len(data))
    result = probe.evaluate(data, segments=segments, halting="learned", keep_per_segment=True)
    learned = _accuracy(task, data, result.predictions, result.confidences)
    scores = [_accuracy(task, data, p) for p in result.per_segment_predictions]
    correct = np.array([score["per_example_correct"] for score in scores], dtype=bool)   # (segments, items)
    solved = correct.any(0)
    first_right = np.where(solved, correct.argmax(0) + 1, segments)
    used = result.segments_used.numpy()
    histogram = {str(k): int((used == k).sum()) for k in range(1, segments + 1)}
    return {
        "segments": segments,
        "learned": {"exact_accuracy": learned["exact_accuracy"], "mean_segments": float(used.mean())},
        "fixed": {"exact_accuracy": scores[-1]["exact_accuracy"], "mean_segments": float(segments)},
        "oracle": {"exact_accuracy": float(solved.mean()), "mean_segments": float(first_right.mean())},
        "segments_histogram": histogram,
    }


EQUILIBRIUM_KEYS = {"converged_fraction": "converged_fraction", "solver_residual": "residual_mean",
                    "solver_residual_max": "residual_max", "solver_steps": "steps"}


def equilibrium_check(model: SegmentModel, data: TaskData, segments: int, device: torch.device) -> dict[str, Any] | None:
    """Forward (and, with IFT, backward) convergence of a fixed-point model on `data` as one batch; None
    for models that do not report `converged_fraction`. Runs on a copy, so `model` is left untouched
    (a training-mode forward would advance a spectral norm's power iteration)."""
    batch = {k: v.to(device) for k, v in data.batch(torch.arange(len(data))).items()}
    copy_ = with_config(model)
    copy_.eval()
    out: dict[str, Any] = {"segments": []}
    with torch.no_grad():
        carry = copy_.initial_carry(batch)
        for _ in range(max(segments, 1)):
            carry, outputs = copy_(carry, batch)
            if "converged_fraction" not in outputs:
                return None
            out["segments"].append({name: float(outputs[key]) for key, name in EQUILIBRIUM_KEYS.items() if key in outputs})
    if getattr(copy_.config, "gradient", None) == "ift":
        copy_.train()
        _, outputs = copy_(copy_.initial_carry(batch), batch)
        generator = torch.Generator().manual_seed(0)
        direction = torch.randn(outputs["logits"].shape, generator=generator).to(outputs["logits"])
        (outputs["logits"] * direction).sum().backward()
        record = getattr(copy_, "last_backward", None)
        if record is not None:
            tol = copy_.config.backward_tol
            out["backward"] = {"converged_fraction": float((record["rel"] < tol).float().mean()),
                               "residual_mean": float(record["rel"].mean()), "residual_max": float(record["rel"].max()),
                               "steps": float(record["nstep"].mean())}
    return out


def equilibrium(trainer: Trainer, data: TaskData) -> dict[str, Any] | None:
    """`equilibrium_check` of the untrained model (rebuilt from the run's seed) and of the trained one."""
    model = trainer.eval_model()
    if "converged_fraction" not in getattr(model, "logged_outputs", ()):
        return None
    segments = trainer.config.eval_segments or trainer.config.segments
    trained = equilibrium_check(model, data, segments, trainer.device)
    if trained is None:
        return None
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(trainer.config.seed)
        initial = type(model)(model.config, model.spec).to(trainer.device)
    return {"tol": model.config.tol, "backward_tol": getattr(model.config, "backward_tol", None),
            "init": equilibrium_check(initial, data, segments, trainer.device), "trained": trained}


def run_diagnostics(trainer: Trainer, task, data: TaskData,
                    splits: dict[str, TaskData] | None = None) -> dict[str, Any] | None:
    """Everything above for one run; None when train.diagnostics_examples = 0.

    `data` is the first evaluation split (fixed points and ACT are measured there). `splits` (name →
    data, the first split included) adds `test_time_compute_by_split[name][knob]`: the test-time
    curves on every split, each on its first `train.diagnostics_examples` examples, so more iterations
    can be judged *out of distribution* (longer inputs, larger grids) too.

    A failure here is reported (stderr and summary["diagnostics"]["error"]) rather than raised: the
    trained run's main numbers are already measured and must not be lost to a diagnostic."""
    config = trainer.config
    if config.diagnostics_examples <= 0:
        return None
    started = time.perf_counter()
    data = subset(data, config.diagnostics_examples)
    out: dict[str, Any] = {"examples": len(data), "test_time_compute": {}, "fixed_point": {}}
    try:
        model = trainer.eval_model()
        knobs = []
        if config.segments > 1 or (config.test_time_points and model.test_time_compute_key is None):
            knobs.append(("segments", segment_curve, config.segments))
        if model.test_time_compute_key is not None and trained_inner_value(model) is not None:
            knobs.append((f"model.{model.test_time_compute_key}", inner_curve, trained_inner_value(model)))
        for name, measure, trained in knobs:
            curve, fixed_point = measure(trainer, task, data, curve_points(trained, config.test_time_points))
            out["test_time_compute"][name] = curve
            if fixed_point:
                out["fixed_point"][name] = fixed_point
        if splits and knobs:
            first = next(iter(splits))
            out["test_time_compute_by_split"] = {first: out["test_time_compute"]}
            for split, split_data in list(splits.items())[1:]:
                split_data = subset(split_data, config.diagnostics_examples)
                out["test_time_compute_by_split"][split] = {
                    name: measure(trainer, task, split_data, curve_points(trained, config.test_time_points))[0]
                    for name, measure, trained in knobs}
        act = act_behaviour(trainer, task, data)
        if act is not None:
            out["act"] = act
        convergence = equilibrium(trainer, data)
        if convergence is not None:
            out["equilibrium"] = convergence
    except Exception as error:  # noqa: BLE001 — see docstring
        message = f"{type(error).__name__}: {error}"
        print(f"warning: diagnostics failed ({message}); the run's main metrics are kept", file=sys.stderr)
        out["error"] = message
    out["seconds"] = time.perf_counter() - started
    return out
