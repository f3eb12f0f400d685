"""The seed's four exercises: each question with a "Set up" button, and exercise 3's bottleneck sweep plot.

A standalone widget. "Set up" emits `set_up_requested(number)`; the owner opens the exercise's
lesson (`Exercise.lesson`) or steps through its methods. The sweep's parameter counts are computed
here (building six seed-sized models takes milliseconds); "Train the sweep" emits
`sweep_training_requested()` so that the owner runs `core.exercises.bottleneck_sweep(steps=...)` on
a worker thread and hands each point to `add_sweep_point` as it comes.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

os.environ.setdefault("PYQTGRAPH_QT_LIB", "PySide6")  # pyqtgraph prefers PyQt6 if both are installed

import pyqtgraph as pg  # noqa: E402
from PySide6.QtCore import Qt, Signal  # noqa: E402
from PySide6.QtWidgets import (  # noqa: E402
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QScrollArea,
    QVBoxLayout,
    QWidget,
)

from ...core.teaching.exercises import (  # noqa: E402
    EXERCISES,
    SEED_FORMULA,
    SWEEP_DATASET,
    SweepPoint,
    TaskBytes,
    bottleneck_sweep,
)


class StillPlot(pg.PlotWidget):
    """A plot inside a scrolled panel: the wheel scrolls the panel (it zoomed the axes to 1e-4..1e5), and the
    axes stay where the data put them."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.setMouseEnabled(x=False, y=False)
        self.setMenuEnabled(False)
        self.hideButtons()

    def wheelEvent(self, event) -> None:  # noqa: N802 - Qt override
        event.ignore()  # to the scroll area around the panel


class ExercisesPanel(QWidget):
    set_up_requested = Signal(int)  # exercise number, 1..4
    sweep_training_requested = Signal()
    comparison_training_requested = Signal()  # exercise 4 without the comparison board

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.set_up_buttons: dict[int, QPushButton] = {}
        self.evidence_labels: dict[int, QLabel] = {}
        inner = QWidget()
        column = QVBoxLayout(inner)
        for item in EXERCISES:
            box = QGroupBox(f"{item.number}. {item.title}")
            rows = QVBoxLayout(box)
            question = QLabel(item.question)
            question.setWordWrap(True)
            question.setStyleSheet("font-style: italic;")
            rows.addWidget(question)
            what = QLabel(f"Set up: {item.setup}\nEvidence: {item.evidence}")
            what.setWordWrap(True)
            rows.addWidget(what)
            button = QPushButton("Set up")
            button.setToolTip(f"Prepare the studio for exercise {item.number}")
            button.clicked.connect(lambda _=False, n=item.number: self.set_up_requested.emit(n))
            self.set_up_buttons[item.number] = button
            buttons = QHBoxLayout()
            buttons.addWidget(button)
            if item.number == 4:  # only where no comparison board is wired (ExercisesDock shows it then)
                self.comparison_button = QPushButton("Train the comparison")
                self.comparison_button.setToolTip("Train each method on word-order for a short run, in the "
                                                  "background (listed above the diagram, with Stop)")
                self.comparison_button.clicked.connect(self.comparison_training_requested.emit)
                self.comparison_button.setVisible(False)
                buttons.addWidget(self.comparison_button)
            buttons.addStretch(1)
            rows.addLayout(buttons)
            # Below its button: a longer or shorter evidence text never moves the button a second click aims at.
            evidence = QLabel("")
            evidence.setWordWrap(True)
            evidence.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
            self.evidence_labels[item.number] = evidence
            rows.addWidget(evidence)
            if item.number == 3:
                rows.addWidget(self._sweep_widgets())
            column.addWidget(box)
        column.addStretch(1)
        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setWidget(inner)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(scroll)
        self.points: list[SweepPoint] = []

    def _sweep_widgets(self) -> QWidget:
        holder = QWidget()
        rows = QVBoxLayout(holder)
        rows.setContentsMargins(0, 0, 0, 0)
        self.formula_label = QLabel(SEED_FORMULA)
        self.formula_label.setWordWrap(True)
        self.formula_label.setStyleSheet("font-family: monospace;")
        rows.addWidget(self.formula_label)
        self.params_plot = StillPlot(title="trainable parameters vs bottleneck m")
        self.params_plot.setLogMode(x=True, y=False)
        self.params_plot.setLabel("bottom", "bottleneck m")
        self.params_plot.setMinimumHeight(160)
        self.params_curve = self.params_plot.plot(pen=pg.mkPen("#2a9d8f", width=2), symbol="o", symbolSize=7,
                                                  symbolBrush="#2a9d8f", name="counted")
        self.formula_curve = self.params_plot.plot(pen=pg.mkPen("#333", width=1, style=pg.QtCore.Qt.PenStyle.DashLine),
                                                   name="formula")
        self.accuracy_plot = StillPlot(title=f"accuracy on {SWEEP_DATASET} after training vs bottleneck m")
        self.accuracy_plot.setLogMode(x=True, y=False)
        self.accuracy_plot.setYRange(0, 1.05)
        self.accuracy_plot.setMinimumHeight(120)
        self.accuracy_curve = self.accuracy_plot.plot(pen=pg.mkPen("#f07f16", width=2), symbol="s", symbolSize=6,
                                                      symbolBrush="#f07f16")
        rows.addWidget(self.params_plot)
        rows.addWidget(self.accuracy_plot)
        self.sweep_table = QLabel("")  # one wrapped line per size: readable in a narrow side area
        self.sweep_table.setWordWrap(True)
        self.sweep_table.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        rows.addWidget(self.sweep_table)
        buttons = QHBoxLayout()
        self.count_button = QPushButton("Count the sweep")
        self.count_button.setToolTip("Build the seed's model for m = 1, 2, 4, 8, 16, 32 and count its trainable "
                                     "parameters")
        self.count_button.clicked.connect(self.run_count_sweep)
        self.train_button = QPushButton("Train the sweep")
        self.train_button.setToolTip("Train each bottleneck for a short run and plot its accuracy")
        self.train_button.clicked.connect(self.sweep_training_requested.emit)
        buttons.addWidget(self.count_button)
        buttons.addWidget(self.train_button)
        buttons.addStretch(1)
        rows.addLayout(buttons)
        return holder

    # ---- the sweep -------------------------------------------------------------------------------
    def run_count_sweep(self) -> None:
        self.show_sweep(list(bottleneck_sweep()))

    def show_sweep(self, points: Sequence[SweepPoint]) -> None:
        self.points = list(points)
        self._draw()

    def add_sweep_point(self, point: SweepPoint) -> None:
        """One point from a running sweep (replaces an earlier point for the same m)."""
        self.points = [p for p in self.points if p.bottleneck != point.bottleneck] + [point]
        self.points.sort(key=lambda p: p.bottleneck)
        self._draw()

    def _draw(self) -> None:
        points = self.points
        xs = [p.bottleneck for p in points]
        self.params_curve.setData(xs, [p.trainable for p in points])
        self.formula_curve.setData(xs, [p.formula for p in points])
        trained = [p for p in points if p.accuracy is not None]
        self.accuracy_curve.setData([p.bottleneck for p in trained], [p.accuracy for p in trained])
        lines = [f"m = {p.bottleneck}: {p.trainable:,} trainable, counted; the formula gives {p.formula_text}"
                 + (f"; accuracy {p.accuracy:.2f}" if p.accuracy is not None else "") for p in points]
        self.sweep_table.setText("\n".join(lines))

    # ---- other evidence --------------------------------------------------------------------------
    def show_task_bytes(self, numbers: TaskBytes) -> None:
        """Exercise 2's evidence: 20 adapters on one base against 20 full copies."""
        self.evidence_labels[2].setText(numbers.summary())

    def show_evidence(self, number: int, text: str) -> None:
        self.evidence_labels[number].setText(text)
