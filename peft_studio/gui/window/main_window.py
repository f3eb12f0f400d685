"""The studio window: layout and wiring. Actions live in actions.py, file flows in files.py, the view state's
drawing in view_binding.py, the strips above the diagram in strips.py; the state lives in the controller
(core/workspace.py through controller.py).

Layout for a 1280x720 projector: the diagram (with a minimum size) and the live plots in the centre; the
setup panel and every dock share one side area as tabs; the running jobs, a family run's preview, the
first-start hint and a lesson's notes are strips above the diagram that push it down, never cover it.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from PySide6.QtCore import QEvent, QSettings, QSize, Qt, QTimer
from PySide6.QtGui import QColor, QGuiApplication, QIcon, QPainter, QPixmap
from PySide6.QtWidgets import (
    QApplication,
    QFrame,
    QInputDialog,
    QLabel,
    QMainWindow,
    QScrollArea,
    QSplitter,
    QTabWidget,
    QToolBar,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from ...core.bases import BASES, base_names
from ...core.data import builtin_description, builtin_names, load_builtin
from ...core.errors import PeftStudioError
from ...core.logs import log, report_unexpected
from ...core.methods import METHODS
from ...core.teaching.lesson import ZOOM_RANGE, Lesson
from ...core.view import layers_collapsed, parse_layer_range
from .. import plain
from ..diagram import DiagramScene, DiagramView
from ..diagram.describe import base_refusal, diagram_info, method_refusal
from ..diagram.gains import GAIN_SUFFIX, gain_pictures, picture_html, sample_gains
from ..diagram.preview import Preview
from ..diagram.view import LOCK_ICON
from ..docks.dock_set import install_docks, stop_docks
from ..jobs.base_loader import BaseLoader
from ..jobs.runner import Runner, speed_text
from ..panels.card import MethodCardView
from ..panels.census_table import CensusTable
from ..panels.inference import InferencePanel
from ..panels.method_form import MethodForm
from ..panels.plots import LivePlots
from ..panels.rank_grid import rank_grid_dock
from ..panels.training_form import TrainingForm
from . import theme
from .actions import Slots, StudioActions, make_combo
from .controller import Controller
from .errors_dialog import show_error_dialog
from .files import FileFlows
from .help import AboutPeftDialog, ShortcutsDialog
from .keys import FieldKeys
from .session import restore_defaults, restore_session, save_session
from .status import CounterLabel, StatusBar
from .strips import FirstRunHint, InfoStrip, JobStrip, NotesStrip
from .view_binding import ViewBinding

OPEN_FILE = "Open file…"
OPEN_BASE = "Open base folder…"
SPEED_LABEL_INTERVAL_S = 0.25  # a number is read at ~4 Hz; faster only repaints the toolbar for nothing
# While training takes every core, the diagram's and the table's gradient colours follow at ~4 Hz, not at the
# worker's 10 Hz sampling: each showing repaints the diagram (~0.6 ms of the GUI thread on tiny, 1600x1000),
# a third of a frame's cost, and on 2 busy cores the GUI thread's time stalls the trainer's whole team
BUSY_GRADS_INTERVAL_S = 0.25
LOCK_REASON = "Locked while training: stop (Esc) or reset (Ctrl+R) to change the model."
META_REASON = ("This base is an architecture on the meta device (shapes, no weights): inspect its placement, "
               "counts and memory; train on tiny-decoder or a checkpoint")
LOOKING = "The lens is reading the model: Play and Step wait until it has finished"
BUILDING = "Building the new setup in the background; edits made meanwhile apply once it is ready."
STOPPING = "stopping… (the current step finishes first)"
GEOMETRY_KEY = "window/geometry"
DEFAULT_SIZE = QSize(1600, 1000)
FRAME_GUESS = QSize(8, 38)  # a title bar and borders, before the window manager has said (the first start)
SIDE_MIN_WIDTH = 300  # an explicit minimum: the side panel's content never pushes the diagram around
DIAGRAM_MIN = QSize(420, 260)  # the diagram is the lesson's evidence: docks never squeeze it below this
SIDE_SHARE = 0.36  # of the window's width for the side area when it opens


def percent(part: int, whole: int) -> str:
    """Three significant digits: never "0.00%" for a non-zero count, never "100%" for less than all."""
    if whole <= 0 or part <= 0:
        return "0%"
    if part >= whole:
        return "100%"
    value = 100.0 * part / whole
    text = f"{value:.3g}"
    if float(text) >= 100.0:
        text = "99.9"
    if "e" in text:  # below 0.0001%: plain decimals read better than 1.2e-05
        text = f"{value:.{2 - int(f'{value:e}'.split('e')[1])}f}".rstrip("0").rstrip(".")
    return text + "%"


class PresentationSwitch:
    """`window.presentation`: on/off through the view state (F5, a lesson, the last session)."""

    def __init__(self, window: MainWindow) -> None:
        self.window = window

    @property
    def on(self) -> bool:
        return self.window.controller.view.presentation

    def set(self, on: bool) -> None:
        if on == self.on:
            self.window.view.fit()
            return
        self.window.controller.view.set(presentation=on)

    def toggle(self) -> None:
        self.set(not self.on)


class MainWindow(QMainWindow):
    def __init__(self, controller: Controller | None = None, complete: bool = True) -> None:
        """`complete=False` builds the frame alone (toolbar, menus, empty panels) so that it can paint at once;
        `complete()` then adds what the first paint does not need (app.main calls it right after that paint)."""
        super().__init__()
        self.setWindowTitle("PEFT Studio — where does the trainable part go?")
        self.controller = controller or Controller()
        if controller is None:  # the window's own: it goes with the window (its connections hold the window)
            self.controller.setParent(self)
        self.runner = Runner(self.controller)
        self.runner.setParent(self)
        self.scene = DiagramScene(self.controller.view)
        self.scene.setParent(self)  # Qt deletes it with the window, and with it the connections that hold the window
        self.view = DiagramView(self.scene, self.controller.view)
        self.form = MethodForm()
        self.card = MethodCardView()
        self.training = TrainingForm()
        self.table = CensusTable()
        self.plots = LivePlots()
        self.inference = InferencePanel()
        self.base_loader = BaseLoader(self)
        self.files = FileFlows(self)
        self.preview = Preview(self)
        self.presentation = PresentationSwitch(self)
        self.closing = False
        self.stopping = False
        self._latest_grads: dict[str, float] = {}
        self._latest_gains: dict[str, list[float]] = {}
        self._speed_shown_at = 0.0
        self._grads_shown_at = 0.0
        self._pictures: dict | None = None  # IA3's pictures for the current experiment and sentence, on demand
        self._refusals: tuple[tuple, list[str]] | None = None  # the method list's reasons, and what they hold for
        self.actions_ = StudioActions(self, Slots(
            reset=self.reset, play_pause=self.play_pause, step_once=self.step_once,
            stop=self.stop, seed_example=self.controller.seed_example, undo=self.controller.undo,
            redo=self.controller.redo, restore_defaults=lambda: restore_defaults(self), fit=self.view.fit,
            presentation=self.toggle_presentation,
            export=self.files.export_dialog, open_dataset=self.files.open_dataset_dialog,
            save_adapter=self.files.save_adapter_dialog, load_adapter=self.files.load_adapter_dialog,
            save_setup=self.files.save_setup_dialog, open_setup=self.files.open_setup_dialog,
            zoom_in=lambda: self.view.zoom(self.view.ZOOM_STEP),
            zoom_out=lambda: self.view.zoom(1 / self.view.ZOOM_STEP),
            collapse_layers=self.toggle_layers, show_layers=self.ask_layers, quit=self.close,
            shortcuts=self.show_shortcuts, about=self.show_about, toggle_panels=self.toggle_panels,
            export_recipe=self.files.export_recipe_dialog, messages=lambda: self.status.show_log(),
            open_base=self.files.open_base_dialog, import_peft=self.files.import_peft_dialog))
        self.status = StatusBar()
        self.setStatusBar(self.status)
        self._build_toolbar()
        self._build_layout()
        self._build_status()
        self.actions_.install_menus(self)
        menus = {m.title().replace("&", ""): m for m in (a.menu() for a in self.menuBar().actions()) if m}
        self.docks = install_docks(self, menus["Examples"], menus["View"], self.side)
        self.side_dock = self.docks.setup
        self.binding = ViewBinding(self, self.controller.view)
        self.docks.when_built("compare", self._wire_board)
        self.rank_dock, self.rank_grid = rank_grid_dock(self)  # shown when a method reports live ranks
        self._connect()
        self.field_keys = FieldKeys(self, self.view, self.actions_.all)
        self.dialogs: dict[str, QWidget] = {}
        self.place_on_screen()
        self.completed = False
        if complete:
            self.complete()

    def _wire_board(self, board) -> None:
        board.method_started.connect(self.preview.follow)
        board.family_finished.connect(self.preview.end)
        board.method_chosen.connect(self.choose_placed_method)

    def complete(self) -> None:
        """The first experiment's diagram, panels and table, and the setup the window last closed on: what the
        window's first paint can do without (start-up paints the frame first). Idempotent."""
        if self.completed:
            return
        self.completed = True
        self.refresh_all()
        restored = restore_session(self)  # the setup the window last closed on, if it still builds
        if restored:
            self.statusBar().showMessage(restored, 6000)

    # ---- compatibility names for the actions (tests and menus use them) -------------------------
    @property
    def act_play(self):
        return self.actions_.play

    @property
    def act_step(self):
        return self.actions_.step

    @property
    def act_undo(self):
        return self.actions_.undo

    @property
    def act_seed(self):
        return self.actions_.seed

    # ---- composition ------------------------------------------------------------------------
    def _build_toolbar(self) -> None:
        bar = self.toolbar = QToolBar("Run")
        bar.setMovable(False)
        bar.setIconSize(QSize(18, 18))
        self.addToolBar(bar)
        self.base_box = make_combo([*base_names(), OPEN_BASE], "Frozen base model")
        for i, entry in enumerate(BASES.values()):
            self.base_box.setItemData(i, f"{entry.name}: {entry.summary}", Qt.ItemDataRole.ToolTipRole)
        self.base_box.setItemData(len(BASES), "A local checkpoint folder: Llama, Mistral, Qwen2 or GPT-2 decoders, "
                                  "BERT-style encoders, or a folder with only config.json (shapes only)",
                                  Qt.ItemDataRole.ToolTipRole)
        self.data_box = make_combo([*builtin_names(), OPEN_FILE], "Dataset: a built-in one, or open a "
                                                                   "CSV/TSV/JSONL/JSON")
        for i, name in enumerate(builtin_names()):
            self.data_box.setItemData(i, builtin_description(name), Qt.ItemDataRole.ToolTipRole)
        self.method_box = make_combo(list(METHODS), "PEFT method: where the trainable part goes")
        for i, method in enumerate(METHODS.values()):
            self.method_box.setItemData(i, f"{method.title}: {method.card.where}", Qt.ItemDataRole.ToolTipRole)
        for label, box in (("base", self.base_box), ("data", self.data_box), ("method", self.method_box)):
            bar.addWidget(QLabel(f" {label} "))
            bar.addWidget(box)
        bar.addSeparator()
        for action in self.actions_.transport():
            bar.addAction(action)
        self.step_label = CounterLabel("step 0")  # opaque: a new number repaints the label alone
        self.step_label.setObjectName("stepCounter")
        self.step_label.setToolTip("Optimizer steps since the last reset")
        self.speed_label = QLabel("")
        self.speed_label.setObjectName("speed")
        self.speed_label.setToolTip("Training speed (steps per second, averaged over the last 20 steps) and the "
                                    "torch threads the trainer chose by measuring")
        bar.addWidget(self.step_label)
        bar.addSeparator()
        # Projector controls before the speed: on a narrow screen the last items move into the » menu, and
        # the speed (empty until a run) is the one to go, not Presentation or Fit.
        for action in (self.actions_.present, self.actions_.panels, self.actions_.fit):  # the seed example: Ctrl+1
            bar.addAction(action)
        bar.addWidget(self.speed_label)
        self.fix_step_label_width()
        self._show_overflow_button(bar)

    @staticmethod
    def _show_overflow_button(bar: QToolBar) -> None:
        """On a narrow screen the toolbar's last buttons move into its » menu; the style's own arrow icon is
        missing on some Linux desktops, which left an empty, unclickable-looking corner: draw the » ourselves."""
        button = bar.findChild(QToolButton, "qt_toolbar_ext_button")
        if button is None:
            return
        pixmap = QPixmap(16, 16)
        pixmap.fill(Qt.GlobalColor.transparent)
        painter = QPainter(pixmap)
        painter.setPen(QColor("#1f2933"))
        font = painter.font()
        font.setPointSize(12)
        font.setBold(True)
        painter.setFont(font)
        painter.drawText(pixmap.rect(), Qt.AlignmentFlag.AlignCenter, "»")
        painter.end()
        button.setIcon(QIcon(pixmap))
        button.setToolTip("More buttons (the window is too narrow for all of them)")

    def _build_layout(self) -> None:
        tabs = self.tabs = QTabWidget()
        method_tab = QWidget()
        method_layout = QVBoxLayout(method_tab)
        method_layout.setContentsMargins(2, 2, 2, 2)
        method_layout.addWidget(self.form)
        method_layout.addWidget(self.card, 1)
        method_scroll = QScrollArea()  # a wide form scrolls inside the panel instead of widening it
        method_scroll.setWidgetResizable(True)
        method_scroll.setFrameShape(QFrame.Shape.NoFrame)
        method_scroll.setWidget(method_tab)
        tabs.addTab(method_scroll, "Method")
        tabs.addTab(self.training, "Training")
        tabs.addTab(self.inference, "Try it")
        tabs.setTabToolTip(0, "Settings of the chosen method, generated from its config, and its card")
        tabs.setTabToolTip(2, "Type a sentence and see the current model's prediction")
        side = self.side = QSplitter(Qt.Orientation.Vertical)  # the Setup dock's content (docks/dock_set.py)
        side.addWidget(tabs)
        side.addWidget(self.table)
        side.setSizes([560, 300])
        side.setMinimumWidth(SIDE_MIN_WIDTH)
        self.job_strip = JobStrip(self.controller.jobs)
        self.controller.jobs.on("added", lambda _job: self.hint.dismiss())
        self.preview_strip = InfoStrip("previewStrip", "#f3ecfb", "#c7b2e6", closable=False)
        self.hint = FirstRunHint()
        self.notes_strip = NotesStrip()
        centre = QWidget()
        centre_layout = QVBoxLayout(centre)
        centre_layout.setContentsMargins(0, 0, 0, 0)
        centre_layout.setSpacing(0)
        for strip in (self.job_strip, self.preview_strip, self.hint, self.notes_strip):
            centre_layout.addWidget(strip)
        centre_layout.addWidget(self.view.legend)
        centre_layout.addWidget(self.view, 1)
        self.view.setMinimumSize(DIAGRAM_MIN)
        main = self.main_split = QSplitter(Qt.Orientation.Vertical)
        main.addWidget(centre)
        main.addWidget(self.plots)
        main.setSizes([750, 200])
        main.setStretchFactor(0, 1)
        main.setChildrenCollapsible(False)
        self.setCentralWidget(main)

    def _build_status(self) -> None:
        status = self.statusBar()
        self.params_label = QLabel()
        self.params_label.setToolTip("Trainable / total parameters (method + head trainable)")
        self.bytes_label = QLabel()
        self.bytes_label.setToolTip("Adapter size: the trainable tensors an adapter file stores (fp32)")
        self.lock_icon = QLabel()
        if LOCK_ICON.is_file():
            self.lock_icon.setPixmap(QPixmap(str(LOCK_ICON)).scaled(14, 14, Qt.AspectRatioMode.KeepAspectRatio,
                                                                     Qt.TransformationMode.SmoothTransformation))
        self.base_label = QLabel()
        self.base_label.setToolTip("Fingerprint of every frozen tensor: checked after each run")
        for widget in (self.params_label, self.bytes_label, self.lock_icon, self.base_label):
            status.addPermanentWidget(widget)

    def _connect(self) -> None:
        c = self.controller
        c.changed.connect(self.refresh_all)
        c.settings_changed.connect(self.refresh_settings)
        c.failed.connect(self.show_error)
        c.failed.connect(lambda _title, _message: self.refresh_choices())  # a refused choice (now or after a
        c.notice.connect(self.show_notice)  # background build): the lists show the working setup again
        c.history_changed.connect(self._history)
        c.lock_changed.connect(self.on_lock)
        c.building_changed.connect(self.on_building)
        self.runner.events.connect(self.on_events)
        self.runner.state_changed.connect(self.on_state)
        self.runner.failed.connect(self.show_error)
        self.runner.finished.connect(self.on_finished)
        self.scene.site_clicked.connect(self.on_site_clicked)
        self.scene.block_clicked.connect(self.on_block_clicked)
        self.scene.tip_extra = self.ia3_picture
        self.table.rows_selected.connect(lambda names: self.scene.mark(self.scene.keys_for_rows(names)))
        self.form.option_changed.connect(self.on_option)
        self.training.changed.connect(self.on_training)
        self.training.seed_changed.connect(c.set_seed)
        self.base_box.activated.connect(lambda _i: self.on_base_choice(self.base_box.currentText()))
        self.base_loader.loaded.connect(lambda path: self._choose(c.set_base, path))
        self.base_loader.failed.connect(self._base_not_loaded)
        generation = self.inference.generation
        generation.generate_button.clicked.connect(self.try_generate)
        generation.busy_changed.connect(self._generation_busy)
        self.method_box.activated.connect(lambda _i: self._choose(c.set_method, self.method_box.currentText()))
        self.data_box.activated.connect(lambda _i: self.on_dataset_choice(self.data_box.currentText()))
        self.inference.text_changed.connect(lambda _t: self.refresh_inference())
        # The input row shows the typed sentence: rebuild the diagram once typing pauses (not per key).
        self._sentence_timer = QTimer(self)
        self._sentence_timer.setSingleShot(True)
        self._sentence_timer.setInterval(150)
        self._sentence_timer.timeout.connect(self.refresh_diagram)
        self.inference.text_changed.connect(lambda _t: self._sentence_timer.start())
        self._history(c.can_undo, c.can_redo)

    @property
    def building(self) -> bool:
        """A slow build runs off the GUI thread (the diagram still shows the previous setup)."""
        return self.controller.building

    # ---- the LessonHost protocol (gui/window/lessons.py) -----------------------------------------
    @property
    def lesson_host(self) -> MainWindow:
        return self

    def after_run_stops(self, then: Callable[[], None]) -> None:
        self.runner.stop_then(then)

    def lesson_opened(self, lesson: Lesson) -> None:
        """After the lesson's setup and view: its zoom against the new layout, a clean tensor filter."""
        self.runner.step = 0
        self.table.clear_filter()
        self.hint.dismiss()  # the class has moved past the first start
        if self.side_dock.isVisible():
            self.side_dock.raise_()  # the lesson's selected tab is one of the Setup panel's
        # Hidden panels and presentation resize the diagram's viewport: settle the layouts first, so that the
        # lesson's zoom is relative to the size the class will see.
        for _ in range(3):
            QApplication.sendPostedEvents(None, QEvent.Type.LayoutRequest)
            self.layout().activate()
        self._zoom_after_build = self.controller.building  # a lesson on a checkpoint: zoom the diagram it builds
        if not self._zoom_after_build:
            self.apply_view_zoom()
        self.statusBar().showMessage(f"Lesson: {lesson.title}", 8000)

    def dialog_parent(self) -> QWidget:
        return self

    def diagram_zoom(self) -> tuple[float, tuple[float, float] | None]:
        """The diagram's zoom relative to its fitted size and the scene point at its centre, as the user left
        them; (1.0, None) while it follows the window's size (fitted)."""
        view = self.view
        fitted = view.fitted_scale()
        if view.auto_fit or not fitted:
            return 1.0, None
        zoom = min(max(view.transform().m11() / fitted, ZOOM_RANGE[0]), ZOOM_RANGE[1])
        centre = view.mapToScene(view.viewport().rect().center())
        return zoom, (float(centre.x()), float(centre.y()))

    def show_status(self, text: str) -> None:
        self.statusBar().showMessage(text, 8000)

    def dock_allow(self, name: str, allowed: bool) -> None:
        self.docks.allow(name, allowed)

    def examples_menu_action(self):
        return self.docks.examples_menu.menuAction()

    def apply_view_zoom(self) -> None:
        """The view state's zoom (1 = fitted) and centre, e.g. a lesson's."""
        view = self.controller.view.view
        self.view.fit()
        if view.zoom != 1.0:
            self.view.scale(view.zoom, view.zoom)
            self.view.auto_fit = False  # keep the teacher's zoom across resizes
        if view.scroll is not None:
            self.view.centerOn(*view.scroll)
            self.view.auto_fit = False

    # ---- refresh ------------------------------------------------------------------------------
    def refresh_all(self) -> None:
        """The experiment was rebuilt: every view re-reads it; the curve starts a new run."""
        c = self.controller
        exp = c.experiment
        self.runner.step = 0
        self.plots.new_run(same_task=self.plots.task == (exp.dataset.name, exp.next_token))
        self.plots.task = (exp.dataset.name, exp.next_token)
        self.plots.set_accuracy_name("next-token accuracy" if exp.next_token else "accuracy")
        self.step_label.setText("step 0")
        self.speed_label.setText("")
        self._pictures = None
        self.refresh_diagram()
        method, config, base = exp.method, exp.config, exp.base
        choices = {name: method.field_choices(name, base) for name in config.to_dict()}
        self.form.show_config(config, method.effective_options(config, base), choices)
        self.card.show_for(c)
        self.table.set_rows(list(c.census.rows))
        self.refresh_choices()
        self.refresh_settings()
        self.refresh_status(checked=None)
        self.refresh_inference()
        self._offer_training(not base.on_meta_device)
        notes = getattr(base, "load_notes", ())
        if notes:  # what loading the checkpoint left out or found (NaN weights: no Play either)
            self.statusBar().showMessage("; ".join(notes), 15000)

    def refresh_diagram(self) -> None:
        """Rebuild the diagram alone (the input sentence changed); the view keeps its fit or zoom. During a run
        it waits for the end (a rebuild mid-run would show the lock in every tooltip and drop the live bars)."""
        if self.runner.active:
            self._diagram_pending = True
            return
        self._diagram_pending = False
        if self.preview.active:
            self.preview.redraw()
            return
        self.scene.build(diagram_info(self.controller, self.inference.entry.text()))
        self.refresh_gains()
        if self.view.auto_fit:
            self.view.fit()

    def refresh_gains(self) -> None:
        """IA3's heat strips from the model's current gains (the pictures in their tooltips come on hover)."""
        # the census names every tensor already: walking the model's modules (a 70B has 65,000) is not needed
        model = self.controller.experiment.model
        gains = sample_gains((row.name, model.get_parameter(row.name)) for row in self.controller.census.rows
                             if row.name.endswith(GAIN_SUFFIX))
        if gains:
            self.scene.update_gains(gains)

    def ia3_picture(self, gains_name: str) -> str:
        """The seed's IA3 picture with real numbers, for a hovered strip's tooltip: one forward pass, on
        demand (never after every rebuild) and only while no run holds the model."""
        if self.runner.active or self.preview.active:
            return ""
        exp = self.controller.experiment
        sentence = self.inference.entry.text().strip() or (exp.dataset.train_texts[0] if exp.dataset.train_texts
                                                           else "")
        if self._pictures is None or self._pictures.get("") != sentence:
            try:
                self._pictures = {"": sentence, **gain_pictures(exp, sentence)}
            except Exception:  # noqa: BLE001 - a picture is a nicety: never an error dialog, but logged
                log.warning("the IA3 gain pictures could not be drawn", exc_info=True)
                self._pictures = {"": sentence}
        picture = self._pictures.get(gains_name)
        return picture_html(picture, sentence) if picture else ""

    def refresh_method_choices(self) -> None:
        """Methods that cannot work on this base (or this dataset's task) are greyed out in the list, with the
        reason as a tooltip; bases that cannot take this dataset likewise. Choosing one never ends in an error
        dialog."""
        exp = self.controller.experiment
        model = self.method_box.model()
        # The refusals depend on the base (built from its name, options and the dataset) and the task, not on the
        # method's options: an option edit on a 70B architecture re-checked every method (~0.1 s) for nothing.
        key = (exp.setup.base, repr(sorted(exp.setup.base_options.items())), exp.dataset, exp.next_token,
               tuple(METHODS))
        if self._refusals is None or self._refusals[0] != key:
            self._refusals = (key, [method_refusal(method, exp) for method in METHODS.values()])
        for i, (method, reason) in enumerate(zip(METHODS.values(), self._refusals[1], strict=True)):
            if i >= model.rowCount():
                break
            item = model.item(i)
            item.setEnabled(not reason)
            tip = f"{method.title}: {method.card.where}"
            item.setToolTip(plain.tip(f"{tip}\nNot on {exp.base.name} with {exp.dataset.name}: {reason}")
                            if reason else tip)
        bases = self.base_box.model()
        for i, entry in enumerate(BASES.values()):
            if i >= bases.rowCount():
                break
            reason = base_refusal(entry.name, exp.dataset)
            item = bases.item(i)
            item.setEnabled(not reason)
            tip = f"{entry.name}: {entry.summary}"
            item.setToolTip(plain.tip(f"{tip}\nNot with {exp.dataset.name}: {reason}") if reason else tip)

    def refresh_choices(self) -> None:
        """Put the base, dataset and method lists back on the working choice (after a refused one)."""
        c = self.controller
        self.refresh_method_choices()
        for box, value in ((self.base_box, c.setup.base), (self.method_box, c.setup.method),
                           (self.data_box, c.dataset.name)):
            if box.findText(value) < 0:
                box.insertItem(box.count() - (1 if box in (self.data_box, self.base_box) else 0), value)
            box.setCurrentText(value)

    def show_notice(self, message: str) -> None:
        """A change the state made on its own (e.g. sites dropped on a base switch), for the status bar."""
        if self.controller.experiment.base.on_meta_device:  # keep saying why there is no Play
            self.statusBar().showMessage(f"{message}. {META_REASON}")
        else:
            self.statusBar().showMessage(message, 8000)

    def _offer_training(self, runnable: bool) -> None:
        """A meta-device base (an architecture, shapes only) is inspected, never trained: no Play, and why."""
        if self.controller.locked and not self.runner.active:  # an adapter of the set trains: on_lock says so
            return
        runnable = runnable and not self.controller.building
        self.hint.offer(runnable)
        for action in (self.actions_.play, self.actions_.step, self.actions_.reset):
            action.setEnabled(runnable)
            tip = action.statusTip()
            action.setToolTip(f"{tip}  [{action.shortcut().toString()}]" if runnable else
                              (BUILDING if self.controller.building else META_REASON))
        self.actions_.stop.setEnabled(self.runner.active)
        if not runnable and not self.controller.building:
            self.statusBar().showMessage(META_REASON)

    def refresh_settings(self) -> None:
        self.training.show_settings(self.controller.settings, self.controller.setup.seed)

    def refresh_status(self, checked: bool | None) -> None:
        census = self.controller.census
        self.params_label.setText(f"trainable {census.trainable:,} / total {census.total:,} "
                                  f"({percent(census.trainable, census.total)})")
        size = census.trainable_bytes
        self.bytes_label.setText(f"adapter {size:,} bytes ({theme.human_bytes(size)})")
        model = self.controller.experiment.model
        fingerprint = model.base_fingerprint[:8]  # the frozen base as built: the same for every method
        base_rows = [r for r in census.rows if r.owner == "base"]
        trained = sum(r.numel for r in base_rows if r.trainable)
        everything = bool(trained) and trained == sum(r.numel for r in base_rows)
        self.lock_icon.setVisible(not everything)  # the padlock means "frozen": not beside a trained base
        if everything:
            self.base_label.setText(f"base trained (every tensor) · fingerprint before training {fingerprint}")
            self.base_label.setToolTip("Full fine-tuning: no base tensor is frozen, so there is nothing to check")
            return
        what = f"base frozen except {trained:,} parameters" if trained else "base frozen"
        self.base_label.setToolTip("Fingerprint of the frozen base (SHA-256 of its tensors): the frozen part is "
                                   "checked after each run")
        if checked is None:
            self.base_label.setText(f"{what} · fingerprint {fingerprint}")
        elif checked:
            unchanged = "frozen part unchanged" if trained else "base unchanged"
            self.base_label.setText(f"{unchanged} ✓ · fingerprint {fingerprint}")
        else:
            self.base_label.setText("base CHANGED — this is a bug")

    def refresh_inference(self) -> None:
        if self.runner.active:
            self.inference.show_busy()
            return
        try:
            self.inference.refresh(self.controller.experiment)
        except PeftStudioError as exc:
            self.inference.show_error(f"cannot predict: {exc}")
        except Exception as exc:  # noqa: BLE001 - a broken model shows its error here (traceback in the log)
            self.inference.show_error(f"cannot predict: {report_unexpected(exc, 'predicting')}")

    # ---- training events ----------------------------------------------------------------------
    def play_pause(self) -> None:
        if self.controller.building:
            self.statusBar().showMessage(BUILDING, 4000)
            return
        if self.docks.lens_reading:  # the lens reads the model (and bypasses its parts) meanwhile
            self.statusBar().showMessage(LOOKING, 4000)
            return
        self.preview.leave()
        self.runner.play_pause()

    def step_once(self) -> None:
        if self.controller.building:
            self.statusBar().showMessage(BUILDING, 4000)
            return
        if self.docks.lens_reading:  # the lens reads the model (and bypasses its parts) meanwhile
            self.statusBar().showMessage(LOOKING, 4000)
            return
        self.preview.leave()
        self.runner.step_once()

    def on_events(self, batch: list[dict]) -> None:
        for event in batch:
            self.plots.add(event)
            if "grads" in event:
                self._latest_grads = event["grads"]
            if event.get("gains"):
                self._latest_gains = event["gains"]
        self.plots.refresh()
        last = batch[-1]
        grid = (last.get("method_state") or {}).get("rank_grid")
        if grid:  # a method that reallocates ranks while training: its per-site grid, live
            self.rank_grid.show_grid(grid)
            self.rank_dock.show()
        self.step_label.setText(f"step {self.runner.step}")
        now = time.monotonic()
        if now - self._speed_shown_at >= SPEED_LABEL_INTERVAL_S or last["last"]:
            self._speed_shown_at = now
            paused = self.runner.state == "paused"
            self.speed_label.setText("paused" if paused else speed_text(last["sps"], last.get("threads")))
        if (self._latest_grads or self._latest_gains) and self._gradients_due(now, last["last"]):
            self._grads_shown_at = now
            if self._latest_grads:
                self.scene.update_grads(self._latest_grads)
                self.table.model.set_grads(self._latest_grads)
            if self._latest_gains:  # IA3's gain vectors on their heat strips
                self.scene.update_gains(self._latest_gains)
            self._latest_grads, self._latest_gains = {}, {}

    def _gradients_due(self, now: float, last_step: bool) -> bool:
        """Whether the worker's latest gradient samples (<= 10 Hz) are shown this frame: each one with a spare
        core, every BUSY_GRADS_INTERVAL_S while training takes every core; the last step's and a paused run's
        always."""
        return (not self.runner.budget.active or now - self._grads_shown_at >= BUSY_GRADS_INTERVAL_S
                or last_step or self.runner.state == "paused")

    def on_state(self, state: str) -> None:
        running = state == "running"
        if state == "paused":
            self.speed_label.setText("paused")
        if state != "idle":
            self.hint.dismiss()
        if state == "idle":
            self.stopping = False
            for action in (self.actions_.play, self.actions_.step):
                action.setEnabled(True)
            if self.docks.lens.isVisible():  # the run has stopped: show what it changed
                self.docks.lens_panel.look()
        self.actions_.stop.setEnabled(state != "idle")
        self.actions_.play.setText("❚❚ Pause" if running else "▶ Play")
        locked = state != "idle"
        self._lock_widgets(locked, LOCK_REASON)
        if self.stopping:
            self.show_stopping()
        elif locked:
            self.inference.show_busy()
            self.statusBar().showMessage(LOCK_REASON if state == "running" else "Paused: Space resumes, → steps")
        else:
            self.statusBar().clearMessage()

    def _lock_widgets(self, locked: bool, reason: str) -> None:
        tips = self.__dict__.setdefault("_unlocked_tips", {})
        for widget in (self.base_box, self.data_box, self.method_box):
            widget.setEnabled(not locked)
            tips.setdefault(widget, widget.toolTip())
            widget.setToolTip(plain.tip(reason) if locked else tips[widget])  # a reason may name an adapter
        self.form.set_locked(locked, reason)
        self.training.set_locked(locked)
        for action in self.actions_.model_changing():  # saving while running would race the worker
            action.setEnabled(not locked)
        self._history(self.controller.can_undo, self.controller.can_redo)

    def on_lock(self, locked: bool) -> None:
        """Another run holds the lock (an adapter training in the Adapters panel): no Play, no model edits,
        and the status bar says why, until it ends. The window's own runs lock through on_state."""
        if self.runner.active:
            return
        reason = self.controller.lock_reason or LOCK_REASON
        self._lock_widgets(locked, reason)
        if locked:
            for action in (self.actions_.play, self.actions_.step):
                action.setEnabled(False)
            self.statusBar().showMessage(reason)
        else:
            self._offer_training(not self.controller.experiment.base.on_meta_device)
            self.statusBar().clearMessage()

    def on_building(self, building: bool) -> None:
        """A slow build runs in the background: the window stays usable (edits queue), Play waits for it."""
        self._offer_training(not self.controller.experiment.base.on_meta_device)
        if building:
            self.statusBar().showMessage(BUILDING)
        elif self.statusBar().currentMessage() == BUILDING:
            self.statusBar().clearMessage()
        if not building and getattr(self, "_zoom_after_build", False):
            self._zoom_after_build = False
            self.apply_view_zoom()

    def on_finished(self) -> None:
        if self.closing:
            QTimer.singleShot(0, self._close_when_idle)  # the worker has ended: the deferred close completes
            return
        exp = self.controller.experiment
        unchanged = exp.model.frozen_fingerprint() == self.controller.frozen_at_build
        self.refresh_status(checked=unchanged)
        self.refresh_inference()
        self._pictures = None
        if getattr(self, "_diagram_pending", False):
            self.refresh_diagram()
        self.refresh_gains()
        self.plots.refresh()
        self.plots.flush_last()

    # ---- user actions ---------------------------------------------------------------------------
    def _choose(self, setter, value: str) -> None:
        self.preview.leave()
        if not setter(value):
            self.refresh_choices()  # put the combo back on the working choice

    def on_base_choice(self, name: str) -> None:
        if name == OPEN_BASE:
            self.files.open_base_dialog()
        else:
            self._choose(self.controller.set_base, name)

    def _base_not_loaded(self, title: str, text: str) -> None:
        self.refresh_choices()
        if title:
            self.show_error(title, text)
        else:
            self.statusBar().showMessage(text, 6000)

    def try_generate(self) -> None:
        """Continue the typed text with the current model and the bare base (training waits meanwhile)."""
        if self.runner.active or self.base_loader.running:
            self.statusBar().showMessage("Generation waits for training (or loading) to stop", 4000)
            return
        exp = self.controller.experiment
        text = self.inference.entry.text().strip()
        if not text:
            self.statusBar().showMessage("Type a text to continue first", 4000)
            return
        self.inference.generation.start(exp, text, exp.method.title, self.show_error)

    def _generation_busy(self, busy: bool) -> None:
        """While a generation reads the model, Play and Step wait (one thread uses the model at a time)."""
        if busy:
            for action in (self.actions_.play, self.actions_.step):
                action.setEnabled(False)
        else:
            self._offer_training(not self.controller.experiment.base.on_meta_device)

    def on_option(self, name: str, value) -> None:
        self.preview.leave()
        if not self.controller.set_option(name, value):
            self.refresh_all()  # the form shows the working options again

    def on_training(self, changes: dict) -> None:
        if not self.controller.set_training(**changes):
            self.refresh_settings()

    def on_site_clicked(self, site_id: str) -> None:
        if self.runner.active:
            self.statusBar().showMessage(LOCK_REASON, 4000)
            return
        if self.preview.active:
            self.statusBar().showMessage("This is a preview of the family run: press \"Back to my setup\" (above "
                                         "the diagram) to click insertion points", 5000)
            return
        site = self.controller.experiment.base.site(site_id)
        method = self.controller.method_for_site(site)
        if not site.available_for(method):
            self.statusBar().showMessage(f"{site.label}: {site.unavailable[method]}", 6000)
            return
        effect = self.controller.click_effect(site)  # closed form: milliseconds even on a 70B base
        self.controller.toggle_site(site_id)
        if self.controller.building and effect is not None:
            self.show_expected_count(effect.delta)

    def show_expected_count(self, delta: int) -> None:
        """While a slow base builds, the count a click makes (the closed form, which equals the census) at once."""
        census = self.controller.census
        total = census.trainable + delta
        self.params_label.setText(f"trainable {total:,} / total {census.total + delta:,} "
                                  f"({percent(total, census.total + delta)}) · building…")

    def on_block_clicked(self, key: str) -> None:
        names = self.scene.rows_for_key(key)
        self.scene.mark({key})
        self.table.select_names(names)

    def on_dataset_choice(self, name: str) -> None:
        if name == OPEN_FILE:
            self.files.open_dataset_dialog()
            return
        try:
            dataset = load_builtin(name)
        except PeftStudioError as exc:
            self.show_error("Dataset", str(exc))
            self.refresh_choices()
            return
        if not self.controller.set_dataset(dataset):
            self.refresh_choices()

    def reset(self) -> None:
        """Reset now, or (during a run) as soon as the step in flight ends: the window never waits for it."""
        if self.runner.active:
            self.stop()
            self.runner.when_stopped(lambda: None if self.closing else self.runner.reset())
            return
        self.runner.reset()

    def choose_placed_method(self, method: str) -> None:
        """A placement row was activated: that method as the row placed it (its defaults on this base), not the
        options it last had on another base."""
        if self.runner.active:
            self.statusBar().showMessage(LOCK_REASON, 4000)
            return
        self._choose(lambda name: self.controller.set_method(name, {}), method)

    def stop(self) -> None:
        """Ask the worker to stop and return at once; the window says so until the worker has ended."""
        if not self.runner.active:
            return
        self.stopping = True
        self.runner.stop()
        for action in (self.actions_.play, self.actions_.step):
            action.setEnabled(False)  # nothing to resume: the run is ending
        self.show_stopping()

    def show_stopping(self) -> None:
        self.actions_.play.setText("stopping…")
        self.statusBar().showMessage(STOPPING)

    def toggle_panels(self) -> None:
        self.binding.toggle_side_panels()

    def set_panels(self, visible: bool) -> None:
        self.controller.view.set(side_panels=visible)

    def toggle_presentation(self) -> None:
        self.binding.toggle_presentation()

    def toggle_layers(self) -> None:
        """L: the repeated layers as one box, or drawn (a large base shows a few layers at a time)."""
        count = sum(1 for b in self.controller.experiment.base.blocks() if b.kind == "layer")
        view = self.controller.view
        view.set(collapsed=not layers_collapsed(view.view, count))

    def ask_layers(self) -> None:
        """View ▸ Show layers…: layer k, or a range such as 10-13 (a large base draws a few at a time)."""
        count = sum(1 for b in self.controller.experiment.base.blocks() if b.kind == "layer")
        if count < 2:
            self.statusBar().showMessage("This base has no repeated layers to choose from", 4000)
            return
        text, ok = QInputDialog.getText(self, "Show layers", f"Layer or range to draw (0-{count - 1}):",
                                        text=self.scene.shown_layers_text())
        if ok:
            self.show_layers(text)

    def show_layers(self, text: str) -> bool:
        count = sum(1 for b in self.controller.experiment.base.blocks() if b.kind == "layer")
        try:
            first, last = parse_layer_range(text, count)
        except ValueError as exc:
            self.show_error("Show layers", str(exc))
            return False
        self.controller.view.set(collapsed=False, shown_layers=(first, last))
        return True

    def show_shortcuts(self) -> None:
        actions = (*self.actions_.all(), *self.docks.toggles.values())
        self._show_dialog("shortcuts", lambda: ShortcutsDialog(self, actions))

    def show_about(self) -> None:
        self._show_dialog("about", lambda: AboutPeftDialog(self, self.choose_method))

    def choose_method(self, name: str) -> None:
        if self.runner.active:
            self.statusBar().showMessage(LOCK_REASON, 4000)
            return
        self._choose(self.controller.set_method, name)

    def _show_dialog(self, key: str, make) -> None:
        dialog = self.dialogs.get(key)
        if dialog is None:
            dialog = self.dialogs[key] = make()
        dialog.show()
        dialog.raise_()

    # ---- geometry ---------------------------------------------------------------------------------
    def place_on_screen(self) -> None:
        """The remembered geometry, else the default size; never larger than the available screen, frame and
        status bar included (before the first show the window manager has not said how wide the frame is:
        a typical title bar and border are assumed, and showEvent checks again)."""
        saved = QSettings().value(GEOMETRY_KEY)
        if saved is None or not self.restoreGeometry(saved):
            self.resize(DEFAULT_SIZE)
        self._fit_on_screen()
        self._size_side_area()
        self._placed = self.size()  # showEvent checks this placement again once the frame is known

    def _fit_on_screen(self) -> None:
        screen = self.screen() or QGuiApplication.primaryScreen()
        if screen is None:
            return
        available = screen.availableGeometry()
        frame = self.frameGeometry().size() - self.geometry().size()
        if frame.width() <= 0 and frame.height() <= 0 and not self.isVisible():
            frame = FRAME_GUESS
        width = min(self.width(), available.width() - frame.width())
        height = min(self.height(), available.height() - frame.height())
        if (width, height) != (self.width(), self.height()):
            self.resize(width, height)
        outer = self.frameGeometry()
        if not available.contains(outer):
            self.move(max(available.left(), min(outer.left(), available.right() - outer.width())),
                      max(available.top(), min(outer.top(), available.bottom() - outer.height())))

    def _size_side_area(self) -> None:
        self.resizeDocks([self.docks.setup], [max(SIDE_MIN_WIDTH, int(self.width() * SIDE_SHARE))],
                         Qt.Orientation.Horizontal)

    def save_geometry(self) -> None:
        QSettings().setValue(GEOMETRY_KEY, self.saveGeometry())

    def showEvent(self, event) -> None:  # noqa: N802 - Qt override
        super().showEvent(event)
        if not getattr(self, "_shown_once", False):
            self._shown_once = True
            self._size_side_area()  # docks take their size once the window is laid out
            if self.size() == getattr(self, "_placed", None):  # our own placement (not a size set since)
                QTimer.singleShot(0, self._fit_on_screen)  # now the frame is known: the status bar stays on screen

    def resizeEvent(self, event) -> None:  # noqa: N802 - Qt override
        super().resizeEvent(event)
        old = event.oldSize()
        if old.isValid() and old.width() > 0 and abs(old.width() - self.width()) > 200:
            self._size_side_area()  # a new screen size (1920 -> 1280): the side area keeps its share

    def fix_step_label_width(self) -> None:
        """Wide enough for a 6-digit count in the current font, and fixed in both directions: Qt re-lays out
        a label's parent on every new text unless its minimum and maximum sizes are equal, and relaying the
        toolbar repainted a strip of the main window on every frame of a run."""
        _fix_label_size(self.step_label, "step 000000")
        # The speed label too, in whatever font presentation mode gave the toolbar: sized for its widest text,
        # it is either shown whole or moved into the » menu, never cut mid-word.
        _fix_label_size(self.speed_label, "999 steps/s · 16 threads")

    def show_error(self, title: str, message: str) -> None:
        self.statusBar().log.add(f"{title}: {message}")
        show_error_dialog(self, title, message)

    def _history(self, can_undo: bool, can_redo: bool) -> None:
        self.actions_.undo.setEnabled(can_undo)
        self.actions_.redo.setEnabled(can_redo)

    # ---- closing ---------------------------------------------------------------------------------
    def idle(self) -> bool:
        """No thread the window started is left: its run, the docks' jobs, a build, a generation, a base load."""
        return (not self.runner.active and not self.docks.busy() and self.controller.idle and not self.preview.busy
                and not self.inference.generation.running and not self.base_loader.job.running)

    def _close_when_idle(self) -> None:
        if not self.idle():
            QTimer.singleShot(50, self._close_when_idle)
            return
        self.close()
        # The window was hidden while its jobs stopped, so closing it no longer counts as the last window
        # closing: quit here as Qt would have (a no-op when no event loop runs, as in tests).
        if QApplication.quitOnLastWindowClosed() and not any(
                w.isVisible() and w.isWindow() for w in QApplication.topLevelWidgets()):
            QApplication.quit()

    def closeEvent(self, event) -> None:  # noqa: N802 - Qt override
        """Never blocks: with a run or a job active, ask each to stop, hide, and close for real once every
        thread has ended, so no thread outlives the window and the GUI never waits on a long step."""
        if not self.closing:
            self.save_geometry()
            save_session(self)
        self.closing = True
        if not self.idle():
            self.runner.stop()
            stop_docks(self.docks)  # their workers stop at their next check too
            self.inference.generation.job.stop()  # within one token
            self.base_loader.cancel()  # within one tensor
            self.controller.stop_build()
            self.hide()
            event.ignore()
            if not self.runner.active:
                QTimer.singleShot(50, self._close_when_idle)
            return
        event.accept()


def _fix_label_size(label: QLabel, widest: str) -> None:
    """Fix a one-line label's size to its widest text in its current font (a style sheet's included)."""
    label.setMinimumSize(0, 0)
    label.setMaximumSize(16777215, 16777215)  # QWIDGETSIZE_MAX: no bound while the hint is measured
    text = label.text()
    label.setText(widest)  # a new text makes QLabel compute its size hint afresh (it caches the last one)
    label.ensurePolished()
    label.setFixedSize(label.fontMetrics().horizontalAdvance(widest) + 16, label.sizeHint().height())
    label.setText(text)
