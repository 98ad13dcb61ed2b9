"""Seconds per training step of the README's main command at 1 and 2 torch threads, with OpenMP's
default and passive wait policy, on an idle machine and with one core kept busy.

    python scripts/thread_timing.py [--steps 30] [--repeats 2]

Each cell is a fresh `bench run` process (the OpenMP wait policy is read when torch loads), so the
cells are comparable; the table it prints is what docs/threads.md records.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

COMMAND = [sys.executable, "-m", "bench", "run", "--model", "hrm", "--task", "maze", "--quiet",
           "--set", "train.diagnostics_examples=0"]


def seconds_per_step(out: Path, threads: int, wait_policy: str | None, steps: int, cache: Path) -> float:
    env = {**os.environ, "RECURRENT_BENCH_CACHE": str(cache)}
    env.pop("OMP_NUM_THREADS", None)
    env.pop("OMP_WAIT_POLICY", None)
    if wait_policy:
        env["OMP_WAIT_POLICY"] = wait_policy
    run_out = Path(tempfile.mkdtemp(dir=out))
    subprocess.run([*COMMAND, "--threads", str(threads), "--set", f"train.steps={steps}", "--out", str(run_out)],
                   env=env, check=True, stdout=subprocess.DEVNULL)
    summary = json.loads(next(run_out.glob("*/summary.json")).read_text())
    return summary["train"]["seconds"] / summary["train"]["steps"]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        out, cache = Path(folder), Path(folder) / "cache"
        seconds_per_step(out, 1, None, 2, cache)   # build the data once, outside the timings
        print(f"seconds per step, median of {args.repeats} runs of {args.steps} steps; cpus: {os.cpu_count()}")
        print("| load | threads | OMP_WAIT_POLICY | s/step |")
        print("|---|---|---|---|")
        for load in ("idle", "one core busy"):
            burner = None
            if load != "idle":
                burner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
            try:
                for threads in (1, 2):
                    for policy in (None, "PASSIVE"):
                        times = [seconds_per_step(out, threads, policy, args.steps, cache) for _ in range(args.repeats)]
                        print(f"| {load} | {threads} | {policy or 'default'} | {statistics.median(times):.3f} |",
                              flush=True)
            finally:
                if burner is not None:
                    burner.kill()


if __name__ == "__main__":
    main()
