"""`bench compare`: does a rerun reproduce a study? (fixture results trees, no training)."""
import json
import shutil
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from report_fixture import write_fixture  # noqa: E402

from bench.cli import main  # noqa: E402
from bench.compare import compare_trees, prediction_half_width  # noqa: E402


def _set_accuracy(root: Path, run_id: str, accuracy: float) -> None:
    path = root / run_id / "summary.json"
    summary = json.loads(path.read_text())
    summary["exact_accuracy"] = accuracy
    path.write_text(json.dumps(summary))


@pytest.fixture()
def trees(tmp_path):
    reference = write_fixture(tmp_path / "reference")
    candidate = tmp_path / "candidate"
    shutil.copytree(reference, candidate)
    return reference, candidate


def by_label(comparisons):
    return {c.label.split(" ")[0]: c for c in comparisons}


def test_prediction_interval_for_one_new_run():
    # s = 0.1, t(0.975, 2) = 4.3027, sqrt(1 + 1/3) = 1.1547
    assert prediction_half_width([0.3, 0.4, 0.5]) == pytest.approx(4.3027 * 0.1 * 1.1547, rel=1e-4)
    assert prediction_half_width([0.3]) is None


def test_an_identical_rerun_is_consistent_and_every_seed_identical(trees):
    comparisons, only_reference, only_candidate = compare_trees(*trees)
    found = by_label(comparisons)
    assert set(found) == {"transformer", "hrm", "looped"}
    assert not only_reference and not only_candidate
    for comparison in comparisons:
        assert comparison.difference == 0.0
        assert comparison.same_seed_identical == comparison.same_seed_total >= 1
    assert found["transformer"].method == "welch" and found["transformer"].verdict == "consistent"
    assert found["looped"].method == "none" and found["looped"].verdict == "identical"


def test_welch_flags_a_shifted_rerun_and_absorbs_float_rounding(trees):
    reference, candidate = trees
    for seed, accuracy in enumerate((0.10, 0.12, 0.11)):       # HRM was 0.71 / 0.74 / 0.69
        _set_accuracy(candidate, f"maze-hrm-cpu-s{seed}-fixture", accuracy)
    _set_accuracy(candidate, "maze-transformer-cpu-s1-fixture", 0.33)  # was 0.35: rounding-sized
    found = by_label(compare_trees(reference, candidate)[0])
    assert found["hrm"].verdict == "differs" and found["hrm"].difference == pytest.approx(0.11 - 2.14 / 3, abs=1e-9)
    assert found["transformer"].verdict == "consistent"
    assert (found["transformer"].same_seed_identical, found["transformer"].same_seed_total) == (2, 3)


def test_a_single_seed_rerun_uses_the_prediction_interval(trees):
    reference, candidate = trees
    for seed in (1, 2):
        shutil.rmtree(candidate / f"maze-hrm-cpu-s{seed}-fixture")
        shutil.rmtree(candidate / f"maze-transformer-cpu-s{seed}-fixture")
    _set_accuracy(candidate, "maze-hrm-cpu-s0-fixture", 0.72)
    _set_accuracy(candidate, "maze-transformer-cpu-s0-fixture", 0.90)
    found = by_label(compare_trees(reference, candidate)[0])
    assert found["hrm"].method == "prediction" and found["hrm"].verdict == "consistent"
    assert found["transformer"].verdict == "differs"


def test_cli_prints_a_table_and_errors_are_one_line(trees, tmp_path, capsys):
    reference, candidate = trees
    shutil.rmtree(candidate / "maze-looped-cpu-s0-fixture")
    assert main(["compare", str(reference), str(candidate)]) == 0
    out = capsys.readouterr().out
    assert "2 of 2 variants with an interval are consistent" in out
    assert "only in the reference: maze: looped" in out
    assert main(["compare", str(reference), str(tmp_path / "missing")]) == 2
    error = capsys.readouterr().err
    assert error.startswith("error: ") and "no such results directory" in error and "Traceback" not in error
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["compare", str(reference), str(empty)]) == 2
    assert "no variant has finished runs in both" in capsys.readouterr().err
