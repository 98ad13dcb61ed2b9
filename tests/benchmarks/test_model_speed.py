"""Speed regression for every registered model: one training step and one inference forward per
task family, at a fixed small configuration. `benchmark.extra_info` stores FLOPs, params and the
achieved FLOP/s; results are grouped per task. See conftest.py for the normalisation and baseline.

Reported goals (not asserted; see the README): training-step FLOP/s of the transformer at hidden 256
≥ 50% of the in-process fp32 matmul peak; HRM, TRM and looped within 1.5× of the transformer.
"""
from __future__ import annotations

import time
import timeit

import pytest
import torch

from bench.matching import prepare
from bench.measure import flops_of
from bench.runner import build
from bench.trainer import Sampler, Trainer
from models.registry import config_fields, get_model_entry, model_names
from tasks.registry import task_names

# One fixed small configuration per task family (only families whose task is registered run).
FAMILIES = {
    "maze": ["task.grid=8", "task.train_size=16", "task.test_size=8"],
    "sudoku": [],
    "addition": [],
}
SIZE = ["model.hidden=64", "model.num_heads=4", "train.batch_size=16", "train.segments=1", "train.act=false"]


def _cases():
    registered = set(task_names())
    return [(model, family) for family in FAMILIES if family in registered for model in model_names()]


def _setup(model_name: str, family: str, extra: list[str] = ()):
    fields = config_fields(get_model_entry(model_name).config)  # e.g. Mamba has no attention heads
    overrides = [o for o in (*SIZE, *FAMILIES[family], *extra)
                 if not o.startswith("model.") or o[6:].split("=")[0] in fields]
    config = prepare(model_name, family, "smoke", overrides, seed=0)
    task, model = build(config)
    data = task.build("train")
    trainer = Trainer(model, task.spec, config.train, "cpu", progress=False)
    trainer.sampler = Sampler(len(data), 0)
    return trainer, data, model


@pytest.mark.parametrize("model_name,family", _cases())
def test_training_step_speed(benchmark, model_name, family, reference_matmul, assert_speed):
    trainer, data, model = _setup(model_name, family)
    flops = flops_of(lambda: trainer.train_step(data))
    benchmark.group = f"train-{family}"
    benchmark.pedantic(trainer.train_step, args=(data,), rounds=5, iterations=1, warmup_rounds=1)
    median = benchmark.stats.stats.median
    benchmark.extra_info.update(flops=flops, params=model.parameter_counts()["params"],
                                flops_per_second=flops / median,
                                fraction_of_matmul_peak=flops / median / reference_matmul["flops_per_second"])
    assert_speed(f"train/{family}/{model_name}", median, workload=lambda: trainer.train_step(data))


@pytest.mark.parametrize("model_name,family", _cases())
def test_inference_speed(benchmark, model_name, family, assert_speed):
    trainer, data, model = _setup(model_name, family)
    benchmark.group = f"inference-{family}"
    batch = data.batch(torch.arange(min(16, len(data))))

    @torch.no_grad()
    def forward():
        model.eval()
        carry = model.initial_carry(batch)
        return model(carry, batch)

    flops = flops_of(forward)
    benchmark.pedantic(forward, rounds=5, iterations=1, warmup_rounds=1)
    median = benchmark.stats.stats.median
    benchmark.extra_info.update(flops=flops, params=model.parameter_counts()["params"],
                                flops_per_second=flops / median)
    assert_speed(f"inference/{family}/{model_name}", median, workload=forward)


def test_transformer_mfu_at_hidden_256(benchmark, reference_matmul, measure_matmul_peak):
    """Reports training-step FLOP/s at hidden 256 as a fraction of the fp32 matmul peak (goal ≥ 0.5)."""
    trainer, data, model = _setup("transformer", "maze", ["model.hidden=256", "model.num_heads=4",
                                                          "train.batch_size=32", "model.num_layers=4"])
    flops = flops_of(lambda: trainer.train_step(data))
    benchmark.group = "mfu"
    benchmark.pedantic(trainer.train_step, args=(data,), rounds=5, iterations=1, warmup_rounds=1)
    fraction = flops / benchmark.stats.stats.median / reference_matmul["flops_per_second"]
    benchmark.extra_info.update(flops=flops, fraction_of_matmul_peak=fraction,
                                matmul_flops_per_second=reference_matmul["flops_per_second"])
    print(f"\ntransformer h=256 training step: {fraction:.2f} of the in-process fp32 matmul peak (goal >= 0.5)")
    # the ≥ 0.5 goal is reported, not asserted. The instrument is checked on a workload whose answer is
    # known: the peak's own matmul, counted and timed by the same code, must come out at ≈ 1 of the peak.
    size = reference_matmul["size"]
    a, b = (torch.randn(size, size) for _ in range(2))
    matmul_flops = flops_of(lambda: torch.mm(a, b))
    assert matmul_flops == 2 * size ** 3
    seconds = min(timeit.repeat(lambda: torch.mm(a, b), number=1, repeat=7))
    ratio = matmul_flops / seconds / reference_matmul["flops_per_second"]
    if not 0.5 < ratio < 2.0:   # the session's peak may have met a slow spell: measure it again, beside
        ratio = matmul_flops / seconds / measure_matmul_peak()["flops_per_second"]
    assert 0.5 < ratio < 2.0


def test_speed_check_retries_a_transient_slowdown_but_fails_a_real_one(assert_speed, speed_baseline):
    """The check itself: one slow median is timed again (and forgiven if the rerun is fast); a
    workload that stays slow fails."""
    if speed_baseline["update"]:
        pytest.skip("writes no baseline entries")
    key = "train/maze/transformer"
    assert assert_speed(key, 1e3, workload=lambda: None) <= speed_baseline["stored"][key]
    with pytest.raises(AssertionError, match="× its baseline"):
        assert_speed(key, 1e3, workload=lambda: time.sleep(0.25))
    with pytest.raises(AssertionError, match="× its baseline"):
        assert_speed(key, 1e3)


def test_compiled_hrm_training_step(benchmark):
    """`train.compile`: HRM's training step with the segment forward compiled (docs/speed.md), recorded
    beside the eager step of the same config; both take the same first steps from the same seed, so
    their losses must agree (compilation may reorder floating-point sums, not change the maths)."""
    compiled, data, model = _setup("hrm", "sudoku", ["train.compile=true"])
    eager, eager_data, _ = _setup("hrm", "sudoku")
    for _ in range(2):   # compilation happens here, outside the timed rounds
        assert compiled.train_step(data)["loss"] == pytest.approx(eager.train_step(eager_data)["loss"], rel=1e-4)
    eager_seconds = sorted(timeit.repeat(lambda: eager.train_step(eager_data), number=1, repeat=5))[2]
    benchmark.group = "train-compiled"
    benchmark.pedantic(compiled.train_step, args=(data,), rounds=5, iterations=1, warmup_rounds=1)
    median = benchmark.stats.stats.median
    benchmark.extra_info.update(eager_median_seconds=eager_seconds, speedup_over_eager=eager_seconds / median,
                                params=model.parameter_counts()["params"], threads=torch.get_num_threads())
