"""The one instrument every model is measured with: FLOPs, time, memory, environment.

FLOPs come from `torch.utils.flop_counter.FlopCounterMode` wrapped around real work (a whole train
step with its backward and every no_grad call; a whole evaluation forward over all segments). It
counts matmuls and attention at 2 FLOPs per multiply-add and ignores elementwise ops. On CPU, SDPA
dispatches to `_scaled_dot_product_flash_attention_for_cpu`, which torch's registry lacks
(REFERENCE.md §7), so we register it here with the registry's own SDPA formulas.
"""
from __future__ import annotations

import functools
import os
import platform
import resource
import subprocess
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator

import torch
from torch.utils import flop_counter
from torch.utils.flop_counter import FlopCounterMode

_REPO = Path(__file__).resolve().parent.parent


def _register_cpu_attention_formulas() -> None:
    aten = torch.ops.aten
    forward = getattr(aten, "_scaled_dot_product_flash_attention_for_cpu", None)
    backward = getattr(aten, "_scaled_dot_product_flash_attention_for_cpu_backward", None)
    registry = flop_counter.flop_registry
    if forward is not None and forward.default not in registry:
        @flop_counter.register_flop_formula(forward)
        def _forward(query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs) -> int:
            return flop_counter.sdpa_flop_count(query_shape, key_shape, value_shape)

    if backward is not None and backward.default not in registry:
        @flop_counter.register_flop_formula(backward)
        def _backward(grad_out_shape, query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs) -> int:
            return flop_counter.sdpa_backward_flop_count(grad_out_shape, query_shape, key_shape, value_shape)


_register_cpu_attention_formulas()


def _grouped_convolution_backward_flops(grad_out_shape, x_shape, w_shape, _bias, _stride, _padding, _dilation,
                                        transposed, _output_padding, _groups, output_mask, out_shape,
                                        **kwargs) -> int:
    """torch's formula counts the weight gradient as a dense conv across all channels, ignoring groups: a
    depthwise conv's backward came out ≈ 150× its forward (Mamba's conv, width 4, 148 channels). The
    weight gradient does exactly the forward's multiplies, grouped or not; the input gradient keeps
    torch's count (it uses the weight's shape, which already has in_channels / groups)."""
    flops = 0
    if output_mask[0]:
        grad_input_shape = flop_counter.get_shape(out_shape[0])
        flops += flop_counter.conv_flop_count(grad_out_shape, w_shape, grad_input_shape, not transposed)
    if output_mask[1]:
        flops += flop_counter.conv_flop_count(x_shape, w_shape, grad_out_shape, transposed)
    return flops


flop_counter.flop_registry[torch.ops.aten.convolution_backward] = \
    flop_counter.shape_wrapper(_grouped_convolution_backward_flops)

# Analytic FLOP counts for work FlopCounterMode cannot see (e.g. a selective scan): code that runs
# such work calls `add_uncounted_flops(n)` and the active counter adds it.
_extra_flops: list[int] = []


def add_uncounted_flops(count: int) -> None:
    if _extra_flops:
        _extra_flops[-1] += int(count)


class _TotalsOnly:
    """Stands in for FlopCounterMode's ModuleTracker: every count goes to "Global" (we read totals only).

    The tracker's multi-grad hooks break `torch.autograd.grad` called during a backward (open
    pytorch#131753), which is how torchdeq's implicit-differentiation gradient works.
    """

    parents = {"Global"}

    def __enter__(self) -> "_TotalsOnly":
        return self

    def __exit__(self, *exc) -> None:
        return None


@contextmanager
def count_flops() -> Iterator[dict[str, int]]:
    """`with count_flops() as result: ...` → result['flops'] after the block."""
    result: dict[str, int] = {}
    _extra_flops.append(0)
    mode = FlopCounterMode(display=False)
    mode.mod_tracker = _TotalsOnly()
    try:
        with mode:
            yield result
    finally:
        extra = _extra_flops.pop()
        result["flops"] = int(mode.get_total_flops()) + extra
        result["uncounted_flops_added"] = extra


def flops_of(fn: Callable[[], Any]) -> int:
    with count_flops() as result:
        fn()
    return result["flops"]


def synchronize(device: torch.device | str) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


class Stopwatch:
    """Seconds of a block. On CPU: wall clock. On CUDA: CUDA events recorded on the current stream
    around the block, read after synchronising on the end event, so queued GPU work is included and
    host-side overhead before the first kernel is not. (The CUDA path is untested on the CPU-only
    development machines.)"""

    def __init__(self, device: torch.device | str = "cpu"):
        self.device = device
        self.elapsed = 0.0
        self._start: float | None = None
        self._events: tuple[Any, Any] | None = None

    def __enter__(self) -> "Stopwatch":
        if torch.device(self.device).type == "cuda":
            self._events = (torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True))
            self._events[0].record()
        else:
            self._start = time.perf_counter()
        return self

    def __exit__(self, *exc) -> None:
        if self._events is not None:
            start, end = self._events
            end.record()
            end.synchronize()
            self.elapsed += start.elapsed_time(end) / 1e3   # elapsed_time is in milliseconds
            self._events = None
        else:
            self.elapsed += time.perf_counter() - self._start


# Dense (no sparsity) bf16 tensor-core peaks from the vendors' datasheets, matched in order against
# torch.cuda.get_device_name(); more specific names first ("H100 PCIe" before "H100").
BF16_PEAK_FLOPS: tuple[tuple[str, float], ...] = (
    ("H100 PCIe", 756e12), ("H100 NVL", 835e12), ("H200 NVL", 835e12), ("GH200", 989e12),
    ("H100", 989e12), ("H200", 989e12), ("B200", 2250e12), ("A100", 312e12), ("L40S", 362e12),
    ("L4", 121e12),
)


@functools.lru_cache(maxsize=None)
def matmul_flops_per_second(device: str, dtype: torch.dtype = torch.float32, size: int = 1024,
                            repeats: int = 3) -> float:
    """Best-of-`repeats` throughput of a size×size matmul in this process (after one warm-up).
    Cached per process, so many runs in one process measure once."""
    a = torch.randn(size, size, device=device, dtype=dtype)
    b = torch.randn(size, size, device=device, dtype=dtype)
    torch.mm(a, b)
    best = float("inf")
    for _ in range(repeats):
        with Stopwatch(device) as watch:
            torch.mm(a, b)
        best = min(best, watch.elapsed)
    return 2 * size ** 3 / max(best, 1e-12)


def peak_flops(device: torch.device | str) -> dict[str, Any]:
    """The denominator of MFU. CUDA: the device's bf16 datasheet peak (a measured bf16 matmul when the
    device is not in the table). CPU: a large fp32 matmul measured in this process (REFERENCE.md §6)."""
    device = torch.device(device)
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
        for pattern, peak in BF16_PEAK_FLOPS:
            if pattern in name:
                return {"peak_flops": peak, "peak_source": f"datasheet bf16 dense ({pattern})"}
        with torch.random.fork_rng(devices=[device]):
            measured = matmul_flops_per_second(str(device), torch.bfloat16, 8192)
        return {"peak_flops": measured, "peak_source": "measured bf16 8192² matmul"}
    with torch.random.fork_rng(devices=[]):
        measured = matmul_flops_per_second("cpu", torch.float32, 1024)
    return {"peak_flops": measured, "peak_source": f"measured fp32 1024² matmul, {torch.get_num_threads()} threads"}


def model_flops_utilisation(device: torch.device | str, train_flops_per_second: float | None,
                            eval_flops_per_second: float | None) -> dict[str, Any]:
    """MFU of training and of evaluation: achieved FLOP/s (counted FLOPs ÷ measured seconds) ÷ peak."""
    peak = peak_flops(device)
    def ratio(achieved: float | None) -> float | None:
        return None if not achieved or not peak["peak_flops"] else achieved / peak["peak_flops"]
    return {**peak, "train": ratio(train_flops_per_second), "eval": ratio(eval_flops_per_second)}


def reset_peak_memory(device: torch.device | str) -> None:
    """Start a run's CUDA peak from zero (several seeds may run in one process). The CPU figure is
    the process's peak RSS, which cannot be reset."""
    if torch.device(device).type == "cuda":
        torch.cuda.reset_peak_memory_stats()


def peak_memory_bytes(device: torch.device | str) -> dict[str, Any]:
    if torch.device(device).type == "cuda":
        return {"peak_memory_bytes": int(torch.cuda.max_memory_allocated()), "peak_memory_source": "cuda_allocator"}
    # ru_maxrss is in KiB on Linux: the whole process's peak resident set
    return {"peak_memory_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
            "peak_memory_source": "process_rss"}


def git_commit() -> dict[str, Any]:
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=_REPO, capture_output=True, text=True,
                                timeout=10).stdout.strip()
        dirty = bool(subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=_REPO,
                                    capture_output=True, text=True, timeout=10).stdout.strip())
    except (OSError, subprocess.SubprocessError):
        return {"git_commit": "unknown", "git_dirty": None}
    return {"git_commit": commit or "unknown", "git_dirty": dirty if commit else None}


def environment(device: torch.device | str) -> dict[str, Any]:
    import numpy

    info: dict[str, Any] = {
        "device": str(device),
        "device_name": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "torch": torch.__version__,
        "numpy": numpy.__version__,
    }
    if torch.device(device).type == "cuda":
        info["device_name"] = torch.cuda.get_device_name()
        info["cuda"] = torch.version.cuda
    else:
        try:
            for line in Path("/proc/cpuinfo").read_text().splitlines():
                if line.startswith("model name"):
                    info["device_name"] = line.split(":", 1)[1].strip()
                    break
        except OSError:
            pass
    for package in ("torchdeq", "mambapy", "mamba_ssm", "xformers"):
        try:
            module = __import__(package)
            info[package] = getattr(module, "__version__", "installed")
        except Exception:
            continue
    info.update(git_commit())
    return info
