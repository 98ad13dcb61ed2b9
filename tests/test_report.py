"""`bench report` on a fixture results/ tree: corrupt, partial, running and diverged runs included."""
import json
import re
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from report_fixture import write_fixture  # noqa: E402

from bench.cli import main  # noqa: E402
from bench.report import write_report  # noqa: E402

FIGURES = ("accuracy_vs_params", "accuracy_vs_flops", "test_time_compute", "fixed_point", "extrapolation",
           "training", "act")


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    root = tmp_path_factory.mktemp("report")
    results = write_fixture(root / "results")
    path, warnings = write_report(results, root / "reports")
    return root, path, warnings


def test_bad_files_are_skipped_with_warnings_naming_them(built):
    root, _, warnings = built
    text = "\n".join(warnings)
    for name in ("corrupt-run", "partial-run", "running-run"):
        assert f"{root / 'results' / name / 'summary.json'}" in text
    assert len(warnings) == 3
    assert "figure could not be drawn" not in text


def test_markdown_main_table_has_intervals_and_single_seed_labels(built):
    _, path, _ = built
    text = path.read_text()
    # hrm seeds 0.71, 0.74, 0.69: mean 71.33, sd 2.517, t(2)=4.3027 → ± 6.25
    assert re.search(r"\| maze\s+\| hrm\s+\| 3 \(\+1 diverged\)\s+\| 71\.3 ± 6\.3 \(n=3\)", text)
    assert "52.0 (1 seed)" in text           # the looped transformer has one seed
    assert "hrm on maze: 1 of 4 seeds diverged (steps 120)" in text
    assert "diverged at step 120" in text    # the per-run table
    assert "**hrm** beats transformer on maze (exact accuracy) by 40.0 ± " in text
    assert "includes zero" in text            # weak evidence is said to be weak
    assert "single-seed evidence" in text
    for name in FIGURES:
        assert f"](figures/{name}.png)" in text


def test_figures_are_written_and_the_html_embeds_them(built):
    root, _, _ = built
    for name in FIGURES:
        assert (root / "reports" / "figures" / f"{name}.png").stat().st_size > 5000
        svg = (root / "reports" / "figures" / f"{name}.svg").read_text()
        assert svg.lstrip().startswith("<?xml") and "<svg" in svg
    page = (root / "reports" / "index.html").read_text()
    assert page.count('src="data:image/png;base64,') == len(FIGURES)
    assert 'src="figures/' not in page       # self-contained
    assert "<table" in page and "71.3 ± 6.3 (n=3)" in page
    assert "<strong>hrm</strong> beats transformer" in page


def test_filters_and_cli(tmp_path, capsys):
    results = write_fixture(tmp_path / "results")
    code = main(["report", "--results", str(results), "--out", str(tmp_path / "out"), "--model", "looped"])
    assert code == 0
    captured = capsys.readouterr()
    assert "warning: skipped" in captured.err and "corrupt-run" in captured.err
    text = (tmp_path / "out" / "index.md").read_text()
    assert "looped" in text and "| hrm" not in text and "| transformer" not in text


def test_unwritable_out_is_one_line_error(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("")
    assert main(["report", "--results", str(tmp_path), "--out", str(blocker / "reports")]) == 2
    error = capsys.readouterr().err
    assert error.startswith("error: output directory") and "Traceback" not in error


def test_odd_diagnostics_and_an_empty_tree_never_crash(tmp_path):
    results = write_fixture(tmp_path / "results")
    path = next(results.glob("maze-looped-*/summary.json"))
    summary = json.loads(path.read_text())
    summary["diagnostics"] = {"test_time_compute": {"model.eval_loops": {"points": "garbage"}},
                              "fixed_point": {"x": {"residuals": {"z": ["inf", None, 0.1]}}}, "act": [1, 2]}
    summary["train"]["curve"] = [{"step": "a"}, 3]
    path.write_text(json.dumps(summary))
    index, warnings = write_report(results, tmp_path / "out", models=["looped"])
    assert "52.0 (1 seed)" in index.read_text()
    assert any("ignored malformed" in w and "diagnostics.test_time_compute.model.eval_loops" in w for w in warnings)
    assert not any("could not" in w for w in warnings)
    empty, _ = write_report(tmp_path / "nothing", tmp_path / "empty")
    assert "No finished runs yet" in empty.read_text()


@pytest.mark.slow
def test_the_five_questions_are_answered_from_the_runs(tmp_path):
    """An outer-loop ablation, TRM vs HRM, test-time curves and residuals → one section per question."""
    import numpy as np
    from report_fixture import _summary

    rng = np.random.default_rng(1)
    runs = []
    for seed in range(3):
        runs += [_summary("transformer", seed, 0.40 + 0.01 * seed, 200_000, 2e8, segments=2, knob="segments",
                          states=("carry.z",), rng=rng),
                 _summary("transformer", seed, 0.10 + 0.01 * seed, 200_000, 2e8, segments=1, rng=rng),
                 _summary("hrm", seed, 0.60 + 0.02 * seed, 201_000, 4e8, segments=2, knob="segments",
                          states=("z_high", "z_low"), rng=rng),
                 _summary("trm", seed, 0.30 + 0.01 * seed, 200_500, 6e8, segments=2, knob="segments", rng=rng)]
    for run in runs:
        run["run_id"] += f"-{run['model']}-{run['config']['train']['segments']}"
        run["config_hash"] = run["run_id"]
        path = tmp_path / "results" / run["run_id"] / "summary.json"
        path.parent.mkdir(parents=True)
        path.write_text(json.dumps(run))
    path, warnings = write_report(tmp_path / "results", tmp_path / "reports")
    text = path.read_text()
    assert not warnings
    sections = text.split("### ")[1:]
    assert [s.split(".")[0] for s in sections] == ["1", "2", "3", "4", "5"]
    one, two, three, four, five = sections
    # 1: the main variants only (the one-segment ablation is not ranked), parameters within 0.5%
    assert "(exact %, parameters within 0.5% of each other): hrm 62.0 ± " in one
    assert "transformer (segments=1)" not in one and "**hrm** beats transformer" in one
    # 2: the outer loop's lift for the transformer, and HRM vs transformer at equal segments
    assert "**transformer with 2 segments** beats transformer with 1 segment on maze by 30.0 ± 2.3" in two
    assert "the hierarchy's share" in two
    # 3: TRM vs HRM with the FLOP ratios that qualify "equal compute"
    assert "trm trails hrm on maze" in three.lower().replace("**", "") and "inference FLOPs ×1.50" in three
    # 4 and 5: test-time curves and the residual verdicts of HRM's states
    assert "evaluating with segments = 8 instead of the trained 2" in four
    assert "maze, exact accuracy by grid: hrm 8: 62.0%, 12: 37.2%, 16: 18.6%; transformer" in four
    assert "final relative residual of z_high" in five and "final relative residual of z_low" in five


@pytest.mark.slow
def test_study_notes_go_under_the_title(tmp_path, capsys):
    results = write_fixture(tmp_path / "results")
    notes = tmp_path / "notes.md"
    notes.write_text("Made by `python -m bench sweep`.\n\n### Left out\n\n- mamba: too slow on CPU\n- arc: one seed\n")
    assert main(["report", "--results", str(results), "--out", str(tmp_path / "out"), "--notes", str(notes)]) == 0
    text = (tmp_path / "out" / "index.md").read_text()
    assert text.index("## About this study") < text.index("## Main results")
    assert "Made by `python -m bench sweep`." in text and "### Left out" in text
    assert "- mamba: too slow on CPU\n- arc: one seed" in text
    assert "<code>python -m bench sweep</code>" in (tmp_path / "out" / "index.html").read_text()
    capsys.readouterr()
    assert main(["report", "--results", str(results), "--out", str(tmp_path / "out"), "--notes",
                 str(tmp_path / "missing.md")]) == 2
    error = capsys.readouterr().err
    assert error.startswith("error: --notes") and "Traceback" not in error and error.count("\n") == 1


def test_variant_labels_name_the_real_difference_not_the_sizes_matching_chose():
    from bench.report import Variant, _label

    def key(tied: bool, hidden: int) -> str:
        changed = {} if tied else {"hidden": hidden}
        return json.dumps({"model": {"tied": tied, "hidden": hidden}, "train": {"segments": 1},
                           "extra": {"match": {"achieved": 1000 + hidden, "changed": changed}}}, sort_keys=True)
    variants = [Variant("maze", "unrolled", "cpu", key(True, 64)), Variant("maze", "unrolled", "cpu", key(False, 32))]
    _label(variants)
    assert [v.label for v in variants] == ["unrolled (tied=True)", "unrolled (tied=False)"]


@pytest.mark.slow
def test_regenerating_a_report_gives_byte_identical_files(built, tmp_path):
    root, _, _ = built
    write_report(root / "results", tmp_path / "again")
    for name in FIGURES:
        for suffix in ("svg", "png"):
            first = (root / "reports" / "figures" / f"{name}.{suffix}").read_bytes()
            assert first == (tmp_path / "again" / "figures" / f"{name}.{suffix}").read_bytes(), f"{name}.{suffix}"
    assert (root / "reports" / "index.html").read_bytes() == (tmp_path / "again" / "index.html").read_bytes()
