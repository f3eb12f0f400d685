"""Merge where PEFT merges: for every method whose parts are weight updates (methods/mergeable.py), the weight the
studio folds into W0 equals the one PEFT's merge_and_unload writes for the exported adapter, folding keeps the
outputs, and unfolding gives the base back bit for bit."""

from __future__ import annotations

import functools

import pytest
import torch
from core_helpers import build_base
from hypothesis import assume, given
from hypothesis import strategies as st
from method_table import applies, draw_options, exchanging, method_names
from peft_reference import PEFT_WARNINGS, peft
from test_hf_peft_family import FEW, TEXTS, bert, dataset, minilm_base, nudge

from peft_studio.core.interop.hf_peft import export_peft
from peft_studio.core.methods import METHODS, get_method
from peft_studio.core.methods.mergeable import weight_updates
from peft_studio.core.model.experiment import Experiment, Setup
from peft_studio.core.model.studio_model import StudioModel

pytestmark = PEFT_WARNINGS


@functools.cache
def _merges(name: str) -> bool:
    """The method's parts are WeightUpdate layers (tried with its default config on the tiny base)."""
    base = build_base("tiny")
    if not applies(name, base):
        return False
    model = StudioModel(base)
    method = get_method(name)
    method.attach(model, method.default_config())
    try:
        return bool(weight_updates(model))
    finally:
        model.detach_method()


MERGING = [name for name in method_names(exchanging) if _merges(name)]


@pytest.fixture(scope="module")
def folder():
    from peft_studio.core.bases.pretrained import minilm_folder

    return str(minilm_folder())


def test_the_weight_update_methods_are_found():
    assert {"lora", "dora"} <= set(MERGING)  # the worked examples: the table above is not empty by accident


@pytest.mark.parametrize("method", MERGING)
@FEW
@given(data=st.data())
def test_merged_weight_equals_peft_merge_and_unload(tmp_path_factory, folder, data, method):
    options = draw_options(data, method, minilm_base())
    random_field = METHODS[method].peft_merge_draws
    assume(not random_field or not options.get(random_field))  # PEFT's merge draws it: no reference then
    experiment = Experiment(Setup("minilm", method, options, seed=1), dataset())
    nudge(experiment, METHODS[method].perturbation)
    out = export_peft(experiment, tmp_path_factory.mktemp("merge"))
    merged = peft.PeftModel.from_pretrained(bert(folder), str(out)).merge_and_unload()
    theirs = dict(merged.named_parameters())
    layers = weight_updates(experiment.base)
    assert layers
    with torch.no_grad():
        for path, layer in layers:
            ours = layer.merged_weight()
            assert (ours - theirs[f"{experiment.base.hf_module(path)}.weight"]).abs().max() <= 1e-5, path
    ids, mask = experiment.tokenizer.batch(TEXTS)
    experiment.model.eval()
    with torch.no_grad():
        unmerged = experiment.model(ids, mask)
        for _, layer in layers:
            layer.merge()
        # the merged weights equal PEFT's within 1e-5 (above); through the whole encoder float32 summation order
        # alone reaches 1.1e-4 on some drawn setups (MiSS, measured)
        assert (experiment.model(ids, mask) - unmerged).abs().max() <= 2e-4
    experiment.model.detach_method()
    assert experiment.base.fingerprint() == experiment.model.base_fingerprint


@pytest.mark.parametrize("method", MERGING)
@FEW
@given(data=st.data())
def test_each_layer_computes_what_peft_s_layer_computes(tmp_path_factory, folder, data, method):
    """Layer by layer, on random inputs: the adapted Linear's output equals PEFT's module's (the whole encoder also
    differs from transformers' BertModel by a few 1e-6 before any adapter; a layer has no such excuse)."""
    options = draw_options(data, method, minilm_base())
    experiment = Experiment(Setup("minilm", method, options, seed=1), dataset())
    nudge(experiment, METHODS[method].perturbation)
    out = export_peft(experiment, tmp_path_factory.mktemp("layers"))
    wrapped = peft.PeftModel.from_pretrained(bert(folder), str(out)).eval()
    experiment.model.eval()
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for path, layer in weight_updates(experiment.base):
            theirs = wrapped.base_model.model.get_submodule(experiment.base.hf_module(path))
            if isinstance(layer.base_layer, torch.nn.Embedding):  # a table (LoRA's embedding targets) reads ids
                x = torch.randint(0, layer.base_layer.num_embeddings, (3, 5), generator=generator)
            else:
                x = torch.randn(3, 5, layer.base_layer.in_features, generator=generator)
            torch.testing.assert_close(layer(x), theirs(x), rtol=1e-5, atol=1e-5, msg=path)
