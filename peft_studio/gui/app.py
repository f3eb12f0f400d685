"""QApplication start-up: Qt binding for pyqtgraph first, app identity, high-DPI, theme.

The window's frame paints first (toolbar, menus, empty panels); the docks, the first experiment's
diagram and panels and the last session are built right after that paint, and torch's warm-up starts
once they have painted too (see `main`), so the first paint costs the imports and the frame alone.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import sys
from collections.abc import Callable
from typing import Any


def make_app(argv: list[str] | None = None):
    os.environ.setdefault("PYQTGRAPH_QT_LIB", "PySide6")  # before pyqtgraph is imported anywhere
    # torch before PySide6: once PySide6 is imported, its import hook reads the source of every module
    # imported after it (inspect.getsource, looking for `from __feature__`), ~1200 of torch's: 0.1-0.15 s
    import torch  # noqa: F401 - imported here for that order, used later
    from PySide6.QtCore import Qt
    from PySide6.QtGui import QGuiApplication
    from PySide6.QtWidgets import QApplication

    from .window.theme import STYLESHEET

    app = QApplication.instance()
    if app is None:
        QGuiApplication.setHighDpiScaleFactorRoundingPolicy(Qt.HighDpiScaleFactorRoundingPolicy.PassThrough)
        app = QApplication(argv if argv is not None else sys.argv)
    from ..core.runs.torch_threads import set_torch_threads
    from .jobs.worker import GUI_TORCH_THREADS

    set_torch_threads(GUI_TORCH_THREADS)  # before the window's first torch op: see worker.py
    app.setApplicationName("PEFT Studio")
    app.setOrganizationName("PEFT Studio")
    app.setStyle("Fusion")
    app.setStyleSheet(STYLESHEET)
    return app


def on_first_paint(widget: Any, callback: Callable[[], None]) -> None:
    """Call `callback` once, from the event loop, right after `widget`'s first paint."""
    from PySide6.QtCore import QEvent, QObject, QTimer

    class FirstPaint(QObject):
        def eventFilter(self, watched: Any, event: Any) -> bool:  # noqa: N802 - Qt override
            if event.type() == QEvent.Type.Paint:
                watched.removeEventFilter(self)
                QTimer.singleShot(0, callback)  # once this paint (children included) is done
                self.deleteLater()
            return False

    widget.installEventFilter(FirstPaint(widget))


def close_on_sigint(window: Any) -> Callable[[], None]:
    """Ctrl+C in the terminal closes the window as its close button does.

    Python runs a signal handler only when it next gets control, which Qt's event loop never gives
    it while idle; the C-level handler's wake-up byte on a socket wakes the loop instead, so there
    is no polling timer. Returns a function that puts the previous handling back.
    """
    from PySide6.QtCore import QSocketNotifier

    reader, writer = socket.socketpair()
    reader.setblocking(False)
    writer.setblocking(False)
    previous_fd = signal.set_wakeup_fd(writer.fileno())
    notifier = QSocketNotifier(reader.fileno(), QSocketNotifier.Type.Read, window)

    def drain() -> None:  # the Python handler below runs around this slot
        with contextlib.suppress(OSError):
            reader.recv(64)

    notifier.activated.connect(drain)
    previous_handler = signal.signal(signal.SIGINT, lambda *_: window.close())

    def restore() -> None:
        signal.signal(signal.SIGINT, previous_handler)
        signal.set_wakeup_fd(previous_fd)
        notifier.setEnabled(False)
        reader.close()
        writer.close()

    return restore


def main(on_painted: Callable[[Any], None] | None = None,
         on_interactive: Callable[[Any], None] | None = None) -> int:
    """Open the studio on a working default (tiny base, intents, LoRA), ready for Play.

    `on_painted(window)` is called once the window has first painted, `on_interactive(window)` once it is
    complete (experiment, diagram, panels and docks built) and has painted that: the start-up benchmark
    times both.
    """
    app = make_app()
    from PySide6.QtCore import QTimer

    from .window.main_window import MainWindow

    window = MainWindow(complete=False)  # the frame: it paints before the experiment's views and the docks exist
    window.show()

    def painted() -> None:
        if on_painted is not None:
            on_painted(window)
        QTimer.singleShot(0, complete)  # let the first frame reach the screen before the rest is built

    def complete() -> None:
        window.complete()
        window.view.fit()
        on_first_paint(window, interactive)
        window.update()

    def interactive() -> None:
        if on_interactive is not None:
            on_interactive(window)
        window.runner.start_warm_up()  # Play joins it if pressed within the next second or so

    on_first_paint(window, painted)
    restore = close_on_sigint(window)
    try:
        return int(app.exec())
    finally:
        restore()


if __name__ == "__main__":
    sys.exit(main())
