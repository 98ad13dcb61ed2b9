"""Side by side, in one process: an HRM training step of the public reference code (uncompiled) and of
the suite, eager and with `train.compile`. A script, not a test (it needs a checkout of the reference):

    git clone https://github.com/sapientinc/HRM /tmp/hrm-reference   # or any copy of that repository
    OMP_NUM_THREADS=1 python tests/benchmarks/reference_step_speed.py --reference /tmp/hrm-reference \
        --hidden 128 --heads 4 --batch 32

One step = one ACT segment for the whole batch with its loss, backward and optimiser step, both sides
at the same configuration (Sudoku shapes: vocab 11, 81 cells, one puzzle id; 4 + 4 blocks, 2 × 2
cycles, 16 segments with ACT, stablemax), fp32 on CPU. The reference imports FlashAttention, which has
no CPU build: a stand-in module answering `flash_attn_func` with torch's SDPA is put in sys.modules.
Its optimiser package (adam_atan2) is CUDA-only, so its weights take the suite's AdamAtan2 (the same
update rule); its puzzle table keeps its own SignSGD. Steps of the three variants are interleaved, so
machine load drifts hit all of them alike; the medians are printed as JSON.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
import types
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))   # this checkout's bench/ and models/
VOCAB, LENGTH = 11, 81


def _flash_attention_on_sdpa(q, k, v, causal=False):
    """flash_attn_func's (batch, length, heads, head_dim) layout, on torch's SDPA."""
    return F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2),
                                          is_causal=causal).transpose(1, 2)


def reference_step(path: Path, hidden: int, heads: int, batch_size: int, batch: dict):
    # the reference's package is also called `models`: import it aside, then give the name back
    suite = {name: module for name, module in sys.modules.items() if name == "models" or name.startswith("models.")}
    for name in suite:
        del sys.modules[name]
    sys.modules["flash_attn"] = types.SimpleNamespace(flash_attn_func=_flash_attention_on_sdpa)
    # its `models` has no __init__.py (a namespace package): path entries with a regular one would win
    saved_path = sys.path[:]
    sys.path[:] = [str(path)] + [entry for entry in saved_path if not (Path(entry or ".") / "models" / "__init__.py").exists()]
    try:
        from models.hrm.hrm_act_v1 import HierarchicalReasoningModel_ACTV1
        from models.losses import ACTLossHead
        from models.sparse_embedding import CastedSparseEmbeddingSignSGD_Distributed
    finally:
        sys.path[:] = saved_path
        for name in [n for n in sys.modules if n == "models" or n.startswith("models.")]:
            del sys.modules[name]
        sys.modules.update(suite)

    from bench.optim import AdamAtan2

    config = dict(batch_size=batch_size, seq_len=LENGTH, puzzle_emb_ndim=hidden, num_puzzle_identifiers=1,
                  vocab_size=VOCAB, H_cycles=2, L_cycles=2, H_layers=4, L_layers=4, hidden_size=hidden,
                  expansion=4, num_heads=heads, pos_encodings="rope", halt_max_steps=16,
                  halt_exploration_prob=0.1, forward_dtype="float32")
    torch.manual_seed(0)
    model = ACTLossHead(HierarchicalReasoningModel_ACTV1(config), loss_type="stablemax_cross_entropy")
    optimizers = [CastedSparseEmbeddingSignSGD_Distributed(model.model.puzzle_emb.buffers(), lr=1e-4,
                                                           weight_decay=1.0, world_size=1),
                  AdamAtan2(model.parameters(), lr=1e-4, weight_decay=1.0)]
    data = {"inputs": batch["inputs"].int(), "labels": batch["labels"], "puzzle_identifiers": batch["puzzle_ids"].int()}
    state = {"carry": model.initial_carry(data)}
    model.train()

    def step():
        state["carry"], loss, _, _, _ = model(carry=state["carry"], batch=data, return_keys=[])
        ((1 / batch_size) * loss).backward()
        for optimizer in optimizers:
            optimizer.step()
            optimizer.zero_grad()
    return step


def suite_step(hidden: int, heads: int, batch_size: int, batch: dict, compile: bool):
    from bench.config import TrainConfig
    from bench.sampling import Sampler
    from bench.trainer import Trainer
    from models.registry import create_model
    from tasks.protocol import TaskData, TaskSpec

    spec = TaskSpec(vocab_size=VOCAB, seq_len=LENGTH)
    torch.manual_seed(0)
    model = create_model("hrm", spec, hidden=hidden, num_heads=heads)
    config = TrainConfig(batch_size=batch_size, lr=1e-4, weight_decay=1.0, puzzle_emb_lr=1e-4,
                         puzzle_emb_weight_decay=1.0, segments=16, act=True, compile=compile)
    trainer = Trainer(model, spec, config, "cpu", progress=False)
    data = TaskData(batch["inputs"], batch["labels"], batch["puzzle_ids"])
    trainer.sampler = Sampler(len(data), 0)
    return lambda: trainer.train_step(data)


MATMUL_OPS = ("mm", "matmul", "linear", "scaled_dot_product", "_flash", "bmm", "addmm")


def matmul_share(step) -> float:
    """Share of self CPU time of two steps spent in matrix products and attention: what compiling the
    elementwise work around them cannot speed up (an Amdahl bound on train.compile's gain)."""
    from torch.profiler import ProfilerActivity, profile

    step()
    with profile(activities=[ProfilerActivity.CPU]) as profiled:
        step()
        step()
    events = profiled.key_averages()
    total = sum(e.self_cpu_time_total for e in events)
    return sum(e.self_cpu_time_total for e in events if any(k in e.key for k in MATMUL_OPS)) / total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--reference", type=Path, required=True, help="a checkout of sapientinc/HRM")
    parser.add_argument("--hidden", type=int, default=128)
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--steps", type=int, default=5, help="timed steps of each variant")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps first (compilation happens here)")
    parser.add_argument("--profile", action="store_true",
                        help="only profile 2 eager suite steps: the share of CPU time in matrix products and attention")
    args = parser.parse_args()
    g = torch.Generator().manual_seed(0)
    batch = {"inputs": torch.randint(1, VOCAB, (args.batch, LENGTH), generator=g),
             "labels": torch.randint(2, VOCAB, (args.batch, LENGTH), generator=g),
             "puzzle_ids": torch.zeros(args.batch, dtype=torch.long)}
    if args.profile:
        share = matmul_share(suite_step(args.hidden, args.heads, args.batch, batch, compile=False))
        print(json.dumps({"hidden": args.hidden, "batch": args.batch, "matmul_attention_share": share,
                          "compile_gain_bound": 1 / share}))
        return
    variants = {"reference": reference_step(args.reference, args.hidden, args.heads, args.batch, batch),
                "suite": suite_step(args.hidden, args.heads, args.batch, batch, compile=False),
                "suite_compiled": suite_step(args.hidden, args.heads, args.batch, batch, compile=True)}
    warmup_seconds = {}
    for name, step in variants.items():
        start = time.perf_counter()
        for _ in range(args.warmup):
            step()
        warmup_seconds[name] = time.perf_counter() - start
    seconds = {name: [] for name in variants}
    for _ in range(args.steps):
        for name, step in variants.items():
            start = time.perf_counter()
            step()
            seconds[name].append(time.perf_counter() - start)
    medians = {name: statistics.median(values) for name, values in seconds.items()}
    print(json.dumps({"hidden": args.hidden, "heads": args.heads, "batch": args.batch, "threads": torch.get_num_threads(),
                      "median_seconds": medians, "warmup_seconds": warmup_seconds,
                      "speedup_vs_reference": {name: medians["reference"] / m for name, m in medians.items()},
                      "seconds": seconds}, indent=1))


if __name__ == "__main__":
    main()
