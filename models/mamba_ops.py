"""Mamba's operators: the bidirectional mixer, the selective scan and the depthwise conv.

On CPU the scan and the conv are `torch.library` custom ops running the compiled kernels of
models/_mamba_kernels.py, each with a written-out backward op and a registered FLOP formula, so the
FLOP counter sees them like any other op (and shape-only runs on the meta device work through their
fake implementations). On CUDA the scan runs on mamba-ssm's fused kernel (the `cuda` extra) or, without
it, on mambapy's parallel scan; neither is visible to the counter, so that path reports its FLOPs
through `scan_flops_on_cuda`, an op that computes nothing and carries the same formula.

    h_t = exp(Δ_t A) ⊙ h_{t-1} + (Δ_t x_t) B_t        y_t = h_t C_t + D x_t     (h: batch × inner × N)
"""
from __future__ import annotations

import os

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.flop_counter import register_flop_formula

from models._mamba_kernels import conv_backward, conv_forward, scan_backward, scan_forward
from models.blocks import Linear


def kernel_threads() -> int:
    """Threads for the compiled kernels: torch's count only when its OpenMP workers sleep between ops
    (OMP_WAIT_POLICY=passive). Otherwise they spin-wait after each op on the cores a helper thread
    would use, and splitting is slower than the calling thread alone (docs/models/mamba.md)."""
    return torch.get_num_threads() if os.environ.get("OMP_WAIT_POLICY", "").lower() == "passive" else 1


def kernel_dtype(x: Tensor) -> torch.dtype:
    """The CPU kernels compute in float32 (bf16/fp16 inputs included), or float64 when given it."""
    return torch.float64 if x.dtype == torch.float64 else torch.float32


def _numpy(*tensors: Tensor):
    return [tensor.detach().contiguous().numpy() for tensor in tensors]


# ------------------------------------------------------------------ selective scan (CPU kernels)
@torch.library.custom_op("recurrent_bench::selective_scan", mutates_args=())
def _scan(x: Tensor, delta: Tensor, A_transposed: Tensor, B: Tensor, C: Tensor, reverse: bool) -> Tensor:
    """y_t = h_t C_t without the D skip; x, Δ (B, L, inner), Aᵀ (N, inner), B, C (B, L, N)."""
    return torch.from_numpy(scan_forward(*_numpy(x, delta, A_transposed, B, C), reverse=reverse,
                                         threads=kernel_threads()))


@_scan.register_fake
def _(x, delta, A_transposed, B, C, reverse):
    return torch.empty_like(x)


@torch.library.custom_op("recurrent_bench::selective_scan_backward", mutates_args=())
def _scan_backward(x: Tensor, delta: Tensor, A_transposed: Tensor, B: Tensor, C: Tensor, grad_y: Tensor,
                   reverse: bool) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    """Gradients of (x, Δ, Aᵀ, B, C); the states are recomputed row by row, never stored."""
    grads = scan_backward(*_numpy(x, delta, A_transposed, B, C, grad_y.to(x.dtype)), reverse=reverse,
                          threads=kernel_threads())
    return tuple(torch.from_numpy(grad) for grad in grads)


@_scan_backward.register_fake
def _(x, delta, A_transposed, B, C, grad_y, reverse):
    return tuple(torch.empty_like(tensor) for tensor in (x, delta, A_transposed, B, C))


def _scan_setup(ctx, inputs, output):
    *tensors, ctx.reverse = inputs
    ctx.save_for_backward(*tensors)


def _scan_grad(ctx, grad_y):
    return (*_scan_backward(*ctx.saved_tensors, grad_y, ctx.reverse), None)


_scan.register_autograd(_scan_grad, setup_context=_scan_setup)


def selective_scan_flops(batch: int, length: int, inner: int, state_size: int) -> int:
    """mamba-ssm's own count for one selective scan (`flops_selective_scan_ref`): 9·B·L·D·N + B·L·D (D skip)."""
    return 9 * batch * length * inner * state_size + batch * length * inner


@register_flop_formula(torch.ops.recurrent_bench.selective_scan)
def _scan_flop_formula(x_shape, delta_shape, A_shape, *args, out_shape=None, **kwargs) -> int:
    batch, length, inner = x_shape
    return selective_scan_flops(batch, length, inner, A_shape[0])


@register_flop_formula(torch.ops.recurrent_bench.selective_scan_backward)
def _scan_backward_flop_formula(x_shape, delta_shape, A_shape, *args, out_shape=None, **kwargs) -> int:
    batch, length, inner = x_shape
    return 2 * selective_scan_flops(batch, length, inner, A_shape[0])   # backward ≈ 2× forward


def selective_scan(x, delta, A, B, C, D, reverse: bool = False):
    """mambapy's `selective_scan` signature: x, Δ (B, L, inner), A (inner, N), B, C (B, L, N), D (inner);
    reverse scans from the last position to the first (= the scan of the flipped sequence, flipped back).
    The recurrence runs in float32 whatever the autocast dtype, as mamba-ssm's kernel does."""
    dtype = kernel_dtype(x)
    scanned = _scan(*(tensor.to(dtype).contiguous() for tensor in (x, delta, A.T, B, C)), reverse)
    return (scanned + D * x).to(x.dtype)


# ------------------------------------------------------------------ depthwise conv (CPU kernels)
@torch.library.custom_op("recurrent_bench::depthwise_conv", mutates_args=())
def _conv(x: Tensor, weight_transposed: Tensor, bias: Tensor, reverse: bool) -> Tensor:
    """Causal (or, reversed, anti-causal) depthwise conv along L of x (B, L, channels); weightᵀ (K, channels)."""
    return torch.from_numpy(conv_forward(*_numpy(x, weight_transposed, bias), reverse=reverse,
                                         threads=kernel_threads()))


@_conv.register_fake
def _(x, weight_transposed, bias, reverse):
    return torch.empty_like(x)


@torch.library.custom_op("recurrent_bench::depthwise_conv_backward", mutates_args=())
def _conv_backward(x: Tensor, weight_transposed: Tensor, grad_out: Tensor, reverse: bool) -> tuple[Tensor, Tensor, Tensor]:
    grads = conv_backward(*_numpy(x, weight_transposed, grad_out.to(x.dtype)), reverse=reverse,
                          threads=kernel_threads())
    return tuple(torch.from_numpy(grad) for grad in grads)


@_conv_backward.register_fake
def _(x, weight_transposed, grad_out, reverse):
    return torch.empty_like(x), torch.empty_like(weight_transposed), x.new_empty(x.shape[-1])


def _conv_setup(ctx, inputs, output):
    x, weight_transposed, _, ctx.reverse = inputs
    ctx.save_for_backward(x, weight_transposed)


def _conv_grad(ctx, grad_out):
    return (*_conv_backward(*ctx.saved_tensors, grad_out, ctx.reverse), None)


_conv.register_autograd(_conv_grad, setup_context=_conv_setup)


@register_flop_formula(torch.ops.recurrent_bench.depthwise_conv)
def _conv_flop_formula(x_shape, weight_shape, *args, out_shape=None, **kwargs) -> int:
    return 2 * x_shape[0] * x_shape[1] * x_shape[2] * weight_shape[0]


@register_flop_formula(torch.ops.recurrent_bench.depthwise_conv_backward)
def _conv_backward_flop_formula(x_shape, weight_shape, *args, out_shape=None, **kwargs) -> int:
    return 4 * x_shape[0] * x_shape[1] * x_shape[2] * weight_shape[0]   # input and weight gradients


def depthwise_conv_along_sequence(x: Tensor, conv: nn.Conv1d, reverse: bool) -> Tensor:
    """conv(x) over (B, L, channels) without transposing: causal (output t sees x[t-K+1..t]) or, when
    reverse, anti-causal (sees x[t..t+K-1]), i.e. `conv1d(x.flip(1)).flip(1)` cut to L as mambapy cuts it."""
    dtype = kernel_dtype(x)
    out = _conv(x.to(dtype).contiguous(), conv.weight[:, 0].T.to(dtype).contiguous(), conv.bias.to(dtype), reverse)
    return out.to(x.dtype)


# ------------------------------------------------------------------ the CUDA path's FLOPs
@torch.library.custom_op("recurrent_bench::scan_flops_on_cuda", mutates_args=())
def scan_flops_on_cuda(x: Tensor, state_size: int, with_backward: bool) -> Tensor:
    """Computes nothing: its FLOP formula counts a CUDA scan (mamba-ssm or mambapy) the counter cannot see."""
    return x.new_empty(0)


@scan_flops_on_cuda.register_fake
def _(x, state_size, with_backward):
    return x.new_empty(0)


@register_flop_formula(torch.ops.recurrent_bench.scan_flops_on_cuda)
def _cuda_scan_flop_formula(x_shape, state_size, with_backward, *args, out_shape=None, **kwargs) -> int:
    batch, length, inner = x_shape
    return selective_scan_flops(batch, length, inner, state_size) * (3 if with_backward else 1)


def _mamba_ssm_scan():
    """mamba-ssm's fused CUDA selective scan, or None when it is not installed."""
    try:
        from mamba_ssm.ops.selective_scan_interface import selective_scan_fn
    except Exception:  # ImportError, or a build without its compiled extension
        return None
    return selective_scan_fn


# ------------------------------------------------------------------ the mixer
class BidirectionalMamba(nn.Module):
    """Mamba mixer over both directions of a non-causal sequence: y = out(fwd(u) + flip(bwd(flip(u)))).

    Built from mambapy's `MambaBlock` pieces (depthwise conv, x/dt projections, A, D). The input and
    output projections are shared by the two directions (as Caduceus ties and Vision Mamba shares
    them), so they are computed once; each direction has its own conv, x_proj, dt_proj, A_log and D.
    Parameters: 6·h² + 2·(conv, x_proj, dt_proj, A, D) at expand 2.
    """

    def __init__(self, hidden: int, state_size: int = 16, expand: int = 2, conv_width: int = 4):
        super().__init__()
        from mambapy.mamba import MambaBlock, MambaConfig

        self.config = MambaConfig(d_model=hidden, n_layers=1, d_state=state_size, expand_factor=expand,
                                  d_conv=conv_width)
        inner = self.config.d_inner
        self.in_proj = Linear(hidden, 2 * inner)
        self.out_proj = Linear(inner, hidden)
        self.directions = nn.ModuleList(MambaBlock(self.config) for _ in range(2))
        for direction in self.directions:   # the shared projections above replace the per-direction ones
            del direction.in_proj, direction.out_proj

    def _ssm_inputs(self, block: nn.Module, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        delta, B, C = torch.split(block.x_proj(x), [self.config.dt_rank, self.config.d_state, self.config.d_state],
                                  dim=-1)
        return F.softplus(block.dt_proj(delta)), B, C             # mambapy: softplus(W·δ + bias)

    def _direction(self, block: nn.Module, x: Tensor, z: Tensor, reverse: bool) -> Tensor:
        """One direction on the CPU kernels: the conv looks back (or ahead, when reverse) and the scan
        runs in either order, so nothing is flipped or copied."""
        x = F.silu(depthwise_conv_along_sequence(x, block.conv1d, reverse))
        delta, B, C = self._ssm_inputs(block, x)
        y = selective_scan(x, delta, -torch.exp(block.A_log.float()), B, C, block.D.float(), reverse=reverse)
        return y * F.silu(z)

    def _direction_by_flipping(self, block: nn.Module, x: Tensor, z: Tensor) -> Tensor:
        """One causal direction as mambapy runs it, for the flipped sequence too: the CUDA path. The scan is
        mamba-ssm's fused kernel when installed (it applies the SiLU(z) gate itself), else mambapy's
        parallel scan (the compiled kernels are CPU-only; on CPU this is the tests' reference)."""
        length = x.shape[1]
        x = F.silu(block.conv1d(x.transpose(1, 2))[:, :, :length].transpose(1, 2))
        delta, B, C = self._ssm_inputs(block, x)
        A = -torch.exp(block.A_log.float())
        scan_flops_on_cuda(x, self.config.d_state, torch.is_grad_enabled() and x.requires_grad)
        fused = _mamba_ssm_scan() if x.is_cuda else None
        if fused is not None:
            y = fused(x.transpose(1, 2), delta.transpose(1, 2), A, B.transpose(1, 2), C.transpose(1, 2),
                      block.D.float(), z=z.transpose(1, 2))
            return y.transpose(1, 2)
        return block.selective_scan(x, delta, A, B, C, block.D.float()) * F.silu(z)

    def forward(self, u: Tensor) -> Tensor:
        x, z = self.in_proj(u).chunk(2, dim=-1)
        forward_scan, backward_scan = self.directions
        if u.device.type == "cuda":
            y = self._direction_by_flipping(forward_scan, x, z) + \
                self._direction_by_flipping(backward_scan, x.flip(1), z.flip(1)).flip(1)
        else:
            y = self._direction(forward_scan, x, z, reverse=False) + self._direction(backward_scan, x, z, reverse=True)
        return self.out_proj(y)
