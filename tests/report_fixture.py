"""A fixture results/ tree for the report tests (and for looking at a full report without GPUs).

Numbers are synthetic but shaped like real summaries (bench/runner.py + bench/analysis.py): three
seeds of a transformer and of HRM on maze, one seed of a looped transformer, one diverged HRM seed,
plus a corrupt file, a partial summary and a still-running run that the report must skip.

    python tests/report_fixture.py OUT_DIR     # writes OUT_DIR/<run_id>/summary.json …
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np


def _summary(model: str, seed: int, accuracy: float, params: int, flops: float, *, segments: int = 1,
             knob: str | None = None, states: tuple[str, ...] = (), act: bool = False, diverged: bool = False,
             rng: np.random.Generator) -> dict:
    run_id = f"maze-{model}-cpu-s{seed}-fixture"
    config = {"model_name": model, "task_name": "maze", "preset": "cpu", "device": "cpu",
              "model": {"hidden": 128}, "task": {"grid": 8}, "train": {"seed": seed, "segments": segments}}
    steps = np.arange(10, 610, 10)
    loss = 2.0 * np.exp(-steps / (150 + 40 * seed)) + 0.1 + 0.02 * rng.random(len(steps))
    curve = [{"step": int(s), "loss": float(l), "exact_accuracy": float(accuracy * (1 - np.exp(-s / 200)))}
             for s, l in zip(steps, loss)]
    base = {"schema": 1, "run_id": run_id, "config_hash": f"{model}{seed}", "model": model, "task": "maze",
            "preset": "cpu", "seed": seed, "device": "cpu", "config": config, "params": params,
            "puzzle_emb_params": 0}
    if diverged:
        return {**base, "status": "diverged", "diverged_step": 120, "diverged_value": "nan",
                "train": {"steps": 120, "curve": curve[:12]}}
    noise = lambda scale: float(np.clip(rng.normal(0, scale), -0.2, 0.2))  # noqa: E731
    diagnostics: dict = {"examples": 256, "test_time_compute": {}, "fixed_point": {}}
    if knob:
        trained = segments if knob == "segments" else 4
        points = [2 ** i for i in range(8) if 2 ** i <= 4 * trained]
        diagnostics["test_time_compute"][knob] = {"trained": trained, "points": [
            {"x": x, "exact_accuracy": float(np.clip(accuracy * min(1.0, (x / trained) ** 0.5) + noise(0.02), 0, 1)),
             "token_accuracy": 0.9, "flops_per_example": flops / trained * x} for x in points]}
    if states:
        diagnostics["fixed_point"][knob or "segments"] = {"at": 16, "segments": 16, "residuals": {
            state: [float(0.8 * (0.6 + 0.1 * i) ** k + 0.01 * rng.random()) for k in range(12)]
            for i, state in enumerate(states)}}
        if knob and knob.startswith("model."):   # a loop from a zero state: first residual undefined
            diagnostics["fixed_point"][knob]["residuals"]["z"][0] = None
    if act:
        diagnostics["act"] = {"segments": 8, "learned": {"exact_accuracy": accuracy, "mean_segments": 4.2},
                              "fixed": {"exact_accuracy": accuracy - 0.02, "mean_segments": 8.0},
                              "oracle": {"exact_accuracy": min(1.0, accuracy + 0.1), "mean_segments": 2.5},
                              "segments_histogram": {str(k): int(v) for k, v in
                                                     zip(range(1, 9), rng.multinomial(256, [1 / 8] * 8))}}
    splits = {"test": accuracy, "test_grid12": accuracy * 0.6, "test_grid16": accuracy * 0.3}
    metrics = {name: {"exact_accuracy": value, "token_accuracy": 0.9, "examples_per_second": 900.0 + 50 * seed}
               for name, value in splits.items()}
    data = {"train_examples": 2000, **{f"{name}_examples": 256 for name in splits}}
    return {**base, "status": "complete", "metrics": metrics, "data": data, "exact_accuracy": accuracy, "token_accuracy": 0.9,
            "curves": {"grid": [{"x": x, "split": s, "exact_accuracy": splits[s], "token_accuracy": 0.9}
                                for x, s in ((8, "test"), (12, "test_grid12"), (16, "test_grid16"))]},
            "train": {"steps": 600, "seconds": 100.0 + 7 * seed, "flops_total": 3e13, "flops_per_second": 3e11,
                      "curve": curve},
            "inference": {"flops_per_example": flops, "segments": segments, "examples_per_second": 900.0 + 50 * seed},
            "mfu": {"peak_flops": 2e11, "train": 0.3, "eval": 0.1},
            "environment": {"device": "cpu", "device_name": "Intel(R) Xeon(R) Fixture CPU @ 2.0GHz"},
            "diagnostics": diagnostics}


def write_fixture(root: Path) -> Path:
    root = Path(root)
    rng = np.random.default_rng(0)
    summaries = []
    for seed, accuracy in enumerate((0.31, 0.35, 0.28)):
        summaries.append(_summary("transformer", seed, accuracy, 1_200_000, 2e8, segments=2, knob="segments",
                                  states=("carry.z",), rng=rng))
    for seed, accuracy in enumerate((0.71, 0.74, 0.69)):
        summaries.append(_summary("hrm", seed, accuracy, 1_300_000, 8e8, segments=8, knob="segments",
                                  states=("z_high", "z_low", "carry.z_high"), act=True, rng=rng))
    summaries.append(_summary("hrm", 3, 0.0, 1_300_000, 8e8, segments=8, diverged=True, rng=rng))
    summaries.append(_summary("looped", 0, 0.52, 400_000, 5e8, knob="model.eval_loops", states=("z",), rng=rng))
    for summary in summaries:
        path = root / summary["run_id"] / "summary.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(summary, indent=1))
    (root / "corrupt-run").mkdir(parents=True, exist_ok=True)
    (root / "corrupt-run" / "summary.json").write_text('{"status": "complete", "config": {')
    partial = {**summaries[0], "run_id": "partial-run"}
    del partial["metrics"]
    (root / "partial-run").mkdir(parents=True, exist_ok=True)
    (root / "partial-run" / "summary.json").write_text(json.dumps(partial))
    running = {k: summaries[0][k] for k in ("schema", "model", "task", "config", "seed")}
    (root / "running-run").mkdir(parents=True, exist_ok=True)
    (root / "running-run" / "summary.json").write_text(json.dumps({**running, "status": "running",
                                                                    "run_id": "running-run"}))
    return root


if __name__ == "__main__":
    print(write_fixture(Path(sys.argv[1])))
