"""Shared building blocks. Every model composes these; nothing here is model-specific.

Conventions follow the HRM reference code (docs/reference.md, HRM): bias-free linears,
truncated LeCun-normal init, RMSNorm without a learnable scale, post-norm blocks, SwiGLU with the
intermediate size rounded up to a multiple of 256, RoPE with base 10000.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

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
    """RMSNorm without a learnable scale (the reference has none), computed in fp32 (float64 inputs in
    float64, so double-precision gradient checks are not limited by fp32 rounding)."""
    dtype = x.dtype
    x = x.double() if dtype == torch.float64 else x.float()
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
    its own SignSGD optimiser (a model's `puzzle_embedding_parameters` returns `puzzle_parameters()`
    of its `embedding`); its parameters are counted separately from the model's.
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

    def puzzle_parameters(self) -> list[nn.Parameter]:
        """The puzzle table, for the model's `puzzle_embedding_parameters` (empty without a prefix)."""
        return [] if self.puzzle_embedding is None else [self.puzzle_embedding.weight]

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
