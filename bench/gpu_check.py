"""`python -m bench gpu-check`: one prepared command that proves the CUDA paths on one GPU (≈ 8 minutes).

1. Agreement of every CUDA fast path with its CPU or reference path, values and gradients, each with
   its stated tolerance (`TOLERANCES`): mamba-ssm's fused selective scan against the project's CPU
   scan kernel (the scan alone and the whole bidirectional mixer, whose CUDA path flips the sequence
   where the CPU path scans backwards); xformers attention against SDPA (fp32 and bf16); HRM's
   segment on CUDA in fp32 against the same weights on CPU; bf16 autocast against fp32 on CUDA.
2. One training step of every registered model at the `paper` preset on Sudoku (sized to HRM as a
   run is), on synthetic tokens of the task's shape: seconds per step (CUDA events), peak memory, MFU.
3. A short `paper`-preset HRM run on Maze-Hard 30×30 through the real runner (generated data, a
   few dozen steps, evaluation on 256 test mazes).

It writes `<out>/<UTC time>.json` and `.md`. Exit codes: 0 = every check that ran passed, or there is
no GPU (one line says so, nothing is run or written); 1 = a check failed (the record names it). A
check whose optional package is missing (the `cuda` extra: mamba-ssm, xformers) is recorded as
skipped, with the reason. CUDA-only packages are imported inside the checks, never at import time.
"""
from __future__ import annotations

import copy
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import torch

EXIT_OK, EXIT_FAILED = 0, 1
# (rule, rtol, atol): "close" = every element within atol + rtol·|reference| (torch.allclose's rule);
# "relative" = ‖candidate − reference‖ / ‖reference‖ ≤ rtol, for bf16, whose rounding no elementwise
# bound describes well.
TOLERANCES: dict[str, tuple[str, float, float]] = {
    "fp32_kernel": ("close", 2e-3, 2e-4),        # different fp32 kernels, different summation orders
    "fp32_attention": ("close", 1e-4, 1e-5),
    "fp32_device": ("close", 1e-3, 1e-4),        # CPU vs CUDA, TF32 off
    "bf16": ("relative", 3e-2, 0.0),
}


# ------------------------------------------------------------------ the comparison (CPU-testable)
def agreement(name: str, reference: dict[str, torch.Tensor], candidate: dict[str, torch.Tensor],
              tolerance: str) -> dict[str, Any]:
    """Compare two dicts of tensors (values and gradients) under a named tolerance; one record.

    `worst` is the largest error as a fraction of what the tolerance allows (≤ 1 passes)."""
    rule, rtol, atol = TOLERANCES[tolerance]
    record: dict[str, Any] = {"check": name, "tolerance": {"name": tolerance, "rule": rule, "rtol": rtol, "atol": atol},
                              "tensors": {}, "problems": []}
    if set(reference) != set(candidate):
        record["problems"].append(f"different tensors: {sorted(set(reference) ^ set(candidate))}")
    worst = 0.0
    for key in sorted(set(reference) & set(candidate)):
        ref, got = reference[key].double().cpu(), candidate[key].double().cpu()
        if ref.shape != got.shape:
            record["problems"].append(f"{key}: shape {tuple(got.shape)} != {tuple(ref.shape)}")
            continue
        if not torch.isfinite(got).all():
            record["problems"].append(f"{key}: not finite")
            continue
        error = (got - ref).abs()
        if rule == "close":
            ratio = float((error / (atol + rtol * ref.abs())).max()) if error.numel() else 0.0
        else:
            ratio = float(error.norm() / ref.norm().clamp_min(1e-30)) / rtol
        record["tensors"][key] = {"max_abs_error": float(error.max()) if error.numel() else 0.0, "ratio": ratio}
        worst = max(worst, ratio)
    record["worst"] = worst
    record["status"] = "passed" if not record["problems"] and worst <= 1.0 else "failed"
    return record


def values_and_gradients(module: torch.nn.Module, forward: Callable[[torch.nn.Module], torch.Tensor],
                         leaves: dict[str, torch.Tensor] | None = None, seed: int = 0) -> dict[str, torch.Tensor]:
    """The output of `forward(module)` and, after a backward of a fixed random projection of it, the
    gradients of every parameter and of the given leaf tensors; all on the CPU in float64."""
    module.zero_grad(set_to_none=True)
    output = forward(module)
    cotangent = torch.randn(output.shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    (output.double() * cotangent.to(output.device)).sum().backward()
    result = {"output": output.detach().double().cpu()}
    for name, parameter in module.named_parameters():
        if parameter.grad is not None:
            result[f"grad.{name}"] = parameter.grad.detach().double().cpu()
    for name, leaf in (leaves or {}).items():
        result[f"grad.{name}"] = leaf.grad.detach().double().cpu()
    return result


def _leaf(tensor: torch.Tensor, device: str) -> torch.Tensor:
    return tensor.detach().to(device).requires_grad_(True)


def _skipped(name: str, reason: str) -> dict[str, Any]:
    return {"check": name, "status": "skipped", "reason": reason}


# ------------------------------------------------------------------ 1. agreement of the fast paths
def check_selective_scan() -> dict[str, Any]:
    """mamba-ssm's fused scan (CUDA) vs the project's CPU kernel, values and gradients of x, Δ, A, B, C, D."""
    from models.mamba_ops import _mamba_ssm_scan, selective_scan

    fused = _mamba_ssm_scan()
    if fused is None:
        return _skipped("selective scan: mamba-ssm vs CPU kernel", "mamba-ssm is not installed (the `cuda` extra)")
    g = torch.Generator().manual_seed(0)
    batch, length, inner, state = 2, 81, 64, 16
    tensors = {"x": torch.randn(batch, length, inner, generator=g),
               "delta": torch.nn.functional.softplus(torch.randn(batch, length, inner, generator=g)),
               "A": -torch.rand(inner, state, generator=g) - 0.5, "B": torch.randn(batch, length, state, generator=g),
               "C": torch.randn(batch, length, state, generator=g), "D": torch.randn(inner, generator=g)}

    def run(device: str, scan: Callable) -> dict[str, torch.Tensor]:
        leaves = {k: _leaf(v, device) for k, v in tensors.items()}
        return values_and_gradients(torch.nn.Module(), lambda _: scan(**leaves), leaves)

    def cuda_scan(x, delta, A, B, C, D):   # mamba-ssm's layout: (batch, channels, length)
        return fused(x.transpose(1, 2), delta.transpose(1, 2), A, B.transpose(1, 2), C.transpose(1, 2), D).transpose(1, 2)

    return agreement("selective scan: mamba-ssm vs CPU kernel", run("cpu", selective_scan), run("cuda", cuda_scan),
                     "fp32_kernel")


def check_mamba_mixer() -> dict[str, Any]:
    """The bidirectional mixer: CPU kernels (backward direction scanned in reverse) vs its CUDA path
    (the sequence flipped; mamba-ssm's fused scan and gate, or mambapy's scan without mamba-ssm)."""
    from models.mamba_ops import BidirectionalMamba, _mamba_ssm_scan

    torch.manual_seed(0)
    mixer = BidirectionalMamba(hidden=64)
    u = torch.randn(2, 81, 64, generator=torch.Generator().manual_seed(1))

    def run(device: str) -> dict[str, torch.Tensor]:
        leaf = _leaf(u, device)
        return values_and_gradients(copy.deepcopy(mixer).to(device), lambda m: m(leaf), {"u": leaf})

    scan = "mamba-ssm" if _mamba_ssm_scan() is not None else "mambapy (mamba-ssm not installed)"
    return agreement(f"Mamba mixer: CUDA ({scan}) vs CPU kernels", run("cpu"), run("cuda"), "fp32_kernel")


def check_attention() -> list[dict[str, Any]]:
    """xformers' memory-efficient attention vs SDPA on CUDA, same weights, fp32 and bf16."""
    import importlib.util

    from models.blocks import Attention

    name = "attention: xformers vs SDPA"
    if importlib.util.find_spec("xformers") is None:
        return [_skipped(name, "xformers is not installed (the `cuda` extra)")]
    torch.manual_seed(0)
    sdpa = Attention(hidden=128, num_heads=4, backend="sdpa").cuda()
    xformers = copy.deepcopy(sdpa)
    xformers.backend = "xformers"
    x = torch.randn(4, 97, 128, generator=torch.Generator().manual_seed(1))
    records = []
    for dtype, tolerance in ((torch.float32, "fp32_attention"), (torch.bfloat16, "bf16")):
        def run(module):
            leaf = _leaf(x, "cuda")
            with torch.autocast("cuda", dtype=dtype, enabled=dtype != torch.float32):
                return values_and_gradients(module, lambda m: m(leaf), {"x": leaf})
        records.append(agreement(f"{name} ({str(dtype).removeprefix('torch.')})", run(sdpa), run(xformers), tolerance))
    return records


def _small_hrm():
    from models.registry import create_model
    from tasks.protocol import TaskSpec

    torch.manual_seed(0)
    spec = TaskSpec(vocab_size=11, seq_len=81)
    model = create_model("hrm", spec, hidden=128, num_heads=4, high_layers=2, low_layers=2)
    g = torch.Generator().manual_seed(1)
    batch = {"inputs": torch.randint(1, 11, (8, 81), generator=g), "labels": torch.randint(2, 11, (8, 81), generator=g),
             "puzzle_ids": torch.zeros(8, dtype=torch.long)}
    return model, batch


def _hrm_segment(model, batch, device: str, dtype: torch.dtype | None) -> dict[str, torch.Tensor]:
    model = copy.deepcopy(model).to(device)
    batch = {k: v.to(device) for k, v in batch.items()}

    def forward(m):
        with torch.autocast(device, dtype=dtype or torch.float32, enabled=dtype is not None):
            return m(m.initial_carry(batch), batch)[1]["logits"].float()
    return values_and_gradients(model, forward)


def check_hrm_device_and_autocast() -> list[dict[str, Any]]:
    """HRM's segment (SDPA's CUDA kernels, the one-step gradient) on CUDA fp32 vs CPU fp32, and bf16
    autocast vs fp32 on CUDA: logits and every parameter's gradient."""
    model, batch = _small_hrm()
    tf32 = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    try:
        cpu, cuda = _hrm_segment(model, batch, "cpu", None), _hrm_segment(model, batch, "cuda", None)
        bf16 = _hrm_segment(model, batch, "cuda", torch.bfloat16)
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = tf32
    return [agreement("HRM segment: CUDA fp32 vs CPU fp32", cpu, cuda, "fp32_device"),
            agreement("HRM segment: CUDA bf16 autocast vs CUDA fp32", cuda, bf16, "bf16")]


# ------------------------------------------------------------------ 2. a training step of every model
def train_step_record(model_name: str, task_name: str = "sudoku", preset: str = "paper", device: str = "cuda",
                      timed_steps: int = 3, overrides: tuple[str, ...] = ()) -> dict[str, Any]:
    """One model at a preset (sized as a run is) on synthetic tokens of the task's shape: the first step
    counts FLOPs and warms up, then `timed_steps` are timed; median seconds, peak memory, MFU."""
    from bench.matching import prepare, sizing_spec
    from bench.measure import Stopwatch, count_flops, peak_flops, peak_memory_bytes, reset_peak_memory
    from bench.sampling import Sampler
    from bench.trainer import Trainer
    from models.registry import create_model
    from tasks.protocol import TaskData

    run = prepare(model_name, task_name, preset, overrides, device=device)
    spec = sizing_spec(run)
    torch.manual_seed(0)
    model = create_model(model_name, spec, **vars(run.model))
    rows, g = 2 * run.train.batch_size, torch.Generator().manual_seed(0)
    data = TaskData(torch.randint(1, spec.vocab_size, (rows, spec.seq_len), generator=g),
                    torch.randint(1, spec.vocab_size, (rows, spec.seq_len), generator=g),
                    torch.zeros(rows, dtype=torch.long))
    reset_peak_memory(device)
    trainer = Trainer(model, spec, run.train, device, progress=False)
    trainer.sampler = Sampler(rows, 0)
    with count_flops() as counted:
        trainer.train_step(data)
    seconds = []
    for _ in range(timed_steps):
        with Stopwatch(device) as watch:
            trainer.train_step(data)
        seconds.append(watch.elapsed)
    median = statistics.median(seconds)
    peak = peak_flops(device)
    return {"model": model_name, "task": task_name, "preset": preset, "params": model.parameter_counts()["params"],
            "batch_size": run.train.batch_size, "seq_len": spec.seq_len, "flops_per_step": counted["flops"],
            "seconds_per_step": median, "seconds": seconds, **peak_memory_bytes(device),
            "mfu": counted["flops"] / median / peak["peak_flops"], "peak_source": peak["peak_source"]}


def check_model_steps(device: str = "cuda") -> list[dict[str, Any]]:
    from models.registry import model_names

    records = []
    for name in model_names():
        try:
            records.append({"check": f"train step: {name}", "status": "passed", **train_step_record(name, device=device)})
        except Exception as error:   # one model's failure (an OOM, a kernel error) must not hide the others
            records.append({"check": f"train step: {name}", "status": "failed", "error": f"{type(error).__name__}: {error}"})
        torch.cuda.empty_cache()
    return records


# ------------------------------------------------------------------ 3. a short paper-preset HRM run
SHORT_RUN = ("train.steps=40", "task.test_size=256", "train.eval_every=0", "train.checkpoint_every=1000",
             "train.diagnostics_examples=0")


def check_short_run() -> dict[str, Any]:
    from bench.matching import prepare
    from bench.runner import execute

    run = prepare("hrm", "maze", "paper", SHORT_RUN, device="cuda")
    with tempfile.TemporaryDirectory() as folder:
        summary = execute(run, folder, progress=False)
    train = summary["train"]
    return {"check": "short paper run: hrm on maze", "status": "passed" if summary["status"] == "complete" else "failed",
            "overrides": list(SHORT_RUN), "exact_accuracy": summary["exact_accuracy"],
            "token_accuracy": summary["token_accuracy"], "train_seconds": train["seconds"],
            "seconds_per_step": train["seconds"] / train["steps"], "mfu": summary["mfu"]["train"],
            "peak_memory_bytes": summary["memory"]["peak_memory_bytes"], "final_loss": train["final_loss"]}


# ------------------------------------------------------------------ the record
def markdown(record: dict[str, Any]) -> str:
    lines = [f"# gpu-check {record['started']}", "", f"{record['device']} · torch {record['torch']} · "
             f"{record['seconds']:.0f} s · **{record['verdict']}**", "", "| check | status | detail |", "|---|---|---|"]
    for check in record["checks"]:
        if "worst" in check:
            detail = f"worst error {check['worst']:.3g} × allowed ({check['tolerance']['name']})"
            detail += "; " + "; ".join(check["problems"]) if check["problems"] else ""
        elif "seconds_per_step" in check:
            mfu = f"{check['mfu']:.1%}" if isinstance(check.get("mfu"), float) else "n/a"
            detail = (f"{check['seconds_per_step'] * 1e3:.1f} ms/step, {check['peak_memory_bytes'] / 2**30:.2f} GiB "
                      f"peak, MFU {mfu}")
            if "exact_accuracy" in check:
                detail += f", test exact {check['exact_accuracy']:.3f}, final loss {check['final_loss']:.3f}"
        else:
            detail = check.get("reason") or check.get("error") or ""
        lines.append(f"| {check['check']} | {check['status']} | {detail} |")
    return "\n".join(lines) + "\n"


def write_record(record: dict[str, Any], out: Path) -> tuple[Path, Path]:
    from tasks.files import atomic_write_bytes

    out.mkdir(parents=True, exist_ok=True)
    stem = out / record["started"].replace(":", "").replace("-", "")
    paths = stem.with_suffix(".json"), stem.with_suffix(".md")
    atomic_write_bytes(paths[0], json.dumps(record, indent=1, default=str).encode())
    atomic_write_bytes(paths[1], markdown(record).encode())
    return paths


def main(out: Path) -> int:
    if not torch.cuda.is_available():
        print("gpu-check: no GPU (torch.cuda.is_available() is False); nothing was run or written")
        return EXIT_OK
    started, clock = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), time.perf_counter()
    checks: list[dict[str, Any]] = []
    for step in (check_selective_scan, check_mamba_mixer, check_attention, check_hrm_device_and_autocast,
                 check_model_steps, check_short_run):
        try:
            result = step()
        except Exception as error:
            result = {"check": step.__name__, "status": "failed", "error": f"{type(error).__name__}: {error}"}
        checks.extend(result if isinstance(result, list) else [result])
        print(f"gpu-check: {step.__name__} done ({time.perf_counter() - clock:.0f} s)", flush=True)
    failed = [c["check"] for c in checks if c["status"] == "failed"]
    record = {"started": started, "device": torch.cuda.get_device_name(), "torch": torch.__version__,
              "cuda": torch.version.cuda, "seconds": time.perf_counter() - clock,
              "verdict": f"{len(failed)} failed" if failed else "all passed", "failed": failed, "checks": checks}
    json_path, md_path = write_record(record, out)
    print(f"gpu-check: {record['verdict']}; wrote {json_path} and {md_path}")
    return EXIT_FAILED if failed else EXIT_OK
