"""The CPU-scale presets: `cpu` (the study's, learning finished; docs/presets.md) and `quick`, the
cpu preset at a shorter budget that `bench run` uses by default."""
from __future__ import annotations

import dataclasses

from click.testing import CliRunner

from bench.cli import cli
from bench.config import resolve
from tasks.registry import preset_lineage


def test_quick_is_the_cpu_preset_with_the_tasks_quick_entry_on_top():
    assert preset_lineage("quick") == ["cpu", "quick"] and preset_lineage("cpu") == ["cpu"]
    for model in ("hrm", "trm", "transformer", "deq"):
        cpu, quick = resolve(model, "maze", "cpu"), resolve(model, "maze", "quick")
        assert (quick.train.steps, quick.task.test_size) == (300, 256)
        assert (cpu.train.steps, cpu.task.test_size, cpu.task.train_size) == (2400, 1000, 10000)
        # everything else, model presets included (HRM's cpu layers, TRM's cycles), is the cpu preset's
        assert quick.model == cpu.model
        assert dataclasses.replace(quick.train, steps=2400) == cpu.train
        assert dataclasses.replace(quick.task, test_size=1000) == cpu.task
    # a task without a quick entry runs its cpu preset unchanged
    assert resolve("hrm", "sudoku", "quick").train == resolve("hrm", "sudoku", "cpu").train


def test_the_cpu_presets_follow_the_recipe():
    """Warm-up then cosine decay, ACT off (an ablation), ≥ 1000 test examples per split or length."""
    for task in ("maze", "addition", "multiplication", "prefix_sums"):
        config = resolve("hrm", task, "cpu")
        assert config.train.lr_schedule == "cosine" and config.train.lr_min_ratio < 1, task
        assert config.train.lr_warmup_steps > 0 and not config.train.act, task
        assert config.task.test_size >= 1000, task


def test_bench_run_defaults_to_quick_and_sweep_to_cpu():
    run_help = CliRunner().invoke(cli, ["run", "--help"]).output
    sweep_help = CliRunner().invoke(cli, ["sweep", "--help"]).output
    assert "[default: quick]" in " ".join(run_help.split())
    assert "[default: cpu]" in " ".join(sweep_help.split())
