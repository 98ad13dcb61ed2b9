"""Size every model to HRM for the same task and preset: `--match params | flops | none`.

- params (the CLI default): the model's width (`hidden`) is searched so that its parameter count
  (puzzle-embedding tables excluded) is within ±2% of HRM's, at the model's configured depth.
- flops: the same search, matching inference FLOPs per example instead (all segments and every
  recurrent step counted on a one-example forward on the meta device — shapes only, no memory; a DEQ
  is measured at its full iteration budget, since its solver may stop earlier on real data).
- none: the model's own configuration.

The search keeps the head count (`num_heads`) and the divisibility rules — hidden a multiple of
2·num_heads so the head dimension is whole and even for RoPE — and first the SwiGLU rounding
(`ffn_multiple`). Keeping the head *dimension* fixed instead would move hidden in steps of 64 at the
paper preset (±20% in parameters), so the head dimension is what changes. When no width lands within
the tolerance because the SwiGLU size jumps by a whole `ffn_multiple`, the MLP is sized exactly
(ffn_multiple=1, `expansion` searched); for Mamba the state size is the fine knob. The choice, the
target, the achieved value and the relative error are recorded in `RunConfig.extra["match"]`.

Baselines also take some defaults from HRM's resolved config (`reference_defaults` on the model
class, e.g. the transformer's depth = HRM's high_layers + low_layers) unless a preset or --set
gives the key; `bench.config.resolve()` applies those in every mode, including none.

Sizing is a separate step from resolving: `match(resolve(...), mode)`, or `prepare(...)` for both.
"""
from __future__ import annotations

import copy
import dataclasses
import json
import logging
from typing import Any, Callable

import torch

from bench.config import REFERENCE_MODEL, ConfigError, RunConfig, base_preset, non_model_overrides, parse_overrides, resolve
from bench.measure import flops_of
from models.registry import get_model_entry
from tasks.registry import create_task

log = logging.getLogger("recurrent_bench")
MODES = ("params", "flops", "none")
TOLERANCE = 0.02
WIDTH = "hidden"
# fine knobs for when no width is within tolerance: (field, low, high, integer?, fixed other fields)
FINE_KNOBS = (("expansion", 0.25, 16.0, False, {"ffn_multiple": 1}), ("state_size", 1, 256, True, {}),
              ("head_channels", 1, 4096, True, {}))


def sizing_spec(run: RunConfig):
    """The task's shapes from its config alone (no data is built)."""
    try:
        return create_task(run.task_name, **vars(run.task)).sizing_spec
    except (TypeError, ValueError) as error:
        raise ConfigError(f"task config: {error}") from None


def build(model_name: str, config, spec, device: str | torch.device = "cpu"):
    with torch.device(device):
        return get_model_entry(model_name).cls(config, spec)


def count_params(model_name: str, config, spec) -> int:
    """Parameters without puzzle-embedding tables; built on the meta device (no memory, fast)."""
    return build(model_name, config, spec, "meta").parameter_counts()["params"]


def example_batch(spec, batch_size: int = 1, device: str | torch.device = "cpu") -> dict[str, torch.Tensor]:
    """A zero batch of the task's training shape (what `bench info` and FLOP matching run)."""
    shape = (batch_size, spec.seq_len)
    return {"inputs": torch.zeros(shape, dtype=torch.long, device=device),
            "labels": torch.zeros(shape, dtype=torch.long, device=device),
            "puzzle_ids": torch.zeros(batch_size, dtype=torch.long, device=device)}


def inference_flops(model, spec, segments: int, device: str | torch.device = "cpu") -> int:
    """FLOPs of an evaluation forward (all `segments`) on one example; every recurrent step counts.

    On the meta device every segment runs the same ops on the same shapes, and the counted formulas
    depend on shapes only, so one segment is counted and multiplied (a test checks this equals the
    real count)."""
    batch = example_batch(spec, device=device)
    shapes_only = torch.device(device).type == "meta"
    was_training = model.training
    model.eval()

    def forward() -> None:
        with torch.no_grad():
            carry = model.initial_carry(batch)
            for _ in range(1 if shapes_only else segments):
                carry, _ = model(carry, batch)

    try:
        return flops_of(forward) * (segments if shapes_only else 1)
    finally:
        model.train(was_training)


def full_budget_flops(model_name: str, config, spec, segments: int) -> int:
    """Inference FLOPs per example at the model's whole iteration budget (a DEQ's solver may stop
    earlier on real data), counted on the meta device: shapes are all the counter needs."""
    config = dataclasses.replace(config, **get_model_entry(model_name).cls.full_budget)
    return inference_flops(build(model_name, config, spec, "meta"), spec, segments, "meta")


def _measure(mode: str, model_name: str, spec, train) -> Callable[[Any], int]:
    if mode == "params":
        return lambda config: count_params(model_name, config, spec)
    segments = train.eval_segments or train.segments
    return lambda config: full_budget_flops(model_name, config, spec, segments)


def _width_step(config) -> int:
    """Widths move in steps of 2·num_heads (a whole, even head dimension; 2 for models without heads)."""
    return 2 * getattr(config, "num_heads", 1)


def search(config, measure: Callable[[Any], int], target: int, tolerance: float = TOLERANCE):
    """(config, value) with `measure(config)` closest to `target`, varying width, then a fine knob."""
    step = _width_step(config)
    cache: dict[str, int] = {}
    uncached = measure

    def measure(candidate) -> int:  # noqa: F811 (the same function, memoised: the search revisits widths)
        key = repr(candidate)
        if key not in cache:
            cache[key] = uncached(candidate)
        return cache[key]


    def at(width: int, base=config):
        changed = dataclasses.replace(base, **{WIDTH: width})
        return changed, measure(changed)

    # bracket the largest width (a multiple of step) whose value is <= target; the value grows with
    # width roughly as width², so start from that guess and gallop outwards
    start = getattr(config, WIDTH) / step * (target / max(measure(config), 1)) ** 0.5
    low = high = max(1, round(start))
    if at(low * step)[1] <= target:
        jump = 1
        while at(high * step)[1] <= target and high < 1 << 14:
            low, high, jump = high, high + jump, jump * 2
    else:
        jump = 1
        while low > 1 and at(low * step)[1] > target:
            high, low, jump = low, max(1, low - jump), jump * 2
        if at(low * step)[1] > target:
            high = low
    while high - low > 1:
        middle = (low + high) // 2
        low, high = (middle, high) if at(middle * step)[1] <= target else (low, middle)
    candidates = [at(low * step), at(high * step)]
    best = min(candidates, key=lambda pair: abs(pair[1] - target))
    if abs(best[1] - target) <= tolerance * target:
        return best
    for name, lowest, highest, integer, fixed in FINE_KNOBS:
        if not hasattr(config, name):
            continue
        for base, _ in candidates:
            base = dataclasses.replace(base, **fixed)
            points: dict[float, int] = {}

            def evaluate(value):
                value = int(round(value)) if integer else round(value, 3)
                if value not in points:
                    points[value] = measure(dataclasses.replace(base, **{name: value}))
                return value

            evaluate(lowest)
            evaluate(highest)
            for _ in range(6):  # secant steps: the value is close to linear in the knob (MLP or state size)
                below = max((v for v in points if points[v] <= target), default=lowest)
                above = min((v for v in points if points[v] > target), default=highest)
                if points[above] == points[below]:
                    break
                guess = below + (target - points[below]) * (above - below) / (points[above] - points[below])
                if evaluate(min(max(guess, lowest), highest)) in (below, above) and len(points) > 2:
                    break
            value = min(points, key=lambda v: abs(points[v] - target))
            if abs(points[value] - target) < abs(best[1] - target):
                best = (dataclasses.replace(base, **{name: value}), points[value])
        break
    return best


def match(run: RunConfig, mode: str = "params") -> RunConfig:
    """The run with its model sized to HRM by `mode`, and `extra["match"]` saying how (a new RunConfig).

    Cached per process: every seed of a sweep, and `bench info` after `bench run`, size once."""
    if mode not in MODES:
        raise ConfigError(f"--match {mode!r} is not one of: {', '.join(MODES)}")
    identity = run.to_dict()
    identity["train"] = {k: v for k, v in identity["train"].items() if k != "seed"}
    key = (mode, json.dumps(identity, sort_keys=True, default=str), run.overrides)
    if key not in _SIZED:
        _SIZED[key] = _sized(run, mode, run.overrides)
    model, record = _SIZED[key]
    return dataclasses.replace(run, model=model, extra={**run.extra, "match": copy.deepcopy(record)})


_SIZED: dict[tuple, tuple[Any, dict]] = {}   # (mode, config without seed, overrides) → (model config, record)


def _sized(run: RunConfig, mode: str, overrides: tuple[str, ...]) -> tuple[Any, dict]:
    record: dict[str, Any] = {"mode": mode, "reference": REFERENCE_MODEL}
    if run.model_name == REFERENCE_MODEL or mode == "none":
        # HRM itself is the same model in every mode: recorded as "none" so its config hash does not change
        return run.model, {**record, "mode": "none"}
    set_by_user = {key.split(".", 1)[1] for key in parse_overrides(overrides) if key.startswith("model.")}
    knobs = {WIDTH, *(name for name, *_ in FINE_KNOBS), "ffn_multiple"}
    clash = sorted(set_by_user & knobs & {f.name for f in dataclasses.fields(run.model)})
    if clash:  # the user's explicit size wins; the run says it is unmatched
        return run.model, {**record, "skipped": f"{', '.join('model.' + k for k in clash)} set explicitly: not resized"}
    log.info("sizing %s to %s's %s (a width search on the meta device)…", run.model_name, REFERENCE_MODEL,
             "parameter count" if mode == "params" else "inference FLOPs")
    reference = resolve(REFERENCE_MODEL, run.task_name, base_preset(run.preset), non_model_overrides(overrides),
                        device=run.device)
    spec = sizing_spec(run)
    target = _measure(mode, REFERENCE_MODEL, spec, reference.train)(reference.model)
    try:
        matched, achieved = search(run.model, _measure(mode, run.model_name, spec, run.train), target)
    except (TypeError, ValueError) as error:
        raise ConfigError(f"--match {mode}: {error}") from None
    relative_error = (achieved - target) / target
    if abs(relative_error) > TOLERANCE:
        raise ConfigError(f"--match {mode}: {run.model_name} cannot be sized within ±{TOLERANCE:.0%} of "
                          f"{REFERENCE_MODEL} ({achieved:,} vs {target:,}); use --match none")
    changed = {f.name: getattr(matched, f.name) for f in dataclasses.fields(matched)
               if getattr(matched, f.name) != getattr(run.model, f.name)}
    return matched, {**record, "target": target, "achieved": achieved, "relative_error": relative_error,
                     "changed": changed}


def prepare(model_name: str, task_name: str, preset: str = "cpu", overrides=(), seed: int | None = None,
            device: str = "cpu", match_mode: str = "params") -> RunConfig:
    """resolve() then match(): the configuration a run, a sweep or `bench info` uses."""
    return match(resolve(model_name, task_name, preset, overrides, seed=seed, device=device), match_mode)
