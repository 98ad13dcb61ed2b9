"""One run end to end: seed, build data and model, train, evaluate, measure, record.

`execute(run_config, out_dir)` is what `bench run`, `bench sweep` and the tests call.
"""
from __future__ import annotations

import logging
import random
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bench.config import ConfigError, RunConfig, check_device
from bench.analysis import run_diagnostics
from bench.distributed import World, current_world
from bench.measure import environment, model_flops_utilisation, peak_memory_bytes, reset_peak_memory
from bench.results import (CHECKPOINT, SUMMARY, ResultsError, atomic_write_json, ensure_writable,
                           find_resumable, new_run_id, read_summary)
from bench.stats import learning_plateau
from bench.stop_selector import evaluate_stops, train_selector
from bench.trainer import Diverged, Trainer
from models.protocol import iteration_count_field
from models.registry import create_model, get_model_entry, model_names
from tasks.protocol import TaskData, constant_answer_accuracy
from tasks.registry import create_task

log = logging.getLogger("recurrent_bench")

SCHEMA_VERSION = 1


class StopRequested(Exception):
    """Raised by a test hook to simulate a crash after a checkpoint."""


class RunInterrupted(Exception):
    """Ctrl-C during training. run_dir: the run left "running" with its checkpoint, to --resume; None
    when it was stopped before its first checkpoint (its folder is removed: there is nothing to resume)."""

    def __init__(self, run_dir: Path | None):
        super().__init__(f"interrupted: {run_dir}" if run_dir else "interrupted before the first checkpoint")
        self.run_dir = run_dir


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def resolve_device(name: str) -> str:
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("--device cuda requested but CUDA is not available (this torch build or machine has none)")
    if name not in ("cpu", "cuda"):
        raise ConfigError(f"unknown device {name!r}; choose from: auto, cpu, cuda")
    return name


def build(run: RunConfig):
    """Task, data splits and (seeded) model for a run; config errors become ConfigErrors."""
    try:
        task = create_task(run.task_name, **vars(run.task))
    except (TypeError, ValueError) as error:
        raise ConfigError(f"task config: {error}") from None
    seed_everything(run.train.seed)
    try:
        model = create_model(run.model_name, task.spec, **vars(run.model))
    except (TypeError, ValueError, ArithmeticError) as error:  # e.g. model.hidden=0 divides by zero
        raise ConfigError(f"model config: {error} (check the model.* values)") from None
    varied = ("train.progressive_alpha > 0" if run.train.progressive_alpha > 0 else
              f"train.iteration_rule={run.train.iteration_rule}" if run.train.iteration_rule != "fixed" else
              "train.stop_selector_steps > 0" if run.train.stop_selector_steps > 0 else None)
    key = (model.progressive_iterations_key if run.train.progressive_alpha > 0 else iteration_count_field(model))
    if varied and key is None:
        field = "progressive_iterations_key" if run.train.progressive_alpha > 0 else None
        having = [name for name in model_names()
                  if (getattr(get_model_entry(name).cls, field) if field else iteration_count_field(get_model_entry(name).cls))]
        if field:
            raise ConfigError(f"{varied} needs a model that continues one state iteration by iteration; "
                              f"{run.model_name!r} does not (models that do: {', '.join(having)})")
        raise ConfigError(f"{varied}: model {run.model_name!r} has no iteration count to vary "
                          f"(models with one: {', '.join(having)})")
    if varied and run.train.iterations_min > getattr(model.config, key):
        raise ConfigError(f"train.iterations_min={run.train.iterations_min} is above the model's "
                          f"{key}={getattr(model.config, key)}")
    return task, model


def _strip(score: dict[str, Any]) -> dict[str, Any]:
    """Scores without per-example lists (those are large; summaries stay compact)."""
    return {k: v for k, v in score.items() if not k.startswith("per_example")}


def evaluate_splits(trainer: Trainer, task, splits: dict[str, TaskData], run_dir: Path | None = None,
                    train_labels: torch.Tensor | None = None) -> dict[str, dict[str, Any]]:
    metrics = {}
    for name, data in splits.items():
        result = trainer.evaluate(data)
        score = task.score(data, result.predictions, confidences=result.confidences)
        if train_labels is not None:
            score["constant_answer"] = constant_answer_accuracy(train_labels, data.labels, task.spec.ignore_label)
        files = task.write_artifacts(run_dir, name, data, result.predictions, result.confidences) if run_dir else []
        if files:
            score["artifacts"] = files
        score["mean_segments_used"] = result.segments_used.float().mean().item()
        score["eval_seconds"] = result.seconds
        score["examples_per_second"] = len(data) / result.seconds if result.seconds > 0 else None
        metrics[name] = _strip(score)
    return metrics


def extrapolation_curves(task, metrics: dict[str, dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """summary["curves"][axis] = [{x, split, exact_accuracy, token_accuracy}] sorted by x."""
    curves: dict[str, list[dict[str, Any]]] = {}
    for split, score in metrics.items():
        point = task.curve_point(split)
        if point is None:
            continue
        axis, x = point
        curves.setdefault(axis, []).append({"x": x, "split": split, "exact_accuracy": score["exact_accuracy"],
                                            "token_accuracy": score["token_accuracy"]})
    for points in curves.values():
        points.sort(key=lambda p: p["x"])
    return curves


def curve_reach(curves: dict[str, list[dict[str, Any]]], thresholds: tuple[float, ...] = (0.99, 0.5)
                ) -> dict[str, dict[str, float | None]]:
    """summary["curve_reach"][axis]["exact_T"] = the largest x up to which *every* point has exact
    accuracy >= T (None if the first point already falls short): "extrapolates up to length x"."""
    reach: dict[str, dict[str, float | None]] = {}
    for axis, points in curves.items():
        reach[axis] = {}
        for threshold in thresholds:
            reached = None
            for point in points:
                if point["exact_accuracy"] < threshold:
                    break
                reached = point["x"]
            reach[axis][f"exact_{threshold:g}"] = reached
    return reach


def _on_main(world: World, function):
    """Run `function` on rank 0 only; every rank gets its result, or raises its ResultsError."""
    result = None
    if world.is_main:
        try:
            result = function()
        except ResultsError as error:
            result = error
    result = world.broadcast_object(result)
    if isinstance(result, ResultsError):
        raise result
    return result


def _find_run_to_resume(out: Path, resume: str | None,
                        config_hash: str) -> tuple[Path, str | None, list[str]] | None:
    """(run directory, its started_at, the hosts that trained it so far) for --resume, None for a
    fresh run; ResultsError when resuming is impossible. Checked before any data is built, so such
    mistakes fail fast."""
    ensure_writable(out)
    if resume is not None:
        run_dir = find_resumable(out, config_hash) if resume == "auto" else Path(resume)
        if run_dir is None:
            raise ResultsError(f"--resume: no unfinished run with this configuration (hash {config_hash}) under {out}")
        summary_path = run_dir / SUMMARY
        if not summary_path.exists():
            raise ResultsError(f"--resume {run_dir}: no {SUMMARY} there")
        try:
            previous = read_summary(summary_path)
        except ValueError as error:
            raise ResultsError(f"--resume {run_dir}: {error}") from None
        if previous.get("config_hash") != config_hash:
            raise ResultsError(f"--resume {run_dir}: its configuration (hash {previous.get('config_hash')}) "
                               f"differs from this one ({config_hash}); give the same --preset, --set and --seed")
        if previous.get("status") != "running":
            raise ResultsError(f"--resume {run_dir}: that run is already {previous.get('status')}")
        if not (run_dir / CHECKPOINT).exists():
            raise ResultsError(f"--resume {run_dir}: no checkpoint to resume from")
        trained_on = previous.get("trained_on")
        return run_dir, previous.get("started_at"), trained_on if isinstance(trained_on, list) else []
    return None


def _claim_new_run_dir(run: RunConfig, out: Path, config_hash: str) -> Path:
    while True:  # claim the directory: a concurrent run that drew the same id gets another one
        run_id = new_run_id(run.task_name, run.model_name, run.preset, run.train.seed, config_hash)
        try:
            (out / run_id).mkdir()
        except FileExistsError:
            continue
        return out / run_id


def execute(run: RunConfig, out: Path | str = "results", resume: str | None = None, progress: bool = True,
            stop_after_step: int | None = None, world: World | None = None) -> dict[str, Any]:
    """Train and evaluate one run, writing results/<run_id>/summary.json atomically.

    resume: None (fresh run), "auto" (newest unfinished run with the same config in `out`), or a
    run directory. stop_after_step: test hook that raises StopRequested after that step's checkpoint.
    world: the data-parallel ranks (default: from torchrun's environment, else one process); only
    rank 0 writes. Runs with `train.threads` torch threads (part of the config and its hash: the
    reduction order, so the bits, depend on it) and gives the caller back its own thread count.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(run.train.threads)
    try:
        return _execute(run, Path(out), resume, progress, stop_after_step, world)
    finally:
        torch.set_num_threads(threads)


def _execute(run: RunConfig, out: Path, resume: str | None, progress: bool, stop_after_step: int | None,
             world: World | None) -> dict[str, Any]:
    check_device(run)   # before any folder is made: e.g. xformers attention on a CPU run
    world = world or current_world(run.device)
    config_hash = run.config_hash()
    # rank 0 checks --out and --resume and picks the run directory; every rank gets it, or the same error
    resuming = _on_main(world, lambda: _find_run_to_resume(out, resume, config_hash))
    log.info("building %s (seed %d) and the %s data…", run.model_name, run.train.seed, run.task_name)
    task, model = build(run)
    train_data = task.build("train")
    eval_data = {name: task.build(name) for name in task.eval_splits()}
    trainer = Trainer(model, task.spec, run.train, run.device, progress=progress, world=world)
    reset_peak_memory(run.device)   # measurement depth: this run's peak only
    if resuming is None:  # claimed only now: a config or data error leaves no empty run folder behind
        run_dir = _on_main(world, lambda: _claim_new_run_dir(run, out, config_hash))
        started_at, trained_on = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), []
    else:
        run_dir, started_at, trained_on = resuming
        try:
            trainer.load_checkpoint(run_dir / CHECKPOINT, train_data, run.train.seed)
        except Exception as error:  # truncated or foreign file: safetensors/torch raise many kinds
            raise ResultsError(f"--resume {run_dir}: unreadable checkpoint ({type(error).__name__}: "
                               f"{str(error).splitlines()[0] if str(error) else 'no detail'})") from None
    run_id = run_dir.name
    # read once, at the start: the code and host that train this part. Every host that trains part of
    # a resumed run is listed, since kernels differ between hosts (docs/threads.md)
    run_environment = environment(run.device)
    here = run_environment["host_id"]
    trained_on = trained_on + [here] if here not in trained_on else trained_on
    write = atomic_write_json if world.is_main else (lambda path, payload: None)

    summary: dict[str, Any] = {
        "schema": SCHEMA_VERSION, "run_id": run_id, "status": "running", "config_hash": config_hash,
        "model": run.model_name, "task": run.task_name, "preset": run.preset, "seed": run.train.seed,
        "device": run.device, "processes": world.size, "started_at": started_at, "trained_on": trained_on,
        "config": run.to_dict(),
        **model.parameter_counts(), "match": run.extra.get("match"),
        "data": {"train_examples": len(train_data), **{f"{k}_examples": len(v) for k, v in eval_data.items()}},
    }
    summary_path = run_dir / SUMMARY
    write(summary_path, summary)

    eval_every = run.train.eval_every
    first_split = next(iter(eval_data))

    def on_step(trainer: Trainer, metrics: dict[str, float]) -> None:
        finished = trainer.budget_spent()   # the last step is evaluated and recorded by what follows
        every = run.train.checkpoint_every or max(1, trainer.planned_steps() // 10)
        if eval_every and trainer.step % eval_every == 0 and not finished:
            result = trainer.evaluate(eval_data[first_split])
            score = task.score(eval_data[first_split], result.predictions, confidences=result.confidences)
            trainer.evals.append({"step": trainer.step, "split": first_split,
                                  "exact_accuracy": score["exact_accuracy"],
                                  "token_accuracy": score["token_accuracy"]})
        if trainer.step % every == 0 and not finished:
            trainer.save_checkpoint(run_dir / CHECKPOINT)
        if stop_after_step is not None and trainer.step >= stop_after_step:
            raise StopRequested(trainer.step)

    try:
        trainer.fit(train_data, seed=run.train.seed, on_step=on_step)
    except Diverged as diverged:
        summary.update(status="diverged", diverged_step=diverged.step, diverged_value=str(diverged.value),
                       finished_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                       train={"steps": trainer.step, "curve": trainer.curve})
        write(summary_path, summary)
        if world.is_main:   # a diverged run is final: nothing to resume
            (run_dir / CHECKPOINT).unlink(missing_ok=True)
        return summary
    except KeyboardInterrupt:
        # the summary stays "running" and the last checkpoint (written whole or not at all) stays: --resume
        if not (run_dir / CHECKPOINT).exists():
            if world.is_main and resuming is None:
                summary_path.unlink(missing_ok=True)
                try:
                    run_dir.rmdir()
                except OSError:
                    pass
            raise RunInterrupted(None) from None
        raise RunInterrupted(run_dir) from None

    metrics = evaluate_splits(trainer, task, eval_data, run_dir, train_labels=train_data.labels)
    curves = extrapolation_curves(task, metrics)
    inference_flops = trainer.inference_flops_per_example(eval_data[first_split])
    segments_eval = run.train.eval_segments or run.train.segments
    # --- measurement depth (bench/analysis.py): memory is read before the diagnostic passes, whose
    # batches differ from training's; MFU against the device's peak (bench/measure.py).
    memory = peak_memory_bytes(run.device)
    diagnostics = run_diagnostics(trainer, task, eval_data[first_split], splits=eval_data)
    stop_selection = None
    if run.train.stop_selector_steps > 0:   # the network is frozen from here: a head picks each example's stop
        log.info("training the stop selector (%d steps)…", run.train.stop_selector_steps)
        selector, selector_training = train_selector(trainer, train_data, run.train.stop_selector_steps,
                                                     run.train.seed)
        stop_selection = {name: evaluate_stops(trainer, selector, data, run.train.eval_batch_size)
                          for name, data in eval_data.items()}
    throughput = metrics[first_split]["examples_per_second"]
    mfu = model_flops_utilisation(run.device, trainer.flops_total / max(trainer.train_seconds, 1e-9)
                                  if trainer.flops_total else None,
                                  inference_flops * throughput if throughput else None)
    # --- end measurement depth
    summary.update(
        status="complete",
        finished_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        metrics=metrics,
        curves=curves,
        curve_reach=curve_reach(curves),
        exact_accuracy=metrics[first_split]["exact_accuracy"],
        token_accuracy=metrics[first_split]["token_accuracy"],
        train={"steps": trainer.step, "examples": trainer.examples, "batch_size": run.train.batch_size,
               "seconds": trainer.train_seconds, "flops_per_step": trainer.flops_per_step,
               "flops_total": trainer.flops_total,
               "flops_per_second": trainer.flops_total / max(trainer.train_seconds, 1e-9),
               "final_loss": trainer.curve[-1]["loss"] if trainer.curve else None,
               "plateau": learning_plateau(trainer.curve),
               "curve": trainer.curve, "evals": trainer.evals},
        inference={"flops_per_example": inference_flops, "segments": segments_eval,
                   "halting": run.train.eval_halting,
                   "examples_per_second": metrics[first_split]["examples_per_second"]},
        memory=memory,
        mfu=mfu,
        **({"diagnostics": diagnostics} if diagnostics is not None else {}),
        **({"stop_selector": stop_selection, "stop_selector_training": selector_training}
           if stop_selection is not None else {}),
        environment=run_environment,
    )
    write(summary_path, summary)
    if world.is_main:
        (run_dir / CHECKPOINT).unlink(missing_ok=True)
    return summary
