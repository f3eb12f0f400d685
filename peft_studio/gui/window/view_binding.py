"""The window as a view of core/view.py's ViewState: presentation mode, collapsed layers, hidden panels and
controls, the side panels, the selected tab and the lesson notes. State changes come from the menus, the
keyboard and lessons; this one class maps each to the widgets, through the ViewWidgets protocol.

Presentation (F5): diagram fonts >= 18 pt and thick lines for a projector, side panels folded away (the
Panels button brings them back), large plot fonts and trainable/total count, the plots beside the diagram.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

from PySide6.QtCore import Qt
from PySide6.QtGui import QAction
from PySide6.QtWidgets import QComboBox, QDockWidget, QLabel, QSplitter, QTabWidget, QToolBar, QWidget

from ...core.teaching.lesson import CONTROLS, PANELS
from ...core.view import View, ViewState

if TYPE_CHECKING:
    from ..diagram import DiagramScene, DiagramView
    from ..panels.plots import LivePlots
    from ..panels.training_form import TrainingForm
    from .actions import StudioActions
    from .strips import NotesStrip

BIG_STATUS = "font-size: 18pt; font-weight: 700;"
TAB_TITLES = {"method": "Method", "training": "Training", "try-it": "Try it"}  # core TABS -> window tab text
DOCK_PANELS = ("adapters", "exercises", "notes")


class ViewWidgets(Protocol):
    """The widgets a view change reaches, and nothing else of the window."""

    actions_: StudioActions
    toolbar: QToolBar
    base_box: QComboBox
    data_box: QComboBox
    method_box: QComboBox
    form: QWidget
    training: TrainingForm
    view: DiagramView
    scene: DiagramScene
    plots: LivePlots
    table: QWidget
    card: QWidget
    tabs: QTabWidget
    main_split: QSplitter
    params_label: QLabel
    bytes_label: QLabel
    step_label: QLabel
    notes_strip: NotesStrip
    side_dock: QDockWidget

    def fix_step_label_width(self) -> None: ...

    def dock_allow(self, name: str, allowed: bool) -> None: ...

    def examples_menu_action(self) -> QAction | None: ...


class ViewBinding:
    def __init__(self, widgets: ViewWidgets, state: ViewState) -> None:
        self.w = widgets
        self.state = state
        self._panels_before = True
        self._split_before: list[int] | None = None
        state.on_change(self.apply)
        widgets.tabs.currentChanged.connect(self._tab_chosen)

    # ---- user actions: they change the state, the binding draws it ------------------------------------
    def toggle_presentation(self) -> None:
        self.state.set(presentation=not self.state.presentation)

    def toggle_side_panels(self) -> None:
        self.state.set(side_panels=not self.state.side_panels)

    def _tab_chosen(self, index: int) -> None:
        title = self.w.tabs.tabText(index)
        name = next((k for k, v in TAB_TITLES.items() if v == title), None)
        if name is not None:
            self.state.set(selected_tab=name)

    # ---- drawing ---------------------------------------------------------------------------------------
    def apply(self, changed: set[str]) -> None:
        view = self.state.view
        if "presentation" in changed:
            self._presentation(view)
        if "side_panels" in changed:
            self.w.side_dock.setVisible(view.side_panels)
            self.w.actions_.panels.setChecked(view.side_panels)
        if changed & {"hidden_panels", "hidden_controls"}:
            self._hidden(view)
        if changed & {"collapsed", "shown_layers"} and "presentation" not in changed:
            self.w.scene.rebuild()
        if "selected_tab" in changed:
            index = tab_index(self.w.tabs, view.selected_tab)
            if index >= 0 and index != self.w.tabs.currentIndex():
                self.w.tabs.setCurrentIndex(index)
        if changed & {"notes", "notes_title"}:
            self.w.notes_strip.show_notes(view.notes_title, view.notes)
            if "notes" in view.hidden_panels:
                self.w.notes_strip.setVisible(False)

    def _presentation(self, view: View) -> None:
        w, on = self.w, view.presentation
        w.actions_.present.setChecked(on)
        if on:
            self._panels_before = self.state.side_panels
            self.state.set(side_panels=False)
        else:
            self.state.set(side_panels=self._panels_before)
        w.plots.set_presentation(on)
        # 16:9 projector: the (collapsed) model is tall and narrow, so the plots go beside it, full height.
        split = w.main_split
        if on:
            self._split_before = split.sizes()
            split.setOrientation(Qt.Orientation.Horizontal)
            width = max(split.width(), 2)
            split.setSizes([width * 11 // 20, width * 9 // 20])
        else:
            split.setOrientation(Qt.Orientation.Vertical)
            split.setSizes(self._split_before or [750, 200])
        w.params_label.setStyleSheet(BIG_STATUS if on else "")
        w.bytes_label.setVisible(not on)  # room for the count that matters, within a 1280-pixel projector
        w.scene.set_presentation(on)
        w.view.set_presentation(on)
        w.step_label.setStyleSheet("font-size: 22pt;" if on else "")
        w.fix_step_label_width()
        w.view.fit()

    def _hidden(self, view: View) -> None:
        w = self.w
        for name in PANELS:
            self._set_panel(name, name not in view.hidden_panels)
        for name in CONTROLS:
            for action in control_actions(w, name):
                action.setVisible(name not in view.hidden_controls)
        # Widgets that are not actions: hidden means the class cannot touch them.
        w.form.setVisible("method-options" not in view.hidden_controls)  # a part of the Method page
        w.training.set_fields_visible("training-options" not in view.hidden_controls)  # the page stays a page
        # Clicks on insertion points go through the scene's items: a non-interactive view ignores them
        # (panning by drag still works).
        w.view.setInteractive("insertion-points" not in view.hidden_controls)

    def _set_panel(self, name: str, visible: bool) -> None:
        w = self.w
        if name == "diagram":
            w.view.setVisible(visible)
            w.view.legend.setVisible(visible)
        elif name == "plots":
            w.plots.setVisible(visible)
        elif name == "tensors":
            w.table.setVisible(visible)
        elif name == "card":
            w.card.setVisible(visible)
        elif name in TAB_TITLES:  # "method", "training", "try-it" are tabs of the side panel
            index = tab_index(w.tabs, name)
            if index >= 0:
                w.tabs.setTabVisible(index, visible)
        elif name in DOCK_PANELS:
            w.dock_allow(name, visible)
        elif name == "gradients":
            w.scene.set_gradient_bars(visible)


def tab_index(tabs: QTabWidget, name: str) -> int:
    title = TAB_TITLES.get(name, name)
    for i in range(tabs.count()):
        if tabs.tabText(i) == title:
            return i
    return -1


def control_actions(w: ViewWidgets, name: str) -> list[QAction]:
    """The actions (menu entries, toolbar buttons, toolbar widgets) a control name stands for."""
    a = w.actions_
    simple = {"play": [a.play], "step": [a.step], "stop": [a.stop], "reset": [a.reset],
              "open-data": [a.open], "open-setup": [a.open_setup], "save-adapter": [a.save_adapter, a.load_adapter],
              "undo": [a.undo, a.redo]}
    if name in simple:
        return simple[name]
    boxes = {"base": w.base_box, "dataset": w.data_box, "method": w.method_box}
    if name in boxes:
        return _toolbar_widget_actions(w.toolbar, boxes[name])
    if name == "examples":
        menu_action = w.examples_menu_action()
        return [a.seed, *([menu_action] if menu_action is not None else [])]
    return []  # "method-options", "training-options", "insertion-points" are widgets: see _hidden


def _toolbar_widget_actions(bar: QToolBar, widget: QWidget) -> list[QAction]:
    """A toolbar shows a widget through its action; its caption label is the action just before."""
    actions = bar.actions()
    for i, action in enumerate(actions):
        if bar.widgetForAction(action) is widget:
            return actions[max(i - 1, 0):i + 1]
    return []
