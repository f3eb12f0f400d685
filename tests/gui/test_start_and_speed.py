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


def _layout_requests_while(app, action) -> list[str]:
    from PySide6.QtCore import QEvent, QObject

    seen: list[str] = []

    class Watch(QObject):
        def eventFilter(self, watched, event):  # noqa: N802 - Qt override
            if event.type() == QEvent.Type.LayoutRequest:
                seen.append(type(watched).__name__)
            return False

    watch = Watch()
    app.installEventFilter(watch)
    try:
        action()
    finally:
        app.removeEventFilter(watch)
    return seen


def test_a_new_step_number_repaints_the_counter_alone_in_both_display_modes(window, qtbot):
    """The counter changes every frame of a run: it must not re-lay out the toolbar (which repainted a strip of
    the main window every frame) and must paint its own background (a style sheet's polish cleared the opaque
    flag set at construction), leaving no digit of a longer number behind."""
    from PySide6.QtCore import Qt
    from PySide6.QtWidgets import QApplication

    app = QApplication.instance()
    label = window.step_label
    window.resize(1600, 900)  # the counter in the toolbar itself, not in its » menu
    sizes = []
    for presentation in (False, True, False):
        window.presentation.set(presentation)
        qtbot.wait(20)
        assert label.isVisible() and label.testAttribute(Qt.WidgetAttribute.WA_OpaquePaintEvent)
        sizes.append(label.height())

        def count_up() -> None:
            for step in (5, 12345, 99, 123456, 7):
                label.setText(f"step {step}")
                app.processEvents()

        qtbot.wait(50)  # the layout the mode change asked for is done first
        assert _layout_requests_while(app, count_up) == []
        label.setText("step 123456")
        app.processEvents()
        label.setText("step 7")
        app.processEvents()
        # what the screen shows (the window's backing store), not a fresh rendering: right of the short
        # number's text, every pixel is the background (no digit of the longer number left behind)
        corner = label.mapTo(window, label.rect().topLeft())
        shown = window.screen().grabWindow(window.winId(), corner.x(), corner.y(), label.width(),
                                           label.height()).toImage()
        text_end = label.contentsRect().left() + label.fontMetrics().horizontalAdvance("step 7") + 12
        right = {shown.pixel(x, y) for x in range(text_end, label.width() - 2) for y in range(label.height())}
        assert len(right) == 1, f"{len(right)} colours right of the text: digits left behind"
    assert sizes[1] > sizes[0] == sizes[2]  # the projector's larger counter was tested too


def test_the_live_numbers_above_the_plots_change_without_a_relayout(window, qtbot):
    """The last step's numbers change four times a second during a run: the plots' row must not be laid out
    again each time, and the label must still show (and tell a screen reader) the new text."""
    from PySide6.QtWidgets import QApplication

    app = QApplication.instance()
    label = window.plots.last_values
    window.resize(1600, 900)
    qtbot.wait(50)
    label.setText("")
    app.processEvents()
    blank = label.grab().toImage()

    def numbers() -> None:
        for step in (1, 22, 333):
            label.setText(f"step {step}:  loss 0.{step}  ·  accuracy 50%")
            app.processEvents()

    assert _layout_requests_while(app, numbers) == []
    assert label.text() == label.accessibleName() == "step 333:  loss 0.333  ·  accuracy 50%"
    assert label.grab().toImage() != blank
    label.setText("a " * 400)  # far wider than the label: cut at a word, the whole text in the tooltip
    label.repaint()
    assert label.shown_text().endswith("…") and ("a " * 400).strip() in label.toolTip()


def test_the_app_imports_torch_before_pyside6():
    """PySide6's import hook reads the source of every module imported after it (~0.1 s of start-up for torch's):
    make_app imports torch first (an unused-looking import a linter once removed, measured as start-up 1.22 ->
    1.36 x the import floor)."""
    code = ("import sys\nfrom peft_studio.gui.app import make_app\nmake_app([])\nnames = list(sys.modules)\n"
            "print(names.index('torch') < names.index('PySide6'))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                            env={**os.environ, "QT_QPA_PLATFORM": "offscreen"})
    assert result.stdout.strip().splitlines()[-1] == "True", result.stderr
