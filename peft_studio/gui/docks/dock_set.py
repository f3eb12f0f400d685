"""The docks in one place: Adapters (one base, many adapters), Exercises (the seed's four) and
Lesson notes; the shipped lessons in the Examples menu. The window calls `install_docks` once after
its menus exist and `close_docks` in closeEvent.

Docks start hidden; their toggle actions go in the View menu. A lesson may forbid a dock
(`allow(name, False)`): it is hidden and its toggle action with it, until a lesson allows it again.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from PySide6.QtCore import Qt
from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import QDockWidget, QLabel, QMenu, QScrollArea, QVBoxLayout, QWidget

from ...core.runs.run_store import RunStore
from ...core.teaching.lesson import Lesson
from ..window.lessons import install_lessons, open_lesson_action
from .adapter_lab import AdapterLab
from .compare import ComparePanel
from .exercises import ExercisesDock
from .memory import MemoryScalePanel

if TYPE_CHECKING:
    from ..window.main_window import MainWindow

# Ctrl+Alt: the window's own shortcuts use plain keys, Ctrl and Ctrl+Shift (gui/window/actions.py).
SHORTCUTS = {"compare": "Ctrl+Alt+C", "adapters": "Ctrl+Alt+A", "exercises": "Ctrl+Alt+X", "notes": "Ctrl+Alt+N",
             "memory": "Ctrl+Alt+M"}


class NotesStrip(QWidget):
    """A lesson's notes, one paragraph each, under its title."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.title = QLabel("No lesson open")
        self.title.setStyleSheet("font-weight: 600;")
        self.title.setWordWrap(True)
        self.text = QLabel("")
        self.text.setWordWrap(True)
        self.text.setAlignment(Qt.AlignmentFlag.AlignTop | Qt.AlignmentFlag.AlignLeft)
        self.text.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setWidget(self.text)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(6, 6, 6, 6)
        layout.addWidget(self.title)
        layout.addWidget(scroll, 1)
        self.notes: tuple[str, ...] = ()

    def show_lesson(self, lesson: Lesson) -> None:
        self.notes = lesson.notes
        self.title.setText(lesson.title)
        self.text.setText("\n\n".join(f"• {note}" for note in lesson.notes))


@dataclass
class Docks:
    window: MainWindow
    examples_menu: QMenu
    adapters: QDockWidget
    exercises: QDockWidget
    notes: QDockWidget
    compare: QDockWidget
    board: ComparePanel
    lab: AdapterLab
    exercises_wiring: ExercisesDock
    notes_strip: NotesStrip
    toggles: dict[str, QAction] = field(default_factory=dict)
    lesson_actions: list[QAction] = field(default_factory=list)
    open_lesson: QAction | None = None
    memory: QDockWidget | None = None  # Memory at scale
    memory_panel: MemoryScalePanel | None = None

    def dock(self, name: str) -> QDockWidget:
        return {"adapters": self.adapters, "exercises": self.exercises, "notes": self.notes,
                "compare": self.compare, "memory": self.memory}[name]

    def allow(self, name: str, allowed: bool) -> None:
        """A lesson's hidden panel: the dock goes and so does the way to bring it back."""
        if not allowed:
            self.dock(name).hide()
        self.toggles[name].setVisible(allowed)

    def show_notes(self, lesson: Lesson, allowed: bool = True) -> None:
        self.notes_strip.show_lesson(lesson)
        if allowed and lesson.notes:
            self.notes.show()
            self.notes.raise_()

    def show_dock(self, name: str) -> None:
        dock = self.dock(name)
        dock.show()
        dock.raise_()


def install_docks(window: MainWindow, examples_menu: QMenu, view_menu: QMenu,
                  compare: Callable[[], object] | None = None, store: RunStore | None = None) -> Docks:
    """Create the docks (hidden): the comparison board and memory ledger, Adapters, Exercises, Lesson notes;
    their View toggles; and the lesson entries in Examples.

    `compare` is what exercise 4 calls (default: show the board and run the family on the current setup);
    `store` is the run folder (default: the user's data directory)."""
    board = ComparePanel(window.controller, store)
    board.failed.connect(window.show_error)
    compare_dock = _dock(window, "Compare the family", "compareDock", board, Qt.DockWidgetArea.BottomDockWidgetArea)
    lab = AdapterLab(window)
    strip = NotesStrip()
    adapters = _dock(window, "Adapters", "adaptersDock", lab, Qt.DockWidgetArea.RightDockWidgetArea)
    notes = _dock(window, "Lesson notes", "lessonNotesDock", strip, Qt.DockWidgetArea.LeftDockWidgetArea)
    if compare is None:
        def compare() -> None:  # exercise 4: the board on the lesson's setup, every method side by side
            compare_dock.show()
            compare_dock.raise_()
            board.run_family()
    wiring = ExercisesDock(window, compare=compare)
    exercises = _dock(window, "Exercises", "exercisesDock", wiring.panel, Qt.DockWidgetArea.RightDockWidgetArea)
    memory_panel = MemoryScalePanel(window.controller)
    memory = _dock(window, "Memory at scale", "memoryScaleDock", memory_panel, Qt.DockWidgetArea.RightDockWidgetArea)
    docks = Docks(window, examples_menu, adapters, exercises, notes, compare_dock, board, lab, wiring, strip,
                  memory=memory, memory_panel=memory_panel)
    wiring.show_adapters = lambda: docks.show_dock("adapters")
    view_menu.addSeparator()
    for name, dock in (("compare", compare_dock), ("adapters", adapters), ("exercises", exercises),
                       ("notes", notes), ("memory", memory)):
        toggle = dock.toggleViewAction()
        toggle.setShortcut(QKeySequence(SHORTCUTS[name]))
        toggle.setToolTip(f"Show or hide the {dock.windowTitle()} panel  [{toggle.shortcut().toString()}]")
        toggle.setStatusTip(toggle.toolTip())
        view_menu.addAction(toggle)
        window.addAction(toggle)  # the shortcut works while the menu is closed
        docks.toggles[name] = toggle
    window.docks = docks  # lessons reach the docks through the window (apply_lesson)
    docks.lesson_actions = install_lessons(window, examples_menu)
    docks.open_lesson = open_lesson_action(window, examples_menu)
    examples_menu.addAction(docks.open_lesson)
    return docks


def _dock(window: MainWindow, title: str, name: str, widget: QWidget, area: Qt.DockWidgetArea) -> QDockWidget:
    dock = QDockWidget(title, window)
    dock.setObjectName(name)  # saveState/restoreState find docks by name
    # Scrolled: a panel taller than its share of a 720-pixel screen scrolls instead of pushing the window
    # past the screen's bottom edge (two open docks once needed 814 pixels).
    scroll = QScrollArea()
    scroll.setWidgetResizable(True)
    scroll.setFrameShape(QScrollArea.Shape.NoFrame)
    scroll.setWidget(widget)
    dock.setWidget(scroll)
    window.addDockWidget(area, dock)
    dock.hide()
    return dock


def stop_docks(docks: Docks) -> None:
    """Ask every worker the docks started to stop, without waiting."""
    docks.lab.stop()
    docks.exercises_wiring.sweep.stop()
    docks.exercises_wiring.comparison.stop()
    docks.board.stop_family()


def close_docks(docks: Docks, timeout_ms: int = 10_000) -> bool:
    """Stop every worker the docks started and wait for them (each stops within one item or step)."""
    stop_docks(docks)
    return (docks.lab.stop_and_wait(timeout_ms) & docks.exercises_wiring.stop_and_wait(timeout_ms)
            & docks.board.stop_and_wait(timeout_ms))
