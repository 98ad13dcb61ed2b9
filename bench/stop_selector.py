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

The network is frozen, so a pool of training examples is unrolled once and the head trains on their
features until its loss is flat: 200 steps of fresh batches at lr 1e-3 left it far from its plateau
(pool loss 0.63 against 0.44; docs/training.md has the measurement), so a run could report an
untrained selector as the rule's result.
"""
from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from bench.stats import learning_plateau
from bench.trainer import Trainer, outputs_after_each_iteration, sequence_correct
from models.protocol import iteration_count_field
from tasks.protocol import TaskData

FEATURES = 5
LEARNING_RATE = 1e-2
POOL_EXAMPLES = 8192    # training examples unrolled once; the head trains on their features
POOL_BATCH = 256        # examples per Adam step
CURVE_POINTS = 20       # the objective on the whole pool, logged this many times (the plateau check)


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


def unroll_examples(trainer: Trainer, data: TaskData, index: torch.Tensor,
                    batch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(features (N, m, F), right (N, m)) of the examples `index` of `data`, in batches of batch_size."""
    model = trainer.eval_model().eval()
    features, right = [], []
    for chunk in index.split(batch_size):
        batch = {k: v.to(trainer.device) for k, v in data.batch(chunk).items()}
        chunk_features, chunk_right = unroll(model, batch, batch["labels"], trainer.spec.ignore_label)
        features.append(chunk_features)
        right.append(chunk_right)
    return torch.cat(features), torch.cat(right)


def unrolled_pool(trainer: Trainer, data: TaskData, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """unroll_examples of up to POOL_EXAMPLES training examples, drawn without replacement
    (training-time positions, e.g. abacus offsets, drawn from torch's seeded RNG)."""
    index = torch.randperm(len(data), generator=torch.Generator().manual_seed(seed))[:POOL_EXAMPLES]
    return unroll_examples(trainer, data, index, trainer.config.eval_batch_size)


def train_selector(trainer: Trainer, data: TaskData, steps: int, seed: int) -> tuple[StopSelector, dict[str, Any]]:
    """The head after `steps` Adam steps on an unrolled pool of the training split (the network stays
    frozen), and its training record: the objective on the whole pool at CURVE_POINTS steps
    (binary cross-entropy, or 1 − the expected reward for `reinforce`: positive, so the plateau
    check's relative tolerance applies) and whether it ended flat."""
    torch.manual_seed(seed)
    config = trainer.config
    features, right = unrolled_pool(trainer, data, seed)
    generator = torch.Generator().manual_seed(seed)
    selector = StopSelector().to(trainer.device)
    optimizer = torch.optim.Adam(selector.parameters(), lr=LEARNING_RATE)
    reinforce = config.stop_selector_objective == "reinforce"

    def pool_objective() -> float:
        with torch.no_grad():
            logits = selector(features)
            if reinforce:
                return 1.0 - expected_reward(logits, right, config.stop_selector_cost).mean().item()
            return F.binary_cross_entropy_with_logits(logits, right.float()).item()

    log_every = max(1, steps // CURVE_POINTS)
    curve = [{"step": 0, "loss": pool_objective()}]
    for step in range(1, steps + 1):
        index = torch.randint(0, len(features), (min(POOL_BATCH, len(features)),), generator=generator)
        if reinforce:
            loss = reinforce_loss(selector(features[index]), right[index], config.stop_selector_cost, generator)
        else:
            loss = F.binary_cross_entropy_with_logits(selector(features[index]), right[index].float())
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if step % log_every == 0 or step == steps:
            curve.append({"step": step, "loss": pool_objective()})
    record = {"objective": config.stop_selector_objective, "pool_examples": len(features), "steps": steps,
              "batch_size": min(POOL_BATCH, len(features)), "learning_rate": LEARNING_RATE,
              "initial_loss": curve[0]["loss"], "final_loss": curve[-1]["loss"],
              "plateau": learning_plateau(curve[1:]), "curve": curve}
    return selector, record


def expected_reward(stop_logits: torch.Tensor, right: torch.Tensor, cost: float) -> torch.Tensor:
    """(B,) the stopping policy's exact expected reward Σ_s P(stop at s)·(right[s] − cost·s/m)."""
    steps = stop_logits.shape[1]
    stop = torch.sigmoid(stop_logits).clone()
    stop[:, -1] = 1.0                                                     # it always stops at m
    alive = torch.cumprod(torch.cat([torch.ones_like(stop[:, :1]), 1 - stop[:, :-1]], dim=1), dim=1)
    cost_at = cost * torch.arange(1, steps + 1, device=stop.device).float() / steps
    return (alive * stop * (right.float() - cost_at)).sum(1)


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
    features, right = unroll_examples(trainer, data, torch.arange(len(data)), batch_size)
    stop = selected_steps(selector, features)
    chosen, last, oracle = right[torch.arange(len(data)), stop], right[:, -1], right.any(1)
    mean = lambda values: values.float().mean().item()   # noqa: E731
    model = trainer.eval_model()
    return {"selector_exact_accuracy": mean(chosen), "all_iterations_exact_accuracy": mean(last),
            "oracle_exact_accuracy": mean(oracle), "mean_selected_iterations": mean(stop + 1),
            "iterations": getattr(model.config, iteration_count_field(model)), "examples": len(data)}
