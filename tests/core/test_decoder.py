"""The decoder family: the same numbers as transformers' Llama and GPT-2, causal attention, meta-device
bases that inspect but never run, config.json errors that name the field, and a tiny decoder that trains."""

from __future__ import annotations

import json
import warnings

import pytest
import torch
from core_helpers import attach, build_base, toy_batch
from method_table import fitting_options

from peft_studio.cli import main
from peft_studio.core.bases import base_class, create_base
from peft_studio.core.bases.decoder import GPT2, LLAMA, DecoderBase, DecoderConfig, HashTokenizer
from peft_studio.core.data import load_builtin
from peft_studio.core.errors import BaseLoadError, ConfigError, PeftStudioError
from peft_studio.core.methods import METHODS
from peft_studio.core.model.census import take_census
from peft_studio.core.model.experiment import Experiment, Setup
from peft_studio.core.model.tensor_bytes import census_json, nf4_bytes
from peft_studio.core.runs.train import TrainSettings, train

transformers = pytest.importorskip("transformers")

LLAMA_SMALL = dict(vocab_size=50, hidden_size=32, num_layers=2, num_heads=4, num_kv_heads=2, intermediate_size=48,
                   max_positions=64, norm_eps=1e-6)


def _hf(config):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        config._attn_implementation = "eager"
        return transformers.AutoModelForCausalLM.from_config(config).eval()


def _batch():
    ids = torch.tensor([[5, 9, 3, 7, 2, 11], [4, 8, 1, 0, 0, 0]])
    return ids, ids != 0


def _compare_hidden(base: DecoderBase, hf) -> None:
    missing, unexpected = hf.load_state_dict(base.state_dict(), strict=False)
    assert not unexpected and all(".bias" in m or "masked_bias" in m for m in missing), (missing, unexpected)
    ids, mask = _batch()
    with torch.no_grad():
        ours, _ = base.encode(ids, mask)
        theirs = hf(input_ids=ids, attention_mask=mask.long(), output_hidden_states=True).hidden_states[-1]
    assert torch.allclose(ours[mask], theirs[mask], atol=1e-5)


@pytest.mark.parametrize("tied,qkv_bias", [(True, False), (False, True)])
def test_llama_style_equals_transformers_llama(tied, qkv_bias):
    torch.manual_seed(0)
    cfg = DecoderConfig(LLAMA, **LLAMA_SMALL, tie_word_embeddings=tied, qkv_bias=qkv_bias)
    base = DecoderBase(cfg, HashTokenizer(50))
    kind = transformers.Qwen2Config if qkv_bias else transformers.LlamaConfig
    hf = _hf(kind(vocab_size=50, hidden_size=32, intermediate_size=48, num_hidden_layers=2, num_attention_heads=4,
                  num_key_value_heads=2, max_position_embeddings=64, rms_norm_eps=1e-6, rope_theta=10000.0,
                  tie_word_embeddings=tied))
    _compare_hidden(base, hf)


def test_gpt2_style_equals_transformers_gpt2():
    torch.manual_seed(0)
    cfg = DecoderConfig(GPT2, vocab_size=50, hidden_size=32, num_layers=2, num_heads=4, num_kv_heads=4,
                        intermediate_size=128, max_positions=64, norm_eps=1e-5, hidden_act="gelu_new",
                        tie_word_embeddings=True)
    base = DecoderBase(cfg, HashTokenizer(50))
    for parameter in base.parameters():  # non-zero biases, so a transposed or missing one would show
        torch.nn.init.normal_(parameter, std=0.1)
    hf = _hf(transformers.GPT2Config(vocab_size=50, n_embd=32, n_layer=2, n_head=4, n_positions=64,
                                     activation_function="gelu_new", resid_pdrop=0, embd_pdrop=0, attn_pdrop=0))
    _compare_hidden(base, hf)


def test_attention_is_causal_and_a_prefix_is_seen_by_every_token():
    base = build_base("tiny-decoder")
    ids, mask = toy_batch(base, ["refund my order please", "refund my account please"])
    hidden, _ = base.encode(ids, mask)
    assert torch.allclose(hidden[0, :2], hidden[1, :2])  # same first two words: nothing later leaks back
    assert not torch.allclose(hidden[0, 2:], hidden[1, 2:])
    _, _, model = attach(base, "prefix-tuning", {"tokens": 3, "layers": "0"})
    with torch.no_grad():
        prefixed, _ = model.base.encode(ids, mask)
    assert not torch.allclose(prefixed[:, 0], hidden[:, 0])  # even the first token sees the prefix keys


def test_last_real_token_is_pooled():
    base = build_base("tiny-decoder")
    ids, mask = toy_batch(base, ["refund my order", "refund my order please now"])
    hidden, _ = base.encode(ids, mask)
    pooled = base(ids, mask)
    assert torch.equal(pooled[0], hidden[0, 2]) and torch.equal(pooled[1], hidden[1, 4])


# ---- the description ---------------------------------------------------------------------------
def test_gqa_tied_and_untied_in_blocks_and_census():
    qwen = create_base("qwen2.5-0.5b")  # 14 query heads, 2 K/V heads, tied embeddings
    labels = {b.id: b.label for top in qwen.blocks() for b in (top, *top.children)
              for b in (b, *b.children)}
    assert "14 Q heads, 2 K/V heads" in labels["model.layers.0.self_attn"]
    assert "lm_head" not in labels and "tied" in labels["model.embed_tokens"]
    assert qwen.site("model.layers.0.self_attn.k_proj").out_features == 128  # 2 heads x 64
    llama = create_base("llama-3-8b")
    assert "lm_head" in {b.id for b in llama.blocks()}
    assert any(r.name == "base.lm_head.weight" for r in take_census(_model(llama)).rows)
    assert not any(r.name == "base.lm_head.weight" for r in take_census(_model(qwen)).rows)


def _model(base):
    from peft_studio.core.model.studio_model import StudioModel

    return StudioModel(base)


def test_hf_names_are_transformers_names_and_slots_have_none():
    base = create_base("gpt2")
    assert base.hf_module("transformer.h.3.attn.c_attn") == "transformer.h.3.attn.c_attn"
    assert base.hf_module("transformer.h.3.attn.kv_prefix") is None
    assert base.site("transformer.h.0.attn.c_attn").in_features == 768


def test_every_method_attaches_on_meta_or_refuses_with_a_reason():
    data = load_builtin("intents")
    outcomes = {}
    for name in ("llama-3-8b", "gpt2"):
        for method in METHODS:
            try:
                experiment = Experiment(Setup(name, method, {}), data)
            except ConfigError as exc:
                outcomes[name, method] = str(exc)
                continue
            census = experiment.census()
            assert census.trainable == experiment.method_parameter_count() + experiment.head_parameter_count()
            outcomes[name, method] = "ok"
    assert "no such tensors" in outcomes["llama-3-8b", "bitfit"]  # Llama has no biases
    assert outcomes["gpt2", "bitfit"] == "ok"
    ok = {k for k, v in outcomes.items() if v == "ok"}
    assert {("llama-3-8b", m) for m in METHODS if m != "bitfit"} <= ok
    conv1d_refused = {m for m in METHODS if METHODS[m].refused_layers.get("Conv1D")}  # as PEFT refuses them
    assert {("gpt2", m) for m in METHODS if m not in conv1d_refused} <= ok  # QLoRA too: Conv1D quantized
    assert all("Conv1D" in outcomes["gpt2", m] for m in conv1d_refused)  # refused with the reason


def test_qlora_on_meta_counts_bitsandbytes_storage():
    experiment = Experiment(Setup("qwen2.5-0.5b", "qlora", {}), load_builtin("intents"))
    census = experiment.census()
    row = next(r for r in census.rows if r.name.endswith("layers.0.self_attn.q_proj.base_layer.weight_nf4"))
    assert row.bytes == nf4_bytes(896 * 896)
    assert census.quantization.tensors == 24 * 7


def test_nf4_bytes_equal_the_studio_quantizer_on_real_weights():
    _, _, model = attach(build_base("tiny-decoder"), "qlora", {})
    census = take_census(model)
    rows = [r for r in census.rows if r.dtype == "nf4"]
    assert rows and all(r.bytes == nf4_bytes(r.numel) for r in rows)
    columns = census_json(census, model.base)
    assert sum(t["bytes_nf4"] for t in columns["tensors"]) == columns["bytes_nf4"]


# ---- meta device: inspect, never run ---------------------------------------------------------------
def test_meta_base_refuses_training_and_prediction():
    experiment = Experiment(Setup("llama-3-70b", "lora", {"targets": "all-linear", "r": 16}), load_builtin("intents"))
    assert experiment.base.on_meta_device
    assert all(p.is_meta for p in experiment.model.parameters())  # head and LoRA too: no memory
    with pytest.raises(ConfigError, match="meta device"):
        next(train(experiment, TrainSettings(steps=1)))
    with pytest.raises(ConfigError, match="meta device"):
        experiment.predict(["refund please"])


def test_cli_inspects_a_meta_base_with_dtype_bytes_and_refuses_to_train(capsys):
    assert main(["inspect", "--base", "mistral-7b", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["on_meta_device"] and data["total"] > 7_241_732_096
    embed = next(t for t in data["tensors"] if t["name"] == "base.model.embed_tokens.weight")
    assert embed["shape"] == [32000, 4096] and embed["bytes_bf16"] == 2 * 32000 * 4096
    assert embed["bytes_nf4"] == embed["bytes_bf16"]  # embeddings stay unquantized
    q = next(t for t in data["tensors"] if t["name"] == "base.model.layers.0.self_attn.k_proj.weight")
    assert q["bytes_nf4"] == 1024 * 4096 // 2 + 4 * 1024 * 4096 // 64
    assert main(["train", "--base", "mistral-7b", "--steps", "1"]) == 2
    assert "meta device" in capsys.readouterr().err


# ---- config.json -----------------------------------------------------------------------------------
LLAMA_RAW = {"model_type": "llama", "vocab_size": 1000, "hidden_size": 64, "num_hidden_layers": 2,
             "num_attention_heads": 4, "num_key_value_heads": 2, "intermediate_size": 128}


def test_a_config_json_or_a_folder_with_only_config_json_is_a_base(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps(LLAMA_RAW))
    for spec in (str(tmp_path / "config.json"), str(tmp_path)):
        base = create_base(spec)
        assert base.on_meta_device and base.num_layers == 2
        assert base.site("model.layers.1.self_attn.v_proj").out_features == 32
        assert base_class(spec) is DecoderBase


@pytest.mark.parametrize("change,field", [
    ({"hidden_size": None}, "missing hidden_size"),
    ({"vocab_size": 0}, r"vocab_size = 0 is out of range \[2, "),
    ({"hidden_size": 66}, "hidden_size 66 is not divisible by num_attention_heads 4"),
    ({"num_key_value_heads": 3}, "num_attention_heads 4 is not divisible by num_key_value_heads 3"),
    ({"model_type": "t5"}, "model_type 't5' is not supported"),
    ({"model_type": None}, "missing model_type"),
    ({"tie_word_embeddings": "yes"}, "tie_word_embeddings must be true or false"),
    ({"hidden_act": "swoosh"}, "hidden_act 'swoosh' is not supported"),
])
def test_bad_configs_are_refused_naming_the_field(tmp_path, change, field):
    raw = {k: v for k, v in {**LLAMA_RAW, **change}.items() if v is not None}
    path = tmp_path / "config.json"
    path.write_text(json.dumps(raw))
    with pytest.raises(BaseLoadError, match=field):
        create_base(str(path))


def test_gpt2_config_names_its_own_fields(tmp_path):
    path = tmp_path / "gpt.json"
    path.write_text(json.dumps({"model_type": "gpt2", "vocab_size": 10, "n_embd": 30, "n_layer": 1, "n_head": 4}))
    with pytest.raises(BaseLoadError, match="n_embd 30 is not divisible by n_head 4"):
        create_base(str(path))


def test_missing_config_file_is_one_error(capsys):
    with pytest.raises(PeftStudioError, match="no such file"):
        create_base("/nonexistent/config.json")
    assert main(["inspect", "--base", "/nonexistent/config.json"]) == 2


# ---- tiny-decoder ----------------------------------------------------------------------------------
@pytest.mark.parametrize("method", [m for m in METHODS if m != "bitfit"])
def test_tiny_decoder_trains_every_method(method):
    data = load_builtin("intents")
    options = fitting_options(method, create_base("tiny-decoder", data.make_tokenizer()))  # PEFT-sized defaults
    experiment = Experiment(Setup("tiny-decoder", method, options or {}), data)
    losses = [event.loss for event in train(experiment, TrainSettings(steps=25, lr=1e-2, eval_every=25))]
    assert losses[-1] < losses[0]


def test_cli_trains_tiny_decoder(capsys):
    assert main(["train", "--base", "tiny-decoder", "--method", "lora", "--steps", "20", "--log-every", "10"]) == 0
    assert "step=019" in capsys.readouterr().out
