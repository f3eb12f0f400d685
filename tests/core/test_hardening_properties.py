"""Property tests: generated setup files, adapter_config.json files, adapter files and datasets either
work or raise PeftStudioError, each within a time bound (issue 10). 300 examples each, derandomized."""

from __future__ import annotations

import contextlib
import json
import math
import struct
import tempfile
import time
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from safetensors.torch import save as save_bytes

from peft_studio.core.data import load_builtin, load_dataset_file
from peft_studio.core.errors import PeftStudioError
from peft_studio.core.files.adapter_file import load_adapter, save_adapter
from peft_studio.core.files.setup_file import load_setup
from peft_studio.core.interop.hf_peft import read_peft
from peft_studio.core.model.experiment import Experiment, Setup

EXAMPLES = settings(max_examples=300, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
SECONDS = 3.0  # per example: every refusal is quick, nothing blocks
FOLDER = Path(tempfile.mkdtemp(prefix="peft-studio-properties-"))

scalars = st.one_of(st.none(), st.booleans(), st.integers(-2**70, 2**70),
                    st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=12),
                    st.sampled_from(["false", "true", "0", "1e400", "nan", "", "q,v", "lora", "tiny", "adam"]))
json_values = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                            st.dictionaries(st.text(max_size=8), inner, max_size=4)),
                           max_leaves=12)
plausible = st.sampled_from([0, 1, 2, 4, 8, 16, 32, 0.1, 0.5, 1.0, "q,v", "q", "0", True, False, None])
values = st.one_of(plausible, plausible, json_values)
hostile_tokens = st.sampled_from(["NaN", "Infinity", "-Infinity", "1e999", "9" * 5000, "[" * 5000, "{\"a\":1,\"a\":2}"])


def _replace_in(document: dict, path: list[str], value: object) -> dict:
    target = document
    for key in path[:-1]:
        target = target.setdefault(key, {}) if isinstance(target.get(key), dict) else target
    target[path[-1]] = value
    return document


def _timed(action) -> None:
    started = time.perf_counter()
    with contextlib.suppress(PeftStudioError):
        action()
    assert time.perf_counter() - started < SECONDS


# ---- setup files ------------------------------------------------------------------------------
SETUP = {"format": "peft-studio-setup", "version": 1, "base": "seed-pooled", "base_options": {}, "method": "lora",
         "options": {"r": 2}, "seed": 0, "dataset": {"builtin": "seed-intents"},
         "training": {"steps": 3, "lr": 0.01, "batch_size": 0, "optimizer": "adam", "weight_decay": 0.0, "seed": 0,
                      "eval_every": 1}}
SETUP_PATHS = [["format"], ["version"], ["base"], ["base_options"], ["base_options", "hidden_dim"],
               ["base_options", "d_model"], ["base_options", "n_heads"], ["method"], ["options"], ["options", "r"],
               ["options", "alpha"], ["options", "dropout"], ["options", "tokens"],
               ["base_options", "max_positions"], ["options", "targets"], ["options", "freeze_head"],
               ["seed"], ["dataset"], ["dataset", "builtin"], ["training"], ["training", "steps"], ["training", "lr"],
               ["training", "batch_size"], ["training", "optimizer"], ["training", "weight_decay"],
               ["training", "seed"], ["training", "eval_every"], ["extra"]]


@EXAMPLES
@given(changes=st.lists(st.tuples(st.sampled_from(SETUP_PATHS), values), max_size=2),
       base=st.sampled_from(["seed-pooled", "tiny"]), method=st.sampled_from(["lora", "ia3", "prompt-tuning"]),
       raw=st.one_of(st.none(), hostile_tokens))
def test_generated_setup_files_load_or_raise_a_studio_error(changes, base, method, raw):
    document = json.loads(json.dumps(SETUP))
    document.update(base=base, method=method, options={} if method != "lora" else {"r": 2})
    for path, value in changes:
        _replace_in(document, path, value)
    text = json.dumps(document)
    if raw is not None:
        text = text.replace('"seed": 0', f'"seed": {raw}', 1)
    path = FOLDER / "setup.json"
    path.write_text(text)

    def action():
        setup, dataset, training = load_setup(path)
        Experiment(setup, dataset)  # an opened setup builds
        training.check()

    _timed(action)


# ---- adapter_config.json ------------------------------------------------------------------------
KEY = "base_model.model.encoder.layer.0"
LORA_TENSORS = {f"{KEY}.attention.self.query.lora_A.weight": torch.zeros(2, 8),
                f"{KEY}.attention.self.query.lora_B.weight": torch.zeros(8, 2)}
IA3_TENSORS = {f"{KEY}.attention.self.key.ia3_l": torch.ones(8, 1), f"{KEY}.output.dense.ia3_l": torch.ones(1, 16)}
PROMPT_TENSORS = {"prompt_embeddings": torch.zeros(4, 8)}
CONFIGS = {
    "LORA": ({"peft_type": "LORA", "r": 2, "lora_alpha": 4, "lora_dropout": 0.0, "target_modules": ["query"],
              "bias": "none", "use_rslora": False}, LORA_TENSORS),
    "IA3": ({"peft_type": "IA3", "target_modules": ["key", "output.dense"], "feedforward_modules": ["output.dense"]},
            IA3_TENSORS),
    "PROMPT_TUNING": ({"peft_type": "PROMPT_TUNING", "num_virtual_tokens": 4, "token_dim": 8,
                       "num_transformer_submodules": 1}, PROMPT_TENSORS),
}
CONFIG_FIELDS = ["peft_type", "r", "lora_alpha", "lora_dropout", "target_modules", "feedforward_modules", "bias",
                 "use_rslora", "use_dora", "fan_in_fan_out", "layers_to_transform", "rank_pattern", "alpha_pattern",
                 "num_virtual_tokens", "token_dim", "num_transformer_submodules", "inference_mode", "task_type"]
regexes = st.one_of(st.from_regex(r"[a-z.()|*+?\\\[\]{}0-9,^$]{0,24}", fullmatch=True),
                    st.sampled_from(["(a+)+$", ".*query", r".*\.(query|value)", "(.*)*", ".*" * 6, "[", "x" * 600]))


@EXAMPLES
@given(kind=st.sampled_from(sorted(CONFIGS)),
       changes=st.lists(st.tuples(st.sampled_from(CONFIG_FIELDS), st.one_of(values, regexes)), max_size=2),
       raw=st.one_of(st.none(), hostile_tokens))
def test_generated_adapter_configs_read_or_raise_a_studio_error(kind, changes, raw):
    config, tensors = CONFIGS[kind]
    config = dict(config)
    for name, value in changes:
        config[name] = value
    folder = FOLDER / f"peft-{kind}"
    folder.mkdir(exist_ok=True)
    text = json.dumps(config)
    if raw is not None:
        text = text[:-1] + f', "r": {raw}}}'
    (folder / "adapter_config.json").write_text(text)
    if not (folder / "adapter_model.safetensors").exists():
        (folder / "adapter_model.safetensors").write_bytes(save_bytes(tensors))
    _timed(lambda: read_peft(folder))


# ---- adapter (safetensors) files ----------------------------------------------------------------
@pytest.fixture(scope="module")
def adapter_case():
    experiment = Experiment(Setup("seed-pooled", "lora", {"r": 2}), load_builtin("seed-intents"))
    path = save_adapter(experiment, FOLDER / "good.safetensors")
    return experiment, path.read_bytes()


DTYPES = [torch.float32, torch.float16, torch.bfloat16, torch.float64, torch.int64, torch.int8, torch.bool,
          torch.complex64, torch.uint8]
shapes = st.lists(st.integers(0, 5), max_size=3)


@st.composite
def adapter_files(draw, good: bytes) -> bytes:
    choice = draw(st.integers(0, 3))
    if choice == 0:  # valid bytes with corruptions
        data = bytearray(good)
        for _ in range(draw(st.integers(1, 4))):
            data[draw(st.integers(0, len(data) - 1))] = draw(st.integers(0, 255))
        return bytes(data[: draw(st.integers(0, len(data)))]) if draw(st.booleans()) else bytes(data)
    if choice == 1:  # a hand-made header
        header = draw(json_values)
        blob = json.dumps(header, allow_nan=True).encode()
        return struct.pack("<Q", draw(st.sampled_from([len(blob), len(blob) + 7, 2**62]))) + blob + b"\0" * 16
    names = draw(st.lists(st.sampled_from(["head.weight", "head.bias", "base.proj.lora_A", "base.proj.lora_B", "x"]),
                          min_size=1, max_size=4, unique=True))
    tensors = {}
    for name in names:
        dtype = draw(st.sampled_from(DTYPES))
        shape = draw(shapes)
        tensor = torch.zeros(shape, dtype=dtype) if dtype in (torch.bool, torch.complex64) else \
            torch.full(shape, draw(st.sampled_from([0.0, 1.0, -2.0, math.nan, math.inf]))).to(dtype)
        tensors[name] = tensor
    labels = draw(st.one_of(st.just('["a", "b"]'), st.text(max_size=10), st.just("[1, 2]"), st.just("[" * 100)))
    metadata = {"format": "peft-studio-adapter/1", "method": "lora", "labels": labels,
                "config": draw(st.sampled_from(['{"r": 2}', "{", "[]", '{"r": 8}']))}
    return save_bytes(tensors, metadata=metadata)


@EXAMPLES
@given(data=st.data())
def test_generated_adapter_files_load_or_raise_without_touching_the_model(adapter_case, data):
    experiment, good = adapter_case
    blob = data.draw(adapter_files(good))
    path = FOLDER / "case.safetensors"
    path.write_bytes(blob)
    before = [p.detach().clone() for p in experiment.model.parameters()]
    loaded = []
    _timed(lambda: loaded.append(load_adapter(experiment, path)))
    if not loaded:  # refused: nothing changed
        assert all(torch.equal(a, b) for a, b in zip(before, experiment.model.parameters(), strict=True))
    for parameter in experiment.model.parameters():
        assert bool(torch.isfinite(parameter).all())


# ---- datasets --------------------------------------------------------------------------------------
odd_cells = st.one_of(st.text(max_size=20), st.sampled_from(["", " ", "\"", ",", "\t", "\n", "1.5"]))
words = st.lists(st.sampled_from(["good", "bad", "film", "plot", "x"]), min_size=1, max_size=4).map(" ".join)
good_cells = {"text": words,
              "label": st.sampled_from(["a", "b", "1", "2"]), "split": st.sampled_from(["train", "train", "dev"])}


@st.composite
def dataset_files(draw) -> tuple[str, bytes]:
    suffix = draw(st.sampled_from([".csv", ".tsv", ".jsonl", ".json"]))
    columns = draw(st.one_of(st.just(["text", "label"]), st.just(["label", "split", "text"]),
                             st.lists(st.sampled_from(["text", "label", "split", "x"]), min_size=1, max_size=4)))
    odd = st.one_of(odd_cells, scalars, st.lists(scalars, max_size=2)) if "json" in suffix else odd_cells
    good_row = st.tuples(*(good_cells.get(c, odd) for c in columns))
    odd_row = st.tuples(*(st.one_of(good_cells.get(c, odd), odd) for c in columns))
    rows = draw(st.lists(st.one_of(good_row, good_row, good_row, good_row, odd_row), min_size=1, max_size=12))
    if suffix in (".csv", ".tsv"):
        sep = "," if suffix == ".csv" else "\t"
        text = "\n".join(sep.join(str(c) for c in row) for row in [columns, *rows])
    elif suffix == ".jsonl":
        text = "\n".join(json.dumps(dict(zip(columns, row, strict=True))) for row in rows)
    else:
        text = json.dumps([dict(zip(columns, row, strict=True)) for row in rows])
    data = text.encode("utf-8", "surrogatepass")
    if draw(st.integers(0, 3)) == 0:  # a few random byte edits
        edits = bytearray(data or b" ")
        for _ in range(draw(st.integers(1, 3))):
            edits[draw(st.integers(0, len(edits) - 1))] = draw(st.sampled_from(b"[]{}\",\n\x00\xff:0"))
        data = bytes(edits)
    return suffix, data


@EXAMPLES
@given(case=dataset_files(), split=st.sampled_from([False, False, True]), max_rows=st.sampled_from([3, 50, 50]))
def test_generated_datasets_load_or_raise_a_studio_error(case, split, max_rows):
    suffix, data = case
    path = FOLDER / f"data{suffix}"
    path.write_bytes(data)
    _timed(lambda: load_dataset_file(path, "text", "label", split_column="split" if split else None,
                                     max_rows=max_rows))
