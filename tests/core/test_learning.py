"""Every method learns: 100% train accuracy on seed-intents, well above chance on intents validation."""

from __future__ import annotations

import pytest
from method_table import applies, fitting_options, method_names

from peft_studio.core.bases import create_base
from peft_studio.core.data import load_builtin
from peft_studio.core.model.experiment import Experiment, Setup
from peft_studio.core.runs.train import TrainSettings, train

ALL_METHODS = method_names()  # the registry: a new method is held to the same bar
SEED_POOLED = create_base("seed-pooled", load_builtin("seed-intents").make_tokenizer())
TINY = create_base("tiny", load_builtin("intents").make_tokenizer())
TINY_DECODER = create_base("tiny-decoder", load_builtin("intents").make_tokenizer())  # for a decoder's method


def _setup(method: str, seed: int, prefer_seed_base: bool) -> Setup:
    """The method's defaults where they fit (the seed's base first, when asked: it has no attention, ...), else the
    first example options that fit (a default PEFT sized for real models need not fit a toy base)."""
    bases = (("seed-pooled", SEED_POOLED), ("tiny", TINY)) if prefer_seed_base else (("tiny", TINY),)
    bases = (*bases, ("tiny-decoder", TINY_DECODER))
    for name, base in bases:
        if applies(method, base):
            return Setup(name, method, {}, seed=seed)
    for name, base in bases:
        options = fitting_options(method, base)
        if options is not None:
            return Setup(name, method, options, seed=seed)
    raise AssertionError(f"{method} fits none of the bases")


def _final_event(experiment: Experiment, steps: int, lr: float, batch_size: int = 0):
    events = train(experiment, TrainSettings(steps=steps, lr=lr, batch_size=batch_size, eval_every=steps,
                                             track_grads=False))
    return list(events)[-1]


@pytest.mark.parametrize("method", ALL_METHODS)
def test_every_method_fits_seed_intents(method):
    experiment = Experiment(_setup(method, 42, prefer_seed_base=True), load_builtin("seed-intents"))
    _final_event(experiment, steps=150, lr=0.05)
    predictions = experiment.predict_labels(list(experiment.dataset.train_texts))
    truth = [experiment.dataset.label_names[i] for i in experiment.dataset.train_labels]
    assert predictions == truth


@pytest.mark.parametrize("method", ALL_METHODS)
def test_every_method_beats_chance_on_intents_validation(method):
    dataset = load_builtin("intents")
    experiment = Experiment(_setup(method, 0, prefer_seed_base=False), dataset)
    event = _final_event(experiment, steps=200, lr=1e-2, batch_size=64)
    chance = 1 / dataset.num_labels
    assert event.val_accuracy >= 2 * chance, f"{method}: {event.val_accuracy:.2f} vs chance {chance:.2f}"


def test_word_order_defeats_the_bag_of_words_base_but_not_attention():
    """The seed's 'limited transformation power', visible: mean pooling cannot see word order."""
    dataset = load_builtin("word-order")
    pooled = Experiment(Setup("seed-pooled", "full", {}, seed=0), dataset)
    attention = Experiment(Setup("tiny", "lora", {}, seed=0), dataset)
    pooled_acc = _final_event(pooled, steps=200, lr=1e-2).val_accuracy
    attention_acc = _final_event(attention, steps=200, lr=1e-2).val_accuracy
    assert pooled_acc <= 0.6
    assert attention_acc >= 0.9
