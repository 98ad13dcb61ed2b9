"""Deep Equilibrium model (torchdeq): the output is the fixed point of one input-injected block stack.

    x = embed(tokens)
    f(z) = blocks(z + x)                  # the shared post-norm blocks, input injected by addition
    z* = solver(f, z0)  with z* ≈ f(z*)   # anderson | broyden | fixed_point_iter (torchdeq)
    logits = head(z*)

Gradients: `gradient="ift"` — true implicit differentiation (torchdeq `ift=True`: the backward
solves the linear fixed point of the adjoint with `backward_solver`); `gradient="phantom"` —
torchdeq's phantom gradient, `phantom_steps` damped steps z ← (1−τ)z + τ f(z) from z*, τ =
`phantom_damping`. Optional `norm` (weight_norm | spectral_norm via torchdeq's apply_norm /
reset_norm) and Jacobian regularisation (`jacobian_weight` · torchdeq's Hutchinson jac_reg, as
`aux_loss`). The test-time iteration budget is `eval_max_iter` (`test_time_compute_key`).

Per batch the model outputs `solver_steps` (mean iterations) and `solver_residual` (mean relative
residual ‖f(z)−z‖/‖f(z)‖ at the returned z); with tracing on, the solver's per-iteration relative
residual trace goes into `residual_trace["z"]`. The fixed point is carried (detached) to the next
trainer segment as the solver's warm start.

torchdeq reads its settings from **kwargs and silently ignores names it does not know, so every
key we pass comes from this validated config (see `DEQConfig.__post_init__`).
"""
from __future__ import annotations

from dataclasses import dataclass

from torch.nn.attention import SDPBackend, sdpa_kernel
from torchdeq import get_deq
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
    solver: str = "anderson"            # anderson | broyden | fixed_point_iter
    max_iter: int = 12                  # forward solver iterations in training
    eval_max_iter: int = 0              # test-time budget; 0 = max_iter
    tol: float = 1e-3                   # stop when the relative residual falls below this
    gradient: str = "ift"               # ift (implicit differentiation) | phantom
    backward_solver: str = "fixed_point_iter"
    backward_max_iter: int = 12
    backward_tol: float = 1e-6
    phantom_steps: int = 1              # k damped steps for the phantom gradient
    phantom_damping: float = 0.5        # τ of the phantom gradient
    norm: str = "none"                  # none | weight_norm | spectral_norm
    jacobian_weight: float = 0.0        # > 0: add weight · jac_reg(f(z*), z*) to the loss in training

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

    def torchdeq_kwargs(self) -> dict:
        """The keyword arguments for torchdeq.get_deq (names as torchdeq 0.1.0 reads them)."""
        kwargs = dict(core="sliced", f_solver=self.solver, f_max_iter=self.max_iter, f_tol=self.tol,
                      f_stop_mode="rel", eval_f_max_iter=self.eval_max_iter or self.max_iter)
        if self.gradient == "ift":
            kwargs.update(ift=True, b_solver=self.backward_solver, b_max_iter=self.backward_max_iter,
                          b_tol=self.backward_tol, b_stop_mode="rel")
        else:
            kwargs.update(ift=False, grad=self.phantom_steps, tau=self.phantom_damping)
        return kwargs


@register_model("deq", config=DEQConfig,
                description="deep equilibrium model (torchdeq): fixed point of an input-injected block stack")
class DEQ(Transformer):
    iteration_count_key = "max_iter"      # the training rules vary the forward solver's budget
    test_time_compute_key = "eval_max_iter"
    logged_outputs = ("solver_steps", "solver_residual")
    full_budget = {"tol": 1e-30}   # FLOP matching: the solver runs its whole iteration budget
    reference_defaults = {"num_layers": lambda hrm: hrm.low_layers}
    presets = {
        # CPU study: torchdeq's own default gradient (1-step phantom, docs/reference.md (baselines)) and 6 solver
        # iterations. With implicit differentiation and 12 + 12 iterations one step cost 11× the
        # transformer's (measured on the addition cpu preset), which would set every model's budget.
        "cpu": {"model.gradient": "phantom", "model.max_iter": 6},
    }

    def __init__(self, config: DEQConfig, spec):
        super().__init__(config, spec)   # the transformer's embedding, block stack (f) and head; zero carry
        self.deq = get_deq(**config.torchdeq_kwargs())
        apply_norm(self.blocks, norm_type=config.norm)

    def forward(self, carry, batch):
        config = self.config
        if self.training and config.norm != "none":
            reset_norm(self.blocks)       # torchdeq: recompute the normalised weights each training forward
        x, rotary = self.embedding(batch)

        def f(z):
            return self.blocks(z, injection=x, rotary=rotary)

        budget = config.max_iter if self.training else (config.eval_max_iter or config.max_iter)
        solver_kwargs = {"f_max_iter": budget}
        if x.device.type == "meta":   # shape-only runs (FLOP counting) cannot stop early: the whole budget
            solver_kwargs["return_final"] = True
        trajectory, info = self.deq(f, carry["z"].to(x.dtype), solver_kwargs=solver_kwargs)
        z = trajectory[-1]
        if self.residual_trace is not None:
            self.residual_trace.setdefault("z", []).extend(info["rel_trace"].float().mean(0).tolist())
        outputs = {"logits": self.head(z), "solver_steps": info["nstep"].float().mean(),
                   "solver_residual": info["rel_lowest"].float().mean()}
        if self.training and config.jacobian_weight > 0:
            z_star = z.detach().requires_grad_()
            with sdpa_kernel(SDPBackend.MATH):   # jac_reg needs double backward; fused CPU attention has none
                f_star = f(z_star)
            outputs["aux_loss"] = config.jacobian_weight * jac_reg(f_star, z_star)
        return {"z": z.detach()}, outputs
