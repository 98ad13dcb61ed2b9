"""Train a DEQ at a task's cpu preset and, at chosen steps, probe its solvers on a fixed training batch
(the first 64 training examples): for several solver settings the residual at the returned state and
the steps used, the spectral radius of ∂f/∂z at the fixed point (torchdeq's power method), and the
backward solve's iterations and residual on the batch's cross-entropy gradient. One JSON line per
probe; a progress line with the training curve's solver numbers every 25 steps. This is how the
defaults in docs/models/deq.md were chosen.

    OMP_NUM_THREADS=1 python scripts/deq_probe.py maze --at 150,300,400 [--set model.jacobian_weight=0 ...]
"""
from __future__ import annotations

import argparse
import json
import time

import torch
from torchdeq.loss import power_method

from bench.analysis import with_config
from bench.config import resolve
from bench.runner import build
from bench.trainer import Trainer

FORWARD = (("anderson", 12, 1e-3), ("anderson", 30, 1e-5), ("broyden", 12, 1e-3), ("broyden", 20, 1e-5),
           ("broyden", 30, 1e-6))
BACKWARD = (("broyden", 12, 1e-4), ("broyden", 30, 1e-6), ("fixed_point_iter", 30, 1e-6))
CURVE_KEYS = ("loss", "solver_steps", "converged_fraction", "solver_residual_max", "backward_steps",
              "backward_residual", "backward_converged_fraction")


def probe(model, batch: dict[str, torch.Tensor], step: int) -> dict:
    out: dict = {"step": step}
    for solver, iterations, tol in FORWARD:
        copy_ = with_config(model, solver=solver, max_iter=iterations, eval_max_iter=iterations, tol=tol).eval()
        start = time.perf_counter()
        with torch.no_grad():
            _, outputs = copy_(copy_.initial_carry(batch), batch)
        out[f"forward {solver} {iterations}/{tol:g}"] = {
            "steps": float(outputs["solver_steps"]), "residual_max": float(outputs["solver_residual_max"]),
            "converged": float(outputs["converged_fraction"]), "seconds": round(time.perf_counter() - start, 2)}
    tight = with_config(model, solver="broyden", max_iter=30, eval_max_iter=30, tol=1e-6).eval()
    with torch.no_grad():
        carry, _ = tight(tight.initial_carry(batch), batch)
        x, rotary = tight.embedding(batch)
    z = carry["z"].detach().requires_grad_()
    _, radius = power_method(tight.blocks(z, injection=x, rotary=rotary), z, n_iters=40)
    out["spectral_radius mean/max"] = [round(float(radius.mean()), 3), round(float(radius.max()), 3)]
    for solver, iterations, tol in BACKWARD:
        copy_ = with_config(model, solver="broyden", max_iter=30, tol=1e-6, backward_solver=solver,
                            backward_max_iter=iterations, backward_tol=tol).train()
        _, outputs = copy_(copy_.initial_carry(batch), batch)
        loss = torch.nn.functional.cross_entropy(outputs["logits"].flatten(0, 1).float(),
                                                 batch["labels"].flatten().clamp(min=0))
        start = time.perf_counter()
        loss.backward()
        record = copy_.last_backward
        out[f"backward {solver} {iterations}/{tol:g}"] = {
            "steps": float(record["nstep"].mean()), "residual_mean": float(record["rel"].mean()),
            "residual_max": float(record["rel"].max()), "seconds": round(time.perf_counter() - start, 2)}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("task")
    parser.add_argument("--at", default="200,400", help="steps to probe at (and at 0)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], help="section.key=value")
    args = parser.parse_args()
    run = resolve("deq", args.task, "cpu", overrides=args.overrides)
    task, model = build(run)
    train = task.build("train")
    trainer = Trainer(model, task.spec, run.train, "cpu", progress=False)
    batch = train.batch(torch.arange(64))
    at = {int(step) for step in args.at.split(",")}
    clock = [time.perf_counter()]

    def on_step(trainer: Trainer, metrics: dict[str, float]) -> None:
        if trainer.step % 25 == 0:
            curve = {k: round(metrics[k], 6) for k in CURVE_KEYS if k in metrics}
            print(json.dumps({"step": trainer.step, "seconds": round(time.perf_counter() - clock[0], 1), **curve}),
                  flush=True)
        if trainer.step in at:
            print(json.dumps(probe(trainer.model, batch, trainer.step)), flush=True)
            clock[0] = time.perf_counter()   # probe time is not training time

    print(json.dumps(probe(model, batch, 0)), flush=True)
    clock[0] = time.perf_counter()
    trainer.fit(train, seed=run.train.seed, on_step=on_step)


if __name__ == "__main__":
    main()
