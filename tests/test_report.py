"""`bench report` on a fixture results/ tree: corrupt, partial, running and diverged runs included."""
import json
import math
import re
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from report_fixture import write_fixture  # noqa: E402

from bench.cli import main  # noqa: E402
from bench.report import write_report  # noqa: E402

FIGURES = ("accuracy_by_task", "forest", "pareto", "learning_curves", "learning_curves_flops", "extrapolation",
           "test_time_compute_maze", "fixed_point", "act")


def _answer_items(text: str) -> list[str]:
    """The Answers section's top-level bullets, each with its sub-bullets joined on."""
    items: list[str] = []
    for line in text.split("## Answers")[1].split("## ")[0].strip().splitlines():
        if line.startswith("- "):
            items.append(line)
        elif line.startswith("  - "):
            items[-1] += " " + line.strip()[2:]
    return items


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    root = tmp_path_factory.mktemp("report")
    results = write_fixture(root / "results")
    path, warnings = write_report(results, root / "reports")
    return root, path, warnings


def _wilson(k: int, n: int, z: float = 1.959964) -> tuple[float, float]:
    p = k / n
    centre, half = (p + z * z / (2 * n)), z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return 100 * (centre - half) / (1 + z * z / n), 100 * (centre + half) / (1 + z * z / n)


def test_bad_files_are_skipped_with_warnings_naming_them(built):
    root, _, warnings = built
    text = "\n".join(warnings)
    for name in ("corrupt-run", "partial-run", "running-run"):
        assert f"{root / 'results' / name / 'summary.json'}" in text
    assert len(warnings) == 3
    assert "could not be made" not in text


def test_the_first_screen_is_answers_then_the_pivot(built):
    _, path, _ = built
    text = path.read_text()
    assert text.index("**About this study.**") < text.index("## Answers") < text.index("## Exact accuracy") \
        < text.index("## Findings") < text.index("## Costs") < text.index("## Appendix A")
    answers = text.split("## Answers")[1].split("## ")[0]
    assert answers.count("\n- **") == 5
    assert "maze: hrm 71.3 [" in answers            # the leader, from the numbers
    pivot = text.split("## Exact accuracy")[1].split("###")[0]
    assert re.search(r"\| hrm\s+\| \*\*71\.3 \[\d+\.\d, \d+\.\d\]\*\*", pivot)   # best of the task in bold
    low, high = _wilson(133, 256)                   # looped: one seed, 52% of 256 → Wilson
    assert f"52.0 [{low:.1f}, {high:.1f}] (1 seed)" in pivot
    assert "hrm on maze: 1 of 4 seeds diverged (steps 120)" in text
    assert "diverged at step 120" in text           # the runs table
    for name in FIGURES:
        assert f"](figures/{name}.png)" in text


def test_every_interval_in_the_pivot_lies_in_zero_to_hundred(built):
    _, path, _ = built
    pivot = path.read_text().split("## Exact accuracy")[1].split("###")[0]
    intervals = re.findall(r"(\d+\.\d) \[(-?\d+\.\d), (-?\d+\.\d)\]", pivot)
    assert len(intervals) == 3
    for mean, low, high in intervals:
        assert 0.0 <= float(low) <= float(mean) <= float(high) <= 100.0


def test_one_finding_per_contrast_and_holm_in_the_appendix(built):
    _, path, _ = built
    text = path.read_text()
    findings = text.split("## Findings")[1].split("###")[0]
    assert findings.count("**best − runner-up**") == 1 and findings.count("**looped − transformer") == 1
    appendix = text.split("## Appendix A")[1].split("## ")[0]
    rows = [line for line in appendix.splitlines() if line.startswith("| ") and "contrast" not in line]
    assert len(rows) == 3                           # leader, looped − transformer, ACT
    for row in rows:
        cells = [c.strip() for c in row.strip("|").split("|")]
        p, holm = cells[8], cells[9]
        if p != "—" and not p.startswith("<"):
            assert holm.startswith("<") is False and float(holm) >= float(p)


def test_figures_are_written_and_the_html_embeds_them(built):
    root, _, _ = built
    for name in FIGURES:
        assert (root / "reports" / "figures" / f"{name}.png").read_bytes().startswith(b"\x89PNG")
    page = (root / "reports" / "index.html").read_text()
    assert page.count('src="data:image/png;base64,') == len(FIGURES)
    assert 'src="figures/' not in page       # self-contained
    assert len(page.encode()) <= 1_500_000
    assert "<table" in page and "<strong>71.3 [" in page


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
    assert "52.0 [" in index.read_text()
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
    answers = _answer_items(text)
    assert len(answers) == 5
    one, two, three, four, five = answers
    # 1: the main variants only (the one-segment ablation is not the leader), separated after Holm
    assert "maze: hrm 62.0 [" in one and "ahead of transformer (segments=2)" in one
    assert "(loss flat at the end on 0 of 3 seeds)" in one   # the fixture's losses still fall steeply at the end
    # 2: the outer loop: transformer 2 vs 1 segments (+30 points, 3 seeds each) survives Holm
    assert "segments S − 1" in two and "transformer (segments=2) vs transformer (segments=1) on maze +30.0 [" in two
    # 3: TRM vs HRM: 31.0 − 62.0 = −31 points
    assert "trm vs hrm on maze -31.0 [" in three
    # 4 and 5: test-time curves and the residual verdicts
    assert "variant × knob × split curves" in four and "maze (grid 16): hrm" in four
    assert "traced states" in five and "hrm 2/2" in five


@pytest.mark.slow
def test_study_notes_go_under_the_title(tmp_path, capsys):
    results = write_fixture(tmp_path / "results")
    notes = tmp_path / "notes.md"
    notes.write_text("Made by `python -m bench sweep`.\n\n### Left out\n\n- mamba: too slow on CPU\n- arc: one seed\n")
    assert main(["report", "--results", str(results), "--out", str(tmp_path / "out"), "--notes", str(notes)]) == 0
    text = (tmp_path / "out" / "index.md").read_text()
    # the notes' first paragraph in the short paragraph at the top, all of them in appendix B
    top = text.split("## Answers")[0]
    assert "**About this study.**" in top and "Made by `python -m bench sweep`." in top and "Left out" not in top
    notes = text.split("## Appendix B: study notes")[1]
    assert "Made by `python -m bench sweep`." in notes and "### Left out" in notes
    assert "- mamba: too slow on CPU\n- arc: one seed" in text
    assert "<code>python -m bench sweep</code>" in (tmp_path / "out" / "index.html").read_text()
    capsys.readouterr()
    assert main(["report", "--results", str(results), "--out", str(tmp_path / "out"), "--notes",
                 str(tmp_path / "missing.md")]) == 2
    error = capsys.readouterr().err
    assert error.startswith("error: --notes") and "Traceback" not in error and error.count("\n") == 1


def test_variant_labels_name_the_real_difference_not_the_sizes_matching_chose():
    from bench.report.load import Variant, label_variants

    def key(tied: bool, hidden: int) -> str:
        changed = {} if tied else {"hidden": hidden}
        return json.dumps({"model": {"tied": tied, "hidden": hidden}, "train": {"segments": 1},
                           "extra": {"match": {"achieved": 1000 + hidden, "changed": changed}}}, sort_keys=True)
    variants = [Variant("maze", "unrolled", "cpu", key(True, 64)), Variant("maze", "unrolled", "cpu", key(False, 32))]
    label_variants(variants)
    assert [v.label for v in variants] == ["unrolled (tied=True)", "unrolled (tied=False)"]


@pytest.mark.slow
def test_regenerating_a_report_gives_byte_identical_files(built, tmp_path):
    root, _, _ = built
    write_report(root / "results", tmp_path / "again")
    for name in FIGURES:
        first = (root / "reports" / "figures" / f"{name}.png").read_bytes()
        assert first == (tmp_path / "again" / "figures" / f"{name}.png").read_bytes(), name
    assert (root / "reports" / "index.html").read_bytes() == (tmp_path / "again" / "index.html").read_bytes()


def test_duplicates_of_a_config_and_seed_count_once_the_newest_kept(tmp_path):
    from bench.report import load_runs

    results = write_fixture(tmp_path / "results")
    original = next(results.glob("maze-hrm-cpu-s1-*/summary.json"))
    summary = json.loads(original.read_text())
    summary.update(run_id="maze-hrm-cpu-s1-rerun", finished_at="2099-01-01T00:00:00Z", exact_accuracy=0.5)
    (results / "rerun").mkdir()
    (results / "rerun" / "summary.json").write_text(json.dumps(summary))
    variants, warnings = load_runs(results)
    hrm = next(v for v in variants if v.model == "hrm")
    assert sorted(r.seed for r in hrm.complete) == [0, 1, 2]
    assert next(r for r in hrm.complete if r.seed == 1).exact_accuracy == 0.5      # the newest
    duplicate = [w for w in warnings if "counted once" in w]
    assert len(duplicate) == 1 and str(original) in duplicate[0] and "rerun" in duplicate[0]


def test_the_budget_is_named_by_its_preset(tmp_path):
    results = write_fixture(tmp_path / "results")
    for path in results.glob("maze-*/summary.json"):
        summary = json.loads(path.read_text())
        summary["preset"] = summary["config"]["preset"] = "smoke"
        summary["exact_accuracy"] = 0.01
        path.write_text(json.dumps(summary))
    text, _ = write_report(results, tmp_path / "out")
    text = text.read_text()
    assert "maze: no model reaches 5% exact in the smoke preset" in text
    assert "cpu preset" not in text and "cpu budget" not in text


def test_a_field_added_later_at_its_default_does_not_split_a_variant():
    """A run recorded before train.threads existed and one recorded with threads=1 (its default) are
    seeds of one variant; threads=2 is another."""
    from bench.matching import prepare
    from bench.report.load import variant_key

    recorded = prepare("transformer", "maze", "smoke").to_dict()
    older = json.loads(json.dumps(recorded))
    del older["train"]["threads"]
    two = json.loads(json.dumps(recorded))
    two["train"]["threads"] = 2
    assert variant_key(older) == variant_key(recorded) != variant_key(two)


def test_variants_that_differ_in_many_keys_never_share_a_label():
    from bench.report.load import Variant, label_variants

    def variant(task_name, task=None, **train):
        config = {"model": {"tied": train.pop("tied")}, "task": task or {}, "train": train}
        return Variant(task_name, "dtnet", "cpu", json.dumps(config, sort_keys=True))

    variants = [variant("prefix_sums", tied=False, progressive_alpha=0.0, steps=1200),
                variant("prefix_sums", tied=False, progressive_alpha=1.0, steps=1200),
                variant("prefix_sums", tied=True, progressive_alpha=1.0, steps=1200),
                variant("maze", tied=True, progressive_alpha=1.0, steps=2000, task={"grid": 9}),
                variant("maze", tied=True, progressive_alpha=1.0, steps=1200, task={"grid": 9}),
                variant("maze", tied=True, progressive_alpha=1.0, steps=1200, task={"grid": 11})]
    label_variants(variants)
    for task in ("prefix_sums", "maze"):
        labels = [v.label for v in variants if v.task == task]
        assert len(set(labels)) == len(labels), labels
    assert "grid" not in variants[0].label   # a maze key says nothing about a prefix-sums run


def _equilibrium_record(forward: tuple[float, float], backward: float) -> dict:
    segment = lambda fraction: {"converged_fraction": fraction, "residual_mean": 1e-4,  # noqa: E731
                                "residual_max": 2e-3, "steps": 5.0}
    return {"segments": [segment(f) for f in forward],
            "backward": {"converged_fraction": backward, "residual_mean": 3e-5, "residual_max": 9e-5, "steps": 8.0}}


def test_question_five_states_the_deq_converged_fractions_of_the_worst_run_and_segment(tmp_path):
    """diagnostics.equilibrium → one sentence on the DEQ: the smallest forward fraction over segments
    and seeds, the smallest backward fraction, before and after training; a malformed record is dropped."""
    import numpy as np
    from report_fixture import _summary

    from bench.report.findings import equilibrium_findings
    from bench.report.load import load_runs

    rng = np.random.default_rng(0)
    for seed, (trained, backward) in enumerate((((0.86, 1.0), 0.03), ((0.97, 0.99), 0.5))):
        run = _summary("deq", seed, 0.2, 200_000, 2e8, rng=rng)
        run["diagnostics"]["equilibrium"] = {"tol": 1e-3, "backward_tol": 1e-4,
                                             "init": _equilibrium_record((1.0, 1.0), 1.0),
                                             "trained": _equilibrium_record(trained, backward)}
        path = tmp_path / "results" / run["run_id"] / "summary.json"
        path.parent.mkdir(parents=True)
        path.write_text(json.dumps(run))
    broken = _summary("deq", 5, 0.2, 200_000, 2e8, rng=rng)
    broken["run_id"] += "-other"
    broken["config"]["model"]["hidden"] = 64
    broken["diagnostics"]["equilibrium"] = {"tol": 1e-3, "init": {"segments": []}, "trained": 3}
    path = tmp_path / "results" / broken["run_id"] / "summary.json"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps(broken))
    variants, warnings = load_runs(tmp_path / "results")
    assert any("diagnostics.equilibrium" in w for w in warnings)
    tolerance, lines = equilibrium_findings(variants)
    assert tolerance == "0.001/0.0001" and len(lines) == 1
    assert lines[0] == "deq (hidden=128) on maze (2 run(s)): init 100%/100%, trained 86%/3%"
    index, _ = write_report(tmp_path / "results", tmp_path / "out")
    assert "trained 86%/3%" in index.read_text().split("## Answers")[1].split("## ")[0]
    # a variant solved to another tolerance: each phrase then states its own
    other = _summary("deq", 6, 0.2, 200_000, 2e8, rng=rng)
    other["run_id"] += "-tight"
    other["config"]["model"]["hidden"] = 96
    other["diagnostics"]["equilibrium"] = {"tol": 1e-5, "backward_tol": 1e-5, "init": _equilibrium_record((1.0, 1.0), 1.0),
                                           "trained": _equilibrium_record((0.99, 1.0), 1.0)}
    path = tmp_path / "results" / other["run_id"] / "summary.json"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps(other))
    tolerance, lines = equilibrium_findings(load_runs(tmp_path / "results")[0])
    assert tolerance == "per variant" and len(lines) == 2
    assert "deq (hidden=96) on maze (1 run(s), tolerance 1e-05/1e-05): init 100%/100%, trained 99%/100%" in lines


def test_the_cost_tables_finished_column_counts_seeds_whose_loss_is_flat():
    from pathlib import Path

    from bench.report.load import Variant
    from bench.report.schema import Run, TrainPoint
    from bench.report.tables import finished_cell

    def run(seed, slope):
        curve = tuple(TrainPoint(step, 1.0 - slope * step, None, 1.0 - slope * step) for step in range(10, 1010, 10))
        return Run(Path("."), f"r{seed}", "complete", "maze", "hrm", "cpu", seed, "h", {}, "t", train_curve=curve)

    variant = Variant("maze", "hrm", "cpu", "{}", runs=[run(0, 0.0), run(1, 5e-4)])
    cell = finished_cell(variant)
    assert cell.startswith("1 of 2 (loss ") and "over the last 20%" in cell


def test_the_extrapolation_answer_names_the_longest_split_solved_at_any_setting(tmp_path):
    """A DT-net-shaped run: grid 12 is 5% at the trained 4 iterations and 90% at 8 (not at the largest,
    16), so 'largest vs trained' misses it and 'best setting' (an upper bound) finds it."""
    import numpy as np
    from report_fixture import _summary

    rng = np.random.default_rng(2)
    runs = [_summary("hrm", seed, 0.70, 201_000, 4e8, rng=rng) for seed in range(2)]
    for seed in range(2):
        run = _summary("dtnet", seed, 0.95, 200_000, 4e8, knob="model.eval_iterations", rng=rng)
        run["metrics"]["test_grid12"]["exact_accuracy"] = 0.05
        run["curves"]["grid"][1]["exact_accuracy"] = 0.05
        curve = lambda accuracies: {"trained": 4, "points": [  # noqa: E731
            {"x": x, "exact_accuracy": a, "token_accuracy": 0.9} for x, a in zip((2, 4, 8, 16), accuracies)]}
        run["diagnostics"]["test_time_compute_by_split"] = {
            "test": {"model.eval_iterations": curve((0.3, 0.95, 0.95, 0.6))},
            "test_grid12": {"model.eval_iterations": curve((0.0, 0.05, 0.90, 0.04))}}
        runs.append(run)
    for run in runs:
        run["run_id"] += f"-{run['model']}"
        path = tmp_path / "results" / run["run_id"] / "summary.json"
        path.parent.mkdir(parents=True)
        path.write_text(json.dumps(run))
    path, _ = write_report(tmp_path / "results", tmp_path / "reports")
    four = _answer_items(path.read_text())[3]
    assert "on 0 of 2 variant × knob × split curves" in four                 # 16 vs 4 gains nothing
    assert "best setting (chosen on the examples it is scored on: an upper bound) raises it on 1" in four
    assert "dtnet on test_grid12 (model.eval_iterations 8 vs 4: +85.0 [" in four
    assert ("maze: dtnet to grid 8 (95.0%) at the trained setting, dtnet to grid 12 (90.0%) at its best "
            "test-time setting") in four


def test_study_notes_keep_their_headings_tables_and_lists_apart():
    """The notes' markdown: a title, a section heading, a pipe table and a list each become their own
    block (a table flattened into a paragraph, or a title read as the study's first paragraph, was
    what the v2 notes got before)."""
    from bench.report.render import note_blocks, render_markdown

    notes = ("# Study notes\n\nHow the runs were made.\n\n## Where it stands\n"
             "| model | test |\n|---|---|\n| looped | 44.0 |\n| transformer | 40.7 |\n\n- first\n- second")
    blocks = note_blocks(notes)
    assert [kind for kind, *_ in blocks] == ["h3", "p", "h3", "table", "list"]
    assert blocks[1] == ("p", "How the runs were made.")
    table = blocks[3][1]
    assert list(table.columns) == ["model", "test"] and table.values.tolist() == [["looped", "44.0"], ["transformer", "40.7"]]
    assert blocks[4] == ("list", ["first", "second"])
    assert "| looped      | 44.0   |" in render_markdown(blocks)


def test_the_ranking_says_when_the_leader_has_not_finished_learning(tmp_path):
    """Question 1 names the leader; it says on how many seeds the loss ended flat unless on all."""
    import numpy as np
    from report_fixture import _summary

    from bench.report.findings import QUESTIONS, headlines
    from bench.report.load import load_runs

    rng = np.random.default_rng(0)
    for seed in range(2):
        run = _summary("looped", seed, 0.5, 200_000, 2e8, rng=rng)
        if seed == 0:   # a flat tail: the last 20% of steps at one loss
            run["train"]["curve"] = [dict(point, loss=0.3) for point in run["train"]["curve"]]
        path = tmp_path / run["run_id"] / "summary.json"
        path.parent.mkdir(parents=True)
        path.write_text(json.dumps(run))
    variants, _ = load_runs(tmp_path)
    one = {a.question: a.text for a in headlines(variants, [])}[QUESTIONS[0]]
    assert "maze: looped" in one and "(loss flat at the end on 1 of 2 seeds)" in one
    (tmp_path / run["run_id"] / "summary.json").write_text(json.dumps(
        dict(run, train=dict(run["train"], curve=[dict(p, loss=0.3) for p in run["train"]["curve"]]))))
    variants, _ = load_runs(tmp_path)
    assert "loss flat at the end" not in {a.question: a.text for a in headlines(variants, [])}[QUESTIONS[0]]


def test_a_bullet_keeps_its_sub_bullets_in_markdown_and_html():
    """An answer's details render as sub-bullets under its lead, in both formats."""
    from bench.report.render import render_html, render_markdown

    blocks = [("list", ["plain", ("**Q?** lead", ("detail one", "detail `two`"))])]
    assert render_markdown(blocks).splitlines()[:4] == ["- plain", "- **Q?** lead", "  - detail one",
                                                        "  - detail `two`"]
    assert ("<ul><li>plain</li><li><strong>Q?</strong> lead<ul><li>detail one</li><li>detail <code>two</code>"
            "</li></ul></li></ul>") in render_html(blocks)


def _budget_variants(tmp_path, names):
    """Write HRM maze variants that differ in segments, gradient and budget (3 seeds each); load them
    and return (pairs, run-name of each label)."""
    import numpy as np
    from report_fixture import _summary

    from bench.report.contrasts import evaluate
    from bench.report.load import load_runs

    rng = np.random.default_rng(0)
    # name: (segments, gradient, budget keys, steps, examples, FLOPs, accuracy)
    variants = {"main": (2, "one_step", {}, 1200, 38_400, 6e12, 0.40),
                "ex2": (2, "one_step", {"budget": "examples", "max_examples": 38_400}, 1200, 38_400, 6e12, 0.41),
                "ex1": (1, "one_step", {"budget": "examples", "max_examples": 38_400}, 600, 38_400, 3e12, 0.30),
                "fl1": (1, "one_step", {"budget": "flops", "max_flops": 6e12}, 1200, 76_800, 6e12, 0.35),
                "small1": (1, "one_step", {"budget": "examples", "max_examples": 9_600}, 150, 9_600, 0.75e12, 0.1),
                "lastcycle": (2, "last_cycle", {"budget": "flops", "max_flops": 6e12}, 1000, 32_000, 5.95e12, 0.5)}
    for name in names:
        segments, gradient, budget, steps, examples, flops, accuracy = variants[name]
        for seed in range(3):
            run = _summary("hrm", seed, accuracy + 0.01 * seed, 200_000, 2e8, segments=segments, rng=rng)
            run["config"]["model"]["gradient"] = gradient
            run["config"]["train"].update(budget)
            run["train"].update(steps=steps, examples=examples, flops_total=flops)
            run["run_id"] = run["config_hash"] = f"{name}-{seed}"
            path = tmp_path / run["run_id"] / "summary.json"
            path.parent.mkdir()
            path.write_text(json.dumps(run))
    loaded, _ = load_runs(tmp_path)
    return evaluate(loaded), {v.label: v.runs[0].run_id.rsplit("-", 1)[0] for v in loaded}


def test_ablations_pair_with_the_run_that_spent_the_same_budget(tmp_path):
    """An ablation whose budget keys differ from the main run's is compared only on what both spent
    alike (steps, examples or FLOPs); each variant once per matched budget; a pair that spent
    nothing alike is confounded and left out."""
    pairs, name = _budget_variants(tmp_path, ("main", "ex2", "ex1", "fl1", "small1", "lastcycle"))
    segment_pairs = sorted((name[p.treatment], name[p.control], p.matched) for p in pairs
                           if p.contrast.key == "train.segments")
    gradient_pairs = [(name[p.treatment], name[p.control], p.matched) for p in pairs if p.contrast.key == "model.gradient"]
    # 2 vs 1 segment at matched examples once (the examples-budget pair, one difference), at matched
    # steps and FLOPs once (the FLOP-budget run against the main run); the small run matches nothing
    assert segment_pairs == [("ex2", "ex1", "examples"), ("main", "fl1", "steps, FLOPs")]
    assert gradient_pairs == [("lastcycle", "main", "FLOPs")]


def test_the_main_run_is_the_two_segment_side_at_matched_examples(tmp_path):
    """Without a 2-segment rerun at an examples budget (the study's maze ablations skip it: it trains
    the same steps as the main run), the main run pairs with the 1-segment run at matched examples."""
    pairs, name = _budget_variants(tmp_path, ("main", "ex1", "fl1"))
    segment_pairs = sorted((name[p.treatment], name[p.control], p.matched) for p in pairs
                           if p.contrast.key == "train.segments")
    assert segment_pairs == [("main", "ex1", "examples"), ("main", "fl1", "steps, FLOPs")]


def test_the_main_comparison_is_each_model_at_its_preset(tmp_path):
    """Runs at the preset `bench run` resolves today are the main variants (the ranking, the bold
    cell, the model contrasts) and are named by the model alone; an ablation at the same segment
    count (ACT on) is not main even when it scores higher, and is named by the key it changes."""
    import numpy as np
    from report_fixture import _summary

    from bench.config import resolve
    from bench.report.contrasts import main_variants
    from bench.report.load import load_runs
    from bench.report.tables import accuracy_pivot

    rng = np.random.default_rng(0)
    for name, accuracy, act in (("preset", 0.30, False), ("act", 0.50, True)):
        for seed in range(2):
            run = _summary("transformer", seed, accuracy + 0.01 * seed, 200_000, 2e8, rng=rng)
            config = resolve("transformer", "maze", "cpu", seed=seed).to_dict()
            config["train"]["act"] = act
            run["config"] = config
            run["run_id"] = run["config_hash"] = f"{name}-{seed}"
            path = tmp_path / run["run_id"] / "summary.json"
            path.parent.mkdir()
            path.write_text(json.dumps(run))
    variants, _ = load_runs(tmp_path)
    assert sorted(v.label for v in variants) == ["transformer", "transformer (act=True)"]
    assert [v.label for v in main_variants(variants)] == ["transformer"]
    pivot = accuracy_pivot(variants).set_index("model")["maze"]
    assert pivot["transformer"].startswith("**30.5") and not pivot["transformer (act=True)"].startswith("**")
    # the first-screen table holds the main variant only; the ablation has its own
    assert accuracy_pivot(variants, rows="main")["model"].tolist() == ["transformer"]
    ablations = accuracy_pivot(variants, rows="ablations").set_index("model")["maze"]
    assert ablations.index.tolist() == ["transformer (act=True)"] and not ablations.iloc[0].startswith("**")


def test_an_ablation_back_at_a_default_is_named_by_that_default(tmp_path):
    """DT-net's preset trains with progressive loss (α = 1); its ablation at α = 0, the field's
    default, is left out of the recorded identity, and is still named by the value it ran at."""
    import numpy as np
    from report_fixture import _summary

    from bench.config import resolve
    from bench.report.load import load_runs

    rng = np.random.default_rng(0)
    for name, alpha in (("preset", None), ("plain", 0.0)):
        run = _summary("dtnet", 0, 0.5, 200_000, 2e8, rng=rng)
        config = resolve("dtnet", "prefix_sums", "cpu", seed=0).to_dict()
        assert config["train"]["progressive_alpha"] > 0
        if alpha is not None:
            config["train"]["progressive_alpha"] = alpha
        run.update(config=config, task="prefix_sums", run_id=name, config_hash=name)
        (tmp_path / name).mkdir()
        (tmp_path / name / "summary.json").write_text(json.dumps(run))
    variants, _ = load_runs(tmp_path)
    assert sorted(v.label for v in variants) == ["dtnet", "dtnet (progressive_alpha=0.0)"]


def test_the_stop_selector_table_gives_all_selector_and_oracle_accuracy_per_split(tmp_path):
    """best_of_k runs record, per split, exact accuracy at all iterations, at the selector's stop and
    at the oracle stop: the report shows their seed means with intervals inside [0, 100], and names
    a malformed entry instead of using it."""
    import numpy as np
    from report_fixture import _summary

    from bench.report.load import load_runs
    from bench.report.tables import stop_selector_table

    rng = np.random.default_rng(0)
    for seed, (every, chosen, oracle) in enumerate([(0.60, 0.50, 0.98), (0.70, 0.60, 1.0)]):
        run = _summary("looped", seed, every, 200_000, 2e8, rng=rng)
        run["stop_selector"] = {
            "test": {"all_iterations_exact_accuracy": every, "selector_exact_accuracy": chosen,
                     "oracle_exact_accuracy": oracle, "mean_selected_iterations": 3.0 + seed, "iterations": 6,
                     "examples": 1000},
            "test_grid12": {"selector_exact_accuracy": "broken"}}
        if seed == 0:   # seed 1 is an older run without the selector's training record
            run["stop_selector_training"] = {"plateau": {"finished": True}, "final_loss": 0.4}
        (tmp_path / f"s{seed}").mkdir()
        (tmp_path / f"s{seed}" / "summary.json").write_text(json.dumps(run))
    variants, warnings = load_runs(tmp_path)
    assert any("stop_selector.test_grid12" in w for w in warnings)
    table = stop_selector_table(variants)
    assert table["split"].tolist() == ["test"]
    row = table.iloc[0]
    assert row["all iterations (%)"].startswith("65.0 [") and row["selector's stop (%)"].startswith("55.0 [")
    assert row["oracle stop (%)"].startswith("99.0 [") and row["iterations chosen"].startswith("3.50")
    assert row["selector trained flat"] == "1 of 1 (1 not recorded)"
    for cell in (row["all iterations (%)"], row["selector's stop (%)"], row["oracle stop (%)"]):
        low, high = (float(x) for x in re.search(r"\[(-?[\d.]+), (-?[\d.]+)\]", cell).groups())
        assert 0.0 <= low <= high <= 100.0
    # ... and the test-time question's answer states the three stops
    from bench.report.findings import QUESTIONS, headlines
    answer = {a.question: a.text for a in headlines(variants, [])}[QUESTIONS[3]]
    assert ("selector's stop 55.0%, all iterations 65.0%, oracle stop 99.0% (2 seed(s), 1 of 1 selector(s) "
            "trained to a flat loss)") in answer


def test_a_contrast_finds_a_control_recorded_at_its_default(tmp_path):
    """A summary leaves out a field at its default (`train.iteration_rule` = fixed): the random − fixed
    contrast still pairs it with the run that set the rule; the stop selector's settings do not
    make best-of-k a different training from the one it is compared with."""
    import numpy as np
    from report_fixture import _summary

    from bench.report.contrasts import evaluate
    from bench.report.load import load_runs

    rng = np.random.default_rng(0)
    for name, train in (("fixed", {}), ("random", {"iteration_rule": "random"}),
                        ("best", {"iteration_rule": "best_of_k", "stop_selector_steps": 200})):
        for seed in range(2):
            run = _summary("looped", seed, 0.5 + 0.1 * seed, 200_000, 2e8, rng=rng)
            run["config"]["train"].update(train)
            run["run_id"] = run["config_hash"] = f"{name}-{seed}"
            (tmp_path / run["run_id"]).mkdir()
            (tmp_path / run["run_id"] / "summary.json").write_text(json.dumps(run))
    variants, _ = load_runs(tmp_path)
    pairs = {p.contrast.name: (p.treatment, p.control) for p in evaluate(variants) if "iteration" in p.contrast.name}
    assert pairs == {"random − fixed iteration count": ("looped (iteration_rule=random)", "looped (iteration_rule=fixed)"),
                     "best of k − fixed iteration count": ("looped (iteration_rule=best_of_k)", "looped (iteration_rule=fixed)")}
    # the test-time question's answer also says how the iteration count was trained
    from bench.report.findings import QUESTIONS, headlines
    answer = {a.question: a.text for a in headlines(variants, evaluate(variants))}[QUESTIONS[3]]
    assert "random − fixed iteration count — at matched" in answer
    assert "best of k − fixed iteration count — at matched" in answer and "progressive" not in answer


def test_a_model_trained_longer_is_compared_with_itself_at_the_preset(tmp_path):
    """The "longer" contrast pairs a run at more steps (nothing else changed) with the model's preset
    run; question 1 gives each task's pairs in a sub-bullet of their own and says whether the models'
    order survives the longer training."""
    import numpy as np
    from report_fixture import _summary

    from bench.config import resolve
    from bench.report.contrasts import LONGER, evaluate
    from bench.report.findings import QUESTIONS, headlines
    from bench.report.load import load_runs

    rng = np.random.default_rng(0)
    # (task, model, steps as a multiple of the preset's, accuracy): on maze the transformer leads at
    # the preset, looped at twice its steps; on addition one model is trained longer (no order to compare)
    runs = (("maze", "transformer", 1, 0.40), ("maze", "looped", 1, 0.30),
            ("maze", "transformer", 2, 0.42), ("maze", "looped", 2, 0.55),
            ("maze", "looped", 0.5, 0.10),   # fewer steps: not "longer", no pair
            ("addition", "transformer", 1, 0.20), ("addition", "transformer", 4, 0.35))
    preset_steps = {task: resolve("transformer", task, "cpu").train.steps for task in ("maze", "addition")}
    for task, model, multiple, accuracy in runs:
        steps = int(preset_steps[task] * multiple)
        for seed in range(3):
            run = _summary(model, seed, accuracy + 0.01 * seed, 200_000, 2e8, rng=rng)
            run["task"] = task
            run["config"] = resolve(model, task, "cpu", seed=seed).to_dict()
            run["config"]["train"]["steps"] = steps
            run["run_id"] = run["config_hash"] = f"{task}-{model}-{steps}-{seed}"
            path = tmp_path / run["run_id"] / "summary.json"
            path.parent.mkdir()
            path.write_text(json.dumps(run))
    variants, _ = load_runs(tmp_path)
    maze, addition = 2 * preset_steps["maze"], 4 * preset_steps["addition"]
    longer = sorted((p.task, p.treatment, p.control, p.matched) for p in evaluate(variants) if p.contrast.kind == "longer")
    assert longer == [("addition", f"transformer (steps={addition})", "transformer", LONGER),
                      ("maze", f"looped (steps={maze})", "looped", LONGER),
                      ("maze", f"transformer (steps={maze})", "transformer", LONGER)]
    (answer,) = [a for a in headlines(variants, evaluate(variants)) if a.question == QUESTIONS[0]]
    on_addition, on_maze = answer.details   # one sub-bullet per task, in task order
    assert on_maze.startswith("More steps on maze") and "addition" not in on_maze
    assert f"looped (steps={maze}): 56.0 [" in on_maze and "+25.0 [" in on_maze
    assert "against the preset's (31.0 [" in on_maze and "seeds)" in on_maze and "loss flat at the end on " in on_maze
    assert (f"the order changes: transformer > looped at the preset, looped > transformer at {maze} steps"
            in on_maze)
    assert on_addition.startswith("More steps on addition") and f"transformer (steps={addition}): 36.0 [" in on_addition
    assert "order" not in on_addition   # one model: nothing to order


def test_the_report_says_when_a_variants_seeds_ran_on_several_hosts(tmp_path):
    """Same config, seed and threads repeat exactly on one host only, so a variant whose seeds come
    from two hosts is flagged (the hosts column and the about paragraph); older summaries without a
    host_id are told apart by CPU name and kernel."""
    import numpy as np
    from report_fixture import _summary

    rng = np.random.default_rng(0)
    hosts = {("hrm", 0): {"host_id": "aaaa"}, ("hrm", 1): {"host_id": "bbbb"},
             ("transformer", 0): {"device_name": "AMD EPYC", "platform": "Linux-6.18-v1"},
             ("transformer", 1): {"device_name": "AMD EPYC", "platform": "Linux-6.18-v1"}}
    for (model, seed), environment in hosts.items():
        run = _summary(model, seed, 0.5, 200_000, 4e8, rng=rng)
        run["environment"] = environment
        path = tmp_path / "results" / f"{model}{seed}" / "summary.json"
        path.parent.mkdir(parents=True)
        path.write_text(json.dumps(run))
    index, _ = write_report(tmp_path / "results", tmp_path / "out")
    text = index.read_text()
    about = text.split("**About this study.**")[1].split("\n")[0]
    assert "3 host(s)." in about
    assert "The seeds of 1 variant(s) ran on more than one host" in about
    costs = text.split("## Costs")[1].split("##")[0]
    hosts_column = {line.split("|")[2].strip(): line.split("|")[-2].strip()
                    for line in costs.splitlines() if line.startswith("| maze")}
    assert hosts_column == {"hrm": "2", "transformer": "1"}


def test_seeds_from_one_host_raise_no_caveat(built):
    root, path, _ = built
    about = path.read_text().split("**About this study.**")[1].split("\n")[0]
    assert "1 host(s)." in about and "more than one host" not in about
