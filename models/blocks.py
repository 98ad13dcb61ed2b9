"""Shared building blocks. Every model composes these; nothing here is model-specific.

Conventions follow the HRM reference code (see shared/REFERENCE.md §1): bias-free linears,
truncated LeCun-normal init, RMSNorm without a learnable scale, post-norm blocks, SwiGLU with the
intermediate size rounded up to a multiple of 256, RoPE with base 10000.
"""
from __future__ import annotations

import math
import os

import torch
import torch.nn.functional as F
from torch import nn

from models._mamba_kernels import conv_backward, conv_forward, scan_backward, scan_forward

# Std of a standard normal truncated to [-2, 2]; dividing by it makes the *truncated* draw have
# the requested std, as the reference's trunc_normal_init_ does.
_TRUNCATED_NORMAL_STD = 0.8796256610342398


def truncated_normal_(tensor: torch.Tensor, std: float) -> torch.Tensor:
    """Fill `tensor` from a normal truncated at ±2σ whose *actual* std is `std`."""
    if std == 0:
        return tensor.zero_()
    scale = std / _TRUNCATED_NORMAL_STD
    return nn.init.trunc_normal_(tensor, mean=0.0, std=scale, a=-2 * scale, b=2 * scale)


def lecun_normal_(weight: torch.Tensor) -> torch.Tensor:
    """Truncated LeCun normal: std = 1/sqrt(fan_in) (fan_in = input features of a Linear)."""
    return truncated_normal_(weight, std=1.0 / math.sqrt(weight.shape[1]))


class Linear(nn.Linear):
    """nn.Linear with truncated LeCun-normal init; bias-free unless asked."""

    def __init__(self, in_features: int, out_features: int, bias: bool = False):
        super().__init__(in_features, out_features, bias=bias)

    def reset_parameters(self) -> None:
        lecun_normal_(self.weight)
        if self.bias is not None:
            nn.init.zeros_(self.bias)


def rms_norm(x: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """RMSNorm without a learnable scale (the reference has none), computed in fp32."""
    dtype = x.dtype
    x = x.float()
    x = x * torch.rsqrt(x.square().mean(-1, keepdim=True) + eps)
    return x.to(dtype)


def swiglu_intermediate(hidden: int, expansion: float, multiple: int = 256) -> int:
    """round(expansion·h·2/3) rounded up to a multiple (1536 at h=512, expansion 4)."""
    size = round(expansion * hidden * 2 / 3)
    return -(size // -multiple) * multiple


class SwiGLU(nn.Module):
    """down(silu(gate(x)) * up(x)); gate and up fused into one projection."""

    def __init__(self, hidden: int, expansion: float = 4.0, multiple: int = 256, in_features: int | None = None):
        super().__init__()
        in_features = in_features or hidden
        self.intermediate = swiglu_intermediate(hidden, expansion, multiple)
        self.gate_up = Linear(in_features, 2 * self.intermediate)
        self.down = Linear(self.intermediate, in_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate, up = self.gate_up(x).chunk(2, dim=-1)
        return self.down(F.silu(gate) * up)


class RotaryEmbedding(nn.Module):
    """RoPE tables (cos, sin) for positions 0..max_len-1; base 10000 as the reference."""

    def __init__(self, head_dim: int, max_len: int, base: float = 10000.0):
        super().__init__()
        inv_freq = 1.0 / (base ** (torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim))
        angles = torch.outer(torch.arange(max_len, dtype=torch.float32), inv_freq)
        angles = torch.cat((angles, angles), dim=-1)
        self.register_buffer("cos", angles.cos(), persistent=False)
        self.register_buffer("sin", angles.sin(), persistent=False)

    def forward(self, length: int, positions: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        if positions is None:
            return self.cos[:length], self.sin[:length]
        return self.cos[positions], self.sin[positions]


def _rotate_half(x: torch.Tensor) -> torch.Tensor:
    first, second = x.chunk(2, dim=-1)
    return torch.cat((-second, first), dim=-1)


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """x: (B, heads, L, head_dim); cos/sin: (L, head_dim) or (B, L, head_dim)."""
    if cos.dim() == 3:
        cos, sin = cos[:, None], sin[:, None]
    return (x * cos + _rotate_half(x) * sin).to(x.dtype)


ATTENTION_BACKENDS = ("sdpa", "xformers")


class Attention(nn.Module):
    """Non-causal multi-head self-attention without biases.

    backend 'sdpa' uses torch's scaled_dot_product_attention (CPU and CUDA); 'xformers' uses
    xformers' memory-efficient attention (CUDA only; the `cuda` extra) and must agree with SDPA.
    """

    def __init__(self, hidden: int, num_heads: int, backend: str = "sdpa"):
        super().__init__()
        if hidden % num_heads:
            raise ValueError(f"hidden ({hidden}) must be divisible by num_heads ({num_heads})")
        if backend not in ATTENTION_BACKENDS:
            raise ValueError(f"attention backend must be one of {ATTENTION_BACKENDS}, got {backend!r}")
        self.num_heads = num_heads
        self.head_dim = hidden // num_heads
        self.backend = backend
        self.qkv = Linear(hidden, 3 * hidden)
        self.out = Linear(hidden, hidden)

    def forward(self, x: torch.Tensor, rotary: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
        batch, length, hidden = x.shape
        q, k, v = self.qkv(x).view(batch, length, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        if rotary is not None:
            q, k = apply_rotary(q, *rotary), apply_rotary(k, *rotary)
        if self.backend == "xformers":
            attended = _xformers_attention(q, k, v)
        else:
            attended = F.scaled_dot_product_attention(q, k, v, is_causal=False)
        return self.out(attended.transpose(1, 2).reshape(batch, length, hidden))


def _xformers_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    if not q.is_cuda:
        raise RuntimeError("the xformers attention backend needs CUDA; use model.attention_backend=sdpa on CPU")
    try:
        from xformers.ops import memory_efficient_attention
    except ImportError as error:  # pragma: no cover - only with the cuda extra
        raise RuntimeError("model.attention_backend=xformers needs the `cuda` extra (pip install '.[cuda]')") from error
    # xformers wants (B, L, heads, head_dim)
    out = memory_efficient_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2))
    return out.transpose(1, 2)


class PostNormBlock(nn.Module):
    """x = rms_norm(x + attn(x)); x = rms_norm(x + mlp(x)) — HRM's block.

    With `mixer='mlp'` the attention is replaced by a SwiGLU over the *sequence* axis (TRM's
    MLP-mixer variant, needs a fixed sequence length and no positions).
    """

    def __init__(self, hidden: int, num_heads: int, expansion: float = 4.0, ffn_multiple: int = 256,
                 backend: str = "sdpa", mixer: str = "attention", seq_len: int | None = None,
                 norm_eps: float = 1e-5):
        super().__init__()
        self.mixer_kind = mixer
        if mixer == "attention":
            self.mixer = Attention(hidden, num_heads, backend)
        elif mixer == "mlp":
            if not seq_len:
                raise ValueError("the MLP mixer needs the sequence length")
            self.mixer = SwiGLU(seq_len, expansion, ffn_multiple)
        else:
            raise ValueError(f"mixer must be 'attention' or 'mlp', got {mixer!r}")
        self.mlp = SwiGLU(hidden, expansion, ffn_multiple)
        self.norm_eps = norm_eps

    def forward(self, x: torch.Tensor, rotary: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
        if self.mixer_kind == "attention":
            x = rms_norm(x + self.mixer(x, rotary), self.norm_eps)
        else:
            # as the TRM reference: mix and normalise in the transposed (B, hidden, L) layout, so
            # this RMSNorm runs over the sequence axis
            transposed = x.transpose(1, 2)
            x = rms_norm(transposed + self.mixer(transposed), self.norm_eps).transpose(1, 2)
        return rms_norm(x + self.mlp(x), self.norm_eps)


class BlockStack(nn.Module):
    """A stack of post-norm blocks sharing one rotary table; `injection` is added to the input."""

    def __init__(self, num_layers: int, **block_kwargs):
        super().__init__()
        self.layers = nn.ModuleList(PostNormBlock(**block_kwargs) for _ in range(num_layers))

    def forward(self, x: torch.Tensor, injection: torch.Tensor | None = None,
                rotary: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
        if injection is not None:
            x = x + injection
        for layer in self.layers:
            x = layer(x, rotary)
        return x


POSITION_ENCODINGS = ("rope", "learned", "none")


class InputEmbedding(nn.Module):
    """sqrt(hidden) · (tokens + optional puzzle-embedding prefix [+ learned positions]), as the reference.

    Output: (B, prefix_len + seq_len, hidden). The puzzle table is zero-initialised and trained by
    its own SignSGD optimiser (the trainer finds it by the name `puzzle_embedding`); its parameters
    are counted separately from the model's.
    """

    def __init__(self, vocab_size: int, hidden: int, seq_len: int, num_puzzle_ids: int = 0,
                 puzzle_emb_len: int = 0, pos_encoding: str = "rope", num_heads: int = 1,
                 puzzle_emb_dim: int = 0):
        """seq_len: the longest sequence (or largest position index + 1) the model will see.

        puzzle_emb_dim: floats per puzzle id; 0 = hidden·puzzle_emb_len. A shorter row is zero-padded
        to fill the prefix (TRM: one hidden-sized row spread over 16 prefix positions).
        """
        super().__init__()
        if pos_encoding not in POSITION_ENCODINGS:
            raise ValueError(f"pos_encoding must be one of {POSITION_ENCODINGS}, got {pos_encoding!r}")
        self.hidden = hidden
        self.scale = math.sqrt(hidden)
        self.pos_encoding = pos_encoding
        self.prefix_len = puzzle_emb_len if num_puzzle_ids > 0 else 0
        self.tokens = nn.Embedding(vocab_size, hidden)
        truncated_normal_(self.tokens.weight, std=1.0 / self.scale)
        self.puzzle_embedding = None
        self.puzzle_emb_dim = puzzle_emb_dim or hidden * self.prefix_len
        if self.puzzle_emb_dim > hidden * self.prefix_len:
            raise ValueError(f"puzzle_emb_dim ({puzzle_emb_dim}) exceeds the prefix ({self.prefix_len}×{hidden})")
        if self.prefix_len:
            self.puzzle_embedding = nn.Embedding(num_puzzle_ids, self.puzzle_emb_dim)
            nn.init.zeros_(self.puzzle_embedding.weight)
        total_len = self.prefix_len + seq_len
        self.rotary = RotaryEmbedding(hidden // num_heads, total_len) if pos_encoding == "rope" else None
        self.positions = None
        if pos_encoding == "learned":
            self.positions = nn.Embedding(total_len, hidden)
            truncated_normal_(self.positions.weight, std=1.0 / self.scale)

    def forward(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor] | None]:
        """Embed a batch; returns (x, rotary tables or None) for the blocks to use.

        The batch carries `inputs` (B, L) and optionally `puzzle_ids` (B,) and `positions` (B, L)
        — task-supplied position indices (e.g. per-number digit indices) that replace 0..L-1.
        """
        inputs = batch["inputs"]
        puzzle_ids = batch.get("puzzle_ids")
        x = self.tokens(inputs)
        if self.puzzle_embedding is not None:
            if puzzle_ids is None:
                puzzle_ids = torch.zeros(inputs.shape[0], dtype=torch.long, device=inputs.device)
            prefix = self.puzzle_embedding(puzzle_ids)
            prefix = F.pad(prefix, (0, self.prefix_len * self.hidden - self.puzzle_emb_dim))
            x = torch.cat((prefix.view(inputs.shape[0], self.prefix_len, self.hidden).to(x.dtype), x), dim=1)
        positions = batch.get("positions")
        if positions is not None and self.prefix_len:
            prefix_positions = torch.arange(self.prefix_len, device=inputs.device).expand(inputs.shape[0], -1)
            positions = torch.cat((prefix_positions, positions + self.prefix_len), dim=1)
        if self.positions is not None:
            table = self.positions.weight[: x.shape[1]] if positions is None else self.positions(positions)
            # 1/sqrt(2) keeps the variance of the sum equal to each part's (reference behaviour)
            x = 0.707106781 * (x + table)
        # the reference scales the whole input (prefix and learned positions too), not just the tokens
        x = self.scale * x
        rotary = None if self.rotary is None else self.rotary(x.shape[1], positions)
        return x, rotary


class OutputHead(nn.Module):
    """Vocabulary logits at the token positions (the puzzle prefix is dropped)."""

    def __init__(self, hidden: int, vocab_size: int, prefix_len: int = 0):
        super().__init__()
        self.prefix_len = prefix_len
        self.proj = Linear(hidden, vocab_size)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.proj(z[:, self.prefix_len:])


class HaltingHead(nn.Module):
    """Q head of HRM/TRM: reads position 0, weight 0 and bias -5 so halting starts 'off'."""

    def __init__(self, hidden: int, outputs: int = 2):
        super().__init__()
        self.proj = nn.Linear(hidden, outputs, bias=True)
        nn.init.zeros_(self.proj.weight)
        nn.init.constant_(self.proj.bias, -5.0)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.proj(z[:, 0]).float()


def fixed_initial_state(hidden: int) -> torch.Tensor:
    """A fixed random vector (truncated normal, std 1) that starts a recurrent state.

    Drawn from the global RNG at construction (so seeded with the run); stored as a buffer by
    the model and never trained, as in the reference.
    """
    return truncated_normal_(torch.empty(hidden), std=1.0)


class BidirectionalMamba(nn.Module):
    """Mamba mixer over both directions of a non-causal sequence: y = out(fwd(u) + flip(bwd(flip(u)))).

    Built from mambapy's `MambaBlock` pieces (depthwise conv, x/dt projections, A, D, selective
    scan). The input and output projections are shared by the two directions (as Caduceus ties
    and Vision Mamba shares them), so they are computed once; each direction has its own conv,
    x_proj, dt_proj, A_log and D. Parameters: 6·h² + 2·(conv, x_proj, dt_proj, A, D) at expand 2.
    The scan runs on mamba-ssm's CUDA kernel when the input is on CUDA and mamba-ssm is importable,
    else on `selective_scan` below (compiled CPU kernels, hand-written backward).
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

    def _scan(self, block: nn.Module, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """One direction as mambapy runs it: causal depthwise conv, SiLU, `ssm` (mamba-ssm's kernel on
        CUDA), SiLU(z) gate. (B, L, inner). The backward direction is this on the flipped sequence."""
        length = x.shape[1]
        x = F.silu(block.conv1d(x.transpose(1, 2))[:, :, :length].transpose(1, 2))
        cuda_scan = _mamba_ssm_scan() if x.is_cuda else None
        block.config.use_cuda = cuda_scan is not None     # mambapy reads this flag inside ssm()
        block.selective_scan_cuda = cuda_scan
        if x.device.type == "cpu":
            block.selective_scan = selective_scan         # mambapy's ssm() calls it when use_cuda is off
        else:   # a GPU without mamba-ssm: mambapy's own parallel scan (our kernels are CPU-only)
            block.__dict__.pop("selective_scan", None)
        y = block.ssm(x, z)
        _add_selective_scan_flops(x, self.config.d_state)
        return y if cuda_scan is not None else y * F.silu(z)   # the CUDA kernel applies the gate itself

    def _scan_in_place(self, block: nn.Module, x: torch.Tensor, z: torch.Tensor, reverse: bool) -> torch.Tensor:
        """`_scan` (on the flipped sequence, flipped back, when reverse) without flipping anything: the conv
        looks back (or ahead) through shifted views and the CPU kernels scan in either order. Same function,
        same parameters; it saves the copies that dominate a CPU step once the scan itself is compiled."""
        x = F.silu(_depthwise_conv_along_sequence(x, block.conv1d, reverse))
        delta, B, C = torch.split(block.x_proj(x), [self.config.dt_rank, self.config.d_state, self.config.d_state],
                                  dim=-1)
        delta = F.softplus(block.dt_proj(delta))                  # mambapy: softplus(W·δ + bias)
        y = selective_scan(x, delta, -torch.exp(block.A_log.float()), B, C, block.D.float(), reverse=reverse)
        _add_selective_scan_flops(x, self.config.d_state)
        return y * F.silu(z)

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        x, z = self.in_proj(u).chunk(2, dim=-1)
        forward_scan, backward_scan = self.directions
        if u.device.type not in ("cpu", "meta"):   # mamba-ssm's kernel (or mambapy's scan) runs one way only
            y = self._scan(forward_scan, x, z) + self._scan(backward_scan, x.flip(1), z.flip(1)).flip(1)
        else:
            y = self._scan_in_place(forward_scan, x, z, reverse=False) + \
                self._scan_in_place(backward_scan, x, z, reverse=True)
        return self.out_proj(y)


def _kernel_threads() -> int:
    """Threads for the compiled kernels: torch's count only when its OpenMP workers sleep between ops.
    By default they spin-wait for a while after each op, on the cores a kernel helper thread would use:
    on 2 cores a cpu-preset Mamba step (batch 64) took 370–440 ms split in two and 260–335 ms in the
    calling thread; with OMP_WAIT_POLICY=passive the split won (260–275 vs 285–340 ms)."""
    return torch.get_num_threads() if os.environ.get("OMP_WAIT_POLICY", "").lower() == "passive" else 1


def _depthwise_conv_along_sequence(x: torch.Tensor, conv: nn.Conv1d, reverse: bool) -> torch.Tensor:
    """conv(x) over (B, L, channels) without transposing: causal (output t sees x[t-K+1..t]) or, when
    reverse, anti-causal (sees x[t..t+K-1]), i.e. `conv1d(x.flip(1)).flip(1)` cut to L as mambapy cuts it."""
    _add_uncounted(2 * x.numel() * conv.kernel_size[0], x)      # a compiled kernel: the counter sees nothing
    return _DepthwiseConv.apply(x, conv.weight, conv.bias, reverse)


class _DepthwiseConv(torch.autograd.Function):
    """Depthwise conv along the sequence on the compiled CPU kernels (models/_mamba_kernels.py)."""

    @staticmethod
    def forward(ctx, x, weight, bias, reverse):
        ctx.shapes = [tensor.shape for tensor in (x, weight, bias)]
        if x.device.type == "meta":                # shape-only runs (FLOP matching): nothing to compute
            return torch.empty_like(x)
        inputs = [tensor.detach().to(_kernel_dtype(x)).contiguous() for tensor in (x, weight[:, 0].T, bias)]
        ctx.save_for_backward(*inputs)
        ctx.reverse, ctx.dtypes = reverse, (x.dtype, weight.dtype, bias.dtype)
        out = conv_forward(*(tensor.numpy() for tensor in inputs), reverse=reverse, threads=_kernel_threads())
        return torch.from_numpy(out).to(x.dtype)

    @staticmethod
    def backward(ctx, grad_out):
        if grad_out.device.type == "meta":
            return (*(grad_out.new_empty(shape) for shape in ctx.shapes), None)
        x, weight_transposed, _ = ctx.saved_tensors
        grad_out = grad_out.detach().to(x.dtype).contiguous().numpy()
        grad_x, grad_weight_transposed, grad_bias = conv_backward(
            x.numpy(), weight_transposed.numpy(), grad_out, reverse=ctx.reverse, threads=_kernel_threads())
        x_dtype, weight_dtype, bias_dtype = ctx.dtypes
        return (torch.from_numpy(grad_x).to(x_dtype),
                torch.from_numpy(grad_weight_transposed).T.unsqueeze(1).to(weight_dtype),
                torch.from_numpy(grad_bias).to(bias_dtype), None)


def _mamba_ssm_scan():
    """mamba-ssm's fused CUDA selective scan, or None when it is not installed (CPU machines)."""
    try:
        from mamba_ssm.ops.selective_scan_interface import selective_scan_fn
    except Exception:  # ImportError, or a build without its compiled extension
        return None
    return selective_scan_fn


def selective_scan_flops(batch: int, length: int, inner: int, state_size: int) -> int:
    """mamba-ssm's own count for one selective scan (`flops_selective_scan_ref`): 9·B·L·D·N + B·L·D (D skip)."""
    return 9 * batch * length * inner * state_size + batch * length * inner


def _add_selective_scan_flops(x: torch.Tensor, state_size: int) -> None:
    """FlopCounterMode sees neither scan (CUDA kernel or `selective_scan`, read-out included): add
    mamba-ssm's count analytically, the same on both devices (backward ≈ 2× forward)."""
    batch, length, inner = x.shape
    _add_uncounted(selective_scan_flops(batch, length, inner, state_size), x)


def _add_uncounted(forward_flops: int, x: torch.Tensor) -> None:
    """Add FLOPs the counter cannot see, tripled when a backward will follow (backward ≈ 2× forward)."""
    from bench.measure import add_uncounted_flops

    add_uncounted_flops(forward_flops * (3 if torch.is_grad_enabled() and x.requires_grad else 1))


class _SelectiveScan(torch.autograd.Function):
    """Mamba's selective scan without the D skip, on the compiled CPU kernels of models/_mamba_kernels.py.

        h_t = exp(Δ_t A) ⊙ h_{t-1} + (Δ_t x_t) B_t        y_t = h_t C_t        (h: batch × inner × N)

    Why not mambapy's scans (its own note: they are for when mamba-ssm is unavailable): its
    parallel scan pads L to a power of two and rewrites B·L·D·N tensors 2·log L times, and its
    sequential loop lets autograd allocate a full-size zero gradient per position; both are
    memory-bound. A PyTorch loop over positions with a written-out backward (this class before
    the kernels) was ≈ 8× faster than the parallel scan; the kernels are ≈ 7× faster again on one
    core (B 64, L 82, D 148, N 17, forward + backward: 32–35 ms vs 229 ms). Only the inputs are saved:
    the backward recomputes the states row by row. tests/test_zoo.py checks values and gradients
    against the naive loop (float64 and float32), with gradcheck, and against mambapy's scan.
    """

    @staticmethod
    def forward(ctx, x, delta, A, B, C, reverse):
        ctx.shapes = [tensor.shape for tensor in (x, delta, A, B, C)]
        if x.device.type == "meta":                # shape-only runs (FLOP matching): nothing to compute
            return torch.empty_like(x)
        # contiguous copies (A transposed to (N, inner): the kernels' inner loop runs along inner)
        inputs = [tensor.detach().contiguous() for tensor in (x, delta, A.T, B, C)]
        ctx.save_for_backward(*inputs)
        ctx.reverse = reverse
        arrays = [tensor.numpy() for tensor in inputs]
        return torch.from_numpy(scan_forward(*arrays, reverse=reverse, threads=_kernel_threads()))

    @staticmethod
    def backward(ctx, grad_y):
        if grad_y.device.type == "meta":
            return (*(grad_y.new_empty(shape) for shape in ctx.shapes), None)
        arrays = [tensor.numpy() for tensor in ctx.saved_tensors]
        grad_y = grad_y.detach().contiguous().to(ctx.saved_tensors[0].dtype).numpy()
        grad_x, grad_delta, grad_A_transposed, grad_B, grad_C = scan_backward(
            *arrays, grad_y, reverse=ctx.reverse, threads=_kernel_threads())
        return (torch.from_numpy(grad_x), torch.from_numpy(grad_delta), torch.from_numpy(grad_A_transposed).T,
                torch.from_numpy(grad_B), torch.from_numpy(grad_C), None)


def selective_scan(x, delta, A, B, C, D, reverse: bool = False):
    """mambapy's `selective_scan` signature: x, Δ (B, L, inner), A (inner, N), B, C (B, L, N), D (inner);
    reverse scans from the last position to the first (= the scan of the flipped sequence, flipped back).

    The recurrence runs in float32 whatever the autocast dtype, as mamba-ssm's kernel does."""
    scanned = _SelectiveScan.apply(*(tensor.to(_kernel_dtype(x)) for tensor in (x, delta, A, B, C)), reverse)
    return (scanned + D * x).to(x.dtype)


def _kernel_dtype(x: torch.Tensor) -> torch.dtype:
    """The CPU kernels compute in float32 (bf16/fp16 inputs included), or float64 when given it."""
    return torch.float64 if x.dtype == torch.float64 else torch.float32
