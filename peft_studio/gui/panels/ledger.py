"""The memory ledger as a stacked bar: estimate (moves with the sliders) beside the measured step.

API (the window wires it):
    ledger = LedgerWidget(estimate=None, fit=None, measured=None)
    ledger.set_ledger(estimate, fit, measured=None)  # plain core data (core.memory.Ledger, ActivationFit)
    ledger.set_experiment(experiment, batch_size=0, optimizer="adam")  # fits and estimates the current setup
    ledger.set_measured(ledger_or_None)              # after a step: core.memory.measure_ledger(...)
    ledger.current_estimate()                        # the estimate at the sliders' batch size and length
"""

from __future__ import annotations

import os
from html import escape

os.environ.setdefault("PYQTGRAPH_QT_LIB", "PySide6")  # pyqtgraph prefers PyQt6 if both are installed

import pyqtgraph as pg  # noqa: E402
from PySide6.QtCore import Qt, Signal  # noqa: E402
from PySide6.QtWidgets import QGridLayout, QLabel, QSlider, QSpinBox, QVBoxLayout, QWidget  # noqa: E402

from ...core.memory.ledger import CATEGORIES, ActivationFit, Ledger, estimate_ledger, fit_activations  # noqa: E402
from ...core.model.experiment import Experiment  # noqa: E402
from ...core.runs.compare import human_bytes  # noqa: E402

CATEGORY_COLOURS = {  # frozen grey and trainable orange as in the diagram; the rest distinct
    "frozen": "#9aa3ad", "trainable": "#f07f16", "gradients": "#f4a259", "optimizer": "#c0392b",
    "activations": "#2f7fd8", "logits": "#1b9e77",
}
MAX_BATCH = 1024
MAX_LENGTH = 512


class LedgerWidget(QWidget):
    estimateChanged = Signal(object)  # the Ledger at the sliders' values

    def __init__(self, estimate: Ledger | None = None, fit: ActivationFit | None = None,
                 measured: Ledger | None = None, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._estimate: Ledger | None = None
        self._fit: ActivationFit | None = None
        self._measured: Ledger | None = None

        self.plot = pg.PlotWidget()
        self.plot.setBackground("w")
        self.plot.setMouseEnabled(x=False, y=False)
        self.plot.setMenuEnabled(False)
        self.plot.setLabel("left", "memory", units="B")
        self.plot.getAxis("bottom").setTicks([[(0, "estimate"), (1, "measured")]])
        self.plot.setXRange(-0.6, 1.6)
        self.bars: dict[str, pg.BarGraphItem] = {}

        self.batch_slider, self.batch_box = self._slider(1, MAX_BATCH)
        self.length_slider, self.length_box = self._slider(1, MAX_LENGTH)
        controls = QGridLayout()
        controls.addWidget(QLabel("batch size B"), 0, 0)
        controls.addWidget(self.batch_slider, 0, 1)
        controls.addWidget(self.batch_box, 0, 2)
        controls.addWidget(QLabel("sequence length L"), 1, 0)
        controls.addWidget(self.length_slider, 1, 1)
        controls.addWidget(self.length_box, 1, 2)
        self.details = QLabel()
        self.details.setTextFormat(Qt.TextFormat.RichText)
        self.details.setWordWrap(True)
        layout = QVBoxLayout(self)
        layout.addWidget(self.plot, 1)
        layout.addLayout(controls)
        layout.addWidget(self.details)
        if estimate is not None:
            self.set_ledger(estimate, fit, measured)
        else:
            self._set_sliders_enabled(False)
            self.details.setText("No setup yet.")

    def _slider(self, low: int, high: int) -> tuple[QSlider, QSpinBox]:
        slider = QSlider(Qt.Orientation.Horizontal)
        box = QSpinBox()
        for widget in (slider, box):
            widget.setRange(low, high)
        slider.valueChanged.connect(box.setValue)
        box.valueChanged.connect(slider.setValue)
        box.valueChanged.connect(lambda _: self._redraw())
        return slider, box

    def _set_sliders_enabled(self, enabled: bool) -> None:
        for widget in (self.batch_slider, self.batch_box, self.length_slider, self.length_box):
            widget.setEnabled(enabled)

    # ---- data ----------------------------------------------------------------------------------------
    def set_ledger(self, estimate: Ledger, fit: ActivationFit | None = None, measured: Ledger | None = None) -> None:
        """Show an estimate; with its ActivationFit the sliders move B and L, without it they are fixed."""
        self._estimate, self._fit, self._measured = estimate, fit, measured
        for box, value, high in ((self.batch_box, estimate.batch_size, MAX_BATCH),
                                 (self.length_box, estimate.seq_len, MAX_LENGTH)):
            box.blockSignals(True)
            box.setMaximum(max(high, value))
            box.setValue(value)
            box.blockSignals(False)
            slider = self.batch_slider if box is self.batch_box else self.length_slider
            slider.blockSignals(True)
            slider.setMaximum(max(high, value))
            slider.setValue(value)
            slider.blockSignals(False)
        self._set_sliders_enabled(fit is not None)
        self._redraw()

    def set_experiment(self, experiment: Experiment, batch_size: int = 0, optimizer: str = "adam") -> None:
        """Estimate the current setup (four tiny forward passes fit activations(B, L))."""
        fit = fit_activations(experiment)
        self.set_ledger(estimate_ledger(experiment, batch_size, optimizer=optimizer, fit=fit), fit, self._measured)

    def clear(self, message: str) -> None:
        """No estimate for this setup (a meta-device base, a refused one): nothing left over from the last."""
        self._estimate = self._fit = self._measured = None
        for item in self.bars.values():
            self.plot.removeItem(item)
        self.bars.clear()
        self._set_sliders_enabled(False)
        self.details.setText(escape(message))

    def set_measured(self, measured: Ledger | None) -> None:
        self._measured = measured
        self._redraw()

    def current_estimate(self) -> Ledger | None:
        if self._estimate is None:
            return None
        batch, length = self.batch_box.value(), self.length_box.value()
        if self._fit is None or (batch, length) == (self._estimate.batch_size, self._estimate.seq_len):
            return self._estimate
        return self._estimate.at(self._fit, batch, length)

    # ---- drawing -------------------------------------------------------------------------------------
    def _redraw(self) -> None:
        estimate = self.current_estimate()
        for item in self.bars.values():
            self.plot.removeItem(item)
        self.bars.clear()
        if estimate is None:
            return
        columns = [(0, estimate)] + ([(1, self._measured)] if self._comparable(estimate) else [])
        for key, _ in CATEGORIES:
            xs, bottoms, heights = [], [], []
            for x, ledger in columns:
                below = sum(getattr(ledger, k) for k, _ in CATEGORIES[:[c for c, _ in CATEGORIES].index(key)])
                xs.append(x)
                bottoms.append(below)
                heights.append(getattr(ledger, key))
            bar = pg.BarGraphItem(x=xs, y0=bottoms, height=heights, width=0.6, brush=CATEGORY_COLOURS[key],
                                  pen=pg.mkPen("w", width=1))
            self.plot.addItem(bar)
            self.bars[key] = bar
        self.plot.setYRange(0, max(ledger.total for _, ledger in columns) * 1.05 or 1)
        self.details.setText(self._details_html(estimate))
        self.estimateChanged.emit(estimate)

    def _comparable(self, estimate: Ledger) -> bool:
        """A measurement stands beside the estimate only at the same batch size and length."""
        measured = self._measured
        return measured is not None and (measured.batch_size, measured.seq_len) == (estimate.batch_size,
                                                                                     estimate.seq_len)

    def _details_html(self, estimate: Ledger) -> str:
        same = self._comparable(estimate)
        measured = self._measured if same else None
        elsewhere = self._measured if not same else None
        rows = []
        for key, label, value in estimate.items():
            swatch = f"<span style='color:{CATEGORY_COLOURS[key]}'>&#9632;</span>"
            name = label + (f" ({estimate.frozen_format})" if key == "frozen" else "")
            cells = f"<td>{swatch} {escape(name)}</td><td align='right'>{human_bytes(value)}</td>"
            if measured is not None:
                cells += f"<td align='right'>{human_bytes(getattr(measured, key))}</td>"
            rows.append(f"<tr>{cells}</tr>")
        header = "<tr><th></th><th>estimate</th>" + ("<th>measured</th>" if measured is not None else "") + "</tr>"
        total = f"<tr><td><b>total</b></td><td align='right'><b>{human_bytes(estimate.total)}</b></td>"
        if measured is not None:
            total += f"<td align='right'><b>{human_bytes(measured.total)}</b></td>"
        lines = [f"<table cellspacing='4'>{header}{''.join(rows)}{total}</tr></table>",
                 f"estimate at B = {estimate.batch_size}, L = {estimate.seq_len}"]
        if self._fit is not None:
            lines.append(f"activations = {escape(self._fit.formula())}")
        if elsewhere is not None:
            lines.append(f"a step was measured at B = {elsewhere.batch_size}, L = {elsewhere.seq_len}: move the "
                         "sliders there to compare it with the estimate")
        if measured is not None and measured.cuda_peak is not None:
            lines.append(f"CUDA peak allocated: {human_bytes(measured.cuda_peak)}")
        return "<br>".join(lines)
