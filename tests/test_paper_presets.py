"""The `paper` presets, value by value, against the reference commands.

HRM (sapientinc/HRM, README and config/cfg_pretrain.yaml, config/arch/hrm_v1.yaml) and TRM
(SamsungSAILMontreal/TinyRecursiveModels, README and config/cfg_pretrain.yaml, config/arch/trm.yaml);
docs/reference.md and docs/presets.md say the same in words. Sudoku-Extreme-1k and Maze-Hard-1k:
epochs 20000 (HRM) / 50000 (TRM), eval_interval 2000 / 5000, lr 1e-4, puzzle_emb_lr 1e-4,
weight_decay 1.0, puzzle_emb_weight_decay 1.0. ARC: the config defaults (epochs 100000,
eval_interval 10000, puzzle_emb_lr 1e-2, weight decays 0.1). TRM's commands use L_cycles 4 on Maze
and ARC, 6 on Sudoku; its headline Sudoku run adds arch.mlp_t=True arch.pos_encodings=none.
"""
from __future__ import annotations

import pytest

from bench.config import ConfigError, resolve

BATCH = 768
COMMON_TRAIN = {"batch_size": BATCH, "lr": 1e-4, "lr_warmup_steps": 2000, "lr_schedule": "constant",
                "lr_min_ratio": 1.0, "beta1": 0.9, "beta2": 0.95, "segments": 16, "act": True,
                "halt_exploration_prob": 0.1, "q_loss_weight": 0.5, "loss": "stablemax", "optimizer": "adam_atan2",
                "grad_clip": 0.0, "sampler": "groups"}
SMALL_DATA = {"weight_decay": 1.0, "puzzle_emb_lr": 1e-4, "puzzle_emb_weight_decay": 1.0}   # Sudoku, Maze
ARC = {"weight_decay": 0.1, "puzzle_emb_lr": 1e-2, "puzzle_emb_weight_decay": 0.1, "sampler_epochs": 10000}


def reference_steps(epochs: int, eval_interval: int, groups: int = 1000) -> int:
    """Steps the reference's loop takes: epochs/eval_interval passes, each dropping its partial batch."""
    return epochs // eval_interval * (eval_interval * groups // BATCH)


HRM_MODEL = {"hidden": 512, "num_heads": 8, "high_layers": 4, "low_layers": 4, "high_cycles": 2, "low_cycles": 2,
             "expansion": 4.0, "pos_encoding": "rope", "puzzle_emb_len": 1, "gradient": "one_step"}
TRM_MODEL = {"hidden": 512, "num_heads": 8, "num_layers": 2, "cycles": 3, "expansion": 4.0, "pos_encoding": "rope",
             "puzzle_emb_len": 16, "mixer": "attention", "gradient": "last_cycle"}
HRM_SMALL = {**COMMON_TRAIN, **SMALL_DATA, "ema": 0.0, "sampler_epochs": 2000, "steps": reference_steps(20000, 2000),
             "eval_every": reference_steps(2000, 2000)}
TRM_SMALL = {**COMMON_TRAIN, **SMALL_DATA, "ema": 0.999, "sampler_epochs": 5000, "steps": reference_steps(50000, 5000),
             "eval_every": reference_steps(5000, 5000)}

# (model, task, preset) -> (model values, train values)
REFERENCE = {
    ("hrm", "sudoku", "paper"): (HRM_MODEL, HRM_SMALL),
    ("hrm", "maze", "paper"): (HRM_MODEL, HRM_SMALL),
    ("hrm", "arc", "paper"): (HRM_MODEL, {**COMMON_TRAIN, **ARC, "ema": 0.0}),
    ("trm", "sudoku", "paper"): ({**TRM_MODEL, "latent_updates": 6}, TRM_SMALL),
    ("trm", "sudoku", "paper-mlp"): ({**TRM_MODEL, "latent_updates": 6, "mixer": "mlp", "pos_encoding": "none"},
                                     TRM_SMALL),
    ("trm", "maze", "paper"): ({**TRM_MODEL, "latent_updates": 4}, TRM_SMALL),
    ("trm", "arc", "paper"): ({**TRM_MODEL, "latent_updates": 4}, {**COMMON_TRAIN, **ARC, "ema": 0.999}),
}


@pytest.mark.parametrize("key", list(REFERENCE), ids=lambda key: "-".join(key))
def test_paper_preset_matches_the_reference_command(key):
    model_values, train_values = REFERENCE[key]
    run = resolve(*key)
    got_model = {name: getattr(run.model, name) for name in model_values}
    got_train = {name: getattr(run.train, name) for name in train_values}
    assert (got_model, got_train) == (model_values, train_values)


def test_the_step_counts_are_the_reference_loops():
    assert reference_steps(20000, 2000) == 26040 and reference_steps(50000, 5000) == 65100
    # ARC: both references train 100000 epochs, so HRM and TRM get the same budget
    hrm, trm = resolve("hrm", "arc", "paper").train, resolve("trm", "arc", "paper").train
    assert (trm.steps, trm.eval_every) == (hrm.steps, hrm.eval_every) == (401172, 401172 // 10)


def test_data_of_the_paper_presets():
    maze = resolve("hrm", "maze", "paper").task
    assert (maze.grid, maze.train_size, maze.test_size, maze.min_path) == (30, 1000, 1000, 110)
    sudoku = resolve("hrm", "sudoku", "paper").task
    assert (sudoku.train_size, sudoku.augmentations) == (1000, 1000)
    assert resolve("trm", "sudoku", "paper-mlp").task == sudoku


def test_every_model_trains_with_the_tasks_reference_recipe():
    """Baselines have no reference command: they take the task's (HRM's) training values, except what
    their own paper preset sets on purpose (unrolled: one segment, its schedule is written out)."""
    from models.registry import get_model_entry

    for task in ("sudoku", "maze"):
        for model in ("transformer", "looped", "unrolled", "deq", "mamba", "dtnet"):
            own = {key.split(".", 1)[1] for key in get_model_entry(model).cls.presets.get("paper", {})}
            expected = {name: value for name, value in HRM_SMALL.items() if name not in own}
            train = resolve(model, task, "paper").train
            assert {name: getattr(train, name) for name in expected} == expected, (model, task)


def test_a_variant_preset_belongs_to_its_model():
    with pytest.raises(ConfigError, match="paper-mlp"):
        resolve("hrm", "sudoku", "paper-mlp")
    with pytest.raises(ConfigError, match="unknown preset"):
        resolve("trm", "sudoku", "paper-attention")
