"""HRM: exact reference size, the one-step gradient rule, carry, initial states, an end-to-end run."""
from __future__ import annotations

import pytest
import torch

from gradient_probes import attach_probes

from bench.matching import prepare
from bench.runner import execute
from models.hrm import HRM
from models.registry import create_model
from tasks.protocol import TaskSpec

TINY = dict(hidden=32, num_heads=2, ffn_multiple=32, high_layers=1, low_layers=1, high_cycles=2, low_cycles=2)


def model_preset(cls, preset: str) -> dict:
    return {k.split(".", 1)[1]: v for k, v in cls.presets[preset].items() if k.startswith("model.")}


def tiny_model(seed: int = 0, **overrides) -> HRM:
    torch.manual_seed(seed)
    return create_model("hrm", TaskSpec(vocab_size=6, seq_len=10), **{**TINY, **overrides})


def tiny_batch(seed: int = 1, size: int = 3) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return {"inputs": torch.randint(0, 6, (size, 10), generator=generator),
            "labels": torch.randint(0, 6, (size, 10), generator=generator),
            "puzzle_ids": torch.zeros(size, dtype=torch.long)}


def segment_loss(outputs: dict[str, torch.Tensor], batch) -> torch.Tensor:
    logits = outputs["logits"]
    return (torch.nn.functional.cross_entropy(logits.flatten(0, 1), batch["labels"].flatten())
            + outputs["q_halt_logits"].sum() + outputs["q_continue_logits"].sum())


@pytest.mark.parametrize("vocab, length, expected", [(11, 81, 27_275_266), (12, 900, 27_276_290)])
def test_paper_preset_has_the_reference_parameter_count(vocab, length, expected, monkeypatch):
    monkeypatch.setattr("models.blocks.truncated_normal_", lambda tensor, std: tensor)  # counting needs no init
    model = create_model("hrm", TaskSpec(vocab_size=vocab, seq_len=length), **model_preset(HRM, "paper"))
    counts = model.parameter_counts()
    assert counts["params"] == expected
    assert counts["puzzle_emb_params"] == 512          # one zero-initialised row, counted apart
    block = sum(p.numel() for p in model.high.layers[0].parameters())
    assert block == 3_407_872


def record_calls(model: HRM):
    """Forward hooks on H and L: per call, does its output carry a graph? Returns the two lists."""
    low, high = [], []
    model.low.register_forward_hook(lambda module, args, out: low.append(out.requires_grad))
    model.high.register_forward_hook(lambda module, args, out: high.append(out.requires_grad))
    return low, high


@pytest.mark.parametrize("gradient, low_expected, high_expected", [
    ("one_step", [False, False, False, True], [False, True]),
    ("last_cycle", [False, False, True, True], [False, True]),
    ("full", [True, True, True, True], [True, True]),
])
def test_gradient_mode_decides_which_calls_are_in_the_graph(gradient, low_expected, high_expected):
    model = tiny_model(gradient=gradient)
    low, high = record_calls(model)
    batch = tiny_batch()
    model(model.initial_carry(batch), batch)
    assert low == low_expected and high == high_expected


@pytest.mark.parametrize("gradient, reached", [
    ("one_step", {4, 5}),              # only the final L-call and the final H-call
    ("full", set(range(6))),           # the probes are sensitive: with BPTT every call gets gradient
])
def test_no_gradient_reaches_activations_of_the_no_grad_calls(gradient, reached):
    """Perturbing an early-cycle activation (inside no_grad) is invisible to backprop: no path exists."""
    model = tiny_model(gradient=gradient)
    probes = attach_probes({"L": model.low, "H": model.high})
    batch = tiny_batch()
    _, outputs = model(model.initial_carry(batch), batch)
    segment_loss(outputs, batch).backward()
    assert [name for name, _ in probes] == ["L", "L", "H", "L", "L", "H"]
    for index, (name, probe) in enumerate(probes):
        if index in reached:
            assert probe.grad is not None and probe.grad.abs().sum() > 0
        else:
            assert probe.grad is None, f"call {index} ({name}) is in the gradient path"


def test_one_step_gradient_equals_gradient_of_the_final_calls_alone():
    """Parameters get exactly the gradient of the last L- and H-call applied to the detached states
    that the no_grad calls produced: nothing flows through the earlier calls (the L-module is
    reached only via its last call)."""
    model = tiny_model(gradient="one_step")
    batch = tiny_batch()
    carry = model.initial_carry(batch)
    _, outputs = model(carry, batch)
    segment_loss(outputs, batch).backward()
    model_grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    model.zero_grad(set_to_none=True)

    # the same segment written out by hand: 3 L-calls and 1 H-call on detached values
    x, rotary = model.embedding(batch)
    with torch.no_grad():
        z_high, z_low = carry["z_high"], carry["z_low"]
        z_low = model.low(z_low, injection=z_high + x, rotary=rotary)
        z_low = model.low(z_low, injection=z_high + x, rotary=rotary)
        z_high = model.high(z_high, injection=z_low, rotary=rotary)
        z_low = model.low(z_low, injection=z_high + x, rotary=rotary)
    z_low = model.low(z_low.detach(), injection=z_high.detach() + x, rotary=rotary)
    z_high = model.high(z_high.detach(), injection=z_low, rotary=rotary)
    q = model.q_head(z_high)
    manual = {"logits": model.head(z_high), "q_halt_logits": q[:, 0], "q_continue_logits": q[:, 1]}
    segment_loss(manual, batch).backward()
    manual_grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    assert model_grads.keys() == manual_grads.keys()
    for name in model_grads:
        torch.testing.assert_close(model_grads[name], manual_grads[name], rtol=1e-5, atol=1e-7)

    # and the check is sensitive: full BPTT gives the L-module a different gradient
    full = tiny_model(gradient="full")
    _, outputs = full(full.initial_carry(batch), batch)
    segment_loss(outputs, batch).backward()
    low_name = "low.layers.0.mlp.down.weight"
    assert not torch.allclose(dict(full.named_parameters())[low_name].grad, model_grads[low_name])


def test_carry_leaves_detached_and_starts_from_fixed_states():
    model = tiny_model()
    batch = tiny_batch()
    carry = model.initial_carry(batch)
    assert carry["z_high"].shape == (3, 11, 32)          # 1 puzzle prefix position + 10 tokens
    assert torch.equal(carry["z_high"][1, 4], model.z_high_init)
    assert torch.equal(carry["z_low"][2, 0], model.z_low_init)
    assert "z_high_init" not in dict(model.named_parameters())   # buffers, never trained
    new_carry, _ = model(carry, batch)
    assert all(not v.requires_grad and v.grad_fn is None for v in new_carry.values())
    restarted = model.reset_carry(new_carry, torch.tensor([True, False, False]), batch)
    assert torch.equal(restarted["z_low"][0], carry["z_low"][0])
    assert torch.equal(restarted["z_low"][1], new_carry["z_low"][1])


def test_residual_trace_records_every_update():
    model = tiny_model()
    model.residual_trace = {}
    batch = tiny_batch()
    with torch.no_grad():
        model(model.initial_carry(batch), batch)
    assert len(model.residual_trace["z_low"]) == 4 and len(model.residual_trace["z_high"]) == 2
    assert all(value > 0 for value in model.residual_trace["z_low"])


def test_same_seed_same_outputs_and_bad_config_is_an_error():
    batch = tiny_batch()
    first = tiny_model(seed=5)
    second = tiny_model(seed=5)
    out_a = first(first.initial_carry(batch), batch)[1]["logits"]
    out_b = second(second.initial_carry(batch), batch)[1]["logits"]
    assert torch.equal(out_a, out_b)
    with pytest.raises(ValueError, match="gradient"):
        tiny_model(gradient="two_step")


def test_smoke_run_on_maze_records_segments(tmp_path):
    run = prepare("hrm", "maze", "smoke", overrides=["train.act=true", "train.segments=3",
                                                     "train.eval_halting=learned"])
    assert run.model.high_layers == 1 and run.model.hidden == 32   # hidden from the task preset
    summary = execute(run, tmp_path, progress=False)
    assert summary["status"] == "complete"
    score = summary["metrics"]["test"]
    assert 1.0 <= score["mean_segments_used"] <= 3.0
    assert 0.0 <= score["token_accuracy"] <= 1.0
    assert summary["params"] > 0 and summary["train"]["flops_per_step"] > 0


def test_puzzle_embedding_rows_take_signsgd_steps_only_when_used():
    """The puzzle table (counted apart) is trained by SignSGD at train.puzzle_emb_lr, only on the batch's rows."""
    from bench.config import TrainConfig
    from bench.trainer import Sampler, Trainer
    from tasks.protocol import TaskData

    torch.manual_seed(0)
    spec = TaskSpec(vocab_size=6, seq_len=10, num_puzzle_ids=5)
    model = create_model("hrm", spec, **TINY)
    assert model.parameter_counts()["puzzle_emb_params"] == 5 * 32
    batch = tiny_batch(size=4)
    data = TaskData(batch["inputs"], batch["labels"], torch.tensor([1, 3, 1, 3]))
    config = TrainConfig(batch_size=4, lr_warmup_steps=0, puzzle_emb_lr=0.01, puzzle_emb_weight_decay=0.5)
    trainer = Trainer(model, spec, config, "cpu", progress=False)
    trainer.sampler = Sampler(len(data), seed=0)
    trainer.train_step(data)
    table = model.embedding.puzzle_embedding.weight.detach()
    assert torch.equal(table[[0, 2, 4]], torch.zeros(3, 32))
    assert torch.allclose(table[[1, 3]].abs(), torch.full((2, 32), 0.01))   # one sign step from zero


def test_embedding_scales_prefix_and_learned_positions_like_the_reference():
    """x = sqrt(h)·(tokens ++ prefix), and with learned positions sqrt(h)·0.7071·(that + positions)."""
    from models.blocks import InputEmbedding

    torch.manual_seed(0)
    embedding = InputEmbedding(6, 16, 10, num_puzzle_ids=2, puzzle_emb_len=2, pos_encoding="learned",
                               num_heads=2, puzzle_emb_dim=16)
    torch.nn.init.normal_(embedding.puzzle_embedding.weight)
    batch = tiny_batch(size=2)
    batch["puzzle_ids"] = torch.tensor([0, 1])
    x, rotary = embedding(batch)
    assert rotary is None and x.shape == (2, 12, 16)
    prefix = torch.zeros(2, 2, 16)
    prefix[:, 0] = embedding.puzzle_embedding.weight[[0, 1]]          # one row, zero-padded to 2 positions
    raw = torch.cat((prefix, embedding.tokens(batch["inputs"])), dim=1)
    expected = 4.0 * 0.707106781 * (raw + embedding.positions.weight)
    torch.testing.assert_close(x, expected)
