"""Never lose a result: SIGKILL + --resume, divergence, concurrent writers, leakage guards."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from safetensors import safe_open

import bench.runner as runner
from bench.matching import prepare
from bench.results import atomic_write_json, read_summary
from bench.runner import execute

ROOT = Path(__file__).resolve().parent.parent
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def _cli(*arguments: str) -> list[str]:
    return [sys.executable, "-m", "bench", "run", "--model", "transformer", "--task", "maze", "--preset", "smoke",
            "--device", "cpu", "--quiet", *arguments]


def _checkpoint_step(path: Path) -> int:
    with safe_open(str(path), framework="pt") as handle:
        return json.loads(handle.metadata()["trainer"])["step"]


@pytest.mark.slow
def test_sigkill_then_resume_matches_uninterrupted_run(tmp_path):
    # segments=2 and EMA so the carry, halted rows and EMA weights must all survive the kill
    overrides = ["train.steps=30", "train.segments=2", "train.ema=0.9", "train.checkpoint_every=2",
                 "train.log_every=1", "train.eval_every=10"]
    sets = [a for o in overrides for a in ("--set", o)]
    killed_out = tmp_path / "killed"
    victim = subprocess.Popen(_cli(*sets, "--out", str(killed_out)), cwd=ROOT, env=ENV,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        checkpoint = None
        while time.monotonic() < deadline and victim.poll() is None:
            found = list(killed_out.glob("*/checkpoint.safetensors"))
            if found:
                checkpoint = found[0]
                os.kill(victim.pid, signal.SIGKILL)
                break
            time.sleep(0.02)
        victim.wait(timeout=60)
    finally:
        if victim.poll() is None:
            victim.kill()
    assert victim.returncode == -signal.SIGKILL, "the run ended before it could be killed; make it longer"
    (run_dir,) = [p for p in killed_out.iterdir() if p.is_dir()]
    before = read_summary(run_dir / "summary.json")
    assert before["status"] == "running"
    killed_at = _checkpoint_step(checkpoint)
    assert 2 <= killed_at < 30

    resumed = subprocess.run(_cli(*sets, "--out", str(killed_out), "--resume"), cwd=ROOT, env=ENV,
                             capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    assert [p for p in killed_out.iterdir() if p.is_dir()] == [run_dir]  # continued in place, no new run
    after = read_summary(run_dir / "summary.json")
    assert after["status"] == "complete" and not (run_dir / "checkpoint.safetensors").exists()
    assert after["started_at"] == before["started_at"]  # the same run, continued

    # the same thread count as the subprocesses (OMP_NUM_THREADS=1): reduction order, hence bits, depend on it
    import torch
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        reference = execute(prepare("transformer", "maze", "smoke", overrides, device="cpu"), tmp_path / "straight",
                            progress=False)
    finally:
        torch.set_num_threads(threads)
    assert after["config_hash"] == reference["config_hash"]
    assert after["metrics"]["test"]["token_accuracy"] == reference["metrics"]["test"]["token_accuracy"]
    assert after["exact_accuracy"] == reference["exact_accuracy"]
    # every logged training loss, before and after the kill, is bit-identical (deterministic on CPU)
    assert after["train"]["curve"] == json.loads(json.dumps(reference["train"]["curve"]))
    assert after["train"]["evals"] == reference["train"]["evals"]
    assert after["train"]["examples"] == reference["train"]["examples"]


def test_nan_loss_is_recorded_as_diverged_with_its_step(tmp_path):
    config = prepare("transformer", "maze", "smoke", ["train.lr=1e30", "train.steps=6", "train.optimizer=adamw",
                                                      "train.checkpoint_every=1"])
    summary = execute(config, tmp_path, progress=False)
    assert summary["status"] == "diverged"
    assert not (tmp_path / summary["run_id"] / "checkpoint.safetensors").exists()   # nothing to resume
    on_disk = read_summary(tmp_path / summary["run_id"] / "summary.json")
    assert on_disk["status"] == "diverged"
    # step 1 took the absurd update; the loss of step 2 is the first non-finite one
    assert on_disk["diverged_step"] == 2 and on_disk["train"]["steps"] == 1
    assert on_disk["diverged_value"] in ("nan", "inf", "-inf")


@pytest.mark.slow
def test_two_concurrent_runs_into_one_results_folder(tmp_path):
    """Same config, same seed, same second: two processes still get separate, complete records."""
    out = tmp_path / "results"
    runs = [subprocess.Popen(_cli("--out", str(out)), cwd=ROOT, env=ENV, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True) for _ in range(2)]
    for process in runs:
        _, stderr = process.communicate(timeout=300)
        assert process.returncode == 0, stderr
    run_dirs = sorted(p for p in out.iterdir() if p.is_dir())
    assert len(run_dirs) == 2
    summaries = [read_summary(p / "summary.json") for p in run_dirs]
    assert {s["run_id"] for s in summaries} == {p.name for p in run_dirs}
    assert all(s["status"] == "complete" for s in summaries)
    assert summaries[0]["exact_accuracy"] == summaries[1]["exact_accuracy"]  # same config, same numbers
    assert not list(out.rglob("*.tmp"))  # no temporary file left behind


def test_a_drawn_run_id_that_exists_is_never_reused(tmp_path, monkeypatch):
    ids = iter(["taken", "taken", "fresh"])
    monkeypatch.setattr(runner, "new_run_id", lambda *args: next(ids))
    (tmp_path / "taken").mkdir()
    config = prepare("transformer", "maze", "smoke", ["train.steps=1"])
    summary = execute(config, tmp_path, progress=False)
    assert summary["run_id"] == "fresh"
    assert not (tmp_path / "taken" / "summary.json").exists()


def test_atomic_writes_never_expose_a_partial_file(tmp_path):
    """Two writers rewrite the file while a reader reads it a fixed number of times; the writers keep
    going until the reader is done, and must have written many times meanwhile (no sleeps, no clock)."""
    path = tmp_path / "summary.json"
    atomic_write_json(path, {"status": "running", "config": {}, "writer": -1, "pad": ""})
    reader_done = threading.Event()
    problems: list[str] = []
    writes = [0, 0]

    def writer(number: int) -> None:
        index = 0
        while not reader_done.is_set() or writes[number] < 20:
            atomic_write_json(path, {"status": "running", "config": {}, "writer": number, "pad": "x" * (index % 50_000)})
            writes[number] += 1
            index += 997

    def reader() -> None:
        seen = set()
        for _ in range(2_000):
            try:
                seen.add(read_summary(path)["writer"])
            except ValueError as error:
                problems.append(str(error))
        problems.extend([] if len(seen) > 1 else [f"the reader only ever saw writer {seen}: no interleaving"])
        reader_done.set()

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(2)] + [threading.Thread(target=reader)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert problems == []
    assert min(writes) >= 20
    assert not list(tmp_path.glob("*.tmp"))


# ------------------------------------------------------------------------------ leakage guard (maze)
def test_maze_guard_drops_generated_test_layouts_that_occur_in_train(tmp_path, monkeypatch):
    """Force the test generator to return training mazes among its draws: they must be dropped."""
    monkeypatch.setenv("RECURRENT_BENCH_CACHE", str(tmp_path))
    import tasks.maze as maze

    real_generate = maze.generate
    task = maze.MazeTask(maze.MazeConfig(grid=6, train_size=40, test_size=20))
    train = task._arrays("train")

    def leaky_generate(count, grid, min_path, wall_min, wall_max, seed):
        arrays = real_generate(count, grid, min_path, wall_min, wall_max, seed)
        if seed % 2 == 1:  # the test split's draw: plant five training mazes at its front
            for key in ("questions", "answers", "lengths"):
                arrays[key][:5] = train[key][:5]
        return arrays

    monkeypatch.setattr(maze, "generate", leaky_generate)
    test = task.build("test")
    train_set = {bytes(q) for q in train["questions"]}
    assert len(test) == 20
    assert not any(bytes(q) in train_set for q in test.inputs.numpy().astype(np.uint8))


def test_maze_guard_refuses_when_too_few_distinct_test_layouts(tmp_path, monkeypatch):
    monkeypatch.setenv("RECURRENT_BENCH_CACHE", str(tmp_path))
    import tasks.maze as maze
    from tasks.protocol import DataError

    task = maze.MazeTask(maze.MazeConfig(grid=6, train_size=40, test_size=20))
    train = task._arrays("train")
    monkeypatch.setattr(maze, "generate", lambda count, *args, **kwargs: {
        key: np.resize(value, (count, *value.shape[1:])) for key, value in train.items()})
    with pytest.raises(DataError, match="overlaps the training split"):
        task.build("test")
