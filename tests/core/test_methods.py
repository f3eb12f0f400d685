"""Every method over many configurations: formula == census, detach restores, training touches only what trains."""

from __future__ import annotations

import functools

import torch
from core_helpers import attach, build_base, toy_batch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from method_table import applies, draw_options, method_names

from peft_studio.core.data import load_builtin
from peft_studio.core.model.census import take_census
from peft_studio.core.model.experiment import Experiment, Setup
from peft_studio.core.runs.train import TrainSettings, train

SETTINGS = settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])

TINY_SHAPES = st.sampled_from([(16, 2, 1), (16, 4, 2), (24, 3, 2), (32, 4, 3)])  # d_model, heads, layers


@st.composite
def tiny_setups(draw):
    """A random tiny base shape, a method and options drawn from its example_space (the method test table)."""
    d_model, heads, layers = draw(TINY_SHAPES)
    shape = {"d_model": d_model, "n_heads": heads, "n_layers": layers}
    base = _tiny(**shape)
    method = draw(st.sampled_from(method_names(lambda m: applies(m.name, base))))
    options = draw_options(DrawFrom(draw), method, base)
    return shape, method, options


class DrawFrom:
    """Lets draw_options (written for st.data()) draw inside a composite strategy."""

    def __init__(self, draw):
        self.draw = draw


@functools.cache
def _tiny(**shape):
    return build_base("tiny", **shape)


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


SEED_POOLED = build_base("seed-pooled")


@settings(max_examples=8, deadline=None)
@given(st.data())
def test_formula_equals_census_on_seed_pooled(data):
    method_name = data.draw(st.sampled_from(method_names(lambda m: applies(m.name, SEED_POOLED))))
    options = draw_options(data, method_name, SEED_POOLED)
    method, config, model = attach(build_base("seed-pooled"), method_name, options, num_labels=2)
    census = take_census(model)
    head = 0 if config.freeze_head else 34
    assert method.parameter_count(config, SEED_POOLED) + head == census.trainable


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
