"""Bad input as the shell sees it: `python -m bench …` in a subprocess, one case per class of issue 22.

Each case must exit with its code, print exactly one stderr line `error: …`, no traceback, and leave
no summary.json at "running". Ctrl-C must exit 130, say how to resume, and `--resume` must finish the
run. The in-process matrix (more cases per class) is in tests/test_cli_errors.py; the validation
functions and the file reader have fast unit tests in tests/test_validation.py.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent
SMOKE = ["--model", "transformer", "--task", "maze", "--preset", "smoke", "--device", "cpu", "--quiet"]


def _env(tmp: Path, **extra: str) -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "RECURRENT_BENCH_CACHE": str(tmp / "cache"), **extra}


def _binary(tmp: Path) -> str:
    path = tmp / "puzzles.csv"
    path.write_bytes(b"source,question,answer,rating\n\x00\x01\x02\xff")
    return str(path)


def _a_file(tmp: Path) -> str:
    path = tmp / "a-file"
    path.write_text("")
    return str(path)


# (case id, argv builder(tmp), extra environment builder(tmp), exit code, text the error line contains).
# Few on purpose: each subprocess imports torch; the in-process matrix in test_cli_errors.py has the rest.
CASES = [
    ("seed-beyond-64-bits", lambda t: ["run", *SMOKE, "--seed", str(2**64)], None, 2, "train.seed must be in"),
    ("xformers-on-cpu", lambda t: ["run", *SMOKE, "--set", "model.attention_backend=xformers"], None, 2,
     "needs CUDA"),
    ("train-size-too-large", lambda t: ["run", *SMOKE, "--set", "task.train_size=1000000000000"], None, 2,
     "above the limit of 10,000,000"),
    ("binary-maze-csv", lambda t: ["run", *SMOKE, "--set", f"task.path={_binary(t)}"], None, 2, "binary file"),
    ("cache-is-a-file", lambda t: ["run", *SMOKE], lambda t: {"RECURRENT_BENCH_CACHE": _a_file(t)}, 2,
     "RECURRENT_BENCH_CACHE"),
    ("report-unknown-task", lambda t: ["report", "--results", str(t / "out"), "--task", "nope",
                                       "--out", str(t / "reports")], None, 2, "--task nope: no runs"),
]


@pytest.mark.parametrize("build_argv, build_env, code, expected", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_exits_with_one_error_line(build_argv, build_env, code, expected, tmp_path):
    (tmp_path / "out").mkdir()
    argv = build_argv(tmp_path)
    if argv[0] == "run":
        argv += ["--out", str(tmp_path / "out")]
    env = _env(tmp_path, **(build_env(tmp_path) if build_env else {}))
    completed = subprocess.run([sys.executable, "-m", "bench", *argv], cwd=ROOT, env=env, capture_output=True,
                               text=True, timeout=120)
    lines = [line for line in completed.stderr.splitlines() if line.strip()]
    assert completed.returncode == code, completed.stderr
    assert len(lines) == 1 and lines[0].startswith("error: ") and expected in lines[0], completed.stderr
    assert "Traceback" not in completed.stderr + completed.stdout
    for summary in (tmp_path / "out").rglob("summary.json"):
        assert json.loads(summary.read_text())["status"] != "running", summary


def _checkpoint_step(out: Path) -> int:
    from safetensors import safe_open

    for path in out.glob("*/checkpoint.safetensors"):
        try:
            with safe_open(str(path), "pt") as handle:
                return json.loads(handle.metadata()["trainer"])["step"]
        except Exception:  # noqa: BLE001 — replaced while we read it: look again
            return 0
    return 0


def test_ctrl_c_exits_130_with_the_resume_command_and_resume_finishes(tmp_path):
    out = tmp_path / "out"
    argv = [sys.executable, "-m", "bench", "run", *SMOKE, "--out", str(out),
            "--set", "train.steps=1000", "--set", "train.checkpoint_every=1"]
    # a child inherits an ignored SIGINT: earlier tests in the same session (compile workers) may leave
    # it ignored in pytest, and Ctrl-C from a terminal always arrives with the default disposition
    process = subprocess.Popen(argv, cwd=ROOT, env=_env(tmp_path), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.monotonic() + 120
    # interrupt with 900 steps to go: on an idle machine a smoke step takes about a millisecond, and
    # 100 steps to go were once done before the signal arrived
    while _checkpoint_step(out) < 100 and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.1)
    assert process.poll() is None, "the run ended before it could be interrupted"
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 130, stderr
    assert "Traceback" not in stderr
    (line,) = [line for line in stderr.splitlines() if line.strip()]
    assert line.startswith("interrupted; resume with: python -m bench run ") and "--resume" in line, line
    (summary_path,) = out.glob("*/summary.json")
    assert json.loads(summary_path.read_text())["status"] == "running"
    assert (summary_path.parent / "checkpoint.safetensors").exists()

    resumed = subprocess.run([sys.executable, "-m", "bench", "run", *SMOKE, "--out", str(out),
                              "--set", "train.steps=1000", "--set", "train.checkpoint_every=1", "--resume"],
                             cwd=ROOT, env=_env(tmp_path), capture_output=True, text=True, timeout=180)
    assert resumed.returncode == 0, resumed.stderr
    summary = json.loads(summary_path.read_text())
    assert summary["status"] == "complete" and summary["train"]["steps"] == 1000
    assert not (summary_path.parent / "checkpoint.safetensors").exists()
