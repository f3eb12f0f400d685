"""The studio window: layout and wiring. Actions live in actions.py, file flows in files.py,
presentation mode in presentation.py; the state lives in the controller (core/studio.py)."""

from __future__ import annotations

import time

from PySide6.QtCore import QSize, Qt
from PySide6.QtGui import QPixmap
from PySide6.QtWidgets import QLabel, QMainWindow, QMessageBox, QSplitter, QTabWidget, QToolBar, QVBoxLayout, QWidget

from ..core.bases import BASES, base_names
from ..core.data import builtin_description, builtin_names, load_builtin
from ..core.errors import PeftStudioError
from ..core.methods import METHODS
from . import theme
from .actions import Slots, StudioActions, make_combo
from .controller import Controller
from .describe import diagram_info
from .diagram import DiagramScene, DiagramView
from .diagram.view import LOCK_ICON
from .files import FileFlows
from .panels.card import MethodCardView
from .panels.census_table import CensusTable
from .panels.inference import InferencePanel
from .panels.method_form import MethodForm
from .panels.plots import LivePlots
from .panels.training_form import TrainingForm
from .presentation import Presentation
from .runner import Runner

OPEN_FILE = "Open file…"
SPEED_LABEL_INTERVAL_S = 0.25  # a number is read at ~4 Hz; faster only repaints the toolbar for nothing
LOCK_REASON = "Locked while training: stop (Esc) or reset (Ctrl+R) to change the model."


class MainWindow(QMainWindow):
    def __init__(self, controller: Controller | None = None) -> None:
        super().__init__()
        self.setWindowTitle("PEFT Studio — where does the trainable part go?")
        self.controller = controller or Controller()
        self.runner = Runner(self.controller)
        self.scene = DiagramScene()
        self.view = DiagramView(self.scene)
        self.form = MethodForm()
        self.card = MethodCardView()
        self.training = TrainingForm()
        self.table = CensusTable()
        self.plots = LivePlots()
        self.inference = InferencePanel()
        self.files = FileFlows(self)
        self.actions_ = StudioActions(self, Slots(
            reset=self.reset, play_pause=self.runner.play_pause, step_once=self.runner.step_once,
            stop=self.runner.stop, seed_example=self.controller.seed_example, undo=self.controller.undo,
            redo=self.controller.redo, fit=self.view.fit, presentation=self.toggle_presentation,
            export=self.files.export_dialog, open_dataset=self.files.open_dataset_dialog,
            save_adapter=self.files.save_adapter_dialog, load_adapter=self.files.load_adapter_dialog,
            save_setup=self.files.save_setup_dialog, open_setup=self.files.open_setup_dialog,
            zoom_in=lambda: self.view.zoom(1.2), zoom_out=lambda: self.view.zoom(1 / 1.2),
            collapse_layers=self.scene.toggle_layers, quit=self.close))
        self._build_toolbar()
        self._build_layout()
        self._build_status()
        self.actions_.install_menus(self)
        self.presentation = Presentation(self)
        self._connect()
        self._latest_grads: dict[str, float] = {}
        self._speed_shown_at = 0.0
        self.closing = False
        self.resize(1600, 1000)
        self.refresh_all()

    # ---- compatibility names for the actions (tests and menus use them) -------------------------
    @property
    def act_play(self):
        return self.actions_.play

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
        self.base_box = make_combo(base_names(), "Frozen base model")
        for i, entry in enumerate(BASES.values()):
            self.base_box.setItemData(i, f"{entry.name}: {entry.summary}", Qt.ItemDataRole.ToolTipRole)
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
        self.step_label = QLabel("step 0")
        self.step_label.setObjectName("stepCounter")
        self.step_label.setToolTip("Optimizer steps since the last reset")
        self.speed_label = QLabel("")
        self.speed_label.setObjectName("speed")
        self.speed_label.setFixedWidth(110)
        self.speed_label.setToolTip("Training speed (steps per second, averaged over the last 20 steps)")
        # Opaque: a new number each frame repaints the label alone, not the toolbar behind it.
        self.step_label.setAutoFillBackground(True)
        self.step_label.setAttribute(Qt.WidgetAttribute.WA_OpaquePaintEvent)
        self.fix_step_label_width()
        bar.addWidget(self.step_label)
        bar.addWidget(self.speed_label)
        bar.addSeparator()
        for action in (self.actions_.seed, self.actions_.fit, self.actions_.present):
            bar.addAction(action)

    def _build_layout(self) -> None:
        tabs = self.tabs = QTabWidget()
        method_tab = QWidget()
        method_layout = QVBoxLayout(method_tab)
        method_layout.setContentsMargins(2, 2, 2, 2)
        method_layout.addWidget(self.form)
        method_layout.addWidget(self.card, 1)
        tabs.addTab(method_tab, "Method")
        tabs.addTab(self.training, "Training")
        tabs.addTab(self.inference, "Try it")
        tabs.setTabToolTip(0, "Settings of the chosen method, generated from its config, and its card")
        tabs.setTabToolTip(2, "Type a sentence and see the current model's prediction")
        side = self.side = QSplitter(Qt.Orientation.Vertical)
        side.addWidget(tabs)
        side.addWidget(self.table)
        side.setSizes([560, 300])
        centre = QWidget()
        centre_layout = QVBoxLayout(centre)
        centre_layout.setContentsMargins(0, 0, 0, 0)
        centre_layout.setSpacing(0)
        centre_layout.addWidget(self.view.legend)
        centre_layout.addWidget(self.view, 1)
        top = self.top = QSplitter(Qt.Orientation.Horizontal)
        top.addWidget(centre)
        top.addWidget(side)
        top.setSizes([1140, 460])
        top.setStretchFactor(0, 1)
        main = self.main_split = QSplitter(Qt.Orientation.Vertical)
        main.addWidget(top)
        main.addWidget(self.plots)
        main.setSizes([750, 200])
        main.setStretchFactor(0, 1)
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
        c.notice.connect(lambda message: self.statusBar().showMessage(message, 8000))
        c.history_changed.connect(self._history)
        self.runner.events.connect(self.on_events)
        self.runner.state_changed.connect(self.on_state)
        self.runner.failed.connect(self.show_error)
        self.runner.finished.connect(self.on_finished)
        self.scene.site_clicked.connect(self.on_site_clicked)
        self.scene.block_clicked.connect(self.on_block_clicked)
        self.table.rows_selected.connect(lambda names: self.scene.mark(self.scene.keys_for_rows(names)))
        self.form.option_changed.connect(self.on_option)
        self.training.changed.connect(self.on_training)
        self.training.seed_changed.connect(c.set_seed)
        self.base_box.activated.connect(lambda _i: self._choose(c.set_base, self.base_box.currentText()))
        self.method_box.activated.connect(lambda _i: self._choose(c.set_method, self.method_box.currentText()))
        self.data_box.activated.connect(lambda _i: self.on_dataset_choice(self.data_box.currentText()))
        self.inference.text_changed.connect(lambda _t: self.refresh_inference())
        self._history(c.studio.can_undo, c.studio.can_redo)

    # ---- refresh ------------------------------------------------------------------------------
    def refresh_all(self) -> None:
        """The experiment was rebuilt: every view re-reads it; the curve starts a new run."""
        c = self.controller
        exp = c.experiment
        self.runner.step = 0
        self.plots.new_run()
        self.step_label.setText("step 0")
        self.speed_label.setText("")
        self.scene.build(diagram_info(c))
        if self.view.auto_fit:
            self.view.fit()
        method, config, base = exp.method, exp.config, exp.base
        choices = {name: method.field_choices(name, base) for name in config.to_dict()}
        self.form.show_config(config, method.effective_options(config, base), choices)
        self.card.show_for(c)
        self.table.set_rows(list(c.census.rows))
        self.refresh_choices()
        self.refresh_settings()
        self.refresh_status(checked=None)
        self.refresh_inference()

    def refresh_choices(self) -> None:
        """Put the base, dataset and method lists back on the working choice (after a refused one)."""
        c = self.controller
        for box, value in ((self.base_box, c.setup.base), (self.method_box, c.setup.method),
                           (self.data_box, c.dataset.name)):
            if box.findText(value) < 0:
                box.insertItem(box.count() - (1 if box is self.data_box else 0), value)
            box.setCurrentText(value)

    def refresh_settings(self) -> None:
        self.training.show_settings(self.controller.settings, self.controller.setup.seed)

    def refresh_status(self, checked: bool | None) -> None:
        census = self.controller.census
        self.params_label.setText(f"trainable {census.trainable:,} / total {census.total:,} "
                                  f"({census.trainable_percent:.2f}%)")
        size = census.trainable_bytes
        self.bytes_label.setText(f"adapter {size:,} bytes ({theme.human_bytes(size)})")
        fingerprint = self.controller.frozen_at_build[:8]
        if checked is None:
            self.base_label.setText(f"base frozen · fingerprint {fingerprint}")
        elif checked:
            self.base_label.setText(f"base unchanged ✓ · fingerprint {fingerprint}")
        else:
            self.base_label.setText("base CHANGED — this is a bug")

    def refresh_inference(self) -> None:
        if self.runner.active:
            self.inference.show_busy()
            return
        try:
            self.inference.refresh(self.controller.experiment)
        except Exception as exc:  # noqa: BLE001 - a broken model shows its error here, not a traceback
            self.inference.result.setText(f"cannot predict: {exc}")

    # ---- training events ----------------------------------------------------------------------
    def on_events(self, batch: list[dict]) -> None:
        for event in batch:
            self.plots.add(event)
            if "grads" in event:
                self._latest_grads = event["grads"]
        self.plots.refresh()
        last = batch[-1]
        self.step_label.setText(f"step {self.runner.step}")
        now = time.monotonic()
        if now - self._speed_shown_at >= SPEED_LABEL_INTERVAL_S or last["last"]:
            self._speed_shown_at = now
            self.speed_label.setText(f"{last['sps']:.0f} steps/s")
        if self._latest_grads:  # the worker samples them at <= 10 Hz
            self.scene.update_grads(self._latest_grads)
            self.table.model.set_grads(self._latest_grads)
            self._latest_grads = {}

    def on_state(self, state: str) -> None:
        running = state == "running"
        self.actions_.play.setText("❚❚ Pause" if running else "▶ Play")
        locked = state != "idle"
        for widget in (self.base_box, self.data_box, self.method_box):
            widget.setEnabled(not locked)
            widget.setToolTip(LOCK_REASON if locked else widget.toolTip().split("\n")[0])
        self.form.set_locked(locked, LOCK_REASON)
        self.training.set_locked(locked)
        for action in self.actions_.model_changing():  # saving while running would race the worker
            action.setEnabled(not locked)
        self._history(self.controller.studio.can_undo, self.controller.studio.can_redo)
        if locked:
            self.inference.show_busy()
            self.statusBar().showMessage(LOCK_REASON if state == "running" else "Paused: Space resumes, → steps")
        else:
            self.statusBar().clearMessage()

    def on_finished(self) -> None:
        if self.closing:
            return
        exp = self.controller.experiment
        unchanged = exp.model.frozen_fingerprint() == self.controller.frozen_at_build
        self.refresh_status(checked=unchanged)
        self.refresh_inference()
        self.plots.refresh()

    # ---- user actions ---------------------------------------------------------------------------
    def _choose(self, setter, value: str) -> None:
        if not setter(value):
            self.refresh_choices()  # put the combo back on the working choice

    def on_option(self, name: str, value) -> None:
        if not self.controller.set_option(name, value):
            self.refresh_all()  # the form shows the working options again

    def on_training(self, changes: dict) -> None:
        if not self.controller.set_training(**changes):
            self.refresh_settings()

    def on_site_clicked(self, site_id: str) -> None:
        if self.runner.active:
            self.statusBar().showMessage(LOCK_REASON, 4000)
            return
        site = self.controller.experiment.base.site(site_id)
        method = self.controller.method_for_site(site)
        if not site.available_for(method):
            self.statusBar().showMessage(f"{site.label}: {site.unavailable[method]}", 6000)
            return
        self.controller.toggle_site(site_id)

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
        self.runner.reset()

    def toggle_presentation(self) -> None:
        self.presentation.toggle()

    def fix_step_label_width(self) -> None:
        """Wide enough for a 7-digit count in the current font, and fixed: a new number never
        re-lays out the toolbar."""
        self.step_label.ensurePolished()
        metrics = self.step_label.fontMetrics()
        self.step_label.setFixedWidth(metrics.horizontalAdvance("step 0000000") + 20)

    def show_error(self, title: str, message: str) -> None:
        QMessageBox.critical(self, title, message)

    def _history(self, can_undo: bool, can_redo: bool) -> None:
        self.actions_.undo.setEnabled(can_undo)
        self.actions_.redo.setEnabled(can_redo)

    # ---- closing ---------------------------------------------------------------------------------
    def closeEvent(self, event) -> None:  # noqa: N802 - Qt override
        """Stop the worker and wait for it, so no thread outlives the window."""
        self.closing = True
        self.runner.stop_and_wait(15_000)
        event.accept()
