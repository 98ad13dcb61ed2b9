"""Run configuration: three dataclass sections (model.*, task.*, train.*), presets, overrides.

Resolution order, later wins:
  1. the dataclasses' defaults, and the defaults a baseline takes from HRM's resolved config for the
     same task and preset (`reference_defaults`, e.g. the transformer's depth = HRM's block count)
  2. the task's preset (task.*, train.*, and model.* keys the model has — e.g. model.hidden)
  3. the model's preset, if it declares one
  4. `--set section.key=value` from the command line (strict: unknown keys are errors)

`resolve()` is pure: it reads presets and overrides and touches no model and no data. Sizing a model
to HRM (`--match params | flops`) is a separate, explicit step: `bench.matching.match`.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import re
import typing
from dataclasses import dataclass, field
from typing import Any

from models.registry import get_model_entry
from tasks.registry import OMITTED_AT_DEFAULT, PRESETS, RegistryError, added_later, get_task_entry

SECTIONS = ("model", "task", "train")
# The model baselines take their reference defaults from and are sized to (bench/matching.py).
REFERENCE_MODEL = "hrm"

# Upper bounds on counts that would otherwise make a run that never ends or cannot be held in memory.
TRAIN_LIMITS = {"steps": 10**9, "max_examples": 10**12, "batch_size": 2**20, "eval_batch_size": 2**20,
                "segments": 1024, "eval_segments": 1024, "test_time_points": 1024,
                "diagnostics_examples": 10**6, "threads": 1024, "stop_selector_steps": 10**6,
                "max_flops": 1e24}
# task.*_size fields count examples of one split (held in memory); task.augmentations multiplies them.
MAX_SPLIT_EXAMPLES = 10**7
MAX_AUGMENTATIONS = 10**5
# Model fields that are sizes or counts of layers/iterations: each must be >= 1 (eval_* ones: 0 = as trained).
SIZE_FIELD = re.compile(r"(hidden|heads|layers|cycles|loops|expansion|expand|multiple|size|width|updates|"
                        r"iter|steps)$")


class ConfigError(ValueError):
    """A bad name, key or value given by the user: the CLI prints it as one line, exit 2."""


@dataclass
class TrainConfig:
    steps: int = 1000                 # optimiser steps (the budget when train.budget=steps)
    max_examples: int = 0             # fresh training examples drawn (the budget when train.budget=examples)
    batch_size: int = 64
    optimizer: str = "adam_atan2"     # adam_atan2 (HRM) | adamw
    lr: float = 1e-3
    lr_warmup_steps: int = 100
    lr_schedule: str = "constant"     # constant (HRM) | cosine
    lr_min_ratio: float = 1.0         # cosine floor as a fraction of lr (1.0 = constant)
    beta1: float = 0.9
    beta2: float = 0.95
    weight_decay: float = 0.1
    puzzle_emb_lr: float = 1e-2       # SignSGD for puzzle-embedding tables
    puzzle_emb_weight_decay: float = 0.1
    grad_clip: float = 0.0            # 0 = off (the reference does not clip)
    loss: str = "stablemax"           # stablemax (HRM default) | softmax
    segments: int = 1                 # deep-supervision segments (HRM halt_max_steps)
    act: bool = False                 # learned halting (ACT) during training
    halt_exploration_prob: float = 0.1
    q_loss_weight: float = 0.5
    eval_segments: int = 0            # segments at test time; 0 = same as training
    eval_halting: str = "fixed"       # fixed (all segments, as the reference) | learned
    eval_every: int = 0               # optimiser steps between evaluations; 0 = only at the end
    eval_batch_size: int = 256
    ema: float = 0.0                  # EMA decay of weights (TRM: 0.999); evaluation uses the EMA copy
    progressive_alpha: float = added_later(0.0)   # progressive loss weight α (Bansal et al. 2022); 0 = plain
    # how an iterative model's own iteration count is used in training (docs/training.md):
    # fixed | random (k ~ U{iterations_min..m} each step) | best_of_k (loss after each of m steps, the best kept)
    iteration_rule: str = added_later("fixed")
    iterations_min: int = added_later(1)
    # what ends training (docs/training.md): steps | examples (max_examples fresh examples) | flops (max_flops)
    stop_selector_steps: int = added_later(0)   # > 0: train a stop selector this many steps after training
    # supervised (say whether the answer at t is right) | reinforce (reward: right at the stop − cost·t/m)
    stop_selector_objective: str = added_later("supervised")
    stop_selector_cost: float = added_later(0.1)
    budget: str = added_later("steps")
    max_flops: float = added_later(0.0)   # training FLOPs, as the suite's counter measures them
    sampler: str = added_later("uniform")   # uniform (every example shuffled) | groups (the reference's, bench/sampling.py)
    sampler_epochs: int = added_later(1)    # groups: epochs laid end to end before the last partial batch is dropped
    compile: bool = added_later(False)      # torch.compile the training segment forward (docs/speed.md)
    checkpoint_every: int = 0         # optimiser steps between checkpoints; 0 = every 10% of the run
    log_every: int = 10               # steps between training-curve points
    precision: str = "auto"           # auto (bf16 autocast on CUDA, fp32 on CPU) | fp32 | bf16
    # measurement depth (bench/analysis.py): test-time compute, fixed points, ACT
    diagnostics_examples: int = 256   # evaluation examples the diagnostics use; 0 = no diagnostics
    test_time_points: tuple[int, ...] = ()   # test-time compute curve points; () = 1,2,4,… ≤ 4× trained
    seed: int = 0
    # torch's CPU threads: the reduction order (so the bits) depends on it; default by measurement (docs/threads.md)
    threads: int = added_later(1)

    def validate(self) -> None:
        choices = {"optimizer": ("adam_atan2", "adamw"), "lr_schedule": ("constant", "cosine"),
                   "loss": ("stablemax", "softmax"), "eval_halting": ("fixed", "learned"),
                   "iteration_rule": ("fixed", "random", "best_of_k"), "budget": ("steps", "examples", "flops"),
                   "stop_selector_objective": ("supervised", "reinforce"),
                   "precision": ("auto", "fp32", "bf16"), "sampler": ("uniform", "groups")}
        for key, allowed in choices.items():
            if getattr(self, key) not in allowed:
                raise ConfigError(f"train.{key}={getattr(self, key)!r} is not one of: {', '.join(allowed)}")
        for item in dataclasses.fields(self):
            value = getattr(self, item.name)
            if isinstance(value, float) and not math.isfinite(value):
                raise ConfigError(f"train.{item.name} must be a finite number, got {value}")
        positive = ("steps", "batch_size", "segments", "eval_batch_size", "log_every", "threads")
        for key in positive:
            if getattr(self, key) < 1 and not (key == "steps" and self.budget != "steps"):
                raise ConfigError(f"train.{key} must be >= 1, got {getattr(self, key)}")
        if any(point < 1 for point in self.test_time_points):
            raise ConfigError(f"train.test_time_points must all be >= 1, got {list(self.test_time_points)}")
        if self.sampler_epochs < 1:
            raise ConfigError(f"train.sampler_epochs must be >= 1, got {self.sampler_epochs}")
        for key in ("diagnostics_examples", "max_examples", "max_flops", "stop_selector_steps", "eval_segments", "eval_every", "checkpoint_every", "lr_warmup_steps"):
            if getattr(self, key) < 0:
                raise ConfigError(f"train.{key} must be >= 0, got {getattr(self, key)}")
        for key, limit in TRAIN_LIMITS.items():
            values = getattr(self, key)
            for value in values if isinstance(values, tuple) else (values,):
                if value > limit:
                    raise ConfigError(f"train.{key}={value} is above the limit of {limit:,}")
        if not 0 <= self.seed < 2**63:
            raise ConfigError(f"train.seed must be in 0 .. 2**63-1, got {self.seed}")
        if not 0.0 <= self.halt_exploration_prob <= 1.0:
            raise ConfigError("train.halt_exploration_prob must be in [0, 1]")
        for key in ("ema", "beta1", "beta2"):
            if not 0.0 <= getattr(self, key) < 1.0:
                raise ConfigError(f"train.{key} must be in [0, 1), got {getattr(self, key)}")
        if not 0.0 <= self.lr_min_ratio <= 1.0:
            raise ConfigError(f"train.lr_min_ratio must be in [0, 1], got {self.lr_min_ratio}")
        if not 0.0 <= self.progressive_alpha <= 1.0:
            raise ConfigError(f"train.progressive_alpha must be in [0, 1], got {self.progressive_alpha}")
        if self.progressive_alpha > 0 and self.segments != 1:
            raise ConfigError("train.progressive_alpha > 0 needs train.segments=1 (it varies the model's own iterations)")
        if self.iteration_rule != "fixed":
            if self.segments != 1 or self.progressive_alpha > 0:
                raise ConfigError(f"train.iteration_rule={self.iteration_rule} needs train.segments=1 and "
                                  "train.progressive_alpha=0 (each varies the model's own iterations)")
        needs = {"examples": ("max_examples", self.max_examples), "flops": ("max_flops", self.max_flops)}
        if self.budget in needs and needs[self.budget][1] <= 0:
            raise ConfigError(f"train.budget={self.budget} needs train.{needs[self.budget][0]} > 0")
        for key, (name, value) in needs.items():
            if value > 0 and self.budget != key:
                raise ConfigError(f"train.{name} > 0 is a budget: set train.budget={key} with it")
        if self.stop_selector_steps > 0 and self.segments != 1:
            raise ConfigError("train.stop_selector_steps > 0 needs train.segments=1 (it stops the model's own iterations)")
        if not 0.0 <= self.stop_selector_cost <= 1.0:
            raise ConfigError(f"train.stop_selector_cost must be in [0, 1], got {self.stop_selector_cost}")
        if self.iterations_min < 1:
            raise ConfigError(f"train.iterations_min must be >= 1, got {self.iterations_min}")
        if self.lr <= 0 or self.puzzle_emb_lr < 0:
            raise ConfigError("train.lr must be > 0 and train.puzzle_emb_lr >= 0")
        for key in ("weight_decay", "puzzle_emb_weight_decay", "grad_clip", "q_loss_weight"):
            if getattr(self, key) < 0:
                raise ConfigError(f"train.{key} must be >= 0, got {getattr(self, key)}")

    @property
    def total_steps(self) -> int:
        """Optimiser steps the schedule is laid out over. examples: the steps that draw max_examples
        fresh examples when every row runs all its segments (with ACT rows halt earlier, draw more
        often, and the run ends before the schedule does); flops: train.steps until the trainer knows
        a step's cost (Trainer.planned_steps)."""
        if self.budget == "examples":
            return -(-self.max_examples * self.segments // self.batch_size)
        return self.steps


@dataclass
class RunConfig:
    model_name: str
    task_name: str
    preset: str
    model: Any
    task: Any
    train: TrainConfig
    device: str = "cpu"
    extra: dict[str, Any] = field(default_factory=dict)
    # the --set overrides it was resolved with: sizing resolves HRM with the same task.*/train.* ones
    # and leaves model.* sizes the user set alone. Not part of the run's identity (to_dict, hash).
    overrides: tuple[str, ...] = field(default=(), compare=False)

    def to_dict(self) -> dict[str, Any]:
        return {"model_name": self.model_name, "task_name": self.task_name, "preset": self.preset,
                "device": self.device, "model": dataclasses.asdict(self.model),
                "task": dataclasses.asdict(self.task), "train": dataclasses.asdict(self.train),
                **({"extra": self.extra} if self.extra else {})}

    def config_hash(self) -> str:
        """Identity of a run: everything that changes its numbers (not where it is written); fields
        `added_later` count only when they differ from their default."""
        identity = self.to_dict()
        for section in SECTIONS:
            config = getattr(self, section)
            for item in dataclasses.fields(config):
                if item.metadata.get(OMITTED_AT_DEFAULT) and getattr(config, item.name) == item.default:
                    del identity[section][item.name]
        payload = json.dumps(identity, sort_keys=True, default=str)
        return hashlib.sha256(payload.encode()).hexdigest()[:12]


def recorded_identity(config: dict[str, Any]) -> dict[str, Any]:
    """A recorded config (summary.json's "config") without the `added_later` fields at their
    default, as config_hash leaves them out: runs recorded before and after a field was added, with
    the same behaviour, compare equal."""
    config = json.loads(json.dumps(config, default=str))
    classes: dict[str, type] = {"train": TrainConfig}
    for section, lookup, name in (("model", get_model_entry, config.get("model_name")),
                                  ("task", get_task_entry, config.get("task_name"))):
        try:
            classes[section] = lookup(name).config
        except (RegistryError, TypeError):
            pass   # a plugin that is not installed here: its section is compared as recorded
    for section, config_class in classes.items():
        values = config.get(section)
        if not isinstance(values, dict):
            continue
        for item in dataclasses.fields(config_class):
            default = json.loads(json.dumps(item.default, default=str))
            if item.metadata.get(OMITTED_AT_DEFAULT) and item.name in values and values[item.name] == default:
                del values[item.name]
    return config


# --------------------------------------------------------------------------------------------
def _field_types(config_class: type) -> dict[str, Any]:
    return typing.get_type_hints(config_class)


def parse_value(text: str, kind: Any, key: str) -> Any:
    """Parse a --set value by the field's declared type; ill-typed values are ConfigErrors."""
    origin = typing.get_origin(kind)
    if origin is typing.Union or str(origin) == "<class 'types.UnionType'>":
        options = [a for a in typing.get_args(kind) if a is not type(None)]
        if text.lower() in ("none", "null", ""):
            return None
        kind = options[0]
        origin = typing.get_origin(kind)
    try:
        if kind is bool:
            lowered = text.strip().lower()
            if lowered in ("1", "true", "yes", "on"):
                return True
            if lowered in ("0", "false", "no", "off"):
                return False
            raise ValueError
        if kind is int:
            try:
                return int(text.strip())   # exact, however large (the range checks come later)
            except ValueError:
                number = float(text)       # 1e3 and 1000.0 are integers too
            if not number.is_integer():
                raise ValueError
            return int(number)
        if kind is float:
            return float(text)
        if kind is str:
            return text
        if origin in (list, tuple):
            (item_kind, *_) = typing.get_args(kind) or (str,)
            parts = [p for p in text.replace("[", "").replace("]", "").split(",") if p.strip()]
            values = [parse_value(p.strip(), item_kind, key) for p in parts]
            return tuple(values) if origin is tuple else values
    except ValueError:
        pass
    type_name = getattr(kind, "__name__", str(kind))
    raise ConfigError(f"--set {key}={text!r}: expected {type_name}")


def parse_overrides(pairs: list[str] | tuple[str, ...]) -> dict[str, str]:
    overrides: dict[str, str] = {}
    for pair in pairs:
        if "=" not in pair:
            raise ConfigError(f"--set {pair!r}: expected section.key=value (sections: {', '.join(SECTIONS)})")
        key, value = pair.split("=", 1)
        key = key.strip()
        if key.split(".", 1)[0] not in SECTIONS or "." not in key:
            raise ConfigError(f"--set {key!r}: keys are dotted by section: {', '.join(s + '.*' for s in SECTIONS)}")
        overrides[key] = value
    return overrides


def _apply(values: dict[str, dict[str, Any]], classes: dict[str, type], key: str, value: Any,
           strict: bool, from_text: bool) -> None:
    section, name = key.split(".", 1)
    types = _field_types(classes[section])
    if name not in types:
        if strict:
            valid = ", ".join(f"{section}.{n}" for n in types)
            raise ConfigError(f"unknown key {key!r}; valid keys: {valid}")
        return
    values[section][name] = parse_value(value, types[name], key) if from_text else value


def resolve(model_name: str, task_name: str, preset: str = "cpu", overrides: list[str] | tuple[str, ...] = (),
            seed: int | None = None, device: str = "cpu") -> RunConfig:
    """The run's configuration from presets and overrides (no model is built, no data is read)."""
    try:
        model_entry = get_model_entry(model_name)
        task_entry = get_task_entry(task_name)
    except RegistryError as error:
        raise ConfigError(str(error)) from None
    base = base_preset(preset)
    variants = sorted(name for name in model_entry.cls.presets if "@" not in name and name not in PRESETS)
    if base not in PRESETS or (preset != base and preset not in model_entry.cls.presets):
        raise ConfigError(f"unknown preset {preset!r} for {model_name}; choose from: "
                          f"{', '.join([*PRESETS, *variants])}")
    overrides = tuple(overrides)
    classes = {"model": model_entry.config, "task": task_entry.config, "train": TrainConfig}
    values: dict[str, dict[str, Any]] = {s: {} for s in SECTIONS}
    for key, value in task_entry.presets[base].items():
        _apply(values, classes, key, value, strict=not key.startswith("model."), from_text=False)
    for name in model_preset_chain(preset, task_name):
        for key, value in model_entry.cls.presets.get(name, {}).items():
            _apply(values, classes, key, value, strict=True, from_text=False)
    for key, value in parse_overrides(overrides).items():
        _apply(values, classes, key, value, strict=True, from_text=True)
    if seed is not None:
        values["train"]["seed"] = seed
    train = TrainConfig(**values["train"])
    train.validate()
    model_values = {**_reference_defaults(model_entry, task_name, preset, overrides, device, set(values["model"])),
                    **values["model"]}
    try:
        model_config = model_entry.config(**model_values)
        task_config = task_entry.config(**values["task"])
    except (TypeError, ValueError) as error:
        raise ConfigError(str(error)) from None
    check_model_numbers(model_config)
    check_task_sizes(task_config)
    return RunConfig(model_name, task_name, preset, model_config, task_config, train, device, overrides=overrides)


def base_preset(preset: str) -> str:
    """The task preset a model's variant preset builds on: `paper-mlp` → `paper`."""
    return preset.split("-", 1)[0]


def model_preset_chain(preset: str, task_name: str) -> list[str]:
    """The model presets applied, in order, for `preset` on a task: the base (`paper`), the base on
    this task (`paper@maze`: where the reference's command for that task differs), then the same two
    for a variant (`paper-mlp`, `paper-mlp@maze`)."""
    base = base_preset(preset)
    chain = [base, f"{base}@{task_name}"]
    return chain + ([preset, f"{preset}@{task_name}"] if preset != base else [])


def check_model_numbers(config: Any) -> None:
    """Every number of a model config is finite and not negative; sizes and counts (SIZE_FIELD) are >= 1."""
    for item in dataclasses.fields(config):
        value = getattr(config, item.name)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            continue
        if isinstance(value, float) and not math.isfinite(value):
            raise ConfigError(f"model.{item.name} must be a finite number, got {value}")
        if SIZE_FIELD.search(item.name) and not item.name.startswith("eval_"):
            if (value < 1) if isinstance(value, int) else (value <= 0):
                raise ConfigError(f"model.{item.name} must be {'>= 1' if isinstance(value, int) else '> 0'}, "
                                  f"got {value}")
        elif value < 0:
            raise ConfigError(f"model.{item.name} must be >= 0, got {value}")


def check_task_sizes(config: Any) -> None:
    """Example counts a split holds in memory stay below MAX_SPLIT_EXAMPLES (augmented copies included)."""
    copies = 1 + max(0, getattr(config, "augmentations", 0) or 0)
    if copies - 1 > MAX_AUGMENTATIONS:
        raise ConfigError(f"task.augmentations={copies - 1} is above the limit of {MAX_AUGMENTATIONS:,}")
    for item in dataclasses.fields(config):
        value = getattr(config, item.name)
        if item.name.endswith("_size") and isinstance(value, int) and not isinstance(value, bool):
            examples = value * (copies if item.name == "train_size" else 1)
            if examples > MAX_SPLIT_EXAMPLES:
                shown = f"{value:,}" + (f" × {copies:,} augmented copies" if examples != value else "")
                raise ConfigError(f"task.{item.name}={value}: {shown} examples is above the limit of "
                                  f"{MAX_SPLIT_EXAMPLES:,} per split (the data is held in memory)")


def check_device(run: RunConfig) -> None:
    """What the config allows but the run's device cannot do; checked before a run directory is made."""
    if getattr(run.model, "attention_backend", None) == "xformers":
        if run.device != "cuda":
            raise ConfigError(f"model.attention_backend=xformers needs CUDA (this run is on {run.device}); "
                              "use model.attention_backend=sdpa")
        import importlib.util

        if importlib.util.find_spec("xformers") is None:
            raise ConfigError("model.attention_backend=xformers needs the `cuda` extra (pip install '.[cuda]')")


def non_model_overrides(overrides) -> list[str]:
    """The task.* and train.* overrides: what HRM is resolved with when a baseline refers to it."""
    return [o for o in overrides if not o.strip().startswith("model.")]


def _reference_defaults(model_entry, task_name: str, preset: str, overrides, device: str,
                        explicit: set[str]) -> dict[str, Any]:
    """Values the model takes from HRM's resolved config, for fields no preset or --set gave."""
    rules = {k: rule for k, rule in model_entry.cls.reference_defaults.items() if k not in explicit}
    if not rules or model_entry.name == REFERENCE_MODEL:
        return {}
    reference = resolve(REFERENCE_MODEL, task_name, base_preset(preset), non_model_overrides(overrides), device=device)
    return {key: rule(reference.model) for key, rule in rules.items()}
