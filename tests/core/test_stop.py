"""Stop takes effect at once (checked by events, not by the clock): a run yields nothing after its stop, a long
step ends at the next layer with the weights of the last finished step, a family run stops between steps and
during its measurements and records nothing it did not finish."""

from __future__ import annotations

import pytest
import torch

from peft_studio.core.data import load_builtin
from peft_studio.core.model.experiment import Experiment, Setup
from peft_studio.core.runs import compare
from peft_studio.core.runs.compare import run_family
from peft_studio.core.runs.interrupt import StepInterrupted, interruptible, layer_modules
from peft_studio.core.runs.run_store import RunStore
from peft_studio.core.runs.train import TrainControl, TrainSettings, train

DATA = load_builtin("intents")


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny models on a shared machine
    yield
    torch.set_num_threads(threads)


def assert_a_stop_in_layer_0_abandons_the_next_step(experiment, control, steps):
    """A stop that arrives while the next step is inside layer 0 ends that step at layer 1 (StepInterrupted),
    before its update: the trainable weights stay as the last finished step left them."""
    trainable = [p for p in experiment.model.parameters() if p.requires_grad]
    finished = [p.detach().clone() for p in trainable]
    handle = layer_modules(experiment.model)[0].register_forward_hook(lambda *_: control.stop())
    try:
        with pytest.raises(StepInterrupted):
            next(steps)
    finally:
        handle.remove()
    assert all(torch.equal(p, saved) for p, saved in zip(trainable, finished, strict=True))


def test_a_run_yields_nothing_after_its_stop():
    experiment = Experiment(Setup("tiny", "lora"), DATA)
    control = TrainControl()
    steps = train(experiment, TrainSettings(steps=1000, track_grads=False), control)
    seen = [next(steps).step for _ in range(3)]
    control.stop()
    assert seen == [0, 1, 2] and list(steps) == []


def test_a_long_step_ends_at_the_next_layer_with_the_last_finished_weights():
    experiment = Experiment(Setup("tiny", "lora"), DATA)
    layers = layer_modules(experiment.model)
    assert len(layers) == experiment.base.num_layers == 2
    control = TrainControl()
    steps = train(experiment, TrainSettings(steps=1000, track_grads=False), control)
    with interruptible(experiment.model, lambda: control.stopped):
        next(steps)
        next(steps)
        # the stop arrives while the third step is inside layer 0 (a real checkpoint's step takes seconds)
        assert_a_stop_in_layer_0_abandons_the_next_step(experiment, control, steps)
    experiment.model.eval()  # an evaluation is never interrupted: outside `interruptible` nothing is hooked
    experiment.model(experiment.train_ids[:2], experiment.train_mask[:2])


def test_the_layer_checks_stay_only_while_steps_are_long():
    experiment = Experiment(Setup("tiny", "lora"), DATA)
    layers = layer_modules(experiment.model)
    control = TrainControl()
    now = [0.0]
    steps = train(experiment, TrainSettings(steps=1000, track_grads=False), control)
    with interruptible(experiment.model, lambda: control.stopped, long_step_s=0.05, clock=lambda: now[0]) as stops:
        assert stops.hooked and all(layer._forward_pre_hooks for layer in layers)  # the first step's length is unknown
        next(steps)
        now[0] += 0.01
        stops.step_done()  # a short step: no check inside the next one
        assert not stops.hooked and not any(layer._forward_pre_hooks for layer in layers)
        next(steps)
        now[0] += 0.5
        stops.step_done()  # a long one: the checks are back, and a stop ends the next step at a layer
        assert stops.hooked
        assert_a_stop_in_layer_0_abandons_the_next_step(experiment, control, steps)
    assert not any(layer._forward_pre_hooks for layer in layers)  # nothing is left hooked after the run


def test_a_family_run_stops_between_steps_and_records_nothing_unfinished(tmp_path):
    control = TrainControl()
    store = RunStore(tmp_path)
    kinds = []
    for event in run_family("tiny", DATA, TrainSettings(steps=1000, eval_every=500), methods=["lora", "ia3"],
                            control=control, store=store):
        kinds.append(event.kind)
        if event.kind == "step" and event.step.step == 2:
            control.stop()
    assert kinds == ["start", "step", "step", "step", "stopped"] and store.list() == []


def test_a_stop_during_the_measurements_ends_them_and_the_run_is_not_recorded(tmp_path, monkeypatch):
    control = TrainControl()
    timed = []
    original = compare._Timed.once

    def once(self):  # the stop arrives while the latency is being measured
        timed.append(1)
        control.stop()
        original(self)

    monkeypatch.setattr(compare._Timed, "once", once)
    store = RunStore(tmp_path)
    kinds = [e.kind for e in run_family("tiny", DATA, TrainSettings(steps=2, eval_every=1), methods=["lora"],
                                        control=control, store=store)]
    assert kinds == ["start", "step", "step", "stopped"] and store.list() == []
    assert len(timed) <= 4  # the warm-up and one round of both models, then it stopped (30 rounds otherwise)
