"""The studio shows one adapter of a set as its experiment: no rebuild, undo/redo bring the same trained
adapter back, an edit builds the window's own experiment and leaves the set untouched."""

from __future__ import annotations

import pytest
import torch
from test_adapter_set import TEXTS, _train, small

from peft_studio.core.adapters.adapter_set import AdapterSet
from peft_studio.core.data import load_builtin
from peft_studio.core.errors import ConfigError
from peft_studio.core.model.experiment import Setup
from peft_studio.core.runs.train import TrainSettings, train
from peft_studio.core.studio import StudioState


@pytest.fixture
def world():
    intents, sentiment = load_builtin("seed-intents"), small("sentiment")
    adapters = AdapterSet.build("tiny", [intents, sentiment], seed=3)
    adapters.add("support", "lora", {"r": 4, "targets": "q,v"}, intents, seed=1)
    _train(adapters, "support", steps=3)
    adapters.add("mood", "adapter", {"bottleneck": 8}, sentiment, seed=2)
    _train(adapters, "mood", steps=3)
    studio = StudioState(Setup("tiny", "ia3", {}, 3), intents)
    events: list[tuple] = []
    for name in ("changed", "notice", "failed"):
        studio.on(name, lambda *args, name=name: events.append((name, *args)))
    return adapters, studio, events


def test_showing_an_adapter_installs_it_without_a_rebuild(world):
    adapters, studio, events = world
    own = studio.experiment
    support = adapters.get("support")
    expected = support.predict(TEXTS)
    assert studio.show_adapter(support)
    assert studio.experiment is support and studio.showing_adapter is support
    assert studio.setup.method == "lora" and studio.dataset is support.dataset
    assert adapters.active == "support" and torch.equal(studio.experiment.predict(TEXTS), expected)
    assert studio.census.trainable == support.census().trainable and studio.census.trainable != own.census().trainable
    assert studio.selected_site_ids() == {s.id for s in support.selected_sites()}
    assert studio.frozen_at_build == support.model.frozen_fingerprint()

    mood = adapters.get("mood")
    assert studio.show_adapter(mood) and adapters.active == "mood" and studio.experiment is mood
    # the base under both is one object: the fingerprint the window shows never changes on a switch
    assert studio.frozen_at_build == support.model.frozen_fingerprint()
    assert adapters.frozen_fingerprint() == adapters.base_fingerprint


def test_undo_and_redo_bring_back_the_same_trained_adapter(world):
    adapters, studio, _ = world
    own = studio.experiment
    support, mood = adapters.get("support"), adapters.get("mood")
    studio.show_adapter(support)
    studio.show_adapter(mood)
    assert studio.undo() and studio.experiment is support and adapters.active == "support"
    assert torch.equal(studio.experiment.predict(TEXTS), support.predict(TEXTS))
    assert studio.undo() and studio.experiment is not support and studio.showing_adapter is None
    assert studio.setup.method == "ia3" and studio.experiment.setup == own.setup
    assert studio.redo() and studio.experiment is support and adapters.active == "support"
    assert studio.redo() and studio.experiment is mood and adapters.active == "mood"


def test_an_edit_builds_the_windows_own_experiment_and_the_set_keeps_its_adapter(world):
    adapters, studio, events = world
    support = adapters.get("support")
    before = support.predict(TEXTS)
    studio.show_adapter(support)
    site = next(s for s in studio.experiment.base.sites() if s.kind == "linear"
                and s.id not in studio.selected_site_ids())
    assert studio.toggle_site(site.id)
    assert studio.experiment is not support and studio.showing_adapter is None
    assert studio.setup.method == "lora" and site.id in studio.selected_site_ids()
    assert any(e[0] == "notice" and "'support' stays in its set" in e[1] for e in events)
    assert "support" in adapters and adapters.active == "support"
    assert torch.equal(support.predict(TEXTS), before)
    assert studio.undo() and studio.experiment is support  # the trained adapter itself, not a rebuild


def test_an_adapter_removed_from_its_set_is_rebuilt_from_its_setup_on_undo(world):
    adapters, studio, _ = world
    support = adapters.get("support")
    studio.show_adapter(support)
    studio.set_seed(5)
    adapters.remove("support")
    assert studio.undo()
    assert studio.experiment is not support and studio.showing_adapter is None
    assert studio.setup.method == "lora" and studio.setup.options == support.setup.options


def test_the_lock_refuses_showing_and_says_whose_run_holds_it(world):
    adapters, studio, events = world
    studio.lock("Adapter 'mood' is training in the Adapters panel")
    assert not studio.show_adapter(adapters.get("support"))
    assert events[-1][0] == "failed" and "'mood' is training" in events[-1][2]
    studio.unlock()
    assert studio.lock_reason == "" and studio.show_adapter(adapters.get("support"))


def test_training_the_shown_adapter_activates_it_and_refuses_one_without_data(world, tmp_path):
    adapters, studio, _ = world
    support = adapters.get("support")
    studio.show_adapter(support)
    adapters.activate("mood")  # e.g. the set switched meanwhile
    events = list(train(support, TrainSettings(steps=2, lr=0.05, track_grads=False)))
    assert len(events) == 2 and adapters.active == "support"

    path = adapters.save("mood", tmp_path / "mood.safetensors")
    loaded = adapters.load(path, "mood-copy")  # no dataset: it predicts, it cannot train
    assert studio.show_adapter(loaded)
    with pytest.raises(ConfigError, match="loaded without its dataset"):
        list(train(loaded, TrainSettings(steps=1, lr=0.05, track_grads=False)))
    adapters.remove("mood-copy")
    with pytest.raises(ConfigError, match="no longer in its set"):
        loaded.predict(TEXTS)
