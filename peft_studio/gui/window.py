"""The studio window: composition of toolbar, diagram, side panels, plots and status bar."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from PySide6.QtCore import QRectF, QSize, Qt
from PySide6.QtGui import QAction, QKeySequence, QPainter, QPixmap
from PySide6.QtWidgets import (
    QComboBox,
    QFileDialog,
    QLabel,
    QMainWindow,
    QMessageBox,
    QSplitter,
    QTabWidget,
    QToolBar,
    QVBoxLayout,
    QWidget,
)

from ..core.bases import base_names
from ..core.data import builtin_description, builtin_names, load_builtin
from ..core.errors import PeftStudioError
from ..core.methods import METHODS
from ..core.setup_file import load_setup, save_setup
from ..core.store import load_adapter, save_adapter
from . import theme
from .controller import Controller
from .describe import diagram_info
from .diagram import DiagramScene, DiagramView
from .diagram.view import LOCK_ICON
from .panels.card import MethodCardView
from .panels.census_table import CensusTable
from .panels.data_dialog import DataDialog
from .panels.inference import InferencePanel
from .panels.method_form import MethodForm
from .panels.plots import LivePlots
from .panels.training_form import TrainingForm
from .runner import Runner, speed_text

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
        self._build_toolbar()
        self._build_layout()
        self._build_status()
        self._build_shortcuts()
        self._connect()
        self._latest_grads: dict[str, float] = {}
        self._speed_shown_at = 0.0
        self.resize(1600, 1000)
        self.refresh_all()

    # ---- composition ------------------------------------------------------------------------
    def _build_toolbar(self) -> None:
        bar = QToolBar("Run")
        bar.setMovable(False)
        bar.setIconSize(QSize(18, 18))
        self.addToolBar(bar)
        self.base_box = _combo(base_names(), "Frozen base model: seed-pooled (the seed's), tiny (a small "
                                             "transformer), minilm (pretrained)")
        self.data_box = _combo([*builtin_names(), OPEN_FILE], "Dataset: a built-in one, or open a CSV/TSV/JSONL/JSON")
        for i, name in enumerate(builtin_names()):
            self.data_box.setItemData(i, builtin_description(name), Qt.ItemDataRole.ToolTipRole)
        self.method_box = _combo(list(METHODS), "PEFT method: where the trainable part goes")
        for i, method in enumerate(METHODS.values()):
            self.method_box.setItemText(i, method.name)
            self.method_box.setItemData(i, f"{method.title}: {method.card.where}", Qt.ItemDataRole.ToolTipRole)
        for label, box in (("base", self.base_box), ("data", self.data_box), ("method", self.method_box)):
            bar.addWidget(QLabel(f" {label} "))
            bar.addWidget(box)
        bar.addSeparator()
        self.act_reset = _action(self, "⟲ Reset", "Ctrl+R", "Re-initialise the method's parts and the head "
                                                             "(the frozen base never changes)", self.reset)
        self.act_play = _action(self, "▶ Play", "Space", "Train in the background; Space pauses/resumes",
                                self.runner.play_pause)
        self.act_step = _action(self, "Step ▸|", "Right", "Exactly one optimizer step (also '.')",
                                self.runner.step_once)
        self.act_stop = _action(self, "■ Stop", "Esc", "Stop the run; the weights stay as trained",
                                self.runner.stop)
        for action in (self.act_reset, self.act_play, self.act_step, self.act_stop):
            bar.addAction(action)
        self.step_label = QLabel("step 0")
        self.step_label.setObjectName("stepCounter")
        self._fix_step_label_width()
        self.step_label.setToolTip("Optimizer steps since the last reset")
        self.speed_label = QLabel("")
        self.speed_label.setObjectName("speed")
        self.speed_label.setFixedWidth(170)
        self.speed_label.setToolTip("Training speed (steps per second, averaged over the last 20 steps) and the "
                                    "torch threads the trainer chose by measuring")
        # Opaque: a new number each frame repaints the label alone, not the toolbar behind it.
        self.step_label.setAutoFillBackground(True)
        self.step_label.setAttribute(Qt.WidgetAttribute.WA_OpaquePaintEvent)
        bar.addWidget(self.step_label)
        bar.addWidget(self.speed_label)
        bar.addSeparator()
        self.act_seed = _action(self, "Seed example (Adapter)", "Ctrl+1",
                                "The seed's run: seed-pooled base, seed-intents, adapter bottleneck 4, lr 0.05, "
                                "seed 42, 201 steps", self.controller.seed_example)
        bar.addAction(self.act_seed)
        self.act_undo = _action(self, "Undo", QKeySequence.StandardKey.Undo, "Undo the last setting change "
                                "(Ctrl+Z)", self.controller.undo)
        self.act_redo = _action(self, "Redo", "Ctrl+Shift+Z", "Redo (Ctrl+Shift+Z)", self.controller.redo)
        self.act_fit = _action(self, "Fit", "F", "Fit the diagram to the window", self.view.fit)
        self.act_present = _action(self, "Presentation", "F5", "Large fonts and thick lines for a projector",
                                   self.toggle_presentation)
        self.act_present.setCheckable(True)
        self.act_export = _action(self, "Export…", "Ctrl+E", "Export the plots (PNG), the curve (CSV) or the "
                                  "diagram (SVG/PNG)", self.export)
        self.act_open = _action(self, "Open…", "Ctrl+O", "Open a dataset file", self.open_dataset_dialog)
        self.act_save_adapter = _action(self, "Save adapter…", "Ctrl+S", "Save the trained parts and the head "
                                        "(safetensors + setup metadata)", self.save_adapter_dialog)
        self.act_load_adapter = _action(self, "Load adapter…", "Ctrl+Shift+O", "Load a saved adapter into the "
                                        "current model (same base and method)", self.load_adapter_dialog)
        self.act_save_setup = _action(self, "Save setup…", "Ctrl+Shift+S", "Save base, method, options, dataset "
                                      "and training settings as a JSON file (no weights)", self.save_setup_dialog)
        self.act_open_setup = _action(self, "Open setup…", "Ctrl+Shift+L", "Open a saved setup (undo with Ctrl+Z)",
                                      self.open_setup_dialog)
        for action in (self.act_fit, self.act_present):
            bar.addAction(action)
        self.act_zoom_in = _action(self, "Zoom in", "Ctrl+=", "Zoom in", lambda: self.view.zoom(1.2))
        self.act_zoom_out = _action(self, "Zoom out", "Ctrl+-", "Zoom out", lambda: self.view.zoom(1 / 1.2))
        self.act_layers = _action(self, "Collapse layers", "L", "Collapse/expand the repeated layers",
                                  self.scene.toggle_layers)
        for action in (self.act_zoom_in, self.act_zoom_out, self.act_layers):
            self.addAction(action)

    def _build_layout(self) -> None:
        tabs = QTabWidget()
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
        self.tabs = tabs
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
        top = QSplitter(Qt.Orientation.Horizontal)
        top.addWidget(centre)
        top.addWidget(side)
        top.setSizes([1140, 460])
        top.setStretchFactor(0, 1)
        main = QSplitter(Qt.Orientation.Vertical)
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

    def _build_shortcuts(self) -> None:
        self.act_zoom_in.setShortcuts([QKeySequence("Ctrl+="), QKeySequence("Ctrl++")])
        self.act_step.setShortcuts([QKeySequence("Right"), QKeySequence(".")])
        self.act_quit = _action(self, "Quit", QKeySequence.StandardKey.Quit, "Close the studio", self.close)
        menus = {
            "&File": (self.act_open, None, self.act_open_setup, self.act_save_setup, None, self.act_save_adapter,
                      self.act_load_adapter, None, self.act_export, None, self.act_quit),
            "&Edit": (self.act_undo, self.act_redo),
            "&Run": (self.act_play, self.act_step, self.act_stop, self.act_reset),
            "&View": (self.act_fit, self.act_zoom_in, self.act_zoom_out, self.act_layers, None, self.act_present),
            "E&xamples": (self.act_seed,),
        }
        for title, actions in menus.items():
            menu = self.menuBar().addMenu(title)
            menu.setToolTipsVisible(True)
            for action in actions:
                if action is None:
                    menu.addSeparator()
                else:
                    menu.addAction(action)

    def _connect(self) -> None:
        c = self.controller
        c.changed.connect(self.refresh_all)
        c.settings_changed.connect(self.refresh_settings)
        c.failed.connect(self.show_error)
        c.history_changed.connect(self._history)
        self.runner.events.connect(self.on_events)
        self.runner.state_changed.connect(self.on_state)
        self.runner.failed.connect(self.show_error)
        self.runner.finished.connect(self.on_finished)
        self.scene.site_clicked.connect(self.on_site_clicked)
        self.scene.block_clicked.connect(self.on_block_clicked)
        self.table.rows_selected.connect(lambda names: self.scene.mark(self.scene.keys_for_rows(names)))
        self.form.option_changed.connect(self.on_option)
        self.training.changed.connect(lambda changes: c.set_training(**changes))
        self.training.seed_changed.connect(c.set_seed)
        self.base_box.activated.connect(lambda _i: self._choose(c.set_base, self.base_box.currentText()))
        self.method_box.activated.connect(lambda _i: self._choose(c.set_method, self.method_box.currentText()))
        self.data_box.activated.connect(lambda _i: self.on_dataset_choice(self.data_box.currentText()))
        self.inference.text_changed.connect(lambda _t: self.refresh_inference())
        self._history(False, False)

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
        selected = exp.method.selected_sites(exp.config, exp.base)
        names = ",".join(dict.fromkeys(s.name for s in selected))
        layers = ",".join(str(x) for x in sorted({s.layer for s in selected if s.layer is not None}))
        self.form.show_config(exp.config, names, layers)
        self.card.show_for(c)
        self.table.set_rows(list(c.census.rows))
        for box, value in ((self.base_box, c.setup.base), (self.method_box, c.setup.method),
                           (self.data_box, c.dataset.name)):
            if box.findText(value) < 0:
                box.insertItem(box.count() - (1 if box is self.data_box else 0), value)
            box.setCurrentText(value)
        self.refresh_settings()
        self.refresh_status(checked=None)
        self.refresh_inference()

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
        total = self.runner.step
        self.step_label.setText(f"step {total}")
        now = time.monotonic()
        if now - self._speed_shown_at >= SPEED_LABEL_INTERVAL_S or last["last"]:
            self._speed_shown_at = now
            paused = self.runner.state == "paused"
            self.speed_label.setText("paused" if paused else speed_text(last["sps"], last.get("threads")))
        if self._latest_grads:  # the worker samples them at <= 10 Hz
            self.scene.update_grads(self._latest_grads)
            self.table.model.set_grads(self._latest_grads)
            self._latest_grads = {}

    def on_state(self, state: str) -> None:
        running = state == "running"
        if state == "paused":
            self.speed_label.setText("paused")
        self.act_play.setText("❚❚ Pause" if running else "▶ Play")
        locked = state != "idle"
        for widget in (self.base_box, self.data_box, self.method_box):
            widget.setEnabled(not locked)
        self.form.set_locked(locked, LOCK_REASON)
        self.training.set_locked(locked)
        self.act_seed.setEnabled(not locked)
        self.act_open.setEnabled(not locked)
        self.act_load_adapter.setEnabled(not locked)  # saving while paused/running would race the worker
        self.act_open_setup.setEnabled(not locked)
        self.act_save_adapter.setEnabled(not locked)
        self.act_undo.setEnabled(not locked and bool(self.controller._undo))
        self.act_redo.setEnabled(not locked and bool(self.controller._redo))
        for widget in (self.base_box, self.data_box, self.method_box):
            widget.setToolTip(LOCK_REASON if locked else widget.toolTip().split("\n")[0])
        if locked:
            self.inference.show_busy()
            self.statusBar().showMessage(LOCK_REASON if state == "running" else "Paused: Space resumes, → steps")
        else:
            self.statusBar().clearMessage()

    def on_finished(self) -> None:
        if getattr(self, "closing", False):
            return
        exp = self.controller.experiment
        unchanged = exp.model.frozen_fingerprint() == self.controller.frozen_at_build
        self.refresh_status(checked=unchanged)
        self.refresh_inference()
        self.plots.refresh()

    # ---- user actions ---------------------------------------------------------------------------
    def _choose(self, setter, value: str) -> None:
        if not setter(value):
            self.refresh_all()  # put the combo back on the working choice

    def on_option(self, name: str, value) -> None:
        if not self.controller.set_option(name, value):
            self.refresh_all()

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
            self.open_dataset_dialog()
            return
        try:
            dataset = load_builtin(name)
        except PeftStudioError as exc:
            self.show_error("Dataset", str(exc))
            self.refresh_all()
            return
        if not self.controller.set_dataset(dataset):
            self.refresh_all()

    def open_dataset_dialog(self) -> None:
        if self.runner.active:
            return
        path, _ = QFileDialog.getOpenFileName(self, "Open dataset", "", "Datasets (*.csv *.tsv *.jsonl *.json)")
        if path:
            self.open_dataset(path)
        else:
            self.refresh_all()

    def open_dataset(self, path: str | Path, text_column: str | None = None, label_column: str | None = None) -> bool:
        """Preview + column choosers (or the given columns); a loader error is a dialog, old data stays."""
        try:
            dialog = DataDialog(path, self)
            if text_column is None:
                if not dialog.exec():
                    self.refresh_all()
                    return False
            else:
                dialog.text_column.setCurrentText(text_column)
                dialog.label_column.setCurrentText(label_column or "label")
            dataset = dialog.load()
        except PeftStudioError as exc:
            self.show_error("Cannot open this dataset", str(exc))
            self.refresh_all()
            return False
        return self.controller.set_dataset(dataset)

    def save_adapter_dialog(self) -> None:
        setup = self.controller.setup
        path, _ = QFileDialog.getSaveFileName(self, "Save adapter", f"{setup.base}-{setup.method}.safetensors",
                                              "Adapters (*.safetensors)")
        if path:
            self.save_adapter_to(path)

    def save_adapter_to(self, path: str | Path) -> Path | None:
        return self._save("adapter", lambda: save_adapter(self.controller.experiment, path))

    def _save(self, what: str, write: Callable[[], Path]) -> Path | None:
        """Write a user's file: a failure is a dialog, a success a status-bar line."""
        try:
            saved = write()
        except (PeftStudioError, OSError) as exc:
            self.show_error(f"Cannot save the {what}", str(exc))
            return None
        self.statusBar().showMessage(f"Saved {what} to {saved}", 5000)
        return saved

    def load_adapter_dialog(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Load adapter", "", "Adapters (*.safetensors)")
        if path:
            self.load_adapter_from(path)

    def load_adapter_from(self, path: str | Path) -> bool:
        """Copy a saved adapter into the current model; a mismatch is a dialog and changes nothing."""
        if self.runner.active:
            return False
        try:
            load_adapter(self.controller.experiment, path)
        except PeftStudioError as exc:
            self.show_error("Cannot load this adapter", str(exc))
            return False
        self.refresh_inference()
        self.statusBar().showMessage(f"Loaded adapter {Path(path).name}", 5000)
        return True

    def save_setup_dialog(self) -> None:
        setup = self.controller.setup
        path, _ = QFileDialog.getSaveFileName(self, "Save setup", f"{setup.base}-{setup.method}.json",
                                              "Setups (*.json)")
        if path:
            self.save_setup_to(path)

    def save_setup_to(self, path: str | Path) -> Path | None:
        controller = self.controller
        return self._save("setup", lambda: save_setup(path, controller.setup, controller.dataset, controller.settings))

    def open_setup_dialog(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Open setup", "", "Setups (*.json)")
        if path:
            self.open_setup(path)

    def open_setup(self, path: str | Path) -> bool:
        """Read, check and build a saved setup; any problem is a dialog and the current setup stays."""
        if self.runner.active:
            return False
        try:
            setup, dataset, settings = load_setup(path)
        except PeftStudioError as exc:
            self.show_error("Cannot open this setup", str(exc))
            return False
        if not self.controller.set_everything(setup, dataset, settings):
            return False
        self.statusBar().showMessage(f"Opened setup {Path(path).name}", 5000)
        return True

    def reset(self) -> None:
        self.runner.reset()

    def toggle_presentation(self) -> None:
        """Projector mode: diagram fonts >= 18 pt and thick lines, the side panel folded away."""
        on = not self.scene.presentation
        self.act_present.setChecked(on)
        self.side.setVisible(not on)
        self.scene.set_presentation(on)
        self.view.set_presentation(on)
        self.step_label.setStyleSheet("font-size: 22pt;" if on else "")
        self._fix_step_label_width()
        self.view.fit()

    def _fix_step_label_width(self) -> None:
        """Wide enough for a 7-digit count in the current font, and fixed: a new number never
        re-lays out the toolbar."""
        self.step_label.ensurePolished()
        metrics = self.step_label.fontMetrics()
        self.step_label.setFixedWidth(metrics.horizontalAdvance("step 0000000") + 20)

    def export(self) -> None:
        path, _ = QFileDialog.getSaveFileName(self, "Export", "peft-studio.png",
                                              "Plots PNG (*.png);;Loss curve CSV (*.csv);;Diagram SVG (*.svg)")
        if path:
            self.export_to(path)

    def export_to(self, path: str | Path) -> Path:
        path = Path(path)
        try:
            if path.suffix.lower() == ".csv":
                return self.plots.export_csv(path)
            if path.suffix.lower() == ".svg":
                return export_svg(self.scene, path)
            return self.plots.export_png(path)
        except OSError as exc:
            self.show_error("Export failed", str(exc))
            return path

    def show_error(self, title: str, message: str) -> None:
        QMessageBox.critical(self, title, message)

    def _history(self, can_undo: bool, can_redo: bool) -> None:
        self.act_undo.setEnabled(can_undo)
        self.act_redo.setEnabled(can_redo)

    # ---- closing ---------------------------------------------------------------------------------
    def closeEvent(self, event) -> None:  # noqa: N802 - Qt override
        """Stop the worker and wait for it, so no thread outlives the window."""
        self.closing = True
        self.runner.stop_and_wait(15_000)
        event.accept()


def export_svg(scene: DiagramScene, path: Path) -> Path:
    """pyqtgraph's SVG exporter fails on Qt 6.11; QSvgGenerator renders the scene directly."""
    from PySide6.QtSvg import QSvgGenerator

    rect = scene.sceneRect()
    generator = QSvgGenerator()
    generator.setFileName(str(path))
    generator.setSize(rect.size().toSize())
    generator.setViewBox(QRectF(0, 0, rect.width(), rect.height()))
    generator.setTitle("PEFT Studio diagram")
    painter = QPainter(generator)
    scene.render(painter, QRectF(0, 0, rect.width(), rect.height()), rect)
    painter.end()
    return path


def _combo(items: list[str], tip: str) -> QComboBox:
    box = QComboBox()
    box.addItems(items)
    box.setToolTip(tip)
    box.setMinimumContentsLength(10)
    return box


def _action(parent: QWidget, text: str, shortcut, tip: str, slot) -> QAction:
    action = QAction(text, parent)
    action.setShortcut(QKeySequence(shortcut) if isinstance(shortcut, str) else shortcut)
    action.setToolTip(f"{tip}  [{action.shortcut().toString()}]")
    action.setStatusTip(tip)
    action.triggered.connect(lambda _checked=False: slot())
    return action
