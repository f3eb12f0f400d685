"""A build reuses a base instead of building it again (core/model/base_pool.py), with nothing changed: the census,
the fingerprints and every weight are those of a fresh build of the same setup."""

from __future__ import annotations

import copy

import pytest
import torch

from peft_studio.core.model import base_pool, experiment
from peft_studio.core.model.experiment import Experiment
from peft_studio.core.studio import StudioState


@pytest.fixture
def base_builds(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The names of the bases built (every build of a base goes through create_base in these two modules)."""
    built: list[str] = []
    for module in (base_pool, experiment):
        real = module.create_base

        def counting(name, *args, _real=real, **kwargs):
            built.append(name)
            return _real(name, *args, **kwargs)

        monkeypatch.setattr(module, "create_base", counting)
    return built


def _as_fresh(state: StudioState, base_builds: list[str]) -> None:
    fresh = Experiment(copy.deepcopy(state.setup), state.dataset)
    base_builds.pop()  # the fresh build's own
    assert state.census == fresh.census()
    assert state.frozen_at_build == state.experiment.frozen_fingerprint() == fresh.frozen_fingerprint()
    with state.experiment.model.bypassed():  # the bare base, as a reused one's known fingerprint says
        bare = state.experiment.base.fingerprint()
    assert state.experiment.model.base_fingerprint == bare == fresh.model.base_fingerprint
    ours, theirs = state.experiment.model.state_dict(), fresh.model.state_dict()
    assert list(ours) == list(theirs)
    assert all(torch.equal(ours[k], theirs[k]) for k in ours if not ours[k].is_meta)


def test_edits_on_a_meta_architecture_reuse_its_base_and_equal_a_fresh_build(base_builds):
    state = StudioState()
    base_builds.clear()
    assert state.set_base("llama-3-70b")
    assert base_builds == ["llama-3-70b"]
    bases = {id(state.experiment.base)}
    for edit in (lambda: state.set_option("r", 16), lambda: state.set_option("r", 4),
                 lambda: state.set_method("ia3"), state.undo, state.undo, state.redo,
                 lambda: state.set_option("dropout", 0.1)):
        assert edit()
        _as_fresh(state, base_builds)
        bases.add(id(state.experiment.base))
    assert state.setup.options["dropout"] == 0.1 and state.setup.method == "lora"
    # the first edit builds the second base; from then on the two take turns
    assert base_builds == ["llama-3-70b", "llama-3-70b"] and len(bases) == 2
    assert not state.set_option("r", 0)  # refused: the base it took goes back, and the next edit reuses it
    assert state.set_option("r", 2)
    _as_fresh(state, base_builds)
    assert len(base_builds) == 2
    assert state.set_seed(5)  # another seed is another base
    _as_fresh(state, base_builds)
    assert len(base_builds) == 3


def test_a_base_switch_builds_the_new_base_once_with_a_fresh_builds_weights(base_builds):
    state = StudioState()
    state.set_option("r", 2)
    base_builds.clear()
    assert state.set_base("tiny-decoder")  # random weights: drawn as the experiment's own seeded build draws them
    assert base_builds == ["tiny-decoder"]
    _as_fresh(state, base_builds)
    assert state.set_base("llama-3-70b")  # the method's sites are not there: its defaults, on the same base
    assert base_builds == ["tiny-decoder", "llama-3-70b"]
    _as_fresh(state, base_builds)
