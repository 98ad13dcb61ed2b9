"""Deep Equilibrium model (torchdeq): the output is the fixed point of one input-injected block stack.

    x = embed(tokens)
    f(z) = blocks(z + x)                  # the shared post-norm blocks, input injected by addition
    z* = solver(f, z0)  with z* ≈ f(z*)   # anderson | broyden | fixed_point_iter (torchdeq)
    logits = head(z*)

A fixed point has to exist and be found: every Linear of f is spectrally normalised by default
(torchdeq `apply_norm(norm_type="spectral_norm")`, W/σ(W), σ recomputed by `reset_norm` at every
forward), which makes the post-norm stack a contraction at init (spectral radius of ∂f/∂z ≈ 0.8);
torchdeq's learned per-row scale (`norm_learn_scale=True`) is off by default (training grows it and f
stops contracting). Training keeps f contracting with Jacobian regularisation (Bai et al. 2021):
`jacobian_weight` · torchdeq's Hutchinson estimate of ‖∂f/∂z‖²_F/numel at z*, added as `aux_loss`
on a random `jacobian_freq` share of training forwards (0.5 at 0.4: their DEQ-Transformer weight, 2.0,
stops learning at our tasks' losses of 0.01–0.4 nats; 0.2 and less learn faster but leave the trained
f too slow to solve). Both solvers are Broyden with 50 iterations and stop when every example's
relative residual is under its tolerance (forward `tol` and backward `backward_tol` both 1e-5):
tolerances that tight make the implicit gradient match finite differences through the fixed point to
1e-4. At init f reaches them in under 20 iterations. After 600 cpu-preset steps on addition, a run
with 30-iteration solvers leaves 12% of the test problems short of the forward tolerance at weight
0.5 (61% at 0.2); with 50 iterations, none. Every run records how often each solver got there
(`converged_fraction`).
docs/models/deq.md has the measurements behind each default.

Gradients: `gradient="ift"` — true implicit differentiation (torchdeq `ift=True`: the backward
solves the linear fixed point of the adjoint with `backward_solver`; Anderson's absolute regulariser
λ swamps small residuals and gradients, Broyden is scale-invariant); `gradient="phantom"` —
torchdeq's phantom gradient, `phantom_steps` damped steps z ← (1−τ)z + τ f(z) from z*, τ =
`phantom_damping`. The test-time iteration budget is `eval_max_iter` (`test_time_compute_key`).

Per batch the model outputs (all named in `logged_outputs`): `solver_steps` (mean iterations),
`solver_residual` / `solver_residual_max` (mean / largest relative residual ‖f(z)−z‖/‖f(z)‖ at the
z the model returns — one extra f evaluation; torchdeq's own `rel_lowest` is measured one f
earlier), `converged_fraction` (examples with that residual under `tol`); in training also
the *previous* step's backward solver: `backward_steps`, `backward_residual` (mean final relative
residual, torchdeq's `rel_lowest` of the adjoint solve) and `backward_converged_fraction` (under
`backward_tol`), NaN when no IFT backward preceded (first step, phantom gradient; the
trainer's curve drops non-finite values); the latest backward's per-example numbers stay in
`last_backward`. With tracing on, the solver's per-iteration relative residual trace goes into
`residual_trace["z"]`. The fixed point is carried (detached) to the next trainer segment as the
solver's warm start.

torchdeq reads its settings from **kwargs and silently ignores names it does not know, so every
key we pass comes from this validated config (see `DEQConfig.__post_init__`).
"""
from __future__ import annotations

import contextlib
import functools
from dataclasses import dataclass

import torch
import torchdeq.solver.utils

from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils._python_dispatch import TorchDispatchMode
from torchdeq import get_deq
from torchdeq.solver import get_solver, register_solver
from torchdeq.loss import jac_reg
from torchdeq.norm import apply_norm, register_norm_module, reset_norm

from models.blocks import Linear
from models.registry import register_model
from models.transformer import Transformer

SOLVERS = ("anderson", "broyden", "fixed_point_iter")
GRADIENTS = ("ift", "phantom")
NORMS = ("none", "weight_norm", "spectral_norm")

# torchdeq's apply_norm matches modules by exact type; our Linear subclasses nn.Linear
for _norm in NORMS[1:]:
    register_norm_module(Linear, _norm, names="weight", dims=0)


def _select(mask, mask_var, orig_var):
    """torchdeq's `batch_masked_mixing` (per example: mask_var where mask, else orig_var), as a
    selection: no product, so a non-finite value that is not selected cannot leak into the result."""
    like = mask_var if torch.is_tensor(mask_var) else orig_var
    aligned = mask.view(mask.shape[0], *[1] * (like.dim() - 1))
    return torch.where(aligned, mask_var, orig_var)


def _finite_safe(solver):
    """torchdeq 0.1.0's solvers keep each example's lowest-residual state as `mask · new + ~mask ·
    kept`. Once an example's new state is non-finite (Broyden's update divides by an inner product
    that can vanish, and only NaN quotients are zeroed, not infinite ones), 0 · inf = NaN replaces
    the kept state although it was never selected, and the solve returns NaN for that example. This
    runs `solver` with that mixing done by selection; for finite states the values are the same."""
    @functools.wraps(solver)
    def solve(*args, **kwargs):
        mixing = torchdeq.solver.utils.batch_masked_mixing
        torchdeq.solver.utils.batch_masked_mixing = _select   # what update_state calls
        try:
            return solver(*args, **kwargs)
        finally:
            torchdeq.solver.utils.batch_masked_mixing = mixing
    return solve


FINITE_SAFE = "_finite_safe"   # the suffix of the registered torchdeq names of the wrapped solvers
for _solver in SOLVERS:
    register_solver(_solver + FINITE_SAFE, _finite_safe(get_solver(_solver)))


class _KeepIteratingOnMeta(TorchDispatchMode):
    """Shape-only solves (the meta device: FLOP counts, sizing) run the whole iteration budget, but
    torchdeq's Broyden asks after 30 iterations whether its residuals stopped improving — a bool of
    values a meta tensor does not have. Answer it "no", i.e. keep iterating, as a real solve at
    `full_budget` does."""

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if (func is torch.ops.aten._local_scalar_dense.default and args[0].device.type == "meta"
                and args[0].dtype == torch.bool):
            return False
        return func(*args, **(kwargs or {}))


@dataclass
class DEQConfig:
    hidden: int = 512
    num_heads: int = 8
    num_layers: int = 4                 # blocks in f (resolve(): HRM's low_layers, one "L-module")
    expansion: float = 4.0
    ffn_multiple: int = 256
    pos_encoding: str = "rope"
    puzzle_emb_len: int = 1
    attention_backend: str = "sdpa"
    solver: str = "broyden"             # anderson | broyden | fixed_point_iter (Anderson stalls near 1e-5)
    max_iter: int = 50                  # forward solver iterations (f evaluations) in training
    eval_max_iter: int = 0              # test-time budget; 0 = max_iter
    tol: float = 1e-5                   # stop when every example's relative residual is below this
    gradient: str = "ift"               # ift (implicit differentiation) | phantom
    backward_solver: str = "broyden"     # scale-invariant; Anderson's absolute λ swamps small loss gradients
    backward_max_iter: int = 50
    backward_tol: float = 1e-5          # relative residual of the adjoint fixed point
    phantom_steps: int = 1              # k damped steps for the phantom gradient
    phantom_damping: float = 0.5        # τ of the phantom gradient
    norm: str = "spectral_norm"         # none | weight_norm | spectral_norm (torchdeq apply_norm)
    norm_learn_scale: bool = False      # torchdeq learn_scale; False: every σ(W) stays 1, training cannot grow it
    norm_clip: bool = False             # torchdeq clip: cap the normalising factor at norm_clip_value
    norm_clip_value: float = 1.0
    norm_target: float = 1.0            # torchdeq target_norm: σ(W) of every Linear when norm_learn_scale is off
    norm_warmup_iterations: int = 15    # spectral_norm: power iterations at construction
    jacobian_weight: float = 0.5        # > 0: add weight · jac_reg(f(z*), z*) to the loss in training
    jacobian_freq: float = 0.4          # probability a training forward adds it (Bai et al.'s jac_loss_freq)

    def __post_init__(self):
        for key, allowed in (("solver", SOLVERS), ("backward_solver", SOLVERS), ("gradient", GRADIENTS),
                             ("norm", NORMS)):
            if getattr(self, key) not in allowed:
                raise ValueError(f"model.{key}={getattr(self, key)!r} is not one of: {', '.join(allowed)}")
        for key in ("num_layers", "max_iter", "backward_max_iter", "phantom_steps"):
            if getattr(self, key) < 1:
                raise ValueError(f"model.{key} must be >= 1, got {getattr(self, key)}")
        if self.eval_max_iter < 0 or self.tol <= 0 or self.backward_tol <= 0 or self.jacobian_weight < 0:
            raise ValueError("model.eval_max_iter and model.jacobian_weight must be >= 0, the tolerances > 0")
        if not 0.0 < self.phantom_damping <= 1.0:
            raise ValueError(f"model.phantom_damping must be in (0, 1], got {self.phantom_damping}")
        if self.norm_clip_value <= 0 or self.norm_target <= 0 or self.norm_warmup_iterations < 0:
            raise ValueError("model.norm_clip_value and model.norm_target must be > 0, "
                             "model.norm_warmup_iterations >= 0")
        if not 0.0 < self.jacobian_freq <= 1.0:
            raise ValueError(f"model.jacobian_freq must be in (0, 1], got {self.jacobian_freq}")

    def norm_kwargs(self) -> dict:
        """The keyword arguments for torchdeq.norm.apply_norm besides norm_type (names as torchdeq 0.1.0's
        WeightNorm.apply / SpectralNorm.apply read them)."""
        return dict(learn_scale=self.norm_learn_scale, target_norm=self.norm_target, clip=self.norm_clip,
                    clip_value=self.norm_clip_value)

    def torchdeq_kwargs(self) -> dict:
        """The keyword arguments for torchdeq.get_deq (names as torchdeq 0.1.0 reads them)."""
        kwargs = dict(core="sliced", f_solver=self.solver + FINITE_SAFE, f_max_iter=self.max_iter, f_tol=self.tol,
                      f_stop_mode="rel", eval_f_max_iter=self.eval_max_iter or self.max_iter)
        if self.gradient == "ift":
            kwargs.update(ift=True, b_solver=self.backward_solver + FINITE_SAFE, b_max_iter=self.backward_max_iter,
                          b_tol=self.backward_tol, b_stop_mode="rel")
        else:
            kwargs.update(ift=False, grad=self.phantom_steps, tau=self.phantom_damping)
        return kwargs


@register_model("deq", config=DEQConfig,
                description="deep equilibrium model (torchdeq): fixed point of an input-injected block stack")
class DEQ(Transformer):
    iteration_count_key = "max_iter"      # the training rules vary the forward solver's budget
    test_time_compute_key = "eval_max_iter"
    # FLOP matching: both solvers run their whole iteration budget
    full_budget = {"tol": 1e-30, "backward_tol": 1e-30}
    reference_defaults = {"num_layers": lambda hrm: hrm.low_layers}
    presets = {}
    # the per-batch scalars of `forward` the trainer logs into the training curve
    logged_outputs = ("solver_steps", "solver_residual", "solver_residual_max", "converged_fraction",
                      "backward_steps", "backward_residual", "backward_converged_fraction")

    def __init__(self, config: DEQConfig, spec):
        super().__init__(config, spec)   # the transformer's embedding, block stack (f) and head; zero carry
        self.deq = get_deq(**config.torchdeq_kwargs())
        apply_norm(self.blocks, norm_type=config.norm, **config.norm_kwargs())
        if config.norm == "spectral_norm" and next(self.parameters()).device.type != "meta":
            # (on the meta device — sizing, FLOP counts — there are no values to iterate on)
            self._warm_up_spectral_norm(config.norm_warmup_iterations)
        self.last_backward: dict[str, torch.Tensor] | None = None   # the latest IFT backward's solver stats

    def _warm_up_spectral_norm(self, iterations: int) -> None:
        """Power iterations on the random (u, v) that torchdeq's SpectralNorm starts from (as
        torch.nn.utils.parametrizations.spectral_norm does at registration): with one iteration per
        training forward, the first forwards would otherwise divide by an underestimated σ."""
        training = self.blocks.training
        self.blocks.train()
        with torch.no_grad():
            for _ in range(iterations):
                reset_norm(self.blocks)
        self.blocks.train(training)

    def _record_backward(self, info) -> None:
        self.last_backward = {"nstep": info["nstep"].detach().float(), "rel": info["rel_lowest"].detach().float()}

    def forward(self, carry, batch):
        config = self.config
        if config.norm != "none":
            # torchdeq: recompute the normalised weights once per forward (training also advances the
            # spectral norm's power iteration); in eval it is what makes loaded or just-updated weights count
            reset_norm(self.blocks)
        x, rotary = self.embedding(batch)

        def f(z):
            return self.blocks(z, injection=x, rotary=rotary)

        budget = config.max_iter if self.training else (config.eval_max_iter or config.max_iter)
        solver_kwargs = {"f_max_iter": budget}
        shape_only = x.device.type == "meta"
        if shape_only:   # shape-only runs (FLOP counting) cannot stop early: the whole budget
            solver_kwargs["return_final"] = True
        writer = self._record_backward if self.training and config.gradient == "ift" else None
        previous_backward, self.last_backward = self.last_backward, None
        with _KeepIteratingOnMeta() if shape_only else contextlib.nullcontext():
            trajectory, info = self.deq(f, carry["z"].to(x.dtype), solver_kwargs=solver_kwargs,
                                        backward_writer=writer)
        z = trajectory[-1]
        with torch.no_grad():   # the residual at the state returned (torchdeq's is one f earlier)
            z_out = z.detach()
            f_out = f(z_out)
            residual = (f_out - z_out).flatten(1).norm(dim=1) / (f_out.flatten(1).norm(dim=1) + 1e-9)
        if self.residual_trace is not None:
            self.residual_trace.setdefault("z", []).extend(info["rel_trace"].float().mean(0).tolist())
        outputs = {"logits": self.head(z), "solver_steps": info["nstep"].float().mean(),
                   "solver_residual": residual.float().mean(), "solver_residual_max": residual.float().max(),
                   "converged_fraction": (residual < config.tol).float().mean()}
        if self.training:   # every declared output is present in training; NaN = no IFT backward measured
            if previous_backward is None:
                nan = torch.tensor(float("nan"), device=z.device)
                outputs.update(backward_steps=nan, backward_residual=nan, backward_converged_fraction=nan)
            else:
                outputs.update(backward_steps=previous_backward["nstep"].mean(),
                               backward_residual=previous_backward["rel"].mean(),
                               backward_converged_fraction=(previous_backward["rel"] < config.backward_tol).float().mean())
        if (self.training and config.jacobian_weight > 0 and torch.is_grad_enabled()
                and (config.jacobian_freq >= 1 or torch.rand(()).item() < config.jacobian_freq)):
            z_star = z.detach().requires_grad_()
            with sdpa_kernel(SDPBackend.MATH):   # jac_reg needs double backward; fused CPU attention has none
                f_star = f(z_star)
            outputs["aux_loss"] = config.jacobian_weight * jac_reg(f_star, z_star)
        return {"z": z.detach()}, outputs
