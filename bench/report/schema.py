"""What a run's summary.json holds, as far as the report reads it: one place, typed.

`parse_run(payload, path)` turns the JSON of bench/runner.py (sections described in
results/README.md and bench/analysis.py) into a `Run`. A summary the report cannot use (still
running, unknown status, missing task/model/config, a complete run without metrics) raises
`UnusableSummary` with the reason; malformed *optional* sections (a curve that is not a list of
points, a diagnostic of the wrong shape) are dropped and named in `Run.dropped`, so figures and
findings can trust the shape of everything they get. Numbers are finite floats or None.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


class UnusableSummary(ValueError):
    """A summary the report skips (the message says why)."""


def number(value: Any) -> float | None:
    """A finite float, or None (JSON may hold null, "inf", strings or garbage)."""
    try:
        result = float(value)
    except (TypeError, ValueError):
        return None
    return result if math.isfinite(result) else None


@dataclass(frozen=True)
class Point:
    """One point of an accuracy curve: an extrapolation split or a test-time setting."""
    x: float
    exact_accuracy: float | None
    token_accuracy: float | None = None
    flops_per_example: float | None = None
    split: str | None = None


@dataclass(frozen=True)
class TestTimeCurve:
    trained: float | None
    points: tuple[Point, ...]


@dataclass(frozen=True)
class FixedPoint:
    at: float | None
    residuals: dict[str, tuple[float | None, ...]]   # state → relative residual per iteration


@dataclass(frozen=True)
class Equilibrium:
    """diagnostics.equilibrium (bench/analysis.py): per stage ("init", "trained"), the smallest fraction
    of examples under the forward tolerance over the evaluation segments, and the fraction under the
    backward tolerance (None without an implicit backward)."""
    tol: float | None
    backward_tol: float | None
    forward: dict[str, float | None]
    backward: dict[str, float | None]


@dataclass(frozen=True)
class Act:
    segments: int
    accuracy: dict[str, float | None]   # policy (learned, fixed, oracle) → exact accuracy
    mean_segments: dict[str, float | None]
    histogram: dict[int, int]           # segments used with learned halting → examples


@dataclass(frozen=True)
class TrainPoint:
    step: float
    loss: float | None
    exact_accuracy: float | None   # of a training batch
    lm_loss: float | None = None   # the loss without Q-head or aux terms (what the plateau check reads)
    lm_loss_window_mean: float | None = None   # its mean over the logging window (newer summaries)


@dataclass
class Run:
    path: Path
    run_id: str
    status: str                 # complete | diverged
    task: str
    model: str
    preset: str
    seed: int | None
    config_hash: str
    config: dict[str, Any]
    finished_at: str
    params: float | None = None
    exact_accuracy: float | None = None
    first_split: str | None = None
    examples: int | None = None  # size of the first evaluation split (what exact_accuracy is over)
    split_examples: dict[str, int] = field(default_factory=dict)
    curves: dict[str, tuple[Point, ...]] = field(default_factory=dict)
    train_curve: tuple[TrainPoint, ...] = ()
    train_seconds: float | None = None
    flops_total: float | None = None
    train_steps: float | None = None      # optimiser steps taken
    train_examples: float | None = None   # fresh training examples drawn
    flops_per_step: float | None = None   # training FLOPs of one optimiser step
    inference_flops: float | None = None
    throughput: float | None = None
    mfu_train: float | None = None
    peak_memory: float | None = None
    device: str = "?"
    # the machines that trained it (summary's trained_on and environment.host_id; older summaries:
    # device name and platform). Same config, seed and threads are bit-identical on one host only.
    hosts: tuple[str, ...] = ()
    diverged_step: float | None = None
    test_time: dict[str, TestTimeCurve] = field(default_factory=dict)
    test_time_by_split: dict[str, dict[str, TestTimeCurve]] = field(default_factory=dict)
    fixed_point: dict[str, FixedPoint] = field(default_factory=dict)
    act: Act | None = None
    equilibrium: Equilibrium | None = None
    # per evaluation split: the exact accuracy (0–1) at all iterations, at the selector's stop and at
    # the oracle stop, and the mean iterations the selector chose (summary's "stop_selector")
    stop_selector: dict[str, dict[str, float]] = field(default_factory=dict)
    # did the selector's training loss end flat (summary's "stop_selector_training"); None: not recorded
    stop_selector_flat: bool | None = None
    diagnostics_examples: int | None = None   # the subset the diagnostics ran on
    dropped: list[str] = field(default_factory=list)

    @property
    def complete(self) -> bool:
        return self.status == "complete"


def _section(payload: dict[str, Any], key: str) -> dict[str, Any]:
    value = payload.get(key)
    return value if isinstance(value, dict) else {}


def _points(value: Any) -> tuple[Point, ...] | None:
    """A list of {x, exact_accuracy, …} dicts → points (entries without a numeric x are skipped);
    None when `value` is not a list of dicts at all."""
    if not isinstance(value, list):
        return None
    points = []
    for entry in value:
        if isinstance(entry, dict) and number(entry.get("x")) is not None:
            points.append(Point(number(entry["x"]), number(entry.get("exact_accuracy")),
                                number(entry.get("token_accuracy")), number(entry.get("flops_per_example")),
                                entry.get("split") if isinstance(entry.get("split"), str) else None))
    return tuple(sorted(points, key=lambda p: p.x))


def _test_time(value: Any, where: str, dropped: list[str]) -> dict[str, TestTimeCurve]:
    out = {}
    for knob, entry in (value.items() if isinstance(value, dict) else ()):
        points = _points(entry.get("points")) if isinstance(entry, dict) else None
        if points is None:
            dropped.append(f"{where}.{knob}")
            continue
        out[knob] = TestTimeCurve(number(entry.get("trained")), points)
    return out


def _fixed_point(value: Any, dropped: list[str]) -> dict[str, FixedPoint]:
    out = {}
    for knob, entry in (value.items() if isinstance(value, dict) else ()):
        residuals = entry.get("residuals") if isinstance(entry, dict) else None
        if not isinstance(residuals, dict):
            dropped.append(f"diagnostics.fixed_point.{knob}")
            continue
        out[knob] = FixedPoint(number(entry.get("at")), {state: tuple(number(v) for v in trace)
                                                         for state, trace in residuals.items()
                                                         if isinstance(trace, list)})
    return out


def _equilibrium(value: Any, dropped: list[str]) -> Equilibrium | None:
    if value is None:
        return None
    stages = ("init", "trained")
    if not (isinstance(value, dict) and all(isinstance(value.get(s), dict) for s in stages)
            and all(isinstance(value[s].get("segments"), list) and value[s]["segments"] for s in stages)):
        dropped.append("diagnostics.equilibrium")
        return None

    def fraction(entry: Any) -> float | None:
        return number(entry.get("converged_fraction")) if isinstance(entry, dict) else None

    forward = {}
    for stage in stages:
        fractions = [fraction(segment) for segment in value[stage]["segments"]]
        forward[stage] = None if None in fractions else min(fractions)
    return Equilibrium(number(value.get("tol")), number(value.get("backward_tol")), forward,
                       {stage: fraction(value[stage].get("backward")) for stage in stages})


def _act(value: Any, dropped: list[str]) -> Act | None:
    if value is None:
        return None
    policies = ("learned", "fixed", "oracle")
    if not (isinstance(value, dict) and all(isinstance(value.get(p), dict) for p in policies)):
        dropped.append("diagnostics.act")
        return None
    histogram = value.get("segments_histogram") if isinstance(value.get("segments_histogram"), dict) else {}
    counts = {int(k): int(v) for k, v in histogram.items() if number(k) is not None and number(v) is not None}
    return Act(int(number(value.get("segments")) or max(counts, default=0)),
               {p: number(value[p].get("exact_accuracy")) for p in policies},
               {p: number(value[p].get("mean_segments")) for p in policies}, counts)


def _device(environment: dict[str, Any], fallback: Any) -> str:
    """'cpu: AMD EPYC' from the environment's device name, trademarks and clock dropped."""
    name = re.sub(r"\((R|TM)\)|CPU|Processor|@.*$", "", str(environment.get("device_name") or "")).strip()
    return f"{fallback or '?'}" + (f": {' '.join(name.split())}" if name else "")


def _hosts(payload: dict[str, Any]) -> tuple[str, ...]:
    environment = _section(payload, "environment")
    trained_on = payload.get("trained_on") if isinstance(payload.get("trained_on"), list) else []
    known_ids = {str(host) for host in trained_on + [environment.get("host_id")] if host}
    if known_ids:
        return tuple(sorted(known_ids))
    known = [str(environment[key]) for key in ("device_name", "platform") if environment.get(key)]
    return (" · ".join(known),) if known else ()


def _per_step(train: dict[str, Any]) -> float | None:
    total, steps = number(train.get("flops_total")), number(train.get("steps"))
    return total / steps if total is not None and steps else None


STOP_SELECTOR_FIELDS = ("all_iterations_exact_accuracy", "selector_exact_accuracy", "oracle_exact_accuracy",
                        "mean_selected_iterations", "examples")


def _selector_flat(value: Any) -> bool | None:
    """summary["stop_selector_training"]["plateau"]["finished"], or None where not recorded."""
    plateau = value.get("plateau") if isinstance(value, dict) else None
    finished = plateau.get("finished") if isinstance(plateau, dict) else None
    return finished if isinstance(finished, bool) else None


def _stop_selector(value: Any, dropped: list[str]) -> dict[str, dict[str, float]]:
    """summary["stop_selector"] → {split: {field: number}}; a split missing a field is dropped."""
    if value is None:
        return {}
    out = {}
    for split, entry in (value.items() if isinstance(value, dict) else ()):
        numbers = {name: number(entry.get(name)) for name in STOP_SELECTOR_FIELDS} if isinstance(entry, dict) else {}
        if numbers and all(v is not None for v in numbers.values()):
            out[str(split)] = numbers
        else:
            dropped.append(f"stop_selector.{split}")
    if not isinstance(value, dict):
        dropped.append("stop_selector")
    return out


def parse_run(payload: dict[str, Any], path: Path) -> Run:
    """A `Run` from a summary's JSON; UnusableSummary when the report cannot use it."""
    status = payload.get("status")
    if status == "running":
        raise UnusableSummary("run still running or interrupted")
    if status not in ("complete", "diverged"):
        raise UnusableSummary(f"unknown status {status!r}")
    if not isinstance(payload.get("config"), dict) or not payload.get("task") or not payload.get("model"):
        raise UnusableSummary("partial summary (missing task/model/config)")
    metrics = payload.get("metrics")
    if status == "complete":
        missing = [k for k in ("metrics", "train", "inference") if not isinstance(payload.get(k), dict)]
        if missing or number(payload.get("exact_accuracy")) is None:
            raise UnusableSummary(f"partial summary (missing {', '.join(missing) or 'exact_accuracy'})")
    dropped: list[str] = []
    train, inference, data = _section(payload, "train"), _section(payload, "inference"), _section(payload, "data")
    first_split = next(iter(metrics), None) if isinstance(metrics, dict) else None
    split_examples = {k[: -len("_examples")]: int(v) for k, v in data.items()
                      if k.endswith("_examples") and number(v) is not None and number(v) > 0}
    curves: dict[str, tuple[Point, ...]] = {}
    for axis, entries in _section(payload, "curves").items():
        points = _points(entries)
        if points is None:
            dropped.append(f"curves.{axis}")
        else:
            curves[axis] = points
    if "curve" in train and not isinstance(train["curve"], list):
        dropped.append("train.curve")
    train_curve = tuple(TrainPoint(number(p["step"]), number(p.get("loss")), number(p.get("exact_accuracy")),
                                   number(p.get("lm_loss")), number(p.get("lm_loss_window_mean")))
                        for p in (train.get("curve") if isinstance(train.get("curve"), list) else [])
                        if isinstance(p, dict) and number(p.get("step")) is not None)
    diagnostics = payload.get("diagnostics")
    if diagnostics is not None and not isinstance(diagnostics, dict):
        dropped.append("diagnostics")
    diagnostics = diagnostics if isinstance(diagnostics, dict) else {}
    by_split_raw = diagnostics.get("test_time_compute_by_split")
    by_split = {split: _test_time(knobs, f"diagnostics.test_time_compute_by_split.{split}", dropped)
                for split, knobs in (by_split_raw.items() if isinstance(by_split_raw, dict) else ())}
    return Run(
        path=Path(path), run_id=str(payload.get("run_id", Path(path).parent.name)), status=status,
        task=str(payload["task"]), model=str(payload["model"]), preset=str(payload.get("preset")),
        seed=int(payload["seed"]) if number(payload.get("seed")) is not None else None,
        config_hash=str(payload.get("config_hash") or ""), config=payload["config"],
        finished_at=str(payload.get("finished_at") or payload.get("started_at") or ""),
        params=number(payload.get("params")), exact_accuracy=number(payload.get("exact_accuracy")),
        first_split=first_split, examples=split_examples.get(first_split) if first_split else None,
        split_examples=split_examples, curves=curves, train_curve=train_curve,
        train_seconds=number(train.get("seconds")), flops_total=number(train.get("flops_total")),
        train_steps=number(train.get("steps")), train_examples=number(train.get("examples")),
        flops_per_step=number(train.get("flops_per_step")) or _per_step(train),
        inference_flops=number(inference.get("flops_per_example")),
        throughput=number(inference.get("examples_per_second")),
        mfu_train=number(_section(payload, "mfu").get("train")),
        peak_memory=number(_section(payload, "memory").get("peak_memory_bytes")),
        device=_device(_section(payload, "environment"), payload.get("device")),
        hosts=_hosts(payload),
        diverged_step=number(payload.get("diverged_step")),
        test_time=_test_time(diagnostics.get("test_time_compute"), "diagnostics.test_time_compute", dropped),
        test_time_by_split=by_split, fixed_point=_fixed_point(diagnostics.get("fixed_point"), dropped),
        act=_act(diagnostics.get("act"), dropped), equilibrium=_equilibrium(diagnostics.get("equilibrium"), dropped),
        stop_selector=_stop_selector(payload.get("stop_selector"), dropped),
        stop_selector_flat=_selector_flat(payload.get("stop_selector_training")),
        diagnostics_examples=int(number(diagnostics.get("examples")) or 0) or None, dropped=dropped)
