"""Shared by the second hardening pass's tests: the CLI run in-process, the refusal contract, and small
real files (an adapter set's file, a random BERT checkpoint, a PEFT folder made by PEFT itself)."""

from __future__ import annotations

import contextlib
import io
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from peft_studio.cli import main

LIMIT_S = 5.0  # every refusal takes milliseconds; a hang or a build of minutes is what this bound catches


def cli(*argv: str) -> tuple[int, str, str, float]:
    """`peft-studio ARGV` in this process: (exit code, stdout, stderr, seconds)."""
    out, err = io.StringIO(), io.StringIO()
    started = time.perf_counter()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main([str(a) for a in argv])
    return code, out.getvalue(), err.getvalue(), time.perf_counter() - started


def one_error_line(code: int, err: str, phrase: str | None = None) -> str:
    """The refusal contract: exit 2 and exactly one stderr line, `error: ...` (no traceback); returns it."""
    lines = [line for line in err.splitlines() if not line.startswith("note: ")]
    assert code == 2, err
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in err, err
    if phrase is not None:
        assert phrase in lines[0], lines[0]
    return lines[0]


def refused_or_ran(code: int, err: str) -> bool:
    """Either the refusal contract (False) or a clean run (True); an unexpected error (exit 1) fails."""
    if code == 0:
        assert "Traceback" not in err and not any(line.startswith("error:") for line in err.splitlines()), err
        return True
    one_error_line(code, err)
    return False


def rss_peak_mb(code: str, rlimit_data_mb: int | None = None, timeout: float = 120) -> tuple[int, str, float]:
    """Run `code` in a fresh interpreter (optionally under RLIMIT_DATA); returns (exit code, output, the peak
    RSS it reached beyond its start in MB: the script prints `START <kb>` once set up)."""
    def limit() -> None:
        if rlimit_data_mb:
            resource.setrlimit(resource.RLIMIT_DATA, (rlimit_data_mb * 2**20, rlimit_data_mb * 2**20))

    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=timeout,
                            preexec_fn=limit)
    start = next((int(line.split()[1]) for line in result.stdout.splitlines() if line.startswith("START ")), 0)
    peak = next((int(line.split()[1]) for line in result.stdout.splitlines() if line.startswith("PEAK ")), 0)
    return result.returncode, result.stdout + result.stderr, (peak - start) / 1024


def set_file(folder: Path) -> Path:
    """An adapter set's file on tiny (LoRA on intents): the metadata every field of which the tests change."""
    from peft_studio.core.adapters.adapter_set import AdapterSet
    from peft_studio.core.data import load_builtin

    dataset = load_builtin("intents")
    adapters = AdapterSet.build("tiny", [dataset])
    adapters.add("refunds", "lora", {"r": 2}, dataset)
    return adapters.save("refunds", folder / "refunds.safetensors")


def rewrite_metadata(path: Path, out: Path, changes: dict[str, str | None]) -> Path:
    """The same tensors with some metadata values replaced (None: removed)."""
    tensors = load_file(str(path))
    with safe_open(str(path), "pt") as handle:
        metadata = dict(handle.metadata())
    for key, value in changes.items():
        if value is None:
            metadata.pop(key, None)
        else:
            metadata[key] = value
    save_file(tensors, str(out), metadata=metadata)
    return out


def bert_checkpoint(folder: Path, layers: int = 2, width: int = 32) -> Path:
    """A small random BERT saved by transformers (config.json, model.safetensors, a WordPiece vocab.txt)."""
    from transformers import BertConfig, BertModel

    torch.manual_seed(0)
    config = BertConfig(vocab_size=64, hidden_size=width, num_hidden_layers=layers, num_attention_heads=2,
                        intermediate_size=2 * width, max_position_embeddings=64)
    BertModel(config).save_pretrained(folder)
    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + [f"w{i}" for i in range(59)]
    (folder / "vocab.txt").write_text("\n".join(words) + "\n")
    return folder


def peft_lora_folder(checkpoint: Path, folder: Path, **config) -> Path:
    """A LoRA adapter folder written by PEFT itself for `checkpoint`."""
    from peft import LoraConfig, get_peft_model
    from transformers import BertModel

    torch.manual_seed(0)
    settings = {"r": 2, "lora_alpha": 4, "target_modules": ["query", "value"], **config}
    get_peft_model(BertModel.from_pretrained(str(checkpoint)), LoraConfig(**settings)).save_pretrained(folder)
    return folder


def edit_json(path: Path, **changes) -> Path:
    data = json.loads(path.read_text())
    for key, value in changes.items():
        if value is None:
            data.pop(key, None)
        else:
            data[key] = value
    path.write_text(json.dumps(data))
    return path
