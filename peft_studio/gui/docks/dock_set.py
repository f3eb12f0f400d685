"""The window's docks in one place, laid out for a 1280x720 projector: the setup panel (method, training,
Try it, tensors), Compare the family, Adapters, Exercises and Memory at scale share one side area as tabs
(opening one raises its tab: it never squeezes the diagram into a sliver); a floated dock opens at a
sensible size; lesson notes are a strip above the diagram (gui/window/strips.py), not a dock.

A panel is built when its dock is first shown (or first asked for, `docks.board`, ...): the window's first
paint and start-up pay for the dock frames and their tabs only. A dock that closes while its job runs asks
first: stop the job, or keep it running (it stays listed above the diagram with its Stop button). A lesson
may forbid a dock (`allow(name, False)`): it is hidden and its toggle action with it, until a lesson allows
it again.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import QSize, Qt, QTimer
from PySide6.QtGui import QAction, QGuiApplication, QKeySequence
from PySide6.QtWidgets import QDockWidget, QMainWindow, QMenu, QMessageBox, QScrollArea, QTabWidget, QWidget

from ...core.jobs import Job
from ...core.runs.run_store import RunStore
from .. import plain
from ..window.lessons import install_lessons, open_lesson_action, save_lesson_dialog

if TYPE_CHECKING:
    from ..window.main_window import MainWindow
    from .adapter_lab import AdapterLab
    from .compare import ComparePanel
    from .exercises import ExercisesDock
    from .family_map import FamilyMapPanel
    from .lens import LensPanel
    from .memory import MemoryScalePanel

# Ctrl+Alt: the window's own shortcuts use plain keys, Ctrl and Ctrl+Shift (gui/window/actions.py).
SHORTCUTS = {"compare": "Ctrl+Alt+C", "adapters": "Ctrl+Alt+A", "exercises": "Ctrl+Alt+X", "notes": "Ctrl+Alt+N",
             "memory": "Ctrl+Alt+M", "lens": "Ctrl+Alt+L", "family-map": "Ctrl+Alt+F"}
DOCK_NAMES = ("compare", "adapters", "exercises", "memory", "lens", "family-map")
MAP_SIZE = QSize(1240, 680)  # the family map opens floating, as large as a 1280x720 projector allows
FLOAT_SIZE = QSize(1100, 680)  # a floated dock opens at this size (at most 85% of the screen)


def ask_stop_or_keep(parent: QWidget, panel: str, jobs: list[Job]) -> str:
    """'stop', 'keep' or 'cancel': what to do with a panel's running jobs when the panel closes."""
    names = ", ".join(job.title for job in jobs)
    answer = plain.choose(parent, f"Close {panel}?",
                          f"{names} is still running.\n\nStop it, or keep it running? (A running job stays listed "
                          "above the diagram, with its Stop button.)",
                          [("Stop it", QMessageBox.ButtonRole.DestructiveRole),
                           ("Keep it running", QMessageBox.ButtonRole.AcceptRole)])
    return {"Stop it": "stop", "Keep it running": "keep"}.get(answer or "", "cancel")


class PanelDock(QDockWidget):
    """A dock that asks before closing over its running jobs, and floats at a sensible size. With `build`, its
    panel is made when the dock is first shown, or first asked for (`panel()`)."""

    def __init__(self, title: str, window: MainWindow, jobs: Callable[[], list[Job]],
                 build: Callable[[], QWidget] | None = None, scroll: bool = True) -> None:
        super().__init__(title, window)
        self.jobs = jobs
        self.topLevelChanged.connect(self._floated)
        self._build, self._scroll = build, scroll
        self.content: QWidget | None = None  # the panel, once built
        self.on_built: list[Callable[[QWidget], None]] = []
        if build is not None:
            self.visibilityChanged.connect(lambda shown: shown and self.panel())

    def panel(self) -> QWidget:
        """The dock's panel, built now if it was not yet."""
        if self.content is None:
            assert self._build is not None
            self.set_panel(self._build())
        assert self.content is not None
        return self.content

    def set_panel(self, widget: QWidget) -> None:
        self.content = widget
        if self._scroll:
            # Scrolled: a panel taller than its share of a 720-pixel screen scrolls instead of pushing the
            # window past the screen's bottom edge.
            area = QScrollArea()
            area.setWidgetResizable(True)
            area.setFrameShape(QScrollArea.Shape.NoFrame)
            area.setWidget(widget)
            self.setWidget(area)
        else:
            self.setWidget(widget)
        callbacks, self.on_built = self.on_built, []
        for callback in callbacks:
            callback(widget)

    def closeEvent(self, event) -> None:  # noqa: N802 - Qt override
        running = self.jobs()
        if running:
            answer = ask_stop_or_keep(self, self.toggleViewAction().text(), running)
            if answer == "cancel":
                event.ignore()
                return
            if answer == "stop":
                for job in running:
                    job.request_stop()
        super().closeEvent(event)

    def _floated(self, floating: bool) -> None:
        if not floating:
            return
        screen = self.screen() or QGuiApplication.primaryScreen()
        available = screen.availableGeometry()
        width = min(FLOAT_SIZE.width(), int(available.width() * 0.85))
        height = min(FLOAT_SIZE.height(), int(available.height() * 0.85))
        self.resize(width, height)
        self.move(available.center().x() - width // 2, available.center().y() - height // 2)


@dataclass
class Docks:
    window: MainWindow
    examples_menu: QMenu
    setup: QDockWidget
    adapters: PanelDock
    exercises: PanelDock
    compare: PanelDock
    memory: PanelDock
    lens: PanelDock
    family_map: PanelDock
    toggles: dict[str, QAction] = field(default_factory=dict)
    lesson_actions: list[QAction] = field(default_factory=list)
    open_lesson: QAction | None = None
    save_lesson: QAction | None = None
    exercises_wiring_: ExercisesDock | None = None  # made with the Exercises panel

    # the panels, built on first use
    @property
    def board(self) -> ComparePanel:
        return self.compare.panel()  # type: ignore[return-value]

    @property
    def lab(self) -> AdapterLab:
        return self.adapters.panel()  # type: ignore[return-value]

    @property
    def exercises_wiring(self) -> ExercisesDock:
        self.exercises.panel()
        assert self.exercises_wiring_ is not None
        return self.exercises_wiring_

    @property
    def memory_panel(self) -> MemoryScalePanel:
        return self.memory.panel()  # type: ignore[return-value]

    @property
    def lens_panel(self) -> LensPanel:
        return self.lens.panel()  # type: ignore[return-value]

    @property
    def map_panel(self) -> FamilyMapPanel:
        return self.family_map.panel()  # type: ignore[return-value]

    def built(self, name: str) -> Any:
        """The panel of dock `name` if it has been built, else None (its jobs cannot be running)."""
        if name == "exercises":
            return self.exercises_wiring_
        return self.dock(name).content

    def when_built(self, name: str, callback: Callable[[Any], None]) -> None:
        """Call `callback(panel)` once dock `name`'s panel exists (now, if it does)."""
        dock = self.dock(name)
        assert isinstance(dock, PanelDock)
        if dock.content is not None:
            callback(dock.content)
        else:
            dock.on_built.append(callback)

    @property
    def notes_strip(self):
        return self.window.notes_strip

    def dock(self, name: str) -> QDockWidget:
        return {"adapters": self.adapters, "exercises": self.exercises, "compare": self.compare,
                "memory": self.memory, "setup": self.setup, "lens": self.lens, "family-map": self.family_map}[name]

    def allow(self, name: str, allowed: bool) -> None:
        """A lesson's hidden panel: the dock goes and so does the way to bring it back."""
        if name == "notes":
            self.toggles["notes"].setVisible(allowed)
            if not allowed:
                self.window.notes_strip.setVisible(False)
            return
        if not allowed:
            self.dock(name).hide()
        self.toggles[name].setVisible(allowed)

    def show_dock(self, name: str) -> None:
        dock = self.dock(name)
        dock.show()
        dock.raise_()

    def jobs_of(self, owner: str) -> list[Job]:
        return self.window.controller.jobs.running(owner)

    def busy(self) -> bool:
        """A thread one of the docks started is still running (it may be finishing a stopped step)."""
        return any(job.running for job in self._jobs())

    def _jobs(self) -> list[Any]:
        """The background jobs of the panels built so far (a panel never built started none)."""
        jobs: list[Any] = []
        if (board := self.built("compare")) is not None:
            jobs.append(board.job)
        if (wiring := self.built("exercises")) is not None:
            jobs += [wiring.sweep, wiring.comparison]
        if (lab := self.built("adapters")) is not None:
            jobs += [lab.job, lab.hash_job, lab.lora_tools.job]
        if (lens := self.built("lens")) is not None:
            jobs += [lens.job, lens.live_job]
        if (family_map := self.built("family-map")) is not None:
            jobs.append(family_map.job)
        return jobs

    @property
    def lens_reading(self) -> bool:
        """The lens reads the model (and bypasses its parts) meanwhile."""
        lens = self.built("lens")
        return lens is not None and lens.job.running


def install_docks(window: MainWindow, examples_menu: QMenu, view_menu: QMenu, setup_panel: QWidget,
                  store: RunStore | None = None) -> Docks:
    """Create the docks, tabbed in the right-hand area (the setup panel shown, the others hidden), their View
    toggles, and the lesson entries in Examples. `store` is the run folder (default: the user's)."""
    window.setDockOptions(QMainWindow.DockOption.AnimatedDocks | QMainWindow.DockOption.AllowTabbedDocks
                          | QMainWindow.DockOption.AllowNestedDocks)
    window.setTabPosition(Qt.DockWidgetArea.RightDockWidgetArea, QTabWidget.TabPosition.North)
    docks: Docks

    def board() -> QWidget:
        from .compare import ComparePanel

        panel = ComparePanel(window.controller, store)
        panel.failed.connect(window.show_error)
        return panel

    def lab() -> QWidget:
        from .adapter_lab import AdapterLab

        return AdapterLab(window)

    def memory_panel() -> QWidget:
        from .memory import MemoryScalePanel

        return MemoryScalePanel(window.controller)

    def compare() -> None:  # exercise 4: the board on the lesson's setup, ready for the class to press Run
        compare_dock.show()
        compare_dock.raise_()
        docks.board.tabs.setCurrentWidget(docks.board.board)
        docks.board.status.setText(docks.board.family_plan())

    def exercises_panel() -> QWidget:
        from .exercises import ExercisesDock

        wiring = ExercisesDock(window, compare=compare)
        wiring.show_adapters = lambda: (docks.lab.prepare_for(window.controller.setup.base),
                                        docks.show_dock("adapters"))
        docks.exercises_wiring_ = wiring
        return wiring.panel

    def lens_panel() -> QWidget:
        from .lens import LensPanel

        panel = LensPanel(lambda: window.controller.experiment, lambda: window.inference.entry.text(),
                          busy=lambda: window.runner.active)
        # live while a run trains and the dock is shown: the trainer snapshots for it, frames draw it
        window.runner.live_lens = panel.live
        panel.key_weights.connect(window.scene.show_key_weights)  # the diagram's key rows shaded by attention
        window.controller.changed.connect(lambda: window.scene.show_key_weights({}))  # a new model: not its keys
        window.runner.events.connect(panel.on_events)
        window.runner.state_changed.connect(lambda state: panel.set_run_active(state != "idle"))
        lens.visibilityChanged.connect(panel.set_dock_visible)
        panel.set_run_active(window.runner.active)  # built while a run trains: it joins it
        # built inside the dock's visibilityChanged, which the connection above misses: read the dock once it
        # has settled
        QTimer.singleShot(0, lambda: panel.set_dock_visible(lens.isVisible()))
        return panel

    def map_panel() -> QWidget:
        from .family_map import FamilyMapPanel

        panel = FamilyMapPanel(window.controller)
        panel.method_chosen.connect(window.choose_method)  # through the controller: one undoable method switch
        return panel

    setup = _dock(window, "Setup", "setupDock", setup_panel, lambda: [], scroll=False)
    setup.setFeatures(QDockWidget.DockWidgetFeature.DockWidgetMovable
                      | QDockWidget.DockWidgetFeature.DockWidgetFloatable)  # hidden with Panels (Ctrl+B), not closed
    # Not scrolled: the board shares its height between curves and table itself (a scroll area let the curves
    # take the whole dock and pushed the table out of view).
    compare_dock = _dock(window, "Compare", "compareDock", board, lambda: window.controller.jobs.running("compare"),
                         scroll=False, menu_text="Compare the family")
    adapters = _dock(window, "Adapters", "adaptersDock", lab, lambda: window.controller.jobs.running("adapters"))
    exercises = _dock(window, "Exercises", "exercisesDock", exercises_panel,
                      lambda: window.controller.jobs.running("exercises"))
    memory = _dock(window, "Memory", "memoryScaleDock", memory_panel, lambda: [], menu_text="Memory at scale")
    lens = _dock(window, "Lens", "lensDock", lens_panel, lambda: [], scroll=False,
                 menu_text="Lens: what training changed")
    for dock in (compare_dock, adapters, exercises, memory, lens):
        window.tabifyDockWidget(setup, dock)
        dock.hide()
    setup.raise_()
    family_map = _map_dock(window, map_panel)
    docks = Docks(window, examples_menu, setup, adapters, exercises, compare_dock, memory, lens, family_map)
    view_menu.addSeparator()
    for name, dock in (("compare", compare_dock), ("adapters", adapters), ("exercises", exercises),
                       ("memory", memory), ("lens", lens), ("family-map", family_map)):
        toggle = dock.toggleViewAction()
        _shortcut(window, view_menu, docks, name, toggle, f"Show or hide the {toggle.text()} panel")
        toggle.triggered.connect(lambda checked, d=dock: d.raise_() if checked else None)
    notes = QAction("Lesson notes", window)
    notes.setCheckable(True)
    notes.toggled.connect(lambda on: window.notes_strip.setVisible(on and bool(window.notes_strip.notes)))
    _shortcut(window, view_menu, docks, "notes", notes, "Show or hide the open lesson's notes above the diagram")
    window.docks = docks  # lessons reach the docks through the window
    docks.lesson_actions = install_lessons(window, examples_menu)
    docks.open_lesson = open_lesson_action(window, examples_menu)
    examples_menu.addAction(docks.open_lesson)
    docks.save_lesson = install_save_lesson(window)
    return docks


def _shortcut(window: MainWindow, menu: QMenu, docks: Docks, name: str, toggle: QAction, tip: str) -> None:
    toggle.setShortcut(QKeySequence(SHORTCUTS[name]))
    toggle.setToolTip(f"{tip}  [{toggle.shortcut().toString()}]")
    toggle.setStatusTip(toggle.toolTip())
    menu.addAction(toggle)
    window.addAction(toggle)  # the shortcut works while the menu is closed
    docks.toggles[name] = toggle


def _dock(window: MainWindow, title: str, name: str, content: QWidget | Callable[[], QWidget],
          jobs: Callable[[], list[Job]], scroll: bool = True, menu_text: str = "") -> PanelDock:
    """A dock with a short title (five tabs share a 1280-pixel projector's side area) and its longer name in
    the View menu; `content` is its panel, or the function that builds it when the dock is first shown."""
    build = None if isinstance(content, QWidget) else content
    dock = PanelDock(title, window, jobs, build, scroll)
    dock.setObjectName(name)  # saveState/restoreState find docks by name
    dock.toggleViewAction().setText(menu_text or title)
    if isinstance(content, QWidget):
        dock.set_panel(content)
    window.addDockWidget(Qt.DockWidgetArea.RightDockWidgetArea, dock)
    return dock


def _map_dock(window: MainWindow, build: Callable[[], QWidget]) -> PanelDock:
    """The family map: small multiples need the room of a window, so the dock floats (at most 1240x680, inside a
    1280x720 projector); it can still be docked like the others."""
    from .family_map import MAP_OWNER

    dock = _dock(window, "Family map", "familyMapDock", build, lambda: window.controller.jobs.running(MAP_OWNER),
                 scroll=False, menu_text="Family map")
    dock.hide()  # first: floating a shown dock shows it, which would build the map and start computing it
    dock.setFloating(True)

    def size_floated(floating: bool) -> None:
        if floating:
            screen = dock.screen() or QGuiApplication.primaryScreen()
            available = screen.availableGeometry()
            dock.resize(min(MAP_SIZE.width(), available.width()), min(MAP_SIZE.height(), available.height()))
            dock.move(available.center().x() - dock.width() // 2, available.center().y() - dock.height() // 2)

    dock.topLevelChanged.connect(size_floated)
    size_floated(True)
    return dock


def stop_docks(docks: Docks) -> None:
    """Ask every worker the docks started to stop, without waiting (a panel never built started none)."""
    if (lab := docks.built("adapters")) is not None:
        lab.stop()
    if (wiring := docks.built("exercises")) is not None:
        wiring.stop()
    if (board := docks.built("compare")) is not None:
        board.stop_family()
    if (lens := docks.built("lens")) is not None:
        lens.stop()
    if (family_map := docks.built("family-map")) is not None:
        family_map.job.stop()


def close_docks(docks: Docks, timeout_ms: int = 10_000) -> bool:
    """Stop every worker the docks started and wait for them. For tests and scripts: the window never waits
    (it stops them, hides, and closes when they have ended)."""
    stop_docks(docks)
    panels = [docks.built(name) for name in ("adapters", "exercises", "compare", "lens", "family-map")]
    done = True
    for panel in panels:
        if panel is not None:
            done &= panel.stop_and_wait(timeout_ms)
    return done


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
