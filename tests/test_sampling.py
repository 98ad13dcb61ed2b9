"""The training samplers: the suite's uniform shuffle and the reference's group-wise sampler."""
from __future__ import annotations

from collections import Counter

import pytest
import torch

from bench.config import ConfigError, resolve
from bench.sampling import GroupSampler, Sampler, make_sampler
from tasks.protocol import TaskData


def drawn(sampler, batches: int, size: int) -> list[list[int]]:
    return [sampler.next(size).tolist() for _ in range(batches)]


def test_each_epoch_takes_one_puzzle_of_every_group():
    # 4 groups (an original and its augmented copies: one example per puzzle), batch = one epoch
    groups = torch.tensor([0, 1, 2, 3, 0, 0, 1, 1, 2, 2, 3, 3])
    sampler = GroupSampler(12, seed=0, groups=groups, passes=1)
    for batch in drawn(sampler, 50, 4):
        assert sorted(groups[batch].tolist()) == [0, 1, 2, 3]
    # the augmentation is drawn at random: over many epochs every copy of a group turns up
    seen = {i for batch in drawn(sampler, 50, 4) for i in batch}
    assert seen == set(range(12))


def test_a_puzzles_examples_come_together_and_are_cut_at_the_batch_end():
    # 3 puzzles of 3 examples, each its own group; batch 4: a puzzle, then 1 example of the next
    puzzles = torch.tensor([0, 0, 0, 1, 1, 1, 2, 2, 2])
    sampler = GroupSampler(9, seed=1, groups=puzzles, puzzles=puzzles, passes=1)
    batch = sampler.next(4)
    owners = puzzles[batch].tolist()
    assert owners[0] == owners[1] == owners[2] != owners[3]
    assert sampler.position == 2


def test_the_last_partial_batch_of_a_pass_is_dropped():
    # 5 single-example groups, passes of 2 epochs = 10 examples, batch 3: 3 batches per pass, 1 dropped
    sampler = GroupSampler(5, seed=2, passes=2)
    for _ in range(20):
        counts = Counter(i for batch in drawn(sampler, 3, 3) for i in batch)
        assert sum(counts.values()) == 9 and max(counts.values()) <= 2   # one pass, no example thrice
        assert sampler.position == 9                                      # the 10th is never used


def test_the_uniform_sampler_does_not_drop_or_group():
    # the contrast that makes the tests above able to fail: uniform batches span epochs
    sampler = Sampler(5, seed=2)
    counts = Counter(i for batch in drawn(sampler, 5, 3) for i in batch)
    assert counts == {i: 3 for i in range(5)}


def test_state_restored_continues_the_same_stream():
    groups = torch.arange(30) // 3
    first = GroupSampler(30, seed=3, groups=groups, passes=3)
    drawn(first, 7, 4)
    second = GroupSampler(30, seed=99, groups=groups, passes=3)
    second.generator.set_state(first.generator.get_state())
    second.order, second.position = first.order.clone(), first.position
    assert drawn(first, 20, 4) == drawn(second, 20, 4)


def test_bad_groupings_and_too_small_passes_are_errors():
    with pytest.raises(ValueError, match="one group"):
        GroupSampler(4, 0, groups=torch.tensor([0, 1, 0, 1]), puzzles=torch.tensor([0, 0, 1, 1]))
    with pytest.raises(ConfigError, match="sampler_epochs"):
        GroupSampler(5, 0, passes=1).next(6)
    with pytest.raises(ConfigError, match="train.sampler"):
        resolve("hrm", "maze", "smoke", ["train.sampler=epochs"])


def test_make_sampler_follows_the_config_and_the_task_groups():
    data = TaskData(torch.zeros(6, 2, dtype=torch.long), torch.zeros(6, 2, dtype=torch.long),
                    torch.zeros(6, dtype=torch.long), {"groups": torch.tensor([0, 1, 2, 0, 1, 2])})
    uniform = resolve("hrm", "maze", "smoke").train
    assert isinstance(make_sampler(uniform, data, 0), Sampler)
    groups = resolve("hrm", "maze", "smoke", ["train.sampler=groups"]).train
    sampler = make_sampler(groups, data, 0)
    assert isinstance(sampler, GroupSampler) and sampler.num_groups == 3


def test_sudoku_and_arc_training_splits_name_their_groups():
    import dataclasses

    from tasks.registry import create_task

    config = resolve("hrm", "sudoku", "smoke").task
    data = create_task("sudoku", **dataclasses.asdict(config)).build("train")
    originals, copies = data.meta["originals"], config.augmentations
    assert data.meta["groups"].tolist() == list(range(originals)) + [i for i in range(originals) for _ in range(copies)]
    task = create_task("arc", **dataclasses.asdict(resolve("hrm", "arc", "smoke").task))
    train = task.build("train")
    variant_task = task.plan["variant_task"]
    assert train.meta["groups"].tolist() == [int(variant_task[v - 1]) for v in train.meta["puzzles"].tolist()]
    assert len(set(train.meta["groups"].tolist())) > 1
