"""The trainer: events, divergence handling, and control from another thread."""

from __future__ import annotations

import math
import threading
import time

import pytest
import torch

from peft_studio.core.data import load_builtin
from peft_studio.core.errors import ConfigError, TrainingDiverged
from peft_studio.core.model.experiment import Experiment, Setup
from peft_studio.core.runs.train import TrainControl, TrainSettings, train


def _experiment(method="lora", base="tiny"):
    return Experiment(Setup(base, method, {}, seed=0), load_builtin("intents"))


def test_events_carry_metrics_and_gradient_norms_of_trainable_tensors_only():
    experiment = _experiment()
    events = list(train(experiment, TrainSettings(steps=5, eval_every=2)))
    assert [e.step for e in events] == [0, 1, 2, 3, 4]
    assert [e.val_accuracy is not None for e in events] == [True, False, True, False, True]
    trainable = {n for n, p in experiment.model.named_parameters() if p.requires_grad}
    assert set(events[0].grad_norms) == trainable
    assert all(math.isfinite(v) for v in events[-1].grad_norms.values())
    assert events[-1].last and events[-1].steps_per_second > 0


def test_a_diverging_loss_stops_the_run_and_restores_finite_weights():
    experiment = _experiment(method="full")
    with pytest.raises(TrainingDiverged, match="lower learning rate"):
        for _ in train(experiment, TrainSettings(steps=50, lr=1e12)):
            pass
    assert all(torch.isfinite(p).all() for p in experiment.model.parameters())


@pytest.mark.parametrize("bad, pattern", [
    (TrainSettings(steps=0), "steps must be at least 1"),
    (TrainSettings(lr=-1.0), "lr must be a positive number"),
    (TrainSettings(optimizer="sgd9"), "optimizer must be one of adam, adamw"),
])
def test_bad_training_settings(bad, pattern):
    with pytest.raises(ConfigError, match=pattern):
        next(train(_experiment(), bad))


def test_pause_step_resume_and_stop_from_another_thread():
    experiment = _experiment()
    control = TrainControl()
    control.pause()
    steps: list[int] = []
    run = threading.Thread(target=lambda: steps.extend(e.step for e in train(
        experiment, TrainSettings(steps=10_000, track_grads=False), control)))
    run.start()
    run.join(0.3)
    assert steps == []  # paused before the first step
    control.step_once()
    control.step_once()
    wait_for(lambda: len(steps) >= 2)
    run.join(0.2)
    assert steps == [0, 1]  # exactly two single steps, then paused again
    control.resume()
    wait_for(lambda: len(steps) >= 20)
    control.stop()
    run.join(5)
    assert not run.is_alive()
    assert steps == list(range(len(steps))) and len(steps) < 10_000


def wait_for(condition, timeout_s: float = 30.0) -> None:
    """Poll until `condition()` holds; fail (never hang) after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.01)
