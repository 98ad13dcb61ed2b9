"""The trainer: deep supervision over segments with a detached carry, ACT, evaluation.

One optimiser step = one segment for every row of the batch (HRM reference behaviour):

    rows that halted last step take a fresh example and restart their carry
    carry, outputs = model(carry, batch)            # one segment
    loss = lm_loss + q_weight·(q_halt_loss + q_continue_loss)   (q terms when the model has a Q head)
    backward, optimiser step, carry ← carry.detach()
    halted = steps ≥ segments  [ or, with ACT, the Q head says halt (after an exploration minimum) ]

So with `train.segments = 1` this is ordinary training, and with N > 1 *any* model gets HRM's outer
refinement loop. With ACT and a `q_continue_logits` output (HRM), the Q-learning target comes from
one extra no_grad forward on the new carry; a model with only `q_halt_logits` (TRM) halts when
q_halt > 0 and has no extra forward. With ACT off, q_halt is still trained (so learned halting can
be evaluated) but q_continue and its extra forward are skipped.
"""
from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import torch
import torch.nn.functional as F

from bench.config import TrainConfig
from bench.distributed import World
from bench.losses import LOSSES, sequence_losses, sequence_mean_loss
from bench.measure import Stopwatch, count_flops
from bench.checkpoint import load_checkpoint, save_checkpoint
from bench.optim import AdamAtan2, SignSGD, learning_rate
from bench.sampling import Sampler, make_sampler
from models.protocol import PARAMETER_GROUPS, SegmentModel, iteration_count, iteration_count_field
from tasks.protocol import TaskData, TaskSpec


class Diverged(Exception):
    def __init__(self, step: int, value: float):
        super().__init__(f"loss became {value} at step {step}")
        self.step, self.value = step, value


def _tree_where(mask: torch.Tensor, new: dict[str, torch.Tensor], old: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: torch.where(mask.view(-1, *([1] * (v.dim() - 1))), new[k], old[k]) for k, v in old.items()}


def _to(batch: dict[str, torch.Tensor], device: torch.device) -> dict[str, torch.Tensor]:
    return {k: v.to(device, non_blocking=True) for k, v in batch.items()}


def _cat(parts: list[torch.Tensor], empty: torch.Tensor) -> torch.Tensor:
    return torch.cat(parts) if parts else empty


def sequence_correct(logits: torch.Tensor, labels: torch.Tensor, ignore_label: int) -> torch.Tensor:
    mask = labels != ignore_label
    return ((logits.argmax(-1) == labels) | ~mask).all(-1)


def outputs_after_each_iteration(model: SegmentModel, batch: dict[str, torch.Tensor]
                                 ) -> Iterator[dict[str, torch.Tensor]]:
    """The outputs (`logits`, and for whole-forward models everything the forward returns) after
    iteration 1, 2, …, m of a model with an iteration count (m = its count), from its start: what
    best-of-k training and the stop selector look at. A model with the incremental interface
    (looped, dtnet) continues one state; the others (hrm, trm, deq) run one forward per count from
    the initial carry, so count k costs a k-iteration forward."""
    if model.progressive_iterations_key is not None:
        state = model.start_state(batch)
        for step in range(getattr(model.config, model.progressive_iterations_key)):
            state = model.iterate(state, batch, 1, first=step)
            yield {"logits": model.readout(state, batch)}
        return
    carry = model.initial_carry(batch)
    for count in range(1, getattr(model.config, model.iteration_count_key) + 1):
        with iteration_count(model, count):   # restored before the caller runs: it may stop early
            outputs = model(carry, batch)[1]
        yield outputs


def first_minimum(values: torch.Tensor) -> torch.Tensor:
    """Per row, the index of the smallest value; ties go to the first (torch.argmin's documented rule)."""
    return values.argmin(dim=1)


def halting_decision(outputs: dict[str, torch.Tensor]) -> torch.Tensor | None:
    """Does the Q head say halt? q_halt > q_continue (HRM) or q_halt > 0 (TRM)."""
    if "q_halt_logits" not in outputs:
        return None
    if "q_continue_logits" in outputs:
        return outputs["q_halt_logits"] > outputs["q_continue_logits"]
    return outputs["q_halt_logits"] > 0


@dataclass
class EvalResult:
    predictions: torch.Tensor                 # (N, L) at each row's final (or halting) segment
    confidences: torch.Tensor                 # (N,) sigmoid(q_halt) at that segment (0.5 if no Q head)
    segments_used: torch.Tensor               # (N,)
    per_segment_predictions: list[torch.Tensor] = field(default_factory=list)
    seconds: float = 0.0
    diagnostics: dict[str, Any] = field(default_factory=dict)


class Trainer:
    def __init__(self, model: SegmentModel, spec: TaskSpec, config: TrainConfig, device: torch.device | str,
                 progress: bool = True, world: World | None = None):
        self.model = model.to(device)
        # data parallel (bench/distributed.py): this process trains its rows of the global batch
        self.world = world or World()
        self.local_batch_size = self.world.local_batch_size(config.batch_size)
        self.world.broadcast_parameters(self.model)
        self.spec = spec
        self.config = config
        self.device = torch.device(device)
        self.progress = progress
        self.loss_fn = LOSSES[config.loss]
        self.optimizers = self._build_optimizers()
        # EMA of the model's weights; puzzle tables are left out, as TRM's reference (its table is a buffer)
        tables = {id(p) for p in model.puzzle_embedding_parameters()}
        self.ema = ({k: v.detach().clone() for k, v in model.named_parameters() if id(v) not in tables}
                    if config.ema > 0 else None)
        self.step = 0
        self.examples = 0
        self.train_seconds = 0.0
        self.flops_per_step: int | None = None   # the mean over the steps run (counted each step if they vary)
        self.flops_total = 0
        self.curve: list[dict[str, float]] = []
        # sums of the losses since the last curve point: each point also logs their window mean
        self.loss_window: dict[str, float] = {}
        self.evals: list[dict[str, Any]] = []
        self.sampler: Sampler | None = None
        self.carry: dict[str, torch.Tensor] | None = None
        self.batch: dict[str, torch.Tensor] | None = None
        self.steps_in_carry: torch.Tensor | None = None
        self.halted: torch.Tensor | None = None
        # train.compile: the training forward compiled (graph breaks fall back to eager); the FLOP-counted
        # first step and evaluation stay eager. Measurements: docs/speed.md.
        self.forward = torch.compile(self.model) if getattr(config, "compile", False) else self.model
        self.eager_step = False
        use_bf16 = config.precision == "bf16" or (config.precision == "auto" and self.device.type == "cuda")
        self.autocast_dtype = torch.bfloat16 if use_bf16 else None

    # ---------------------------------------------------------------- optimisers
    def _build_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        """One optimiser per parameter group the model declares: the model's (Adam-atan2 or AdamW) and
        the puzzle tables' (SignSGD, HRM's sparse-row rule)."""
        config = self.config
        groups = self.model.parameter_groups()
        unknown = sorted(set(groups) - set(PARAMETER_GROUPS))
        if unknown:
            raise ValueError(f"{type(self.model).__name__}.parameter_groups() returned unknown groups {unknown}; "
                             f"the trainer knows {list(PARAMETER_GROUPS)}")
        trained = {name: [p for p in parameters if p.requires_grad] for name, parameters in groups.items()}
        betas = (config.beta1, config.beta2)
        optimizers: dict[str, torch.optim.Optimizer] = {}
        if config.optimizer == "adam_atan2":
            optimizers["model"] = AdamAtan2(trained["model"], lr=config.lr, betas=betas, weight_decay=config.weight_decay)
        else:
            optimizers["model"] = torch.optim.AdamW(trained["model"], lr=config.lr, betas=betas,
                                                    weight_decay=config.weight_decay)
        if trained.get("puzzle_embedding"):
            optimizers["puzzle_embedding"] = SignSGD(trained["puzzle_embedding"], lr=config.puzzle_emb_lr,
                                                     weight_decay=config.puzzle_emb_weight_decay)
        return optimizers

    def _set_learning_rates(self) -> float:
        """Each group's scheduled rate for this step; returns the model group's."""
        config = self.config
        base_rates = {"model": config.lr, "puzzle_embedding": config.puzzle_emb_lr}
        rates = {}
        for name, optimizer in self.optimizers.items():
            rates[name] = learning_rate(self.step + 1, base_rates[name], config.lr_warmup_steps, self.planned_steps(),
                                        config.lr_schedule, config.lr_min_ratio)
            for group in optimizer.param_groups:
                group["lr"] = rates[name]
        return rates["model"]

    def _autocast(self):
        if self.autocast_dtype is None:
            return torch.autocast(self.device.type, enabled=False)
        return torch.autocast(self.device.type, dtype=self.autocast_dtype)

    # ---------------------------------------------------------------- one optimiser step
    def _refill(self, data: TaskData) -> torch.Tensor:
        """Rows that halted take fresh examples and restart their carry; returns how many did."""
        batch_size = self.local_batch_size
        # every rank draws the global batch's indices and keeps its rows (same order as one process)
        fresh = _to(data.batch(self.world.rows(self.sampler.next(self.config.batch_size))), self.device)
        if self.batch is None:
            self.batch = fresh
            self.carry = self.model.initial_carry(fresh)
            self.steps_in_carry = torch.zeros(batch_size, dtype=torch.long, device=self.device)
            self.halted = torch.ones(batch_size, dtype=torch.bool, device=self.device)
        reset = self.halted
        self.batch = _tree_where(reset, fresh, self.batch)
        self.carry = self.model.reset_carry(self.carry, reset, self.batch)
        self.steps_in_carry = torch.where(reset, 0, self.steps_in_carry)
        return reset.sum()

    def train_step(self, data: TaskData) -> dict[str, float]:
        config, spec = self.config, self.spec
        self.model.train()
        refilled = self._refill(data)
        lr = self._set_learning_rates()
        batch = self.batch
        labels = batch["labels"]
        alpha = config.progressive_alpha
        means: dict[str, torch.Tensor] = {}  # per-rank means, averaged over ranks below
        rule = config.iteration_rule
        with self._autocast():
            # progressive loss at alpha = 1 needs no full-depth pass (DeepThinking's recipe skips it too)
            full_pass = alpha < 1 and rule == "fixed"
            forward = self.model if self.eager_step else self.forward
            carry, outputs = forward(self.carry, batch) if full_pass else (self.carry, {})
            progressive = self._progressive_logits(batch) if alpha > 0 else None
            if rule != "fixed":
                outputs, lm_loss, steps_used = self._iteration_rule(batch, labels)
                means["iterations_trained"] = steps_used.float().mean()
        self.steps_in_carry = self.steps_in_carry + 1
        logits = outputs["logits"] if "logits" in outputs else progressive
        if rule == "fixed":
            lm_loss = self._sequence_loss(logits, labels) if alpha < 1 else 0.0
        if progressive is not None:
            lm_loss = (1 - alpha) * lm_loss + alpha * self._sequence_loss(progressive, labels)
        loss = lm_loss
        with torch.no_grad():
            correct = sequence_correct(logits, labels, spec.ignore_label)
            is_last = self.steps_in_carry >= config.segments
            halted = is_last.clone()
            wants_halt = halting_decision(outputs)
            if config.act and config.segments > 1 and wants_halt is not None:
                halted |= wants_halt
                # drawn for the global batch and sliced, so the draws do not depend on the rank count
                global_rows = (config.batch_size,)
                explore = self.world.rows(torch.rand(global_rows, device=self.device)) < config.halt_exploration_prob
                minimum = self.world.rows(torch.randint(2, config.segments + 1, global_rows, device=self.device))
                halted &= self.steps_in_carry >= torch.where(explore, minimum, 0)
        if "q_halt_logits" in outputs:
            q_halt_loss = F.binary_cross_entropy_with_logits(outputs["q_halt_logits"], correct.float())
            loss = loss + config.q_loss_weight * q_halt_loss
            means["q_halt_loss"] = q_halt_loss.detach()
            means["q_halt_accuracy"] = ((outputs["q_halt_logits"] > 0) == correct).float().mean()
        if config.act and config.segments > 1 and "q_continue_logits" in outputs:
            with torch.no_grad(), self._autocast():
                _, next_outputs = (self.model if self.eager_step else self.forward)(carry, batch)
            next_halt, next_continue = next_outputs["q_halt_logits"], next_outputs["q_continue_logits"]
            target = torch.sigmoid(torch.where(is_last, next_halt, torch.maximum(next_halt, next_continue)))
            q_continue_loss = F.binary_cross_entropy_with_logits(outputs["q_continue_logits"], target)
            loss = loss + config.q_loss_weight * q_continue_loss
            means["q_continue_loss"] = q_continue_loss.detach()
        if "aux_loss" in outputs:
            loss = loss + outputs["aux_loss"]
        means.update(loss=loss.detach(), lm_loss=lm_loss.detach(), exact_accuracy=correct.float().mean())
        # the per-batch scalars the model declares (DEQ: solver_steps, solver_residual) go into the curve
        means.update({key: outputs[key].detach().float() for key in self.model.logged_outputs})
        sums = {"examples": refilled, "halted": halted.sum(), "halted_segments": self.steps_in_carry[halted].sum()}
        metrics = self.world.reduce_metrics(means, sums)
        self.examples += int(metrics.pop("examples"))
        halted_rows, halted_segments = metrics.pop("halted"), metrics.pop("halted_segments")
        if not math.isfinite(metrics["loss"]):  # the rank-averaged loss: every rank stops together
            raise Diverged(self.step + 1, metrics["loss"])  # 1-based, as the training curve counts
        for optimizer in self.optimizers.values():
            optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.world.average_gradients(self.model.parameters())
        if config.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), config.grad_clip)
        for optimizer in self.optimizers.values():
            optimizer.step()
        if self.ema is not None:
            with torch.no_grad():
                for name, parameter in self.model.named_parameters():
                    if name in self.ema:
                        self.ema[name].lerp_(parameter.detach(), 1 - config.ema)
        self.carry = {k: v.detach() for k, v in carry.items()}
        self.halted = halted
        self.step += 1
        metrics.update(lr=lr, mean_segments=halted_segments / halted_rows if halted_rows else float("nan"))
        return metrics

    def _sequence_loss(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        ignore = self.spec.ignore_label
        return sequence_mean_loss(self.loss_fn(logits, labels, ignore), labels, ignore)

    def _iteration_rule(self, batch: dict[str, torch.Tensor], labels: torch.Tensor
                        ) -> tuple[dict[str, torch.Tensor], torch.Tensor, torch.Tensor]:
        """(outputs, loss, iterations per example) under train.iteration_rule, from the start state.

        random: k ~ U{iterations_min..m} iterations this step, the same k for the batch.
        best_of_k: the loss after each of the m iterations, per example; only the lowest is
        back-propagated (ties go to the fewest iterations), so an example is trained at the step
        where its answer is best, not at a fixed depth. The outputs other than the logits (a DEQ's
        solver statistics and aux loss) are those of the m-count forward; a Q head is not trained."""
        model, config = self.model, self.config
        if config.iteration_rule == "random":
            most = getattr(model.config, iteration_count_field(model))
            count = int(torch.randint(config.iterations_min, most + 1, ()))
            if model.progressive_iterations_key is not None:
                outputs = {"logits": model.readout(model.iterate(model.start_state(batch), batch, count), batch)}
            else:
                with iteration_count(model, count):
                    outputs = model(model.initial_carry(batch), batch)[1]
            return outputs, self._sequence_loss(outputs["logits"], labels), torch.full((len(labels),), count)
        ignore = self.spec.ignore_label
        all_outputs = list(outputs_after_each_iteration(model, batch))
        all_logits = [outputs["logits"] for outputs in all_outputs]
        losses = [sequence_losses(self.loss_fn(logits, labels, ignore), labels, ignore) for logits in all_logits]
        losses = torch.stack(losses, dim=1)                         # (B, m)
        best = first_minimum(losses.detach())
        rows = torch.arange(len(labels), device=labels.device)
        # the m-count forward's solver statistics and aux loss; no Q head: its target would be the
        # correctness of another forward's answer
        last = {k: v for k, v in all_outputs[-1].items() if not k.startswith("q_")}
        outputs = {**last, "logits": torch.stack(all_logits, dim=1)[rows, best]}
        return outputs, losses[rows, best].mean(), best + 1

    def _progressive_logits(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Bansal et al.'s incremental progress training: n ~ U{0..m−1} iterations without gradient
        from the start state, then k ~ U{1..m−n} with gradient from that (detached) state."""
        model = self.model
        most = getattr(model.config, model.progressive_iterations_key)
        n = int(torch.randint(0, most, ()))
        k = int(torch.randint(1, most - n + 1, ()))
        if n == 0:
            state = model.start_state(batch)
        else:
            with torch.no_grad():
                state = model.iterate(model.start_state(batch), batch, n).detach()
        return model.readout(model.iterate(state, batch, k, first=n), batch)

    def planned_steps(self) -> int:
        """The steps the run is laid out over (schedule, progress bar, checkpoint cadence). A FLOP
        budget is known in steps once the first step is counted: the steps that fit in it."""
        config = self.config
        if config.budget == "flops" and self.flops_per_step:
            return max(1, int(config.max_flops // self.flops_per_step))
        return config.total_steps

    def budget_spent(self) -> bool:
        """steps: the planned steps are done. examples: max_examples fresh examples were drawn and,
        with fixed segments, have run all of them (with ACT rows are out of phase: the run stops when
        the count is reached). flops: the next step would go over max_flops (a run never spends more
        than its budget, except a first step that alone costs more)."""
        config = self.config
        if config.budget == "examples":
            in_phase = config.segments == 1 or not config.act
            return self.examples >= config.max_examples and (not in_phase or bool(self.halted.all()))
        if config.budget == "flops":
            return self.step > 0 and self.flops_total + (self.flops_per_step or 0) > config.max_flops
        return self.step >= config.steps

    @property
    def step_cost_varies(self) -> bool:
        """Whether steps differ in work (iterations drawn per step; a solver that stops at a tolerance,
        i.e. a model with a `full_budget`), so each is counted, not the first."""
        return (self.config.progressive_alpha > 0 or self.config.iteration_rule == "random"
                or bool(self.model.full_budget))

    # ---------------------------------------------------------------- training loop
    def fit(self, data: TaskData, seed: int, on_step: Callable[["Trainer", dict[str, float]], None] | None = None) -> None:
        from tqdm import tqdm

        if self.sampler is None:
            self.sampler = make_sampler(self.config, data, seed)
        bar = tqdm(total=self.planned_steps(), initial=self.step, desc="train", unit="step",
                   disable=not (self.progress and self.world.is_main),
                   dynamic_ncols=True, leave=False)
        try:
            while not self.budget_spent():
                with Stopwatch(self.device) as watch:
                    if self.flops_per_step is None or self.step_cost_varies:
                        self.eager_step = True   # FLOPs are counted on the eager graph
                        with count_flops() as counted:
                            metrics = self.train_step(data)
                        self.eager_step = False
                        self.flops_total += self.world.sum_int(counted["flops"])  # all ranks' work
                        self.flops_per_step = self.flops_total // self.step
                    else:
                        metrics = self.train_step(data)
                        self.flops_total += self.flops_per_step
                self.train_seconds += watch.elapsed
                if self.step == 1:
                    bar.total = self.planned_steps()   # a FLOP budget is known in steps from here
                last = self.budget_spent()
                self._add_to_loss_window(metrics)
                if self.step % self.config.log_every == 0 or last:
                    self.curve.append({"step": self.step, **{k: v for k, v in metrics.items() if math.isfinite(v)},
                                       **self._loss_window_means()})
                bar.update(1)
                bar.set_postfix(loss=f"{metrics['loss']:.3f}", acc=f"{metrics['exact_accuracy']:.2f}")
                if on_step is not None:
                    on_step(self, metrics)
        finally:
            bar.close()

    WINDOWED = ("loss", "lm_loss")

    def _add_to_loss_window(self, metrics: dict[str, float]) -> None:
        window = self.loss_window
        window["steps"] = window.get("steps", 0) + 1
        for key in self.WINDOWED:
            window[key] = window.get(key, 0.0) + metrics[key]

    def _loss_window_means(self) -> dict[str, float]:
        """`<key>_window_mean`: the mean of every step's loss since the previous curve point. The
        point's own `loss` is one batch's; the plateau check reads the window means, which scatter
        about √log_every times less."""
        window, self.loss_window = self.loss_window, {}
        means = {f"{key}_window_mean": window[key] / window["steps"] for key in self.WINDOWED}
        return {k: v for k, v in means.items() if math.isfinite(v)}

    # ---------------------------------------------------------------- evaluation
    def eval_model(self) -> SegmentModel:
        """The model to evaluate: the EMA copy when EMA is on (as TRM), else the live model."""
        if self.ema is None:
            return self.model
        shadow = copy.deepcopy(self.model)
        with torch.no_grad():
            for name, parameter in shadow.named_parameters():
                if name in self.ema:
                    parameter.copy_(self.ema[name])
        return shadow

    @torch.no_grad()
    def evaluate(self, data: TaskData, segments: int | None = None, halting: str | None = None,
                 keep_per_segment: bool = False, max_examples: int = 0) -> EvalResult:
        config = self.config
        segments = segments or config.eval_segments or config.segments
        halting = halting or config.eval_halting
        model = self.eval_model()
        model.eval()
        count = len(data) if max_examples <= 0 else min(max_examples, len(data))
        begin, end = self.world.shard(count)  # this rank's share; gathered below
        predictions, confidences, used = [], [], []
        per_segment: list[list[torch.Tensor]] = [[] for _ in range(segments)] if keep_per_segment else []
        watch = Stopwatch(self.device)
        with watch:
            for start in range(begin, end, config.eval_batch_size):
                index = torch.arange(start, min(start + config.eval_batch_size, end))
                batch = _to(data.batch(index), self.device)
                carry = model.initial_carry(batch)
                size = len(index)
                final = torch.zeros_like(batch["labels"])
                confidence = torch.full((size,), 0.5, device=self.device)
                segments_used = torch.full((size,), segments, dtype=torch.long, device=self.device)
                done = torch.zeros(size, dtype=torch.bool, device=self.device)
                for segment in range(segments):
                    with self._autocast():
                        carry, outputs = model(carry, batch)
                    guess = outputs["logits"].argmax(-1)
                    if keep_per_segment:
                        per_segment[segment].append(guess.cpu())
                    stop = torch.full((size,), segment == segments - 1, device=self.device)
                    wants_halt = halting_decision(outputs)
                    if halting == "learned" and wants_halt is not None:
                        stop |= wants_halt
                    newly = stop & ~done
                    final = torch.where(newly[:, None], guess, final)
                    if "q_halt_logits" in outputs:
                        confidence = torch.where(newly, torch.sigmoid(outputs["q_halt_logits"].float()), confidence)
                    segments_used = torch.where(newly, segment + 1, segments_used)
                    done |= newly
                    if done.all() and not keep_per_segment:
                        break  # learned halting: every row has stopped, so the rest is not computed
                predictions.append(final.cpu())
                confidences.append(confidence.cpu())
                used.append(segments_used.cpu())
        empty = torch.empty((0, data.labels.shape[1]), dtype=data.labels.dtype)
        local = (_cat(predictions, empty), _cat(confidences, torch.empty(0)), _cat(used, torch.empty(0, dtype=torch.long)),
                 [_cat(p, empty) for p in per_segment])
        if self.world.distributed:  # every rank gets the whole split, in rank (= example) order
            shards = self.world.gather_objects(local)
            local = (torch.cat([s[0] for s in shards]), torch.cat([s[1] for s in shards]),
                     torch.cat([s[2] for s in shards]),
                     [torch.cat([s[3][i] for s in shards]) for i in range(len(per_segment))])
        return EvalResult(*local, watch.elapsed)

    def inference_flops_per_example(self, data: TaskData, segments: int | None = None) -> int:
        """FLOPs of a full evaluation forward (all segments) on one real example."""
        segments = segments or self.config.eval_segments or self.config.segments
        model = self.model
        was_training = model.training
        model.eval()
        batch = _to(data.batch(torch.arange(1)), self.device)
        with torch.no_grad(), count_flops() as counted:
            carry = model.initial_carry(batch)
            for _ in range(segments):
                with self._autocast():
                    carry, _ = model(carry, batch)
        model.train(was_training)
        return counted["flops"]

    # ---------------------------------------------------------------- checkpoints (bench/checkpoint.py)
    def save_checkpoint(self, path: Path) -> None:
        save_checkpoint(self, path)

    def load_checkpoint(self, path: Path, data: TaskData, seed: int) -> None:
        load_checkpoint(self, path, data, seed)
