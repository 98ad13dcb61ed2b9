"""The one instrument every model is measured with: FLOPs, time, memory, environment.

FLOPs are counted around real work (a whole train step with its backward and every no_grad call; a
whole evaluation forward over all segments) by `count_flops`: a `TorchDispatchMode` that adds up, for
every op it sees, the formula torch's `flop_counter` registry holds for it (matmuls, convolutions,
attention, and the custom ops that register one, e.g. Mamba's scan), at 2 FLOPs per multiply-add;
elementwise ops are ignored. Two formulas are corrected per counter, never in torch's registry:
the CPU flash-attention ops (missing from torch's registry) and the grouped-conv backward (counted
as dense). `FlopCounterMode` itself is not used: its module tracker's hooks break
`torch.autograd.grad` called inside a backward (pytorch#131753), which is how torchdeq's implicit
gradient works. docs/reference.md (measurement) says more.
"""
from __future__ import annotations

import functools
import hashlib
import json
import os
import platform
import resource
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator

import torch
from torch.utils import flop_counter
from torch.utils._python_dispatch import TorchDispatchMode

_REPO = Path(__file__).resolve().parent.parent


def _cpu_attention_flops(query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs) -> int:
    return flop_counter.sdpa_flop_count(query_shape, key_shape, value_shape)


def _cpu_attention_backward_flops(grad_out_shape, query_shape, key_shape, value_shape, *args, out_shape=None,
                                  **kwargs) -> int:
    return flop_counter.sdpa_backward_flop_count(grad_out_shape, query_shape, key_shape, value_shape)


def _grouped_convolution_backward_flops(grad_out_shape, x_shape, w_shape, _bias, _stride, _padding, _dilation,
                                        transposed, _output_padding, _groups, output_mask, out_shape,
                                        **kwargs) -> int:
    """torch's formula counts the weight gradient as a dense conv across all channels, ignoring groups (a
    depthwise conv's backward came out ≈ 150× its forward). The weight gradient does exactly the
    forward's multiplies, grouped or not; the input gradient keeps torch's count (it uses the weight's
    shape, which already has in_channels / groups)."""
    flops = 0
    if output_mask[0]:
        grad_input_shape = flop_counter.get_shape(out_shape[0])
        flops += flop_counter.conv_flop_count(grad_out_shape, w_shape, grad_input_shape, not transposed)
    if output_mask[1]:
        flops += flop_counter.conv_flop_count(x_shape, w_shape, grad_out_shape, transposed)
    return flops


def _corrections() -> dict[Any, Callable]:
    aten = torch.ops.aten
    formulas = {aten.convolution_backward: _grouped_convolution_backward_flops}
    for name, formula in (("_scaled_dot_product_flash_attention_for_cpu", _cpu_attention_flops),
                          ("_scaled_dot_product_flash_attention_for_cpu_backward", _cpu_attention_backward_flops)):
        op = getattr(aten, name, None)
        if op is not None and op not in flop_counter.flop_registry:
            formulas[op] = formula
    return {op: flop_counter.shape_wrapper(formula) for op, formula in formulas.items()}


@functools.lru_cache(maxsize=2)
def _flop_counter_class(dynamo_loaded: bool) -> type:
    """The counting mode. torch wraps a mode's handler in dynamo's `disable` — importing torch._dynamo,
    seconds on 2 cores — unless the mode's `_should_skip_dynamo()` is False. That wrapper only matters
    when compiled code runs under the mode, which needs dynamo loaded already; so the class is made
    at first use, with the wrapper exactly when dynamo is there."""

    class FlopCounter(TorchDispatchMode):
        """Adds up the registered FLOP formula of every op dispatched inside it (totals only)."""

        @classmethod
        def _should_skip_dynamo(cls) -> bool:
            return dynamo_loaded

        def __init__(self):
            super().__init__()
            # read at entry: custom ops register their formulas when their module is imported
            self.formulas = {**flop_counter.flop_registry, **_corrections()}
            self.total = 0

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            kwargs = kwargs or {}
            out = func(*args, **kwargs)
            formula = self.formulas.get(func._overloadpacket)
            if formula is not None:
                self.total += formula(*args, **kwargs, out_val=out)
            return out

    return FlopCounter


@contextmanager
def count_flops() -> Iterator[dict[str, int]]:
    """`with count_flops() as result: ...` → result['flops'] after the block."""
    result: dict[str, int] = {}
    counter = _flop_counter_class("torch._dynamo" in sys.modules)()
    try:
        with counter:
            yield result
    finally:
        result["flops"] = int(counter.total)


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
    device is not in the table). CPU: a large fp32 matmul measured in this process."""
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


def cpu_identity() -> dict[str, Any]:
    """What decides a CPU run's floating-point results beyond config, seed and threads: the SIMD
    kernels torch dispatches to, the processor's exact model and microcode, and its instruction-set
    flags (hashed; the list is long). Same-host reruns are bit-identical; across hosts they can drift."""
    identity: dict[str, Any] = {"cpu_capability": torch.backends.cpu.get_cpu_capability(),
                                "kernel": platform.release()}
    try:
        first = Path("/proc/cpuinfo").read_text().split("\n\n", 1)[0]
    except OSError:
        return identity
    fields = dict(line.split(":", 1) for line in first.splitlines() if ":" in line)
    fields = {key.strip(): value.strip() for key, value in fields.items()}
    for key in ("model name", "cpu family", "model", "stepping", "microcode"):
        if key in fields:
            identity[key] = fields[key]
    if "flags" in fields:
        identity["flags_sha256"] = hashlib.sha256(" ".join(sorted(fields["flags"].split())).encode()).hexdigest()[:16]
    return identity


def host_id(info: dict[str, Any]) -> str:
    """A short hash of the device and CPU identity: runs with different ids may differ numerically
    even at the same config, seed and thread count."""
    keys = {"device_name": info.get("device_name"), "host": info.get("host"), "cuda": info.get("cuda"),
            "torch": info.get("torch")}
    return hashlib.sha256(json.dumps(keys, sort_keys=True).encode()).hexdigest()[:12]


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
        cpu = cpu_identity()
        info["device_name"] = cpu.pop("model name", None) or info["device_name"]
        info["host"] = cpu
    info["host_id"] = host_id(info)
    for package in ("torchdeq", "mambapy", "mamba_ssm", "xformers"):
        try:
            module = __import__(package)
            info[package] = getattr(module, "__version__", "installed")
        except Exception:
            continue
    info.update(git_commit())
    return info
