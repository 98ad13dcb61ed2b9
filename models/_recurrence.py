"""Which calls of a recurrent segment are differentiated (shared by HRM, TRM and their mirrors).

A segment of HRM and TRM has the same shape: `cycles` × [`updates` low-level calls, then one
high-level call]. The `gradient` switch picks which of those calls autograd sees:

    one_step    only the final low-level call and the final high-level call (HRM's 1-step gradient)
    last_cycle  every call of the last cycle (TRM's rule)
    full        every call (backpropagation through the whole segment)

Calls that are not differentiated run under `torch.no_grad()`, so no graph is stored for them.
"""
from __future__ import annotations

import contextlib

import torch

GRADIENT_MODES = ("one_step", "last_cycle", "full")


def check_gradient_mode(gradient: str) -> None:
    if gradient not in GRADIENT_MODES:
        raise ValueError(f"gradient must be one of {GRADIENT_MODES}, got {gradient!r}")


def differentiated(gradient: str, cycle: int, cycles: int, final_call_of_kind: bool) -> bool:
    """Is this call inside the gradient path?

    final_call_of_kind: for a low-level call, whether it is the last low-level call of its cycle;
    always True for the high-level call (there is one per cycle).
    """
    if gradient == "full":
        return True
    if cycle < cycles - 1:
        return False
    return gradient == "last_cycle" or final_call_of_kind


def gradient_scope(track: bool):
    """No-op when the call is differentiated, `torch.no_grad()` otherwise."""
    return contextlib.nullcontext() if track else torch.no_grad()


def run_cycles(high, low, low_update, high_update, cycles: int, updates: int, gradient: str):
    """cycles × [`updates` × low ← low_update(low, high), then high ← high_update(high, low)].

    Each call runs inside or outside the gradient path as `gradient` says; returns (high, low).
    """
    for cycle in range(cycles):
        for step in range(updates):
            with gradient_scope(differentiated(gradient, cycle, cycles, step == updates - 1)):
                low = low_update(low, high)
        with gradient_scope(differentiated(gradient, cycle, cycles, True)):
            high = high_update(high, low)
    return high, low


def broadcast_states(batch, prefix_len: int, states: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Initial carry: each fixed (hidden,) vector broadcast to every position of every row."""
    batch_size, length = batch["inputs"].shape
    return {name: state.expand(batch_size, prefix_len + length, state.shape[-1]).clone()
            for name, state in states.items()}
