"""The baseline zoo: DEQ, unrolled, looped, Mamba (the transformer is covered by the foundation tests)."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torchdeq.solver

from bench.matching import prepare
from bench.matching import count_params, inference_flops
from bench.measure import count_flops
from bench.runner import execute
from models.blocks import swiglu_intermediate
from models.mamba_ops import BidirectionalMamba, depthwise_conv_along_sequence, selective_scan, selective_scan_flops
from models.registry import create_model, model_names
from tasks.protocol import TaskSpec

SPEC = TaskSpec(vocab_size=5, seq_len=6, num_puzzle_ids=0)
SMALL = dict(hidden=16, num_heads=2, ffn_multiple=16)


def toy_batch(batch_size=2, spec=SPEC, seed=0):
    generator = torch.Generator().manual_seed(seed)
    return {"inputs": torch.randint(0, spec.vocab_size, (batch_size, spec.seq_len), generator=generator),
            "puzzle_ids": torch.zeros(batch_size, dtype=torch.long)}


# ------------------------------------------------------------------------------------------ DEQ
def contractive_deq(**config):
    """A DEQ whose block weights are scaled by 0.3: f is a contraction (spectral radius ≈ 0.6)."""
    torch.manual_seed(0)
    model = create_model("deq", SPEC, num_layers=1, hidden=8, num_heads=2, ffn_multiple=8, **config)
    with torch.no_grad():
        for parameter in model.blocks.parameters():
            parameter.mul_(0.3)
    return model


@pytest.mark.parametrize("solver", ["anderson", "broyden", "fixed_point_iter"])
def test_deq_converges_on_a_contractive_toy(solver):
    model = contractive_deq(solver=solver, max_iter=30, tol=1e-3).eval()   # Anderson stalls near 1e-5
    model.residual_trace = {}
    with torch.no_grad():
        _, outputs = model(model.initial_carry(toy_batch()), toy_batch())
    assert outputs["solver_residual"] < 0.05
    assert outputs["solver_steps"] < 30                      # stopped at the tolerance, not the budget
    trace = model.residual_trace["z"]                         # per-iteration relative residuals
    assert len(trace) >= 2 and trace[-1] < trace[0]


def test_deq_implicit_gradient_matches_finite_differences():
    model = contractive_deq(solver="anderson", max_iter=100, tol=1e-10, gradient="ift",
                            backward_max_iter=100, backward_tol=1e-10).double()
    batch = toy_batch()
    target = torch.randn(2, SPEC.seq_len, SPEC.vocab_size, dtype=torch.double, generator=torch.Generator().manual_seed(1))
    parameters = list(model.blocks.parameters())
    direction = [torch.randn(p.shape, dtype=p.dtype, generator=torch.Generator().manual_seed(i))
                 for i, p in enumerate(parameters)]

    def loss() -> torch.Tensor:
        _, outputs = model(model.initial_carry(batch), batch)
        return (outputs["logits"] * target).sum()

    model.train()
    loss().backward()
    implicit = sum((p.grad * d).sum() for p, d in zip(parameters, direction)).item()
    model.eval()
    epsilon = 3e-3   # rms_norm computes in fp32, so the fixed point is exact to ~1e-8: not smaller steps
    with torch.no_grad():
        for p, d in zip(parameters, direction):
            p.add_(epsilon * d)
        plus = loss().item()
        for p, d in zip(parameters, direction):
            p.sub_(2 * epsilon * d)
        minus = loss().item()
    finite_difference = (plus - minus) / (2 * epsilon)
    assert implicit == pytest.approx(finite_difference, rel=1e-3)


def test_deq_phantom_gradient_trains_and_reports_solver_statistics():
    model = contractive_deq(gradient="phantom", phantom_steps=3, phantom_damping=0.5, norm="weight_norm",
                            jacobian_weight=0.1, jacobian_freq=1.0).train()
    carry, outputs = model(model.initial_carry(toy_batch()), toy_batch())
    assert outputs["aux_loss"].item() > 0
    (outputs["logits"].sum() + outputs["aux_loss"]).backward()
    assert all(p.grad is not None for p in model.blocks.parameters())
    assert {"solver_steps", "solver_residual"} <= set(outputs) and not carry["z"].requires_grad


def test_deq_settings_reach_torchdeq_and_bad_keys_are_rejected():
    model = create_model("deq", SPEC, solver="broyden", max_iter=7, eval_max_iter=11, tol=1e-4, **SMALL)
    assert model.deq.f_solver.__wrapped__ is torchdeq.solver.broyden_solver   # the finite-safe wrapper
    assert (model.deq.f_max_iter, model.deq.eval_f_max_iter, model.deq.f_tol) == (7, 11, 1e-4)
    assert model.test_time_compute_key == "eval_max_iter"
    for bad in ({"solver": "newton"}, {"gradient": "exact"}, {"norm": "batch"}, {"max_iter": 0},
                {"phantom_damping": 0.0}):
        with pytest.raises(ValueError):
            create_model("deq", SPEC, **bad)


def test_flop_counter_sees_every_solver_iteration_including_the_implicit_backward():
    model = contractive_deq(solver="fixed_point_iter", tol=1e-30, max_iter=12)
    batch = toy_batch()
    model.eval()
    counts = {}
    for budget in (2, 4, 8):
        model.config.eval_max_iter = budget
        counts[budget] = inference_flops(model, SPEC, segments=1)
    assert counts[2] < counts[4] < counts[8]
    per_iteration = (counts[8] - counts[4]) / 4
    assert counts[4] - counts[2] == pytest.approx(2 * per_iteration)
    model.train()   # the trainer counts a whole step: the IFT backward calls autograd.grad inside backward
    with count_flops() as counted:
        _, outputs = model(model.initial_carry(batch), batch)
        outputs["logits"].sum().backward()
    assert counted["flops"] > counts[8]


# ------------------------------------------------------------------------------------ unrolled
def block_flops(hidden, tokens, expansion=4.0, multiple=256):
    intermediate = swiglu_intermediate(hidden, expansion, multiple)
    matmuls = 2 * tokens * (4 * hidden * hidden + 3 * hidden * intermediate)
    return matmuls + 4 * tokens * tokens * hidden   # q·k and attention·v


def test_unrolled_has_one_hrm_segments_flops_and_tied_has_hrms_params():
    spec = TaskSpec(vocab_size=11, seq_len=81)
    paper = create_model("unrolled", spec, tied=True)   # HRM's paper configuration
    assert paper.parameter_counts()["params"] == 27_275_266   # docs/reference.md (HRM)
    config = dict(hidden=32, num_heads=2, high_layers=2, low_layers=1, ffn_multiple=32)
    small = TaskSpec(vocab_size=7, seq_len=10)
    tokens = 10 + 1   # the puzzle prefix
    expected = (2 * (2 * 1 + 2) * block_flops(32, tokens, multiple=32)   # 2×[2 L-calls of 1 block + 1 H-call of 2]
                + 2 * 10 * 32 * 7 + 2 * 32 * 2)                          # output head + Q head
    for tied in (False, True):
        model = create_model("unrolled", small, tied=tied, **config)
        assert inference_flops(model, small, segments=1) == expected
    if "hrm" in model_names():
        hrm = create_model("hrm", small, **config)
        assert inference_flops(hrm, small, segments=1) == expected
        assert hrm.parameter_counts() == create_model("unrolled", small, tied=True, **config).parameter_counts()
        for preset in ("smoke", "cpu", "paper"):
            tied = prepare("unrolled", "maze", preset, ["model.tied=true"], match_mode="none")
            assert count_params("unrolled", tied.model, spec) == count_params("hrm", prepare("hrm", "maze", preset).model, spec)


def test_unrolled_has_no_carry_and_untied_stacks():
    model = create_model("unrolled", SPEC, **SMALL)
    assert len(model.low) == 4 and len(model.high) == 2          # 2×2 L-calls, 2 H-calls at the default schedule
    assert model.initial_carry(toy_batch()) == {}
    model.eval()
    with torch.no_grad():
        carry, first = model({}, toy_batch())
        _, second = model(carry, toy_batch())
    torch.testing.assert_close(first["logits"], second["logits"])  # nothing persists between segments


# -------------------------------------------------------------------------------------- looped
def test_looped_equals_the_block_applied_r_times_by_hand():
    torch.manual_seed(0)
    model = create_model("looped", SPEC, num_layers=2, loops=3, eval_loops=5, **SMALL)
    batch = toy_batch()
    for training, loops in ((True, 3), (False, 5)):
        model.train(training)
        with torch.no_grad():
            _, outputs = model(model.initial_carry(batch), batch)
            x, rotary = model.embedding(batch)
            z = torch.zeros_like(x)
            for _ in range(loops):
                z = model.blocks(z + x, rotary=rotary)
        torch.testing.assert_close(outputs["logits"], model.head(z))
    assert model.test_time_compute_key == "eval_loops"
    model.config.eval_loops = 10
    ten = inference_flops(model, SPEC, segments=1)
    model.config.eval_loops = 5
    assert ten > 1.9 * inference_flops(model, SPEC, segments=1)   # extra loops at test time are counted


# --------------------------------------------------------------------------------------- Mamba
def naive_selective_scan(x, delta, A, B, C, D):
    """h_t = exp(Δ_t A) h_{t-1} + Δ_t B_t x_t;  y_t = C_t · h_t + D x_t, one step at a time."""
    batch, length, inner = x.shape
    state = torch.zeros(batch, inner, A.shape[1], dtype=x.dtype)
    outputs = []
    for t in range(length):
        decay = torch.exp(delta[:, t, :, None] * A)
        state = decay * state + delta[:, t, :, None] * B[:, t, None, :] * x[:, t, :, None]
        outputs.append((state * C[:, t, None, :]).sum(-1) + D * x[:, t])
    return torch.stack(outputs, dim=1)


def scan_inputs(batch, length, inner, state, dtype=torch.float64):
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(batch, length, inner, generator=generator, dtype=dtype)
    delta = torch.rand(batch, length, inner, generator=generator, dtype=dtype) * 0.5
    A = -torch.rand(inner, state, generator=generator, dtype=dtype) - 0.1
    B, C = torch.randn(2, batch, length, state, generator=generator, dtype=dtype)
    D = torch.randn(inner, generator=generator, dtype=dtype)
    return x, delta, A, B, C, D


def test_pure_torch_selective_scan_equals_the_naive_loop_in_value_and_gradient():
    inputs = [tensor.requires_grad_() for tensor in scan_inputs(2, 13, 16, 4)]
    torch.testing.assert_close(selective_scan(*inputs), naive_selective_scan(*inputs))
    weights = torch.randn(2, 13, 16, dtype=torch.float64)     # a loss that weighs every output differently
    ours = torch.autograd.grad((selective_scan(*inputs) * weights).sum(), inputs)
    naive = torch.autograd.grad((naive_selective_scan(*inputs) * weights).sum(), inputs)
    for mine, reference in zip(ours, naive):
        torch.testing.assert_close(mine, reference)
    small = tuple(tensor.requires_grad_() for tensor in scan_inputs(1, 5, 3, 2))
    assert torch.autograd.gradcheck(selective_scan, small)   # the written-out backward against finite differences


def test_float32_scan_kernels_match_the_float64_naive_loop_to_float32_rounding():
    """float32 takes the kernels' polynomial exp (float64 takes math.exp): values and every gradient stay
    within float32 rounding of the exact float64 loop."""
    exact = [tensor.requires_grad_() for tensor in scan_inputs(3, 21, 19, 5)]
    single = [tensor.detach().float().requires_grad_() for tensor in exact]
    weights = torch.randn(3, 21, 19, dtype=torch.float64)
    torch.testing.assert_close(selective_scan(*single).double(), naive_selective_scan(*exact), rtol=1e-5, atol=1e-5)
    ours = torch.autograd.grad((selective_scan(*single) * weights.float()).sum(), single)
    naive = torch.autograd.grad((naive_selective_scan(*exact) * weights).sum(), exact)
    for mine, reference in zip(ours, naive):
        torch.testing.assert_close(mine.double(), reference, rtol=1e-4, atol=1e-4)


def test_scan_kernel_exp_is_accurate_over_the_float32_range():
    import numba
    from models._mamba_kernels import decay_exp

    @numba.njit
    def apply(values):
        out = np.empty_like(values)
        for i in range(values.size):
            out[i] = decay_exp(values[i])
        return out

    values = np.linspace(-87, 88, 200_001, dtype=np.float32)
    exact = np.exp(values.astype(np.float64))
    assert np.max(np.abs(apply(values) - exact) / exact) < 5e-7
    assert apply(np.array([-1e4], np.float32))[0] < 1e-37    # a huge decay underflows to (nearly) zero, not garbage


def test_kernel_results_do_not_depend_on_the_thread_count(monkeypatch):
    from models import _mamba_kernels
    from models._mamba_kernels import conv_backward, conv_forward, scan_backward, scan_forward

    monkeypatch.setattr(_mamba_kernels, "MIN_WORK_PER_THREAD", 1)     # split even these tiny arrays

    x, delta, A, B, C, _ = (tensor.numpy() for tensor in scan_inputs(5, 11, 8, 3, dtype=torch.float32))
    arrays = (x, delta, A.T.copy(), B, C)
    grad_y = np.random.default_rng(0).standard_normal(x.shape).astype(np.float32)
    one, three = scan_forward(*arrays, threads=1), scan_forward(*arrays, threads=3)
    assert np.array_equal(one, three)
    for a, b in zip(scan_backward(*arrays, grad_y, threads=1), scan_backward(*arrays, grad_y, threads=3)):
        assert np.array_equal(a, b)
    weight, bias = A[:, :3].T.copy(), A[:, 0].copy()          # any (K, inner) taps and (inner,) bias
    assert np.array_equal(conv_forward(x, weight, bias, threads=1), conv_forward(x, weight, bias, threads=3))
    for a, b in zip(conv_backward(x, weight, grad_y, threads=1), conv_backward(x, weight, grad_y, threads=3)):
        assert np.array_equal(a, b)


def test_kernels_split_rows_only_when_each_thread_gets_enough_work(monkeypatch):
    from models import _mamba_kernels

    calls = []
    kernel = lambda *args: calls.append(args[-2:])          # noqa: E731 — records (start, stop)
    work = _mamba_kernels.MIN_WORK_PER_THREAD
    _mamba_kernels._over_rows(kernel, (), batch=16, threads=4, work_per_row=work // 16)    # 1 thread's worth
    assert calls == [(0, 16)]
    calls.clear()
    _mamba_kernels._over_rows(kernel, (), batch=16, threads=4, work_per_row=work // 8)     # 2 threads' worth
    assert sorted(calls) == [(0, 8), (8, 16)]
    calls.clear()
    _mamba_kernels._over_rows(kernel, (), batch=16, threads=4, work_per_row=work)          # capped by threads
    assert sorted(calls) == [(0, 4), (4, 8), (8, 12), (12, 16)]


def _split_conv_in_this_process():
    from models._mamba_kernels import conv_forward

    out = conv_forward(np.ones((4, 3, 2), np.float32), np.ones((2, 2), np.float32), np.zeros(2, np.float32), threads=2)
    assert (out[:, 0] == 1).all() and (out[:, 1:] == 2).all()      # width-2 causal sum of ones


def test_kernel_helper_threads_work_in_a_forked_child(monkeypatch):
    """The helper pool is per process: a child forked after a split (e.g. a data worker) makes its own
    rather than queueing on threads that do not exist there (which would hang)."""
    import multiprocessing

    from models import _mamba_kernels

    monkeypatch.setattr(_mamba_kernels, "MIN_WORK_PER_THREAD", 1)
    _split_conv_in_this_process()                  # the parent's pool now has threads
    child = multiprocessing.get_context("fork").Process(target=_split_conv_in_this_process)
    child.start()
    child.join(60)
    if child.is_alive():
        child.kill()
    assert child.exitcode == 0


def test_kernels_use_torch_threads_only_when_its_openmp_workers_sleep(monkeypatch):
    from models.mamba_ops import kernel_threads

    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    assert kernel_threads() == 1
    monkeypatch.setenv("OMP_WAIT_POLICY", "PASSIVE")
    assert kernel_threads() == torch.get_num_threads()


def test_selective_scan_matches_mambapy_parallel_scan_in_float32():
    """The scan that replaced mambapy's on CPU computes the same function (to float32 rounding)."""
    from mambapy.pscan import pscan

    x, delta, A, B, C, D = scan_inputs(2, 13, 16, 4, dtype=torch.float32)
    states = pscan(torch.exp(delta.unsqueeze(-1) * A), delta.unsqueeze(-1) * B.unsqueeze(2) * x.unsqueeze(-1))
    torch.testing.assert_close(selective_scan(x, delta, A, B, C, D), (states @ C.unsqueeze(-1)).squeeze(3) + D * x,
                               rtol=1e-4, atol=1e-5)


def test_mamba_runs_on_the_meta_device_for_shape_only_flop_counts():
    mixer = BidirectionalMamba(hidden=8, state_size=4).to("meta")
    u = torch.empty(2, 7, 8, device="meta", requires_grad=True)
    with count_flops() as counted:
        out = mixer(u)
        out.sum().backward()
    real = BidirectionalMamba(hidden=8, state_size=4)
    with count_flops() as real_count:
        real(torch.randn(2, 7, 8, requires_grad=True)).sum().backward()
    assert out.shape == (2, 7, 8) and u.grad.shape == u.shape and counted["flops"] == real_count["flops"] > 0


def test_bidirectional_mamba_sees_tokens_on_both_sides():
    torch.manual_seed(0)
    mixer = BidirectionalMamba(hidden=8, state_size=4)
    u = torch.randn(1, 9, 8, requires_grad=True)
    mixer(u)[0, 4].sum().backward()
    influence = u.grad[0].abs().sum(-1)
    assert influence[0] > 0 and influence[8] > 0                 # both ends reach the middle
    # one direction alone is causal: the middle does not see the future (so the check above means something)
    u.grad = None
    x, z = mixer.in_proj(u).chunk(2, dim=-1)
    mixer._direction_by_flipping(mixer.directions[0], x, z)[0, 4].sum().backward()
    assert u.grad[0, 5:].abs().sum() == 0 and u.grad[0, :4].abs().sum() > 0
    # the whole model: changing the first token changes the last prediction and vice versa
    model = create_model("mamba", SPEC, hidden=16, num_layers=2, state_size=4).eval()
    batch = toy_batch(1)
    with torch.no_grad():
        base = model(model.initial_carry(batch), batch)[1]["logits"]
        for changed, watched in ((0, -1), (-1, 0)):
            other = {**batch, "inputs": batch["inputs"].clone()}
            other["inputs"][0, changed] = (other["inputs"][0, changed] + 1) % SPEC.vocab_size
            assert not torch.allclose(model(model.initial_carry(other), other)[1]["logits"][0, watched], base[0, watched])


def test_reverse_scan_is_the_scan_of_the_flipped_sequence_in_value_and_gradient():
    inputs = [tensor.requires_grad_() for tensor in scan_inputs(2, 9, 7, 3)]
    weights = torch.randn(2, 9, 7, dtype=torch.float64)
    reverse = selective_scan(*inputs, reverse=True)
    x, delta, A, B, C, D = inputs
    flipped = naive_selective_scan(x.flip(1), delta.flip(1), A, B.flip(1), C.flip(1), D).flip(1)
    torch.testing.assert_close(reverse, flipped)
    for mine, reference in zip(torch.autograd.grad((reverse * weights).sum(), inputs),
                               torch.autograd.grad((flipped * weights).sum(), inputs)):
        torch.testing.assert_close(mine, reference)


def test_bidirectional_mamba_without_flips_equals_mambapy_on_the_flipped_sequence():
    """The CPU path (shifted-view conv, reverse scan) computes mambapy's conv1d + ssm, the backward
    direction on the flipped sequence, to rounding; so do their gradients."""
    torch.manual_seed(0)
    mixer = BidirectionalMamba(hidden=8, state_size=4).double()
    u = torch.randn(2, 11, 8, dtype=torch.float64, requires_grad=True)
    x, z = mixer.in_proj(u).chunk(2, dim=-1)
    forward_scan, backward_scan = mixer.directions
    flipped = mixer.out_proj(mixer._direction_by_flipping(forward_scan, x, z) + mixer._direction_by_flipping(backward_scan, x.flip(1), z.flip(1)).flip(1))
    in_place = mixer(u)
    torch.testing.assert_close(in_place, flipped)
    weights = torch.randn_like(in_place)
    parameters = [u, *mixer.parameters()]
    for mine, reference in zip(torch.autograd.grad((in_place * weights).sum(), parameters),
                               torch.autograd.grad((flipped * weights).sum(), parameters)):
        torch.testing.assert_close(mine, reference)


def test_grouped_conv_backward_is_counted_as_twice_its_forward():
    """torch's own formula ignores groups in the weight gradient (a depthwise conv's backward came out
    149× its forward); bench.measure replaces it. A dense conv keeps torch's count."""
    for groups, channels in ((24, 24), (1, 24), (4, 24)):
        conv = torch.nn.Conv1d(channels, channels, 4, groups=groups, padding=3)
        x = torch.randn(3, channels, 10, requires_grad=True)
        with count_flops() as forward:
            out = conv(x)
        with count_flops() as backward:
            out.sum().backward()
        assert forward["flops"] == 2 * 3 * 13 * channels * (channels // groups) * 4
        assert backward["flops"] == 2 * forward["flops"]


def test_mamba_scan_and_conv_ops_carry_their_flop_formulas():
    """The compiled kernels are custom ops with registered formulas: the counter sees them like a matmul."""
    batch, length, inner, state = 2, 9, 6, 4
    x, delta, A, B, C, D = (tensor.requires_grad_() for tensor in scan_inputs(batch, length, inner, state,
                                                                             dtype=torch.float32))
    scan = selective_scan_flops(batch, length, inner, state)     # read-out and D skip included
    with count_flops() as forward:
        y = selective_scan(x, delta, A, B, C, D)
    with count_flops() as backward:
        y.sum().backward()
    assert (forward["flops"], backward["flops"]) == (scan, 2 * scan)          # backward ≈ 2× forward
    conv = torch.nn.Conv1d(inner, inner, 4, groups=inner, padding=3)
    with count_flops() as forward:
        out = depthwise_conv_along_sequence(x, conv, reverse=True)
    with count_flops() as backward:
        out.sum().backward()
    assert (forward["flops"], backward["flops"]) == (2 * batch * length * inner * 4, 4 * batch * length * inner * 4)
    with count_flops() as meta:                                   # shapes only: the same count
        selective_scan(*(t.detach().to("meta") for t in (x, delta, A, B, C, D)))
    assert meta["flops"] == scan


# ------------------------------------------------------------------------------ end to end (smoke)
@pytest.mark.parametrize("name", ["transformer", "deq", "unrolled", "looped", "mamba"])
def test_each_model_runs_end_to_end_on_the_smoke_preset(name, tmp_path):
    summary = execute(prepare(name, "maze", "smoke", match_mode="none"), tmp_path, progress=False)
    assert summary["status"] == "complete"
    assert summary["params"] > 0 and summary["train"]["flops_per_step"] > 0
    assert summary["inference"]["flops_per_example"] > 0 and summary["train"]["seconds"] > 0
    assert 0.0 <= summary["exact_accuracy"] <= 1.0
    if name == "deq":
        assert "solver_steps" in summary["train"]["curve"][-1]
