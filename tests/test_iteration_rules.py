"""Training rules for an iterative model's own iteration count (train.iteration_rule): random counts
per step, and "best of k" — the loss after every iteration, only the lowest back-propagated."""
from __future__ import annotations

import math

import pytest
import torch

from bench.config import ConfigError, resolve
from bench.losses import sequence_losses
from bench.matching import prepare
from bench.runner import build, execute
from bench.trainer import Trainer, first_minimum


def resolve_rule(model: str, *overrides: str):
    key = "model.iterations=4" if model == "dtnet" else "model.loops=4"
    return resolve(model, "prefix_sums", "smoke", ["train.batch_size=8", key, *overrides])


def make_trainer(model: str, *overrides: str):
    run = resolve_rule(model, *overrides)
    task, net = build(run)
    return Trainer(net, task.spec, run.train, "cpu", progress=False), task.build("train")


def test_ties_go_to_the_fewest_iterations():
    losses = torch.tensor([[0.5, 0.2, 0.2, 0.9], [0.1, 0.1, 0.1, 0.1], [3.0, 2.0, 1.0, 0.5]])
    assert first_minimum(losses).tolist() == [1, 0, 3]


def test_best_of_k_trains_each_example_at_its_best_iteration():
    trainer, data = make_trainer("dtnet", "train.iteration_rule=best_of_k", "model.tied=false")
    model = trainer.model
    batch = {k: v[:8] for k, v in data.batch(torch.arange(8)).items()}
    torch.manual_seed(0)
    # the per-example loss after each iteration, computed independently of the rule
    with torch.no_grad():
        state, expected = model.start_state(batch), []
        for step in range(4):
            state = model.iterate(state, batch, 1, first=step)
            per_token = trainer.loss_fn(model.readout(state, batch), batch["labels"], trainer.spec.ignore_label)
            expected.append(sequence_losses(per_token, batch["labels"], trainer.spec.ignore_label))
    expected = torch.stack(expected, dim=1)
    logits, loss, steps = trainer._iteration_rule(batch, batch["labels"])
    assert torch.allclose(loss, expected.min(dim=1).values.mean())
    assert torch.equal(steps, first_minimum(expected) + 1)
    loss.backward()
    # untied: stack i serves iteration i+1, so stacks beyond every example's best step get no gradient
    deepest = int(steps.max())
    for index, stack in enumerate(model.stacks):
        has_grad = any(p.grad is not None and p.grad.abs().sum() > 0 for p in stack.parameters())
        assert has_grad == (index < deepest), index


@pytest.mark.parametrize("model_name", ["dtnet", "looped"])
def test_random_iterations_are_drawn_in_range_and_every_step_is_counted(model_name):
    trainer, data = make_trainer(model_name, "train.iteration_rule=random", "train.iterations_min=2",
                                 "train.steps=12", "train.log_every=1")
    trainer.fit(data, seed=0)
    drawn = [int(point["iterations_trained"]) for point in trainer.curve]
    assert set(drawn) <= {2, 3, 4} and len(set(drawn)) > 1

    def fixed_step_flops(iterations: int) -> int:
        key = "model.iterations" if model_name == "dtnet" else "model.loops"
        fixed, _ = make_trainer(model_name, f"{key}={iterations}", "train.steps=1")
        fixed.fit(data, seed=0)
        return fixed.flops_total

    # every step is counted (their work differs): the total is the sum of what each drawn count costs
    cost = {k: fixed_step_flops(k) for k in sorted(set(drawn))}
    assert len(set(cost.values())) == len(cost)   # the counts do cost differently
    assert trainer.flops_total == sum(cost[k] for k in drawn)


# ------------------------------------------------------------------ whole-forward models: hrm, trm, deq
COUNT_KEYS = {"hrm": "high_cycles", "trm": "cycles", "deq": "max_iter"}


def whole_forward_trainer(model: str, *overrides: str):
    run = resolve(model, "prefix_sums", "smoke", ["train.batch_size=8", f"model.{COUNT_KEYS[model]}=3", *overrides])
    task, net = build(run)
    return Trainer(net, task.spec, run.train, "cpu", progress=False), task.build("train")


@pytest.mark.parametrize("model_name", ["hrm", "trm"])
def test_best_of_k_on_a_whole_forward_model_keeps_each_examples_best_count(model_name):
    trainer, data = whole_forward_trainer(model_name, "train.iteration_rule=best_of_k")
    model, key = trainer.model, COUNT_KEYS[model_name]
    batch = {k: v[:8] for k, v in data.batch(torch.arange(8)).items()}
    ignore = trainer.spec.ignore_label
    expected = []
    with torch.no_grad():   # each count run as its own model with that count in its config
        for count in (1, 2, 3):
            setattr(model.config, key, count)
            logits = model(model.initial_carry(batch), batch)[1]["logits"]
            expected.append(sequence_losses(trainer.loss_fn(logits, batch["labels"], ignore), batch["labels"], ignore))
        setattr(model.config, key, 3)
    expected = torch.stack(expected, dim=1)
    outputs, loss, steps = trainer._iteration_rule(batch, batch["labels"])
    assert torch.allclose(loss, expected.min(dim=1).values.mean())
    assert torch.equal(steps, first_minimum(expected) + 1)
    assert getattr(model.config, key) == 3   # the count is restored after the rule's forwards
    assert outputs["logits"].shape[:2] == batch["labels"].shape


@pytest.mark.parametrize("model_name", ["hrm", "trm", "deq"])
def test_random_counts_on_a_whole_forward_model_are_drawn_and_counted(model_name):
    trainer, data = whole_forward_trainer(model_name, "train.iteration_rule=random", "train.steps=10",
                                          "train.log_every=1")
    trainer.fit(data, seed=0)
    drawn = [int(point["iterations_trained"]) for point in trainer.curve]
    assert set(drawn) <= {1, 2, 3} and len(set(drawn)) > 1
    assert getattr(trainer.model.config, COUNT_KEYS[model_name]) == 3
    if model_name == "deq":   # the solver statistics still reach the curve under a rule
        assert all("solver_steps" in point for point in trainer.curve)
    else:                     # every step is counted: a 1-count step costs less than a 3-count one
        costs = {}
        for count in set(drawn):
            fixed, _ = whole_forward_trainer(model_name, f"model.{COUNT_KEYS[model_name]}={count}", "train.steps=1")
            fixed.fit(data, seed=0)
            costs[count] = fixed.flops_total
        assert trainer.flops_total == sum(costs[k] for k in drawn)


def test_a_run_with_a_rule_completes_and_records_it(tmp_path, monkeypatch):
    monkeypatch.setenv("RECURRENT_BENCH_CACHE", str(tmp_path / "cache"))
    run = prepare("looped", "prefix_sums", "smoke", ["train.iteration_rule=best_of_k", "train.log_every=1"])
    summary = execute(run, tmp_path / "runs", progress=False)
    assert summary["status"] == "complete"
    assert summary["config"]["train"]["iteration_rule"] == "best_of_k"
    assert all(1 <= point["iterations_trained"] <= run.model.loops for point in summary["train"]["curve"])
    assert run.config_hash() != prepare("looped", "prefix_sums", "smoke", ["train.log_every=1"]).config_hash()


def test_rules_are_refused_where_they_cannot_apply(tmp_path):
    with pytest.raises(ConfigError, match="no iteration count"):
        execute(prepare("transformer", "prefix_sums", "smoke", ["train.iteration_rule=random"]), tmp_path)
    with pytest.raises(ConfigError, match="segments=1"):
        resolve_rule("dtnet", "train.iteration_rule=best_of_k", "train.segments=2")
    with pytest.raises(ConfigError, match="progressive_alpha=0"):
        resolve_rule("dtnet", "train.iteration_rule=random", "train.progressive_alpha=0.5")
    with pytest.raises(ConfigError, match="is not one of"):
        resolve_rule("dtnet", "train.iteration_rule=sometimes")
    with pytest.raises(ConfigError, match="iterations_min=9 is above"):
        build(resolve_rule("dtnet", "train.iteration_rule=random", "train.iterations_min=9"))
    assert list(tmp_path.iterdir()) == []


# ------------------------------------------------------------------ budgets: steps, examples, FLOPs
def budget_trainer(*overrides: str):
    run = prepare("transformer", "maze", "smoke", ["train.batch_size=8", "train.log_every=1", *overrides])
    task, net = build(run)
    return Trainer(net, task.spec, run.train, "cpu", progress=False), task.build("train")


@pytest.mark.parametrize("segments", [1, 2])
def test_an_example_budget_draws_the_same_fresh_examples_whatever_the_segments(segments):
    trainer, data = budget_trainer("train.budget=examples", "train.max_examples=32", f"train.segments={segments}",
                                   "train.act=false")
    trainer.fit(data, seed=0)
    assert trainer.examples == 32
    assert trainer.step == 4 * segments == trainer.planned_steps()   # a second segment costs steps, not examples


def test_a_flop_budget_stops_before_the_step_that_would_go_over():
    probe, data = budget_trainer("train.steps=1")
    probe.fit(data, seed=0)
    one_step = probe.flops_total
    trainer, _ = budget_trainer("train.budget=flops", f"train.max_flops={5.5 * one_step}")
    trainer.fit(data, seed=0)
    assert trainer.step == 5 == trainer.planned_steps()
    assert trainer.flops_total == 5 * one_step <= 5.5 * one_step


def test_budget_settings_that_contradict_are_refused():
    with pytest.raises(ConfigError, match="train.budget=examples needs train.max_examples > 0"):
        resolve("transformer", "maze", "smoke", ["train.budget=examples"])
    with pytest.raises(ConfigError, match="set train.budget=flops"):
        resolve("transformer", "maze", "smoke", ["train.max_flops=1e9"])
    with pytest.raises(ConfigError, match="is not one of"):
        resolve("transformer", "maze", "smoke", ["train.budget=hours"])
    default = resolve("transformer", "maze", "smoke").config_hash()
    assert resolve("transformer", "maze", "smoke", ["train.budget=steps"]).config_hash() == default


# ------------------------------------------------------------------ the stop selector
def test_the_selector_stops_at_the_first_iteration_it_calls_right_else_the_last():
    from bench.stop_selector import StopSelector, selected_steps

    class Scripted(StopSelector):
        def forward(self, features):   # "right" where the first feature is positive
            return features[..., 0]

    features = torch.tensor([[-1.0, 1.0, 1.0], [-1.0, -1.0, -1.0], [2.0, -1.0, 3.0]])[..., None].expand(-1, -1, 5)
    assert selected_steps(Scripted(), features).tolist() == [1, 2, 0]


def test_a_selector_run_freezes_the_network_and_reports_three_stops(tmp_path, monkeypatch):
    from bench import stop_selector

    monkeypatch.setenv("RECURRENT_BENCH_CACHE", str(tmp_path / "cache"))
    trainer, data = make_trainer("dtnet", "train.steps=3")
    trainer.fit(data, seed=0)
    before = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    selector, record = stop_selector.train_selector(trainer, data, steps=4, seed=0)
    assert all(torch.equal(before[k], v) for k, v in trainer.model.state_dict().items())
    assert record["pool_examples"] == min(len(data), stop_selector.POOL_EXAMPLES) and record["steps"] == 4
    assert [p["step"] for p in record["curve"]] == [0, 1, 2, 3, 4]
    scores = stop_selector.evaluate_stops(trainer, selector, data, batch_size=16)
    assert scores["examples"] == len(data) and scores["iterations"] == 4
    assert 1 <= scores["mean_selected_iterations"] <= 4
    oracle = scores["oracle_exact_accuracy"]
    assert oracle >= scores["selector_exact_accuracy"] and oracle >= scores["all_iterations_exact_accuracy"]

    run = prepare("dtnet", "prefix_sums", "smoke", ["train.stop_selector_steps=3"])
    summary = execute(run, tmp_path / "runs", progress=False)
    assert set(summary["stop_selector"]) == set(summary["metrics"])
    assert summary["stop_selector_training"]["steps"] == 3 and len(summary["stop_selector_training"]["curve"]) == 4
    # "all iterations" is the run's own evaluation, computed a second way
    for split, scores in summary["stop_selector"].items():
        assert scores["all_iterations_exact_accuracy"] == pytest.approx(summary["metrics"][split]["exact_accuracy"])
    with pytest.raises(ConfigError, match="no iteration count"):
        execute(prepare("transformer", "prefix_sums", "smoke", ["train.stop_selector_steps=3"]), tmp_path / "t")


def test_the_reinforce_loss_is_an_unbiased_estimate_of_the_expected_reward_gradient():
    """The policy-gradient loss, averaged over many sampled stops, has the gradient of minus the
    exact expected reward Σ_s P(stop at s)·(right[s] − cost·s/m)."""
    from bench.stop_selector import reinforce_loss

    torch.manual_seed(0)
    logits = torch.randn(3, 4, requires_grad=True)
    right = torch.tensor([[0, 1, 1, 1], [0, 0, 0, 1], [1, 0, 1, 0]]).bool()
    cost, steps = 0.3, 4
    stop_prob, alive, expected = torch.sigmoid(logits), torch.ones(3), 0.0
    for s in range(steps):
        stops_here = stop_prob[:, s] if s < steps - 1 else torch.ones(3)
        expected = expected + alive * stops_here * (right[:, s].float() - cost * (s + 1) / steps)
        alive = alive * (1 - stop_prob[:, s])
    exact, = torch.autograd.grad(expected.mean(), logits)
    draws = 100_000
    rows = torch.arange(3).repeat(draws)
    generator = torch.Generator().manual_seed(0)
    # the baseline is the batch mean over all rows; per-row mean rewards differ, so compare row by row
    estimates = []
    for row in range(3):
        loss = reinforce_loss(logits[rows[rows == row]], right[rows[rows == row]], cost, generator)
        estimates.append(-torch.autograd.grad(loss, logits)[0][row])
    assert torch.allclose(torch.stack(estimates) / 3, exact, atol=3e-3)
    assert exact.abs().max() > 0.02   # the check has something to compare


def test_the_selector_trains_to_its_plateau_on_a_pool_where_confidence_says_right(monkeypatch):
    """A pool whose answers turn right from a random iteration on, and a confidence feature that says
    so: the head's pool loss falls from ln 2 to near 0, ends flat, and then stops each example at the
    first right iteration. (200 fresh-batch steps at lr 1e-3, the old recipe, left the study's head
    at 0.63 of a reachable 0.44: it never stopped early on one seed.)"""
    from bench import stop_selector

    generator = torch.Generator().manual_seed(0)
    first_right = torch.randint(0, 6, (2048,), generator=generator)
    right = torch.arange(6)[None] >= first_right[:, None]                       # (N, 6)
    features = torch.rand(2048, 6, stop_selector.FEATURES, generator=generator) * 0.2
    features[..., 1] += right.float() * 0.5                                     # the minimum top probability
    monkeypatch.setattr(stop_selector, "unrolled_pool", lambda trainer, data, seed: (features, right))
    trainer, data = make_trainer("dtnet", "train.steps=1")
    selector, record = stop_selector.train_selector(trainer, data, steps=2000, seed=0)
    assert record["initial_loss"] == pytest.approx(math.log(2), abs=0.1) and record["final_loss"] < 0.05
    assert record["plateau"]["finished"]
    assert torch.equal(stop_selector.selected_steps(selector, features), first_right)


def test_the_policy_objective_is_the_exact_expected_reward():
    from bench.stop_selector import expected_reward

    logits = torch.tensor([[0.0, 0.0, 0.0], [10.0, -10.0, 0.0]])
    right = torch.tensor([[0, 1, 1], [1, 0, 0]]).bool()
    # row 0: stops at 1, 2, 3 with 1/2, 1/4, 1/4; row 1: (almost) surely at 1
    want = [0.5 * (0 - 0.3 / 3) + 0.25 * (1 - 0.6 / 3) + 0.25 * (1 - 0.3), 1 - 0.1]
    assert expected_reward(logits, right, 0.3).tolist() == pytest.approx(want, abs=1e-4)


def test_the_reinforce_objective_is_a_recorded_choice_with_a_bounded_cost():
    base = prepare("dtnet", "prefix_sums", "smoke", ["train.stop_selector_steps=3"]).config_hash()
    policy = prepare("dtnet", "prefix_sums", "smoke", ["train.stop_selector_steps=3",
                                                       "train.stop_selector_objective=reinforce"])
    assert policy.train.stop_selector_objective == "reinforce" and policy.config_hash() != base
    with pytest.raises(ConfigError, match="stop_selector_cost must be in"):
        resolve_rule("dtnet", "train.stop_selector_cost=2")
    from bench import stop_selector

    trainer, data = make_trainer("dtnet", "train.steps=2", "train.stop_selector_objective=reinforce")
    trainer.fit(data, seed=0)
    before = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    selector, record = stop_selector.train_selector(trainer, data, steps=3, seed=0)
    assert all(torch.equal(before[k], v) for k, v in trainer.model.state_dict().items())
    assert record["objective"] == "reinforce" and all(p["loss"] >= 0 for p in record["curve"])
    scores = stop_selector.evaluate_stops(trainer, selector, data, batch_size=16)
    assert 1 <= scores["mean_selected_iterations"] <= 4
