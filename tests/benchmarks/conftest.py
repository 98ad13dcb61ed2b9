"""Speed-regression plumbing: in-process reference workloads and a committed baseline.

Machines differ and are noisy, so each model's median time is divided by the median time of a fixed
reference step measured right beside it: forward + backward of torch's own two-layer
`TransformerEncoder` (not this suite's code) at the benchmarks' small size. A 1024² matmul was the
divisor before; it tracks peak arithmetic but not the dispatcher and memory costs that dominate these
small steps: on a 2-core Intel Xeon machine, against a baseline made on AMD EPYC, every model ran
≈ 1.7× slower relative to the matmul and looked like it had regressed. That *normalised* time is compared with `speed_baseline.json` (committed)
within `TOLERANCE`. The matmul stays as the peak for MFU. Every benchmark runs at one thread (`THREADS`),
the study's and `bench run`'s default. Refresh the baseline after an intended change:

    python -m pytest tests/benchmarks --update-speed-baseline
"""
from __future__ import annotations

import json
import time
import timeit
from pathlib import Path

import pytest
import torch

BASELINE_PATH = Path(__file__).with_name("speed_baseline.json")
TOLERANCE = 1.0        # fail when normalised time exceeds baseline × (1 + TOLERANCE): 2× slower
RETRIES = 3            # remeasurements before a slow step counts as a regression (see assert_speed)
# One thread for every timed step. At torch's default (2 here) a timing depended on the other core's
# load and on the test order: collecting `bench.cli` sets OMP_WAIT_POLICY=PASSIVE after torch has
# loaded, so Mamba's kernels split over 2 helper threads (models/mamba_ops.py `kernel_threads`) while
# torch's OpenMP workers spin, and a clean-clone CI run measured Mamba's maze forward at 2.02× its
# baseline (3.12× on addition once, before the kernels ran in the calling thread by default).
THREADS = 1
REFERENCE_SIZE = 1024  # the reference matmul is REFERENCE_SIZE² × REFERENCE_SIZE², fp32


def _median_seconds(fn, repeats: int = 15) -> float:
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return sorted(times)[len(times) // 2]


@pytest.fixture(scope="session", autouse=True)
def one_thread():
    """Every benchmark in this folder, its reference step included, runs at `THREADS` threads."""
    threads = torch.get_num_threads()
    torch.set_num_threads(THREADS)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def reference_matmul() -> dict[str, float]:
    """Seconds and FLOP/s of a fixed fp32 matmul, measured in this process: the fastest of 15 calls,
    since a peak is what the machine can do (a clean-clone CI run once measured its median 2.45×
    slower than a minute later, and every MFU of that session with it)."""
    return matmul_peak()


@pytest.fixture(scope="session")
def measure_matmul_peak():
    """The same measurement as `reference_matmul`, taken again when called (to check a surprise)."""
    return matmul_peak


def matmul_peak(repeats: int = 15) -> dict[str, float]:
    a = torch.randn(REFERENCE_SIZE, REFERENCE_SIZE)
    b = torch.randn(REFERENCE_SIZE, REFERENCE_SIZE)
    torch.mm(a, b)
    seconds = min(timeit.repeat(lambda: torch.mm(a, b), number=1, repeat=repeats))
    return {"seconds": seconds, "flops_per_second": 2 * REFERENCE_SIZE ** 3 / seconds, "size": REFERENCE_SIZE}


@pytest.fixture(scope="session")
def reference_step():
    """A callable: median seconds of one forward + backward of torch's TransformerEncoder (2 layers,
    width 64, 4 heads, batch 16 × 82 tokens). Each check measures it again (≈ 0.3 s), next to the
    model it divides, because this shared machine's speed drifts by up to 40% within minutes."""
    generator = torch.Generator().manual_seed(0)
    layer = torch.nn.TransformerEncoderLayer(64, 4, 256, dropout=0.0, batch_first=True)
    encoder = torch.nn.TransformerEncoder(layer, 2, enable_nested_tensor=False)
    tokens = torch.randn(16, 82, 64, generator=generator)

    def step():
        encoder.zero_grad(set_to_none=True)
        encoder(tokens).square().mean().backward()

    return lambda: _median_seconds(step)


@pytest.fixture(scope="session")
def speed_baseline(request):
    """dict key → normalised time; written back at session end with --update-speed-baseline."""
    stored = json.loads(BASELINE_PATH.read_text()) if BASELINE_PATH.exists() else {}
    measured: dict[str, float] = {}
    yield {"stored": stored, "measured": measured, "update": request.config.getoption("--update-speed-baseline")}
    if request.config.getoption("--update-speed-baseline") and measured:
        stored.update({k: round(v, 4) for k, v in measured.items()})
        BASELINE_PATH.write_text(json.dumps(dict(sorted(stored.items())), indent=2) + "\n")


@pytest.fixture
def assert_speed(reference_step, speed_baseline):
    """assert_speed(key, median_seconds, workload): compare the normalised time with the committed
    baseline. Over the tolerance, `workload` (one call = one step) is timed again beside a fresh
    reference, up to RETRIES times: a transient slowdown of the shared machine (seen lasting one
    measurement, then gone) is not a regression; a step slow in every measurement is."""

    def check(key: str, seconds: float, workload=None) -> float:
        normalised = seconds / reference_step()
        if speed_baseline["update"]:
            speed_baseline["measured"][key] = normalised
            return normalised
        baseline = speed_baseline["stored"].get(key)
        assert baseline is not None, f"no speed baseline for {key}: run pytest tests/benchmarks --update-speed-baseline"
        for _ in range(RETRIES if workload is not None else 0):
            if normalised <= baseline * (1 + TOLERANCE):
                break
            normalised = min(normalised, _median_seconds(workload, repeats=5) / reference_step())
        assert normalised <= baseline * (1 + TOLERANCE), (
            f"{key} is {normalised / baseline:.2f}× its baseline (normalised {normalised:.2f} vs {baseline:.2f})")
        return normalised

    return check
