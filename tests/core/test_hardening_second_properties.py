"""Drawn hostile input for the surfaces of the second hardening pass (issue 27): an adapter file's metadata,
architecture config.json files, PEFT adapter configs and numeric options at the edges of their dtypes. 300
examples each, through the command line run in-process. Every example ends in the refusal contract (exit 2,
one `error:` line) or in a correct run (exit 0: the trainer itself checks that the frozen base is bit-identical
afterwards, an adapter set is checked against its base's fingerprint, an import is counted against PEFT), and
within a time bound that only a hang or a minutes-long build would break."""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path
from unittest import mock

import pytest
from hostile_helpers import (
    LIMIT_S,
    bert_checkpoint,
    cli,
    peft_lora_folder,
    refused_or_ran,
    rewrite_metadata,
    set_file,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

EXAMPLES = settings(max_examples=300, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
FOLDER = Path(tempfile.mkdtemp(prefix="peft-studio-second-"))
SMALL_MEMORY = {"PEFT_STUDIO_MEMORY_LIMIT_MB": "300"}  # legal but large requests are refused, never allocated

scalars = st.one_of(st.none(), st.booleans(), st.integers(-2**70, 2**70), st.floats(allow_nan=False,
                                                                                    allow_infinity=False),
                    st.text(max_size=12), st.sampled_from(["", "8", "1e400", "nan", "q,v", "<img src=/dev/zero>"]))
json_values = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                            st.dictionaries(st.text(max_size=8), inner, max_size=4)),
                           max_leaves=12)
raw_json = st.sampled_from(["[" * 5000 + "]" * 5000, "NaN", "1e999", "9" * 5000, '{"a": 1, "a": 2}', "{", "",
                            '{"d_model": 64}', "[]", "null", '"text"'])
float32_edges = st.sampled_from([3.4028234663852886e38, 3.4028235677973366e38, 3.5e38, 1e39, 1e300, -3.5e38,
                                 3.4e37, 3.5e37, 1e-45, 1.4e-45, 7e-46, 1e-50, 1e-300, -0.0, 0.0, 5e-324,
                                 1.1754943508222875e-38])
int_edges = st.sampled_from([2**31 - 1, 2**31, -2**31, -2**31 - 1, 2**32, 2**53 + 1, 2**63 - 1, 2**63, 2**64,
                             2**64 + 1, -2**63, -2**63 - 1, 10**30, 0, -1, 1])


# ---- an adapter file's metadata ------------------------------------------------------------------------
@pytest.fixture(scope="module")
def good_set_file() -> Path:
    return set_file(FOLDER)


METADATA_KEYS = ["format", "base", "method", "config", "labels", "base_fingerprint", "adapter_name", "task", "seed",
                 "base_seed", "base_options", "tokenizer"]
plausible_metadata = {
    "base_options": st.fixed_dictionaries({}, optional={"d_model": st.one_of(int_edges, st.integers(1, 64)),
                                                        "n_heads": st.sampled_from([1, 2, 3, 4, 0, -1]),
                                                        "n_layers": st.one_of(int_edges, st.integers(1, 3)),
                                                        "norm_placement": st.sampled_from(["pre", "post", "mid"])}),
    "labels": st.lists(st.one_of(st.sampled_from(["refund", "login", "a", "<b>x</b>"]), st.text(max_size=4)),
                       max_size=7),
    "config": st.fixed_dictionaries({}, optional={"r": st.one_of(int_edges, st.integers(1, 4)),
                                                  "alpha": st.one_of(float32_edges, scalars),
                                                  "dropout": st.one_of(float32_edges, scalars),
                                                  "targets": st.sampled_from(["q,v", "q", "nope", None, ["q"]])}),
    "seed": int_edges, "base_seed": int_edges,
}


@st.composite
def metadata_changes(draw) -> dict[str, str | None]:
    changes: dict[str, str | None] = {}
    for key in draw(st.lists(st.sampled_from(METADATA_KEYS), min_size=1, max_size=3, unique=True)):
        kind = draw(st.integers(0, 3))
        if kind == 0:
            changes[key] = None  # removed
        elif kind == 1:
            changes[key] = draw(raw_json)
        elif kind == 2 and key in plausible_metadata:
            value = draw(plausible_metadata[key])
            changes[key] = str(value) if isinstance(value, int) else json.dumps(value)
        else:
            changes[key] = json.dumps(draw(json_values))
    return changes


@EXAMPLES
@given(changes=metadata_changes())
def test_drawn_adapter_metadata_is_refused_or_loads_onto_an_unchanged_base(good_set_file, changes):
    path = rewrite_metadata(good_set_file, FOLDER / "drawn.safetensors", changes)
    with mock.patch.dict("os.environ", SMALL_MEMORY):
        code, _, err, seconds = cli("predict", "--adapters", path, "--list")
    assert seconds < LIMIT_S
    if refused_or_ran(code, err):
        from peft_studio.core.adapters.adapter_set import AdapterSet

        adapters = AdapterSet.from_files([path])
        assert adapters.frozen_fingerprint() == adapters.base_fingerprint


# ---- architecture config.json files -----------------------------------------------------------------
BASES = {
    "llama": {"model_type": "llama", "vocab_size": 128, "hidden_size": 32, "num_hidden_layers": 2,
              "num_attention_heads": 4, "num_key_value_heads": 2, "intermediate_size": 64},
    "gpt2": {"model_type": "gpt2", "vocab_size": 128, "n_embd": 32, "n_layer": 2, "n_head": 4, "n_positions": 64},
    "bert": {"model_type": "bert", "vocab_size": 128, "hidden_size": 32, "num_hidden_layers": 2,
             "num_attention_heads": 4, "intermediate_size": 64, "max_position_embeddings": 64},
}
SIZE_FIELDS = ["vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads", "num_key_value_heads",
               "intermediate_size", "max_position_embeddings", "head_dim", "n_embd", "n_layer", "n_head",
               "n_positions", "n_inner", "type_vocab_size"]
OTHER_FIELDS = ["rope_theta", "rms_norm_eps", "layer_norm_eps", "layer_norm_epsilon", "tie_word_embeddings",
                "hidden_act", "attention_bias", "mlp_bias", "model_type", "activation_function", "sliding_window"]
rope_blocks = st.fixed_dictionaries({}, optional={
    "rope_type": st.sampled_from(["default", "linear", "dynamic", "yarn", "llama3", "warp", 3]),
    "factor": st.one_of(float32_edges, st.sampled_from([1.0, 8.0, 0.5, -1.0, "2"])),
    "rope_theta": st.one_of(float32_edges, st.sampled_from([10000.0, 5e5, -1.0, 0])),
    "low_freq_factor": st.sampled_from([1.0, 4.0, -1.0]), "high_freq_factor": st.sampled_from([4.0, 1.0, "x"]),
    "original_max_position_embeddings": st.one_of(int_edges, st.sampled_from([32, 8192])),
    "short_factor": st.lists(st.one_of(float32_edges, st.just(1.0)), max_size=3), "surprise": scalars})
sizes = st.one_of(st.sampled_from([1, 2, 4, 8, 16, 32, 64, 128]), int_edges, st.sampled_from([256, 257, 4096]),
                  scalars)


@st.composite
def config_files(draw) -> dict:
    config = dict(BASES[draw(st.sampled_from(sorted(BASES)))])
    for key in draw(st.lists(st.sampled_from(SIZE_FIELDS), max_size=3, unique=True)):
        config[key] = draw(sizes)
    for key in draw(st.lists(st.sampled_from(OTHER_FIELDS), max_size=2, unique=True)):
        config[key] = draw(st.one_of(float32_edges, scalars, st.sampled_from(["silu", "gelu_new", True, "llama"])))
    if draw(st.booleans()):
        config[draw(st.sampled_from(["rope_parameters", "rope_scaling"]))] = draw(
            st.one_of(rope_blocks, json_values, st.dictionaries(st.sampled_from(["full_attention", "sliding"]),
                                                               rope_blocks, max_size=2)))
    return config


@EXAMPLES
@given(config=config_files())
def test_drawn_config_files_are_refused_at_once_or_inspected(config):
    path = FOLDER / "drawn-config.json"
    path.write_text(json.dumps(config))
    code, out, err, seconds = cli("inspect", "--base", path, "--method", "lora", "--json")
    assert seconds < LIMIT_S
    if refused_or_ran(code, err):
        census = json.loads(out)
        assert census["on_meta_device"] and census["total"] >= census["trainable"] > 0


# ---- PEFT adapter configs --------------------------------------------------------------------------
@pytest.fixture(scope="module")
def peft_source() -> tuple[Path, Path]:
    checkpoint = bert_checkpoint(FOLDER / "bert")
    return checkpoint, peft_lora_folder(checkpoint, FOLDER / "lora-source")


PEFT_FIELDS = {
    "lora_alpha": st.one_of(float32_edges, st.sampled_from([4, 8, 0.5, -1, "4", True, None])),
    "r": st.one_of(int_edges, st.sampled_from([2, 4, "2"])),
    "lora_dropout": st.one_of(float32_edges, st.sampled_from([0.0, 0.1, 0.999, 1.0, -0.1])),
    "target_modules": st.one_of(
        st.lists(st.sampled_from(["query", "value", "key", "nope", "query"]), max_size=6),  # "dense": issue 19 (pooler)
        st.sampled_from(["query", ".*query", "(a+)+$", ["query"] * 1001, [1, 2], None])),
    "layers_to_transform": st.one_of(st.lists(st.one_of(st.integers(-1, 3), int_edges), max_size=4), int_edges,
                                     st.sampled_from([None, [0, 1], [0, 0, 1], "0"])),
    "modules_to_save": st.one_of(st.none(), st.lists(st.sampled_from(["classifier", "pooler", "x"]), max_size=3),
                                 st.just(["classifier"] * 1001), scalars),
    "bias": st.sampled_from(["none", "all", "lora_only", 1]),
    "use_rslora": st.sampled_from([True, False, "true", None]),
    "fan_in_fan_out": st.sampled_from([True, False, 0]),
    "task_type": st.sampled_from([None, "FEATURE_EXTRACTION", "SEQ_CLS", "CAUSAL_LM", "X", 3]),
    "inference_mode": st.sampled_from([True, False, "yes"]),
    "layers_pattern": st.sampled_from([None, "layer", "encoder.layer", ["layer"], 5]),
    "peft_type": st.sampled_from(["LORA", "IA3", "VERA", "lora", None]),
}


@EXAMPLES
@given(changes=st.dictionaries(st.sampled_from(sorted(PEFT_FIELDS)), st.none(), min_size=1, max_size=3).flatmap(
    lambda keys: st.fixed_dictionaries({k: PEFT_FIELDS[k] for k in keys})))
def test_drawn_peft_configs_are_refused_by_name_or_import_as_peft_counts(peft_source, changes):
    checkpoint, source = peft_source
    folder = FOLDER / "lora-drawn"
    shutil.rmtree(folder, ignore_errors=True)
    shutil.copytree(source, folder)
    config = json.loads((folder / "adapter_config.json").read_text())
    config.update(changes)
    (folder / "adapter_config.json").write_text(json.dumps(config))
    code, out, err, seconds = cli("inspect", "--base", checkpoint, "--import-peft", folder, "--dataset", "sentiment",
                                  "--json")
    assert seconds < LIMIT_S
    if refused_or_ran(code, err):
        studio = sum(row["numel"] for row in json.loads(out)["tensors"] if row["owner"] == "method")
        assert studio == peft_trainable(checkpoint, config)


def peft_trainable(checkpoint: Path, config: dict) -> int:
    """What PEFT itself trains for this config on this checkpoint (the reference for an accepted import)."""
    from peft import LoraConfig, get_peft_model
    from transformers import BertModel

    fields = set(LoraConfig.__dataclass_fields__)
    settings = {k: v for k, v in config.items() if k in fields and k not in ("peft_type", "task_type",
                                                                             "modules_to_save")}
    model = get_peft_model(BertModel.from_pretrained(str(checkpoint)), LoraConfig(**settings))
    return sum(p.numel() for n, p in model.named_parameters() if "lora_" in n)  # inference_mode freezes them


# ---- numeric options at the edges of their dtypes ----------------------------------------------------
NUMERIC_FLAGS = {
    "--lr": float32_edges, "--weight-decay": float32_edges, "--alpha": float32_edges, "--dropout": float32_edges,
    "--d-initial": float32_edges, "--r": int_edges, "--tokens": int_edges, "--bottleneck": int_edges,
    "--projection-prng-key": int_edges, "--seed": int_edges, "--batch-size": int_edges, "--steps": int_edges,
}
METHOD_FLAGS = {"lora": ["--alpha", "--dropout", "--r"], "vera": ["--d-initial", "--projection-prng-key", "--r"],
                "prompt-tuning": ["--tokens"], "adapter": ["--bottleneck"], "ia3": []}
TRAINING_FLAGS = {"--lr": "lr", "--weight-decay": "weight_decay", "--seed": "seed", "--batch-size": "batch_size",
                  "--steps": "steps"}


@EXAMPLES
@given(data=st.data(), method=st.sampled_from(sorted(METHOD_FLAGS)), as_setup=st.booleans())
def test_drawn_numbers_at_dtype_limits_are_refused_or_train(data, method, as_setup):
    names = [*METHOD_FLAGS[method], *(f for f in TRAINING_FLAGS if as_setup or f != "--weight-decay")]
    chosen = data.draw(st.lists(st.sampled_from(names), min_size=1, max_size=2, unique=True))
    flags = {flag: data.draw(NUMERIC_FLAGS[flag]) for flag in chosen}
    steps = flags.pop("--steps", 1)
    if as_setup:  # the same numbers through a setup file, where they are JSON
        training = {"steps": steps, "lr": 0.01, "batch_size": 0, "optimizer": "adamw", "weight_decay": 0.0, "seed": 0,
                    "eval_every": 10}
        options = {}
        for flag, value in flags.items():
            if flag in TRAINING_FLAGS:
                training[TRAINING_FLAGS[flag]] = value
            else:
                options[flag[2:].replace("-", "_")] = value
        document = {"format": "peft-studio-setup", "version": 1, "base": "seed-pooled", "base_options": {},
                    "method": method, "options": options, "seed": 0, "dataset": {"builtin": "seed-intents"},
                    "training": training}
        path = FOLDER / "drawn-setup.json"
        path.write_text(json.dumps(document))
        argv = ["train", "--setup", path]
    else:
        argv = ["train", "--base", "seed-pooled", "--dataset", "seed-intents", "--method", method, "--optimizer",
                "adamw", "--steps", str(steps)]
        for flag, value in flags.items():
            argv += [flag, repr(value)]
    with mock.patch.dict("os.environ", SMALL_MEMORY):
        code, out, err, seconds = cli(*argv)
    assert seconds < LIMIT_S or code == 0  # a legal run of many steps may take longer; a refusal never does
    if refused_or_ran(code, err):
        assert "step=" in out
