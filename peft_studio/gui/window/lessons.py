"""Lessons in the window: an Examples-menu entry per shipped lesson, File > Open lesson…, and
`apply_lesson`, which restores the exact starting point a teacher prepared (core/teaching/lesson.py):
the setup (one undo step) and the view (core/view.py: presentation, collapsed layers, zoom and scroll,
hidden panels and controls, the selected tab and the notes). The window draws the view; this module only
changes state, through the narrow LessonHost protocol.

Hiding is undone by the next lesson: a lesson's view replaces the whole view, so lessons never accumulate
hidden things, and a lesson without notes clears the previous lesson's.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from PySide6.QtGui import QAction
from PySide6.QtWidgets import QFileDialog, QMenu, QWidget

from ...core.errors import PeftStudioError
from ...core.teaching.lesson import Lesson, lesson_names, load_lesson, load_shipped_lesson

if TYPE_CHECKING:
    from .controller import Controller


class LessonHost(Protocol):
    """What opening a lesson needs from the window, and nothing more."""

    @property
    def controller(self) -> Controller: ...

    def after_run_stops(self, then: Callable[[], None]) -> None: ...

    def lesson_opened(self, lesson: Lesson) -> None: ...

    def show_error(self, title: str, message: str) -> None: ...

    def dialog_parent(self) -> QWidget: ...


# ---- opening -----------------------------------------------------------------------------------
def install_lessons(host: LessonHost, menu: QMenu) -> list[QAction]:
    """One action per shipped lesson (its title; the file name in the tooltip), then "Open lesson…"."""
    actions: list[QAction] = []
    names = lesson_names()
    if names:
        menu.addSeparator()
    for name in names:
        try:
            title = load_shipped_lesson(name).title
        except PeftStudioError:  # a broken shipped file still gets an entry: opening it explains
            title = name
        action = QAction(f"Lesson: {title}", menu)
        action.setToolTip(f"Open the shipped lesson {name}.json: its setup and the view its teacher prepared")
        action.setStatusTip(action.toolTip())
        action.triggered.connect(lambda _checked=False, n=name: open_shipped_lesson(host, n))
        menu.addAction(action)
        actions.append(action)
    menu.setToolTipsVisible(True)
    return actions


def open_lesson_action(host: LessonHost, parent: QWidget) -> QAction:
    """File > Open lesson… (no shortcut of its own: the window's are taken)."""
    action = QAction("Open lesson…", parent)
    action.setToolTip("Open a lesson file: a setup plus the view a teacher prepared")
    action.setStatusTip(action.toolTip())
    action.triggered.connect(lambda _checked=False: open_lesson_dialog(host))
    return action


def open_lesson_dialog(host: LessonHost) -> bool:
    path, _ = QFileDialog.getOpenFileName(host.dialog_parent(), "Open lesson", "", "Lessons (*.json)")
    return open_lesson_file(host, path) if path else False


def open_lesson_file(host: LessonHost, path: str | Path) -> bool:
    return _open(host, lambda: load_lesson(path))


def open_shipped_lesson(host: LessonHost, name: str) -> bool:
    return _open(host, lambda: load_shipped_lesson(name))


def _open(host: LessonHost, read: Callable[[], Lesson]) -> bool:
    """Read first: a bad file is a dialog and the window stays exactly as it was."""
    try:
        lesson = read()
    except PeftStudioError as exc:
        host.show_error("Cannot open this lesson", str(exc))
        return False
    return apply_lesson(host, lesson)


# ---- restoring -----------------------------------------------------------------------------------
def apply_lesson(host: LessonHost, lesson: Lesson) -> bool:
    """The lesson's starting point: setup (one undo step, its seed), then the view, once the window's run (if
    any) has stopped. False when the setup cannot be built (the controller reports it and the previous setup
    and view stay); True when it is open, or will open when the run has stopped."""
    outcome: list[bool] = []

    def open_now() -> None:
        c = host.controller
        if not c.set_everything(lesson.setup, lesson.dataset, lesson.settings):
            outcome.append(False)
            return
        c.view.apply_lesson(lesson)
        host.lesson_opened(lesson)
        outcome.append(True)

    host.after_run_stops(open_now)
    return outcome[0] if outcome else True
