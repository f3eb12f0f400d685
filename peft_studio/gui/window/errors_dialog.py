"""The one error dialog: the message as plain text (it may quote a file's contents), and for an unexpected error
(a bug, not a user mistake) its traceback under "Details…" with the log file's path."""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QMessageBox, QWidget

from ...core.logs import details_for, log_file


def show_error_dialog(parent: QWidget | None, title: str, message: str) -> None:
    box = QMessageBox(QMessageBox.Icon.Critical, title, message, QMessageBox.StandardButton.Ok, parent)
    box.setTextFormat(Qt.TextFormat.PlainText)
    details = details_for(message)
    if details:
        box.setInformativeText("This is a bug in PEFT Studio, not a mistake of yours: Details… has the traceback "
                               "to report.")
        box.setDetailedText(f"{details}\n(also written to {log_file()})")
    _present(box)


def _present(box: QMessageBox) -> None:
    """Show the dialog modally (the tests replace this to capture it instead)."""
    box.exec()
