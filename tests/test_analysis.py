"""Measurement depth (bench/analysis.py) on a hand-made model whose answers are known in advance."""
import math
from dataclasses import dataclass

import pytest
import torch

from bench.analysis import curve_points, run_diagnostics, subset, trained_inner_value, with_config
from bench.config import TrainConfig
from bench.trainer import Trainer
from models.protocol import SegmentModel
from tasks.protocol import Task, TaskData, TaskSpec

SPEC = TaskSpec(vocab_size=5, seq_len=6)


@dataclass
class ToyConfig:
    loops: int = 2              # the inner test-time knob
    loops_needed: int = 1       # answers are right once loops >= this …
    segments_needed_odd: int = 1   # … and the segment count reaches this (rows whose first input is odd)
    segments_needed_even: int = 1
    halt_at: int = 0            # > 0: a Q head that says halt from this segment on
    zero_start: bool = False    # also trace a step from a zero state (relative residual undefined)


class ToyLoop(SegmentModel):
    """z_k = 2·(1 + 2^-k) inside the loop, so ‖z_{k+1} − z_k‖ / ‖z_k‖ = 2^-(k+1) / (1 + 2^-k) exactly."""

    test_time_compute_key = "loops"

    def __init__(self, config, spec):
        super().__init__(config, spec)
        self.mix = torch.nn.Linear(4, 4, bias=False)

    def initial_carry(self, batch):
        return {"segment": torch.zeros(batch["inputs"].shape[0])}

    def forward(self, carry, batch):
        inputs, labels = batch["inputs"], batch["labels"]
        z = torch.full((inputs.shape[0], 4), 2.0)
        if self.config.zero_start:
            self.trace_residual("from_zero", z, torch.zeros_like(z))
        for k in range(self.config.loops):
            new = z * (1 + 2.0 ** -(k + 1)) / (1 + 2.0 ** -k)
            self.trace_residual("z", new, z)
            z = self.mix(new) * 0 + new          # one counted matmul per loop
        segment = carry["segment"] + 1
        needed = torch.where(inputs[:, 0] % 2 == 1, self.config.segments_needed_odd, self.config.segments_needed_even)
        right = (segment >= needed) & (self.config.loops >= self.config.loops_needed)
        answer = torch.where(right[:, None], labels, (labels + 1) % self.spec.vocab_size)
        outputs = {"logits": torch.nn.functional.one_hot(answer, self.spec.vocab_size).float() * 10}
        if self.config.halt_at:
            outputs["q_halt_logits"] = torch.where(segment >= self.config.halt_at, 10.0, -10.0)
        return {"segment": segment}, outputs


class ToyTask(Task):
    spec = SPEC


def toy_data(count=8):
    generator = torch.Generator().manual_seed(0)
    inputs = torch.randint(1, 5, (count, SPEC.seq_len), generator=generator)
    inputs[:, 0] = torch.arange(count) % 2 + 1          # alternate odd / even rows
    labels = torch.randint(1, 5, (count, SPEC.seq_len), generator=generator)
    return TaskData(inputs, labels, torch.zeros(count, dtype=torch.long),
                    {"lengths": list(range(count)), "grid": 6})


def trainer_for(config: ToyConfig, **train):
    torch.manual_seed(0)
    return Trainer(ToyLoop(config, SPEC), SPEC, TrainConfig(eval_batch_size=3, **train), "cpu", progress=False)


def test_automatic_and_requested_curve_points():
    assert curve_points(16) == [1, 2, 4, 8, 16, 32, 64]
    assert curve_points(3) == [1, 2, 3, 4, 8]
    assert curve_points(1) == [1, 2, 4]
    assert curve_points(16, (48, 1, 16, 16)) == [1, 16, 48]


def test_subset_slices_every_per_example_field():
    data = toy_data(8)
    part = subset(data, 3)
    assert len(part) == 3 and part.meta == {"lengths": [0, 1, 2], "grid": 6}
    assert torch.equal(part.inputs, data.inputs[:3]) and subset(data, 50) is data


def test_residuals_of_a_hand_made_sequence():
    trainer = trainer_for(ToyConfig(loops=4), segments=1, diagnostics_examples=8, test_time_points=(1, 2, 4))
    diagnostics = run_diagnostics(trainer, ToyTask(None), toy_data(8))
    trace = diagnostics["fixed_point"]["model.loops"]
    assert trace["at"] == 4 and trace["segments"] == 1
    # by hand: k=0: 0.5/2 = 1/4, k=1: 0.25/1.5 = 1/6, k=2: 0.125/1.25 = 1/10, k=3: 0.0625/1.125 = 1/18
    assert trace["residuals"]["z"] == pytest.approx([1 / 4, 1 / 6, 1 / 10, 1 / 18], rel=1e-6)


def test_residual_from_a_zero_state_is_recorded_as_undefined():
    trainer = trainer_for(ToyConfig(loops=1, zero_start=True), segments=1, diagnostics_examples=4,
                          test_time_points=(1,))
    residuals = run_diagnostics(trainer, ToyTask(None), toy_data(8))["fixed_point"]["model.loops"]["residuals"]
    assert residuals["from_zero"] == [None] and residuals["z"] == pytest.approx([0.25])


def test_inner_knob_curve_has_the_requested_points_and_applies_the_knob():
    trainer = trainer_for(ToyConfig(loops=2, loops_needed=3), segments=1, diagnostics_examples=8,
                          test_time_points=(1, 2, 3, 6))
    curve = run_diagnostics(trainer, ToyTask(None), toy_data(8))["test_time_compute"]["model.loops"]
    assert curve["trained"] == 2
    assert [p["x"] for p in curve["points"]] == [1, 2, 3, 6]
    assert [p["exact_accuracy"] for p in curve["points"]] == [0.0, 0.0, 1.0, 1.0]
    flops = [p["flops_per_example"] for p in curve["points"]]
    per_loop = 2 * 4 * 4          # one (1×4)·(4×4) matmul per loop
    assert flops == [per_loop * x for x in (1, 2, 3, 6)]
    assert trainer.model.config.loops == 2              # the trained model is untouched


def test_segment_curve_and_carry_residuals():
    config = ToyConfig(loops=1, segments_needed_odd=1, segments_needed_even=3)
    trainer = trainer_for(config, segments=2, diagnostics_examples=6)
    diagnostics = run_diagnostics(trainer, ToyTask(None), toy_data(8))
    curve = diagnostics["test_time_compute"]["segments"]
    assert diagnostics["examples"] == 6 and curve["trained"] == 2
    assert [p["x"] for p in curve["points"]] == [1, 2, 4, 8]
    assert [p["exact_accuracy"] for p in curve["points"]] == [0.5, 0.5, 1.0, 1.0]
    assert [p["flops_per_example"] for p in curve["points"]] == [32, 64, 128, 256]
    # the segment counter goes 1, 2, …, 8: change from segment k to k+1 is 1/k
    residuals = diagnostics["fixed_point"]["segments"]["residuals"]
    assert residuals["carry.segment"] == pytest.approx([1 / k for k in range(1, 8)])
    assert residuals["z"] == pytest.approx([0.25] * 8)   # one inner loop per segment, 8 segments
    assert "act" not in diagnostics                        # no Q head


def test_act_learned_fixed_and_oracle_halting():
    config = ToyConfig(loops=1, segments_needed_odd=1, segments_needed_even=3, halt_at=2)
    trainer = trainer_for(config, segments=4, diagnostics_examples=8, test_time_points=(4,))
    act = run_diagnostics(trainer, ToyTask(None), toy_data(8))["act"]
    assert act["segments"] == 4
    assert act["learned"] == {"exact_accuracy": 0.5, "mean_segments": 2.0}   # halts at 2: even rows not yet right
    assert act["fixed"]["exact_accuracy"] == 1.0
    assert act["oracle"] == {"exact_accuracy": 1.0, "mean_segments": 2.0}    # odd rows at 1, even at 3
    assert act["segments_histogram"] == {"1": 0, "2": 8, "3": 0, "4": 0}


def test_with_config_keeps_weights_and_rng_and_eval_prefix_convention():
    model = ToyLoop(ToyConfig(loops=2), SPEC)
    state = torch.get_rng_state()
    clone = with_config(model, loops=7)
    assert torch.equal(torch.get_rng_state(), state)
    assert clone.config.loops == 7 and model.config.loops == 2
    assert torch.equal(clone.mix.weight, model.mix.weight)

    @dataclass
    class EvalKeyConfig(ToyConfig):
        eval_loops: int = 0

    class EvalKey(ToyLoop):
        test_time_compute_key = "eval_loops"

    assert trained_inner_value(EvalKey(EvalKeyConfig(loops=5), SPEC)) == 5


def test_diagnostics_off_and_failures_are_reported_not_raised(capsys):
    assert run_diagnostics(trainer_for(ToyConfig(), diagnostics_examples=0), ToyTask(None), toy_data()) is None

    class BrokenTask(ToyTask):
        def score(self, data, predictions, **extra):
            raise RuntimeError("scorer exploded")

    out = run_diagnostics(trainer_for(ToyConfig(), segments=2, diagnostics_examples=4), BrokenTask(None), toy_data())
    assert "scorer exploded" in out["error"] and "scorer exploded" in capsys.readouterr().err
    assert math.isfinite(out["seconds"])


@pytest.mark.slow
def test_bench_run_seeds_records_diagnostics_and_is_deterministic(tmp_path):
    import json

    from bench.cli import main
    from bench.matching import prepare
    from bench.runner import execute

    common = ["--model", "transformer", "--task", "maze", "--preset", "smoke", "--quiet"]
    assert main(["run", *common, "--seeds", "2", "--out", str(tmp_path / "seeds")]) == 0
    summaries = [json.loads(p.read_text()) for p in sorted((tmp_path / "seeds").rglob("summary.json"))]
    assert sorted(s["seed"] for s in summaries) == [0, 1]
    for summary in summaries:
        curve = summary["diagnostics"]["test_time_compute"]["segments"]
        assert curve["trained"] == 2 and [p["x"] for p in curve["points"]] == [1, 2, 4, 8]
        assert len(summary["diagnostics"]["fixed_point"]["segments"]["residuals"]["carry.z"]) == 7
        assert 0 < summary["mfu"]["train"] and summary["mfu"]["peak_flops"] > 0
    again = execute(prepare("transformer", "maze", "smoke", seed=0), tmp_path / "again", progress=False)
    first = next(s for s in summaries if s["seed"] == 0)
    strip = lambda d: {k: v for k, v in d.items() if k != "seconds"}  # noqa: E731
    assert strip(again["diagnostics"]) == strip(first["diagnostics"])
    assert again["train"]["curve"] == first["train"]["curve"]


def test_mfu_against_a_matmul_peak_measured_in_process():
    from bench.measure import BF16_PEAK_FLOPS, model_flops_utilisation, peak_flops

    peak = peak_flops("cpu")
    assert peak["peak_flops"] > 1e8 and "fp32 1024² matmul" in peak["peak_source"]
    mfu = model_flops_utilisation("cpu", peak["peak_flops"] / 4, None)
    assert mfu["train"] == pytest.approx(0.25) and mfu["eval"] is None
    # the CUDA table is matched first-to-last: specific names before their prefixes
    names = [name for name, _ in BF16_PEAK_FLOPS]
    assert names.index("H100 PCIe") < names.index("H100") and names.index("L40S") < names.index("L4")
