"""Lessons in the window: an Examples-menu entry per shipped lesson, File > Open lesson…, and
`apply_lesson`, which restores the exact starting point a teacher prepared (core/teaching/lesson.py):
the setup (one undo step), presentation, collapsed layers, zoom and scroll, hidden panels and
controls, the selected tab and the notes strip. File > Save lesson… (`current_lesson`) is the inverse:
the window as it is now, with a title and notes, as a lesson file.

Hiding is undone by the next lesson: every panel and control the vocabulary names is shown again
first, then the lesson's are hidden, so lessons never accumulate hidden things.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from PySide6.QtCore import QEvent
from PySide6.QtGui import QAction
from PySide6.QtWidgets import (
    QApplication,
    QDialog,
    QDialogButtonBox,
    QFileDialog,
    QFormLayout,
    QLineEdit,
    QMenu,
    QPlainTextEdit,
    QToolBar,
    QWidget,
)

from ...core.errors import PeftStudioError
from ...core.files.setup_file import DataOutsideError
from ...core.teaching.lesson import (
    CONTROLS,
    PANELS,
    ZOOM_RANGE,
    Lesson,
    LessonView,
    lesson_names,
    load_lesson,
    load_shipped_lesson,
    save_lesson,
    user_lessons_dir,
)
from .files import ask_outside

if TYPE_CHECKING:
    from .main_window import MainWindow

TAB_TITLES = {"method": "Method", "training": "Training", "try-it": "Try it"}  # core TABS -> window tab text
HIDDEN_BY_LESSON = "hiddenByLesson"  # widget property: a lesson hid this control
PRESENTATION_SCALE = 1.5  # what a saved lesson records for presentation mode (the window has one size: above 1)


# ---- opening -----------------------------------------------------------------------------------
def install_lessons(window: MainWindow, menu: QMenu) -> list[QAction]:
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
        action.triggered.connect(lambda _checked=False, n=name: open_shipped_lesson(window, n))
        menu.addAction(action)
        actions.append(action)
    menu.setToolTipsVisible(True)
    return actions


def open_lesson_action(window: MainWindow, parent: QWidget) -> QAction:
    """File > Open lesson… (no shortcut of its own: the window's are taken)."""
    action = QAction("Open lesson…", parent)
    action.setToolTip("Open a lesson file: a setup plus the view a teacher prepared")
    action.setStatusTip(action.toolTip())
    action.triggered.connect(lambda _checked=False: open_lesson_dialog(window))
    return action


def open_lesson_dialog(window: MainWindow) -> bool:
    path, _ = QFileDialog.getOpenFileName(window, "Open lesson", "", "Lessons (*.json)")
    return open_lesson_file(window, path) if path else False


def open_lesson_file(window: MainWindow, path: str | Path) -> bool:
    def read() -> Lesson:
        try:
            return load_lesson(path)
        except DataOutsideError as outside:  # its data outside its folder: read only when the user says so
            if not ask_outside(window, outside):
                raise
            return load_lesson(path, data_file=outside.path)

    return _open(window, read)


def open_shipped_lesson(window: MainWindow, name: str) -> bool:
    return _open(window, lambda: load_shipped_lesson(name))


def _open(window: MainWindow, read: Callable[[], Lesson]) -> bool:
    """Read first: a bad file is a dialog and the window stays exactly as it was."""
    try:
        lesson = read()
    except PeftStudioError as exc:
        window.show_error("Cannot open this lesson", str(exc))
        return False
    return apply_lesson(window, lesson)


# ---- restoring -----------------------------------------------------------------------------------
def apply_lesson(window: MainWindow, lesson: Lesson) -> bool:
    """The lesson's starting point: setup (one undo step, its seed), then the view. False when the
    setup cannot be built (the controller reports it and the previous setup stays). During a run the run is
    stopped and the lesson opens when its step in flight ends (True): the window never waits for the step."""
    if window.runner.active:  # a lesson starts from step 0; the runner holds the lock while it runs
        window.stop()
        window.runner.when_stopped(lambda: None if window.closing else apply_lesson(window, lesson))
        window.statusBar().showMessage(f"Opening the lesson {lesson.title!r} when the current step ends…")
        return True
    window.runner.stop_and_wait()  # idle: only joins the start-up warm-up
    if not window.controller.set_everything(lesson.setup, lesson.dataset, lesson.settings):
        return False
    window.runner.step = 0
    view = lesson.view
    window.presentation.set(view.presentation_scale > 1.0)  # the window has one presentation size
    window.scene.collapsed = view.collapsed_layers
    window.scene.rebuild()
    _show_hidden(window, set(view.hidden_panels), set(view.hidden_controls))
    # Hiding panels resizes the diagram's viewport: settle the layouts before fitting, so that the
    # lesson's zoom is relative to the size the class will see.
    for _ in range(3):  # presentation moves the plots and hidden panels resize the splitters: a few passes
        QApplication.sendPostedEvents(None, QEvent.Type.LayoutRequest)
        window.layout().activate()
        QApplication.processEvents()
    window.view.fit()  # zoom 1 = fitted size (also makes view.auto_fit true)
    if view.zoom != 1.0:
        window.view.scale(view.zoom, view.zoom)
        window.view.auto_fit = False  # keep the teacher's zoom across resizes
    if view.scroll is not None:
        window.view.centerOn(*view.scroll)
        window.view.auto_fit = False
    index = tab_index(window, view.selected_tab)
    if index >= 0:
        window.tabs.setCurrentIndex(index)
    docks = getattr(window, "docks", None)
    if docks is not None:
        docks.show_notes(lesson, "notes" not in view.hidden_panels)
    window.statusBar().showMessage(f"Lesson: {lesson.title}", 8000)
    return True


def tab_index(window: MainWindow, name: str) -> int:
    title = TAB_TITLES.get(name, name)
    for i in range(window.tabs.count()):
        if window.tabs.tabText(i) == title:
            return i
    return -1


def _show_hidden(window: MainWindow, panels: set[str], controls: set[str]) -> None:
    for name in PANELS:
        _set_panel(window, name, name not in panels)
    for name in CONTROLS:
        for action in control_actions(window, name):
            action.setVisible(name not in controls)
    # Widgets that are not actions: hidden means the class cannot touch them.
    window.form.setVisible("method-options" not in controls)
    window.training.setVisible("training-options" not in controls)
    # The training form is a tab page, which the tab widget hides whenever another tab is current: remember
    # the lesson's choice where Save lesson… can read it back
    for widget, name in ((window.form, "method-options"), (window.training, "training-options")):
        widget.setProperty(HIDDEN_BY_LESSON, name in controls)
    # Clicks on insertion points go through the scene's items: a non-interactive view ignores them
    # (panning by drag still works).
    window.view.setInteractive("insertion-points" not in controls)


def _set_panel(window: MainWindow, name: str, visible: bool) -> None:
    if name == "diagram":
        window.view.setVisible(visible)
        window.view.legend.setVisible(visible)
    elif name == "plots":
        window.plots.setVisible(visible)
    elif name == "tensors":
        window.table.setVisible(visible)
    elif name == "card":
        window.card.setVisible(visible)
    elif name in TAB_TITLES:  # "method", "training", "try-it" are tabs of the side panel
        index = tab_index(window, name)
        if index >= 0:
            window.tabs.setTabVisible(index, visible)
    elif name in ("adapters", "exercises", "notes"):
        docks = getattr(window, "docks", None)
        if docks is not None:
            docks.allow(name, visible)
    # "gradients": the live gradient bars are drawn by the diagram scene, which has no switch for
    # them yet; skipped rather than hiding the whole diagram.


def control_actions(window: MainWindow, name: str) -> list[QAction]:
    """The actions (menu entries, toolbar buttons, toolbar widgets) a control name stands for."""
    a = window.actions_
    simple = {"play": [a.play], "step": [a.step], "stop": [a.stop], "reset": [a.reset],
              "open-data": [a.open], "open-setup": [a.open_setup], "save-adapter": [a.save_adapter, a.load_adapter],
              "undo": [a.undo, a.redo]}
    if name in simple:
        return simple[name]
    boxes = {"base": window.base_box, "dataset": window.data_box, "method": window.method_box}
    if name in boxes:
        return _toolbar_widget_actions(window.toolbar, boxes[name])
    if name == "examples":
        docks = getattr(window, "docks", None)
        menu_action = [docks.examples_menu.menuAction()] if docks is not None else []
        return [a.seed, *menu_action]
    return []  # "method-options", "training-options", "insertion-points" are widgets: see _show_hidden


def _toolbar_widget_actions(bar: QToolBar, widget: QWidget) -> list[QAction]:
    """A toolbar shows a widget through its action; its caption label is the action just before."""
    actions = bar.actions()
    for i, action in enumerate(actions):
        if bar.widgetForAction(action) is widget:
            return actions[max(i - 1, 0):i + 1]
    return []


# ---- saving --------------------------------------------------------------------------------------
def current_view(window: MainWindow) -> LessonView:
    """The view a lesson made now would restore: the inverse of `apply_lesson`'s view half."""
    view = window.view
    zoom, scroll = 1.0, None
    fitted = view.fitted_scale()
    if not view.auto_fit and fitted:  # the teacher zoomed or panned: keep both, relative to the fitted size
        zoom = min(max(view.transform().m11() / fitted, ZOOM_RANGE[0]), ZOOM_RANGE[1])
        centre = view.mapToScene(view.viewport().rect().center())
        scroll = (float(centre.x()), float(centre.y()))
    tab = window.tabs.tabText(window.tabs.currentIndex())
    selected = next((name for name, title in TAB_TITLES.items() if title == tab), "method")
    scale = PRESENTATION_SCALE if window.presentation.on else 1.0
    return LessonView(zoom, scroll, window.scene.collapsed, scale, hidden_panels(window), hidden_controls(window),
                      selected)


def hidden_panels(window: MainWindow) -> tuple[str, ...]:
    """The panels hidden the way `_set_panel` hides them (presentation folding the side away is not hiding)."""
    hidden = {"diagram": window.view.isHidden(), "plots": window.plots.isHidden(),
              "tensors": window.table.isHidden(), "card": window.card.isHidden()}
    for name in TAB_TITLES:
        index = tab_index(window, name)
        hidden[name] = index >= 0 and not window.tabs.isTabVisible(index)
    docks = getattr(window, "docks", None)
    if docks is not None:
        for name in ("adapters", "exercises", "notes"):
            hidden[name] = not docks.toggles[name].isVisible()
    return tuple(name for name in PANELS if hidden.get(name, False))


def hidden_controls(window: MainWindow) -> tuple[str, ...]:
    widgets = {"method-options": bool(window.form.property(HIDDEN_BY_LESSON)),
               "training-options": bool(window.training.property(HIDDEN_BY_LESSON)),
               "insertion-points": not window.view.isInteractive()}
    hidden = []
    for name in CONTROLS:
        if name in widgets:
            gone = widgets[name]
        else:
            actions = control_actions(window, name)
            gone = bool(actions) and not any(action.isVisible() for action in actions)
        if gone:
            hidden.append(name)
    return tuple(hidden)


def current_lesson(window: MainWindow, title: str, notes: tuple[str, ...] | list[str]) -> Lesson:
    """The window's setup (with its seed, so Reset then Play gives the same curve) and view as a lesson."""
    c = window.controller
    return Lesson(title.strip(), c.setup, c.dataset, c.settings, current_view(window),
                  tuple(n.strip() for n in notes if n.strip()))


def save_lesson_to(window: MainWindow, path: str | Path, title: str, notes: tuple[str, ...] | list[str]) -> Path | None:
    """Write the current window as a lesson file; a refusal (no title, a dataset a file cannot name, an unwritable
    path) is a dialog and nothing is written."""
    try:
        saved = save_lesson(path, current_lesson(window, title, notes))
    except PeftStudioError as exc:
        window.show_error("Cannot save this lesson", str(exc))
        return None
    window.statusBar().showMessage(f"Saved lesson to {saved} (peft-studio lessons lists it; "
                                   f"peft-studio train --setup {saved.stem} trains it)", 8000)
    return saved


class SaveLessonDialog(QDialog):
    """Title and notes (one paragraph each) for the lesson File > Save lesson… writes."""

    def __init__(self, window: MainWindow) -> None:
        super().__init__(window)
        self.setWindowTitle("Save lesson")
        strip = getattr(getattr(window, "docks", None), "notes_strip", None)
        c = window.controller
        opened = strip.title.text() if strip is not None and strip.notes else ""
        self.title = QLineEdit(opened or f"{c.experiment.method.title} on {c.setup.base}")
        self.notes = QPlainTextEdit("\n\n".join(strip.notes) if strip is not None else "")
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


def save_lesson_dialog(window: MainWindow) -> Path | None:
    dialog = SaveLessonDialog(window)
    if dialog.exec() != QDialog.DialogCode.Accepted:
        return None
    folder = user_lessons_dir()
    try:
        folder.mkdir(parents=True, exist_ok=True)  # the folder `peft-studio lessons` lists
    except OSError:
        folder = Path.home()
    name = "-".join("".join(ch if ch.isalnum() else " " for ch in dialog.title.text().lower()).split())[:40]
    path, _ = QFileDialog.getSaveFileName(window, "Save lesson", str(folder / f"{name or 'lesson'}.json"),
                                          "Lessons (*.json)")
    return save_lesson_to(window, path, dialog.title.text(), dialog.note_list()) if path else None


def install_save_lesson(window: MainWindow) -> QAction:
    """File > Save lesson…, right after Save setup… (no shortcut of its own: the window's are taken)."""
    action = QAction("Save lesson…", window)
    action.setToolTip("Save this setup and view (zoom, collapsed layers, presentation, hidden panels and controls, "
                      "the tab) with a title and notes as a lesson file")
    action.setStatusTip(action.toolTip())
    action.triggered.connect(lambda _checked=False: save_lesson_dialog(window))
    file_menu = next((a.menu() for a in window.menuBar().actions()
                      if a.menu() is not None and a.menu().title().replace("&", "") == "File"), None)
    if file_menu is not None:
        after = window.actions_.save_setup
        entries = file_menu.actions()
        following = entries[entries.index(after) + 1:] if after in entries else []
        if following:
            file_menu.insertAction(following[0], action)
        else:
            file_menu.addAction(action)
    return action
