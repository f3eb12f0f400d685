"""Every method over many configurations: formula == census, detach restores, training touches only what trains."""

from __future__ import annotations

import torch
from core_helpers import attach, build_base, toy_batch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from peft_studio.core.data import load_builtin
from peft_studio.core.model.census import take_census
from peft_studio.core.model.experiment import Experiment, Setup
from peft_studio.core.runs.train import TrainSettings, train

SETTINGS = settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])

TINY_SHAPES = st.sampled_from([(16, 2, 1), (16, 4, 2), (24, 3, 2), (32, 4, 3)])  # d_model, heads, layers


def _layers(draw, n_layers):
    chosen = draw(st.lists(st.integers(0, n_layers - 1), min_size=1, max_size=n_layers, unique=True))
    return ",".join(map(str, chosen))


@st.composite
def tiny_setups(draw):
    """A random tiny base shape and a random method config that is valid on it."""
    d_model, heads, layers = draw(TINY_SHAPES)
    method = draw(st.sampled_from(["prompt-tuning", "prefix-tuning", "adapter", "ia3", "lora", "qlora",
                                   "head-only", "full", "bitfit", "dora", "vera", "ln-tuning"]))
    options: dict = {"freeze_head": draw(st.booleans()) if method != "head-only" else False}
    if method in ("lora", "qlora", "dora"):
        options.update(r=draw(st.integers(1, 12)), alpha=draw(st.sampled_from([1.0, 8.0, 16.0])),
                       targets=",".join(draw(st.lists(st.sampled_from(["q", "k", "v", "o", "up", "down"]),
                                                      min_size=1, max_size=4, unique=True))),
                       layers=_layers(draw, layers))
    elif method == "adapter":
        options.update(bottleneck=draw(st.integers(1, 20)),
                       placement=draw(st.sampled_from(["after-attn", "after-ffn", "both"])),
                       layers=_layers(draw, layers), init="default")
    elif method == "ia3":
        ia3_targets = ["k", "v", "ffn-act", "q", "o", "q-in", "down-in"]
        options.update(targets=",".join(draw(st.lists(st.sampled_from(ia3_targets), min_size=1, max_size=3,
                                                      unique=True))),
                       layers=_layers(draw, layers))
    elif method == "vera":
        options.update(r=draw(st.integers(1, 64)), layers=_layers(draw, layers),
                       targets=",".join(draw(st.lists(st.sampled_from(["q", "k", "v", "o", "up", "down"]),
                                                      min_size=1, max_size=4, unique=True))))
    elif method == "ln-tuning":
        options.update(targets=",".join(draw(st.lists(st.sampled_from(["emb-norm", "attn-norm", "ffn-norm"]),
                                                      min_size=1, max_size=3, unique=True))),
                       layers=_layers(draw, layers))
    elif method == "prompt-tuning":
        options.update(tokens=draw(st.integers(1, 10)))
    elif method == "prefix-tuning":
        options.update(tokens=draw(st.integers(1, 10)), layers=_layers(draw, layers),
                       prefix_projection=draw(st.sampled_from([0, 0, 8, 24])))
    return {"d_model": d_model, "n_heads": heads, "n_layers": layers}, method, options


@SETTINGS
@given(tiny_setups())
def test_formula_equals_census_on_tiny(setup):
    shape, method_name, options = setup
    base = build_base("tiny", **shape)
    method, config, model = attach(base, method_name, options)
    census = take_census(model)
    head = 0 if config.freeze_head else model.head.weight.numel() + model.head.bias.numel()
    assert method.parameter_count(config, base) + head == census.trainable
    assert census.trainable_of("head") == head


@SETTINGS
@given(tiny_setups(), st.integers(0, 3))
def test_detach_restores_the_base_bit_for_bit(setup, seed):
    shape, method_name, options = setup
    base = build_base("tiny", seed=seed, **shape)
    ids, mask = toy_batch(base)
    before, fingerprint = base(ids, mask), base.fingerprint()
    _, _, model = attach(base, method_name, options)
    for parameter in model.parameters():  # make every part non-trivial, as after training
        if parameter.requires_grad:
            with torch.no_grad():
                parameter.add_(0.1)
    model(ids, mask)
    model.detach_method()
    assert torch.equal(base(ids, mask), before)
    assert base.fingerprint() == fingerprint
    assert not any(p.requires_grad for p in base.parameters())


@settings(max_examples=8, deadline=None)
@given(st.sampled_from(["prompt-tuning", "adapter", "ia3", "lora", "qlora", "head-only", "bitfit", "full"]),
       st.integers(1, 8))
def test_formula_equals_census_on_seed_pooled(method_name, size):
    options = {"prompt-tuning": {"tokens": size}, "adapter": {"bottleneck": size}, "lora": {"r": size},
               "qlora": {"r": size}}.get(method_name, {})
    base = build_base("seed-pooled")
    method, config, model = attach(base, method_name, options, num_labels=2)
    census = take_census(model)
    assert method.parameter_count(config, base) + 34 == census.trainable


@settings(max_examples=10, deadline=None)
@given(tiny_setups())
def test_training_changes_only_trainable_tensors(setup):
    shape, method_name, options = setup
    experiment = Experiment(Setup("tiny", method_name, options, seed=1, base_options=shape), load_builtin("intents"))
    model = experiment.model
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    buffers = {name: b.clone() for name, b in model.named_buffers()}
    fingerprint = model.frozen_fingerprint()
    for _ in train(experiment, TrainSettings(steps=3, lr=1e-2, batch_size=32, track_grads=False)):
        pass
    changed = {name for name, p in model.named_parameters() if not torch.equal(p, before[name])}
    trainable = {name for name, p in model.named_parameters() if p.requires_grad}
    assert changed, "training changed nothing"
    assert changed <= trainable
    assert all(torch.equal(b, buffers[name]) for name, b in model.named_buffers())
    assert model.frozen_fingerprint() == fingerprint
    model.detach_method()  # even full fine-tuning gives the base back as it was
    assert model.base.fingerprint() == model.base_fingerprint
