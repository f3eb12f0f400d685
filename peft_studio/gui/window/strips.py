"""Strips above the diagram that push it down instead of covering it: the running jobs (progress, ETA, Stop),
a preview notice, the first-start hint and a lesson's notes. A strip never sits on a control or on the middle
of a slide, and each can be closed."""

from __future__ import annotations

from collections.abc import Callable
from html import escape

from PySide6.QtCore import QSettings, Qt, QTimer
from PySide6.QtWidgets import (
    QFrame,
    QHBoxLayout,
    QLabel,
    QProgressBar,
    QPushButton,
    QScrollArea,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from ...core.jobs import STOPPING, Job, JobBoard

HINT_KEY = "hints/first_run_done"
STRIP_STYLE = "QFrame#{name} {{ background: {bg}; border-bottom: 1px solid {edge}; }}"
NOTES_MAX_HEIGHT = 110  # about five lines: the diagram keeps the room it needs on a 720-pixel projector


class JobRow(QWidget):
    """One running job: what it is, a progress bar, the ETA, and Stop."""

    def __init__(self, job: Job, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.job = job
        self.label = QLabel()
        self.label.setTextFormat(Qt.TextFormat.PlainText)
        self.bar = QProgressBar()
        self.bar.setMaximumWidth(180)
        self.bar.setTextVisible(False)
        self.stop_button = QPushButton("Stop")
        self.stop_button.setToolTip("Stop this job: it ends within a second (the step in flight finishes or is "
                                    "abandoned); what it finished is kept")
        self.stop_button.clicked.connect(job.request_stop)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(8, 2, 8, 2)
        layout.addWidget(self.label, 1)
        layout.addWidget(self.bar)
        layout.addWidget(self.stop_button)
        self.refresh()

    def refresh(self) -> None:
        job = self.job
        text = job.status_text()
        self.label.setText(text)
        self.label.setToolTip(text)
        fraction = job.fraction
        if fraction is None:
            self.bar.setRange(0, 0)  # busy, no total
        else:
            self.bar.setRange(0, 1000)
            self.bar.setValue(round(1000 * fraction))
        self.stop_button.setEnabled(job.stop is not None and job.state != STOPPING)
        self.stop_button.setText("Stopping…" if job.state == STOPPING else "Stop")


class JobStrip(QFrame):
    """Every job on the board, one row each; hidden when none runs. The ETA ticks once a second."""

    def __init__(self, board: JobBoard, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("jobStrip")
        self.setStyleSheet("QFrame#jobStrip { background: #eaf2fb; border-bottom: 1px solid #b8d0ea; }")
        self.rows: dict[int, JobRow] = {}
        self.column = QVBoxLayout(self)
        self.column.setContentsMargins(0, 2, 0, 2)
        self.column.setSpacing(0)
        board.on("added", self._added)
        board.on("changed", self._changed)
        board.on("ended", self._ended)
        self.timer = QTimer(self)
        self.timer.setInterval(1000)
        self.timer.timeout.connect(self._tick)
        self.setVisible(False)

    def _added(self, job: Job) -> None:
        row = JobRow(job)
        self.rows[id(job)] = row
        self.column.addWidget(row)
        self.setVisible(True)
        self.timer.start()

    def _changed(self, job: Job) -> None:
        row = self.rows.get(id(job))
        if row is not None:
            row.refresh()

    def _ended(self, job: Job) -> None:
        row = self.rows.pop(id(job), None)
        if row is not None:
            self.column.removeWidget(row)
            row.deleteLater()
        if not self.rows:
            self.setVisible(False)
            self.timer.stop()

    def _tick(self) -> None:
        for row in self.rows.values():
            row.refresh()


class InfoStrip(QFrame):
    """A line of information with an optional action button and a close button."""

    def __init__(self, name: str, background: str, edge: str, closable: bool = True,
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName(name)
        self.setStyleSheet(STRIP_STYLE.format(name=name, bg=background, edge=edge))
        self.label = QLabel()
        self.label.setWordWrap(True)
        self.label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.action = QPushButton()
        self.action.setVisible(False)
        self.close_button = QToolButton()
        self.close_button.setText("×")
        self.close_button.setAutoRaise(True)
        self.close_button.setToolTip("Close this strip")
        self.close_button.clicked.connect(self.dismiss)
        self.close_button.setVisible(closable)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(8, 3, 4, 3)
        layout.addWidget(self.label, 1)
        layout.addWidget(self.action, 0, Qt.AlignmentFlag.AlignTop)
        layout.addWidget(self.close_button, 0, Qt.AlignmentFlag.AlignTop)
        self.setVisible(False)
        self._on_action: Callable[[], None] | None = None
        self.action.clicked.connect(lambda: self._on_action() if self._on_action else None)

    def say(self, html: str, action: str = "", on_action: Callable[[], None] | None = None) -> None:
        self.label.setText(html)
        self.action.setText(action)
        self.action.setVisible(bool(action))
        self._on_action = on_action
        self.setVisible(True)

    def dismiss(self) -> None:
        self.setVisible(False)


class FirstRunHint(InfoStrip):
    """The first launch's hint, as a strip above the diagram (it pushes the diagram down, covering nothing);
    gone for good after the first Play or its ×."""

    TEXT = ("<b>▶ Press Play (Space) to train.</b> Then click the dashed circles in the diagram: where does the "
            "trainable part go?")

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__("firstRunHint", "#fff4e0", "#f0c27f", parent=parent)

    def offer(self, playable: bool) -> None:
        """Shown only while Play can be pressed (not on a meta-device base), until dismissed for good."""
        if playable and not QSettings().value(HINT_KEY, False, type=bool):
            self.say(self.TEXT)
        else:
            self.setVisible(False)

    def dismiss(self) -> None:
        if self.isVisible():
            QSettings().setValue(HINT_KEY, True)
        self.setVisible(False)


class NotesStrip(InfoStrip):
    """A lesson's notes as a strip over the diagram: the title, then one line per note; it scrolls past five
    lines so the diagram keeps its room."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__("lessonNotes", "#f3f6fa", "#c9ced6", parent=parent)
        layout = self.layout()
        layout.removeWidget(self.label)
        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setFrameShape(QFrame.Shape.NoFrame)
        scroll.setStyleSheet("background: transparent;")
        scroll.setWidget(self.label)
        layout.insertWidget(0, scroll, 1)
        self.label.setAlignment(Qt.AlignmentFlag.AlignTop | Qt.AlignmentFlag.AlignLeft)
        self.setMaximumHeight(NOTES_MAX_HEIGHT)
        self.notes: tuple[str, ...] = ()
        self.text = self.label  # the notes' text (tests read it)

    def show_notes(self, title: str, notes: tuple[str, ...]) -> None:
        self.notes = notes
        if not notes:
            self.setVisible(False)
            return
        lines = "".join(f"<br>• {escape(n)}" for n in notes)
        self.say(f"<b>{escape(title)}</b>{lines}")
