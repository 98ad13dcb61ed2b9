"""Optimisers written from their update rules (docs/reference.md (HRM)).

AdamAtan2 — HRM's optimiser: Adam with the division m̂/(√v̂ + ε) replaced by atan2(m̂, √v̂), so no ε,
bounded steps, and scale invariance:
    p ← p·(1 − lr·wd);   p ← p − lr·atan2(m̂, √v̂)

SignSGD — the puzzle-embedding optimiser: decoupled weight decay and a sign step, applied only to the
rows that the batch used (the reference's sparse embedding updates only those rows).
"""
from __future__ import annotations

import torch
from torch.optim import Optimizer


class AdamAtan2(Optimizer):
    def __init__(self, params, lr: float = 1e-4, betas: tuple[float, float] = (0.9, 0.95), weight_decay: float = 0.0):
        if lr < 0:
            raise ValueError(f"invalid learning rate {lr}")
        super().__init__(params, dict(lr=lr, betas=betas, weight_decay=weight_decay))

    @torch.no_grad()
    def step(self, closure=None):
        loss = closure() if closure is not None else None
        for group in self.param_groups:
            beta1, beta2 = group["betas"]
            lr, weight_decay = group["lr"], group["weight_decay"]
            for param in group["params"]:
                if param.grad is None:
                    continue
                state = self.state[param]
                if not state:
                    state["step"] = torch.zeros((), dtype=torch.float32)
                    state["exp_avg"] = torch.zeros_like(param)
                    state["exp_avg_sq"] = torch.zeros_like(param)
                state["step"] += 1
                step = state["step"].item()
                grad = param.grad
                exp_avg, exp_avg_sq = state["exp_avg"], state["exp_avg_sq"]
                exp_avg.lerp_(grad, 1 - beta1)
                exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
                param.mul_(1 - lr * weight_decay)
                corrected_avg = exp_avg / (1 - beta1 ** step)
                corrected_sq = exp_avg_sq / (1 - beta2 ** step)
                param.add_(torch.atan2(corrected_avg, corrected_sq.sqrt()), alpha=-lr)
        return loss


class SignSGD(Optimizer):
    """Sign-of-gradient step with decoupled weight decay on the rows that received gradient."""

    def __init__(self, params, lr: float = 1e-2, weight_decay: float = 0.0):
        super().__init__(params, dict(lr=lr, weight_decay=weight_decay))

    @torch.no_grad()
    def step(self, closure=None):
        loss = closure() if closure is not None else None
        for group in self.param_groups:
            lr, weight_decay = group["lr"], group["weight_decay"]
            for param in group["params"]:
                if param.grad is None:
                    continue
                grad = param.grad
                used = (grad != 0).any(dim=-1, keepdim=True) if grad.dim() > 1 else grad != 0
                param.mul_(torch.where(used, 1 - lr * weight_decay, 1.0))
                param.add_(torch.sign(grad), alpha=-lr)
        return loss


def learning_rate(step: int, base: float, warmup: int, total: int, schedule: str, min_ratio: float) -> float:
    """Linear warm-up from 0, then constant or cosine down to min_ratio·base (`step` counts from 0)."""
    if step < warmup:
        return base * step / max(1, warmup)
    if schedule == "constant":
        return base
    progress = (step - warmup) / max(1, total - warmup)
    cosine = 0.5 * (1.0 + torch.cos(torch.tensor(torch.pi * min(progress, 1.0))).item())
    return base * (min_ratio + (1.0 - min_ratio) * cosine)
