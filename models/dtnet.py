"""DeepThinking's recurrent network with recall (Schwarzschild et al. 2021; Bansal et al. 2022).

    u     = one_hot(tokens)                               (B, vocab, L), or (B, vocab, N, N) on grid tasks
    s_0   = relu(conv_in(u))
    s_t   = blocks(recall(cat(s_{t-1}, u)))               t = 1..iterations, the *same* blocks every time
    logits = head(s_T)                                    conv w→w, w→w/2, w/2→vocab (ReLU between)

`blocks` are ResNet basic blocks (conv3 → ReLU → conv3, identity shortcut, ReLU; no bias, no batch
norm); `recall` concatenates the raw input to the state every iteration and a conv brings it back to
w channels (ReLU after it in 1-D, none in 2-D, as the reference). Convolutions are 1-D over sequences,
2-D over square grids (`TaskSpec.grid`), so one model serves prefix sums and mazes of any size — there
are no positions to run out of. `iterations` in training, `eval_iterations` at test time (the
test-time compute knob); `tied=False` is the feed-forward control: `iterations` separate block stacks
(it cannot run more iterations than it has stacks). A segment is one full pass from the input; with
progressive loss (`train.progressive_alpha`) the trainer drives `start_state`/`iterate`/`readout`.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from models.protocol import SegmentModel
from models.registry import register_model


@dataclass
class DTNetConfig:
    hidden: int = 32              # width w (channels); `--match params` sizes it
    blocks: int = 2               # basic blocks applied per iteration
    iterations: int = 16          # recurrent iterations in training
    eval_iterations: int = 0      # at test time; 0 = iterations
    recall: bool = True           # re-inject the input every iteration
    tied: bool = True             # False: the feed-forward control, one stack per iteration
    head_channels: int = 0           # the head's middle conv; 0 = hidden // 2 (the reference). Parameter
                                  # matching sets it when no width alone lands within the tolerance

    def __post_init__(self):
        if min(self.hidden, self.blocks, self.iterations) < 1 or self.eval_iterations < 0:
            raise ValueError("model.hidden, model.blocks and model.iterations must be >= 1, model.eval_iterations >= 0")
        if self.hidden < 2 or self.head_channels < 0:
            raise ValueError("model.hidden must be >= 2 (the head halves it) and model.head_channels >= 0")
        if not self.tied and self.eval_iterations > self.iterations:
            raise ValueError(f"the untied (feed-forward) DT-net has {self.iterations} stacks and cannot run "
                             f"model.eval_iterations={self.eval_iterations}")


class BasicBlock(nn.Module):
    def __init__(self, width: int, conv: type):
        super().__init__()
        self.first = conv(width, width, 3, padding=1, bias=False)
        self.second = conv(width, width, 3, padding=1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.second(F.relu(self.first(x))) + x)


@register_model("dtnet", config=DTNetConfig,
                description="DeepThinking recurrent conv net with recall (1-D or 2-D); tied=False is its feed-forward control")
class DTNet(SegmentModel):
    test_time_compute_key = "eval_iterations"
    progressive_iterations_key = "iterations"
    # one trainer segment: a segment is a whole pass from the input, nothing is carried. DeepThinking's
    # prefix-sum recipe trains on progressive loss alone (α = 1); its maze recipe used α = 0.01
    # (`--set train.progressive_alpha=0.01`)
    presets = {"smoke": {"train.segments": 1},
               "cpu": {"train.segments": 1, "train.progressive_alpha": 1.0},
               "paper": {"train.segments": 1, "train.progressive_alpha": 1.0}}

    def __init__(self, config: DTNetConfig, spec):
        super().__init__(config, spec)
        conv = nn.Conv2d if spec.grid else nn.Conv1d
        width, vocab = config.hidden, spec.vocab_size
        self.conv_in = conv(vocab, width, 3, padding=1, bias=False)
        self.recall = conv(width + vocab, width, 3, padding=1, bias=False) if config.recall else None
        stacks = 1 if config.tied else config.iterations
        self.stacks = nn.ModuleList(nn.Sequential(*(BasicBlock(width, conv) for _ in range(config.blocks)))
                                    for _ in range(stacks))
        middle = config.head_channels or width // 2
        self.head = nn.Sequential(conv(width, width, 3, padding=1, bias=False), nn.ReLU(),
                                  conv(width, middle, 3, padding=1, bias=False), nn.ReLU(),
                                  conv(middle, vocab, 3, padding=1, bias=False))

    @property
    def num_iterations(self) -> int:
        return self.config.iterations if self.training else (self.config.eval_iterations or self.config.iterations)

    def _image(self, batch) -> torch.Tensor:
        """One-hot input, channels first: (B, vocab, L) or (B, vocab, N, N)."""
        inputs = batch["inputs"]
        u = F.one_hot(inputs, self.spec.vocab_size).to(self.conv_in.weight.dtype).transpose(1, 2)
        if self.spec.grid:
            side = round(inputs.shape[1] ** 0.5)
            u = u.reshape(u.shape[0], u.shape[1], side, side)
        return u

    # the recurrence, in the pieces progressive loss needs
    def start_state(self, batch) -> torch.Tensor:
        return F.relu(self.conv_in(self._image(batch)))

    def iterate(self, state: torch.Tensor, batch, count: int, first: int = 0) -> torch.Tensor:
        """`count` iterations from `state`; `first` is the index of the first (which stack, when untied)."""
        u = self._image(batch) if self.recall is not None else None
        for step in range(first, first + count):
            if u is not None:
                state = self.recall(torch.cat((state, u), dim=1))
                state = F.relu(state) if not self.spec.grid else state
            stack = self.stacks[0 if self.config.tied else step]
            new = stack(state)
            self.trace_residual("state", new, state)
            state = new
        return state

    def readout(self, state: torch.Tensor, batch) -> torch.Tensor:
        logits = self.head(state)
        return logits.flatten(2).transpose(1, 2)            # (B, L, vocab)

    def forward(self, carry, batch):
        state = self.iterate(self.start_state(batch), batch, self.num_iterations)
        return carry, {"logits": self.readout(state, batch)}
