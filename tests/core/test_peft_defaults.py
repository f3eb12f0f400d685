"""Defaults the studio shares with PEFT on decoders (peft/utils/constants.py), counted on transformers' models built
on the meta device from the shipped config.json files: IA3's target and feedforward_modules mappings per model
type, also when targets are named (feedforward_modules then still defaults to the model type's), and LayerNorm
tuning's targets (Qwen2: post_attention_layernorm only)."""

from __future__ import annotations

import pytest
from test_decoder_peft import peft, peft_trainable, studio_trainable

from peft_studio.core.bases.architectures import shipped

DECODERS = ["llama-3-8b", "mistral-7b", "qwen2.5-0.5b", "gpt2"]


@pytest.mark.parametrize("name", DECODERS)
def test_default_ia3_and_ln_tuning_count_what_peft_s_defaults_count(name):
    assert name in shipped()
    assert studio_trainable(name, "ia3", {}) == peft_trainable(name, peft.IA3Config(task_type="CAUSAL_LM"))
    assert studio_trainable(name, "ln-tuning", {}) == peft_trainable(name, peft.LNTuningConfig(task_type="CAUSAL_LM"))


@pytest.mark.parametrize(("name", "targets"), [
    ("llama-3-8b", ["k_proj", "v_proj", "down_proj"]),  # 524,288 in PEFT: down_proj's input is 14,336 wide
    ("qwen2.5-0.5b", ["q_proj", "down_proj"]),
    ("mistral-7b", ["down_proj", "up_proj"]),
    ("gpt2", ["c_attn", "mlp.c_proj"]),
])
def test_named_ia3_targets_take_the_model_types_feedforward_modules(name, targets):
    theirs = peft_trainable(name, peft.IA3Config(task_type="CAUSAL_LM", target_modules=targets))
    assert studio_trainable(name, "ia3", {"targets": ",".join(targets)}) == theirs
    if name == "llama-3-8b":
        assert theirs == 524_288


def test_any_feed_forward_module_scales_its_input_as_peft_does():
    """Every decoder Linear has an input site, so feedforward_modules may name any of them (up_proj's input is
    the hidden state, 4,096 wide on Llama-3-8B, not the activation)."""
    config = peft.IA3Config(task_type="CAUSAL_LM", target_modules=["up_proj"], feedforward_modules=["up_proj"])
    theirs = peft_trainable("llama-3-8b", config)
    assert studio_trainable("llama-3-8b", "ia3", {"targets": "up_proj", "feedforward": "up_proj"}) == theirs
    assert theirs == 32 * 4096
