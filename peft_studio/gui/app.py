"""QApplication start-up: Qt binding for pyqtgraph first, app identity, high-DPI, theme."""

from __future__ import annotations

import os
import sys


def make_app(argv: list[str] | None = None):
    os.environ.setdefault("PYQTGRAPH_QT_LIB", "PySide6")  # before pyqtgraph is imported anywhere
    from PySide6.QtCore import Qt
    from PySide6.QtGui import QGuiApplication
    from PySide6.QtWidgets import QApplication

    from .theme import STYLESHEET

    app = QApplication.instance()
    if app is None:
        QGuiApplication.setHighDpiScaleFactorRoundingPolicy(Qt.HighDpiScaleFactorRoundingPolicy.PassThrough)
        app = QApplication(argv if argv is not None else sys.argv)
    import torch

    from .worker import GUI_TORCH_THREADS

    torch.set_num_threads(GUI_TORCH_THREADS)  # before the window's first torch op: see worker.py
    app.setApplicationName("PEFT Studio")
    app.setOrganizationName("PEFT Studio")
    app.setStyle("Fusion")
    app.setStyleSheet(STYLESHEET)
    return app


def main() -> int:
    """Open the studio on a working default (tiny base, intents, LoRA), ready for Play."""
    app = make_app()
    from .window import MainWindow

    window = MainWindow()
    window.show()
    window.view.fit()
    return int(app.exec())


if __name__ == "__main__":
    sys.exit(main())
