"""The error dialog: plain text always; Details… with the traceback only for an unexpected error (a bug)."""

from __future__ import annotations

from PySide6.QtCore import Qt

from peft_studio.core.logs import report_unexpected
from peft_studio.gui.window import errors_dialog


def _capture(monkeypatch):
    boxes = []
    monkeypatch.setattr(errors_dialog, "_present", lambda box: boxes.append(
        (box.windowTitle(), box.text(), box.textFormat(), box.detailedText())))
    return boxes


def test_a_bug_gets_details_and_a_user_mistake_does_not(qtbot, monkeypatch):
    boxes = _capture(monkeypatch)
    try:
        raise KeyError("nowhere")
    except KeyError as exc:
        message = report_unexpected(exc, "a test")
    errors_dialog.show_error_dialog(None, "This setup cannot be built", message)
    errors_dialog.show_error_dialog(None, "Training setting refused", "lr must be finite")
    (title, text, fmt, details), (_, mistake, _, no_details) = boxes
    assert text == "KeyError: 'nowhere'" and fmt == Qt.TextFormat.PlainText
    assert "Traceback" in details and "test_a_bug_gets_details" in details
    assert mistake == "lr must be finite" and no_details == ""


def test_file_text_in_an_error_is_shown_as_plain_text(qtbot, monkeypatch):
    boxes = _capture(monkeypatch)
    errors_dialog.show_error_dialog(None, "Bad label", 'label "<img src=/dev/zero>" is not in the dataset')
    assert boxes[0][2] == Qt.TextFormat.PlainText and "<img" in boxes[0][1]
