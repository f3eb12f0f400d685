"""The one rule for text in the window: what comes from a file is shown as plain text.

Qt decides that a string is rich text when its first line holds something like an HTML tag
(Qt.mightBeRichText); a QLabel, a tooltip or a message box then renders it, and an
`<img src="/dev/zero">` or an <img> naming a FIFO makes Qt open that file on the GUI thread: the
window hangs for good or aborts. Dataset labels, adapter names, lesson titles, run fields, folder
names and error messages quoting any of them all come from files. So:

- `plain_label` / `set_plain`: a QLabel whose format is Qt.PlainText (never guessed);
- `tip`: a tooltip that shows its text literally (escaped, inside <qt>, so Qt never guesses either);
- `html`: file text escaped for the studio's own HTML (legends, summaries);
- `message` and friends: every message box, plain, with optional details;
- `shorten`: very long file text cut for display (a 300,000-character label costs seconds to lay out).

Rich text the studio writes itself (the diagram legend, the method card, help) stays rich, and any
file text inside it goes through `html`. tests/gui/test_plain_text.py feeds every field that shows
file content an <img> of a FIFO and of /dev/zero, and fails on a label that would render it.
"""

from __future__ import annotations

from html import escape

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QLabel, QMessageBox, QWidget

MAX_SHOWN_CHARS = 2_000  # one label or tooltip: more is cut (the full text stays in the details of a dialog)
MAX_MESSAGE_CHARS = 4_000
RICH_PROPERTY = "studioRichText"  # set on the few labels whose HTML the studio writes itself


def shorten(text: object, limit: int = MAX_SHOWN_CHARS) -> str:
    text = str(text)
    return text if len(text) <= limit else f"{text[:limit - 1]}…"


def html(text: object, limit: int = MAX_SHOWN_CHARS) -> str:
    """File text inside the studio's own HTML: escaped (quotes too), shortened."""
    return escape(shorten(text, limit), quote=True)


def tip(text: object) -> str:
    """A tooltip that shows `text` as it is: escaped and marked as rich text with <qt>, so that Qt neither
    guesses (an <img> in it is shown, not loaded) nor collapses its line breaks."""
    body = html(text).replace("\n", "<br>")
    return f"<qt><span style='white-space:pre-wrap'>{body}</span></qt>"


def set_plain(label: QLabel, text: object, limit: int = MAX_SHOWN_CHARS) -> None:
    label.setTextFormat(Qt.TextFormat.PlainText)
    label.setText(shorten(text, limit))


def plain_label(text: object = "", parent: QWidget | None = None) -> QLabel:
    label = QLabel(parent)
    set_plain(label, text)
    return label


def rich_label(studio_html: str = "", parent: QWidget | None = None) -> QLabel:
    """A label for HTML the studio writes (file text inside it escaped with `html`)."""
    label = QLabel(parent)
    label.setTextFormat(Qt.TextFormat.RichText)
    label.setProperty(RICH_PROPERTY, True)
    label.setText(studio_html)
    return label


def show_box(box: QMessageBox) -> int:
    """Shows a prepared message box (tests replace this to capture boxes instead of blocking)."""
    return box.exec()


def message(parent: QWidget | None, title: object, text: object, icon: QMessageBox.Icon = QMessageBox.Icon.Critical,
            details: str | None = None,
            buttons: QMessageBox.StandardButton = QMessageBox.StandardButton.Ok) -> QMessageBox.StandardButton:
    """A message box whose title, text and details are plain text whatever they contain."""
    box = QMessageBox(parent)
    box.setIcon(icon)
    box.setTextFormat(Qt.TextFormat.PlainText)
    box.setWindowTitle(shorten(title, 200))
    full = str(text)
    box.setText(shorten(full, MAX_MESSAGE_CHARS))
    if details or len(full) > MAX_MESSAGE_CHARS:
        box.setDetailedText(details or full)  # always plain: QMessageBox shows it in a QTextEdit as text
    box.setStandardButtons(buttons)
    return QMessageBox.StandardButton(show_box(box))


def error(parent: QWidget | None, title: object, text: object, details: str | None = None) -> None:
    message(parent, title, text, QMessageBox.Icon.Critical, details)


def warning(parent: QWidget | None, title: object, text: object, details: str | None = None) -> None:
    message(parent, title, text, QMessageBox.Icon.Warning, details)


def question(parent: QWidget | None, title: object, text: object) -> bool:
    """Yes/No; True for Yes."""
    buttons = QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No
    return message(parent, title, text, QMessageBox.Icon.Question, buttons=buttons) == QMessageBox.StandardButton.Yes


def choose(parent: QWidget | None, title: object, text: object,
           choices: list[tuple[str, QMessageBox.ButtonRole]]) -> str | None:
    """A question with named answers (plain text); the label of the one clicked, None for Cancel."""
    box = QMessageBox(parent)
    box.setIcon(QMessageBox.Icon.Question)
    box.setTextFormat(Qt.TextFormat.PlainText)
    box.setWindowTitle(shorten(title, 200))
    box.setText(shorten(text, MAX_MESSAGE_CHARS))
    buttons = {box.addButton(label, role): label for label, role in choices}
    box.addButton(QMessageBox.StandardButton.Cancel)
    show_box(box)
    return buttons.get(box.clickedButton())


def notes_box(parent: QWidget | None, title: object, text: object, details: str) -> QMessageBox:
    """A non-blocking information box (opened, not executed), plain text, every detail under Show Details."""
    box = QMessageBox(parent)
    box.setIcon(QMessageBox.Icon.Information)
    box.setTextFormat(Qt.TextFormat.PlainText)
    box.setWindowTitle(shorten(title, 200))
    box.setText(shorten(text, MAX_MESSAGE_CHARS))
    box.setDetailedText(details)
    box.setStandardButtons(QMessageBox.StandardButton.Ok)
    box.open()
    return box
