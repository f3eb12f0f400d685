"""Hostile input through the command line, one case per class: exit 2, one `error:` line, no traceback,
within a time bound (a FIFO or /dev/zero must not block or fill memory)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file


def run(*argv: str, cwd: Path | None = None, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "peft_studio", *argv], capture_output=True, text=True,
                          timeout=timeout, cwd=cwd)


def assert_one_line_error(result: subprocess.CompletedProcess, phrase: str) -> None:
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert phrase in lines[0], lines[0]


def _setup(tmp_path: Path, **changes) -> Path:
    doc = {"format": "peft-studio-setup", "version": 1, "base": "tiny", "base_options": {}, "method": "lora",
           "options": {}, "seed": 0, "dataset": {"builtin": "intents"},
           "training": {"steps": 2, "lr": 0.01, "batch_size": 0, "optimizer": "adam", "weight_decay": 0.0,
                        "seed": 0, "eval_every": 10}}
    doc.update(changes)
    path = tmp_path / "setup.json"
    path.write_text(json.dumps(doc))
    return path


def _peft_folder(tmp_path: Path, **config) -> Path:
    folder = tmp_path / "peft"
    folder.mkdir()
    base = {"peft_type": "LORA", "r": 2, "lora_alpha": 4, "target_modules": ["query"], "task_type": None}
    base.update(config)
    (folder / "adapter_config.json").write_text(json.dumps(base))
    save_file({"base_model.model.encoder.layer.0.attention.self.query.lora_A.weight": torch.zeros(2, 32)},
              str(folder / "adapter_model.safetensors"))
    return folder


CASES = {
    "fifo setup": (lambda t: (os.mkfifo(t / "s.json"), ["train", "--setup", str(t / "s.json")])[1], "FIFO"),
    "device setup": (lambda t: ["train", "--setup", "/dev/zero"], "not a regular file"),
    "folder as data": (lambda t: ["train", "--data", str(t)], "folder"),
    "symlink to fifo as data": (lambda t: (os.mkfifo(t / "p"), os.symlink(t / "p", t / "d.csv"),
                                           ["train", "--data", str(t / "d.csv")])[2], "FIFO"),
    "deep nesting": (lambda t: ["train", "--setup", _deep(t)], "nest"),
    "huge integer seed": (lambda t: ["train", "--setup", _huge_seed(t)], "5000 digits"),
    "string for a boolean": (lambda t: ["train", "--setup", str(_setup(t, options={"freeze_head": "false"}))],
                             "freeze_head"),
    "nan option": (lambda t: ["train", "--dropout", "nan"], "not a finite number"),
    "inf alpha": (lambda t: ["inspect", "--alpha", "inf"], "not a finite number"),
    "zero heads": (lambda t: ["train", "--setup", str(_setup(t, base_options={"n_heads": 0}))], "n_heads"),
    "negative weight decay": (lambda t: ["train", "--setup", str(_setup(t, training={
        "steps": 2, "lr": 0.01, "batch_size": 0, "optimizer": "adam", "weight_decay": -1.0, "seed": 0,
        "eval_every": 10}))], "weight decay"),
    "regex bomb target": (lambda t: ["inspect", "--base", "minilm", "--import-peft",
                                     str(_peft_folder(t, target_modules="(a+)+$"))], "target_modules"),
    "unwritable adapter": (lambda t: ["train", "--steps", "1", "--save-adapter", "/proc/none/a"], "cannot write"),
    "unwritable compare csv": (lambda t: ["compare", "--methods", "lora", "--steps", "1", "--runs-dir", str(t),
                                          "--csv", "/proc/none/board.csv"], "cannot write"),
    "zero-effect selection": (lambda t: ["inspect", "--targets", "layers.0.attn.q", "--layers", "1"],
                              "select no site"),
    "divergence": (lambda t: ["train", "--steps", "20", "--lr", "1e6"], "diverged"),
    "bad flag value": (lambda t: ["train", "--steps", "many"], "--steps"),
}


def _huge_seed(tmp_path: Path) -> str:
    path = _setup(tmp_path, seed=0)
    path.write_text(path.read_text().replace('"seed": 0,', '"seed": ' + "9" * 5000 + ",", 1))
    return str(path)


def _deep(tmp_path: Path) -> str:
    path = tmp_path / "deep.json"
    path.write_text('{"format": "peft-studio-setup", "options": ' + "[" * 100_000 + "]" * 100_000 + "}")
    return str(path)


@pytest.mark.parametrize("case", list(CASES))
def test_hostile_input_is_one_error_line_and_exit_2(case, tmp_path):
    make, phrase = CASES[case]
    assert_one_line_error(run(*make(tmp_path)), phrase)


def test_unencodable_text_prints_safely_and_a_closed_stdout_ends_quietly(tmp_path):
    result = subprocess.run([sys.executable, "-m", "peft_studio", "inspect", "--targets", "\udcff"],
                            capture_output=True, timeout=60, env={**os.environ, "PYTHONIOENCODING": "ascii"})
    assert result.returncode == 2 and b"Traceback" not in result.stderr and result.stderr.startswith(b"error: ")
    piped = subprocess.run(f"{sys.executable} -m peft_studio inspect --base tiny | head -1", shell=True,
                           capture_output=True, text=True, timeout=60)
    assert piped.stdout.startswith("base: ") and piped.stderr == ""
