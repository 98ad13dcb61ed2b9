"""A model and a task from an outside package, registered through entry points, run and report like
the built-ins — no fork. The package is installed with pip into a temporary folder."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

PYPROJECT = """
[build-system]
requires = ["setuptools>=68"]
build-backend = "setuptools.build_meta"

[project]
name = "bench-plugin-example"
version = "0.1"

[project.entry-points."recurrent_bench.models"]
tiny_mlp = "bench_plugin_example.tiny_mlp"

[project.entry-points."recurrent_bench.tasks"]
parity = "bench_plugin_example.parity"
broken = "bench_plugin_example.missing_module"
"""

MODEL = '''
"""A per-position MLP: the smallest model the segment protocol allows."""
from dataclasses import dataclass

from torch import nn

from models.protocol import SegmentModel
from models.registry import register_model


@dataclass
class TinyConfig:
    hidden: int = 16


@register_model("tiny_mlp", config=TinyConfig, description="per-position MLP (a plugin)")
class TinyMLP(SegmentModel):
    def __init__(self, config, spec):
        super().__init__(config, spec)
        self.net = nn.Sequential(nn.Embedding(spec.vocab_size, config.hidden), nn.ReLU(),
                                 nn.Linear(config.hidden, spec.vocab_size))

    def forward(self, carry, batch):
        return carry, {"logits": self.net(batch["inputs"])}
'''

TASK = '''
"""Copy each bit's parity with its neighbour: a seeded task in a dozen lines."""
from dataclasses import dataclass

import torch

from tasks.protocol import Task, TaskData, TaskSpec
from tasks.registry import register_task


@dataclass
class ParityConfig:
    length: int = 8
    train_size: int = 256
    test_size: int = 64
    seed: int = 0


PRESETS = {name: {} for name in ("smoke", "cpu", "paper")}


@register_task("parity", config=ParityConfig, description="bit identity (a plugin)", presets=PRESETS)
class Parity(Task):
    def __init__(self, config):
        super().__init__(config)
        self.spec = TaskSpec(vocab_size=2, seq_len=config.length)

    def build(self, split):
        generator = torch.Generator().manual_seed(self.config.seed * 2 + (split != "train"))
        size = self.config.train_size if split == "train" else self.config.test_size
        bits = torch.randint(0, 2, (size, self.config.length), generator=generator)
        return TaskData(bits, bits.clone(), torch.zeros(size, dtype=torch.long))

    def render(self, data, index, prediction=None):
        return "".join(map(str, data.inputs[index].tolist()))
'''


@pytest.mark.slow
def test_a_plugin_model_and_task_from_another_package_train_and_report(tmp_path):
    source = tmp_path / "source"
    package = source / "bench_plugin_example"
    package.mkdir(parents=True)
    (source / "pyproject.toml").write_text(textwrap.dedent(PYPROJECT))
    (package / "__init__.py").write_text("")
    (package / "tiny_mlp.py").write_text(MODEL)
    (package / "parity.py").write_text(TASK)
    site = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
                    "--no-index", "--target", str(site), str(source)], check=True, capture_output=True)
    environment = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), str(ROOT)]),
                   "RECURRENT_BENCH_CACHE": str(tmp_path / "cache"), "OMP_NUM_THREADS": "1"}

    def bench(*arguments):
        return subprocess.run([sys.executable, "-m", "bench", *arguments], cwd=tmp_path, env=environment,
                              capture_output=True, text=True, timeout=300)

    listed = bench("list")
    assert listed.returncode == 0, listed.stderr
    assert "tiny_mlp" in listed.stdout and "parity" in listed.stdout and "hrm" in listed.stdout
    assert "plugin 'broken'" in listed.stderr and "failed to load" in listed.stderr   # said once, not fatal

    results = tmp_path / "results"
    run = bench("run", "--model", "tiny_mlp", "--task", "parity", "--preset", "smoke", "--match", "none",
                "--set", "train.steps=60", "--set", "train.lr=1e-2", "--out", str(results), "--quiet")
    assert run.returncode == 0, run.stderr
    (summary_path,) = results.glob("*/summary.json")
    summary = json.loads(summary_path.read_text())
    assert summary["status"] == "complete" and summary["model"] == "tiny_mlp"
    assert summary["exact_accuracy"] > 0.9          # the identity is learnable in 60 steps
    plugin_on_builtin = bench("run", "--model", "tiny_mlp", "--task", "maze", "--preset", "smoke", "--match",
                              "none", "--set", "train.steps=2", "--out", str(results), "--quiet")
    assert plugin_on_builtin.returncode == 0, plugin_on_builtin.stderr

    report = bench("report", "--results", str(results), "--out", str(tmp_path / "reports"))
    assert report.returncode == 0, report.stderr
    assert "tiny_mlp" in (tmp_path / "reports" / "index.md").read_text()

    broken = bench("run", "--model", "tiny_mlp", "--task", "broken", "--preset", "smoke")
    assert broken.returncode == 2 and broken.stderr.startswith("error: task plugin 'broken'")
    assert "Traceback" not in broken.stderr
