"""TRM: published size, last cycle fully differentiated, gradient switch, MLP mixer, EMA preset."""
from __future__ import annotations

import pytest
import torch

from gradient_probes import attach_probes

from bench.matching import prepare
from bench.runner import execute
from models.registry import create_model
from models.trm import TRM
from tasks.protocol import TaskSpec

TINY = dict(hidden=32, num_heads=2, ffn_multiple=32, num_layers=2, cycles=3, latent_updates=2, puzzle_emb_len=4)
SPEC = TaskSpec(vocab_size=6, seq_len=10)


def paper_config(**overrides) -> dict:
    values = {k.split(".", 1)[1]: v for k, v in TRM.presets["paper"].items() if k.startswith("model.")}
    return {**values, **overrides}


def tiny_model(seed: int = 0, spec: TaskSpec = SPEC, **overrides) -> TRM:
    torch.manual_seed(seed)
    return create_model("trm", spec, **{**TINY, **overrides})


def tiny_batch(size: int = 3) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(1)
    return {"inputs": torch.randint(0, 6, (size, 10), generator=generator),
            "labels": torch.randint(0, 6, (size, 10), generator=generator),
            "puzzle_ids": torch.zeros(size, dtype=torch.long)}


def segment_loss(outputs, batch) -> torch.Tensor:
    return (torch.nn.functional.cross_entropy(outputs["logits"].flatten(0, 1), batch["labels"].flatten())
            + outputs["q_halt_logits"].sum())


def test_paper_preset_sizes(monkeypatch):
    """6.83M (attention) and 5.03M (MLP mixer, Sudoku) as published; --match none is another helper's."""
    monkeypatch.setattr("models.blocks.truncated_normal_", lambda tensor, std: tensor)  # counting needs no init
    sudoku = TaskSpec(vocab_size=11, seq_len=81)
    attention = create_model("trm", sudoku, **paper_config()).parameter_counts()
    assert attention["params"] == 6_828_034 and round(attention["params"] / 1e6, 2) == 6.83
    mlp = create_model("trm", sudoku, **paper_config(mixer="mlp", pos_encoding="none")).parameter_counts()
    assert mlp["params"] == 5_028_866 and round(mlp["params"] / 1e6, 2) == 5.03
    # the puzzle embedding is one hidden-sized row per id (zero-padded over the 16 prefix positions)
    assert attention["puzzle_emb_params"] == 512


@pytest.mark.parametrize("gradient, differentiated_calls", [
    ("last_cycle", {6, 7, 8}),          # the whole last cycle: 2 z-updates and the y-update
    ("one_step", {7, 8}),               # HRM's rule: only the final z- and y-update
    ("full", set(range(9))),
])
def test_gradient_reaches_exactly_the_differentiated_calls(gradient, differentiated_calls):
    model = tiny_model(gradient=gradient)
    named_probes = attach_probes({"net": model.net})
    batch = tiny_batch()
    _, outputs = model(model.initial_carry(batch), batch)
    segment_loss(outputs, batch).backward()
    probes = [probe for _, probe in named_probes]
    assert len(probes) == 3 * (2 + 1)
    reached = {i for i, probe in enumerate(probes) if probe.grad is not None and probe.grad.abs().sum() > 0}
    assert reached == differentiated_calls
    assert all(probes[i].grad is None for i in set(range(9)) - differentiated_calls)


def test_last_cycle_gradient_is_full_backprop_through_that_cycle():
    """The reference rule equals BPTT through the last cycle started from the detached earlier state."""
    model = tiny_model()
    batch = tiny_batch()
    carry = model.initial_carry(batch)
    _, outputs = model(carry, batch)
    segment_loss(outputs, batch).backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters()}
    model.zero_grad(set_to_none=True)

    x, rotary = model.embedding(batch)
    y, z = carry["y"], carry["z"]
    with torch.no_grad():
        for _ in range(2):                       # T − 1 = 2 cycles without gradient
            for _ in range(2):
                z = model.net(z, injection=y + x, rotary=rotary)
            y = model.net(y, injection=z, rotary=rotary)
    y, z = y.detach(), z.detach()
    for _ in range(2):                           # the last cycle, fully differentiated
        z = model.net(z, injection=y + x, rotary=rotary)
    y = model.net(y, injection=z, rotary=rotary)
    manual = {"logits": model.head(y), "q_halt_logits": model.q_head(y)[:, 0]}
    segment_loss(manual, batch).backward()
    for name, parameter in model.named_parameters():
        torch.testing.assert_close(grads[name], parameter.grad, rtol=1e-5, atol=1e-7)


def test_outputs_carry_and_halting_head():
    model = tiny_model()
    batch = tiny_batch()
    carry = model.initial_carry(batch)
    assert carry["y"].shape == (3, 4 + 10, 32)
    assert torch.equal(carry["y"][0, 3], model.y_init) and torch.equal(carry["z"][2, 7], model.z_init)
    new_carry, outputs = model(carry, batch)
    assert set(outputs) == {"logits", "q_halt_logits"}      # halt head only: no Q-learning extra forward
    assert outputs["logits"].shape == (3, 10, 6)
    torch.testing.assert_close(outputs["q_halt_logits"], torch.full((3,), -5.0))   # weight 0, bias −5
    assert all(v.grad_fn is None for v in new_carry.values())


def test_mlp_mixer_uses_no_positions_and_needs_a_fixed_length():
    model = tiny_model(mixer="mlp", pos_encoding="none")
    assert model.embedding.rotary is None
    batch = tiny_batch()
    _, outputs = model(model.initial_carry(batch), batch)
    assert torch.isfinite(outputs["logits"]).all()
    # the sequence mixer really mixes positions: changing token 0 changes the logits at token 9
    changed = {**batch, "inputs": batch["inputs"].clone()}
    changed["inputs"][:, 0] = (changed["inputs"][:, 0] + 1) % 6
    _, other = model(model.initial_carry(changed), changed)
    assert not torch.allclose(outputs["logits"][:, 9], other["logits"][:, 9])
    with pytest.raises(ValueError, match="fixed sequence length"):
        tiny_model(spec=TaskSpec(vocab_size=6, seq_len=10, max_len=20), mixer="mlp")


def test_presets_set_ema_through_the_train_section():
    assert prepare("trm", "maze", "paper").train.ema == 0.999
    assert prepare("trm", "maze", "cpu").train.ema == 0.99
    assert prepare("trm", "maze", "cpu", overrides=["train.ema=0"]).train.ema == 0.0
    assert prepare("trm", "maze", "paper").model.puzzle_emb_len == 16


def test_smoke_run_on_maze_uses_ema(tmp_path):
    run = prepare("trm", "maze", "smoke", overrides=["train.act=true", "train.segments=2"])
    summary = execute(run, tmp_path, progress=False)
    assert summary["status"] == "complete"
    assert summary["config"]["train"]["ema"] == 0.9
    assert 1.0 <= summary["metrics"]["test"]["mean_segments_used"] <= 2.0


def test_ema_leaves_the_puzzle_table_out():
    """As the reference (its table is a buffer the EMA helper never sees): evaluation reads the live
    puzzle table and the EMA of every other weight."""
    from bench.config import TrainConfig
    from bench.trainer import Sampler, Trainer
    from tasks.protocol import TaskData

    spec = TaskSpec(vocab_size=6, seq_len=10, num_puzzle_ids=3)
    model = tiny_model(spec=spec)
    batch = tiny_batch(size=4)
    data = TaskData(batch["inputs"], batch["labels"], torch.tensor([1, 2, 1, 2]))
    trainer = Trainer(model, spec, TrainConfig(batch_size=4, lr_warmup_steps=0, ema=0.5, puzzle_emb_lr=0.1),
                      "cpu", progress=False)
    trainer.sampler = Sampler(len(data), seed=0)
    for _ in range(3):
        trainer.train_step(data)
    table = model.embedding.puzzle_embedding.weight
    assert not any(value is table for value in trainer.ema.values()) and len(trainer.ema) == len(list(model.parameters())) - 1
    shadow = trainer.eval_model()
    assert torch.equal(shadow.embedding.puzzle_embedding.weight, table)          # the live table
    assert table[1].abs().sum() > 0                                              # which did train
    weight = dict(shadow.named_parameters())
    averaged = [name for name, value in model.named_parameters() if not torch.equal(weight[name], value)]
    assert averaged and "embedding.puzzle_embedding.weight" not in averaged
