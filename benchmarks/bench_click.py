"""Click to updated count on Llama-3-70B, measured as a user clicks: a mouse press on an insertion point in the
window's diagram (layers 0-3 drawn), until the status bar's trainable count shows the new number; and, beside
it, until the rebuilt diagram has painted (the build runs off the GUI thread meanwhile).

    python benchmarks/bench_click.py [ROUNDS]

run.py calls `click_to_count` in a fresh process (the part "click").
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parent)]


def click_to_count(rounds: int = 7, timeout_s: float = 120.0) -> dict:
    """Median and max milliseconds from a click to the new count, and from the click to the rebuilt diagram's
    first paint; each round clicks the same point (add, then remove)."""
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from PySide6.QtCore import QEvent, QEventLoop, QObject, QPoint, QSettings, Qt
    from PySide6.QtTest import QTest

    folder = tempfile.mkdtemp(prefix="peft-studio-click-")  # the user's settings stay untouched
    QSettings.setDefaultFormat(QSettings.Format.IniFormat)
    QSettings.setPath(QSettings.Format.IniFormat, QSettings.Scope.UserScope, folder)
    os.environ["XDG_DATA_HOME"] = folder
    from peft_studio.gui.app import make_app
    from peft_studio.gui.window.main_window import MainWindow

    app = make_app([])
    window = MainWindow()
    window.resize(1600, 1000)
    window.show()
    c = window.controller
    c.set_base("llama-3-70b")
    if not c.wait_for_builds() or c.setup.base != "llama-3-70b":
        raise RuntimeError("llama-3-70b does not build")
    window.show_layers("0-3")
    app.processEvents()
    site = next(s for s in c.experiment.base.sites() if s.layer == 1 and s.name == "k_proj")

    def wait(done, what: str) -> float:
        started = time.perf_counter()
        while not done():
            app.processEvents(QEventLoop.ProcessEventsFlag.WaitForMoreEvents, 5)
            if time.perf_counter() - started > timeout_s:
                raise RuntimeError(f"no {what} within {timeout_s:.0f} s")
        return time.perf_counter()

    painted: list[float] = []

    class Paints(QObject):
        def eventFilter(self, watched, event) -> bool:  # noqa: N802 - Qt override
            if event.type() == QEvent.Type.Paint and not c.building:
                painted.append(time.perf_counter())
            return False

    spy = Paints()
    window.view.viewport().installEventFilter(spy)
    counts, rebuilt = [], []
    for _ in range(rounds + 1):  # the first round warms up
        item = window.scene.site_items[site.id]
        window.view.centerOn(item)
        app.processEvents()
        at: QPoint = window.view.mapFromScene(item.scenePos())
        before = window.params_label.text()
        painted.clear()
        started = time.perf_counter()
        QTest.mouseClick(window.view.viewport(), Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier, at)
        count_at = wait(lambda: window.params_label.text() != before, "new count")  # noqa: B023
        wait(lambda: not c.building and painted, "repaint")  # noqa: B023
        counts.append((count_at - started) * 1000)
        rebuilt.append((painted[0] - started) * 1000)
    window.view.viewport().removeEventFilter(spy)
    window.close()
    counts, rebuilt = counts[1:], rebuilt[1:]
    return {"count_ms": statistics.median(counts), "count_max_ms": max(counts),
            "rebuilt_ms": statistics.median(rebuilt), "rebuilt_max_ms": max(rebuilt), "rounds": rounds}


if __name__ == "__main__":
    print(click_to_count(int(sys.argv[1]) if len(sys.argv) > 1 else 7))
