"""GUI tests run offscreen; a test that leaves a thread running fails."""

from __future__ import annotations

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ.setdefault("PYQTGRAPH_QT_LIB", "PySide6")

import gc  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402

import pytest  # noqa: E402
from plugin_shift import shift_method  # noqa: E402, F401 - the test plugin's fixture, shared with the core tests


@pytest.fixture(scope="session")
def qapp_cls():
    from PySide6.QtWidgets import QApplication

    return QApplication


@pytest.fixture(autouse=True, scope="session")
def private_user_folders(tmp_path_factory):
    """Runs, settings and other per-user files go to a temporary home, never the real one."""
    home = tmp_path_factory.mktemp("home")
    saved = {k: os.environ.get(k) for k in ("XDG_DATA_HOME", "XDG_CONFIG_HOME")}
    os.environ["XDG_DATA_HOME"] = str(home / "data")
    os.environ["XDG_CONFIG_HOME"] = str(home / "config")
    yield home
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


@pytest.fixture(autouse=True)
def delete_closed_windows():
    """Windows of earlier tests really go. pytest-qt closes them and calls deleteLater, but a deferred delete waits
    for an event loop that pytest never runs, so each window (and its ~110 menus, docks and popups) lived on and
    every later window cost more to build and show: 1 s for the first, over 6 s after a dozen (and pyqtgraph's
    parentless menus stayed as top-level widgets until a garbage collection)."""
    from PySide6.QtCore import QEvent
    from PySide6.QtWidgets import QApplication

    if QApplication.instance() is not None:
        QApplication.sendPostedEvents(None, QEvent.Type.DeferredDelete)
        gc.collect()  # pyqtgraph's view-box menus have no Qt parent: they go with their Python owners' cycles
    yield


@pytest.fixture(autouse=True)
def private_settings(tmp_path):
    """Every test gets its own empty QSettings (window geometry, first-run hint): the user's stay untouched."""
    from PySide6.QtCore import QSettings

    QSettings.setDefaultFormat(QSettings.Format.IniFormat)
    for scope in (QSettings.Scope.UserScope, QSettings.Scope.SystemScope):
        QSettings.setPath(QSettings.Format.IniFormat, scope, str(tmp_path / "settings"))
    yield tmp_path / "settings"


@pytest.fixture(autouse=True)
def no_thread_left_running():
    """Compare threads before/after (allowing a short join): a leaked worker fails the test."""
    before = set(threading.enumerate())
    yield
    deadline = time.monotonic() + 2.0
    while time.monotonic() < deadline:
        leaked = [t for t in threading.enumerate() if t not in before and t.is_alive() and not t.daemon]
        if not leaked:
            break
        for thread in leaked:
            thread.join(timeout=0.05)
    leaked = [t for t in threading.enumerate() if t not in before and t.is_alive() and not t.daemon]
    assert not leaked, f"threads left running: {leaked}"
    from peft_studio.gui.jobs.worker import Worker  # QThreads are not in threading.enumerate()

    running = [w for w in list(Worker.instances) if _running(w)]
    assert not running, f"workers (training, jobs, builds) left running: {running}"


def _running(worker) -> bool:
    try:
        return worker.isRunning()
    except RuntimeError:  # the C++ object is gone: not running
        return False


@pytest.fixture
def errors(monkeypatch):
    """Capture error dialogs instead of blocking on them."""
    from PySide6.QtCore import Qt
    from PySide6.QtWidgets import QMessageBox

    from peft_studio.gui import plain
    from peft_studio.gui.window import errors_dialog

    shown: list[tuple[str, str]] = []
    monkeypatch.setattr(QMessageBox, "critical", lambda parent, title, text, *a, **k: shown.append((title, text)))

    def capture(box: QMessageBox) -> int:  # every box the window shows is plain text (gui/plain.py)
        assert box.textFormat() == Qt.TextFormat.PlainText, box.text()
        shown.append((box.windowTitle(), box.text()))
        return int(QMessageBox.StandardButton.Ok)

    monkeypatch.setattr(plain, "show_box", capture)
    monkeypatch.setattr(errors_dialog, "_present", capture)
    return shown


@pytest.fixture
def window(qtbot, errors):
    from peft_studio.gui.app import make_app

    make_app([])
    from peft_studio.gui.window.main_window import MainWindow

    win = MainWindow()
    qtbot.addWidget(win)
    win.show()
    yield win
    win.runner.stop_and_wait()
    assert not win.runner.active
    from peft_studio.gui.docks.dock_set import close_docks

    assert close_docks(win.docks)  # a test's job or build must not outlive its window
    assert win.controller.wait_for_builds()
    qtbot.waitUntil(lambda: not win.preview.busy, timeout=30_000)
