"""A trainer's whole state in one safetensors file (model, optimisers, EMA, carry, batch, RNG, sampler):
a killed run resumes bit for bit. Rows of the global batch are gathered from every data-parallel rank,
so saving is a collective; only rank 0 writes. `trainer` is a bench.trainer.Trainer."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file

from bench.sampling import make_sampler
from tasks.files import atomic_write_bytes


def state_tensors(trainer) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    tensors: dict[str, torch.Tensor] = {}
    for key, value in trainer.model.state_dict().items():
        tensors[f"model.{key}"] = value
    groups = {}
    for name, optimizer in trainer.optimizers.items():
        state = optimizer.state_dict()
        groups[name] = state["param_groups"]
        for param_id, slots in state["state"].items():
            for slot, value in slots.items():
                tensors[f"optim.{name}.{param_id}.{slot}"] = value if torch.is_tensor(value) else torch.tensor(value)
    if trainer.ema is not None:
        for key, value in trainer.ema.items():
            tensors[f"ema.{key}"] = value
    # rows of the global batch: gathered from every rank (a collective — call on all ranks)
    gather = trainer.world.gather_rows
    for key, value in (trainer.carry or {}).items():
        tensors[f"carry.{key}"] = gather(value)
    for key, value in (trainer.batch or {}).items():
        tensors[f"batch.{key}"] = gather(value)
    if trainer.halted is not None:
        tensors["state.halted"] = gather(trainer.halted.to(torch.uint8))
        tensors["state.steps_in_carry"] = gather(trainer.steps_in_carry)
    tensors["rng.torch"] = torch.get_rng_state()
    if trainer.device.type == "cuda":
        tensors["rng.cuda"] = torch.cuda.get_rng_state()
    tensors["sampler.generator"] = trainer.sampler.generator.get_state()
    tensors["sampler.order"] = trainer.sampler.order
    meta = {"step": trainer.step, "examples": trainer.examples, "train_seconds": trainer.train_seconds,
            "flops_per_step": trainer.flops_per_step, "flops_total": trainer.flops_total, "param_groups": groups, "curve": trainer.curve,
            "loss_window": trainer.loss_window, "evals": trainer.evals, "sampler_position": trainer.sampler.position}
    return {k: v.detach().contiguous().cpu().clone() for k, v in tensors.items()}, meta

def save_checkpoint(trainer, path: Path) -> None:
    from safetensors.torch import save

    tensors, meta = state_tensors(trainer)
    if trainer.world.is_main:
        atomic_write_bytes(Path(path), save(tensors, metadata={"trainer": json.dumps(meta)}))

def load_checkpoint(trainer, path: Path, data, seed: int) -> None:
    """`data`: the training split (the sampler is rebuilt over it, then given its saved state)."""
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as handle:
        meta = json.loads(handle.metadata()["trainer"])
    tensors = load_file(str(path))
    trainer.model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
    for name, optimizer in trainer.optimizers.items():
        state: dict[int, dict[str, torch.Tensor]] = {}
        prefix = f"optim.{name}."
        for key, value in tensors.items():
            if key.startswith(prefix):
                param_id, slot = key[len(prefix):].split(".", 1)
                state.setdefault(int(param_id), {})[slot] = value
        optimizer.load_state_dict({"state": state, "param_groups": meta["param_groups"][name]})
    if trainer.ema is not None:
        # only what this trainer averages (a checkpoint from before puzzle tables were left out has them)
        trainer.ema = {k[4:]: v.to(trainer.device) for k, v in tensors.items()
                       if k.startswith("ema.") and k[4:] in trainer.ema}
    rows = trainer.world.rows  # this rank's rows of the saved global batch
    trainer.carry = {k[6:]: rows(v).to(trainer.device) for k, v in tensors.items() if k.startswith("carry.")}
    trainer.batch = {k[6:]: rows(v).to(trainer.device) for k, v in tensors.items() if k.startswith("batch.")} or None
    if "state.halted" in tensors:
        trainer.halted = rows(tensors["state.halted"]).bool().to(trainer.device)
        trainer.steps_in_carry = rows(tensors["state.steps_in_carry"]).to(trainer.device)
    torch.set_rng_state(tensors["rng.torch"])
    if "rng.cuda" in tensors and trainer.device.type == "cuda":
        torch.cuda.set_rng_state(tensors["rng.cuda"])
    trainer.sampler = make_sampler(trainer.config, data, seed)
    trainer.sampler.generator.set_state(tensors["sampler.generator"])
    trainer.sampler.order = tensors["sampler.order"]
    trainer.sampler.position = meta["sampler_position"]
    trainer.step, trainer.examples = meta["step"], meta["examples"]
    trainer.train_seconds, trainer.flops_per_step = meta["train_seconds"], meta["flops_per_step"]
    # checkpoints from before the running total: every step then cost the first step's count
    trainer.flops_total = meta.get("flops_total", (trainer.flops_per_step or 0) * meta.get("step", 0))
    trainer.curve, trainer.evals = meta["curve"], meta["evals"]
    trainer.loss_window = meta.get("loss_window", {})   # checkpoints from before window means: none
