"""Accuracy regression (`bench check`) in CI: tiny deterministic runs must stay above stored floors.

CI runs every model on the two cheapest task families (maze, addition); `python -m bench check`
runs every registered pair. The floors themselves are measured (`bench check --update-floors`).
"""
import pytest

from bench.check import MIN_GAP, load_floors, measure_pair
from models.registry import model_names
from tasks.registry import task_names

CI_TASKS = ("maze", "addition")
STORED = load_floors()


def test_every_registered_pair_has_measured_floors():
    for task in task_names():
        for model in model_names():
            entry = STORED["pairs"].get(f"{model}/{task}")
            assert entry is not None, f"{model}/{task}: run python -m bench check --update-floors"
            for metric, floor in entry["floors"].items():
                # honest: above the untrained model, below what training reached, never 0
                assert entry["untrained"][metric] + MIN_GAP / 2 <= floor < entry["measured"][metric]


@pytest.mark.parametrize("model", model_names())
@pytest.mark.parametrize("task", CI_TASKS)
def test_learning_stays_above_its_floor(model, task):
    floors = STORED["pairs"][f"{model}/{task}"]["floors"]
    assert floors, f"{model}/{task} has no floor: learning is not visible in the check budget"
    _, trained = measure_pair(model, task, STORED["steps"])
    for metric, floor in floors.items():
        assert trained[metric] >= floor, f"{model}/{task}: {metric} {trained[metric]:.4f} < floor {floor:.4f}"
