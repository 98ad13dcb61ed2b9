"""ARC task: augmentation group, canvas encoding and crop, split guards, loader errors, voted scorer."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from bench.matching import prepare
from tasks._arc_grids import EOS, PAD, augment, canonical_pair, crop, dihedral, encode_grid, invert_augmentation
from tasks._arc_voting import Candidate, vote
from tasks.arc import ArcConfig, ArcTask
from tasks.protocol import IGNORE_LABEL, DataError
from tasks.registry import create_task


@pytest.fixture(autouse=True, scope="module")
def private_cache(tmp_path_factory):
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("RECURRENT_BENCH_CACHE", str(tmp_path_factory.mktemp("cache")))
        yield


def write_tasks(directory, tasks: dict) -> str:
    directory.mkdir(parents=True, exist_ok=True)
    for name, task in tasks.items():
        (directory / f"{name}.json").write_text(json.dumps(task))
    return str(directory)


def pair(grid_in, grid_out) -> dict:
    return {"input": grid_in, "output": grid_out}


# Three hand-made evaluation tasks: "one" and "three" have one test input, "two" has two.
EVAL_TASKS = {
    "one": {"train": [pair([[1, 2]], [[2, 1]]), pair([[3, 0]], [[0, 3]])], "test": [pair([[4, 5]], [[5, 4]])]},
    "two": {"train": [pair([[1]], [[1, 1], [1, 1]])],
            "test": [pair([[2]], [[2, 2], [2, 2]]), pair([[3, 0], [0, 3]], [[3, 3], [0, 0]])]},
    "three": {"train": [pair([[0, 1, 2]], [[2], [1], [0]])], "test": [pair([[5, 6, 7]], [[7], [6], [5]])]},
}


def small_task(tmp_path, **overrides) -> ArcTask:
    values = dict(path=write_tasks(tmp_path / "eval", EVAL_TASKS), train_sets="", canvas=6, augmentations=4,
                  pass_ks=(1, 2, 3))
    values.update(overrides)
    return ArcTask(ArcConfig(**values))


def ground_truth(data) -> torch.Tensor:
    return torch.where(data.labels == IGNORE_LABEL, PAD, data.labels.long())


def slots_of(task: ArcTask, data, name: str) -> list[int]:
    """The test-input slots of the evaluation task called `name`, in order."""
    index = list(task.plan["task_ids"]).index(name)
    return np.flatnonzero(data.meta["slot_task"] == index).tolist()


def predict(task: ArcTask, data, wrong: dict[int, np.ndarray]) -> torch.Tensor:
    """Ground truth, except test inputs (slots) in `wrong`: every variant predicts that grid, augmented."""
    predictions = ground_truth(data)
    for row, (slot, variant) in enumerate(zip(data.meta["slot"], data.meta["variant"])):
        if int(slot) in wrong:
            grid = augment(wrong[int(slot)], task.plan["transform"][variant], task.plan["colour_map"][variant])
            predictions[row] = torch.from_numpy(encode_grid(grid, task.config.canvas).astype(np.int64))
    return predictions


# --------------------------------------------------------------------------------------------
def test_every_dihedral_transform_and_colour_permutation_is_inverted_exactly():
    rng = np.random.default_rng(0)
    for rows, cols in [(1, 1), (1, 5), (3, 7), (6, 6), (30, 29)]:
        grid = rng.integers(0, 10, size=(rows, cols)).astype(np.uint8)
        images = set()
        for transform in range(8):
            for _ in range(5):
                colour_map = np.concatenate([[0], rng.permutation(np.arange(1, 10))]).astype(np.uint8)
                augmented = augment(grid, transform, colour_map)
                assert np.array_equal(invert_augmentation(augmented, transform, colour_map), grid)
                assert np.array_equal(augmented == 0, dihedral(grid, transform) == 0)  # black stays black
            images.add(dihedral(grid, transform).tobytes() + bytes(dihedral(grid, transform).shape))
        if rows == 3:  # a generic grid has 8 distinct images: the transforms are the whole dihedral group
            assert len(images) == 8


def test_canonical_pair_is_invariant_under_augmentation():
    rng = np.random.default_rng(1)
    grid_in, grid_out = rng.integers(0, 10, (4, 3)).astype(np.uint8), rng.integers(0, 10, (2, 5)).astype(np.uint8)
    key = canonical_pair(grid_in, grid_out)
    for transform in range(8):
        colour_map = np.concatenate([[0], rng.permutation(np.arange(1, 10))]).astype(np.uint8)
        assert canonical_pair(augment(grid_in, transform, colour_map), augment(grid_out, transform, colour_map)) == key
    assert canonical_pair(grid_in, grid_out[::-1]) != key


def test_encoding_layout_matches_the_reference():
    grid = np.array([[0, 9, 3], [4, 5, 6]], dtype=np.uint8)
    tokens = encode_grid(grid, 5, top=1, left=1).reshape(5, 5)
    expected = np.array([[0, 0, 0, 0, 0],
                         [0, 2, 11, 5, 1],
                         [0, 6, 7, 8, 1],
                         [0, 1, 1, 1, 0],   # EOS row below the grid, not at the corner
                         [0, 0, 0, 0, 0]])
    assert np.array_equal(tokens, expected)
    full = encode_grid(np.ones((5, 5), dtype=np.uint8), 5).reshape(5, 5)
    assert (full == 3).all()  # a grid filling the canvas has no EOS


def test_crop_recovers_grids_of_every_size_1_to_30():
    rng = np.random.default_rng(2)
    sizes = [(rows, cols) for rows in range(1, 31) for cols in range(1, 31)]
    grids = [rng.integers(0, 10, size).astype(np.uint8) for size in sizes]
    cropped = crop(np.stack([encode_grid(g, 30) for g in grids]), 30)
    assert all(np.array_equal(a, b) for a, b in zip(cropped, grids))
    # a prediction with no colour at the corner is an empty answer
    empty = crop(np.zeros((2, 900), dtype=np.int64), 30)
    assert [g.shape for g in empty] == [(0, 0), (0, 0)]


def test_voting_ranks_by_votes_then_mean_confidence_then_first_seen():
    a, b, c = (np.full((1, 1), v, dtype=np.uint8) for v in (1, 2, 3))
    grids = [a, b, b, a, c, np.zeros((0, 0), dtype=np.uint8)]
    slots = np.zeros(len(grids), dtype=np.int64)
    ranked = vote(grids, slots, np.array([0.9, 0.2, 0.2, 0.1, 0.99, 1.0]), 1)[0]
    # a and b tie on 2 votes; a's mean confidence 0.5 beats b's 0.2; the empty grid casts no vote
    assert [int(x.grid[0, 0]) for x in ranked] == [1, 2, 3]
    assert [x.votes for x in ranked] == [2, 2, 1]
    tied = vote([b, a], np.zeros(2, dtype=np.int64), np.array([0.5, 0.5]), 1)[0]
    assert [int(x.grid[0, 0]) for x in tied] == [2, 1]  # full tie: first seen wins
    assert Candidate(a, votes=2, confidence_sum=1.0).mean_confidence == 0.5


def test_scorer_ground_truth_empty_and_a_hand_made_mix(tmp_path):
    task = small_task(tmp_path)
    data = task.build("test")
    assert task.score(data, ground_truth(data))["token_accuracy"] == 1.0
    perfect = task.score(data, ground_truth(data))
    for key in ("pass@1", "pass@2", "pass@3", "per_test_input_pass@2", "fractional_pass@2", "exact_accuracy"):
        assert perfect[key] == 1.0, key
    empty = task.score(data, torch.zeros_like(data.labels, dtype=torch.long))
    for key in ("pass@1", "pass@2", "per_test_input_pass@2", "fractional_pass@2", "exact_accuracy"):
        assert empty[key] == 0.0, key
    # Task "two" gets its second test input wrong (so the task is wrong), "three" is wrong, "one" right.
    wrong = {slots_of(task, data, "two")[1]: np.array([[1, 1], [1, 1]], dtype=np.uint8),
             slots_of(task, data, "three")[0]: np.array([[7, 6, 5]], dtype=np.uint8)}
    mix = task.score(data, predict(task, data, wrong))
    assert mix["tasks"] == 3 and mix["test_inputs"] == 4
    assert mix["pass@2"] == pytest.approx(1 / 3) == mix["exact_accuracy"]
    assert mix["per_test_input_pass@2"] == pytest.approx(2 / 4)
    assert mix["fractional_pass@2"] == pytest.approx((1 + 0.5 + 0) / 3)
    right = dict(zip(task.plan["task_ids"], mix["per_task_pass@2"]))
    assert right == {"one": True, "two": False, "three": False}


def test_votes_across_variants_decide_pass_at_1_and_confidence_breaks_ties(tmp_path):
    task = small_task(tmp_path)
    data = task.build("test")
    slot0 = np.flatnonzero(data.meta["slot"] == slots_of(task, data, "one")[0])
    variants = len(slot0)
    assert variants == 5  # original + 4 augmentations
    wrong_grid = np.array([[4, 4]], dtype=np.uint8)
    predictions = ground_truth(data)
    # 3 of 5 variants say the wrong grid: right answer is second → pass@1 fails, pass@2 holds
    for row in slot0[:3]:
        variant = data.meta["variant"][row]
        grid = augment(wrong_grid, task.plan["transform"][variant], task.plan["colour_map"][variant])
        predictions[row] = torch.from_numpy(encode_grid(grid, task.config.canvas).astype(np.int64))
    score = task.score(data, predictions)
    assert score["per_test_input_pass@1"] == pytest.approx(3 / 4)
    assert score["per_test_input_pass@2"] == 1.0
    # 2 against 2 (one variant predicts nothing): the more confident pair wins pass@1
    predictions[slot0[2]] = 0
    confidences = torch.full((len(data),), 0.5)
    confidences[slot0[3:]] = 0.9
    assert task.score(data, predictions, confidences=confidences)["per_test_input_pass@1"] == 1.0
    confidences[slot0[3:]] = 0.1
    assert task.score(data, predictions, confidences=confidences)["per_test_input_pass@1"] == pytest.approx(3 / 4)


def test_submission_has_two_attempts_per_test_input(tmp_path):
    task = small_task(tmp_path)
    data = task.build("test")
    files = task.write_artifacts(tmp_path, "test", data, ground_truth(data), torch.full((len(data),), 0.5))
    submission = json.loads((tmp_path / files[0]).read_text())
    assert files == ["submission.json"]
    assert sorted(submission) == ["one", "three", "two"]
    assert [len(submission[t]) for t in ("one", "two", "three")] == [1, 2, 1]
    assert submission["two"][1]["attempt_1"] == EVAL_TASKS["two"]["test"][1]["output"]
    assert set(submission["one"][0]) == {"attempt_1", "attempt_2"}
    blank = task.submission(data, torch.zeros_like(data.labels, dtype=torch.long))
    assert blank["one"][0] == {"attempt_1": [[0]], "attempt_2": [[0]]}


def test_test_examples_use_their_variant_puzzle_id_and_split_options(tmp_path):
    task = small_task(tmp_path)
    train, test = task.build("train"), task.build("test")
    assert task.spec.num_puzzle_ids == 1 + len(task.plan["variant_task"])
    assert (test.puzzle_ids == torch.from_numpy(test.meta["variant"]).long() + 1).all()
    # reference split: each test puzzle id was trained on (its variant's demonstrations)
    assert set(test.puzzle_ids.tolist()) <= set(train.puzzle_ids.tolist())
    assert len(test) == 4 * 5  # every variant of every test input
    strict = small_task(tmp_path, split="strict",
                        train_sets=write_tasks(tmp_path / "extra", {"other": EVAL_TASKS["one"] | {"test": [pair([[1]], [[1]])]}}))
    assert not set(strict.build("test").puzzle_ids.tolist()) & set(strict.build("train").puzzle_ids.tolist())


def test_variants_are_deduplicated_and_seeded(tmp_path, monkeypatch):
    task = {"train": [pair([[1]], [[1]])], "test": [pair([[1]], [[1]])]}
    directory = write_tasks(tmp_path / "mono", {"mono": task})
    # one colour on a 1×1 grid: only 9 distinct puzzles exist (the colour), whatever the transform
    plan = ArcTask(ArcConfig(path=directory, train_sets="", canvas=4, augmentations=50)).plan
    assert len(plan["variant_task"]) == 9
    config = ArcConfig(path=write_tasks(tmp_path / "e", EVAL_TASKS), train_sets="", canvas=6, seed=3)
    first = ArcTask(config)
    monkeypatch.setenv("RECURRENT_BENCH_CACHE", str(tmp_path / "fresh-cache"))  # rebuilt, not read back
    again = ArcTask(config)
    for split in ("train", "test"):
        a, b = first.build(split), again.build(split)
        assert torch.equal(a.inputs, b.inputs) and torch.equal(a.labels, b.labels)
    assert all(np.array_equal(first.plan[k], again.plan[k]) for k in first.plan)
    other_seed = ArcTask(ArcConfig(path=config.path, train_sets="", canvas=6, seed=4))
    assert not np.array_equal(other_seed.plan["colour_map"], first.plan["colour_map"])


def test_leakage_guard_drops_training_pairs_equal_to_a_test_pair_up_to_augmentation(tmp_path):
    test_pair = EVAL_TASKS["one"]["test"][0]  # [[4, 5]] -> [[5, 4]]
    leaked = pair([[7], [2]], [[2], [7]])     # the same pair rotated and recoloured
    extra = {"other": {"train": [leaked, pair([[1, 1]], [[1, 1]])], "test": [pair([[3]], [[3]])]}}
    task = small_task(tmp_path, train_sets=write_tasks(tmp_path / "extra", extra), translate=False)
    assert canonical_pair(np.array(leaked["input"]), np.array(leaked["output"])) == \
        canonical_pair(np.array(test_pair["input"]), np.array(test_pair["output"]))
    train = task.build("train")
    assert int(train.meta["leaked_pairs_dropped"]) == 1
    test_keys = {canonical_pair(*p) for puzzle in task.puzzles[0] for p in puzzle.tests}
    assert not training_source_pairs(task, train) & test_keys


def training_source_pairs(task: ArcTask, train) -> set[bytes]:
    """Canonical forms of the training rows that come from training-source tasks (decoded from tokens)."""
    num_eval = int(task.plan["num_eval_tasks"])
    canvas = task.config.canvas
    keys = set()
    for inputs, labels, puzzle in zip(train.inputs.numpy(), train.labels.numpy(), train.puzzle_ids.numpy()):
        if task.plan["variant_task"][puzzle - 1] < num_eval:
            continue
        grids = []
        for tokens in (inputs, labels):
            cells = tokens.reshape(canvas, canvas)
            rows, cols = np.nonzero(cells >= 2)
            grids.append((cells[rows.min():rows.max() + 1, cols.min():cols.max() + 1] - 2).astype(np.uint8))
        keys.add(canonical_pair(*grids))
    return keys


def test_arc1_build_never_trains_on_an_evaluation_test_pair():
    task = create_task("arc", **vars(prepare("transformer", "arc", "smoke", ["task.train_tasks=60", "task.eval_tasks=20"]).task))
    train, test = task.build("train"), task.build("test")
    evaluation, _ = task.puzzles
    test_keys = {canonical_pair(*p) for puzzle in evaluation for p in puzzle.tests}
    assert not training_source_pairs(task, train) & test_keys
    # translation: training-source pairs sit at random offsets, input and output at the same one
    corners = []
    for inputs, labels in zip(train.inputs.numpy(), train.labels.numpy()):
        offsets = [tuple(np.argwhere(t.reshape(10, 10) >= 2).min(0)) for t in (inputs, labels)]
        assert offsets[0] == offsets[1]
        corners.append(offsets[0] == (0, 0))
    assert 0 < np.mean(corners) < 1
    # labels supervise the grid and its EOS markers, never PAD
    assert (train.labels != PAD).all() and (train.labels[train.labels != IGNORE_LABEL] >= EOS).all()
    assert task.stats(test)["test_inputs"] == len(test.meta["answer_shapes"])


def test_arc2_training_is_refused_when_evaluating_arc1():
    with pytest.raises(DataError, match="376"):
        ArcTask(ArcConfig(train_sets="arc1-training,arc2-training", canvas=6, augmentations=0))


def test_an_evaluation_task_inside_a_training_source_is_refused(tmp_path):
    train_sets = write_tasks(tmp_path / "train", {"two": EVAL_TASKS["two"]})
    with pytest.raises(DataError, match="two"):   # found when the data is read: constructing a task is cheap
        small_task(tmp_path, train_sets=train_sets).spec


@pytest.mark.parametrize("content, message", [
    ("{not json", "malformed JSON"),
    (json.dumps({"train": [pair([[1]], [[1]])]}), "'train' and 'test'"),
    (json.dumps({"train": [pair([[1, 2], [3]], [[1]])], "test": [pair([[1]], [[1]])]}), "rectangular|2-D"),
    (json.dumps({"train": [pair([[10]], [[1]])], "test": [pair([[1]], [[1]])]}), "0..9"),
    (json.dumps({"train": [{"input": [[1]]}], "test": [pair([[1]], [[1]])]}), "'output'"),
    (json.dumps({"train": [pair([[1] * 31], [[1]])], "test": [pair([[1]], [[1]])]}), "larger than 30"),
])
def test_loader_errors_name_the_file(tmp_path, content, message):
    directory = tmp_path / "bad"
    directory.mkdir()
    (directory / "broken.json").write_text(content)
    with pytest.raises(DataError, match=message) as error:
        ArcTask(ArcConfig(path=str(directory), train_sets="")).spec
    assert "broken.json" in str(error.value)


def test_missing_sources_are_clear_errors(tmp_path):
    with pytest.raises(DataError, match="directory not found"):
        ArcTask(ArcConfig(path=str(tmp_path / "nowhere"))).spec
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no \\*.json"):
        ArcTask(ArcConfig(path=str(tmp_path / "empty"))).spec
    with pytest.raises(DataError, match="unknown ARC source"):
        ArcTask(ArcConfig(train_sets="arc3-training"))
    with pytest.raises(ValueError, match="task.split"):
        ArcTask(ArcConfig(split="loose"))


@pytest.mark.slow
def test_presets_resolve_and_paper_follows_hrm():
    for name in ("arc", "arc2"):
        for preset in ("smoke", "cpu", "paper"):
            config = prepare("transformer", name, preset)
            assert config.train.puzzle_emb_lr == 1e-2
        paper = prepare("transformer", name, "paper")
        assert (paper.task.augmentations, paper.task.canvas, paper.task.translate) == (1000, 30, True)
        assert (paper.train.lr, paper.train.weight_decay, paper.train.batch_size, paper.train.segments) == (1e-4, 0.1, 768, 16)
    assert prepare("transformer", "arc2", "paper").task.eval_set == "arc2-evaluation"


@pytest.mark.parametrize("name", ["arc", "arc2"])
def test_smoke_run_end_to_end_writes_a_submission(tmp_path, name):
    from bench.runner import execute

    summary = execute(prepare("transformer", name, "smoke"), tmp_path, progress=False)
    assert summary["status"] == "complete"
    metrics = summary["metrics"]["test"]
    assert metrics["exact_accuracy"] == metrics["pass@2"]
    assert summary["puzzle_emb_params"] > 0
    run_dir = tmp_path / summary["run_id"]
    assert metrics["artifacts"] == ["submission.json"]
    assert json.loads((run_dir / "submission.json").read_text())
