"""Matching every model to HRM (`--match params|flops|none`) and the HRM-derived defaults."""
from __future__ import annotations

import dataclasses

import pytest

import bench.matching as matching
from bench.config import REFERENCE_MODEL, ConfigError, resolve
from bench.matching import prepare
from flops_matching_cases import SMOKE_FLOPS_OVERRIDES
from models.registry import model_names
from tasks.registry import PRESET_BASES, PRESETS, task_names

# a preset that builds on another (quick on cpu) changes budgets, not shapes: sized as its base
SIZED_PRESETS = [preset for preset in PRESETS if preset not in PRESET_BASES]

BASELINES = ("transformer", "deq", "unrolled", "looped", "mamba", "trm")


@pytest.fixture
def reference():
    return REFERENCE_MODEL


def matched_models(reference):
    return [name for name in BASELINES if name in model_names() and name != reference]


# sizing every model at cpu and paper takes 3–4 s a task (14 cases): slow lane
@pytest.mark.parametrize("preset", [pytest.param(p, marks=pytest.mark.slow) if p != "smoke" else p
                                    for p in SIZED_PRESETS])
@pytest.mark.parametrize("task", task_names())
def test_every_model_is_matched_within_two_percent(task, preset, reference):
    target_run = resolve(reference, task, preset)
    spec = matching.sizing_spec(target_run)
    target = matching.count_params(reference, target_run.model, spec)
    for name in matched_models(reference):
        run = prepare(name, task, preset, match_mode="params")
        record = run.extra["match"]
        built = matching.count_params(name, run.model, matching.sizing_spec(run))
        assert record["target"] == target, name
        assert record["achieved"] == built, name                    # what is recorded is what runs
        assert abs(built - target) <= 0.02 * target, (name, built, target)
        assert record["relative_error"] == pytest.approx((built - target) / target)


def check_flops_matching(names, reference):
    target_run = resolve(reference, "maze", "smoke")
    spec = matching.sizing_spec(target_run)
    segments = target_run.train.eval_segments or target_run.train.segments
    target = matching.inference_flops(matching.build(reference, target_run.model, spec), spec, segments)
    for name in names:
        run = prepare(name, "maze", "smoke", SMOKE_FLOPS_OVERRIDES.get(name, ()), match_mode="flops")
        record = run.extra["match"]
        assert record["target"] == target
        assert abs(record["relative_error"]) <= 0.02, (name, record)
        budget = getattr(type(matching.build(name, run.model, spec, "meta")), "full_budget", {})
        model = matching.build(name, dataclasses.replace(run.model, **budget), spec)
        own_segments = run.train.eval_segments or run.train.segments   # each model counts its own segments
        assert matching.inference_flops(model, spec, own_segments) == record["achieved"], name


@pytest.mark.slow
def test_flops_matching_counts_every_step(reference):
    """Looped (r loops counted) on the meta-device path; DEQ (every solver iteration) on the CPU path."""
    check_flops_matching(["looped", "deq"], reference)


@pytest.mark.slow
def test_flops_matching_for_every_model(reference):
    check_flops_matching(matched_models(reference), reference)


def test_match_none_keeps_the_native_width_but_takes_hrms_depth(reference):
    for preset in SIZED_PRESETS:
        hrm = prepare(reference, "maze", preset, []).model
        transformer = prepare("transformer", "maze", preset, match_mode="none")
        assert transformer.extra["match"]["mode"] == "none"
        assert transformer.model.num_layers == hrm.high_layers + hrm.low_layers
        assert transformer.model.hidden == hrm.hidden   # both from the task preset
        assert prepare("looped", "maze", preset).model.num_layers == hrm.low_layers
        assert prepare("mamba", "maze", preset).model.num_layers == hrm.high_layers + hrm.low_layers
        # an explicit --set wins over the HRM-derived default
        assert prepare("transformer", "maze", preset, ["model.num_layers=3"]).model.num_layers == 3


def test_unrolled_presets_mirror_hrms_schedule():
    if "hrm" not in model_names():
        pytest.skip("HRM is not registered in this checkout")
    keys = ("hidden", "num_heads", "high_layers", "low_layers", "high_cycles", "low_cycles", "expansion",
            "ffn_multiple", "pos_encoding", "puzzle_emb_len")
    for task in task_names():
        for preset in SIZED_PRESETS:
            hrm = prepare("hrm", task, preset).model
            unrolled = prepare("unrolled", task, preset, match_mode="none").model
            assert {k: getattr(hrm, k) for k in keys} == {k: getattr(unrolled, k) for k in keys}, (task, preset)


def test_match_is_recorded_in_the_config_hash_and_an_explicit_width_wins(reference):
    name = matched_models(reference)[0]
    params = prepare(name, "maze", "smoke", match_mode="params")
    none = prepare(name, "maze", "smoke", match_mode="none")
    assert params.to_dict()["extra"]["match"]["mode"] == "params"
    assert params.config_hash() != none.config_hash()
    explicit = prepare(name, "maze", "smoke", ["model.hidden=64"], match_mode="params")
    assert explicit.model.hidden == 64 and "model.hidden set explicitly" in explicit.extra["match"]["skipped"]
    with pytest.raises(ConfigError, match="--match"):
        prepare(name, "maze", "smoke", match_mode="widest")


def test_search_keeps_head_count_and_even_head_dimension(reference):
    for name in ("transformer", "deq", "looped", "unrolled"):
        if name == reference:
            continue
        for preset in SIZED_PRESETS:
            run = prepare(name, "maze", preset, match_mode="params")
            native = prepare(name, "maze", preset, match_mode="none").model
            assert run.model.num_heads == native.num_heads
            assert (run.model.hidden // run.model.num_heads) % 2 == 0
            assert run.model.hidden % run.model.num_heads == 0


def test_cli_info_takes_match_and_reports_it(capsys, reference):
    import json

    from bench.cli import main

    name = matched_models(reference)[0]
    assert main(["info", "--model", name, "--task", "maze", "--preset", "smoke", "--json"]) == 0
    payload = json.loads(capsys.readouterr().out)
    assert payload["match"]["mode"] == "params" and abs(payload["match"]["relative_error"]) <= 0.02
    assert payload["params"] == payload["match"]["achieved"]
    assert main(["info", "--model", name, "--task", "maze", "--preset", "smoke", "--match", "none", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["match"]["mode"] == "none"
    assert main(["info", "--model", name, "--task", "maze", "--preset", "smoke", "--match", "most"]) == 2
    assert "--match 'most'" in capsys.readouterr().err
