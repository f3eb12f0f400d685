"""Decoder checkpoint folders against transformers: random Llama, Mistral, Qwen2 and GPT-2 checkpoints saved by
save_pretrained, with hypothesis-drawn config fields (rope scaling, head_dim, biases, sliding windows, GQA, tied
heads, GPT-2's n_inner and attention scales, fp16/bf16 files, shards): float32 logits within 1e-4, the same
prompt ids as AutoTokenizer, greedy generation token for token; broken folders refused with file and tensor
named; unsupported families and fields refused by name; the memory check before any weight is read."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import warnings

import pytest
import torch
from decoder_checkpoints import FAMILY_CONFIGS, tokenizer_json, transformers_model, write_checkpoint
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from peft_studio.cli import main
from peft_studio.core.bases import base_class, create_base
from peft_studio.core.bases.decoder_checkpoint import DecoderCheckpointBase, LoadCancelled, load_decoder
from peft_studio.core.bases.decoder_families import COMMON_INERT, FAMILIES
from peft_studio.core.errors import BaseLoadError, ConfigError
from peft_studio.core.model.generate import GenerationSettings, generate

os.environ.setdefault("HF_HUB_OFFLINE", "1")
transformers = pytest.importorskip("transformers", reason="transformers is the test-only reference")
pytestmark = pytest.mark.filterwarnings("ignore::UserWarning", "ignore::FutureWarning")

TEXTS = ["refund my order please, the parcel never arrived and nobody answers my emails at all",
         "cannot login"]
EXAMPLES = settings(max_examples=10, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])


# ---- drawn configurations ------------------------------------------------------------------------------------
@st.composite
def rope(draw):
    kind = draw(st.sampled_from(["default", "linear", "dynamic", "yarn", "llama3", None]))
    theta = draw(st.sampled_from([10000.0, 500.0, 1e6]))
    if kind is None:  # the old style: rope_theta at the top, no scaling
        return {"rope_theta": theta}
    params = {"rope_type": kind, "rope_theta": theta}
    if kind != "default":
        params["factor"] = draw(st.sampled_from([2.0, 4.0, 8.0]))
    if kind == "llama3":
        params.update(low_freq_factor=1.0, high_freq_factor=4.0, original_max_position_embeddings=16)
    if kind == "yarn":
        params.update(original_max_position_embeddings=draw(st.sampled_from([8, 16])),
                      beta_fast=draw(st.sampled_from([32.0, 8.0])))
    return {"rope_parameters": params}


@st.composite
def llama_style(draw, family):
    heads = draw(st.sampled_from([2, 4]))
    fields = {"num_attention_heads": heads, "num_key_value_heads": draw(st.sampled_from([1, heads])),
              "rms_norm_eps": draw(st.sampled_from([1e-6, 1e-5])), "hidden_act": draw(st.sampled_from(["silu",
                                                                                                        "gelu"])),
              "tie_word_embeddings": draw(st.booleans()),
              # dynamic rope only acts past max_position_embeddings: the long text goes past 16
              "max_position_embeddings": draw(st.sampled_from([16, 64])), **draw(rope())}
    if family in ("llama", "mistral"):
        fields["head_dim"] = draw(st.sampled_from([None, 8, 12]))
    if family == "llama":
        fields.update(attention_bias=draw(st.booleans()), mlp_bias=draw(st.booleans()))
    if family == "mistral":
        fields["sliding_window"] = draw(st.sampled_from([None, 3, 7]))
    if family == "qwen2":
        use = draw(st.booleans())
        fields.update(use_sliding_window=use, sliding_window=draw(st.sampled_from([3, 5])),
                      max_window_layers=draw(st.sampled_from([0, 1])))
    return {k: v for k, v in fields.items() if v is not None}


@st.composite
def gpt2_style(draw):
    return {"n_head": draw(st.sampled_from([2, 4])), "n_inner": draw(st.sampled_from([None, 40])),
            "activation_function": draw(st.sampled_from(["gelu_new", "gelu", "relu"])),
            "scale_attn_weights": draw(st.booleans()), "scale_attn_by_inverse_layer_idx": draw(st.booleans()),
            "layer_norm_epsilon": draw(st.sampled_from([1e-5, 1e-3])),
            "tie_word_embeddings": draw(st.booleans())}


@st.composite
def checkpoints(draw):
    family = draw(st.sampled_from(sorted(FAMILY_CONFIGS)))
    fields = draw(gpt2_style()) if family == "gpt2" else draw(llama_style(family))
    storage = {"dtype": draw(st.sampled_from([torch.float32, torch.bfloat16, torch.float16])),
               "shard_bytes": draw(st.sampled_from([None, 6000]))}
    return family, fields, storage


def _logits_pair(folder):
    base = create_base(str(folder)).eval()
    theirs_model = transformers_model(folder)
    ids, mask = base.tokenizer.batch(TEXTS)
    with torch.no_grad():
        hidden, _ = base.encode(ids, mask)
        ours = base.lm_head(hidden)
        theirs = theirs_model(input_ids=ids, attention_mask=mask.long()).logits
    return base, ours[mask], theirs[mask]


@EXAMPLES
@given(drawn=checkpoints())
def test_logits_equal_transformers_on_drawn_checkpoints(tmp_path_factory, drawn):
    family, fields, storage = drawn
    folder = tmp_path_factory.mktemp(family)
    write_checkpoint(folder, family, **storage, **fields)
    base, ours, theirs = _logits_pair(folder)
    assert isinstance(base, DecoderCheckpointBase) and base.cfg.family == family
    assert ours.shape == theirs.shape
    assert torch.allclose(ours, theirs, atol=1e-4, rtol=0), (fields, (ours - theirs).abs().max())


@pytest.mark.parametrize("family,fields", [
    ("llama", {"rope_parameters": {"rope_type": "dynamic", "factor": 2.0, "rope_theta": 10000.0},
               "max_position_embeddings": 8}),
    ("mistral", {"sliding_window": 3}),
    ("qwen2", {"use_sliding_window": True, "sliding_window": 4, "max_window_layers": 1}),
    ("gpt2", {"tie_word_embeddings": False}),
])
def test_each_setting_changes_the_logits_so_the_comparison_can_fail(tmp_path, family, fields):
    """The drawn settings matter: the same weights without the setting give other logits on the long text."""
    plain = write_checkpoint(tmp_path / "plain", family, **{k: v for k, v in fields.items()
                                                            if k == "max_position_embeddings"})
    changed = write_checkpoint(tmp_path / "changed", family, **fields)
    _, ours_plain, _ = _logits_pair(plain)
    _, ours_changed, theirs_changed = _logits_pair(changed)
    assert torch.allclose(ours_changed, theirs_changed, atol=1e-4, rtol=0)
    if family != "gpt2":  # an untied GPT-2 head is a new tensor: its logits differ by construction
        assert not torch.allclose(ours_plain, ours_changed, atol=1e-3)


@pytest.mark.parametrize("family", sorted(FAMILY_CONFIGS))
def test_greedy_generation_equals_transformers_token_for_token(tmp_path, family):
    folder = write_checkpoint(tmp_path / family, family, std=0.3)
    base = create_base(str(folder))
    model = transformers_model(folder)
    tokenizer = transformers.AutoTokenizer.from_pretrained(folder)
    prompt = tokenizer("refund my order please").input_ids
    assert base.tokenizer.encode("refund my order please", limit=1000) == prompt
    ours = generate(base, prompt, GenerationSettings(max_new_tokens=16), base.tokenizer.special.eos_ids)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = model.generate(torch.tensor([prompt]), attention_mask=torch.ones(1, len(prompt), dtype=torch.long),
                                do_sample=False, max_new_tokens=16, pad_token_id=tokenizer.pad_token_id)
    assert ours.generated_ids == theirs[0, len(prompt):].tolist()
    assert len(set(ours.generated_ids)) > 1  # not one token repeated: the cache is really exercised


def test_cli_generate_json_gives_the_ids_and_text(tmp_path, capsys):
    folder = write_checkpoint(tmp_path / "q", "qwen2", std=0.3)
    tokenizer = transformers.AutoTokenizer.from_pretrained(folder)
    assert main(["generate", "--base", str(folder), "--json", "--max-new-tokens", "6", "need a refund"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["prompt_ids"] == tokenizer("need a refund").input_ids
    assert len(out["generated_ids"]) == 6 or out["stopped"] == "eos"
    assert out["text"] == tokenizer.decode(out["generated_ids"], skip_special_tokens=True)
    # sampling with a seed is reproducible, and differs from greedy for a flat enough distribution
    runs = [main(["generate", "--base", str(folder), "--json", "--temperature", "5", "--top-k", "50", "--seed", "7",
                  "need a refund"]) for _ in range(2)]
    first, second = (json.loads(line) for line in capsys.readouterr().out.strip().splitlines())
    assert runs == [0, 0] and first["generated_ids"] == second["generated_ids"]
    assert first["generated_ids"] != out["generated_ids"][:len(first["generated_ids"])]


@pytest.mark.parametrize("argv,message", [
    (["--top-k", "5"], "give a temperature too"),
    (["--temperature", "-1"], "temperature must be 0"),
    (["--adapter", "/nonexistent.safetensors"], "no such adapter file"),
])
def test_cli_generate_refuses_bad_input(tmp_path, capsys, argv, message):
    folder = write_checkpoint(tmp_path / "g", "gpt2")
    assert main(["generate", "--base", str(folder), *argv, "hello"]) == 2
    assert message in capsys.readouterr().err


def test_generation_past_learned_positions_is_refused(tmp_path):
    folder = write_checkpoint(tmp_path / "g", "gpt2", n_positions=16)
    base = create_base(str(folder))
    with pytest.raises(ConfigError, match="exceed the 16 positions"):
        generate(base, list(range(10)), GenerationSettings(max_new_tokens=10))


# ---- loading ----------------------------------------------------------------------------------------------------
def test_loading_reports_progress_and_can_be_cancelled(tmp_path):
    folder = write_checkpoint(tmp_path / "l", "llama", shard_bytes=6000)
    assert len(list(folder.glob("model-*.safetensors"))) > 1  # sharded
    seen = []
    base = load_decoder(folder, progress=lambda fraction, text: seen.append(fraction))
    assert seen[0] == 0.0 and seen[-1] == 1.0 and seen == sorted(seen)
    assert not any(p.is_meta for p in base.parameters())
    calls = []
    with pytest.raises(LoadCancelled, match="cancelled"):
        load_decoder(folder, cancelled=lambda: calls.append(1) or len(calls) > 3)


def test_a_folder_with_only_config_json_is_a_meta_base_and_the_class_follows_the_family(tmp_path):
    folder = write_checkpoint(tmp_path / "c", "mistral")
    assert base_class(str(folder)) is DecoderCheckpointBase
    only = tmp_path / "only"
    only.mkdir()
    shutil.copy(folder / "config.json", only / "config.json")
    base = create_base(str(only))
    assert base.on_meta_device and base.cfg.family == "mistral" and base.cfg.sliding_window == 4096


def _edit(folder, **changes):
    config = json.loads((folder / "config.json").read_text())
    config.update(changes)
    (folder / "config.json").write_text(json.dumps(config))


def _resave(folder, change):
    from safetensors.torch import load_file, save_file

    tensors = load_file(str(folder / "model.safetensors"))
    change(tensors)
    save_file(tensors, str(folder / "model.safetensors"), metadata={"format": "pt"})


def _drop_shard(folder):
    next(iter(sorted(folder.glob("model-*.safetensors")))).unlink()


def _index_lies(folder):
    index = json.loads((folder / "model.safetensors.index.json").read_text())
    index["weight_map"]["model.layers.0.mlp.extra.weight"] = next(iter(index["weight_map"].values()))
    (folder / "model.safetensors.index.json").write_text(json.dumps(index))


@pytest.mark.parametrize("breakage,message", [
    (lambda f: _resave(f, lambda t: t.pop("model.layers.1.mlp.down_proj.weight")),
     "model.safetensors: missing 1 tensor(s): model.layers.1.mlp.down_proj.weight"),
    (lambda f: _resave(f, lambda t: t.update({"model.layers.0.self_attn.q_norm.weight": torch.ones(8)})),
     "model.safetensors: unexpected tensor model.layers.0.self_attn.q_norm.weight"),
    (lambda f: _resave(f, lambda t: t.update({"score.weight": torch.ones(2, 32)})), "a classification head"),
    (lambda f: _resave(f, lambda t: t.update({"model.norm.weight": torch.ones(31)})),
     "model.norm.weight has shape (31,), config.json implies (32,)"),
    (lambda f: _resave(f, lambda t: t.update({"model.norm.weight": torch.ones(32, dtype=torch.int32)})),
     "dtype I32 is not supported"),
    (lambda f: _resave(f, lambda t: t.update({"model.norm.weight": torch.full((32,), float("nan"))})),
     "model.norm.weight holds NaN"),
    (lambda f: _edit(f, num_hidden_layers=3), "missing 9 tensor(s): model.layers.2."),
    (lambda f: _edit(f, num_hidden_layers=1), "unexpected tensor model.layers.1.input_layernorm.weight "
                                              "(config.json says 1 layers)"),
    (lambda f: _edit(f, attention_bias=True), "missing 8 tensor(s): model.layers.0.self_attn.q_proj.bias"),
    (lambda f: (f / "tokenizer.json").unlink(), "no tokenizer.json"),
    (lambda f: (f / "tokenizer.json").write_text("{}"), "tokenizer.json: not a tokenizers file"),
    (lambda f: (f / "model.safetensors").unlink(), "no model.safetensors or model.safetensors.index.json"),
    (lambda f: (f / "model.safetensors").rename(f / "pytorch_model.bin"), "pickle"),
    (lambda f: (f / "model.safetensors").write_bytes(b"nothing"), "model.safetensors: not a safetensors file"),
    (lambda f: _edit(f, model_type="gemma"), "model_type 'gemma' is not supported (supported decoders: llama, "
                                             "mistral, qwen2, gpt2"),
    (lambda f: _edit(f, model_type="qwen3"), "model_type 'qwen3' is not supported"),
    (lambda f: _edit(f, model_type="mixtral"), "model_type 'mixtral' is not supported"),
    (lambda f: _edit(f, rope_scaling={"rope_type": "longrope", "factor": 2.0, "short_factor": [1.0],
                                      "long_factor": [1.0]}), "rope_type 'longrope' is not implemented"),
    (lambda f: _edit(f, rope_scaling={"rope_type": "llama3", "factor": 8.0}), "rope_parameters.low_freq_factor is "
                                                                              "missing"),
    (lambda f: _edit(f, partial_rotary_factor=0.5), "partial_rotary_factor = 0.5 is not implemented"),
    (lambda f: _edit(f, quantization_config={"quant_method": "gptq", "bits": 4}), "quantization_config = "),
    (lambda f: _edit(f, hidden_act="swoosh"), "hidden_act 'swoosh' is not supported"),
    (lambda f: _edit(f, vocab_size=10), "lm_head.weight has shape (183, 32), config.json implies (10, 32)"),
    (lambda f: (f / "tokenizer.json").write_text(tokenizer_json("bytelevel", 300)), "tokenizer.json: the tokenizer "
                                                                                   "has 300 tokens but config.json "
                                                                                   "vocab_size is 183"),
])
def test_broken_folders_are_refused_with_file_and_tensor_named(tmp_path, breakage, message):
    folder = write_checkpoint(tmp_path / "broken", "llama")
    breakage(folder)
    with pytest.raises(BaseLoadError) as error:
        create_base(str(folder))
    assert message in str(error.value)


@pytest.mark.parametrize("breakage,message", [
    (_drop_shard, "shard model-00001-of-"),
    (_index_lies, "lacks tensor model.layers.0.mlp.extra.weight"),
])
def test_broken_shards_are_refused(tmp_path, breakage, message):
    folder = write_checkpoint(tmp_path / "sharded", "llama", shard_bytes=6000)
    breakage(folder)
    with pytest.raises(BaseLoadError, match=message):
        create_base(str(folder))


def test_gpt2_refusals_name_its_fields(tmp_path):
    folder = write_checkpoint(tmp_path / "g", "gpt2")
    _edit(folder, add_cross_attention=True)
    with pytest.raises(BaseLoadError, match="add_cross_attention = True is not implemented"):
        create_base(str(folder))


def test_oversized_checkpoints_are_refused_before_any_weight_is_read(tmp_path, monkeypatch):
    folder = write_checkpoint(tmp_path / "big", "llama", vocab_size=20_000)  # 2 x 20k x 32 floats: about 5 MB
    monkeypatch.setenv("PEFT_STUDIO_MEMORY_LIMIT_MB", "1")
    import safetensors

    def no_read(*args, **kwargs):
        raise AssertionError("a weight was read")

    monkeypatch.setattr(safetensors, "safe_open", no_read)
    with pytest.raises(BaseLoadError, match=r"big: its weights take 0.0 GB in float32 .* the limit is 0.0 GB"):
        create_base(str(folder))
    assert main(["inspect", "--base", str(folder)]) == 2


def test_every_transformers_config_field_is_accounted_for():
    """A field transformers' config class declares is implemented, inert or refused by the family row: a new field
    in a later transformers fails here instead of being silently ignored."""
    for model_type, fam in FAMILIES.items():
        config_class = getattr(transformers, FAMILY_CONFIGS[model_type])
        declared = {f.name for f in dataclasses.fields(config_class)}
        known = (set(fam.keys.values()) | set(fam.inert) | set(fam.refused) | set(COMMON_INERT)
                 | {key for key in fam.biases.values() if isinstance(key, str)}
                 | {key for key, _ in fam.dropouts.values()} | {"rope_parameters"})
        assert declared <= known, (model_type, sorted(declared - known))
