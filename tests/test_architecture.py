"""The architecture's promises: imports flow one way, resolving is pure, FLOPs counted on the meta device
equal the real count, the model/trainer protocol is explicit, and the data cache follows the code."""
from __future__ import annotations

import ast
import importlib
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from torch import nn

from bench.config import resolve
from bench.matching import build, example_batch, full_budget_flops, inference_flops, prepare, sizing_spec
from bench.trainer import Trainer
from models.protocol import SegmentModel
from models.registry import model_names
from tasks.cache import cache_key, code_fingerprint
from tasks.protocol import Task, TaskData, TaskSpec
from tasks.registry import PRESETS, task_names

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("bench", "models", "tasks")
# a package may import those after it in this order, never one before it
LAYERS = {"bench": 0, "models": 1, "tasks": 2}


def project_imports() -> dict[str, set[str]]:
    """module → project modules it imports anywhere in its file (function-level imports included)."""
    graph: dict[str, set[str]] = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).glob("*.py")):
            module = f"{package}.{path.stem}" if path.stem != "__init__" else package
            imported: set[str] = set()
            for node in ast.walk(ast.parse(path.read_text())):
                names = []
                if isinstance(node, ast.Import):
                    names = [alias.name for alias in node.names]
                elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                    names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
                imported |= {name for name in names if name.split(".")[0] in PACKAGES and
                             (ROOT / Path(*name.split("."))).with_suffix(".py").exists()}
            graph[module] = imported - {module}
    return graph


def test_imports_flow_one_way_bench_models_tasks():
    upward = [(module, target) for module, targets in project_imports().items() for target in targets
              if LAYERS[target.split(".")[0]] < LAYERS[module.split(".")[0]]]
    assert upward == []


def test_no_import_cycle():
    graph = project_imports()
    state: dict[str, int] = {}
    cycle: list[str] = []

    def visit(module: str, path: list[str]) -> bool:
        state[module] = 1
        for target in sorted(graph.get(module, ())):
            if state.get(target) == 1:
                cycle.extend(path[path.index(target):] + [module, target] if target in path else [module, target])
                return True
            if state.get(target) is None and visit(target, path + [module]):
                return True
        state[module] = 2
        return False

    assert not any(visit(module, []) for module in sorted(graph) if state.get(module) is None), cycle


def test_resolve_builds_no_model_and_no_task(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("resolve() built a model or a task")

    monkeypatch.setattr(SegmentModel, "__init__", refuse)
    monkeypatch.setattr(Task, "__init__", refuse)
    for model in model_names():
        for task in task_names():
            for preset in PRESETS:
                run = resolve(model, task, preset)
                assert run.extra == {} and run.model_name == model


@pytest.mark.parametrize("model_name", ["hrm", "trm", "transformer", "deq", "unrolled", "looped", "mamba"])
def test_flops_counted_on_the_meta_device_equal_the_real_count(model_name):
    """`bench info` and FLOP matching count on the meta device, one segment times the segments; a real
    forward of the same config (DEQ: at its full iteration budget) must count exactly the same."""
    run = prepare(model_name, "maze", "smoke", ["train.segments=3"])
    spec = sizing_spec(run)
    torch.manual_seed(0)
    real_config = type(run.model)(**{**vars(run.model), **build(model_name, run.model, spec, "meta").full_budget})
    real = inference_flops(build(model_name, real_config, spec), spec, segments=3)
    assert full_budget_flops(model_name, run.model, spec, segments=3) == real > 0


def test_bench_info_counts_on_the_meta_device_only(monkeypatch, capsys, tmp_path):
    """No real forward at paper scale: every tensor a model makes while `bench info` runs is on meta."""
    from bench.cli import main

    monkeypatch.setenv("RECURRENT_BENCH_CACHE", str(tmp_path))   # no stored answer: it is computed

    real_forward = SegmentModel.__call__

    def meta_only(self, carry, batch):
        assert batch["inputs"].device.type == "meta", "bench info ran a real forward"
        return real_forward(self, carry, batch)

    monkeypatch.setattr(SegmentModel, "__call__", meta_only)
    assert main(["info", "--model", "deq", "--task", "maze", "--preset", "paper", "--json"]) == 0
    assert '"flops_per_example"' in capsys.readouterr().out


# ------------------------------------------------------------------ the model/trainer protocol
class Declared(SegmentModel):
    """A table named like nothing the trainer could guess, declared as the puzzle embedding, and a
    parameter *named* puzzle_embedding that is not one."""

    logged_outputs = ("probe",)

    def __init__(self, spec):
        super().__init__(None, spec)
        self.table = nn.Embedding(4, spec.vocab_size)
        self.puzzle_embedding = nn.Parameter(torch.zeros(spec.vocab_size))
        nn.init.zeros_(self.table.weight)

    def puzzle_embedding_parameters(self):
        return [self.table.weight]

    def forward(self, carry, batch):
        logits = self.table(batch["puzzle_ids"])[:, None, :] + self.puzzle_embedding
        logits = logits.expand(-1, batch["inputs"].shape[1], -1)
        return carry, {"logits": logits, "probe": torch.tensor(7.0), "undeclared": torch.tensor(1.0)}


def test_the_trainer_follows_declared_groups_and_logged_outputs_not_names():
    spec = TaskSpec(vocab_size=3, seq_len=2, num_puzzle_ids=4)
    model = Declared(spec)
    assert model.parameter_counts() == {"params": 3, "puzzle_emb_params": 12}
    train = resolve("transformer", "maze", "smoke", ["train.batch_size=4", "train.steps=1"]).train
    trainer = Trainer(model, spec, train, "cpu", progress=False)
    assert [p is model.table.weight for p in trainer.optimizers["puzzle_embedding"].param_groups[0]["params"]] == [True]
    assert trainer.optimizers["model"].param_groups[0]["params"][0] is model.puzzle_embedding
    data = TaskData(torch.zeros(8, 2, dtype=torch.long), torch.ones(8, 2, dtype=torch.long), torch.arange(8) % 4)
    trainer.fit(data, seed=0)
    assert trainer.curve[-1]["probe"] == 7.0 and "undeclared" not in trainer.curve[-1]


def test_each_curve_point_logs_its_batch_and_the_mean_of_its_window():
    spec = TaskSpec(vocab_size=3, seq_len=2, num_puzzle_ids=4)
    model = Declared(spec)
    train = resolve("transformer", "maze", "smoke", ["train.batch_size=4", "train.steps=5", "train.log_every=2",
                                                      "train.lr=0.5"]).train
    trainer = Trainer(model, spec, train, "cpu", progress=False)
    data = TaskData(torch.zeros(8, 2, dtype=torch.long), torch.ones(8, 2, dtype=torch.long), torch.arange(8) % 4)
    losses = []
    trainer.fit(data, seed=0, on_step=lambda _, metrics: losses.append(metrics["lm_loss"]))
    assert [p["step"] for p in trainer.curve] == [2, 4, 5]
    assert len(set(losses)) == 5   # the loss moves every step, so a window mean differs from its batch
    for point, window in zip(trainer.curve, (losses[0:2], losses[2:4], losses[4:5])):
        assert point["lm_loss"] == losses[point["step"] - 1]
        assert point["lm_loss_window_mean"] == pytest.approx(sum(window) / len(window), rel=1e-12)


# ------------------------------------------------------------------ the data cache follows the code
def test_cache_key_changes_when_the_generator_or_a_helper_it_uses_changes(tmp_path, monkeypatch):
    package = tmp_path / "fingerprinted"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "helper.py").write_text("def draw():\n    return 1\n")
    (package / "task.py").write_text(textwrap.dedent("""
        from dataclasses import dataclass
        from fingerprinted.helper import draw

        @dataclass
        class Config:
            seed: int = 0

        class Generated:
            registry_name = "generated"
            def __init__(self):
                self.config = Config()
    """))
    monkeypatch.syspath_prepend(str(tmp_path))

    def key() -> str:
        for name in [m for m in sys.modules if m.startswith("fingerprinted")]:
            del sys.modules[name]
        code_fingerprint.cache_clear()
        return cache_key(importlib.import_module("fingerprinted.task").Generated(), "train")

    first = key()
    assert key() == first                                            # same code, same key
    (package / "helper.py").write_text("def draw():\n    return 2\n")
    second = key()
    assert second != first                                           # a helper it uses changed
    (package / "task.py").write_text((package / "task.py").read_text() + "\n# a comment\n")
    assert key() not in (first, second)                              # the task module itself changed


def test_the_cache_key_of_every_task_carries_its_code():
    for name in task_names():
        task = importlib.import_module("tasks.registry").create_task(name)
        assert len(code_fingerprint(type(task).__module__)) == 16 and cache_key(task, "train")


def test_example_batch_has_the_task_shape():
    spec = TaskSpec(vocab_size=5, seq_len=7)
    assert example_batch(spec, 2)["inputs"].shape == (2, 7)


def test_the_static_catalogue_is_what_the_modules_register():
    from models.registry import MODELS
    from tasks.registry import TASKS

    for registry in (MODELS, TASKS):
        static = registry._literal_registrations()
        assert static == {name: (registry.get(name).description, registry.get(name).origin)
                          for name in registry.names()}


def test_bench_list_and_help_import_no_torch():
    code = ("import sys; from bench.cli import main; main(['list']); main(['--help']); "
            "assert 'torch' not in sys.modules, 'listing imported torch'")
    completed = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert completed.returncode == 0, completed.stderr
    assert "hrm" in completed.stdout and "maze" in completed.stdout


@pytest.mark.slow
def test_bench_info_answers_again_without_importing_torch(tmp_path):
    """The second identical `bench info` reads the stored answer: same text, and torch never loads."""
    script = ("import sys; from bench.cli import main; "
              "code = main(['info', '--model', 'looped', '--task', 'maze', '--preset', 'paper']); "
              "print('torch loaded:', 'torch' in sys.modules); sys.exit(code)")
    env = {**os.environ, "RECURRENT_BENCH_CACHE": str(tmp_path), "OMP_NUM_THREADS": "1"}
    first, second = (subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True,
                                    text=True, timeout=300) for _ in range(2))
    assert first.returncode == second.returncode == 0, first.stderr + second.stderr
    assert first.stdout.endswith("torch loaded: True\n") and second.stdout.endswith("torch loaded: False\n")
    assert first.stdout.rsplit("torch loaded", 1)[0] == second.stdout.rsplit("torch loaded", 1)[0]
    assert "looped on maze (paper)" in second.stdout


def test_a_stored_info_answer_is_not_used_by_other_code_or_another_question(tmp_path, monkeypatch):
    from bench import memo

    monkeypatch.setenv("RECURRENT_BENCH_CACHE", str(tmp_path))
    question = {"command": "info", "model": "hrm", "task": "maze", "preset": "cpu", "overrides": [], "match": "params"}
    memo.remember(question, {"text": "stored"})
    assert memo.recall(question) == {"text": "stored"}
    assert memo.recall({**question, "overrides": ["model.hidden=64"]}) is None
    monkeypatch.setattr(memo, "source_fingerprint", lambda: "the suite's code after an edit")
    assert memo.recall(question) is None
