"""Lessons in the window: an Examples-menu entry per shipped lesson, File > Open lesson…, and
`apply_lesson`, which restores the exact starting point a teacher prepared (core/teaching/lesson.py):
the setup (one undo step) and the view (core/view.py: presentation, collapsed layers, zoom and scroll,
hidden panels and controls, the selected tab and the notes). The window draws the view; this module only
changes state, through the narrow LessonHost protocol. File > Save lesson… is the inverse: the setup and
the view as they are now (ViewState.lesson_view), with a title and notes, as a lesson file.

Hiding is undone by the next lesson: a lesson's view replaces the whole view, so lessons never accumulate
hidden things, and a lesson without notes clears the previous lesson's.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from PySide6.QtGui import QAction
from PySide6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QFileDialog,
    QFormLayout,
    QLineEdit,
    QMenu,
    QPlainTextEdit,
    QWidget,
)

from ...core.errors import PeftStudioError
from ...core.files.setup_file import DataOutsideError
from ...core.teaching.lesson import (
    Lesson,
    LessonView,
    lesson_names,
    load_lesson,
    load_shipped_lesson,
    save_lesson,
    user_lessons_dir,
)

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

    def diagram_zoom(self) -> tuple[float, tuple[float, float] | None]: ...

    def show_status(self, text: str) -> None: ...


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
    def read() -> Lesson:
        try:
            return load_lesson(path)
        except DataOutsideError as outside:  # its data outside its folder: read only when the user says so
            from .files import ask_outside

            if not ask_outside(host.dialog_parent(), outside):
                raise
            return load_lesson(path, data_file=outside.path)

    return _open(host, read)


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


# ---- saving --------------------------------------------------------------------------------------
def current_view(host: LessonHost) -> LessonView:
    """The view a lesson made now would restore: the inverse of `apply_lesson`'s view half. Zoom and scroll are
    read from the diagram as the teacher left it (relative to its fitted size), the rest from the view state."""
    saved = host.controller.view.lesson_view()
    zoom, scroll = host.diagram_zoom()
    return replace(saved, zoom=zoom, scroll=scroll)


def current_lesson(host: LessonHost, title: str, notes: tuple[str, ...] | list[str]) -> Lesson:
    """The window's setup (with its seed, so Reset then Play gives the same curve) and view as a lesson."""
    c = host.controller
    return Lesson(title.strip(), c.setup, c.dataset, c.settings, current_view(host),
                  tuple(n.strip() for n in notes if n.strip()))


def save_lesson_to(host: LessonHost, path: str | Path, title: str, notes: tuple[str, ...] | list[str]) -> Path | None:
    """Write the current window as a lesson file; a refusal (no title, a dataset a file cannot name, an unwritable
    path) is a dialog and nothing is written."""
    try:
        saved = save_lesson(path, current_lesson(host, title, notes))
    except PeftStudioError as exc:
        host.show_error("Cannot save this lesson", str(exc))
        return None
    host.show_status(f"Saved lesson to {saved} (peft-studio lessons lists it; peft-studio train --setup "
                     f"{saved.stem} trains it)")
    return saved


class SaveLessonDialog(QDialog):
    """Title and notes (one paragraph each) for the lesson File > Save lesson… writes; an open lesson's title
    and notes to start from."""

    def __init__(self, host: LessonHost) -> None:
        super().__init__(host.dialog_parent())
        self.setWindowTitle("Save lesson")
        c = host.controller
        view = c.view.view
        self.title = QLineEdit(view.notes_title or f"{c.experiment.method.title} on {c.setup.base}")
        self.notes = QPlainTextEdit("\n\n".join(view.notes))
        self.notes.setPlaceholderText("Notes for the class, one paragraph each (a blank line between them)")
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Save | QDialogButtonBox.StandardButton.Cancel)
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        layout = QFormLayout(self)
        layout.addRow("Title", self.title)
        layout.addRow("Notes", self.notes)
        layout.addRow(buttons)

    def note_list(self) -> list[str]:
        return [" ".join(p.split()) for p in self.notes.toPlainText().split("\n\n") if p.strip()]


def save_lesson_dialog(host: LessonHost) -> Path | None:
    dialog = SaveLessonDialog(host)
    if dialog.exec() != QDialog.DialogCode.Accepted:
        return None
    folder = user_lessons_dir()
    try:
        folder.mkdir(parents=True, exist_ok=True)  # the folder `peft-studio lessons` lists
    except OSError:
        folder = Path.home()
    name = "-".join("".join(ch if ch.isalnum() else " " for ch in dialog.title.text().lower()).split())[:40]
    path, _ = QFileDialog.getSaveFileName(host.dialog_parent(), "Save lesson", str(folder / f"{name or 'lesson'}.json"),
                                          "Lessons (*.json)")
    return save_lesson_to(host, path, dialog.title.text(), dialog.note_list()) if path else None
