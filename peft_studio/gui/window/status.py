"""The status bar: a message that does not fit is cut at a word and ends with "…", never mid-word; the whole
text is its tooltip, and every message is kept in a log (the "log" button, or View ▸ Messages) so nothing said
in passing is lost. ElidedLabel does the same for a label that shows changing text in a fixed place."""

from __future__ import annotations

import time
from collections import deque

from PySide6.QtCore import QEvent, QRect, Qt
from PySide6.QtGui import QFontMetrics, QPainter, QPaintEvent
from PySide6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QLabel,
    QPlainTextEdit,
    QSizePolicy,
    QStatusBar,
    QStyle,
    QStyleOption,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

LOG_SIZE = 200


class CounterLabel(QLabel):
    """A label whose text changes every frame (the step counter), painted opaque: a new number repaints the
    label alone, not the toolbar and the main window behind it (measured on the 2-core training benchmark: the
    toolbar and a strip of the main window were repainted on every frame).

    Why a class: a style sheet rule with a background (QLabel#stepCounter) makes Qt's style sheet style clear
    WA_OpaquePaintEvent and autoFillBackground when it polishes the label, so the attribute set once at
    construction was lost before the first paint. It is set again after every polish or style change, and
    the label paints its own background (the palette's, then the style sheet's), which Qt skips for an opaque
    widget."""

    def event(self, event: QEvent) -> bool:
        handled = super().event(event)
        if event.type() in (QEvent.Type.Polish, QEvent.Type.StyleChange):
            self.setAttribute(Qt.WidgetAttribute.WA_OpaquePaintEvent)
        return handled

    def paintEvent(self, event: QPaintEvent) -> None:
        painter = QPainter(self)
        painter.fillRect(self.rect(), self.palette().window())
        option = QStyleOption()
        option.initFrom(self)
        self.style().drawPrimitive(QStyle.PrimitiveElement.PE_Widget, option, painter, self)
        painter.end()
        super().paintEvent(event)


def elide_words(text: str, metrics: QFontMetrics, width: int) -> str:
    """The longest run of whole words (then "…") that fits `width` pixels; the text itself when it fits."""
    text = " ".join(text.split())
    if metrics.horizontalAdvance(text) <= width:
        return text
    words = text.split(" ")
    shown = ""
    for word in words:
        candidate = f"{shown} {word}".strip()
        if metrics.horizontalAdvance(candidate + " …") > width:
            break
        shown = candidate
    return f"{shown} …" if shown else "…"


class MessageLog:
    """The last messages, oldest first, each with the time it was shown."""

    def __init__(self, size: int = LOG_SIZE) -> None:
        self.entries: deque[tuple[float, str]] = deque(maxlen=size)

    def add(self, text: str) -> None:
        if text and (not self.entries or self.entries[-1][1] != text):
            self.entries.append((time.time(), text))

    def text(self) -> str:
        return "\n".join(f"{time.strftime('%H:%M:%S', time.localtime(t))}  {message}" for t, message in self.entries)


class MessageLogDialog(QDialog):
    def __init__(self, log: MessageLog, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Messages")
        self.view = QPlainTextEdit(log.text() or "No messages yet.")
        self.view.setReadOnly(True)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addWidget(self.view)
        layout.addWidget(buttons)
        self.resize(720, 360)
        self.view.verticalScrollBar().setValue(self.view.verticalScrollBar().maximum())


class StatusBar(QStatusBar):
    """QStatusBar whose messages are cut at a word, shown whole as a tooltip, and logged."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.log = MessageLog()
        self.log_button = QToolButton()
        self.log_button.setText("log")  # plain text: emoji fonts are missing on many lab machines
        self.log_button.setAutoRaise(True)
        self.log_button.setToolTip("Every message the status bar showed (View ▸ Messages)")
        self.log_button.clicked.connect(self.show_log)
        self.addPermanentWidget(self.log_button)
        self.messageChanged.connect(self._message_changed)
        self._dialog: MessageLogDialog | None = None

    def showMessage(self, text: str, timeout: int = 0) -> None:  # noqa: N802 - Qt override (called from Python)
        self.log.add(text)
        super().showMessage(text, timeout)

    def _message_changed(self, text: str) -> None:
        self.setToolTip(text)
        self.update()

    def message_area(self) -> QRect:
        """Where the message is drawn: left of the permanent widgets."""
        right = self.width()
        for widget in self.findChildren(QWidget):
            if widget.parent() is self and widget.isVisible() and widget.x() > 0:
                right = min(right, widget.x())
        return QRect(6, 0, max(0, right - 12), self.height())

    def shown_text(self) -> str:
        """The message as drawn now (cut at a word when it does not fit)."""
        return elide_words(self.currentMessage(), self.fontMetrics(), self.message_area().width())

    def paintEvent(self, event) -> None:  # noqa: N802 - Qt override
        if not self.currentMessage():
            super().paintEvent(event)
            return
        painter = QPainter(self)
        painter.setPen(self.palette().windowText().color())
        painter.drawText(self.message_area(), Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter,
                         self.shown_text())
        painter.end()

    def show_log(self) -> None:
        self._dialog = MessageLogDialog(self.log, self.window())
        self._dialog.show()


class ElidedLabel(QLabel):
    """A one-line label that takes the room it is given: text that does not fit is cut at a word (" …") and
    shown whole in the tooltip; it never asks for more width, and a new text never re-lays out its row.

    Why the text is kept here and not in QLabel: QLabel.setText asks the parent's layout to run again on every
    change (its width is the layout's to give, so its minimum and maximum differ), and the live plots' row, the
    splitter and a strip of the main window were laid out and repainted four times a second during a run. QLabel
    holds one character instead, which is all its one-line size hint needs."""

    def __init__(self, text: str = "", parent: QWidget | None = None, tip: str = "") -> None:
        super().__init__("0", parent)
        self._text = ""
        self.tip = tip  # the tooltip while the text fits
        self.setToolTip(tip)
        self.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        self.setMinimumWidth(0)
        self.setText(text)

    def text(self) -> str:
        return self._text

    def setText(self, text: str) -> None:  # noqa: N802 - Qt's name, called from Python
        if text != self._text:
            self._text = text
            self.setAccessibleName(text)  # what a screen reader says: the text, not QLabel's placeholder
            self.update()

    def shown_text(self) -> str:
        return elide_words(self.text(), self.fontMetrics(), self.contentsRect().width())

    def paintEvent(self, event) -> None:  # noqa: N802 - Qt override
        shown = self.shown_text()
        cut = shown != " ".join(self.text().split())
        self.setToolTip(f"{self.text()}\n{self.tip}".strip() if cut else self.tip)
        painter = QPainter(self)
        painter.setPen(self.palette().windowText().color())
        painter.setFont(self.font())
        # a cut text reads from its start, whatever the alignment
        align = (Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter) if cut else self.alignment()
        painter.drawText(self.contentsRect(), align, shown)
        painter.end()
