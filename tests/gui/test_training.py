"""Training in the worker: responsiveness, transport, errors, closing."""

from __future__ import annotations

import contextlib
import subprocess
import sys

import pytest
from PySide6.QtCore import QElapsedTimer, QTimer


def wait_steps(qtbot, window, at_least: int, timeout: int = 15_000) -> None:
    qtbot.waitUntil(lambda: window.runner.step >= at_least, timeout=timeout)


def test_play_draws_the_loss_curve_and_the_gui_stays_responsive(window, qtbot):
    """While training runs (and the user zooms, pans and resizes), a 5 ms timer keeps firing.

    The speed goal (p99 <= 16 ms, max <= 50 ms late) is a figure of benchmarks/run.py, measured
    there; on shared CI cores a hard 50 ms bound flakes, so this only catches a frozen GUI thread.
    """
    window.controller.set_training(steps=100_000)
    window.runner.play_pause()
    assert window.runner.state == "running"
    wait_steps(qtbot, window, 1)  # training is running from here on
    lateness: list[float] = []
    clock = QElapsedTimer()
    timer = QTimer()
    timer.setInterval(5)

    def tick() -> None:
        now = clock.nsecsElapsed() / 1e6
        lateness.append(now - tick.last - 5.0)
        tick.last = now

    clock.start()
    tick.last = 0.0
    timer.timeout.connect(tick)
    timer.start()
    QTimer.singleShot(300, lambda: window.view.zoom(1.3))
    QTimer.singleShot(500, lambda: window.view.horizontalScrollBar().setValue(40))
    QTimer.singleShot(900, window.view.fit)
    qtbot.wait(1500)
    timer.stop()
    # resizing mid-run works too (a full relayout costs ~35 ms once, so it is kept out of the timing)
    scale = window.view.zoom_level()
    window.resize(window.width() * 3 // 4, window.height() * 3 // 4)  # the window fits the screen: shrink it
    qtbot.wait(100)
    assert window.runner.state == "running" and window.view.zoom_level() < scale
    wait_steps(qtbot, window, 11)  # a busy machine may have run fewer in the 1.5 s above: the count is not timed
    steps_seen = window.runner.step
    window.runner.stop_and_wait()
    assert steps_seen > 10 and window.plots.point_count() >= steps_seen - 1
    xs, ys = window.plots.curves["loss"].getData()  # the settled part and the pieces since: every point
    assert len(xs) == window.plots.point_count()
    assert ys[-1] < ys[0]
    assert len(lateness) > 100
    periods = lateness[1:]  # the first sample spans the test's own set-up, not a timer period
    assert max(periods) <= 250.0, f"5 ms timer was {max(periods):.1f} ms late"


def test_pause_resume_step_and_stop(window, qtbot):
    runner = window.runner
    window.controller.set_training(steps=100_000)
    runner.play_pause()
    wait_steps(qtbot, window, 3)
    runner.play_pause()  # pause
    assert runner.state == "paused"
    qtbot.wait(200)
    paused_at = runner.step
    qtbot.wait(300)
    assert runner.step == paused_at  # nothing runs while paused
    runner.step_once()
    qtbot.waitUntil(lambda: runner.step == paused_at + 1, timeout=5000)
    qtbot.wait(200)
    assert runner.step == paused_at + 1  # exactly one step
    runner.play_pause()  # resume
    assert runner.state == "running"
    wait_steps(qtbot, window, paused_at + 5)
    runner.stop()
    qtbot.waitUntil(lambda: not runner.active, timeout=5000)
    stopped_at = runner.step
    assert runner.state == "idle"
    qtbot.wait(100)
    assert runner.step == stopped_at
    assert window.step_label.text() == f"step {stopped_at}"
    assert "base unchanged" in window.base_label.text()


def test_step_from_idle_runs_one_step(window, qtbot):
    window.runner.step_once()
    qtbot.waitUntil(lambda: window.runner.step == 1, timeout=5000)
    assert window.runner.state == "paused"
    window.runner.stop()
    qtbot.waitUntil(lambda: not window.runner.active, timeout=5000)


def test_settings_locked_while_running(window, qtbot):
    window.controller.set_training(steps=100_000)
    window.runner.play_pause()
    assert not window.base_box.isEnabled()
    assert not window.form.editors["r"].isEnabled()
    assert "Locked while training" in window.form.editors["r"].toolTip()
    setup = window.controller.setup
    window.on_site_clicked("layers.0.attn.k")
    assert window.controller.setup == setup
    window.runner.stop_and_wait()
    assert window.base_box.isEnabled() and window.form.editors["r"].isEnabled()


def test_reset_reinitialises_method_and_head_not_the_base(window, qtbot):
    c = window.controller
    fingerprint = c.experiment.model.base_fingerprint
    probs_before = c.experiment.predict(["need a refund"]).tolist()
    window.controller.set_training(steps=20)
    window.runner.play_pause()
    qtbot.waitUntil(lambda: not window.runner.active, timeout=15_000)
    assert c.experiment.predict(["need a refund"]).tolist() != probs_before
    window.reset()
    assert window.runner.step == 0
    assert c.experiment.model.base_fingerprint == fingerprint
    assert c.experiment.predict(["need a refund"]).tolist() == probs_before


def test_worker_error_becomes_a_dialog_and_the_app_goes_on(window, qtbot, errors):
    def boom(*args):
        raise ValueError("boom in forward")

    window.controller.experiment.model.head.forward = boom
    window.runner.play_pause()
    qtbot.waitUntil(lambda: not window.runner.active, timeout=5000)
    assert errors == [("Training failed", "ValueError: boom in forward")]
    assert window.runner.state == "idle"
    window.reset()  # a fresh model trains again
    window.controller.set_training(steps=5)
    window.runner.play_pause()
    qtbot.waitUntil(lambda: not window.runner.active, timeout=5000)
    assert window.runner.step == 5


def test_diverged_loss_is_a_dialog_quoting_the_message(window, qtbot, errors):
    window.controller.set_training(lr=1e30, steps=50)
    window.runner.play_pause()
    qtbot.waitUntil(lambda: not window.runner.active, timeout=15_000)
    assert len(errors) == 1
    title, message = errors[0]
    assert title == "Training stopped"
    assert message.startswith("the loss became nan") and "lower learning rate" in message
    assert "Traceback" not in message
    assert window.runner.state == "idle" and window.base_box.isEnabled()


def test_seed_example_trains_to_the_seed_predictions(window, qtbot):
    window.act_seed.trigger()
    c = window.controller
    assert (c.setup.base, c.setup.method, c.dataset.name, c.setup.seed) == \
        ("seed-pooled", "adapter", "seed-intents", 42)
    assert (c.census.total, c.census.trainable) == (694, 182)
    assert c.settings.steps == 201 and c.settings.lr == 0.05
    window.runner.play_pause()
    qtbot.waitUntil(lambda: not window.runner.active, timeout=20_000)
    assert window.runner.step == 201
    table = window.inference.table
    rows = [(table.item(r, 0).text(), table.item(r, 1).text()) for r in range(table.rowCount())]
    assert rows == [("refund my order", "refund"), ("need a refund", "refund"), ("cancel and refund", "refund"),
                    ("login failed again", "login"), ("cannot login account", "login"),
                    ("password login problem", "login")]
    window.inference.entry.setText("refund please")
    assert window.inference.result.text().startswith("→ refund")


def test_closing_mid_run_stops_the_worker(window, qtbot, qtlog):
    window.controller.set_training(steps=100_000)
    window.runner.play_pause()
    wait_steps(qtbot, window, 2)
    worker = window.runner.worker
    window.close()  # never blocks: asks the worker to stop, hides, and closes when the worker has ended
    assert window.runner.worker is worker  # close() returned before the worker ended (a blocking close clears it)
    assert not window.isVisible()
    qtbot.waitUntil(lambda: window.runner.worker is None, timeout=10_000)
    with contextlib.suppress(RuntimeError):  # already deleted (deleteLater ran): it had finished
        assert worker.isFinished()
    assert not any("Destroyed" in record.message for record in qtlog.records)


CLOSE_SCRIPT = """
import os, sys
os.environ["QT_QPA_PLATFORM"] = "offscreen"
from PySide6.QtCore import QTimer
from peft_studio.gui.app import make_app
app = make_app([])
from peft_studio.gui.window.main_window import MainWindow
w = MainWindow(); w.show()
w.controller.set_training(steps=100000)
QTimer.singleShot(200, w.runner.play_pause)
poll = QTimer()
poll.timeout.connect(lambda: w.runner.step >= 3 and w.close())  # close mid-run, once steps are flowing
poll.start(20)
code = app.exec()
print("steps", w.runner.step)
sys.exit(code)
"""


def test_closing_mid_run_exits_with_code_zero():
    result = subprocess.run([sys.executable, "-c", CLOSE_SCRIPT], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "Destroyed while thread" not in result.stderr
    assert int(result.stdout.split()[-1]) > 0


def test_live_gradient_norms_frozen_parts_show_exactly_zero(window, qtbot):
    window.controller.set_training(steps=15)
    window.runner.play_pause()
    qtbot.waitUntil(lambda: not window.runner.active, timeout=10_000)
    model = window.table.model
    assert model.grads, "no gradient norms reached the table"
    for row in model.rows:
        if row.trainable:
            assert model.grad_of(row) > 0, row.name
        else:
            assert model.grad_of(row) == 0.0, row.name
    site = window.scene.site_items["layers.0.attn.q"]
    head = window.scene.block_items["head"]
    assert site.grad is not None and site.grad > 0 and head.grad is not None
    for item in (site, head):  # the bar shows the norm relative to the largest one right now
        assert item._bar is not None and item._bar.isVisible()
        assert item._bar.fraction == pytest.approx(item.grad / item.grad_max, abs=1 / item._bar.track.width())
    frozen = window.scene.block_items["layers.0.attn.k"]
    assert frozen.grad is None and frozen._bar is None  # frozen: no bar at all


def test_a_run_keeps_its_thread_count_when_another_job_sets_torchs_count():
    """torch's thread count is the process's: a job started during a run (a lens, the family map) sets its own,
    and the run's next step must still train with the run's count (its bits depend on it)."""
    import torch

    from peft_studio.core.data import load_builtin
    from peft_studio.core.model.experiment import Experiment, Setup
    from peft_studio.core.runs.threads import ThreadChoice
    from peft_studio.core.runs.train import TrainSettings
    from peft_studio.gui.jobs.worker import TrainWorker

    experiment = Experiment(Setup("tiny", "lora", {}, seed=0), load_builtin("intents"))
    worker = TrainWorker(experiment, TrainSettings(steps=3), threads=ThreadChoice(cores=1))
    before = torch.get_num_threads()
    try:
        events = worker._events()
        next(events)
        assert worker.threads == 1
        torch.set_num_threads(2)  # what another job's thread does meanwhile
        next(events)  # the next step ran ...
        assert torch.get_num_threads() == 1  # ... with the run's count
        events.close()
    finally:
        torch.set_num_threads(before)
