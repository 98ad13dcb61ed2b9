"""`bench check`: accuracy regression — does every model still learn every task?

Each (model, task) pair trains a tiny, fully deterministic configuration (the task's smoke preset
with a fixed budget, seed 0, one thread) and its accuracy is compared against a floor stored in
`bench/check_floors.json`. Floors are honest: `--update-floors` measures each pair, records the
*untrained* accuracy beside the trained one, and sets a floor only where training clearly beats the
untrained model (floor = trained − margin, and always above untrained). A pair with no such gap has
no floor and is reported as unchecked — never a floor of 0.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from bench.matching import prepare
from bench.results import atomic_write_json
from bench.runner import build
from bench.trainer import Trainer

FLOORS_PATH = Path(__file__).with_name("check_floors.json")
METRICS = ("token_accuracy", "exact_accuracy")
RELATIVE_MARGIN = 0.15  # floors sit 15% (at least 0.03 absolute) below the measured value
MIN_GAP = 0.05          # training must beat the untrained model by this much to be checkable
DEFAULT_STEPS = 120


@dataclass
class CheckResult:
    model: str
    task: str
    trained: dict[str, float]
    untrained: dict[str, float]
    floors: dict[str, float]

    @property
    def failures(self) -> list[str]:
        return [f"{self.model}/{self.task}: {metric} {self.trained[metric]:.4f} < floor {floor:.4f}"
                for metric, floor in self.floors.items() if self.trained[metric] < floor]


def check_overrides(steps: int) -> list[str]:
    return [f"train.steps={steps}", "train.eval_every=0", "train.checkpoint_every=0", f"train.log_every={steps}"]


def measure_pair(model_name: str, task_name: str, steps: int = DEFAULT_STEPS,
                 extra: list[str] | None = None) -> tuple[dict[str, float], dict[str, float]]:
    """(untrained, trained) accuracy on the task's first evaluation split."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # deterministic and comparable across machines with different core counts
    try:
        config = prepare(model_name, task_name, "smoke", [*check_overrides(steps), *(extra or [])], seed=0)
        task, model = build(config)
        train_data = task.build("train")
        test_name = task.eval_splits()[0]
        test_data = task.build(test_name)
        trainer = Trainer(model, task.spec, config.train, "cpu", progress=False)

        def accuracy() -> dict[str, float]:
            result = trainer.evaluate(test_data)
            score = task.score(test_data, result.predictions, confidences=result.confidences)
            return {metric: float(score[metric]) for metric in METRICS}

        untrained = accuracy()
        trainer.fit(train_data, seed=0)
        return untrained, accuracy()
    finally:
        torch.set_num_threads(threads)


def load_floors(path: Path = FLOORS_PATH) -> dict[str, Any]:
    if not path.exists():
        return {"steps": DEFAULT_STEPS, "pairs": {}}
    return json.loads(path.read_text())


def floors_from(trained: dict[str, float], untrained: dict[str, float]) -> dict[str, float]:
    floors = {}
    for metric in METRICS:
        if trained[metric] - untrained[metric] < MIN_GAP:
            continue  # learning is not visible in this budget: no honest floor
        floor = trained[metric] - max(0.03, RELATIVE_MARGIN * trained[metric])
        floor = max(floor, untrained[metric] + MIN_GAP / 2)
        floors[metric] = round(floor, 4)
    return floors


def run_check(models: list[str], tasks: list[str], update: bool = False, path: Path = FLOORS_PATH,
              echo=print) -> list[CheckResult]:
    stored = load_floors(path)
    steps = stored.get("steps", DEFAULT_STEPS)
    results = []
    for task_name in tasks:
        for model_name in models:
            key = f"{model_name}/{task_name}"
            untrained, trained = measure_pair(model_name, task_name, steps)
            if update:
                floors = floors_from(trained, untrained)
                stored["pairs"][key] = {"floors": floors, "measured": trained, "untrained": untrained}
            else:
                floors = stored["pairs"].get(key, {}).get("floors", {})
            result = CheckResult(model_name, task_name, trained, untrained, floors)
            status = "unchecked (no floor)" if not floors else ("FAIL" if result.failures else "ok")
            echo(f"{key:<28} token {trained['token_accuracy']:.3f} (untrained {untrained['token_accuracy']:.3f})  "
                 f"exact {trained['exact_accuracy']:.3f}  floors {floors or '-'}  {status}")
            results.append(result)
    if update:
        stored["steps"] = steps
        atomic_write_json(path, stored)
    return results
