"""Runner foundation: config resolution, FLOP counting, atomic results, resume, CLI errors, report."""
import json
import os
import re
import subprocess
import sys

import pytest
import torch

from bench.cli import main
from bench.config import ConfigError
from bench.matching import prepare
from bench.measure import flops_of
from bench.results import atomic_write_json, read_summary
from bench.runner import StopRequested, execute
from bench.trainer import Trainer
from models.registry import create_model
from tasks.protocol import IGNORE_LABEL, TaskSpec, constant_answer_accuracy

SMOKE = ["train.steps=6", "train.checkpoint_every=2", "train.log_every=1"]


def smoke_config(*extra: str, seed: int = 0):
    return prepare("transformer", "maze", "smoke", [*SMOKE, *extra], seed=seed)


# ------------------------------------------------------------------------------------- config
def test_overrides_are_typed_and_validated():
    config = prepare("transformer", "maze", "smoke", ["model.hidden=48", "train.act=true", "task.grid=7"])
    assert config.model.hidden == 48 and config.train.act is True and config.task.grid == 7
    with pytest.raises(ConfigError, match="unknown key 'model.hiden'"):
        prepare("transformer", "maze", "smoke", ["model.hiden=48"])
    with pytest.raises(ConfigError, match="expected int"):
        prepare("transformer", "maze", "smoke", ["train.steps=many"])
    with pytest.raises(ConfigError, match="unknown model"):
        prepare("nosuch", "maze", "smoke")
    with pytest.raises(ConfigError, match="unknown preset"):
        prepare("transformer", "maze", "huge")
    with pytest.raises(ConfigError, match="train.loss"):
        prepare("transformer", "maze", "smoke", ["train.loss=hinge"])


def test_config_hash_tracks_semantics():
    assert smoke_config().config_hash() == smoke_config().config_hash()
    assert smoke_config().config_hash() != smoke_config("train.lr=0.5").config_hash()
    assert smoke_config().config_hash() != smoke_config(seed=1).config_hash()


# ------------------------------------------------------------------------------------- FLOPs
@pytest.mark.parametrize("hidden,layers,seq", [(64, 2, 36), (128, 3, 100)])
def test_transformer_training_flops_match_the_analytic_formula(hidden, layers, seq):
    """Training FLOPs ≈ 6·N·T + 12·L·T²·h per sequence (PaLM App. B), N = matmul parameters."""
    side = int(seq ** 0.5)
    spec = TaskSpec(vocab_size=6, seq_len=side * side)
    torch.manual_seed(0)
    model = create_model("transformer", spec, hidden=hidden, num_heads=4, num_layers=layers, ffn_multiple=64)
    config = prepare("transformer", "maze", "smoke", ["train.segments=1", "train.batch_size=2"]).train
    trainer = Trainer(model, spec, config, "cpu", progress=False)
    from tasks.protocol import TaskData
    data = TaskData(torch.randint(1, 6, (4, spec.seq_len)), torch.randint(1, 6, (4, spec.seq_len)),
                    torch.zeros(4, dtype=torch.long))
    from bench.trainer import Sampler
    trainer.sampler = Sampler(len(data), 0)
    measured = flops_of(lambda: trainer.train_step(data)) / config.batch_size

    tokens = spec.seq_len + 1  # + the puzzle-embedding prefix position
    block_matmul_params = sum(p.numel() for n, p in model.blocks.named_parameters())
    head_params = model.head.proj.weight.numel()
    analytic = 6 * block_matmul_params * tokens + 6 * head_params * spec.seq_len + 12 * layers * tokens ** 2 * hidden
    assert measured == pytest.approx(analytic, rel=0.05)


def test_cpu_attention_is_counted():
    query = torch.randn(1, 2, 16, 8)
    flops = flops_of(lambda: torch.nn.functional.scaled_dot_product_attention(query, query, query))
    assert flops == 2 * 2 * (2 * 16 * 16 * 8)  # QK^T and AV, 2 FLOPs per multiply-add


# ------------------------------------------------------------------------------------- results
def test_atomic_write_leaves_old_file_intact_on_failure(tmp_path, monkeypatch):
    path = tmp_path / "summary.json"
    atomic_write_json(path, {"status": "running", "config": {}})

    def explode(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", explode)
    with pytest.raises(OSError):
        atomic_write_json(path, {"status": "complete", "config": {}, "big": list(range(1000))})
    assert read_summary(path)["status"] == "running"
    assert [p.name for p in tmp_path.iterdir()] == ["summary.json"]  # no stray temporary


def test_nan_values_are_written_as_valid_json(tmp_path):
    atomic_write_json(tmp_path / "s.json", {"status": "x", "config": {}, "value": float("nan")})
    assert json.loads((tmp_path / "s.json").read_text())["value"] is None


# ------------------------------------------------------------------------------------- runs
def test_run_records_measurements(tmp_path):
    summary = execute(smoke_config(), tmp_path, progress=False)
    assert summary["status"] == "complete"
    on_disk = read_summary(next(tmp_path.rglob("summary.json")))
    assert on_disk["exact_accuracy"] == summary["exact_accuracy"]
    for key in ("params", "puzzle_emb_params", "config", "config_hash", "environment", "memory"):
        assert key in on_disk
    assert on_disk["train"]["flops_per_step"] > 0 and on_disk["train"]["flops_total"] > 0
    assert on_disk["inference"]["flops_per_example"] > 0
    assert on_disk["train"]["seconds"] > 0 and on_disk["inference"]["examples_per_second"] > 0
    assert on_disk["memory"]["peak_memory_bytes"] > 0
    assert not list(tmp_path.rglob("checkpoint.safetensors"))  # removed once complete


@pytest.mark.parametrize("threads", [1, 2])
def test_same_config_seed_and_threads_same_metrics(tmp_path, threads):
    config = smoke_config(f"train.threads={threads}")
    before = torch.get_num_threads()
    first = execute(config, tmp_path / "a", progress=False)
    second = execute(config, tmp_path / "b", progress=False)
    assert torch.get_num_threads() == before   # the caller's thread count is given back
    assert first["environment"]["torch_threads"] == threads
    assert first["train"]["curve"] == second["train"]["curve"]
    strip = lambda m: {s: {k: v for k, v in d.items() if k not in ("eval_seconds", "examples_per_second")} for s, d in m.items()}
    assert strip(first["metrics"]) == strip(second["metrics"])


def test_the_environment_identifies_the_host_down_to_its_simd_level():
    """Same config, seed and threads repeat exactly on one host; across hosts the SIMD kernels torch
    dispatches to (AVX2 vs AVX-512) change the sums. So a summary names its host, and forcing another
    kernel level (ATEN_CPU_CAPABILITY) gives another host id."""
    from bench.measure import environment

    here = environment("cpu")
    assert here["host"]["cpu_capability"] == torch.backends.cpu.get_cpu_capability()
    assert re.fullmatch(r"[0-9a-f]{12}", here["host_id"]) and environment("cpu")["host_id"] == here["host_id"]
    probe = "import json; from bench.measure import environment; print(json.dumps(environment('cpu')))"
    forced = json.loads(subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True,
                                       env={**os.environ, "ATEN_CPU_CAPABILITY": "default"}).stdout)
    assert forced["host"]["cpu_capability"] == "DEFAULT"
    assert forced["host_id"] != here["host_id"] or here["host"]["cpu_capability"] == "DEFAULT"


def test_thread_count_is_in_the_config_hash_and_validated():
    default, one, two = smoke_config(), smoke_config("train.threads=1"), smoke_config("train.threads=2")
    assert default.train.threads == 1
    assert default.config_hash() == one.config_hash()   # the default (1) keeps earlier runs' hashes
    assert two.config_hash() != one.config_hash()
    with pytest.raises(ConfigError, match="train.threads must be >= 1"):
        smoke_config("train.threads=0")
    with pytest.raises(ConfigError, match="train.threads=5000 is above the limit"):
        smoke_config("train.threads=5000")


@pytest.mark.parametrize("extra", [(), ("train.segments=3", "train.act=true"), ("train.sampler=groups", "train.sampler_epochs=2")])
def test_resume_reaches_the_same_final_metrics(tmp_path, extra):
    config = smoke_config(*extra)
    reference = execute(config, tmp_path / "straight", progress=False)
    with pytest.raises(StopRequested):
        execute(config, tmp_path / "broken", progress=False, stop_after_step=3)
    assert read_summary(next((tmp_path / "broken").rglob("summary.json")))["status"] == "running"
    resumed = execute(config, tmp_path / "broken", resume="auto", progress=False)
    assert resumed["status"] == "complete"
    assert resumed["train"]["curve"] == reference["train"]["curve"]
    assert resumed["exact_accuracy"] == reference["exact_accuracy"]
    assert resumed["token_accuracy"] == reference["token_accuracy"]


def test_a_run_resumed_on_another_host_names_both(tmp_path, monkeypatch):
    """A run trained partly on one host and finished on another is not one host's result: its summary
    lists every host that trained it, and the report counts both."""
    import bench.runner
    from bench.report.load import load_runs
    from bench.report.tables import hosts

    with pytest.raises(StopRequested):
        execute(smoke_config(), tmp_path, progress=False, stop_after_step=3)
    first = read_summary(next(tmp_path.rglob("summary.json")))["trained_on"]
    real = bench.runner.environment
    monkeypatch.setattr(bench.runner, "environment", lambda device: {**real(device), "host_id": "other-host"})
    resumed = execute(smoke_config(), tmp_path, resume="auto", progress=False)
    assert len(first) == 1 and resumed["trained_on"] == first + ["other-host"]
    variants, _ = load_runs(tmp_path)
    assert hosts(variants[0]) == {first[0], "other-host"}


def test_resume_refuses_a_different_config(tmp_path):
    with pytest.raises(StopRequested):
        execute(smoke_config(), tmp_path, progress=False, stop_after_step=2)
    run_dir = next(tmp_path.iterdir())
    from bench.results import ResultsError
    with pytest.raises(ResultsError, match="differs"):
        execute(smoke_config("train.lr=0.01"), tmp_path, resume=str(run_dir), progress=False)


# ------------------------------------------------------------------------------------- CLI
@pytest.mark.parametrize("argv,needle", [
    (["run", "--model", "nosuch", "--task", "maze"], "unknown model 'nosuch'"),
    (["run", "--model", "transformer", "--task", "nosuch"], "unknown task 'nosuch'"),
    (["run", "--model", "transformer", "--task", "maze", "--preset", "huge"], "unknown preset"),
    (["run", "--model", "transformer", "--task", "maze", "--set", "model.nosuch=1"], "unknown key"),
    (["run", "--model", "transformer", "--task", "maze", "--set", "train.steps=x"], "expected int"),
    (["run", "--model", "transformer", "--task", "maze", "--set", "nodots"], "section.key=value"),
    (["run", "--model", "transformer", "--task", "maze", "--preset", "smoke", "--set", "task.grid=2"], "task.grid"),
    (["info", "--model", "transformer"], "Missing option '--task'"),
    (["data", "--task", "maze", "--split", "nosuch"], "unknown split"),
])
def test_bad_cli_input_is_one_line_and_exit_2(argv, needle, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert needle in err and "\n" not in err and "Traceback" not in err


def test_unwritable_output_directory(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("")
    code = main(["run", "--model", "transformer", "--task", "maze", "--preset", "smoke", "--out", str(blocker / "sub")])
    assert code == 2
    assert "not writable" in capsys.readouterr().err


def test_info_json_and_list(capsys):
    assert main(["info", "--model", "transformer", "--task", "maze", "--preset", "smoke", "--json"]) == 0
    payload = json.loads(capsys.readouterr().out)
    assert payload["params"] > 0 and payload["puzzle_emb_params"] == 32 and payload["flops_per_example"] > 0
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    assert "transformer" in out and "maze" in out and "smoke" in out


def test_data_stats_json(capsys):
    assert main(["data", "--task", "maze", "--preset", "smoke", "--split", "test", "--stats", "--json"]) == 0
    stats = json.loads(capsys.readouterr().out)
    assert stats["count"] == 32 and stats["path_length_min"] > stats["min_path"]


@pytest.mark.slow
def test_cli_run_and_report(tmp_path, capsys):
    out = tmp_path / "results"
    assert main(["run", "--model", "transformer", "--task", "maze", "--preset", "smoke", "--quiet", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "exact" in printed and "FLOPs" in printed and "params" in printed
    (out / "broken").mkdir()
    (out / "broken" / "summary.json").write_text("{not json")
    assert main(["report", "--results", str(out), "--out", str(tmp_path / "reports")]) == 0
    text = (tmp_path / "reports" / "index.md").read_text()
    assert "transformer" in text and "maze" in text
    assert "broken" in capsys.readouterr().err


def test_run_says_what_it_does_before_the_bar_and_explains_its_numbers(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("RECURRENT_BENCH_CACHE", str(tmp_path / "cache"))   # fresh: the data is generated
    monkeypatch.setattr("bench.cli._stderr_is_a_terminal", lambda: True)    # status lines are for terminals
    assert main(["run", "--model", "transformer", "--task", "maze", "--preset", "smoke", *sum((["--set", s] for s in SMOKE), []),
                 "--set", "train.log_every=3", "--out", str(tmp_path / "results")]) == 0
    captured = capsys.readouterr()
    status = captured.err
    steps = ["sizing transformer to hrm's parameter count", "building transformer (seed 0)",
             "generating maze data: the train split"]
    assert all(step in status for step in steps), status
    assert [status.index(step) for step in steps] == sorted(status.index(step) for step in steps)
    printed = captured.out
    assert "constant answer: exact" in printed
    monkeypatch.setattr("bench.cli._stderr_is_a_terminal", lambda: False)
    assert main(["run", "--model", "nosuch", "--task", "maze"]) == 2
    assert capsys.readouterr().err.count("\n") == 1   # piped: the error line alone
    for words in ("exact: share of examples", "token: share", "segments: outer refinement passes",
                  "the floor to beat"):
        assert words in " ".join(printed.split()), words


def test_constant_answer_is_the_most_frequent_training_label_everywhere():
    ignore = IGNORE_LABEL
    train_labels = torch.tensor([[1, 1, 2, ignore], [1, 3, 1, 1]])
    labels = torch.tensor([[1, 1, ignore], [2, 1, 1]])
    assert constant_answer_accuracy(train_labels, labels, ignore) == {"token_accuracy": 4 / 5, "exact_accuracy": 0.5}
