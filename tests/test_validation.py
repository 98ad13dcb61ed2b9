"""Fast unit tests of the up-front checks: TrainConfig ranges, model and task numbers, the device
pre-check, the one reader of user-named files, the data cache, file modes, and the report/compare
guards against reporting on nothing."""
from __future__ import annotations

import dataclasses
import os
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from report_fixture import write_fixture  # noqa: E402

from bench.compare import compare_trees  # noqa: E402
from bench.config import (ConfigError, RunConfig, TrainConfig, check_device, check_model_numbers,  # noqa: E402
                          check_task_sizes, parse_value)
from bench.report import check_filters  # noqa: E402
from bench.results import ResultsError  # noqa: E402
from models.deq import DEQConfig  # noqa: E402
from models.transformer import TransformerConfig  # noqa: E402
from tasks import cache  # noqa: E402
from tasks.files import DataError, atomic_write_json, read_text  # noqa: E402
from tasks.maze import MazeConfig  # noqa: E402
from tasks.sudoku import SudokuConfig  # noqa: E402


@pytest.mark.parametrize("changes, message", [
    ({"lr": float("nan")}, "train.lr must be a finite number"),
    ({"beta1": float("inf")}, "train.beta1 must be a finite number"),
    ({"beta2": -3.0}, r"train.beta2 must be in \[0, 1\)"),
    ({"beta1": 1.0}, r"train.beta1 must be in \[0, 1\)"),
    ({"weight_decay": -0.1}, "train.weight_decay must be >= 0"),
    ({"puzzle_emb_weight_decay": -1.0}, "train.puzzle_emb_weight_decay must be >= 0"),
    ({"grad_clip": -1.0}, "train.grad_clip must be >= 0"),
    ({"lr_min_ratio": 2.0}, r"train.lr_min_ratio must be in \[0, 1\]"),
    ({"seed": 2**63}, r"train.seed must be in 0 .. 2\*\*63-1"),
    ({"seed": -1}, "train.seed must be in"),
    ({"batch_size": 2**20 + 1}, "above the limit of 1,048,576"),
    ({"eval_segments": 1025}, "above the limit of 1,024"),
    ({"test_time_points": (1, 5000)}, "train.test_time_points=5000 is above the limit"),
    ({"steps": 10**10}, "train.steps=10000000000 is above the limit"),
])
def test_train_config_rejects_out_of_range_numbers(changes, message):
    with pytest.raises(ConfigError, match=message):
        dataclasses.replace(TrainConfig(), **changes).validate()


def test_train_config_accepts_the_edges():
    TrainConfig(seed=2**63 - 1, beta2=0.0, weight_decay=0.0, lr_min_ratio=0.0, batch_size=2**20,
                eval_segments=1024).validate()


def test_huge_integers_parse_exactly():
    assert parse_value(str(2**64), int, "train.seed") == 2**64
    assert parse_value("1e3", int, "train.steps") == 1000


@pytest.mark.parametrize("config, message", [
    (TransformerConfig(hidden=-32), "model.hidden must be >= 1, got -32"),
    (TransformerConfig(num_heads=0), "model.num_heads must be >= 1"),
    (TransformerConfig(expansion=-1.0), "model.expansion must be > 0"),
    (TransformerConfig(expansion=float("nan")), "model.expansion must be a finite number"),
    (TransformerConfig(puzzle_emb_len=-1), "model.puzzle_emb_len must be >= 0"),
    (TransformerConfig(ffn_multiple=0), "model.ffn_multiple must be >= 1"),
    (DEQConfig(tol=float("inf")), "model.tol must be a finite number"),
])
def test_model_numbers_are_checked_by_name(config, message):
    with pytest.raises(ConfigError, match=message):
        check_model_numbers(config)


def test_model_defaults_and_eval_zero_pass():
    check_model_numbers(TransformerConfig())
    check_model_numbers(DEQConfig(eval_max_iter=0))


def test_task_sizes_have_a_memory_limit():
    check_task_sizes(MazeConfig(train_size=10**7))
    with pytest.raises(ConfigError, match="above the limit of 10,000,000 per split"):
        check_task_sizes(MazeConfig(train_size=10**12))
    with pytest.raises(ConfigError, match="augmented copies"):
        check_task_sizes(SudokuConfig(train_size=1000, augmentations=99_999))


def test_xformers_is_refused_off_cuda():
    run = RunConfig("transformer", "maze", "smoke", TransformerConfig(attention_backend="xformers"), MazeConfig(),
                    TrainConfig(), device="cpu")
    with pytest.raises(ConfigError, match="needs CUDA"):
        check_device(run)
    check_device(dataclasses.replace(run, model=TransformerConfig()))


def test_read_text_names_the_file_and_line(tmp_path):
    good = tmp_path / "good.txt"
    good.write_text("héllo\n")
    assert read_text(good, "data file") == "héllo\n"
    with pytest.raises(DataError, match="data file not found: .*none"):
        read_text(tmp_path / "none", "data file")
    with pytest.raises(DataError, match="is a directory, not a file"):
        read_text(tmp_path, "data file")
    binary = tmp_path / "binary"
    binary.write_bytes(b"ok\nstill ok\n\x00\x01")
    with pytest.raises(DataError, match=r"binary:3: the data file is a binary file"):
        read_text(binary, "data file")
    latin = tmp_path / "latin.txt"
    latin.write_bytes("line one\ncafé\n".encode("latin-1"))
    with pytest.raises(DataError, match=r"latin.txt:2: the data file is not UTF-8 text \(byte 0xe9\)"):
        read_text(latin, "data file")


def test_sudoku_file_with_several_solutions_is_refused(tmp_path):
    from tasks._sudoku_data import load

    path = tmp_path / "open.txt"
    path.write_text("# an empty grid\n" + "." * 81 + "\n")
    with pytest.raises(DataError, match="open.txt:2: puzzle has several solutions"):
        load(str(path))


class _FakeTask:
    registry_name = "fake"
    config = MazeConfig()


def test_cache_names_its_directory_when_it_cannot_write(tmp_path, monkeypatch):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    monkeypatch.setenv("RECURRENT_BENCH_CACHE", str(blocker))
    made = []
    with pytest.raises(DataError, match=r"a-file \(RECURRENT_BENCH_CACHE\) is not writable"):
        cache.cached_arrays(_FakeTask(), "train", lambda: made.append(1) or {"x": np.zeros(2)})
    assert not made   # refused before generating


def test_written_files_respect_the_umask(tmp_path):
    previous = os.umask(0o022)
    try:
        atomic_write_json(tmp_path / "summary.json", {"a": 1})
        os.umask(0o077)
        atomic_write_json(tmp_path / "private.json", {"a": 1})
    finally:
        os.umask(previous)
    assert (tmp_path / "summary.json").stat().st_mode & 0o777 == 0o644
    assert (tmp_path / "private.json").stat().st_mode & 0o777 == 0o600


def test_report_filters_must_name_runs_that_exist(tmp_path):
    results = write_fixture(tmp_path / "results")
    check_filters(results, ["maze"], ["hrm"])
    with pytest.raises(ResultsError, match="--task nope: no runs of that task"):
        check_filters(results, ["nope"])
    with pytest.raises(ResultsError, match="--model nope: no runs of that model"):
        check_filters(results, (), ["nope"])
    with pytest.raises(ResultsError, match="no such results directory"):
        check_filters(tmp_path / "nowhere")
    with pytest.raises(ResultsError, match="not a directory"):
        check_filters(next(results.rglob("summary.json")))


def test_compare_passes_on_the_report_warnings(tmp_path, capsys):
    from bench.cli import main

    reference = write_fixture(tmp_path / "reference")
    candidate = tmp_path / "candidate"
    shutil.copytree(reference, candidate)
    (candidate / "broken").mkdir()
    (candidate / "broken" / "summary.json").write_text('{"status": "comp')
    warnings: list[str] = []
    compare_trees(reference, candidate, warnings=warnings)
    assert any("broken" in w and "unreadable summary" in w for w in warnings)
    assert main(["compare", str(reference), str(candidate)]) == 0
    err = capsys.readouterr().err
    assert any(line.startswith("warning: skipped") and "broken" in line for line in err.splitlines())
