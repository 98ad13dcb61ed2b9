"""`bench report`: read every run under results/ and write reports/index.md.

Corrupt or partial summaries are skipped with a warning naming the file; the report never crashes on
them. Runs that diverged are listed with the step where they did.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from bench.results import atomic_write_bytes, iter_summaries


def load_runs(results: Path) -> tuple[pd.DataFrame, list[str]]:
    rows: list[dict[str, Any]] = []
    warnings: list[str] = []
    for path, summary, problem in iter_summaries(results):
        if summary is None:
            warnings.append(f"skipped {problem}")
            continue
        if summary.get("status") == "running":
            warnings.append(f"skipped {path}: run still running or interrupted")
            continue
        train = summary.get("train") or {}
        inference = summary.get("inference") or {}
        rows.append({
            "task": summary.get("task"), "model": summary.get("model"), "preset": summary.get("preset"),
            "seed": summary.get("seed"), "status": summary.get("status"),
            "exact_accuracy": summary.get("exact_accuracy"), "token_accuracy": summary.get("token_accuracy"),
            "params": summary.get("params"), "puzzle_emb_params": summary.get("puzzle_emb_params"),
            "train_flops": train.get("flops_total"), "inference_flops_per_example": inference.get("flops_per_example"),
            "train_seconds": train.get("seconds"), "eval_examples_per_second": inference.get("examples_per_second"),
            "device": summary.get("device"), "run_id": summary.get("run_id"),
            "diverged_step": summary.get("diverged_step"),
        })
    return pd.DataFrame(rows), warnings


def _format(frame: pd.DataFrame) -> pd.DataFrame:
    shown = frame.copy()
    for column in ("exact_accuracy", "token_accuracy"):
        shown[column] = shown[column].map(lambda v: "—" if pd.isna(v) else f"{100 * v:.1f}%")
    for column in ("train_flops", "inference_flops_per_example"):
        shown[column] = shown[column].map(lambda v: "—" if pd.isna(v) else f"{v:.3g}")
    shown["params"] = shown["params"].map(lambda v: "—" if pd.isna(v) else f"{int(v):,}")
    shown["train_seconds"] = shown["train_seconds"].map(lambda v: "—" if pd.isna(v) else f"{v:.1f}")
    shown["eval_examples_per_second"] = shown["eval_examples_per_second"].map(lambda v: "—" if pd.isna(v) else f"{v:.1f}")
    return shown


def write_report(results: Path, out: Path) -> tuple[Path, list[str]]:
    frame, warnings = load_runs(results)
    lines = ["# recurrent-bench report", "", f"Runs read from `{results}`: {len(frame)}.", ""]
    if frame.empty:
        lines.append("No finished runs yet: `python -m bench run --model transformer --task maze`.")
    else:
        frame = frame.sort_values(["task", "model", "preset", "seed"], na_position="last")
        columns = ["task", "model", "preset", "seed", "status", "exact_accuracy", "token_accuracy", "params",
                   "train_flops", "inference_flops_per_example", "train_seconds", "eval_examples_per_second",
                   "device", "run_id"]
        lines += ["Every number below is a single seed unless the seed column shows several rows.", "",
                  _format(frame)[columns].to_markdown(index=False), ""]
        diverged = frame[frame["status"] == "diverged"]
        for _, row in diverged.iterrows():
            lines.append(f"- {row['run_id']} diverged at step {row['diverged_step']}.")
    if warnings:
        lines += ["", "## Skipped files", ""] + [f"- {w}" for w in warnings]
    path = Path(out) / "index.md"
    atomic_write_bytes(path, ("\n".join(lines) + "\n").encode())
    return path, warnings
