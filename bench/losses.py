"""Per-token cross-entropies: softmax, and HRM's stablemax (docs/reference.md (HRM)).

stablemax replaces exp with s(x) = x + 1 (x ≥ 0), 1 / (1 − x) (x < 0), which grows linearly instead
of exponentially; p_i = s(x_i) / Σ_j s(x_j). The reference computes it in float64.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def stablemax_s(x: torch.Tensor) -> torch.Tensor:
    # clamp so the unused branch stays finite: 1/(1 − x) at x = 1 is inf, and torch.where would turn
    # its zero-weighted gradient into NaN (the reference adds an epsilon for the same reason)
    return torch.where(x < 0, 1.0 / (1.0 - x.clamp(max=0.0)), x + 1.0)


def log_stablemax(x: torch.Tensor, dim: int = -1) -> torch.Tensor:
    s = stablemax_s(x)
    return torch.log(s / s.sum(dim=dim, keepdim=True))


def stablemax_cross_entropy(logits: torch.Tensor, labels: torch.Tensor, ignore_index: int = -100) -> torch.Tensor:
    """Per-token loss (same shape as labels), 0 where ignored; computed in float64."""
    log_probs = log_stablemax(logits.to(torch.float64), dim=-1)
    valid = labels != ignore_index
    safe_labels = torch.where(valid, labels, 0)
    picked = torch.gather(log_probs, -1, safe_labels.unsqueeze(-1)).squeeze(-1)
    return -torch.where(valid, picked, 0.0)


def softmax_cross_entropy(logits: torch.Tensor, labels: torch.Tensor, ignore_index: int = -100) -> torch.Tensor:
    """Per-token loss (same shape as labels), 0 where ignored."""
    return F.cross_entropy(logits.float().flatten(0, -2), labels.flatten(), ignore_index=ignore_index,
                           reduction="none").view(labels.shape)


LOSSES = {"stablemax": stablemax_cross_entropy, "softmax": softmax_cross_entropy}


def sequence_losses(per_token: torch.Tensor, labels: torch.Tensor, ignore_index: int = -100) -> torch.Tensor:
    """(B,) mean over each sequence's supervised tokens."""
    counts = (labels != ignore_index).sum(-1).clamp_min(1)
    return per_token.sum(-1) / counts


def sequence_mean_loss(per_token: torch.Tensor, labels: torch.Tensor, ignore_index: int = -100) -> torch.Tensor:
    """Mean over each sequence's supervised tokens, then over the batch (the reference's divisor)."""
    return sequence_losses(per_token, labels, ignore_index).mean()
