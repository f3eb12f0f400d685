"""Instant start (warm-up after the first paint), Ctrl+C, and the toolbar's speed label."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading

from peft_studio.gui.jobs.runner import speed_text


def test_speed_text_shows_threads_and_one_decimal_below_ten():
    assert speed_text(118.6, 2) == "119 steps/s · 2 threads"
    assert speed_text(9.84, 1) == "9.8 steps/s · 1 thread"
    assert speed_text(0.5) == "0.5 steps/s"


def test_the_window_is_built_without_waiting_for_the_warm_up_and_play_waits_for_it(window, qtbot):
    assert window.runner._warm_up is None  # MainWindow() did not pay torch's first-use costs
    assert not any(t.name == "torch-warm-up" for t in threading.enumerate())
    window.controller.set_training(steps=100_000)
    window.runner.play_pause()  # Play before any warm-up: it runs it first, then trains
    assert window.runner.warmed_up
    qtbot.waitUntil(lambda: "thread" in window.speed_label.text(), timeout=15_000)
    threads = window.runner.threads_used
    assert f"{threads} thread" in window.speed_label.text()
    window.runner.play_pause()
    assert window.speed_label.text() == "paused"
    qtbot.wait(400)  # events drained while paused keep the label
    assert window.speed_label.text() == "paused"


def test_first_paint_callback_runs_once_after_show(qapp, qtbot):
    from PySide6.QtWidgets import QLabel

    from peft_studio.gui.app import on_first_paint

    label = QLabel("hello")
    qtbot.addWidget(label)
    calls = []
    on_first_paint(label, lambda: calls.append(label.isVisible()))
    qtbot.wait(50)
    assert calls == []  # not before it is shown
    label.show()
    qtbot.waitUntil(lambda: calls == [True], timeout=5000)
    label.update()
    qtbot.wait(100)
    assert calls == [True]


CHILD = """
import sys
from peft_studio.gui import app
def painted(window):
    print("painted", flush=True)
sys.exit(app.main(on_painted=painted))
"""


def test_ctrl_c_in_the_terminal_closes_the_window():
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen")
    child = subprocess.Popen([sys.executable, "-c", CHILD], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True, env=env)
    try:
        assert child.stdout.readline().strip() == "painted"
        child.send_signal(signal.SIGINT)
        assert child.wait(timeout=30) == 0  # closed like the close button: app.exec() returned 0
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()


PHASES = """
import sys
from peft_studio.gui import app
def painted(window):
    print("painted", window.completed, hasattr(window, "docks"), len(window.scene.items()), flush=True)
def interactive(window):
    print("interactive", window.completed, hasattr(window, "docks"), len(window.scene.items()) > 0,
          window.runner._warm_up is None, flush=True)
    window.close()
sys.exit(app.main(on_painted=painted, on_interactive=interactive))
"""


def test_the_frame_paints_before_the_diagram_is_built_then_the_window_completes(tmp_path):
    """The docks (the Setup panel among them: the side area's tabs) are part of the frame; the diagram, the census
    and the last session come after the first paint."""
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen", XDG_CONFIG_HOME=str(tmp_path / "config"),
               XDG_DATA_HOME=str(tmp_path / "data"))
    result = subprocess.run([sys.executable, "-c", PHASES], capture_output=True, text=True, env=env, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["painted False True 0", "interactive True True True True"]
