"""LoRA merge/unmerge keeps outputs and restores W0 exactly; weighted combination equals PEFT's."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from peft_studio.core.adapters.adapter_set import AdapterSet
from peft_studio.core.adapters.lora_merge import add_weighted_adapter, measure_merge
from peft_studio.core.data import load_builtin
from peft_studio.core.errors import ConfigError
from peft_studio.core.methods.lora import LoraLinear
from peft_studio.core.model.experiment import Experiment, Setup


def _randomise(adapters: AdapterSet, name: str, seed: int) -> None:
    """Non-zero B (a fresh LoRA has B = 0), so the combination has something to combine."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for _, _, module in adapters.get(name).swaps:
            if isinstance(module, LoraLinear):
                module.lora_B.copy_(torch.randn(module.lora_B.shape, generator=generator) * 0.1)


@pytest.fixture
def lora_set():
    dataset = load_builtin("seed-intents")
    adapters = AdapterSet.build("tiny", [dataset], seed=0)
    adapters.add("x1", "lora", {"r": 4, "alpha": 8.0, "targets": "q,v"}, dataset, seed=1)
    adapters.add("x2", "lora", {"r": 4, "alpha": 2.0, "targets": "q,k"}, dataset, seed=2)
    adapters.add("x3", "lora", {"r": 2, "alpha": 3.0, "targets": "v"}, dataset, seed=3)
    for seed, name in enumerate(("x1", "x2", "x3")):
        _randomise(adapters, name, seed)
    return adapters


def test_merge_keeps_outputs_and_unmerge_restores_the_base_bit_for_bit():
    experiment = Experiment(Setup("tiny", "lora", {"r": 4}), load_builtin("intents"))
    with torch.no_grad():
        for module in experiment.model.modules():
            if isinstance(module, LoraLinear):
                module.lora_B.normal_()
    fingerprint = experiment.base.fingerprint()
    report = measure_merge(experiment, repeats=2)
    assert report.layers == 2 * experiment.base.num_layers and report.equal
    assert 0 < report.max_abs_difference <= report.atol or report.max_abs_difference == 0
    assert report.unmerged_ms > 0 and report.merged_ms > 0 and "equal" in report.summary()
    assert experiment.base.fingerprint() == fingerprint  # unmerged again, W0 bit-identical
    merged = measure_merge(experiment, repeats=1, keep_merged=True)
    assert merged.equal and experiment.base.fingerprint() != fingerprint
    with pytest.raises(ConfigError, match="already merged"):
        measure_merge(experiment)


def test_switching_away_from_a_merged_adapter_unmerges_it(lora_set):
    lora_set.activate("x1")
    measure_merge(lora_set.get("x1"), repeats=1, keep_merged=True)
    assert lora_set.frozen_fingerprint() != lora_set.base_fingerprint
    lora_set.activate("x2")
    assert lora_set.frozen_fingerprint() == lora_set.base_fingerprint


def _peft_toy(adapters: AdapterSet, sources: list[str]):
    """The set's base Linears in a plain module, with PEFT LoRA adapters holding the same A, B, alpha."""
    from peft import LoraConfig, get_peft_model

    originals = {path: original for name in sources for path, original, m in adapters.get(name).swaps
                 if isinstance(m, LoraLinear)}
    toy = nn.Module()
    for path, original in sorted(originals.items()):
        toy.add_module(path.replace(".", "_"), copy.deepcopy(original))
    model = None
    for name in sources:
        member = adapters.get(name)
        layers = {path: m for path, _, m in member.swaps if isinstance(m, LoraLinear)}
        config = LoraConfig(r=member.config.r, lora_alpha=member.config.alpha,
                            target_modules=[p.replace(".", "_") for p in layers])
        if model is None:
            model = get_peft_model(toy, config, adapter_name=name)
        else:
            model.add_adapter(name, config)
        with torch.no_grad():
            for path, layer in layers.items():
                peft_layer = model.base_model.model.get_submodule(path.replace(".", "_"))
                peft_layer.lora_A[name].weight.copy_(layer.lora_A)
                peft_layer.lora_B[name].weight.copy_(layer.lora_B)
    return model


@pytest.mark.parametrize("combination, sources, weights", [
    ("linear", ["x1", "x2"], [0.7, -0.4]),  # equal ranks, different sites and alphas, a negative weight
    ("cat", ["x1", "x2", "x3"], [1.0, 0.5, 2.0]),  # ranks 4 + 4 + 2
    ("cat", ["x3"], [1.5]),  # one adapter: PEFT falls back to linear
])
def test_weighted_combination_equals_peft(lora_set, combination, sources, weights):
    peft_model = _peft_toy(lora_set, sources)
    peft_model.add_weighted_adapter(sources, weights, "mix", combination_type=combination)
    mine = add_weighted_adapter(lora_set, sources, weights, "mix", combination)
    assert lora_set.active == "mix"
    layers = {path: m for path, _, m in mine.swaps if isinstance(m, LoraLinear)}
    assert layers and set(layers) == {p for name in sources for p, _, m in lora_set.get(name).swaps}
    for path, layer in layers.items():
        theirs = peft_model.base_model.model.get_submodule(path.replace(".", "_"))
        assert theirs.r["mix"] == layer.r and theirs.scaling["mix"] == pytest.approx(layer.scaling)
        torch.testing.assert_close(layer.lora_A, theirs.lora_A["mix"].weight, rtol=0, atol=1e-7)
        torch.testing.assert_close(layer.lora_B, theirs.lora_B["mix"].weight, rtol=0, atol=1e-7)
    if combination == "cat":  # cat is exact: the update is the weighted sum of the sources' updates
        for path, layer in layers.items():
            expected = sum(w * m.delta_weight() for name, w in zip(sources, weights, strict=True)
                           for p, _, m in lora_set.get(name).swaps if p == path)
            torch.testing.assert_close(layer.delta_weight(), expected, rtol=1e-5, atol=1e-6)


def test_combination_mistakes_are_clear(lora_set):
    with pytest.raises(ConfigError, match="'linear' needs equal ranks"):
        add_weighted_adapter(lora_set, ["x1", "x3"], [1, 1], "x", "linear")
    with pytest.raises(ConfigError, match="2 adapters but 1 weights"):
        add_weighted_adapter(lora_set, ["x1", "x2"], [1], "x")
    with pytest.raises(ConfigError, match="combination must be"):
        add_weighted_adapter(lora_set, ["x1", "x2"], [1, 1], "x", "svd")
    dataset = load_builtin("seed-intents")
    for name, options, said in [("p", {"r": 4, "targets": "q", "init_lora_weights": "pissa"}, "its residual base"),
                                ("b", {"r": 4, "targets": "q", "bias": "all"}, "bias 'all'"),
                                ("e", {"r": 4, "targets": "q,word"}, "an embedding target"),
                                ("k", {"r": 4, "targets": "q", "rank_pattern": "q=2"}, "rank_pattern")]:
        lora_set.add(name, "lora", options, dataset, seed=4)
        with pytest.raises(ConfigError, match=f"combine: {name} has .*{said}"):
            add_weighted_adapter(lora_set, ["x1", name], [1, 1], "x", "cat")
    assert "x" not in lora_set
