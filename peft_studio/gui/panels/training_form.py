"""Training settings (steps, lr, batch size, optimizer, seed, eval every): they never change the model."""

from __future__ import annotations

from PySide6.QtCore import Signal
from PySide6.QtWidgets import QComboBox, QDoubleSpinBox, QFormLayout, QSpinBox, QWidget

from ...core.runs.train import OPTIMIZERS, TrainSettings


class TrainingForm(QWidget):
    changed = Signal(dict)  # settings field -> value
    seed_changed = Signal(int)  # the seed also rebuilds the model (its initial weights)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        form = self.form = QFormLayout(self)
        form.setContentsMargins(4, 4, 4, 4)
        self.steps = QSpinBox()
        self.steps.setRange(1, 1_000_000)
        self.lr = QDoubleSpinBox()
        self.lr.setDecimals(5)
        self.lr.setRange(1e-5, 10.0)
        self.lr.setSingleStep(0.001)
        self.batch = QSpinBox()
        self.batch.setRange(0, 100_000)
        self.batch.setSpecialValueText("full batch")
        self.optimizer = QComboBox()
        self.optimizer.addItems(list(OPTIMIZERS))
        self.seed = QSpinBox()
        self.seed.setRange(0, 2**31 - 1)
        self.eval_every = QSpinBox()
        self.eval_every.setRange(1, 100_000)
        tips = {
            "steps": (self.steps, "optimizer steps per run (Play runs this many more)"),
            "lr": (self.lr, "learning rate"),
            "batch size": (self.batch, "examples per step; 0 = the whole training set, as in the seed"),
            "optimizer": (self.optimizer, "Adam or AdamW"),
            "seed": (self.seed, "random seed: initial method weights, head and batch order"),
            "eval every": (self.eval_every, "validation loss/accuracy every k steps"),
        }
        for label, (widget, tip) in tips.items():
            widget.setToolTip(tip)
            form.addRow(label, widget)
            if isinstance(widget, QSpinBox | QDoubleSpinBox):
                widget.setKeyboardTracking(False)
        self.steps.valueChanged.connect(lambda v: self.changed.emit({"steps": v}))
        self.lr.valueChanged.connect(lambda v: self.changed.emit({"lr": v}))
        self.batch.valueChanged.connect(lambda v: self.changed.emit({"batch_size": v}))
        self.optimizer.currentTextChanged.connect(lambda v: self.changed.emit({"optimizer": v}))
        self.eval_every.valueChanged.connect(lambda v: self.changed.emit({"eval_every": v}))
        self.seed.valueChanged.connect(self.seed_changed.emit)

    def show_settings(self, settings: TrainSettings, seed: int) -> None:
        for widget, value in ((self.steps, settings.steps), (self.lr, settings.lr),
                              (self.batch, settings.batch_size), (self.eval_every, settings.eval_every),
                              (self.seed, seed)):
            widget.blockSignals(True)
            widget.setValue(value)
            widget.blockSignals(False)
        self.optimizer.blockSignals(True)
        self.optimizer.setCurrentText(settings.optimizer)
        self.optimizer.blockSignals(False)

    def set_fields_visible(self, visible: bool) -> None:
        """A lesson may hide the training settings: the rows go, the tab page stays a tab page (showing the page
        itself would paint it over whichever tab is current)."""
        for row in range(self.form.rowCount()):
            self.form.setRowVisible(row, visible)

    def set_locked(self, locked: bool) -> None:
        """Only the seed changes the model; the rest may change between runs but not during one."""
        for widget in (self.steps, self.lr, self.batch, self.optimizer, self.seed, self.eval_every):
            widget.setEnabled(not locked)
