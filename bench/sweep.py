"""`bench sweep`: the grid models × tasks × seeds, one run each, on Ray or sequentially.

    python -m bench sweep --models transformer,hrm --tasks maze --seeds 3 --preset cpu

- Every run is a Ray task holding its resources (1 GPU when the cluster has GPUs, else
  `--cpus-per-run` CPUs); Ray schedules as many at once as fit. Local by default (`ray.init()` uses
  the cores this machine has); `--address` joins an existing cluster, whose workers get this
  repository as their working directory and must see `--out` on a shared disk.
- Idempotent: a run whose config hash already has a finished summary (complete or diverged) under
  `--out` is skipped; an interrupted one with a checkpoint is resumed (bench/results.py).
- A run that raises (worker crash, out of memory, a bug) is retried up to `--retries` more times —
  the retry resumes from its last checkpoint — and reported if it still fails. Bad configurations
  and bad data are not retried (they would fail the same way). A run whose loss turns NaN/Inf is a
  result (`diverged`, with the step), not a failure; the sweep goes on either way.
- Without Ray installed (`pip install "recurrent-bench[distributed]"`) the grid runs sequentially
  in this process, and the sweep says so.

Each sweep also writes `<out>/sweeps/<time>.json` listing every run's outcome.
"""
from __future__ import annotations

import secrets
import time
import traceback
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Iterable

from bench.config import ConfigError
from bench.matching import prepare
from bench.results import ResultsError, atomic_write_json, ensure_writable, find_complete, find_resumable
from tasks.protocol import DataError

# deterministic: retrying would fail the same way
PERMANENT_ERRORS = (ConfigError, ResultsError, DataError)


@dataclass(frozen=True)
class RunSpec:
    model: str
    task: str
    seed: int
    preset: str
    overrides: tuple[str, ...] = ()
    device: str = "cpu"
    match: str = "params"        # bench/matching.py: params | flops | none

    @property
    def label(self) -> str:
        return f"{self.task}/{self.model}/seed{self.seed}"

    def config(self):
        return prepare(self.model, self.task, self.preset, self.overrides, seed=self.seed, device=self.device,
                       match_mode=self.match)


@dataclass
class Outcome:
    label: str
    status: str                  # complete | diverged | skipped | failed
    attempts: int = 0
    run_id: str | None = None
    exact_accuracy: float | None = None
    diverged_step: int | None = None
    errors: list[str] | None = None


def grid(models: Iterable[str], tasks: Iterable[str], seeds: int, preset: str, overrides: Iterable[str] = (),
         device: str = "cpu", match: str = "params") -> list[RunSpec]:
    """Every (task, model, seed), each config resolved now so a typo fails before any run starts."""
    specs = [RunSpec(model, task, seed, preset, tuple(overrides), device, match)
             for task in tasks for model in models for seed in range(seeds)]
    for spec in specs:
        spec.config()
    return specs


def run_one(spec: RunSpec, out: str) -> dict[str, Any]:
    """Execute one run (resuming its checkpoint if an earlier attempt left one); returns a short record."""
    from bench.runner import execute

    config = spec.config()
    resume = "auto" if find_resumable(Path(out), config.config_hash()) is not None else None
    summary = execute(config, out, resume=resume, progress=False)
    return {"run_id": summary["run_id"], "status": summary["status"],
            "exact_accuracy": summary.get("exact_accuracy"), "diverged_step": summary.get("diverged_step")}


def _describe(error: BaseException) -> str:
    if isinstance(error, PERMANENT_ERRORS):
        return f"{type(error).__name__}: {error}"
    lines = traceback.format_exception_only(type(error), error)
    return lines[-1].strip().splitlines()[0][:300]


def _is_permanent(error: BaseException) -> bool:
    if isinstance(error, PERMANENT_ERRORS):
        return True
    cause = getattr(error, "cause", None)  # ray.exceptions.RayTaskError wraps the worker's exception
    return isinstance(cause, PERMANENT_ERRORS)


def _finish(spec: RunSpec, record: dict[str, Any], attempts: int, errors: list[str]) -> Outcome:
    return Outcome(spec.label, record["status"], attempts, record["run_id"], record.get("exact_accuracy"),
                   record.get("diverged_step"), errors or None)


# ------------------------------------------------------------------------------------ backends
def run_sequential(specs: list[RunSpec], out: str, retries: int,
                   on_outcome: Callable[[Outcome], None]) -> list[Outcome]:
    outcomes = []
    for spec in specs:
        errors: list[str] = []
        for attempt in range(1, retries + 2):
            try:
                outcome = _finish(spec, run_one(spec, out), attempt, errors)
                break
            except Exception as error:  # noqa: BLE001 — any failure of one run must not stop the sweep
                errors.append(_describe(error))
                if _is_permanent(error) or attempt > retries:
                    outcome = Outcome(spec.label, "failed", attempt, errors=errors)
                    break
        on_outcome(outcome)
        outcomes.append(outcome)
    return outcomes


def run_on_ray(specs: list[RunSpec], out: str, retries: int, on_outcome: Callable[[Outcome], None],
               address: str | None, cpus_per_run: float, gpus_per_run: float,
               init_options: dict[str, Any] | None = None) -> list[Outcome]:
    import ray

    repo = Path(__file__).resolve().parent.parent
    options: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False, **(init_options or {})}
    if address:
        # a remote cluster has no copy of this checkout: ship it (results and caches stay here)
        options["runtime_env"] = {"working_dir": str(repo),
                                  "excludes": [".git", "results", "reports", "data", "**/__pycache__"]}
    started_here = not ray.is_initialized()
    if started_here:
        ray.init(address=address, **options)
    try:
        remote = ray.remote(run_one).options(num_cpus=cpus_per_run, num_gpus=gpus_per_run,
                                             max_retries=0)  # retries are counted here, with the reasons
        pending = {remote.remote(spec, out): (spec, 1, []) for spec in specs}
        outcomes: dict[RunSpec, Outcome] = {}
        while pending:
            done, _ = ray.wait(list(pending), num_returns=1)
            spec, attempt, errors = pending.pop(done[0])
            try:
                outcome = _finish(spec, ray.get(done[0]), attempt, errors)
            except Exception as error:  # noqa: BLE001 — RayTaskError, WorkerCrashedError, ...
                errors = [*errors, _describe(getattr(error, "cause", None) or error)]
                if _is_permanent(error) or attempt > retries:
                    outcome = Outcome(spec.label, "failed", attempt, errors=errors)
                else:
                    pending[remote.remote(spec, out)] = (spec, attempt + 1, errors)
                    continue
            on_outcome(outcome)
            outcomes[spec] = outcome
        return [outcomes[spec] for spec in specs]
    finally:
        if started_here:
            ray.shutdown()


def ray_available() -> bool:
    try:
        import ray  # noqa: F401
    except ImportError:
        return False
    return True


def sweep(models: list[str], tasks: list[str], seeds: int, preset: str, out: str | Path = "results",
          overrides: Iterable[str] = (), address: str | None = None, backend: str = "auto", retries: int = 2,
          cpus_per_run: float = 1, gpus_per_run: float | None = None, device: str = "auto",
          say: Callable[[str], None] = print, ray_init: dict[str, Any] | None = None,
          match: str = "params") -> list[Outcome]:
    """Run the grid; returns one Outcome per (task, model, seed) in grid order."""
    if seeds < 1:
        raise ConfigError(f"--seeds must be >= 1, got {seeds}")
    if retries < 0:
        raise ConfigError(f"--retries must be >= 0, got {retries}")
    if not models or not tasks:
        raise ConfigError("--models and --tasks each need at least one name")
    specs = grid(models, tasks, seeds, preset, overrides, "cpu" if device == "auto" else device, match)  # typos fail here
    if backend not in ("auto", "ray", "sequential"):
        raise ConfigError(f"unknown backend {backend!r}; choose from: auto, ray, sequential")
    if backend == "auto":
        backend = "ray" if ray_available() else "sequential"
        if backend == "sequential":
            say("ray is not installed: running the grid sequentially in this process "
                "(pip install 'recurrent-bench[distributed]' to run it on Ray)")
    elif backend == "ray" and not ray_available():
        raise ConfigError("--backend ray: ray is not installed (pip install 'recurrent-bench[distributed]')")
    if address and backend != "ray":
        raise ConfigError("--address needs Ray (pip install 'recurrent-bench[distributed]')")
    if gpus_per_run is None:  # one GPU per run where this machine has GPUs (for a remote GPU cluster: pass 1)
        import torch
        gpus_per_run = 1 if torch.cuda.is_available() and backend == "ray" else 0
    if device == "auto":
        device = "cuda" if gpus_per_run else "cpu"
    out = ensure_writable(Path(out)).resolve()  # Ray workers may run elsewhere (another cwd, another node)
    specs = [RunSpec(s.model, s.task, s.seed, s.preset, s.overrides, device, s.match) for s in specs]

    todo, outcomes = [], {}
    for spec in specs:
        finished = find_complete(out, spec.config().config_hash())
        if finished is not None:
            outcomes[spec] = Outcome(spec.label, "skipped", 0, finished.name)
            say(f"skip     {spec.label}: already finished ({finished.name})")
        else:
            todo.append(spec)
    where = f"Ray ({address or 'local'})" if backend == "ray" else "this process, one after another"
    say(f"sweep    {len(specs)} runs: {len(todo)} to run on {where}, {len(specs) - len(todo)} already finished")

    def report(outcome: Outcome) -> None:
        detail = {"complete": f"exact {outcome.exact_accuracy}", "diverged": f"at step {outcome.diverged_step}",
                  "failed": "; ".join(outcome.errors or [])}[outcome.status]
        say(f"{outcome.status:<8} {outcome.label} ({outcome.attempts} attempt{'s' * (outcome.attempts != 1)}) {detail}")

    if todo:
        if backend == "ray":
            finished_runs = run_on_ray(todo, str(out), retries, report, address, cpus_per_run, gpus_per_run, ray_init)
        else:
            finished_runs = run_sequential(todo, str(out), retries, report)
        outcomes.update(zip(todo, finished_runs))
    ordered = [outcomes[spec] for spec in specs]
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    atomic_write_json(out / "sweeps" / f"{stamp}-{secrets.token_hex(3)}.json",
                      {"backend": backend, "address": address, "preset": preset, "overrides": list(overrides),
                       "match": match,
                       "runs": [asdict(o) for o in ordered]})
    return ordered
