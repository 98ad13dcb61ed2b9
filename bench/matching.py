"""Size every model to HRM for the same task and preset: `--match params | flops | none`.

- params (the CLI default): the model's width (`hidden`) is searched so that its parameter count
  (puzzle-embedding tables excluded) is within ±2% of HRM's, at the model's configured depth.
- flops: the same search, matching inference FLOPs per example instead (all segments and every
  recurrent step counted, measured with FlopCounterMode on a one-example forward; a DEQ is measured
  at its full iteration budget, since its solver may stop earlier on real data).
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
gives the key; `apply()` does that for every mode, including none.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable

import torch

MODES = ("params", "flops", "none")
TOLERANCE = 0.02
# The model everything is matched to, and --set overrides it is resolved with. Tests may point this
# at a stand-in with the same parameter count (the tied unrolled model) while HRM is not registered.
REFERENCE_MODEL = "hrm"
REFERENCE_OVERRIDES: tuple[str, ...] = ()
WIDTH = "hidden"
# fine knobs for when no width is within tolerance: (field, low, high, integer?, fixed other fields)
FINE_KNOBS = (("expansion", 0.25, 16.0, False, {"ffn_multiple": 1}), ("state_size", 1, 256, True, {}))


def _error(config_error: str):
    from bench.config import ConfigError

    return ConfigError(config_error)


def reference_run(run, overrides=()):
    """HRM resolved for the run's task and preset (task.* and train.* overrides apply; model.* do not).

    None when the reference model is not registered (a checkout without models/hrm.py)."""
    from bench.config import resolve
    from models.registry import model_names

    if REFERENCE_MODEL not in model_names():
        return None
    shared = [o for o in overrides if not o.strip().startswith("model.")]
    return resolve(REFERENCE_MODEL, run.task_name, run.preset, [*REFERENCE_OVERRIDES, *shared], device=run.device)


def task_spec(run):
    from tasks.registry import create_task

    try:
        return create_task(run.task_name, **vars(run.task)).spec
    except (TypeError, ValueError) as error:
        raise _error(f"task config: {error}") from None


def build(model_name: str, config, spec, device: str | torch.device = "cpu"):
    from models.registry import get_model_entry

    with torch.device(device):
        return get_model_entry(model_name).cls(config, spec)


def count_params(model_name: str, config, spec) -> int:
    """Parameters without puzzle-embedding tables; built on the meta device (no memory, fast)."""
    return build(model_name, config, spec, "meta").parameter_counts()["params"]


def example_batch(spec, batch_size: int = 1) -> dict[str, torch.Tensor]:
    """A zero batch of the task's training shape (what `bench info` and FLOP matching run)."""
    return {"inputs": torch.zeros(batch_size, spec.seq_len, dtype=torch.long),
            "labels": torch.zeros(batch_size, spec.seq_len, dtype=torch.long),
            "puzzle_ids": torch.zeros(batch_size, dtype=torch.long)}


def inference_flops(model, spec, segments: int, device: str | torch.device = "cpu") -> int:
    """FLOPs of an evaluation forward (all `segments`) on one example; every recurrent step counts."""
    from bench.measure import flops_of

    batch = {key: value.to(device) for key, value in example_batch(spec).items()}
    was_training = model.training
    model.eval()

    def forward() -> None:
        with torch.no_grad():
            carry = model.initial_carry(batch)
            for _ in range(segments):
                carry, _ = model(carry, batch)

    try:
        return flops_of(forward)
    finally:
        model.train(was_training)


def _measure(mode: str, model_name: str, spec, train) -> Callable[[Any], int]:
    from models.registry import get_model_entry

    if mode == "params":
        return lambda config: count_params(model_name, config, spec)
    segments = train.eval_segments or train.segments
    # models whose work depends on the data (DEQ's solver may stop early) are measured at their full
    # iteration budget: `full_budget` on the class lists the config changes that make them use it
    full_budget = getattr(get_model_entry(model_name).cls, "full_budget", {})

    def flops(config) -> int:
        config = dataclasses.replace(config, **full_budget)
        try:  # shapes are all FlopCounterMode needs: the meta device is fast and allocates nothing
            return inference_flops(build(model_name, config, spec, "meta"), spec, segments, "meta")
        except (RuntimeError, NotImplementedError):  # data-dependent control flow (a DEQ solver) needs values
            torch.manual_seed(train.seed)
            return inference_flops(build(model_name, config, spec), spec, segments)

    return flops


def _width_step(config) -> int:
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


def apply(run, mode: str = "params", overrides=(), explicit: set[str] | frozenset = frozenset()):
    """HRM-derived defaults, then sizing by `mode`; returns the run with `extra["match"]` recorded.

    explicit: model.* keys a preset or --set gave (reference defaults never override those).
    """
    from bench.config import parse_overrides
    from models.registry import get_model_entry

    if mode not in MODES:
        raise _error(f"--match {mode!r} is not one of: {', '.join(MODES)}")
    cls = get_model_entry(run.model_name).cls
    is_reference = run.model_name == REFERENCE_MODEL
    defaults = {k: rule for k, rule in getattr(cls, "reference_defaults", {}).items() if k not in explicit}
    # HRM itself is the same model in every mode: recorded as "none" so its config hash does not change
    if is_reference or (mode == "none" and not defaults):
        run.extra["match"] = {"mode": mode if not is_reference else "none", "reference": REFERENCE_MODEL}
        return run
    reference = reference_run(run, overrides)
    if reference is None:
        reason = f"reference model {REFERENCE_MODEL!r} is not registered: model kept at its own defaults, unmatched"
        run.extra["match"] = {"mode": mode, "reference": REFERENCE_MODEL, "skipped": reason}
        return run
    if defaults:
        try:
            run.model = dataclasses.replace(run.model, **{k: rule(reference.model) for k, rule in defaults.items()})
        except (TypeError, ValueError) as error:
            raise _error(f"model config: {error}") from None
    if mode == "none":
        run.extra["match"] = {"mode": "none", "reference": REFERENCE_MODEL}
        return run
    set_by_user = {key.split(".", 1)[1] for key in parse_overrides(overrides) if key.startswith("model.")}
    knobs = {WIDTH, *(name for name, *_ in FINE_KNOBS), "ffn_multiple"}
    clash = sorted(set_by_user & knobs & {f.name for f in dataclasses.fields(run.model)})
    if clash:  # the user's explicit size wins; the run says it is unmatched
        reason = f"{', '.join('model.' + k for k in clash)} set explicitly: not resized"
        run.extra["match"] = {"mode": mode, "reference": REFERENCE_MODEL, "skipped": reason}
        return run
    spec = task_spec(run)
    target = _measure(mode, REFERENCE_MODEL, task_spec(reference), reference.train)(reference.model)
    try:
        matched, achieved = search(run.model, _measure(mode, run.model_name, spec, run.train), target)
    except (TypeError, ValueError) as error:
        raise _error(f"--match {mode}: {error}") from None
    relative_error = (achieved - target) / target
    if abs(relative_error) > TOLERANCE:
        raise _error(f"--match {mode}: {run.model_name} cannot be sized within ±{TOLERANCE:.0%} of "
                     f"{REFERENCE_MODEL} ({achieved:,} vs {target:,}); use --match none")
    changed = {f.name: getattr(matched, f.name) for f in dataclasses.fields(matched)
               if getattr(matched, f.name) != getattr(run.model, f.name)}
    run.model = matched
    run.extra["match"] = {"mode": mode, "reference": REFERENCE_MODEL, "target": target, "achieved": achieved,
                          "relative_error": relative_error, "changed": changed}
    return run
