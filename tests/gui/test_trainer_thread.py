"""Every training run computes on one long-lived thread (gui/jobs/trainer_thread.py); the worker's QThread keeps
the run's lifecycle. And the window's per-frame work: one batch object for every receiver, gradient colours
throttled while training takes every core."""

from __future__ import annotations

import threading

import pytest

from peft_studio.gui.jobs.trainer_thread import TrainerThread


def test_jobs_run_one_at_a_time_in_order_on_one_thread_and_raise_where_awaited():
    trainer = TrainerThread(name="test-trainer")
    seen = []
    gate = threading.Event()
    first = trainer.submit(lambda: (gate.wait(5), seen.append(("first", threading.get_ident()))))
    second = trainer.submit(lambda: seen.append(("second", threading.get_ident())))
    assert first.is_alive() and second.is_alive()  # the second waits for the first
    gate.set()
    second.join(5)
    assert not first.is_alive() and not second.is_alive()
    assert [name for name, _ in seen] == ["first", "second"]
    assert len({ident for _, ident in seen}) == 1 and seen[0][1] != threading.get_ident()

    def fails():
        raise ValueError("bad input")

    with pytest.raises(ValueError, match="bad input"):
        trainer.run(fails)
    trainer.run(lambda: seen.append(("after", threading.get_ident())))  # a failed job leaves the thread serving
    assert seen[-1][1] == seen[0][1]


def test_two_runs_of_the_window_train_on_the_same_thread(window, qtbot):
    """A fresh thread per run started cold (its OpenMP team and allocator arena): ~15 ms more a run."""
    import peft_studio.core.runs.train as train_module

    idents = []
    original = train_module.StepEvent.__init__

    def record(self, *args, **kwargs):
        idents.append(threading.get_ident())
        original(self, *args, **kwargs)

    train_module.StepEvent.__init__ = record
    try:
        window.controller.set_training(steps=3)
        for _ in range(2):
            window.runner.play_pause()
            qtbot.waitUntil(lambda: not window.runner.active, timeout=30_000)
            window.runner.reset()
    finally:
        train_module.StepEvent.__init__ = original
    assert len(idents) == 6 and len(set(idents)) == 1 and idents[0] != threading.get_ident()


def test_every_receiver_gets_the_runners_batch_itself(window, qtbot):
    """Signal(list) converted each event dict to a QVariantMap and back for every receiver (0.12 ms a frame)."""
    received = []
    window.runner.events.connect(received.append)
    window.runner.events.connect(received.append)
    batch = [{"step": 0, "loss": 1.0, "accuracy": 0.5, "sps": 10.0, "val_loss": None, "val_accuracy": None,
              "last": False, "method_state": {}, "threads": 1}]
    window.runner.events.emit(batch)
    assert received == [batch, batch] and received[0] is batch and received[1] is batch


def _batch(step: int, last: bool = False) -> list[dict]:
    return [{"step": step, "loss": 1.0, "accuracy": 0.5, "sps": 100.0, "val_loss": None, "val_accuracy": None,
             "last": last, "method_state": {}, "threads": 2, "grads": {"x": float(step)}}]


@pytest.mark.parametrize("budget_active", [True, False])
def test_gradient_colours_follow_at_4_hz_only_while_training_takes_every_core(window, monkeypatch, budget_active):
    from peft_studio.gui.window import main_window

    shown = []
    monkeypatch.setattr(window.scene, "update_grads", lambda grads: shown.append(grads["x"]))
    monkeypatch.setattr(window.runner.budget, "active", budget_active)
    clock = [1000.0]
    monkeypatch.setattr(main_window.time, "monotonic", lambda: clock[0])
    for step in range(10):  # a frame every 0.1 s, each with a fresh sample
        window.on_events(_batch(step))
        clock[0] += 0.1
    window.on_events(_batch(10, last=True))  # the last step's gradients are always shown
    if budget_active:
        assert shown == [0.0, 3.0, 6.0, 9.0, 10.0]  # every 0.25 s (a frame 0.3 s apart), and the last
    else:
        assert shown == [float(step) for step in range(11)]


def train_with_a_layer_0_hook(window, qtbot, monkeypatch, long_step_s, hook, steps):
    """Train `steps` steps in the window with `hook` as a forward hook on layer 0 and every step counting as long or
    short by `long_step_s` (however busy the machine); no thread probe, so every training forward is a step's."""
    from peft_studio.core.runs import interrupt
    from peft_studio.core.runs.interrupt import layer_modules
    from peft_studio.core.runs.threads import ThreadChoice

    monkeypatch.setattr(interrupt, "LONG_STEP_S", long_step_s)
    window.runner.thread_choice = ThreadChoice(cores=1)
    handle = layer_modules(window.controller.experiment.model)[0].register_forward_hook(hook)
    try:
        window.controller.set_training(steps=steps, eval_every=1000)
        window.runner.play_pause()
        qtbot.waitUntil(lambda: not window.runner.active, timeout=30_000)
    finally:
        handle.remove()


def test_a_window_run_with_long_steps_keeps_its_layer_checks_and_a_stop_ends_the_step_in_flight(window, qtbot,
                                                                                                 monkeypatch):
    """Short steps drop the per-layer stop checks (core/runs/interrupt.py); a run whose steps are long keeps them:
    a stop that arrives inside layer 0 of the third step abandons that step, whose update never happens."""
    forwards = []

    def stop_in_third_step(module, _inputs, _output):
        if module.training:
            forwards.append(1)
            if len(forwards) == 3:
                window.runner.worker.control.stop()  # from the trainer thread, inside the step

    train_with_a_layer_0_hook(window, qtbot, monkeypatch, 0.0, stop_in_third_step, steps=50)  # a checkpoint's steps
    assert len(forwards) == 3 and window.runner.step == 2  # the third step ended at layer 1: not counted
    assert window.plots.point_count() == 2


def test_a_window_run_with_short_steps_drops_its_layer_checks_after_the_first_step(window, qtbot, monkeypatch):
    from peft_studio.core.runs.interrupt import layer_modules

    second = layer_modules(window.controller.experiment.model)[1]
    hooked = []

    def record(module, _inputs, _output):
        if module.training:
            hooked.append(bool(second._forward_pre_hooks))

    train_with_a_layer_0_hook(window, qtbot, monkeypatch, 60.0, record, steps=4)  # every step counts as short
    assert hooked == [True, False, False, False]  # the first step's length is unknown: checked inside it
