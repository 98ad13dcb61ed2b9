"""`--match flops` (bench/matching.py, from the baseline-zoo branch): a matched model's inference FLOPs
per example, measured independently the way every run records them (Trainer.inference_flops_per_example
on a real evaluation example), land within ±5% of HRM's for the same task and preset."""
import dataclasses

import pytest
import torch

pytest.importorskip("bench.matching", reason="--match lands with the baseline zoo")

from bench.matching import prepare  # noqa: E402
from flops_matching_cases import SMOKE_FLOPS_OVERRIDES  # noqa: E402
from bench.runner import build  # noqa: E402
from bench.trainer import Trainer  # noqa: E402
from models.registry import get_model_entry, model_names  # noqa: E402

TOLERANCE = 0.05


def recorded_inference_flops(config) -> int:
    task, model = build(config)
    trainer = Trainer(model, task.spec, config.train, "cpu", progress=False)
    return trainer.inference_flops_per_example(task.build(task.eval_splits()[0]))


# the DEQ is sized at its whole solver budget and counted on real examples at two budgets: ~30 s, slow lane
@pytest.mark.parametrize("model_name", ["transformer", "looped", "unrolled",
                                        pytest.param("deq", marks=pytest.mark.slow), "mamba"])
def test_matched_flops_within_five_percent_of_hrm(model_name):
    if "hrm" not in model_names() or model_name not in model_names():
        pytest.skip(f"needs hrm and {model_name} registered")
    torch.set_num_threads(1)
    target = recorded_inference_flops(prepare("hrm", "maze", "smoke"))
    matched = prepare(model_name, "maze", "smoke", SMOKE_FLOPS_OVERRIDES.get(model_name, ()), match_mode="flops")
    full_budget = get_model_entry(model_name).cls.full_budget
    if full_budget:   # a solver that stops at a tolerance is matched at its whole budget, its upper bound
        early = recorded_inference_flops(matched)
        matched = dataclasses.replace(matched, model=dataclasses.replace(matched.model, **full_budget))
    achieved = recorded_inference_flops(matched)
    assert abs(achieved - target) / target <= TOLERANCE, (model_name, achieved, target, matched.extra.get("match"))
    if full_budget:
        assert early <= achieved
# Measured on the scratch merge of hrm + zoo + this branch (maze smoke): transformer +1.4%, looped
# −0.002%, unrolled 0.0%, mamba +0.7%, deq −4.4% (its solver stops early on a real example; the matcher
# sizes it at the full iteration budget, where it is within 0.001%). With the DEQ's tolerance at 1e-5 and
# 30 iterations a real example used 52% of the matched FLOPs, so the DEQ is compared at its full budget.
