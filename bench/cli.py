"""`python -m bench …` — the click command line.

Every user mistake (unknown name, bad --set key or value, unwritable --out, bad data file) ends as
one line `error: …` on stderr and exit code 2, never a traceback.
"""
from __future__ import annotations

import json
import logging
import os
import sys
import textwrap
import time
from pathlib import Path

import click

from bench.config import ConfigError, resolve
from bench.results import ResultsError
from tasks.files import DataError
from tasks.registry import PRESETS

PRESET_HELP = {
    "smoke": "seconds; for tests",
    "quick": "the cpu preset at a shorter budget: a first run in ≤ 3 min (default of bench run; still learning)",
    "cpu": "the CPU study's: learning finished where a CPU budget allows; most runs ≤ 10 min alone on "
           "2 cores, maze's slowest ≈ 15, the DEQ's longer (docs/presets.md; default of sweep, info, data)",
    "paper": "the published configuration; for GPUs",
}
USER_ERRORS = (ConfigError, ResultsError, DataError)
PROJECT_PACKAGES = ("bench", "models", "tasks")


# OpenMP's idle worker threads sleep instead of spinning (docs/threads.md: spinning threads halve the
# speed of a 2-thread run when another process holds a core). OpenMP reads this once, when torch
# loads, so it is set here, before anything imports torch; a value the user set wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
log = logging.getLogger("recurrent_bench")


class _StderrHandler(logging.Handler):
    """Status lines on the stderr click has now (tests swap it per invocation)."""

    def emit(self, record: logging.LogRecord) -> None:
        click.echo(self.format(record), err=True)


def _stderr_is_a_terminal() -> bool:
    return sys.stderr.isatty()


def _show_status(quiet: bool) -> None:
    """Say what the run is doing before its progress bar (sizing, building, generating data), on a
    terminal: piped or logged stderr keeps the contract of one `error:` line for bad input."""
    if not any(isinstance(handler, _StderrHandler) for handler in log.handlers):
        log.addHandler(_StderrHandler())
        log.propagate = False
    log.setLevel(logging.WARNING if quiet or not _stderr_is_a_terminal() else logging.INFO)


class UserError(click.ClickException):
    exit_code = 2


class Interrupted(Exception):
    """Ctrl-C: main() prints the message (how to resume, when there is something to resume) and exits 130."""


def _common_run_options(default_preset: str):
    return lambda function: _with_run_options(function, default_preset)


def _with_run_options(function, default_preset: str):
    function = click.option("--match", default="params", show_default=True,
                            help="size the model to HRM for this task/preset: params | flops | none")(function)
    function = click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
                            help="override a config key, dotted by section: model.*, task.*, train.*")(function)
    function = click.option("--preset", default=default_preset, show_default=True,
                            help="smoke | quick | cpu | paper (trm also: paper-mlp); `bench list` says what each is")(function)
    function = click.option("--task", "task_name", required=True, help="task name (see `bench list`)")(function)
    function = click.option("--model", "model_name", required=True, help="model name (see `bench list`)")(function)
    return function


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 120})
def cli() -> None:
    """recurrent-bench: does recurrence buy reasoning, or is it depth, data and the outer loop?"""


@cli.command()
@_common_run_options("quick")
@click.option("--seed", default=0, show_default=True, type=int, help="training seed (init, data order)")
@click.option("--device", default="auto", show_default=True, help="auto | cpu | cuda")
@click.option("--out", default="results", show_default=True, type=click.Path(file_okay=False), help="results directory")
@click.option("--resume", is_flag=False, flag_value="auto", default=None, metavar="[RUN_DIR]",
              help="continue an interrupted run from its last checkpoint (newest matching run, or RUN_DIR)")
@click.option("--seeds", default=1, show_default=True, type=click.IntRange(min=1),
              help="run N seeds one after another: --seed, --seed+1, … (the report averages them)")
@click.option("--quiet", is_flag=True, help="no progress bar")
@click.option("--threads", type=click.IntRange(min=1), default=None,
              help="torch CPU threads, the same as --set train.threads=N (default 1: docs/threads.md)")
def run(model_name, task_name, preset, overrides, match, seed, device, out, resume, seeds, quiet, threads):
    """Train and evaluate MODEL on TASK; record the run.

    Writes results/<run_id>/summary.json. The run checkpoints every train.checkpoint_every optimiser steps (0, the default: every 10% of the
    run) to results/<run_id>/checkpoint.safetensors. An interrupted run (Ctrl-C, kill, power loss)
    keeps its summary at "running" and its last checkpoint: the same command with --resume continues
    it and reaches the numbers of an uninterrupted run."""
    if seeds > 1 and resume is not None:
        raise ConfigError("--resume continues one run; use it without --seeds")
    overrides = _with_threads(overrides, threads)
    _show_status(quiet)
    from bench.distributed import current_world, shutdown
    from bench.matching import match as sized
    from bench.runner import RunInterrupted, execute, resolve_device

    diverged = False
    # under torchrun: one rank of a data-parallel run (bench/distributed.py); only rank 0 reports
    world = current_world(resolve_device(device))
    try:
        for run_seed in range(seed, seed + seeds):
            config = sized(resolve(model_name, task_name, preset, overrides, seed=run_seed,
                                   device=resolve_device(device)), match)
            try:
                summary = execute(config, out, resume=resume, progress=not quiet, world=world)
            except RunInterrupted as stopped:
                if stopped.run_dir is None:
                    raise Interrupted("interrupted before the first checkpoint; nothing to resume") from None
                raise Interrupted(f"interrupted; resume with: {_resume_command(run_seed, stopped.run_dir)}") from None
            if not world.is_main:
                continue
            if summary["status"] == "diverged":
                click.echo(f"run {summary['run_id']} diverged at step {summary['diverged_step']}", err=True)
                diverged = True
                continue
            _print_summary(summary, Path(out))
    finally:
        shutdown()
    if diverged:
        sys.exit(3)


def _with_threads(overrides: tuple[str, ...], threads: int | None) -> tuple[str, ...]:
    """--threads N is train.threads=N, given last so that it wins over a --set of the same key."""
    return tuple(overrides) + ((f"train.threads={threads}",) if threads is not None else ())


def _resume_command(run_seed: int, run_dir: Path) -> str:
    """This command line (as main() received it) for one seed, with --resume RUN_DIR."""
    import shlex

    context = click.get_current_context()
    argv = list((context.find_root().obj or {}).get("argv") or sys.argv[1:])
    kept, skip = [], False
    for index, arg in enumerate(argv):
        if skip:
            skip = False
            continue
        name = arg.split("=", 1)[0]
        if name in ("--seed", "--seeds", "--resume"):
            has_value = "=" in arg or name != "--resume" or (index + 1 < len(argv) and not argv[index + 1].startswith("-"))
            skip = has_value and "=" not in arg
            continue
        kept.append(arg)
    return shlex.join(["python", "-m", "bench", *kept, "--seed", str(run_seed), "--resume", str(run_dir)])


def _print_summary(summary: dict, out: Path) -> None:
    from bench.stats import PLATEAU_ABSOLUTE_TOLERANCE, PLATEAU_FRACTION, PLATEAU_TOLERANCE

    train, inference = summary["train"], summary["inference"]
    click.echo(f"run        {summary['run_id']}")
    click.echo(f"params     {summary['params']:,} (+{summary['puzzle_emb_params']:,} puzzle-embedding)")
    if (summary.get("match") or {}).get("target") or (summary.get("match") or {}).get("skipped"):
        click.echo(f"match      {_describe_match(summary['match'])}")
    for split, metrics in summary["metrics"].items():
        constant = metrics.get("constant_answer")
        floor = (f"   constant answer: exact {constant['exact_accuracy']:.4f}  token {constant['token_accuracy']:.4f}"
                 if constant else "")
        click.echo(f"{split:<10} exact {metrics['exact_accuracy']:.4f}  token {metrics['token_accuracy']:.4f}"
                   f"  segments {metrics['mean_segments_used']:.2f}{floor}")
    for axis, points in summary.get("curves", {}).items():
        click.echo(f"curve      exact accuracy by {axis}: "
                   + ", ".join(f"{p['x']:g} → {p['exact_accuracy']:.2f}" for p in points)
                   + f" ({_describe_reach(axis, summary['curve_reach'][axis])})")
    click.echo(f"train      {train['steps']} steps, {train['seconds']:.1f} s, {train['flops_total']:.3e} FLOPs "
               f"({train['flops_per_second'] / 1e9:.1f} GFLOP/s)")
    plateau = train.get("plateau")
    if plateau is not None:
        verdict = {"flat": "finished learning", "falling": "still learning",
                   "rising": "the loss rose at the end (unstable)"}[plateau["trend"]]
        error = plateau.get("drop_standard_error")
        error = f" ± {error:.4f}" if error is not None else ""
        click.echo(f"learning   training loss fell {plateau['relative_drop']:.1%} ({plateau['absolute_drop']:.4f}{error} nats) "
                   f"over the last {PLATEAU_FRACTION:.0%} of steps: {verdict} (tolerance {PLATEAU_TOLERANCE:.0%} "
                   f"or {PLATEAU_ABSOLUTE_TOLERANCE} nats)")
    click.echo(f"inference  {inference['flops_per_example']:.3e} FLOPs/example, "
               f"{inference['examples_per_second']:.1f} examples/s")
    click.echo(f"written    {out / summary['run_id'] / 'summary.json'}")
    click.echo(_legend(summary["config"]["train"]))


def _describe_reach(axis: str, reach: dict) -> str:
    """"≥ 99% up to length 24; never ≥ 50%" from curve_reach (every point up to x reaches the level)."""
    parts = []
    for key, x in reach.items():
        level = f"{float(key.split('_')[1]):.0%}"
        parts.append(f"never ≥ {level}" if x is None else f"≥ {level} up to {axis} {x:g}")
    return "; ".join(parts)


def _legend(train: dict) -> str:
    trained = train["segments"]
    halting = "the learned halting may stop earlier" if train.get("eval_halting") == "learned" else "all are run"
    at_test = train.get("eval_segments") or trained
    return textwrap.fill(
        "exact: share of examples whose every output token is right (the headline number). token: share "
        "of supervised tokens right. constant answer: the most frequent training label everywhere, what a "
        "model that ignores its input scores (the floor to beat). segments: outer refinement passes per "
        f"example at test time, each a full forward pass that refines the last answer (trained with "
        f"{trained}, tested with up to {at_test}; {halting}). curve: exact accuracy on the splits of "
        "growing size or difficulty.", width=100)


def _describe_match(match: dict) -> str:
    if "skipped" in match:
        return f"{match['mode']} skipped: {match['skipped']}"
    return (f"{match['mode']} → {match['reference']}: target {match['target']:,}, achieved {match['achieved']:,} "
            f"({match['relative_error']:+.2%})")


# ---- bench sweep (bench/sweep.py) ------------------------------------------------------------
@cli.command()
@click.option("--models", required=True, help="comma-separated model names, or all")
@click.option("--tasks", required=True, help="comma-separated task names, or all")
@click.option("--seeds", default=1, show_default=True, type=int, help="run seeds 0..N-1")
@click.option("--preset", default="cpu", show_default=True, help="smoke | quick | cpu | paper (trm also: paper-mlp)")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help="override for every run")
@click.option("--out", default="results", show_default=True, type=click.Path(file_okay=False), help="results directory")
@click.option("--address", default=None, help="Ray cluster to join (default: start a local one)")
@click.option("--backend", default="auto", show_default=True, help="auto (Ray if installed) | ray | sequential")
@click.option("--match", default="params", show_default=True,
              help="size each model to HRM for its task/preset: params | flops | none")
@click.option("--retries", default=2, show_default=True, type=int, help="extra attempts for a run that fails")
@click.option("--cpus-per-run", default=1.0, show_default=True, type=float, help="CPUs each Ray task holds")
@click.option("--gpus-per-run", default=None, type=float, help="GPUs each Ray task holds [1 if CUDA is available]")
@click.option("--threads", type=click.IntRange(min=1), default=None,
              help="torch CPU threads per run, the same as --set train.threads=N (default 1)")
def sweep(models, tasks, seeds, preset, overrides, out, address, backend, match, retries, cpus_per_run, gpus_per_run,
          threads):
    """Run every MODEL × TASK × seed, skipping finished runs.

    Runs on Ray when it is installed, else one after another."""
    from bench.sweep import sweep as run_sweep
    from models.registry import model_names
    from tasks.registry import task_names

    if cpus_per_run <= 0 or (gpus_per_run is not None and gpus_per_run < 0):
        raise ConfigError("--cpus-per-run must be > 0 and --gpus-per-run >= 0")
    outcomes = run_sweep(_names(models, model_names(), "model"), _names(tasks, task_names(), "task"), seeds, preset, out, _with_threads(overrides, threads), address=address,
                         backend=backend, retries=retries, cpus_per_run=cpus_per_run, gpus_per_run=gpus_per_run,
                         say=click.echo, match=match)
    failed = [o for o in outcomes if o.status == "failed"]
    counts = {status: sum(o.status == status for o in outcomes) for status in ("complete", "diverged", "skipped", "failed")}
    click.echo("done     " + ", ".join(f"{n} {status}" for status, n in counts.items()))
    if failed:
        sys.exit(1)


@cli.command(name="list")
def list_command():
    """Models, tasks and presets, one line each (plugins included)."""
    from models.registry import MODELS
    from tasks.registry import TASKS

    for registry in (MODELS, TASKS):
        entries = registry.catalogue()
        for problem in registry.problems() if registry.loaded else []:
            click.echo(f"warning: {problem}", err=True)
        click.echo(f"{registry.kind}s:")
        for name, description in entries:
            click.echo(f"  {name:<14} {description}")
    click.echo("presets:")
    for name in PRESETS:
        click.echo(f"  {name:<14} {PRESET_HELP[name]}")


@cli.command()
@_common_run_options("cpu")
@click.option("--json", "as_json", is_flag=True, help="print one JSON object")
def info(model_name, task_name, preset, overrides, match, as_json):
    """Params and FLOPs of the sized model; no data, no training.

    Resolves and sizes the config and builds the model on the meta device (shapes only), so this is
    quick at any preset: params, FLOPs, shapes. The answer is kept in the cache folder, keyed by the
    arguments and the suite's source, so asking again does not even import torch."""
    from bench import memo
    from models.registry import MODELS
    from tasks.registry import TASKS

    question = {"command": "info", "model": model_name, "task": task_name, "preset": preset,
                "overrides": list(overrides), "match": match}
    built_in = MODELS.built_in(model_name) and TASKS.built_in(task_name)
    answer = memo.recall(question) if built_in else None
    if answer is None:
        answer = _info_answer(model_name, task_name, preset, overrides, match)
        if built_in:
            memo.remember(question, answer)
    click.echo(json.dumps(answer["payload"], default=str) if as_json else answer["text"])


def _info_answer(model_name, task_name, preset, overrides, match) -> dict:
    """`bench info`'s JSON payload and its text."""
    import dataclasses

    from bench.matching import build, inference_flops, match as sized, sizing_spec

    config = sized(resolve(model_name, task_name, preset, overrides), match)
    spec = sizing_spec(config)
    try:
        model = build(model_name, config.model, spec, "meta")
    except (TypeError, ValueError, ArithmeticError) as error:
        raise ConfigError(f"model config: {error} (check the model.* values)") from None
    segments = config.train.eval_segments or config.train.segments
    counts = model.parameter_counts()
    if not spec.puzzle_ids_known:
        counts["puzzle_emb_params"] = None
    payload = {"model": model_name, "task": task_name, "preset": preset, **counts,
               "match": config.extra.get("match"),
               "flops_per_example": inference_flops(model, spec, segments, "meta"),
               "segments": segments, "seq_len": spec.seq_len, "vocab_size": spec.vocab_size,
               "num_puzzle_ids": spec.num_puzzle_ids if spec.puzzle_ids_known else None,
               "config_hash": config.config_hash(), "config": config.to_dict()}
    lines = [f"{model_name} on {task_name} ({preset})", f"  params            {payload['params']:,}"]
    if payload["puzzle_emb_params"] is None:
        lines.append("  puzzle-emb params counted once the data is built (the number of puzzle ids depends on it)")
    else:
        lines.append(f"  puzzle-emb params {payload['puzzle_emb_params']:,}")
    if (payload["match"] or {}).get("target") or (payload["match"] or {}).get("skipped"):
        lines.append(f"  match             {_describe_match(payload['match'])}")
    lines.append(f"  FLOPs/example     {payload['flops_per_example']:,} ({segments} segment(s), every iteration "
                 "of the model's budget)")
    lines.append(f"  sequence length   {payload['seq_len']}, vocab {payload['vocab_size']}")
    for section in ("model", "task", "train"):
        lines.append(f"  {section}: " + ", ".join(f"{k}={v}" for k, v in
                                                   dataclasses.asdict(getattr(config, section)).items()))
    return {"payload": json.loads(json.dumps(payload, default=str)), "text": "\n".join(lines)}


@cli.command()
@click.option("--task", "task_name", required=True, help="task name (see `bench list`)")
@click.option("--preset", default="cpu", show_default=True)
@click.option("--split", default="train", show_default=True, help="train or an evaluation split")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help="task.* overrides")
@click.option("--stats", is_flag=True, help="print dataset statistics")
@click.option("--show", default=0, type=int, help="render N examples")
@click.option("--json", "as_json", is_flag=True, help="print the statistics as one JSON object")
def data(task_name, preset, split, overrides, stats, show, as_json):
    """Build or load a task's dataset; statistics or examples.

    Data comes from the cache (RECURRENT_BENCH_CACHE) when this config built it before."""
    from tasks.registry import create_task

    if show < 0:
        raise ConfigError("--show must be >= 0")
    config = resolve("transformer", task_name, preset, [o for o in overrides])
    try:
        task = create_task(task_name, **vars(config.task))
    except (TypeError, ValueError) as error:
        raise ConfigError(f"task config: {error}") from None
    valid = ["train", *task.eval_splits()]
    if split not in valid:
        raise ConfigError(f"unknown split {split!r}; choose from: {', '.join(valid)}")
    started = time.perf_counter()
    dataset = task.build(split)
    seconds = time.perf_counter() - started
    figures = {"task": task_name, "split": split, **task.stats(dataset), "seconds": seconds}
    if as_json:
        click.echo(json.dumps(figures, default=float))
    elif stats or not show:
        for key, value in figures.items():
            click.echo(f"{key:<22} {value}")
    legend = getattr(task, "legend", "")
    if show and legend:
        click.echo(legend)
        click.echo("")
    for index in range(min(show, len(dataset))):
        click.echo(task.render(dataset, index))
        click.echo("")


@cli.command()
@click.option("--results", "results_dir", default="results", show_default=True, type=click.Path())
@click.option("--out", default="reports", show_default=True, type=click.Path(file_okay=False))
@click.option("--task", "tasks", multiple=True, metavar="TASK", help="only these tasks (repeatable)")
@click.option("--model", "models", multiple=True, metavar="MODEL", help="only these models (repeatable)")
@click.option("--notes", type=click.Path(dir_okay=False), default=None,
              help="a markdown file of study notes to put under the title (paragraphs and '- ' lists)")
def report(results_dir, out, tasks, models, notes):
    """Summarise the runs under --results as a report.

    Writes index.md, index.html and figures/ under --out."""
    from bench.report import check_filters, write_report
    from tasks.files import read_text

    notes_text = read_text(notes, "--notes file") if notes else ""
    check_filters(Path(results_dir), tasks, models)
    path, warnings = write_report(Path(results_dir), Path(out), tasks=tasks, models=models, notes=notes_text)
    for warning in warnings:
        click.echo(f"warning: {warning}", err=True)
    click.echo(f"written {path} and {path.with_suffix('.html')}")


@cli.command()
@click.argument("reference", type=click.Path())
@click.argument("candidate", type=click.Path())
@click.option("--task", "tasks", multiple=True, metavar="TASK", help="only these tasks (repeatable)")
@click.option("--model", "models", multiple=True, metavar="MODEL", help="only these models (repeatable)")
def compare(reference, candidate, tasks, models):
    """Does CANDIDATE (a rerun) reproduce REFERENCE?

    REFERENCE is e.g. results/cpu-study. Exact accuracy per variant, with Welch or prediction
    intervals; a report, exit 0 (see bench/compare.py). Unreadable summaries are skipped with a warning."""
    from bench.compare import compare_trees, render

    warnings: list[str] = []
    comparisons, only_reference, only_candidate = compare_trees(Path(reference), Path(candidate), tasks, models,
                                                                warnings=warnings)
    for warning in warnings:
        click.echo(f"warning: {warning}", err=True)
    if not comparisons:
        raise ResultsError(f"no variant has finished runs in both {reference} and {candidate}")
    for line in render(comparisons, only_reference, only_candidate):
        click.echo(line)


def _names(text: str, known: list[str], kind: str) -> list[str]:
    if text == "all":
        return known
    names = [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in known]
    if unknown or not names:
        raise ConfigError(f"unknown {kind} {', '.join(unknown) or text!r}; choose from: {', '.join(known)}")
    return names


@cli.command()
@click.option("--models", default="all", show_default=True, help="comma-separated model names")
@click.option("--tasks", default="all", show_default=True, help="comma-separated task names")
@click.option("--update-floors", is_flag=True, help="measure and store new floors (bench/check_floors.json)")
def check(models, tasks, update_floors):
    """Accuracy regression: tiny runs stay above stored floors.

    The runs are deterministic; the floors are in bench/check_floors.json."""
    from bench.check import run_check
    from models.registry import model_names
    from tasks.registry import task_names

    results = run_check(_names(models, model_names(), "model"), _names(tasks, task_names(), "task"),
                        update=update_floors, echo=click.echo)
    failures = [line for result in results for line in result.failures]
    unchecked = sum(1 for result in results if not result.floors)
    click.echo(f"{len(results)} pairs: {len(failures)} below floor, {unchecked} without a floor")
    if failures and not update_floors:
        for line in failures:
            click.echo(f"FAIL {line}", err=True)
        sys.exit(1)


@cli.command("gpu-check")
@click.option("--out", default="reports/gpu-check", show_default=True, type=click.Path(file_okay=False))
def gpu_check(out):
    """Prove the CUDA paths on one GPU (≈8 min): fast-path agreement, a paper-preset step of every model,
    a short paper HRM run; writes a JSON + markdown record. Without a GPU: one line, exit 0."""
    from bench.gpu_check import main as run_gpu_check

    return run_gpu_check(Path(out))


def main(argv: list[str] | None = None) -> int:
    """Entry point: one line and exit 2 for every user error, never a traceback."""
    try:
        args = list(sys.argv[1:] if argv is None else argv)
        result = cli.main(args=args, prog_name="python -m bench", standalone_mode=False, obj={"argv": args})
        return result if isinstance(result, int) else 0
    except click.exceptions.Exit as done:
        return done.exit_code
    except Interrupted as stopped:
        click.echo(str(stopped), err=True)
        return 130
    except click.exceptions.Abort as abort:
        # standalone_mode=False turns Ctrl-C (KeyboardInterrupt) into Abort; its cause tells them apart
        if isinstance(abort.__cause__ or abort.__context__, KeyboardInterrupt):
            click.echo("interrupted", err=True)
            return 130
        click.echo("aborted", err=True)
        return 1
    except click.UsageError as error:
        click.echo(f"error: {error.format_message()}", err=True)
        return 2
    except click.ClickException as error:
        click.echo(f"error: {error.format_message()}", err=True)
        return error.exit_code
    except USER_ERRORS as error:
        click.echo(f"error: {error}", err=True)
        return 2
    except ModuleNotFoundError as error:
        # a dependency left out of the install (the commands import torch & co. lazily, so this is where
        # a new user who skipped `pip install` lands); a missing module of our own is a bug: traceback
        if (error.name or "").split(".")[0] in PROJECT_PACKAGES:
            raise
        click.echo(f"error: the Python module '{error.name}' is not installed; install the project first: "
                   "pip install -c constraints-cpu.txt -e .  (README, 'Two commands')", err=True)
        return 1
    except KeyboardInterrupt:
        click.echo("interrupted", err=True)
        return 130
