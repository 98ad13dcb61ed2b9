"""Bad input everywhere: one line `error: …` on stderr, a non-zero exit, never a traceback.

Each case runs the real CLI entry point in-process (`bench.cli.main`); one case also runs it as a
subprocess to check the exit status the shell sees. The table in docs/errors.md lists these cases.
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from bench.cli import main
from bench.matching import prepare
from bench.runner import StopRequested, execute

ROOT = Path(__file__).resolve().parent.parent
SMOKE = ["--model", "transformer", "--task", "maze", "--preset", "smoke", "--device", "cpu", "--quiet"]


@pytest.fixture(scope="module")
def interrupted_run(tmp_path_factory) -> Path:
    """An unfinished smoke run (status running, checkpoint at step 2), to resume with a wrong config."""
    out = tmp_path_factory.mktemp("interrupted")
    config = prepare("transformer", "maze", "smoke", ["train.checkpoint_every=2"], seed=0)
    with pytest.raises(StopRequested):
        execute(config, out, progress=False, stop_after_step=2)
    (run_dir,) = [p for p in out.iterdir() if p.is_dir()]
    return run_dir


def _bad_csv(tmp: Path) -> str:
    path = tmp / "corrupt.csv"
    path.write_text("source,question,answer,rating\nx,#S G,#SoG,3\n")  # 4 cells, grid 6 wants 36
    return str(path)


def _file_as_dir(tmp: Path) -> str:
    blocker = tmp / "a-file"
    blocker.write_text("")
    return str(blocker / "results")  # a directory below a regular file cannot exist, even for root


def _corrupt_checkpoint(tmp: Path, run_dir: Path) -> str:
    copy = tmp / run_dir.name
    copy.mkdir()
    (copy / "summary.json").write_text((run_dir / "summary.json").read_text())
    (copy / "checkpoint.safetensors").write_bytes(b"\x00garbage, not a safetensors file")
    return str(copy)


def _finished_copy(tmp: Path, run_dir: Path) -> str:
    copy = tmp / run_dir.name
    copy.mkdir()
    summary = json.loads((run_dir / "summary.json").read_text())
    (copy / "summary.json").write_text(json.dumps({**summary, "status": "complete"}))
    return str(copy)


def _corrupt_summary(tmp: Path) -> str:
    folder = tmp / "half-written"
    folder.mkdir()
    (folder / "summary.json").write_text('{"status": "runn')
    return str(folder)


# `run --preset smoke --set VALUE` cases: (case id, VALUE, text the error line must contain)
SET_CASES = [
    ("unknown-set-key", "train.nope=1", "unknown key 'train.nope'"),
    ("set-without-section", "steps=3", "keys are dotted by section"),
    ("set-without-equals", "train.steps", "expected section.key=value"),
    ("set-bad-int", "train.steps=abc", "expected int"),
    ("set-bad-bool", "train.act=maybe", "expected bool"),
    ("set-bad-choice", "train.optimizer=sgd", "train.optimizer='sgd'"),
    ("batch-size-zero", "train.batch_size=0", "train.batch_size must be >= 1"),
    ("ema-out-of-range", "train.ema=1.5", "train.ema must be in [0, 1)"),
    ("grid-out-of-range", "task.grid=100", "task.grid must be in 4..64"),
    ("train-size-zero", "task.train_size=0", "must be >= 1"),
    ("heads-not-dividing", "model.num_heads=3", "divisible by num_heads"),
    ("hidden-zero", "model.hidden=0", "model.hidden must be >= 1, got 0"),
]


def _with_set(value: str):
    return lambda tmp, run_dir: ["run", *SMOKE, "--set", value]


# (case id, argv builder(tmp, interrupted run dir), text the error line must contain)
CASES = [
    ("unknown-model", lambda t, r: ["run", "--model", "nope", "--task", "maze"], "unknown model 'nope'"),
    ("unknown-task", lambda t, r: ["run", "--model", "transformer", "--task", "nope"], "unknown task 'nope'"),
    ("unknown-preset", lambda t, r: ["run", "--model", "transformer", "--task", "maze", "--preset", "huge"],
     "unknown preset 'huge'"),
    *[(name, _with_set(value), expected) for name, value, expected in SET_CASES],
    ("missing-data-file", lambda t, r: ["run", *SMOKE, "--set", f"task.path={t}/none.csv"],
     "maze data file not found"),
    ("corrupt-data-file", lambda t, r: ["run", *SMOKE, "--set", f"task.path={_bad_csv(t)}",
                                        "--set", f"task.test_path={_bad_csv(t)}"], "grids must have 36 characters"),
    ("unwritable-out", lambda t, r: ["run", *SMOKE, "--out", _file_as_dir(t)], "is not writable"),
    ("unknown-device", lambda t, r: ["run", *SMOKE[:6], "--device", "tpu"], "unknown device 'tpu'"),
    ("resume-mismatching-config", lambda t, r: ["run", *SMOKE, "--set", "train.checkpoint_every=2",
                                                "--set", "train.lr=0.002", "--resume", str(r)],
     "differs from this one"),
    ("resume-nothing-to-resume", lambda t, r: ["run", *SMOKE, "--out", str(t), "--resume"],
     "no unfinished run with this configuration"),
    ("resume-missing-dir", lambda t, r: ["run", *SMOKE, "--resume", f"{t}/no-such-run"], "no summary.json there"),
    ("resume-corrupt-summary", lambda t, r: ["run", *SMOKE, "--resume", _corrupt_summary(t)], "unreadable summary"),
    ("resume-corrupt-checkpoint", lambda t, r: ["run", *SMOKE, "--set", "train.checkpoint_every=2", "--out", str(t),
                                                "--resume", _corrupt_checkpoint(t, r)], "unreadable checkpoint"),
    ("resume-finished-run", lambda t, r: ["run", *SMOKE, "--set", "train.checkpoint_every=2", "--out", str(t),
                                          "--resume", _finished_copy(t, r)], "that run is already complete"),
    ("data-unknown-split", lambda t, r: ["data", "--task", "maze", "--preset", "smoke", "--split", "dev"],
     "unknown split 'dev'"),
    ("sweep-unknown-model", lambda t, r: ["sweep", "--models", "transformer,nope", "--tasks", "maze",
                                          "--preset", "smoke", "--out", str(t)], "unknown model 'nope'"),
    ("sweep-zero-seeds", lambda t, r: ["sweep", "--models", "transformer", "--tasks", "maze", "--seeds", "0",
                                       "--out", str(t)], "--seeds must be >= 1"),
    ("sweep-negative-retries", lambda t, r: ["sweep", "--models", "transformer", "--tasks", "maze",
                                             "--retries", "-1", "--out", str(t)], "--retries must be >= 0"),
    ("sweep-zero-cpus", lambda t, r: ["sweep", "--models", "transformer", "--tasks", "maze",
                                      "--cpus-per-run", "0", "--out", str(t)], "--cpus-per-run must be > 0"),
    ("sweep-address-without-ray", lambda t, r: ["sweep", "--models", "transformer", "--tasks", "maze",
                                                "--backend", "sequential", "--address", "ray://x:10001",
                                                "--out", str(t)], "--address needs Ray"),
    ("unknown-option", lambda t, r: ["run", *SMOKE, "--epochs", "3"], "No such option"),
]


@pytest.mark.parametrize("build_argv, expected", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_is_one_line_and_nonzero_exit(build_argv, expected, tmp_path, interrupted_run, capsys,
                                                monkeypatch):
    monkeypatch.chdir(tmp_path)  # default --out results/ lands in the temporary folder
    code = main(build_argv(tmp_path, interrupted_run))
    captured = capsys.readouterr()
    lines = [line for line in captured.err.splitlines() if line.strip()]
    assert code != 0
    assert len(lines) == 1, captured.err
    assert lines[0].startswith("error: ") and expected in lines[0], lines[0]
    assert "Traceback" not in captured.err + captured.out


def test_interrupted_run_is_untouched_by_failed_resumes(interrupted_run):
    """The mismatching --resume above must not have rewritten the run it refused."""
    summary = json.loads((interrupted_run / "summary.json").read_text())
    assert summary["status"] == "running"
    assert (interrupted_run / "checkpoint.safetensors").exists()


@pytest.mark.slow
def test_exit_status_seen_by_the_shell(tmp_path):
    completed = subprocess.run([sys.executable, "-m", "bench", "run", "--model", "transformer", "--task", "maze",
                                "--set", "train.nope=1"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert completed.returncode == 2
    lines = completed.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: unknown key 'train.nope'"), completed.stderr
