"""The DEQ at its defaults is an equilibrium model: the fixed point is found, reported at the state
returned, and the implicit gradient is the gradient of that fixed point."""
from __future__ import annotations

import pytest
import torch
import torchdeq.solver

from models.blocks import rms_norm
from models.deq import FINITE_SAFE
from models.registry import create_model
from tasks.protocol import TaskSpec

SPEC = TaskSpec(vocab_size=7, seq_len=16, num_puzzle_ids=0)
SMALL = dict(hidden=32, num_heads=2, num_layers=2, ffn_multiple=32)   # defaults otherwise


def batch(batch_size=8, seed=0):
    generator = torch.Generator().manual_seed(seed)
    return {"inputs": torch.randint(0, SPEC.vocab_size, (batch_size, SPEC.seq_len), generator=generator),
            "puzzle_ids": torch.zeros(batch_size, dtype=torch.long)}


def small_deq(seed=0, **config):
    torch.manual_seed(seed)
    return create_model("deq", SPEC, **{**SMALL, **config})


def residual_at(model, z, inputs):
    """‖f(z) − z‖ / ‖f(z)‖ per example, computed here independently of the model's forward."""
    with torch.no_grad():
        x, rotary = model.embedding(inputs)
        fz = model.blocks(z, injection=x, rotary=rotary)
    return (fz - z).flatten(1).norm(dim=1) / fz.flatten(1).norm(dim=1)


# ---------------------------------------------------------------------------------- rms_norm
def test_rms_norm_computes_in_float64_for_float64_and_in_float32_for_half_precision():
    x = torch.randn(4, 33, dtype=torch.float64) * 3
    exact = x / torch.sqrt(x.square().mean(-1, keepdim=True) + 1e-5)
    out = rms_norm(x)
    assert out.dtype == torch.float64
    assert (out - exact).abs().max().item() < 1e-14          # an fp32 computation errs by ~1e-7
    half = x.to(torch.bfloat16)
    out_half = rms_norm(half)
    assert out_half.dtype == torch.bfloat16
    via_fp32 = half.float() * torch.rsqrt(half.float().square().mean(-1, keepdim=True) + 1e-5)
    assert torch.equal(out_half, via_fp32.to(torch.bfloat16))


# ------------------------------------------------------------------------------------ forward
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_forward_solver_reaches_the_tolerance_at_init_on_95_percent_of_examples(seed):
    model = small_deq(seed).eval()
    inputs = batch(32, seed)
    with torch.no_grad():
        carry, outputs = model(model.initial_carry(inputs), inputs)
    residual = residual_at(model, carry["z"], inputs)
    assert (residual < model.config.tol).float().mean().item() >= 0.95
    assert outputs["converged_fraction"].item() >= 0.95
    assert outputs["solver_steps"].item() <= model.config.max_iter


def test_reported_residual_is_measured_at_the_returned_state():
    """A short budget, so Anderson's own residual (one f before the state it returns) differs from
    the residual at the returned state; the model must report the latter. (Broyden's residual is
    taken at the state it returns, which is what the default solver reports.)"""
    model = small_deq(solver="anderson", max_iter=3, eval_max_iter=3).eval()
    inputs = batch(8)
    captured = {}
    solve = model.deq.forward

    def spy(*args, **kwargs):
        trajectory, info = solve(*args, **kwargs)
        captured.update(info)
        return trajectory, info

    model.deq.forward = spy
    with torch.no_grad():
        carry, outputs = model(model.initial_carry(inputs), inputs)
    residual = residual_at(model, carry["z"], inputs)
    assert outputs["solver_residual"].item() == pytest.approx(residual.mean().item(), rel=1e-5)
    assert outputs["solver_residual_max"].item() == pytest.approx(residual.max().item(), rel=1e-5)
    assert outputs["converged_fraction"].item() == (residual < model.config.tol).float().mean().item()
    solver_residual = captured["rel_lowest"].float().mean().item()
    assert abs(solver_residual - residual.mean().item()) > 0.1 * residual.mean().item()   # the two differ


def test_every_scalar_output_is_declared_in_logged_outputs():
    """The trainer reads every declared name from every training forward: all are there from the
    first step (backward ones NaN until a backward has run) and with the phantom gradient too."""
    for gradient in ("ift", "phantom"):
        model = small_deq(gradient=gradient).train()
        inputs = batch(4)
        carry = model.initial_carry(inputs)
        for step in range(2):   # the second forward reports the first step's backward
            carry, outputs = model(carry, inputs)
            scalars = {key for key, value in outputs.items()
                       if torch.is_tensor(value) and value.dim() == 0 and key != "aux_loss"}   # a loss term
            assert scalars == set(type(model).logged_outputs)
            measured = step == 1 and gradient == "ift"
            assert torch.isfinite(outputs["backward_residual"]).item() == measured
            outputs["logits"].sum().backward()


@pytest.mark.parametrize("solver", ["broyden", "anderson", "fixed_point_iter"])
def test_one_example_going_non_finite_leaves_the_others_and_its_own_best_state_finite(solver):
    """torchdeq keeps each example's best state as mask · new + ~mask · kept: one non-finite new
    state made the kept one NaN (0 · inf) — the prefix-sums DEQ's divergence. The wrapped solvers
    select instead (models/deq.py `_finite_safe`)."""
    target = torch.randn(3, 5, 4, generator=torch.Generator().manual_seed(0))
    calls = {"n": 0}

    def f(z):   # a contraction towards `target`; example 1's evaluations blow up from the 4th on
        calls["n"] += 1
        out = 0.5 * z + target
        if calls["n"] >= 4:
            out = out.clone()
            out[1] = float("inf")
        return out

    kwargs = dict(max_iter=12, tol=1e-30, stop_mode="rel")
    calls["n"] = 0
    library_state, _, _ = torchdeq.solver.get_solver(solver)(f, torch.zeros_like(target), **kwargs)
    calls["n"] = 0
    state, _, info = torchdeq.solver.get_solver(solver + FINITE_SAFE)(f, torch.zeros_like(target), **kwargs)
    assert not torch.isfinite(library_state[1]).all()          # the library's behaviour this works around
    assert torch.isfinite(state).all()
    assert torch.equal(state[[0, 2]], library_state[[0, 2]])   # examples that stay finite: unchanged
    assert torch.isfinite(info["rel_lowest"][1])               # example 1 keeps its best finite state


def test_the_model_solves_with_the_finite_safe_solvers():
    model = small_deq()
    assert model.deq.f_solver is torchdeq.solver.get_solver(model.config.solver + FINITE_SAFE)
    assert model.deq.b_solver is torchdeq.solver.get_solver(model.config.backward_solver + FINITE_SAFE)


# ----------------------------------------------------------------------------------- backward
def test_backward_residual_is_reported_and_under_the_tolerance_at_the_defaults():
    model = small_deq().train()
    inputs = batch(8)
    carry = model.initial_carry(inputs)
    carry, outputs = model(carry, inputs)
    assert torch.isnan(outputs["backward_residual"]).item()   # no backward has run yet
    torch.nn.functional.cross_entropy(outputs["logits"].flatten(0, 1), inputs["inputs"].flatten()).backward()
    record = model.last_backward
    assert record["rel"].shape == (8,)
    assert record["rel"].max().item() < model.config.backward_tol
    _, outputs = model(carry, inputs)                      # the next step reports it
    assert outputs["backward_residual"].item() == pytest.approx(record["rel"].mean().item())
    assert outputs["backward_converged_fraction"].item() == 1.0


DIRECTIONS = 4


def implicit_and_finite_difference(seed=0, **config):
    """float64: the implicit gradient of a small DEQ (default init and norm) along DIRECTIONS random
    directions in parameter space, and central finite differences along the same directions through
    fixed points solved to 1e-12 with the same weights. Returns (implicit, finite differences, model)."""
    model = small_deq(seed, **config).double().train()
    inputs = batch(4)
    target = torch.randn(4, SPEC.seq_len, SPEC.vocab_size, dtype=torch.float64,
                         generator=torch.Generator().manual_seed(1))
    _, outputs = model(model.initial_carry(inputs), inputs)
    (outputs["logits"] * target).sum().backward()

    exact = create_model("deq", SPEC, **{**SMALL, **config, "tol": 1e-12, "max_iter": 300,
                                         "eval_max_iter": 0}).double().eval()
    exact.load_state_dict(model.state_dict())             # the power iteration's u, v as the gradient used
    named = dict(model.named_parameters())
    parameters = [(name, p) for name, p in exact.named_parameters() if named[name].grad is not None]
    generator = torch.Generator().manual_seed(2)
    implicit, finite = [], []
    for _ in range(DIRECTIONS):
        directions = [torch.randn(p.shape, dtype=p.dtype, generator=generator) for _, p in parameters]
        implicit.append(sum((named[name].grad * d).sum() for (name, _), d in zip(parameters, directions)).item())

        def loss(sign: float) -> float:
            with torch.no_grad():
                for (_, p), d in zip(parameters, directions):
                    p.add_(sign * 1e-5 * d)
                _, out = exact(exact.initial_carry(inputs), inputs)
                for (_, p), d in zip(parameters, directions):
                    p.sub_(sign * 1e-5 * d)
            return (out["logits"] * target).sum().item()

        finite.append((loss(1.0) - loss(-1.0)) / 2e-5)
    return torch.tensor(implicit), torch.tensor(finite), model


def relative_error(implicit: torch.Tensor, finite: torch.Tensor) -> float:
    """‖implicit − finite‖ / ‖finite‖ over the directions: the gradient's relative error projected on
    DIRECTIONS random directions (one direction alone can be nearly orthogonal to the gradient, and
    then a small absolute error reads as a large relative one)."""
    return ((implicit - finite).norm() / finite.norm()).item()


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_implicit_gradient_matches_finite_differences_at_the_default_init_when_solved_tightly(seed):
    implicit, finite_difference, model = implicit_and_finite_difference(
        seed, tol=1e-10, max_iter=100, backward_tol=1e-10, backward_max_iter=100)
    assert model.last_backward["rel"].max().item() < 1e-10
    assert relative_error(implicit, finite_difference) <= 1e-6


@pytest.mark.parametrize("seed", [0, 1, 2, 3, 4, 5])
def test_implicit_gradient_matches_finite_differences_to_1e_4_at_the_defaults(seed):
    """The default tolerances (forward and backward 1e-5, relative) are chosen so that this holds."""
    implicit, finite_difference, model = implicit_and_finite_difference(seed)
    assert model.last_backward["rel"].max().item() < model.config.backward_tol
    assert relative_error(implicit, finite_difference) <= 1e-4


def test_a_loose_solve_is_caught_by_the_gradient_check():
    """The check can fail: the old tolerances (forward 1e-3, backward 1e-4) miss 1e-4 on this init."""
    implicit, finite_difference, _ = implicit_and_finite_difference(4, tol=1e-3, backward_tol=1e-4)
    assert relative_error(implicit, finite_difference) > 1e-4


# ------------------------------------------------------------------------ Jacobian regularisation
def test_jacobian_term_is_added_on_the_stated_fraction_of_training_forwards():
    model = small_deq(jacobian_weight=2.0, jacobian_freq=0.4).train()
    inputs = batch(4)
    torch.manual_seed(0)
    added = 0
    for _ in range(50):
        _, outputs = model(model.initial_carry(inputs), inputs)
        if "aux_loss" in outputs:
            added += 1
            assert outputs["aux_loss"].requires_grad and outputs["aux_loss"].item() > 0
    assert 10 <= added <= 30                                  # Binomial(50, 0.4): mean 20, sd 3.5
    with torch.no_grad():                                     # no gradient, no term (e.g. a target pass)
        assert "aux_loss" not in model(model.initial_carry(inputs), inputs)[1]
    assert "aux_loss" not in model.eval()(model.initial_carry(inputs), inputs)[1]


def test_jacobian_term_lowers_the_jacobian_and_its_flops_are_counted():
    """A few steps on the term alone shrink the Hutchinson estimate of ‖J‖²_F, and a training step
    that adds it counts more FLOPs (the trainer counts every DEQ step: its cost varies)."""
    from bench.measure import count_flops
    from torchdeq.loss import jac_reg

    def frobenius(model, inputs):   # at the model's fixed point, as the term is
        with torch.no_grad():
            z = model.eval()(model.initial_carry(inputs), inputs)[0]["z"]
            x, rotary = model.embedding(inputs)
        model.train()
        z = z.requires_grad_()
        return jac_reg(model.blocks(z, injection=x, rotary=rotary), z, vecs=8).item()

    model = small_deq(jacobian_weight=1.0, jacobian_freq=1.0).train()
    inputs = batch(8)
    torch.manual_seed(0)
    before = frobenius(model, inputs)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(10):
        optimizer.zero_grad()
        model(model.initial_carry(inputs), inputs)[1]["aux_loss"].backward()
        optimizer.step()
    torch.manual_seed(0)
    assert frobenius(model, inputs) < 0.8 * before

    def step_flops(**config) -> int:
        m = small_deq(**config).train()
        with count_flops() as counted:
            m(m.initial_carry(inputs), inputs)[1]["logits"].sum().backward()
        return counted["flops"]

    def step_flops_with_term() -> int:
        m = small_deq(jacobian_weight=1.0, jacobian_freq=1.0).train()
        with count_flops() as counted:
            outputs = m(m.initial_carry(inputs), inputs)[1]
            (outputs["logits"].sum() + outputs["aux_loss"]).backward()
        return counted["flops"]

    assert step_flops_with_term() > step_flops(jacobian_weight=0.0)
    from bench.config import TrainConfig
    from bench.trainer import Trainer
    assert Trainer(small_deq(), SPEC, TrainConfig(), "cpu", progress=False).step_cost_varies


def test_the_prefix_sums_cpu_preset_raises_the_deqs_jacobian_weight_and_nothing_else():
    """The prefix-sums cpu preset sets the Jacobian weight to 2.0 (docs/models/deq.md); the DEQ keeps
    its default 0.5 elsewhere, and models without the field get no such key."""
    from bench.config import resolve

    assert resolve("deq", "prefix_sums", "cpu").model.jacobian_weight == 2.0
    assert resolve("deq", "addition", "cpu").model.jacobian_weight == 0.5
    assert not hasattr(resolve("looped", "prefix_sums", "cpu").model, "jacobian_weight")
