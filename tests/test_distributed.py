"""Data-parallel training (bench/distributed.py): 2 gloo processes × B/2 reproduce 1 process × B."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from bench.config import ConfigError
from bench.matching import prepare
from bench.distributed import World
from bench.runner import build, execute
from bench.trainer import Sampler, Trainer

ROOT = Path(__file__).resolve().parent.parent
# two deep-supervision segments so the per-rank carry, halted rows and refills are exercised
OVERRIDES = ["train.steps=6", "train.segments=2", "train.log_every=1", "train.eval_every=3",
             "train.checkpoint_every=2"]


@pytest.mark.slow
def test_two_processes_match_one_process_with_the_same_global_batch(tmp_path):
    sets = [a for o in OVERRIDES for a in ("--set", o)]
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
               "-m", "bench", "run", "--model", "transformer", "--task", "maze", "--preset", "smoke",
               "--device", "cpu", "--quiet", "--out", str(tmp_path / "ddp"), *sets]
    completed = subprocess.run(command, cwd=ROOT, env={**os.environ, "OMP_NUM_THREADS": "1"},
                               capture_output=True, text=True, timeout=300)
    assert completed.returncode == 0, completed.stderr[-3000:]
    assert completed.stdout.count("written ") == 1  # only rank 0 reports and writes
    (run_dir,) = [p for p in (tmp_path / "ddp").iterdir() if p.is_dir()]
    ddp = json.loads((run_dir / "summary.json").read_text())
    assert ddp["status"] == "complete" and ddp["processes"] == 2

    single = execute(prepare("transformer", "maze", "smoke", OVERRIDES, device="cpu"), tmp_path / "one",
                     progress=False)
    assert single["processes"] == 1 and single["config_hash"] == ddp["config_hash"]
    assert ddp["train"]["examples"] == single["train"]["examples"]
    for two, one in zip(ddp["train"]["curve"], single["train"]["curve"], strict=True):
        assert two["step"] == one["step"]
        for key in ("loss", "lm_loss", "exact_accuracy"):
            assert two[key] == pytest.approx(one[key], rel=1e-5, abs=1e-7), (key, two, one)
    tokens = ddp["data"]["test_examples"] * 36  # smoke maze: 6×6 grid; allow an argmax tie to flip twice
    for split, metrics in single["metrics"].items():
        assert ddp["metrics"][split]["token_accuracy"] == pytest.approx(metrics["token_accuracy"], abs=2 / tokens)
        assert ddp["metrics"][split]["exact_accuracy"] == pytest.approx(metrics["exact_accuracy"], abs=1e-9)
    assert [e["token_accuracy"] for e in ddp["train"]["evals"]] == pytest.approx(
        [e["token_accuracy"] for e in single["train"]["evals"]], abs=2 / tokens)
    # FLOPs are summed over ranks: the same work as one process
    assert ddp["train"]["flops_per_step"] == pytest.approx(single["train"]["flops_per_step"], rel=0.01)


def test_rows_and_shards_partition_the_batch():
    batch = torch.arange(12)
    assert torch.equal(torch.cat([World(rank, 3).rows(batch) for rank in range(3)]), batch)
    shards = [World(rank, 4).shard(10) for rank in range(4)]
    assert shards == [(0, 3), (3, 6), (6, 9), (9, 10)]
    assert World(3, 4).shard(2) == (2, 2)  # more ranks than examples: an empty shard
    with pytest.raises(ConfigError, match="divisible by the number of processes"):
        World(0, 3).local_batch_size(16)


def test_a_checkpoint_resumes_under_any_number_of_processes(tmp_path, monkeypatch):
    """Checkpoints hold the global batch; a rank of a 2-process world loads exactly its rows."""
    # no process group in this unit test: loading a checkpoint needs no collective, the weight broadcast does
    monkeypatch.setattr(World, "broadcast_parameters", lambda self, module: None)
    config = prepare("transformer", "maze", "smoke", ["train.segments=2"], device="cpu")
    task, model = build(config)
    data = task.build("train")
    trainer = Trainer(model, task.spec, config.train, "cpu", progress=False)
    trainer.sampler = Sampler(len(data), 0)
    trainer.train_step(data)
    trainer.save_checkpoint(tmp_path / "checkpoint.safetensors")
    for rank in range(2):
        _, fresh_model = build(config)
        half = Trainer(fresh_model, task.spec, config.train, "cpu", progress=False, world=World(rank, 2))
        half.load_checkpoint(tmp_path / "checkpoint.safetensors", data, seed=0)
        rows = slice(rank * 8, (rank + 1) * 8)  # smoke batch 16 over 2 ranks
        assert half.local_batch_size == 8
        assert half.carry.keys() == trainer.carry.keys()
        for key, value in trainer.carry.items():
            assert torch.equal(half.carry[key], value[rows])
        assert torch.equal(half.batch["inputs"], trainer.batch["inputs"][rows])
        assert torch.equal(half.halted, trainer.halted[rows])
        assert half.step == trainer.step == 1
