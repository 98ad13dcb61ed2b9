"""A stop selector for iterative models: with the trained network frozen, a small head learns per
example the iteration to stop at (train.stop_selector_steps > 0; docs/training.md).

After each iteration t of m the head sees what the network's answer looks like — mean and minimum
over positions of the top probability, mean normalised entropy, the fraction of positions whose
answer changed since t − 1, and t/m — and predicts whether that answer is right (supervised on
exact correctness at t; `train.stop_selector_objective=supervised`), or as a stopping policy trained
by REINFORCE (`reinforce`: the head's sigmoid is the probability of stopping after t, the reward is
"right at the stop" minus `train.stop_selector_cost`·t/m, the baseline the batch's mean reward). At
test time an example stops at the first iteration the head calls right (stop, for the policy), or
at m. Reported beside it: the answer after all m iterations, and the oracle stop (right at some
t ≤ m), the ceiling any selector could reach.
"""
from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from bench.trainer import Trainer, outputs_after_each_iteration, sequence_correct
from models.protocol import iteration_count_field
from tasks.protocol import TaskData

FEATURES = 5
LEARNING_RATE = 1e-3


class StopSelector(nn.Module):
    def __init__(self, hidden: int = 16):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(FEATURES, hidden), nn.ReLU(), nn.Linear(hidden, 1))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.net(features).squeeze(-1)


def answer_features(logits: torch.Tensor, previous: torch.Tensor | None, step: int, steps: int) -> torch.Tensor:
    """(B, FEATURES) of the answer after iteration `step` (1-based) of `steps`; previous: argmax at step − 1."""
    probs = logits.float().softmax(-1)
    top = probs.max(-1).values
    entropy = -(probs * probs.clamp_min(1e-12).log()).sum(-1) / torch.log(torch.tensor(float(logits.shape[-1])))
    guess = logits.argmax(-1)
    changed = (torch.ones_like(top) if previous is None else (guess != previous).float()).mean(-1)
    position = torch.full_like(changed, step / steps)
    return torch.stack([top.mean(-1), top.min(-1).values, entropy.mean(-1), changed, position], dim=-1)


@torch.no_grad()
def unroll(model, batch: dict[str, torch.Tensor], labels: torch.Tensor, ignore: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(features (B, m, F), right (B, m)) after each of the model's m iterations."""
    steps = getattr(model.config, iteration_count_field(model))
    previous, features, right = None, [], []
    for step, outputs in enumerate(outputs_after_each_iteration(model, batch)):
        logits = outputs["logits"]
        features.append(answer_features(logits, previous, step + 1, steps))
        right.append(sequence_correct(logits, labels, ignore))
        previous = logits.argmax(-1)
    return torch.stack(features, 1), torch.stack(right, 1)


def train_selector(trainer: Trainer, data: TaskData, steps: int, seed: int) -> StopSelector:
    """`steps` Adam steps of batch train.batch_size on the training split; the network stays frozen."""
    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    selector = StopSelector().to(trainer.device)
    optimizer = torch.optim.Adam(selector.parameters(), lr=LEARNING_RATE)
    model = trainer.eval_model().eval()
    config = trainer.config
    for _ in range(steps):
        index = torch.randint(0, len(data), (config.batch_size,), generator=generator)
        batch = {k: v.to(trainer.device) for k, v in data.batch(index).items()}
        features, right = unroll(model, batch, batch["labels"], trainer.spec.ignore_label)
        if config.stop_selector_objective == "reinforce":
            loss = reinforce_loss(selector(features), right, config.stop_selector_cost, generator)
        else:
            loss = F.binary_cross_entropy_with_logits(selector(features), right.float())
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return selector


def reinforce_loss(stop_logits: torch.Tensor, right: torch.Tensor, cost: float,
                   generator: torch.Generator) -> torch.Tensor:
    """REINFORCE for a stopping policy over m iterations (stop_logits, right: (B, m)).

    After iteration t the policy stops with probability σ(logit_t); it always stops at m. The sampled
    stop s gets the reward right[s] − cost·s/m and the log-probability Σ_{t<s} log(1 − σ_t) + log σ_s
    (no last term when s = m: stopping there is certain). The batch mean reward is the baseline."""
    batch, steps = stop_logits.shape
    draws = torch.rand(stop_logits.shape, generator=generator).to(stop_logits.device) < torch.sigmoid(stop_logits.detach())
    draws[:, -1] = True
    stop = draws.float().argmax(dim=1)                                   # the first iteration that stops
    positions = torch.arange(steps, device=stop_logits.device)
    before = (positions < stop[:, None]).float()
    at_stop = (positions == stop[:, None]) & (stop[:, None] < steps - 1)
    log_prob = (F.logsigmoid(-stop_logits) * before).sum(1) + (F.logsigmoid(stop_logits) * at_stop).sum(1)
    rows = torch.arange(batch, device=stop_logits.device)
    reward = right[rows, stop].float() - cost * (stop + 1).float() / steps
    return -((reward - reward.mean()) * log_prob).mean()


def selected_steps(selector: StopSelector, features: torch.Tensor) -> torch.Tensor:
    """(B,) 0-based iteration to stop at: the first the selector calls right, else the last."""
    says_right = selector(features) > 0
    steps = features.shape[1]
    first = torch.where(says_right, torch.arange(steps, device=features.device), steps - 1).min(dim=1).values
    return first


@torch.no_grad()
def evaluate_stops(trainer: Trainer, selector: StopSelector, data: TaskData, batch_size: int) -> dict[str, Any]:
    """Exact accuracy with the selector's stop, after all iterations, and with the oracle stop."""
    model = trainer.eval_model().eval()
    chosen, last, oracle, stops = [], [], [], []
    for start in range(0, len(data), batch_size):
        index = torch.arange(start, min(start + batch_size, len(data)))
        batch = {k: v.to(trainer.device) for k, v in data.batch(index).items()}
        features, right = unroll(model, batch, batch["labels"], trainer.spec.ignore_label)
        stop = selected_steps(selector, features)
        chosen.append(right[torch.arange(len(index)), stop])
        last.append(right[:, -1])
        oracle.append(right.any(1))
        stops.append(stop + 1)
    mean = lambda parts: torch.cat(parts).float().mean().item()   # noqa: E731
    return {"selector_exact_accuracy": mean(chosen), "all_iterations_exact_accuracy": mean(last),
            "oracle_exact_accuracy": mean(oracle), "mean_selected_iterations": mean(stops),
            "iterations": getattr(model.config, iteration_count_field(model)), "examples": len(data)}
