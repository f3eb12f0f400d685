"""The headless CLI: inspect, methods, user errors as one line and exit code 2."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from peft_studio.cli import main
from peft_studio.core.data import load_builtin
from peft_studio.core.methods import METHODS
from peft_studio.core.model.experiment import Experiment, Setup


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_inspect_json_matches_the_census(capsys):
    code, out, _ = run_cli(capsys, "inspect", "--base", "tiny", "--method", "lora", "--r", "4", "--json")
    assert code == 0
    data = json.loads(out)
    census = Experiment(Setup("tiny", "lora", {"r": 4}), load_builtin("intents")).census()
    assert data["total"] == census.total and data["trainable"] == census.trainable
    assert len(data["tensors"]) == len(census.rows)
    row = next(t for t in data["tensors"] if t["name"].endswith("lora_A"))
    assert set(row) == {"name", "site", "owner", "shape", "numel", "dtype", "bytes", "trainable",
                        "bytes_fp32", "bytes_bf16", "bytes_nf4"}
    assert row["owner"] == "method" and row["trainable"] is True and row["shape"] == [4, 32]
    assert {t["owner"] for t in data["tensors"]} == {"base", "method", "head"}


def test_inspect_prints_totals_in_the_seed_format(capsys):
    code, out, _ = run_cli(capsys, "inspect", "--base", "seed-pooled", "--method", "adapter", "--bottleneck", "4")
    assert code == 0
    assert "total params = 694\ntrainable params = 182\n" in out


@pytest.mark.parametrize("argv, phrase", [
    (["--method", "prompt-tuning", "--tokens", "3"], r"sequence length (\d+) -> (\d+)"),
    (["--method", "prefix-tuning", "--tokens", "2"], r"attention keys (\d+) -> (\d+)"),
])
def test_inspect_describes_shape_changes_in_words(capsys, argv, phrase):
    import re

    code, out, _ = run_cli(capsys, "inspect", "--base", "tiny", *argv)
    match = re.search(phrase, out)
    assert code == 0 and match
    assert int(match.group(2)) - int(match.group(1)) == int(argv[-1])


def test_inspect_ia3_names_the_scale_vectors(capsys):
    code, out, _ = run_cli(capsys, "inspect", "--base", "tiny", "--method", "ia3")
    assert code == 0
    assert "scale vector (32,) multiplies the layer 0 key projection" in out
    assert "scale vector (64,) multiplies the layer 1 feed-forward activation" in out


def test_methods_lists_every_method_once(capsys):
    code, out, _ = run_cli(capsys, "methods")
    assert code == 0
    assert [line.split()[0] for line in out.splitlines()] == list(METHODS)


@pytest.mark.parametrize("argv, phrase", [
    (["train", "--data", "/nonexistent/x.csv"], "x.csv"),
    (["train", "--method", "lora", "--r", "0"], "r must be in [1, 4096]"),
    (["inspect", "--base", "seed-pooled", "--method", "prefix-tuning"], "no attention layers"),
    (["inspect", "--base", "nonesuch"], "unknown base 'nonesuch'"),
    (["inspect", "--method", "lora", "--targets", "zz"], "unknown site 'zz'"),
    (["train", "--steps", "0"], "--steps: 0 is out of range [1,"),
    (["train", "--threads", "0"], "--threads: 0 is out of range [1, 1024]"),
    (["train", "--threads", "some"], "--threads: 'some' is not a whole number"),
    (["inspect", "--device", "tpu9"], "device 'tpu9' is not available"),
])
def test_user_errors_are_one_line_and_exit_2(capsys, argv, phrase):
    code, _, err = run_cli(capsys, *argv)
    assert code == 2
    assert err.startswith("error: ") and phrase in err and err.count("\n") == 1
    assert "Traceback" not in err


def test_a_bad_data_file_from_a_real_process_exits_2_without_traceback(tmp_path):
    bad = tmp_path / "broken.csv"
    bad.write_bytes(b"text,label\n\xff\xfe broken,1\n")
    result = subprocess.run([sys.executable, "-m", "peft_studio", "train", "--data", str(bad)],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert result.stderr.startswith("error: broken.csv") and "Traceback" not in result.stderr


def test_train_saves_an_adapter_that_loads_back(tmp_path, capsys):
    from peft_studio.core.files.adapter_file import load_adapter

    path = tmp_path / "seed-adapter.safetensors"
    code, out, _ = run_cli(capsys, "train", "--base", "seed-pooled", "--method", "adapter", "--steps", "20",
                           "--seed", "42", "--save-adapter", str(path))
    assert code == 0 and path.exists()
    fresh = Experiment(Setup("seed-pooled", "adapter", {}, seed=42), load_builtin("seed-intents"))
    load_adapter(fresh, path)
    last_lines = out.splitlines()[-6:]
    assert [line.split("-> ")[1] for line in last_lines] == fresh.predict_labels(
        [line.split("  ")[0].strip() for line in last_lines])


def test_export_peft_then_import_peft_from_the_command_line(tmp_path, capsys):
    folder = tmp_path / "peft"
    code, _, err = run_cli(capsys, "train", "--method", "ia3", "--steps", "3", "--export-peft", str(folder))
    assert code == 0 and (folder / "adapter_config.json").exists() and "saved PEFT adapter" in err
    code, out, _ = run_cli(capsys, "inspect", "--import-peft", str(folder), "--json")
    exported = Experiment(Setup("tiny", "ia3", {}), load_builtin("intents")).census()
    assert code == 0 and json.loads(out)["trainable"] == exported.trainable


def test_export_peft_refuses_an_unsupported_method_before_training(capsys):
    code, out, err = run_cli(capsys, "train", "--method", "adapter", "--export-peft", "/tmp/never-written")
    assert code == 2 and "has no PEFT adapter format" in err and "step=" not in out


def test_a_setup_file_replays_the_same_run_as_its_flags(tmp_path, capsys):
    from peft_studio.core.files.setup_file import save_setup
    from peft_studio.core.runs.train import TrainSettings

    setup_path = save_setup(tmp_path / "seed.json", Setup("seed-pooled", "adapter", {"bottleneck": 4}, seed=42),
                            load_builtin("seed-intents"), TrainSettings(steps=201, lr=0.05, seed=42))
    assert main(["train", "--setup", str(setup_path), "--log-every", "50"]) == 0
    from_file = capsys.readouterr().out
    assert main(["train", "--base", "seed-pooled", "--method", "adapter", "--bottleneck", "4", "--dataset",
                 "seed-intents", "--steps", "201", "--lr", "0.05", "--seed", "42", "--log-every", "50"]) == 0
    assert from_file == capsys.readouterr().out and "step=200" in from_file
    assert main(["train", "--setup", str(setup_path), "--steps", "3", "--log-every", "1"]) == 0  # flags override
    assert "step=002" in capsys.readouterr().out


def test_a_setup_file_with_model_flags_is_refused(tmp_path, capsys):
    from peft_studio.core.files.setup_file import save_setup
    from peft_studio.core.runs.train import TrainSettings

    setup_path = save_setup(tmp_path / "s.json", Setup(), load_builtin("intents"), TrainSettings())
    assert main(["inspect", "--setup", str(setup_path), "--method=ia3", "--r", "2"]) == 2
    assert "drop --method, --r" in capsys.readouterr().err
    assert main(["inspect", "--setup", str(tmp_path / "missing.json")]) == 2
    assert "no such setup file" in capsys.readouterr().err


def test_train_runs_with_the_threads_it_is_given_or_measures(capsys):
    import torch

    threads = torch.get_num_threads()
    try:
        code, out, err = run_cli(capsys, "train", "--steps", "2", "--threads", "1", "--verbose")
        assert code == 0 and "step=000" in out and torch.get_num_threads() == 1
        assert "training with 1 torch thread (given)" in err
        code, _, err = run_cli(capsys, "train", "--steps", "2", "--verbose")
        assert code == 0 and "torch thread" in err and "(measured)" in err
    finally:
        torch.set_num_threads(threads)


def test_inspect_on_an_llm_ends_with_its_totals(capsys):
    """Hundreds of tensor and shape lines on Llama-3-8B: the totals come again last, with thousands separators."""
    code, out, _ = run_cli(capsys, "inspect", "--base", "llama-3-8b", "--method", "lora", "--targets", "all-linear",
                           "--r", "16")
    assert code == 0
    census = Experiment(Setup("llama-3-8b", "lora", {"targets": "all-linear", "r": 16}),
                        load_builtin("intents")).census()
    lines = out.splitlines()
    assert len(lines) > 200
    assert lines[-1] == (f"totals: {census.total:,} parameters, {census.trainable:,} trainable "
                         f"({census.trainable_percent:.4f}%), {census.total - census.trainable:,} frozen; "
                         f"{len(census.rows):,} tensors")
    assert f"{census.total:,}".count(",") == 3  # billions
