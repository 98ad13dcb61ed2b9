"""`bench gpu-check` on a CPU machine, and the parts of it that can run here: the comparison and
its tolerances (fed inputs that must fail), the gradient harness, the per-model step measurement."""
from __future__ import annotations

import copy

import pytest
import torch

from bench.cli import main
from bench.gpu_check import (TOLERANCES, agreement, markdown, train_step_record, values_and_gradients,
                             write_record)


def test_without_a_gpu_it_says_so_in_one_line_and_exits_0(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert main(["gpu-check", "--out", str(tmp_path / "record")]) == 0
    out, err = capsys.readouterr()
    assert out.count("\n") == 1 and "no GPU" in out and err == ""
    assert not (tmp_path / "record").exists()


def reference_tensors() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return {"output": torch.randn(4, 8, generator=g), "grad.w": torch.randn(8, 8, generator=g)}


@pytest.mark.parametrize("tolerance", list(TOLERANCES))
def test_agreement_passes_within_and_fails_beyond_each_tolerance(tolerance):
    rule, rtol, atol = TOLERANCES[tolerance]
    reference = reference_tensors()
    assert agreement("same", reference, copy.deepcopy(reference), tolerance)["status"] == "passed"
    for factor, expected in ((0.5, "passed"), (2.0, "failed")):
        candidate = copy.deepcopy(reference)
        if rule == "close":   # one element moved by factor × what the elementwise rule allows there
            candidate["grad.w"][3, 5] += factor * (atol + rtol * reference["grad.w"][3, 5].abs())
        else:                  # the whole tensor off by factor × the allowed relative error
            candidate["grad.w"] *= 1 + factor * rtol
        record = agreement("perturbed", reference, candidate, tolerance)
        assert record["status"] == expected, (tolerance, factor, record)
        assert record["worst"] == pytest.approx(factor, rel=1e-3)


def test_agreement_fails_on_missing_tensors_shapes_and_nan():
    reference = reference_tensors()
    missing = {"output": reference["output"]}
    assert "different tensors" in agreement("x", reference, missing, "fp32_kernel")["problems"][0]
    reshaped = {**reference, "grad.w": reference["grad.w"].T.reshape(4, 16)}
    assert agreement("x", reference, reshaped, "fp32_kernel")["status"] == "failed"
    broken = {**reference, "output": reference["output"].clone().fill_(float("nan"))}
    assert agreement("x", reference, broken, "bf16")["problems"] == ["output: not finite"]


def test_the_gradient_harness_sees_a_changed_weight():
    from models.blocks import Attention

    torch.manual_seed(0)
    module = Attention(hidden=32, num_heads=2)
    x = torch.randn(2, 9, 32)

    def run(m):
        leaf = x.clone().requires_grad_(True)
        return values_and_gradients(m, lambda mod: mod(leaf), {"x": leaf})

    first = run(module)
    assert set(first) == {"output", "grad.x", *(f"grad.{n}" for n, _ in module.named_parameters())}
    assert agreement("rerun", first, run(module), "fp32_attention")["status"] == "passed"
    changed = copy.deepcopy(module)
    with torch.no_grad():
        next(changed.parameters())[0, 0] += 1e-2
    record = agreement("changed", first, run(changed), "fp32_attention")
    assert record["status"] == "failed" and record["tensors"]["output"]["ratio"] > 1


def test_a_train_step_record_measures_time_memory_and_mfu_on_cpu():
    record = train_step_record("hrm", "maze", "smoke", device="cpu", timed_steps=2)
    assert record["flops_per_step"] > 0 and record["params"] > 0 and len(record["seconds"]) == 2
    assert 0 < record["mfu"] < 1 and record["peak_memory_bytes"] > 0


def test_the_record_is_written_as_json_and_markdown(tmp_path):
    reference = reference_tensors()
    bad = {**reference, "output": reference["output"] + 1}
    record = {"started": "2026-12-01T10:00:00Z", "device": "test", "torch": torch.__version__, "seconds": 1.0,
              "verdict": "1 failed", "checks": [agreement("scan", reference, bad, "fp32_kernel"),
                                                {"check": "xformers", "status": "skipped", "reason": "not installed"}]}
    json_path, md_path = write_record(record, tmp_path / "gpu-check")
    assert json_path.exists() and md_path.read_text() == markdown(record)
    assert "| scan | failed |" in md_path.read_text() and "not installed" in md_path.read_text()
