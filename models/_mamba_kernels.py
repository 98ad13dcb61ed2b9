"""Compiled (numba) CPU kernels for Mamba: the selective scan and the depthwise conv, forward and backward,
one batch row at a time.

    h_t = exp(Δ_t A) ⊙ h_{t-1} + (Δ_t x_t) B_t        y_t = Σ_n h_t[n] C_t[n]      (h: N × inner)

Why compiled rather than PyTorch ops or a library: no maintained package ships a CPU selective scan
(mamba-ssm's kernels are CUDA-only; mambapy's scans are PyTorch ops, memory-bound on CPU), and a
PyTorch loop over positions pays ~20 tensor ops per position in dispatch and memory traffic. Here
each batch row's state (N × inner floats) stays in L1 cache, the innermost loop runs over the
contiguous `inner` axis so LLVM vectorises it, and exp is a vectorisable polynomial (below) rather
than a libm call. The backward recomputes the row's states instead of saving B·L·N·inner floats.
The depthwise conv is here for the same reason: on (B, L, inner) without transposes, in either
direction, it costs a few ms where PyTorch's conv1d (plus transposes) or shifted products cost tens.

Rows are independent: the batch can be split over threads (the kernels release the GIL), and the result
does not depend on the thread count. models/blocks.py asks for one thread unless torch's OpenMP workers
sleep between ops (`kernel_threads` in models/mamba_ops.py; docs/models/mamba.md has the measurements). float64 inputs (gradient checks) use
math.exp exactly.
"""
from __future__ import annotations

import math
import os
from concurrent.futures import ThreadPoolExecutor

import numba
import numpy as np
from llvmlite import ir
from numba import types
from numba.extending import intrinsic, overload


@intrinsic
def _bits_as_float32(typing_context, bits):
    """Reinterpret an int32's bits as a float32 (a plain LLVM bitcast, so it vectorises)."""
    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.FloatType())
    return types.float32(types.int32), codegen


def decay_exp(x):
    """exp(x) inside the kernels: float32 → polynomial below, float64 → math.exp."""
    return math.exp(x)


@overload(decay_exp, jit_options={"fastmath": True})
def _decay_exp_overload(x):
    if x != types.float32:
        return lambda x: math.exp(x)

    def float32_exp(x):
        # exp(x) = 2^k · exp(f), k = round(x / ln2), |f| ≤ ln2/2; degree-6 Taylor for exp(f)
        # (truncation < 1.2e-7 relative). Clamped to float32's finite, normal range.
        x = min(max(x, np.float32(-87.0)), np.float32(88.0))
        k = np.float32(math.floor(x * np.float32(1.4426950408889634) + np.float32(0.5)))
        f = x - k * np.float32(0.6931471805599453)
        p = np.float32(1.0) + f * (np.float32(1.0) + f * (np.float32(1 / 2) + f * (np.float32(1 / 6) + f * (
            np.float32(1 / 24) + f * (np.float32(1 / 120) + f * np.float32(1 / 720))))))
        return p * _bits_as_float32((np.int32(k) + np.int32(127)) << np.int32(23))   # p · 2^k
    return float32_exp


# The innermost loops run over `inner` padded to a multiple of the vector width, in row-local buffers
# (padding: zero Δ and zero A, so the padded states stay zero and add nothing to any sum). Without it
# LLVM finishes each (t, n) loop with scalar iterations: 40% of the forward's time at inner = 148.
VECTOR_LANES = 16


@numba.njit(cache=True, nogil=True, fastmath=True)
def _padded_A(A_transposed, padded):
    out = np.zeros((A_transposed.shape[0], padded), A_transposed.dtype)
    out[:, :A_transposed.shape[1]] = A_transposed
    return out


@numba.njit(cache=True, nogil=True, fastmath=True)
def _forward_rows(x, delta, A_transposed, B, C, y, reverse, start, stop):
    """y[b] for rows start..stop-1, scanning t = 0..L-1 (or L-1..0 when reverse).
    x, delta, y: (batch, L, inner); A_transposed: (N, inner); B, C: (batch, L, N)."""
    _, length, inner = x.shape
    state_size = A_transposed.shape[0]
    padded = (inner + VECTOR_LANES - 1) // VECTOR_LANES * VECTOR_LANES
    A_padded = _padded_A(A_transposed, padded)
    state = np.empty((state_size, padded), x.dtype)
    delta_t, delta_x, y_t = np.zeros(padded, x.dtype), np.zeros(padded, x.dtype), np.empty(padded, x.dtype)
    for b in range(start, stop):
        state[:] = 0
        for step in range(length):
            t = length - 1 - step if reverse else step
            for d in range(inner):
                delta_t[d] = delta[b, t, d]
                delta_x[d] = delta[b, t, d] * x[b, t, d]
            y_t[:] = 0
            for n in range(state_size):
                b_n, c_n = B[b, t, n], C[b, t, n]
                for d in range(padded):
                    h = decay_exp(delta_t[d] * A_padded[n, d]) * state[n, d] + delta_x[d] * b_n
                    state[n, d] = h
                    y_t[d] += h * c_n
            y[b, t, :] = y_t[:inner]


@numba.njit(cache=True, nogil=True, fastmath=True)
def _backward_rows(x, delta, A_transposed, B, C, grad_y, grad_x, grad_delta, grad_A_rows, grad_B, grad_C,
                   reverse, start, stop):
    """Gradients for rows start..stop-1; grad_A_rows[b] (N, inner) is row b's share of dLoss/dA (summed by
    the caller, so the total does not depend on how rows were split)."""
    _, length, inner = x.shape
    state_size = A_transposed.shape[0]
    padded = (inner + VECTOR_LANES - 1) // VECTOR_LANES * VECTOR_LANES
    A_padded = _padded_A(A_transposed, padded)
    # indexed by scan step s (t = s, or L-1-s when reverse): states[s + 1] = h after step s, states[0] = 0
    states = np.empty((length + 1, state_size, padded), x.dtype)
    decays = np.empty((length, state_size, padded), x.dtype)
    deltas = np.zeros((length, padded), x.dtype)                     # Δ and Δx of the row, by step
    delta_xs = np.zeros((length, padded), x.dtype)
    grad_state = np.empty((state_size, padded), x.dtype)             # dLoss/dh_t, carried backwards
    grad_A_row = np.empty((state_size, padded), x.dtype)
    grad_y_t = np.zeros(padded, x.dtype)
    grad_delta_x = np.empty(padded, x.dtype)
    grad_exponent_total = np.empty(padded, x.dtype)
    for b in range(start, stop):
        states[0] = 0
        for step in range(length):                               # recompute the row's states
            t = length - 1 - step if reverse else step
            for d in range(inner):
                deltas[step, d] = delta[b, t, d]
                delta_xs[step, d] = delta[b, t, d] * x[b, t, d]
            for n in range(state_size):
                b_n = B[b, t, n]
                for d in range(padded):
                    decay = decay_exp(deltas[step, d] * A_padded[n, d])
                    decays[step, n, d] = decay
                    states[step + 1, n, d] = decay * states[step, n, d] + delta_xs[step, d] * b_n
        grad_state[:] = 0
        grad_A_row[:] = 0
        for step in range(length - 1, -1, -1):
            t = length - 1 - step if reverse else step
            grad_y_t[:inner] = grad_y[b, t, :]
            grad_delta_x[:] = 0
            grad_exponent_total[:] = 0
            for n in range(state_size):
                b_n, c_n = B[b, t, n], C[b, t, n]
                grad_b, grad_c = x.dtype.type(0), x.dtype.type(0)
                for d in range(padded):
                    g = grad_state[n, d] + grad_y_t[d] * c_n
                    grad_c += states[step + 1, n, d] * grad_y_t[d]
                    grad_delta_x[d] += g * b_n
                    grad_b += g * delta_xs[step, d]
                    # dLoss/d(Δ_t A): zero at the first step, where the decay multiplies the zero state
                    grad_exponent = g * states[step, n, d] * decays[step, n, d]
                    grad_exponent_total[d] += grad_exponent * A_padded[n, d]
                    grad_A_row[n, d] += grad_exponent * deltas[step, d]
                    grad_state[n, d] = g * decays[step, n, d]
                grad_B[b, t, n] = grad_b
                grad_C[b, t, n] = grad_c
            for d in range(inner):
                grad_x[b, t, d] = grad_delta_x[d] * delta[b, t, d]
                grad_delta[b, t, d] = grad_exponent_total[d] + grad_delta_x[d] * x[b, t, d]
        grad_A_rows[b] = grad_A_row[:, :inner]


# Splitting the rows over threads pays only when each thread gets enough work: a hand-off costs tens of µs,
# and on a busy 2-core machine a helper thread can wait behind torch's own OpenMP workers. With a thread
# pool created per call, the benchmarks' batch-16 Mamba forward took 20–34 ms split in two and a steady
# 10 ms on one thread. So the pool persists, the calling thread takes the first share, and a thread is added
# per MIN_WORK_PER_THREAD element updates (rows × L × inner × N or × conv taps; ≈ 1 ms of the scan).
MIN_WORK_PER_THREAD = 1 << 20
_helper_pool: ThreadPoolExecutor | None = None   # made on the first split; it starts threads as they are needed
os.register_at_fork(after_in_child=lambda: globals().update(_helper_pool=None))   # a child has none of them


def _split_rows(batch: int, threads: int) -> list[tuple[int, int]]:
    threads = max(1, min(threads, batch))
    bounds = np.linspace(0, batch, threads + 1).astype(int)
    return [(int(bounds[i]), int(bounds[i + 1])) for i in range(threads) if bounds[i] < bounds[i + 1]]


def _helpers() -> ThreadPoolExecutor:
    global _helper_pool
    if _helper_pool is None:
        _helper_pool = ThreadPoolExecutor(os.cpu_count() or 1, thread_name_prefix="mamba-kernels")
    return _helper_pool


def _over_rows(kernel, arrays: tuple, batch: int, threads: int, work_per_row: int) -> None:
    """kernel(*arrays, start, stop) over row ranges: the first in this thread, the rest on the helpers."""
    ranges = _split_rows(batch, min(threads, max(1, batch * work_per_row // MIN_WORK_PER_THREAD)))
    futures = [_helpers().submit(kernel, *arrays, start, stop) for start, stop in ranges[1:]]
    kernel(*arrays, *ranges[0])
    for future in futures:
        future.result()


def _scan_work(x, B) -> int:
    return x.shape[1] * x.shape[2] * B.shape[2]          # per row: L × inner × N state updates


def _conv_work(x, weight_transposed) -> int:
    return x.shape[1] * x.shape[2] * weight_transposed.shape[0]   # per row: L × inner × taps


def scan_forward(x, delta, A_transposed, B, C, reverse: bool = False, threads: int = 1) -> np.ndarray:
    """y (batch, L, inner) for contiguous arrays of one float dtype (see _forward_rows)."""
    y = np.empty_like(x)
    _over_rows(_forward_rows, (x, delta, A_transposed, B, C, y, reverse), x.shape[0], threads, _scan_work(x, B))
    return y


def scan_backward(x, delta, A_transposed, B, C, grad_y, reverse: bool = False, threads: int = 1):
    """(grad_x, grad_delta, grad_A_transposed, grad_B, grad_C) for the forward above."""
    grad_x, grad_delta = np.empty_like(x), np.empty_like(x)
    grad_A_rows = np.empty((x.shape[0], *A_transposed.shape), x.dtype)
    grad_B, grad_C = np.empty_like(B), np.empty_like(C)
    _over_rows(_backward_rows, (x, delta, A_transposed, B, C, grad_y, grad_x, grad_delta, grad_A_rows, grad_B,
                                grad_C, reverse), x.shape[0], threads, _scan_work(x, B))
    return grad_x, grad_delta, grad_A_rows.sum(0), grad_B, grad_C


@numba.njit(cache=True, nogil=True, fastmath=True)
def _conv_source(t, k, width, reverse):
    """Input position that tap k reads for output t: t-(K-1)+k (causal) or t+(K-1)-k (reverse)."""
    return t + width - 1 - k if reverse else t - (width - 1) + k


@numba.njit(cache=True, nogil=True, fastmath=True)
def _conv_forward_rows(x, weight_transposed, bias, out, reverse, start, stop):
    """out[b, t] = bias + Σ_k weight[:, k] ⊙ x[b, source(t, k)] (zero outside 0..L-1); weight_transposed: (K, inner)."""
    _, length, inner = x.shape
    width = weight_transposed.shape[0]
    for b in range(start, stop):
        for t in range(length):
            out[b, t, :] = bias
            for k in range(width):
                source = _conv_source(t, k, width, reverse)
                if 0 <= source < length:
                    for d in range(inner):
                        out[b, t, d] += weight_transposed[k, d] * x[b, source, d]


@numba.njit(cache=True, nogil=True, fastmath=True)
def _conv_backward_rows(x, weight_transposed, grad_out, grad_x, grad_weight_rows, grad_bias_rows, reverse, start,
                        stop):
    _, length, inner = x.shape
    width = weight_transposed.shape[0]
    for b in range(start, stop):
        grad_x[b] = 0
        grad_weight_rows[b] = 0
        grad_bias_rows[b] = 0
        for t in range(length):
            for d in range(inner):
                grad_bias_rows[b, d] += grad_out[b, t, d]
            for k in range(width):
                source = _conv_source(t, k, width, reverse)
                if 0 <= source < length:
                    for d in range(inner):
                        grad_x[b, source, d] += weight_transposed[k, d] * grad_out[b, t, d]
                        grad_weight_rows[b, k, d] += grad_out[b, t, d] * x[b, source, d]


def conv_forward(x, weight_transposed, bias, reverse: bool = False, threads: int = 1) -> np.ndarray:
    """Depthwise conv along L of x (batch, L, inner), causal or (reverse) anti-causal, as mambapy's conv1d."""
    out = np.empty_like(x)
    _over_rows(_conv_forward_rows, (x, weight_transposed, bias, out, reverse), x.shape[0], threads,
               _conv_work(x, weight_transposed))
    return out


def conv_backward(x, weight_transposed, grad_out, reverse: bool = False, threads: int = 1):
    """(grad_x, grad_weight_transposed (K, inner), grad_bias) for conv_forward."""
    grad_x = np.empty_like(x)
    grad_weight_rows = np.empty((x.shape[0], *weight_transposed.shape), x.dtype)
    grad_bias_rows = np.empty((x.shape[0], x.shape[2]), x.dtype)
    _over_rows(_conv_backward_rows, (x, weight_transposed, grad_out, grad_x, grad_weight_rows, grad_bias_rows, reverse),
               x.shape[0], threads, _conv_work(x, weight_transposed))
    return grad_x, grad_weight_rows.sum(0), grad_bias_rows.sum(0)
