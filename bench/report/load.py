"""Read a results tree into variants: the runs of one task × model × preset × configuration.

Runs of one variant differ only in the seed. Two summaries of the same (config hash, seed) are one
run recorded twice (a rerun into the same folder tree): the newest (by `finished_at`) is kept and
the other named in a warning, so a variant's n is its number of distinct seeds.
"""
from __future__ import annotations

import functools
import json
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

from bench.config import recorded_identity
from bench.report.schema import Run, UnusableSummary, parse_run
from bench.results import ResultsError, iter_summaries
from bench.stats import AccuracyInterval, accuracy_interval
from tasks.registry import RegistryError, get_task_entry

# config keys that choose how a run is measured or logged, not what is trained: they never name a
# variant. The stop selector is a head trained after the network, frozen, has finished: its settings
# change its own table, not the run's accuracy (measured at all iterations).
NOT_A_DIFFERENCE = ("train.test_time_points", "train.diagnostics_examples", "train.eval_segments",
                    "train.eval_halting", "train.eval_every", "train.eval_batch_size", "train.log_every",
                    "train.checkpoint_every", "train.stop_selector_steps", "train.stop_selector_objective",
                    "train.stop_selector_cost")


def variant_key(config: dict[str, Any]) -> str:
    """The configuration without seed and device: what makes runs seeds of one variant (fields
    added to the suite later count only away from their default, as in the config hash)."""
    config = recorded_identity(config)
    config.get("train", {}).pop("seed", None)
    config.pop("device", None)
    return json.dumps(config, sort_keys=True)


def flatten(config: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested config → {"train.segments": 2, …}."""
    flat = {}
    for key, value in config.items():
        if isinstance(value, dict):
            flat.update(flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


@dataclass
class Variant:
    task: str
    model: str
    preset: str
    key: str
    runs: list[Run] = field(default_factory=list)
    label: str = ""
    # config keys where it differs from its preset as the suite defines it now (empty: the preset's
    # own run); None when that cannot be told (a plugin not installed, a preset since renamed)
    off_preset: frozenset[str] | None = None

    @property
    def complete(self) -> list[Run]:
        return [r for r in self.runs if r.complete]

    @property
    def diverged(self) -> list[Run]:
        return [r for r in self.runs if r.status == "diverged"]

    @property
    def flat(self) -> dict[str, Any]:
        return flatten(json.loads(self.key))

    def values(self, getter: Callable[[Run], float | None]) -> list[float]:
        """getter over the complete runs, None results left out."""
        return [v for v in (getter(r) for r in self.complete) if v is not None]

    def accuracy(self) -> AccuracyInterval | None:
        """Exact accuracy on the first evaluation split over seeds (bench/stats.accuracy_interval)."""
        runs = [r for r in self.complete if r.exact_accuracy is not None]
        return accuracy_interval([r.exact_accuracy for r in runs], [r.examples for r in runs])


def check_filters(results: Path, tasks: Iterable[str] = (), models: Iterable[str] = ()) -> None:
    """ResultsError when --results is not a directory, or a --task/--model filter names nothing in it
    (a report of nothing would look like a report of no runs)."""
    results = Path(results)
    if not results.exists():
        raise ResultsError(f"{results}: no such results directory")
    if not results.is_dir():
        raise ResultsError(f"{results}: not a directory (give the folder that holds the runs)")
    found: dict[str, set[str]] = {"task": set(), "model": set()}
    for _, summary, _ in iter_summaries(results):
        if summary:
            for kind in found:
                found[kind].add(str(summary.get(kind)))
    for kind, names in (("task", tasks), ("model", models)):
        unknown = sorted(set(names) - found[kind])
        if unknown:
            there = ", ".join(sorted(found[kind])) or "none"
            raise ResultsError(f"--{kind} {', '.join(unknown)}: no runs of that {kind} under {results} "
                               f"({kind}s there: {there})")


def _deduplicate(runs: list[Run], warnings: list[str]) -> list[Run]:
    """One run per (config hash, seed): the newest; the others named in a warning."""
    groups: dict[tuple[str, Any], list[Run]] = defaultdict(list)
    for run in runs:
        groups[(run.config_hash or run.run_id, run.seed)].append(run)
    kept = []
    for (config_hash, seed), group in groups.items():
        group.sort(key=lambda r: (r.finished_at, str(r.path)))
        kept.append(group[-1])
        if len(group) > 1:
            warnings.append(f"{len(group)} summaries of config {config_hash} seed {seed}: counted once, the newest "
                            f"({group[-1].path}); ignored {', '.join(str(r.path) for r in group[:-1])}")
    return kept


def load_runs(results: Path, tasks: Iterable[str] = (), models: Iterable[str] = ()) -> tuple[list[Variant], list[str]]:
    """(variants sorted by task, model, preset, label; warnings for every skipped or odd file)."""
    tasks, models = set(tasks), set(models)
    warnings: list[str] = []
    runs: list[Run] = []
    for path, summary, problem in iter_summaries(results):
        if summary is None:
            warnings.append(f"skipped {problem}")
            continue
        try:
            run = parse_run(summary, path)
        except UnusableSummary as error:
            warnings.append(f"skipped {path}: {error}")
            continue
        if (tasks and run.task not in tasks) or (models and run.model not in models):
            continue
        if run.dropped:
            warnings.append(f"{path}: ignored malformed {', '.join(run.dropped)}")
        runs.append(run)
    variants: dict[tuple, Variant] = {}
    for run in _deduplicate(runs, warnings):
        key = (run.task, run.model, run.preset, variant_key(run.config))
        variants.setdefault(key, Variant(*key)).runs.append(run)
    for variant in variants.values():
        variant.runs.sort(key=lambda r: (r.seed is None, r.seed or 0, r.finished_at))
        variant.off_preset = differences_from_preset(variant)
    label_variants(list(variants.values()))
    return sorted(variants.values(), key=lambda v: (v.task, v.model, v.preset, v.label)), warnings


def resized_keys(flat: dict[str, Any]) -> set[str]:
    """Config keys that parameter matching set (extra.match.changed.*): consequences, not choices."""
    return {f"model.{k.rsplit('.', 1)[-1]}" for k in flat if k.startswith("extra.match.changed.")}


@functools.lru_cache(maxsize=None)
def _preset_flat(model: str, task: str, preset: str) -> str | None:
    """The flattened config (JSON) that `bench run --preset PRESET` resolves today, or None."""
    from bench.config import ConfigError, resolve

    try:
        return json.dumps(flatten(recorded_identity(resolve(model, task, preset).to_dict())), default=str)
    except (ConfigError, LookupError):   # a model, task or preset unknown here: "cannot tell"
        return None


def differing_keys(flat_a: dict[str, Any], flat_b: dict[str, Any], ignored: Iterable[str] = ()) -> set[str]:
    """The config keys whose values differ, leaving aside measurement settings (NOT_A_DIFFERENCE),
    the sizes parameter matching chose, `extra.*` and `ignored`."""
    left_out = resized_keys(flat_a) | resized_keys(flat_b) | set(NOT_A_DIFFERENCE) | set(ignored)
    return {k for k in (set(flat_a) | set(flat_b)) - left_out if not k.startswith("extra.")
            and json.dumps(flat_a.get(k), default=str) != json.dumps(flat_b.get(k), default=str)}


def differences_from_preset(variant: Variant) -> frozenset[str] | None:
    """The model.*, task.* and train.* keys where the variant's config differs from its preset's
    (seed, threads, measurement settings and the sizes parameter matching chose left aside)."""
    preset = _preset_flat(variant.model, variant.task, variant.preset)
    if preset is None:
        return None
    differing = differing_keys(variant.flat, json.loads(preset), ignored=("train.seed", "train.threads"))
    return frozenset(k for k in differing if k.split(".", 1)[0] in ("model", "task", "train"))


def label_variants(variants: list[Variant]) -> None:
    """Name each variant by its model plus the config keys that tell the model's variants apart on
    some task (the same keys on every task, so a pivot row is the same variant everywhere; e.g.
    "hrm (segments=1)"), and the preset when a task holds several."""
    keys_of: dict[str, set[str]] = defaultdict(set)
    siblings: dict[tuple[str, str], list[Variant]] = defaultdict(list)
    for variant in variants:
        siblings[(variant.task, variant.model)].append(variant)
    for (_, model), group in siblings.items():
        flats = [v.flat for v in group]
        differing = {k for f in flats for k in f if len({json.dumps(g.get(k), default=str) for g in flats}) > 1}
        resized = set().union(*(resized_keys(f) for f in flats))
        differing = {k for k in differing if k != "preset" and not k.startswith("extra.") and k not in NOT_A_DIFFERENCE}
        keys_of[model] |= (differing - resized) or differing
    for (_, model), group in siblings.items():
        keys = sorted(keys_of[model])   # all of them: two variants must never share a label
        for variant in group:
            flat = variant.flat
            # a task.* key of another task (grid on maze) does not describe this task's runs
            shown = [f"{k.split('.', 1)[-1]}={value_of(variant, k)}" for k in keys
                     if k in flat or not k.startswith("task.")]
            if len({v.preset for v in group}) > 1:
                shown.insert(0, variant.preset)
            variant.label = f"{model} ({', '.join(shown)})" if shown else model
            if len(group) > 1 and not shown:
                variant.label = f"{model} ({variant.key[:8]})"
        _label_by_preset(group)


def _label_by_preset(group: list[Variant]) -> None:
    """Where each of a task's variants of the model is known against its preset and exactly one is
    at it, that one is named by the model alone and the others by the keys they change from it
    (e.g. "hrm (act=True)"), as long as the names stay distinct; otherwise (a study made at an older
    preset) the labels above stand. So the pivot's row "hrm" is HRM at its preset on every task."""
    if sum(v.off_preset == frozenset() for v in group) != 1 \
            or any(v.off_preset is None for v in group) or len({v.preset for v in group}) > 1:
        return
    labels = {}
    for variant in group:
        shown = [f"{k.split('.', 1)[-1]}={value_of(variant, k)}" for k in sorted(variant.off_preset)]
        labels[id(variant)] = f"{variant.model} ({', '.join(shown)})" if shown else variant.model
    if len(set(labels.values())) == len(group):
        for variant in group:
            variant.label = labels[id(variant)]


def value_of(variant: "Variant", key: str) -> Any:
    """A config value of the variant, or its default where the summary leaves the key out (a field
    added later is recorded only away from its default)."""
    flat = variant.flat
    return flat[key] if key in flat else default_of(key, variant.model)


def default_of(key: str, model: str) -> Any:
    """The default of a config key a summary leaves out (a field added later, at its default)."""
    import dataclasses

    from bench.config import TrainConfig
    from models.registry import get_model_entry

    section, name = key.split(".", 1)
    try:
        config_class = TrainConfig if section == "train" else get_model_entry(model).config if section == "model" else None
    except LookupError:
        return None
    fields = {f.name: f.default for f in dataclasses.fields(config_class)} if config_class else {}
    return fields.get(name)


def by_task(variants: list[Variant]) -> dict[str, list[Variant]]:
    grouped: dict[str, list[Variant]] = defaultdict(list)
    for variant in variants:
        grouped[variant.task].append(variant)
    return dict(sorted(grouped.items()))


def is_protocol_check(variant: Variant) -> bool:
    """Whether the variant's task declares its preset a protocol check (tasks.protocol.Task): a run
    that checks the protocol works at a scale where the task cannot be learnt, not evidence."""
    try:
        entry = get_task_entry(variant.task)
    except RegistryError:   # a plugin task that is not installed here: nothing declared
        return False
    return variant.preset in getattr(entry.cls, "protocol_check_presets", ())


def presets(variants: list[Variant]) -> str:
    """The preset name(s) of these variants, for sentences that name a budget ("the cpu preset")."""
    names = sorted({v.preset for v in variants})
    return "/".join(names) if names else "?"
