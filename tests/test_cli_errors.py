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
    ("threads-zero", "train.threads=0", "train.threads must be >= 1, got 0"),
    ("budget-without-amount", "train.budget=examples", "train.budget=examples needs train.max_examples > 0"),
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
    ("threads-option-zero", lambda t, r: ["run", *SMOKE, "--threads", "0"], "--threads"),
    ("iteration-rule-with-segments", lambda t, r: ["run", *SMOKE, "--set", "train.iteration_rule=random"],
     "needs train.segments=1"),
    ("iteration-rule-without-iterations", lambda t, r: ["run", *SMOKE, "--set", "train.segments=1", "--set",
                                                        "train.iteration_rule=random"], "has no iteration count to vary"),
    ("stop-selector-without-iterations", lambda t, r: ["run", *SMOKE, "--set", "train.segments=1", "--set",
                                                       "train.stop_selector_steps=5"], "has no iteration count to vary"),
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


def test_a_dependency_left_out_of_the_install_is_one_line(tmp_path):
    """A new user who skipped `pip install` (here: torch hidden from the import system) gets one line
    that says what to install, exit 1, and no run folder."""
    hide_torch = ("import sys; sys.modules['torch'] = None; from bench.cli import main; "
                  f"sys.exit(main({['run', *SMOKE, '--out', str(tmp_path / 'results')]!r}))")
    completed = subprocess.run([sys.executable, "-c", hide_torch], cwd=ROOT, capture_output=True, text=True,
                               timeout=120)
    assert completed.returncode == 1
    lines = completed.stderr.strip().splitlines()
    assert lines == ["error: the Python module 'torch' is not installed; install the project first: "
                     "pip install -c constraints-cpu.txt -e .  (README, 'Two commands')"], completed.stderr
    assert not (tmp_path / "results").exists() or not any((tmp_path / "results").iterdir())


def test_a_missing_module_of_our_own_is_a_bug_not_an_install_step(monkeypatch):
    """Only third-party modules read as an install step; a broken import inside bench/models/tasks
    keeps its traceback, so it cannot hide as user advice."""
    def broken(*args, **kwargs):
        raise ModuleNotFoundError("No module named 'models.nope'", name="models.nope")

    monkeypatch.setattr("bench.cli.cli.main", broken)
    with pytest.raises(ModuleNotFoundError):
        main(["list"])


# ---- issue 22: inputs the config accepted but the code could not, files that are not what they claim,
# commands that succeed at nothing. Exit 2 exactly, and no run folder left at "running".
PUZZLE = "53..7....6..195....98....6.8...6...34..8.3..17...2...6.6....28....419..5....8..79"


def _write(tmp: Path, name: str, data: bytes) -> str:
    (tmp / name).write_bytes(data)
    return str(tmp / name)


def _arc_dir_with_json_folder(tmp: Path) -> str:
    (tmp / "arc" / "task.json").mkdir(parents=True)
    return str(tmp / "arc")


SUDOKU = ["--model", "transformer", "--task", "sudoku", "--preset", "smoke", "--device", "cpu", "--quiet"]
ARC = ["--model", "transformer", "--task", "arc", "--preset", "smoke", "--device", "cpu", "--quiet"]

# (case id, argv builder(tmp), environment to set, text the error line must contain)
STRICT_CASES = [
    ("seed-beyond-63-bits", lambda t: ["run", *SMOKE, "--seed", str(2**64)], {}, "train.seed must be in 0 .. 2**63-1"),
    ("seed-negative", lambda t: ["run", *SMOKE, "--seed", "-1"], {}, "train.seed must be in"),
    ("xformers-on-cpu", lambda t: ["run", *SMOKE, "--set", "model.attention_backend=xformers"], {}, "needs CUDA"),
    ("train-size-too-large", lambda t: ["run", *SMOKE, "--set", "task.train_size=1000000000000"], {},
     "above the limit of 10,000,000 per split"),
    ("augmentations-too-large", lambda t: ["run", *SUDOKU, "--set", "task.augmentations=100000",
                                           "--set", "task.train_size=1000"], {}, "above the limit of 10,000,000"),
    ("eval-segments-too-large", lambda t: ["run", *SMOKE, "--set", "train.eval_segments=100000000"], {},
     "train.eval_segments=100000000 is above the limit of 1,024"),
    ("batch-size-too-large", lambda t: ["run", *SMOKE, "--set", "train.batch_size=100000000"], {},
     "train.batch_size=100000000 is above the limit of 1,048,576"),
    ("lr-nan", lambda t: ["run", *SMOKE, "--set", "train.lr=nan"], {}, "train.lr must be a finite number, got nan"),
    ("lr-inf", lambda t: ["run", *SMOKE, "--set", "train.lr=inf"], {}, "train.lr must be a finite number, got inf"),
    ("beta2-negative", lambda t: ["run", *SMOKE, "--set", "train.beta2=-3"], {}, "train.beta2 must be in [0, 1)"),
    ("weight-decay-negative", lambda t: ["run", *SMOKE, "--set", "train.weight_decay=-1"], {},
     "train.weight_decay must be >= 0"),
    ("hidden-negative", lambda t: ["run", *SMOKE, "--set", "model.hidden=-32"], {}, "model.hidden must be >= 1, got -32"),
    ("expansion-negative", lambda t: ["run", *SMOKE, "--set", "model.expansion=-1"], {},
     "model.expansion must be > 0, got -1.0"),
    ("layers-zero-info", lambda t: ["info", *SMOKE[:6], "--set", "model.num_layers=0"], {}, "model.num_layers must be >= 1"),
    ("sudoku-binary-file", lambda t: ["run", *SUDOKU, "--set", f"task.path={_write(t, 'p.txt', bytes(range(256)))}"],
     {}, "p.txt:1: the sudoku data file is a binary file"),
    ("sudoku-latin1-file", lambda t: ["run", *SUDOKU, "--set",
                                      f"task.path={_write(t, 'p.txt', b'# grille r' + chr(233).encode('latin-1') + b'solue' + bytes([10]) + PUZZLE.encode())}"],
     {}, "p.txt:1: the sudoku data file is not UTF-8 text"),
    ("sudoku-several-solutions", lambda t: ["run", *SUDOKU, "--set",
                                            f"task.path={_write(t, 'p.txt', b'# two solutions' + bytes([10]) + b'.' * 81)}"],
     {}, "p.txt:2: puzzle has several solutions"),
    ("maze-binary-csv", lambda t: ["run", *SMOKE, "--set", f"task.path={_write(t, 'm.csv', bytes([0, 159, 146, 150]))}"],
     {}, "m.csv:1: the maze data file is a binary file"),
    ("maze-path-is-directory", lambda t: ["run", *SMOKE, "--set", f"task.path={t}"], {}, "is a directory, not a file"),
    ("arc-directory-named-json", lambda t: ["run", *ARC, "--set", f"task.path={_arc_dir_with_json_folder(t)}"], {},
     "task.json: the ARC task file is a directory"),
    ("cache-is-a-file", lambda t: ["run", *SMOKE], {"RECURRENT_BENCH_CACHE": "{tmp}/cache-file"},
     "(RECURRENT_BENCH_CACHE) is not writable"),
    ("cache-below-a-file", lambda t: ["data", "--task", "maze", "--preset", "smoke"],
     {"RECURRENT_BENCH_CACHE": "{tmp}/cache-file/below"}, "(RECURRENT_BENCH_CACHE) is not writable"),
    ("notes-binary", lambda t: ["report", "--results", str(t), "--out", str(t / "r"),
                                "--notes", _write(t, "notes.md", bytes([0, 1, 2]))], {}, "the --notes file is a binary file"),
    ("notes-missing", lambda t: ["report", "--results", str(t), "--out", str(t / "r"), "--notes", f"{t}/none.md"], {},
     "--notes file not found"),
    ("report-missing-results", lambda t: ["report", "--results", f"{t}/nowhere", "--out", str(t / "r")], {},
     "no such results directory"),
    ("report-results-is-a-file", lambda t: ["report", "--results", _write(t, "f.json", b"{}"), "--out", str(t / "r")],
     {}, "not a directory"),
    ("report-unknown-task", lambda t: ["report", "--results", str(t), "--out", str(t / "r"), "--task", "nope"], {},
     "--task nope: no runs of that task"),
    ("report-unknown-model", lambda t: ["report", "--results", str(t), "--out", str(t / "r"), "--model", "nope"], {},
     "--model nope: no runs of that model"),
]


@pytest.mark.parametrize("build_argv, environment, expected", [c[1:] for c in STRICT_CASES],
                         ids=[c[0] for c in STRICT_CASES])
def test_bad_input_exits_2_and_leaves_no_running_run(build_argv, environment, expected, tmp_path, capsys,
                                                     monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "cache-file").write_bytes(b"")
    monkeypatch.setenv("RECURRENT_BENCH_CACHE", str(tmp_path / "cache"))
    for key, value in environment.items():
        monkeypatch.setenv(key, value.format(tmp=tmp_path))
    code = main(build_argv(tmp_path))
    captured = capsys.readouterr()
    lines = [line for line in captured.err.splitlines() if line.strip()]
    assert code == 2, captured.err
    assert len(lines) == 1 and lines[0].startswith("error: ") and expected in lines[0], captured.err
    assert "Traceback" not in captured.err + captured.out
    for summary in tmp_path.rglob("summary.json"):
        assert json.loads(summary.read_text())["status"] != "running", summary
