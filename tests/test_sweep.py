"""`bench sweep`: the grid on local Ray, idempotent reruns, bounded retries, divergence, fallback."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

import bench.runner as runner
import bench.sweep as sweep_module
from bench.cli import main
from bench.matching import prepare
from bench.results import read_summary
from bench.runner import StopRequested, execute
from bench.sweep import sweep
from models.registry import model_names


def _two_models() -> list[str]:
    """transformer and one more registered model (the grid needs two distinct models)."""
    others = [name for name in model_names() if name != "transformer"]
    return ["transformer", *others[:1]]


def _sweep_record(out: Path) -> dict:
    (record,) = sorted((out / "sweeps").glob("*.json"))[-1:]
    return json.loads(record.read_text())


@pytest.mark.slow
def test_grid_on_local_ray_then_report_shows_every_run(tmp_path, capsys):
    pytest.importorskip("ray")
    models = _two_models()  # 2 models × 1 task × 2 seeds once a second model is registered
    runs = 2 * len(models)
    out = tmp_path / "results"
    lines: list[str] = []
    outcomes = sweep(models, ["maze"], seeds=2, preset="smoke", out=out, backend="ray", device="cpu",
                     say=lines.append, ray_init={"num_cpus": 2})
    assert [o.status for o in outcomes] == ["complete"] * runs, lines
    assert any("on Ray (local)" in line for line in lines)
    summaries = [read_summary(p) for p in out.glob("*/summary.json")]
    assert sorted((s["model"], s["seed"]) for s in summaries) == sorted((m, s) for m in models for s in (0, 1))

    assert main(["report", "--results", str(out), "--out", str(tmp_path / "reports")]) == 0
    table = (tmp_path / "reports" / "index.md").read_text()
    assert f"{runs} runs in {len(models)} variants read from `{out}`" in table
    for summary in summaries:
        assert summary["run_id"] in table
    for outcome in outcomes:
        assert outcome.run_id in table

    # a rerun finds every config hash finished and starts nothing (Ray is not even started)
    again = sweep(models, ["maze"], seeds=2, preset="smoke", out=out, backend="ray", device="cpu", say=lines.append)
    assert [o.status for o in again] == ["skipped"] * runs
    assert [o.run_id for o in again] == [o.run_id for o in outcomes]
    assert len(list(out.glob("*/summary.json"))) == runs


def test_failed_run_is_retried_a_bounded_number_of_times_and_reported(tmp_path, monkeypatch):
    calls: dict[int, int] = {}
    real_execute = runner.execute

    def flaky_execute(config, out, **kwargs):
        seed = config.train.seed
        calls[seed] = calls.get(seed, 0) + 1
        if seed == 0 and calls[seed] == 1:
            raise RuntimeError("worker lost (simulated)")   # transient: the retry succeeds
        if seed == 1:
            raise MemoryError("out of memory (simulated)")   # persistent: fails every attempt
        return real_execute(config, out, **kwargs)

    monkeypatch.setattr(runner, "execute", flaky_execute)
    lines: list[str] = []
    outcomes = sweep(["transformer"], ["maze"], seeds=3, preset="smoke", out=tmp_path, backend="sequential",
                     retries=2, device="cpu", say=lines.append)
    assert [o.status for o in outcomes] == ["complete", "failed", "complete"]
    assert [o.attempts for o in outcomes] == [2, 3, 1]
    assert calls == {0: 2, 1: 3, 2: 1}
    assert outcomes[1].errors == ["MemoryError: out of memory (simulated)"] * 3
    assert any(line.startswith("failed   maze/transformer/seed1 (3 attempts)") for line in lines)
    record = _sweep_record(tmp_path)
    assert [run["status"] for run in record["runs"]] == ["complete", "failed", "complete"]


def test_bad_data_is_not_retried(tmp_path):
    outcomes = sweep(["transformer"], ["maze"], seeds=1, preset="smoke", out=tmp_path, backend="sequential",
                     overrides=[f"task.path={tmp_path}/missing.csv", f"task.test_path={tmp_path}/missing.csv"],
                     retries=3, device="cpu", say=lambda line: None)
    assert outcomes[0].status == "failed" and outcomes[0].attempts == 1
    assert "maze data file not found" in outcomes[0].errors[0]


def test_diverged_runs_are_recorded_and_the_sweep_goes_on(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(sweep_module, "ray_available", lambda: False)  # also: the fallback says so
    code = main(["sweep", "--models", "transformer", "--tasks", "maze", "--seeds", "2", "--preset", "smoke",
                 "--out", str(tmp_path), "--set", "train.lr=1e30", "--set", "train.optimizer=adamw"])
    printed = capsys.readouterr().out
    assert code == 0, printed
    assert "ray is not installed: running the grid sequentially" in printed
    assert "diverged maze/transformer/seed0" in printed and "diverged maze/transformer/seed1" in printed
    assert "0 complete, 2 diverged, 0 skipped, 0 failed" in printed
    assert sorted(read_summary(p)["status"] for p in tmp_path.glob("*/summary.json")) == ["diverged", "diverged"]
    # a diverged run is a finished result: the rerun skips it
    assert main(["sweep", "--models", "transformer", "--tasks", "maze", "--seeds", "2", "--preset", "smoke",
                 "--out", str(tmp_path), "--set", "train.lr=1e30", "--set", "train.optimizer=adamw"]) == 0
    assert "0 complete, 0 diverged, 2 skipped, 0 failed" in capsys.readouterr().out


def test_an_interrupted_run_is_resumed_not_restarted(tmp_path):
    config = prepare("transformer", "maze", "smoke", ["train.checkpoint_every=2"], seed=0, device="cpu")
    with pytest.raises(StopRequested):
        execute(config, tmp_path, progress=False, stop_after_step=2)
    (interrupted,) = [p for p in tmp_path.iterdir() if p.is_dir()]
    outcomes = sweep(["transformer"], ["maze"], seeds=1, preset="smoke", out=tmp_path, backend="sequential",
                     overrides=["train.checkpoint_every=2"], device="cpu", say=lambda line: None)
    assert outcomes[0].status == "complete" and outcomes[0].run_id == interrupted.name
    assert [p for p in tmp_path.iterdir() if p.is_dir() and p.name != "sweeps"] == [interrupted]
