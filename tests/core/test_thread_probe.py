"""Measuring a run's thread count leaves no trace: a measured run trains bit for bit like an unmeasured one."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from peft_studio.core.data import load_builtin
from peft_studio.core.model.experiment import Experiment, Setup
from peft_studio.core.runs.probe import choose_threads, run_key, step_probe
from peft_studio.core.runs.threads import ThreadChoice
from peft_studio.core.runs.train import TrainSettings, train

SETTINGS = TrainSettings(steps=6, lr=0.02, batch_size=16, eval_every=3, track_grads=False)


@pytest.fixture(autouse=True)
def one_torch_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _curve(experiment: Experiment) -> list[tuple[float, float | None]]:
    return [(e.loss, e.val_loss) for e in train(experiment, SETTINGS)]


@pytest.mark.parametrize("method, options", [("lora", {"dropout": 0.3}), ("full", {}), ("prompt-tuning", {})])
def test_a_probed_run_trains_like_an_unprobed_one(method, options):
    data = load_builtin("intents")
    plain = Experiment(Setup("tiny", method, options, seed=1), data)
    probed = Experiment(Setup("tiny", method, options, seed=1), data)
    _curve(probed)  # leave gradients from a run behind: the probe must put them back too
    probed.reset()
    _curve(plain)
    plain.reset()
    torch.manual_seed(5)
    probe = step_probe(probed, SETTINGS, set_threads=lambda n: None)  # stays at one thread
    before = [p.grad for p in probed.model.parameters() if p.requires_grad]
    for _ in range(3):
        assert probe(1) > 0
    assert all(a is b for a, b in zip(before, [p.grad for p in probed.model.parameters() if p.requires_grad],
                                      strict=True))
    after_probe = torch.rand(3)
    torch.manual_seed(5)
    assert torch.equal(after_probe, torch.rand(3))  # torch's random state as it was (LoRA dropout draws from it)
    torch.manual_seed(5)
    expected = _curve(plain)
    torch.manual_seed(5)
    assert _curve(probed) == expected  # exact floats


def test_runs_from_the_same_place_share_a_key_and_others_do_not():
    data = load_builtin("intents")
    experiment = Experiment(Setup("tiny", "lora", {"r": 4}, seed=0), data)
    key = run_key(experiment, SETTINGS)
    assert run_key(Experiment(Setup("tiny", "lora", {"r": 4}, seed=0), load_builtin("intents")), SETTINGS) == key
    assert run_key(experiment, replace(SETTINGS, steps=60, eval_every=10)) == key  # 6 steps are the first of 60
    assert run_key(experiment, replace(SETTINGS, lr=0.01)) != key
    assert run_key(experiment, replace(SETTINGS, batch_size=0)) != key
    assert run_key(Experiment(Setup("tiny", "lora", {"r": 8}, seed=0), data), SETTINGS) != key
    assert run_key(Experiment(Setup("tiny", "lora", {"r": 4}, seed=1), data), SETTINGS) != key
    assert run_key(Experiment(Setup("tiny", "lora", {"r": 4}, seed=0), load_builtin("sentiment")), SETTINGS) != key


def test_choose_threads_sets_the_count_it_returns_and_keeps_it_for_the_same_start():
    experiment = Experiment(Setup("tiny", "lora", {}, seed=0), load_builtin("intents"))
    choice = ThreadChoice(2, probe_s=0.01, max_probe_s=0.05)
    threads = choose_threads(choice, experiment, SETTINGS)
    assert threads in (1, 2) and torch.get_num_threads() == threads and choice.probes == 1
    torch.set_num_threads(3 - threads)
    assert choose_threads(choice, experiment, SETTINGS) == threads == torch.get_num_threads()
    assert choice.probes == 1
