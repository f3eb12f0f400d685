"""DoRA, VeRA and LayerNorm tuning against Hugging Face PEFT on MiniLM: the same counts and the same outputs,
on configurations drawn by hypothesis (targets, layers, ranks)."""

from __future__ import annotations

import copy
import inspect
import re
import sys

import pytest
import torch
from core_helpers import attach, build_base, toy_batch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from peft_reference import PEFT_WARNINGS, peft, transformers  # offline switches, reference skips

from peft_studio.core.bases.hf_names import hf_module
from peft_studio.core.methods import get_method
from peft_studio.core.methods.config import make_config
from peft_studio.core.methods.dora import DoraLinear
from peft_studio.core.methods.ln_tuning import TunedNorm
from peft_studio.core.methods.vera import VeraLinear
from peft_studio.core.model.census import take_census

pytestmark = PEFT_WARNINGS

TEXTS = ["the food was great", "terrible service and a long slow wait", "ok"]
LINEARS = ["query", "key", "value", "attention.output.dense", "intermediate.dense", "output.dense"]
NORMS = ["attention.output.LayerNorm", "output.LayerNorm", "LayerNorm"]
SETTINGS = settings(max_examples=4, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                         HealthCheck.function_scoped_fixture])


@pytest.fixture(scope="module")
def minilm():
    from peft_studio.core.bases.pretrained import load_pretrained

    return load_pretrained("minilm")


@pytest.fixture(scope="module")
def hf_bert(minilm):
    return transformers.BertModel.from_pretrained(str(minilm.folder)).eval()


def _peft(hf_bert, config):
    return peft.get_peft_model(copy.deepcopy(hf_bert), config).eval()


def _trainable(wrapped) -> int:
    return sum(p.numel() for p in wrapped.parameters() if p.requires_grad)


def _layers(draw):
    return sorted(draw(st.lists(st.integers(0, 5), min_size=1, max_size=6, unique=True)))


def _hidden(model_or_base, ids, mask):
    with torch.no_grad():
        if hasattr(model_or_base, "encode"):
            return model_or_base.encode(ids, mask)[0]
        return model_or_base(input_ids=ids, attention_mask=mask.long()).last_hidden_state


def _compare(minilm, wrapped, model):
    ids, mask = minilm.tokenizer.batch(TEXTS)
    model.eval()
    ours, theirs = _hidden(minilm, ids, mask), _hidden(wrapped, ids, mask)
    assert (ours - theirs)[mask].abs().max() <= 1e-4
    return ours


def _peft_module(wrapped, studio_path):
    return wrapped.base_model.model.get_submodule(hf_module(studio_path))


def _nudge(model, generator, scale=0.05):
    with torch.no_grad():
        for parameter in model.base.parameters():
            if parameter.requires_grad:
                parameter.add_(scale * torch.randn(parameter.shape, generator=generator))


# ---- DoRA ----------------------------------------------------------------------------------------
@SETTINGS
@given(st.data())
def test_dora_counts_and_outputs_equal_peft(minilm, hf_bert, data):
    targets = data.draw(st.lists(st.sampled_from(LINEARS), min_size=1, max_size=3, unique=True))
    layers, r = _layers(data.draw), data.draw(st.integers(1, 16))
    alpha = data.draw(st.sampled_from([1.0, 8.0, 16.0]))
    method, config, model = attach(minilm, "dora", {"targets": ",".join(targets), "layers": ",".join(map(str, layers)),
                                                    "r": r, "alpha": alpha})
    try:
        wrapped = _peft(hf_bert, peft.LoraConfig(r=r, lora_alpha=alpha, target_modules=targets, use_dora=True,
                                                 layers_to_transform=layers))
        count = method.parameter_count(config, minilm)
        assert count == _trainable(wrapped) == take_census(model).trainable_of("method")
        generator = torch.Generator().manual_seed(r)
        _nudge(model, generator)  # B non-zero, magnitudes moved: a real direction and a real length change
        modules = [(p, m) for p, m in minilm.named_modules() if isinstance(m, DoraLinear)]
        with torch.no_grad():
            for path, module in modules:
                theirs = _peft_module(wrapped, path)
                assert torch.allclose(theirs.lora_magnitude_vector["default"].weight,
                                      torch.linalg.norm(module.base_layer.weight, dim=1))  # same initial magnitude
                theirs.lora_A["default"].weight.copy_(module.lora_A)
                theirs.lora_B["default"].weight.copy_(module.lora_B)
                theirs.lora_magnitude_vector["default"].weight.copy_(module.lora_magnitude_vector)
        before = _compare(minilm, wrapped, model)
        for _, module in modules:  # merging gives the same function
            module.merge()
        ids, mask = minilm.tokenizer.batch(TEXTS)
        assert (_hidden(minilm, ids, mask) - before)[mask].abs().max() <= 1e-4
    finally:
        model.detach_method()


# ---- VeRA ----------------------------------------------------------------------------------------
@SETTINGS
@given(st.data())
def test_vera_counts_projections_and_outputs_equal_peft(minilm, hf_bert, data):
    targets = data.draw(st.lists(st.sampled_from(LINEARS), min_size=1, max_size=3, unique=True))
    layers, r = _layers(data.draw), data.draw(st.integers(1, 64))
    key = data.draw(st.integers(0, 2**31 - 1))
    d_initial = data.draw(st.sampled_from([0.1, 0.5]))
    method, config, model = attach(minilm, "vera", {"targets": ",".join(targets), "r": r, "projection_prng_key": key,
                                                    "layers": ",".join(map(str, layers)), "d_initial": d_initial})
    try:
        wrapped = _peft(hf_bert, peft.VeraConfig(r=r, target_modules=targets, layers_to_transform=layers,
                                                 projection_prng_key=key, d_initial=d_initial))
        census = take_census(model)
        count = method.parameter_count(config, minilm)
        assert count == _trainable(wrapped) == census.trainable_of("method")
        projection = model.extras["vera_projection"]  # the shared pair: PEFT's, drawn from the same key
        assert torch.equal(projection.vera_A, wrapped.base_model.vera_A["default"])
        assert torch.equal(projection.vera_B, wrapped.base_model.vera_B["default"])
        frozen = [row for row in census.rows if row.name.startswith("extras.vera_projection.")]
        assert [(row.owner, row.trainable) for row in frozen] == [("method", False)] * 2
        modules = [(p, m) for p, m in minilm.named_modules() if isinstance(m, VeraLinear)]
        with torch.no_grad():
            for path, module in modules:
                theirs = _peft_module(wrapped, path)
                assert torch.equal(theirs.vera_lambda_d["default"], module.vera_lambda_d)  # same start
                assert torch.equal(theirs.vera_lambda_b["default"], module.vera_lambda_b)
        _nudge(model, torch.Generator().manual_seed(key % 1000))
        with torch.no_grad():
            for path, module in modules:
                theirs = _peft_module(wrapped, path)
                theirs.vera_lambda_d["default"].copy_(module.vera_lambda_d)
                theirs.vera_lambda_b["default"].copy_(module.vera_lambda_b)
        _compare(minilm, wrapped, model)
    finally:
        model.detach_method()


# ---- LayerNorm tuning ----------------------------------------------------------------------------
@SETTINGS
@given(st.data())
def test_ln_tuning_counts_and_outputs_equal_peft(minilm, hf_bert, data):
    targets = data.draw(st.lists(st.sampled_from(NORMS), min_size=1, max_size=2, unique=True))
    layers = _layers(data.draw) if data.draw(st.booleans()) else list(range(6))
    method, config, model = attach(minilm, "ln-tuning", {"targets": ",".join(targets),
                                                         "layers": ",".join(map(str, layers))})
    try:
        # PEFT's LNTuningConfig has no layers_to_transform: name the modules in full (a list entry matches a name
        # equal to it or ending with "." + it). The studio's layers mean what layers_to_transform means elsewhere
        # in PEFT: given layers, a norm outside the layer stack (the embeddings' LayerNorm) is not chosen.
        names = [f"encoder.layer.{i}.{n}" for i in layers for n in NORMS[:2]]
        chosen = [n for n in names if any(n == t or n.endswith("." + t) for t in targets)]
        wrapped = _peft(hf_bert, peft.LNTuningConfig(target_modules=chosen))
        count = method.parameter_count(config, minilm)
        assert count == _trainable(wrapped) == take_census(model).trainable_of("method")
        _nudge(model, torch.Generator().manual_seed(len(targets)), scale=0.2)
        with torch.no_grad():
            for path, module in minilm.named_modules():
                if isinstance(module, TunedNorm):
                    theirs = _peft_module(wrapped, path).ln_tuning_layers["default"]
                    theirs.weight.copy_(module.ln_tuning_layers.weight)
                    theirs.bias.copy_(module.ln_tuning_layers.bias)
        _compare(minilm, wrapped, model)
    finally:
        model.detach_method()


def test_the_readme_counts_of_the_studio_defaults(minilm, hf_bert):
    def count(name):
        method = get_method(name)
        return method.parameter_count(method.default_config(), minilm)

    # LayerNorm tuning: every LayerNorm (PEFT has no BERT default: name them)
    assert count("ln-tuning") == _trainable(_peft(hf_bert, peft.LNTuningConfig(target_modules=["LayerNorm"]))) \
        == 13 * 2 * 384 == 9_984
    assert count("dora") == _trainable(_peft(hf_bert, peft.LoraConfig(r=8, use_dora=True))) == 78_336
    assert count("vera") == _trainable(_peft(hf_bert, peft.VeraConfig())) == 7_680  # r=256 on query, value


# ---- on the tiny base: training touches only the method, detach restores the base -----------------
@pytest.mark.parametrize("name, options", [("dora", {"r": 2, "dropout": 0.1}), ("vera", {"r": 8}),
                                           ("ln-tuning", {"targets": "attn-norm,emb-norm"})])
def test_training_moves_only_the_method_and_detach_restores(name, options):
    base = build_base("tiny")
    ids, mask = toy_batch(base)
    fingerprint = base.fingerprint()
    method, config, model = attach(base, name, options)
    frozen = model.frozen_fingerprint()
    optimizer = torch.optim.SGD(model.trainable_parameters(), lr=0.5)
    model.train()
    for _ in range(3):
        loss = model(ids, mask).logsumexp(-1).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert model.frozen_fingerprint() == frozen  # VeRA's shared pair included: it never trains
    source = inspect.getsource(sys.modules[type(method).__module__])
    assert all(line in source for line in method.code(config).split("  # then: "))  # the card quotes real lines
    assert f"= {method.parameter_count(config, base):,}" in method.formula_text(config, base)
    model.detach_method()
    assert base.fingerprint() == fingerprint


# ---- IA3: a PEFT module list means what it means in PEFT -------------------------------------------
@SETTINGS
@given(st.data())
def test_ia3_peft_module_lists_scale_what_peft_scales(minilm, hf_bert, data):
    from peft_studio.core.methods.ia3 import ChannelScale

    targets = data.draw(st.lists(st.sampled_from(LINEARS), min_size=1, max_size=4, unique=True))
    feedforward = data.draw(st.one_of(st.none(), st.lists(st.sampled_from(targets), max_size=2, unique=True)))
    layers = _layers(data.draw)
    options = {"targets": ",".join(targets), "layers": ",".join(map(str, layers)),
               "feedforward": None if feedforward is None else ",".join(feedforward)}
    method, config, model = attach(minilm, "ia3", options)
    try:
        # PEFT's IA3Config has no layers_to_transform: a regex (matched in full) picks the layers
        names = "|".join(re.escape(t) for t in targets)
        regex = rf"encoder\.layer\.({'|'.join(map(str, layers))})\.(?:.*\.)?(?:{names})"
        wrapped = _peft(hf_bert, peft.IA3Config(target_modules=regex, feedforward_modules=feedforward))
        assert method.parameter_count(config, minilm) == _trainable(wrapped) == take_census(model).trainable_of(
            "method")
        _nudge(model, torch.Generator().manual_seed(len(layers)), scale=0.3)
        with torch.no_grad():
            for path, module in minilm.named_modules():
                if isinstance(module, ChannelScale):
                    theirs = _peft_module(wrapped, path)
                    assert theirs.is_feedforward == module.scale_input  # input vs output, as PEFT
                    theirs.ia3_l["default"].copy_(module.ia3_scale.view(theirs.ia3_l["default"].shape))
        _compare(minilm, wrapped, model)
    finally:
        model.detach_method()


def test_ia3_counts_of_the_issue(minilm, hf_bert):
    def count(options):
        method = get_method("ia3")
        return method.parameter_count(make_config(method.config_cls, options), minilm)

    assert count({"targets": "key,output.dense"}) == 13_824 == _trainable(_peft(hf_bert, peft.IA3Config(
        target_modules=["key", "output.dense"])))
    assert count({"targets": "key,output.dense", "feedforward": ""}) == 6_912  # outputs only: 6 x (384 + 384 + 384)
    assert count({"targets": "key,value,output.dense"}) == 16_128 == _trainable(_peft(hf_bert, peft.IA3Config()))
    assert count({}) == 13_824  # the studio's default: k, v and the feed-forward activation
    assert count({"targets": "q-in,o"}) == 6 * (384 + 384)  # studio names say input or output themselves


# ---- prefix tuning with PEFT's shifted positions -------------------------------------------------------
@SETTINGS
@given(st.integers(1, 30), st.integers(0, 3))
def test_shifted_prefix_equals_peft(minilm, hf_bert, tokens, seed):
    method, config, model = attach(minilm, "prefix-tuning", {"tokens": tokens, "positions": "shifted"})
    try:
        wrapped = _peft(hf_bert, peft.PrefixTuningConfig(task_type="FEATURE_EXTRACTION", num_virtual_tokens=tokens))
        assert method.parameter_count(config, minilm) == _trainable(wrapped)
        _nudge(model, torch.Generator().manual_seed(seed))
        with torch.no_grad():  # PEFT's layout: [layer0 K, layer0 V, layer1 K, ...] along the width
            wrapped.prompt_encoder.default.embedding.weight.copy_(torch.cat(
                [t for layer in minilm.layers for t in (layer.attn.kv_prefix.keys, layer.attn.kv_prefix.values)], 1))
        _compare(minilm, wrapped, model)
    finally:
        model.detach_method()
    assert type(minilm.embeddings.prompt).__name__ == "PromptSlot"  # detach put the plain slot back


def test_prompt_pooling_is_a_stated_choice(minilm, hf_bert):
    """Either pooling gives the studio's logits from PEFT's hidden states with the documented positions."""
    for pool_over in ("prompt-and-text", "text"):
        method, config, model = attach(minilm, "prompt-tuning", {"tokens": 4, "pool_over": pool_over}, num_labels=2)
        try:
            wrapped = _peft(hf_bert, peft.PromptTuningConfig(task_type="FEATURE_EXTRACTION", num_virtual_tokens=4))
            with torch.no_grad():
                wrapped.prompt_encoder.default.embedding.weight.copy_(minilm.embeddings.prompt.prompt)
            ids, mask = minilm.tokenizer.batch(TEXTS)
            hidden = _hidden(wrapped, ids, mask)
            if pool_over == "text":
                hidden = hidden[:, 4:]
            else:
                mask = torch.cat([torch.ones(len(TEXTS), 4, dtype=torch.bool), mask], dim=1)
            pooled = (hidden * mask[..., None]).sum(1) / mask.sum(1, keepdim=True)
            model.eval()
            with torch.no_grad():
                ours = model(*minilm.tokenizer.batch(TEXTS))
            assert (ours - model.head(pooled)).abs().max() <= 1e-4
        finally:
            model.detach_method()
    with pytest.raises(Exception, match="pool_over text"):
        attach(build_base("seed-pooled"), "prompt-tuning", {"pool_over": "text"})


def test_an_input_scale_sits_on_its_own_site_in_the_census():
    base = build_base("tiny")
    _, _, model = attach(base, "ia3", {"targets": "q-in,q", "layers": "0"})
    sites = {row.name: row.site for row in take_census(model).rows if "ia3_scale" in row.name}
    assert sites == {"base.layers.0.attn.q.ia3_scale": "layers.0.attn.q.input",  # applied last: the outer one
                     "base.layers.0.attn.q.inner.ia3_scale": "layers.0.attn.q"}
    model.detach_method()
