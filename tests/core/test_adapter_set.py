"""One base, many adapters: switching routes predictions, never touches the base, and files round-trip."""

from __future__ import annotations

import time

import pytest
import torch

from peft_studio.core.adapters.adapter_set import AdapterSet
from peft_studio.core.data import TextDataset, load_builtin
from peft_studio.core.errors import AdapterFileError, ConfigError
from peft_studio.core.files.adapter_file import save_adapter
from peft_studio.core.model.experiment import Experiment, Setup
from peft_studio.core.runs.train import TrainSettings

TEXTS = ["refund my order", "cannot login account", "great phone love it", "terrible awful broke"]


def _train(adapters: AdapterSet, name: str, steps: int = 15) -> list[float]:
    return [e.loss for e in adapters.train(name, TrainSettings(steps=steps, lr=0.05, track_grads=False))]


def small(name: str, size: int = 40) -> TextDataset:
    """A slice of a built-in dataset: enough to learn on, cheap to train in a test."""
    full = load_builtin(name)
    return TextDataset(name, full.label_names, full.train_texts[:size], full.train_labels[:size], (), (), "test")


@pytest.fixture(scope="module")
def datasets():
    return load_builtin("seed-intents"), small("sentiment")


@pytest.fixture
def two(datasets):
    intents, sentiment = datasets
    adapters = AdapterSet.build("tiny", [intents, sentiment], seed=3)
    adapters.add("support", "lora", {"r": 4, "targets": "q,v"}, intents, seed=1)
    _train(adapters, "support")
    adapters.add("mood", "adapter", {"bottleneck": 8}, sentiment, seed=2)
    _train(adapters, "mood")
    return adapters


def test_switching_follows_the_active_adapter_and_never_touches_the_base(two):
    assert two.active == "mood" and two.names() == ["support", "mood"]
    mood = two.predict(TEXTS)
    assert mood.shape == (4, 2) and two.predict_labels(TEXTS[:1])[0] in ("negative", "positive")
    two.activate("support")
    support = two.predict(TEXTS)
    assert two.predict_labels(TEXTS[:2]) == ["refund", "login"]
    assert two.frozen_fingerprint() == two.base_fingerprint
    two.activate("mood")
    assert torch.equal(two.predict(TEXTS), mood)  # back and forth: bit-identical predictions
    two.activate("support")
    assert torch.equal(two.predict(TEXTS), support)
    assert two.frozen_fingerprint() == two.base_fingerprint


def test_the_clean_base_is_bit_identical_after_everything(two):
    two.remove("mood")
    two.remove("support")
    assert two.base.fingerprint() == two.base_fingerprint
    assert not any(p.requires_grad for p in two.base.parameters())


def test_training_one_adapter_leaves_the_inactive_ones_untouched(two, datasets):
    two.activate("support")
    before = two.predict(TEXTS)
    support_tensors = [t.clone() for t in two._saved_tensors(two.get("support"))]
    two.add("extra", "ia3", {}, datasets[1], seed=5)
    losses = _train(two, "extra", steps=8)
    assert losses[-1] < losses[0]
    assert all(torch.equal(a, b) for a, b in zip(support_tensors, two._saved_tensors(two.get("support")),
                                                  strict=True))
    two.activate("support")
    assert torch.equal(two.predict(TEXTS), before)
    assert two.frozen_fingerprint() == two.base_fingerprint


def test_switch_is_cheap(two):
    started = time.perf_counter()
    for _ in range(50):
        two.activate("support")
        two.activate("mood")
    assert (time.perf_counter() - started) / 100 < 0.05  # generous: a switch is a few setattr calls


def test_each_saved_adapter_reloads_into_a_set_with_identical_predictions(two, tmp_path):
    expected = {}
    for name in two.names():
        with two.using(name):
            expected[name] = two.predict(TEXTS)
        two.save(name, tmp_path / f"{name}.safetensors")
    assert two.active == "mood"  # saving does not change the active adapter
    loaded = AdapterSet.from_files([tmp_path / "mood.safetensors", tmp_path / "support.safetensors"])
    assert loaded.base_fingerprint == two.base_fingerprint and loaded.active == "mood"
    for name, probs in expected.items():
        loaded.activate(name)
        assert torch.equal(loaded.predict(TEXTS), probs)
    infos = {i.name: i for i in loaded.infos()}
    assert infos["support"].labels == ("refund", "login") and infos["mood"].glyph == "A"
    size = (tmp_path / "support.safetensors").stat().st_size
    assert infos["support"].bytes < size < infos["support"].bytes + 4096  # tensors + header
    assert infos["support"].bytes < loaded.base_bytes() / 10
    with pytest.raises(ConfigError, match="already in the set"):
        loaded.load(tmp_path / "mood.safetensors")
    with pytest.raises(ConfigError, match="loaded without its dataset"):
        list(loaded.train("mood", TrainSettings(steps=1)))


def test_a_single_experiment_adapter_loads_into_a_set_on_the_same_base(tmp_path, datasets):
    intents = datasets[0]
    experiment = Experiment(Setup("tiny", "lora", {"r": 2}, seed=7), intents)
    path = save_adapter(experiment, tmp_path / "alone.safetensors")
    adapters = AdapterSet.build("tiny", [intents], seed=7)
    member = adapters.load(path, dataset=intents)
    assert torch.equal(adapters.predict(TEXTS), experiment.predict(TEXTS)) and member.name == "alone"
    other = AdapterSet.build("tiny", [intents], seed=8)
    with pytest.raises(AdapterFileError, match="different base"):
        other.load(path)


@pytest.mark.parametrize("base", ["tiny", "seed-pooled"])
def test_a_single_experiment_adapter_rebuilds_its_toy_base_from_the_file_alone(tmp_path, datasets, base):
    """What `train --save-adapter` writes is enough for `predict`: the toy base's seed, options and vocabulary."""
    intents, sentiment = datasets
    experiments = [Experiment(Setup(base, method, {}, seed=5), intents) for method in ("lora", "head-only")]
    for experiment in experiments:
        with torch.no_grad():  # trained weights, not the fresh ones the set would build anyway
            for parameter in experiment.model.trainable_parameters():
                parameter.add_(torch.randn_like(parameter) * 0.1)
    paths = [save_adapter(e, tmp_path / f"{e.setup.method}.safetensors") for e in experiments]
    adapters = AdapterSet.from_files(paths)
    for experiment in experiments:
        adapters.activate(experiment.setup.method)
        assert torch.equal(adapters.predict(TEXTS), experiment.predict(TEXTS))
    elsewhere = save_adapter(Experiment(Setup(base, "lora", {}, seed=5), sentiment), tmp_path / "mood.safetensors")
    with pytest.raises(AdapterFileError, match="train them on one dataset"):  # another vocabulary: another base
        AdapterSet.from_files([paths[0], elsewhere])


def test_mistakes_are_clear_and_change_nothing(two, datasets):
    active, names = two.active, two.names()
    with pytest.raises(ConfigError, match="trains the base itself"):
        two.add("bits", "bitfit", {}, datasets[0])
    with pytest.raises(ConfigError):
        two.add("bad", "lora", {"r": 0}, datasets[0])
    with pytest.raises(ConfigError, match="already in the set"):
        two.add("mood", "lora", {}, datasets[0])
    with pytest.raises(ConfigError, match="no adapter named"):
        two.activate("nope")
    assert two.active == active and two.names() == names
    training = two.train("mood", TrainSettings(steps=3))
    next(training)
    with pytest.raises(ConfigError, match="while adapter 'mood' trains"):
        two.activate("support")
    training.close()
    two.activate("support")


def test_pretrained_bases_need_no_dataset_and_toy_bases_do(datasets):
    with pytest.raises(ConfigError, match="vocabulary"):
        AdapterSet.build("tiny")


def test_cli_predicts_with_a_named_adapter_of_a_set(two, tmp_path, capsys):
    from peft_studio.cli import main

    paths = [str(two.save(name, tmp_path / f"{name}.safetensors")) for name in ("support", "mood")]
    assert main(["predict", "--adapters", ",".join(paths), "--use", "support", "refund my order",
                 "cannot login account"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("refund my order -> refund") and lines[1].startswith("cannot login account -> login")
    assert main(["predict", "--adapters", ",".join(paths), "--list"]) == 0
    listing = capsys.readouterr().out
    assert listing.startswith("base tiny:") and "* support" in listing and "  mood  [A] adapter" in listing
    assert main(["predict", "--adapters", ",".join(paths), "--use", "nope", "x"]) == 2
    assert capsys.readouterr().err.startswith("error: no adapter named 'nope'")
    assert main(["predict", "--adapters", str(tmp_path / "missing.safetensors"), "x"]) == 2
