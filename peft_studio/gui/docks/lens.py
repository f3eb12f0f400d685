"""The Lens dock: what training changed, for the window's experiment (core/lenses: each method's own figures
through its Method.lens hook, then forgetting on general text).

The figures are computed on a worker thread (an SVD per adapted Linear, forward passes for the bottleneck,
attention and forgetting), never while a run trains: forgetting compares the adapted model with its own
base through StudioModel.bypassed(), so the window holds Play and Step until the look has finished. A
figure shows its numbers, its arrays (a ΔW heatmap, singular values against r, rotation angles, gains) and
its table (nearest words, attention shares); Export writes every number as CSV, or the figure shown as PNG.
"""

from __future__ import annotations

import csv
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QRect, Qt
from PySide6.QtGui import QColor, QFont, QFontMetrics, QImage, QPainter
from PySide6.QtWidgets import (
    QFileDialog,
    QHBoxLayout,
    QListWidget,
    QPushButton,
    QSplitter,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from ...core.lenses import LensFigure
from ...core.lenses.report import NUMBER_WORDS, lens_report, number_text
from ..jobs.background import BackgroundJob
from ..jobs.worker import JobError
from ..plain import plain_label, set_plain

IDLE_TEXT = "Look shows what training changed: press it after a run (or on an imported adapter)."


class LensPanel(QWidget):
    def __init__(self, experiment: Callable[[], Any], sentence: Callable[[], str],
                 busy: Callable[[], bool] = lambda: False, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.experiment = experiment
        self.sentence = sentence
        self.busy = busy  # the window's run holds the model: no look until it has stopped
        self.figures: list[LensFigure] = []
        self.job = BackgroundJob(self)
        self.job.item.connect(self._shown)
        self.job.done.connect(self._done)
        self.look_button = QPushButton("Look")
        self.look_button.setToolTip("Compute each lens figure of the current model: ΔW spectra and heatmaps, "
                                    "rotations, soft tokens' nearest words, attention on the prefix, bottleneck "
                                    "activations, IA3 gains, and forgetting on general text")
        self.look_button.clicked.connect(self.look)
        self.export_button = QPushButton("Export…")
        self.export_button.setToolTip("Every number of every figure as CSV (kind, title, site, name, value), or "
                                      "the figure shown as a PNG (its title, numbers, plot and table)")
        self.export_button.clicked.connect(self.export_dialog)
        self.export_button.setEnabled(False)
        self.status = plain_label(IDLE_TEXT)
        self.status.setWordWrap(True)
        self.figure_list = QListWidget()
        self.figure_list.setToolTip("One figure per adapted site, then forgetting")
        self.figure_list.currentRowChanged.connect(self._select)
        self.numbers = plain_label("")
        self.numbers.setWordWrap(True)
        self.numbers.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.plot = pg.PlotWidget()
        self.plot.setMinimumHeight(140)
        self.image = pg.ImageItem()
        self.table = QTableWidget(0, 0)
        self.table.setMinimumHeight(80)
        self.detail = detail = QWidget()
        detail_layout = QVBoxLayout(detail)
        detail_layout.setContentsMargins(0, 0, 0, 0)
        detail_layout.addWidget(self.numbers)
        detail_layout.addWidget(self.plot, 2)
        detail_layout.addWidget(self.table, 1)
        split = QSplitter(Qt.Orientation.Horizontal)
        split.addWidget(self.figure_list)
        split.addWidget(detail)
        split.setSizes([200, 400])
        buttons = QHBoxLayout()
        buttons.addWidget(self.look_button)
        buttons.addWidget(self.export_button)
        buttons.addStretch(1)
        layout = QVBoxLayout(self)
        layout.addLayout(buttons)
        layout.addWidget(self.status)
        layout.addWidget(split, 1)

    # ---- computing ---------------------------------------------------------------------------------
    def look(self) -> bool:
        """Compute the lens of the current experiment off the GUI thread; False when it cannot start now."""
        if self.job.running:
            return False
        if self.busy():
            set_plain(self.status, "Stop the run first: the lens reads the model (and its base) as it is.")
            return False
        experiment, sentence = self.experiment(), self.sentence().strip()
        if experiment.base.on_meta_device:
            set_plain(self.status, "A shapes-only base (meta device) has not trained: there is nothing to look at.")
            return False
        self.look_button.setEnabled(False)
        set_plain(self.status, f"Looking at {experiment.method.title} on {experiment.setup.base}…")
        return self.job.start(lambda: iter([lens_report(experiment, sentence or None)]), title="")

    def _shown(self, figures: list[LensFigure]) -> None:
        self.figures = list(figures)
        self.figure_list.clear()
        for figure in self.figures:
            self.figure_list.addItem(figure.title)  # list items are plain text
        if self.figures:
            self.figure_list.setCurrentRow(0)
        self.export_button.setEnabled(bool(self.figures))
        set_plain(self.status, f"{len(self.figures)} figure(s). Pick one to see its numbers and arrays.")

    def _done(self, error: JobError | None) -> None:
        self.look_button.setEnabled(True)
        if error is not None:
            set_plain(self.status, f"{error.title('The lens')}: {error.message}")

    # ---- drawing -----------------------------------------------------------------------------------
    def _select(self, row: int) -> None:
        self.plot.clear()
        self.table.clear()
        self.table.setRowCount(0)
        self.table.setColumnCount(0)
        if not 0 <= row < len(self.figures):
            set_plain(self.numbers, "")
            return
        figure = self.figures[row]
        words = [f"{NUMBER_WORDS.get(k, k)}: {number_text(v)}" for k, v in figure.numbers.items()]
        set_plain(self.numbers, "   ".join(words) + (f"\n{figure.note}" if figure.note else ""))
        self._draw_arrays(figure)
        self._fill_table(figure)

    def _draw_arrays(self, figure: LensFigure) -> None:
        heatmap = figure.arrays.get("heatmap")
        if heatmap:
            values = np.asarray(heatmap, dtype=float)
            limit = float(np.abs(values).max()) or 1.0
            self.image = pg.ImageItem(values.T)
            self.image.setLevels((-limit, limit))
            self.image.setColorMap(pg.colormap.get("CET-D1"))
            self.plot.addItem(self.image)
            self.plot.setTitle("ΔW (blue < 0 < red)")
            return
        for key in ("singular_values", "angles_deg", "magnitude"):
            values = figure.arrays.get(key)
            if values:
                self.plot.addItem(pg.BarGraphItem(x=np.arange(len(values)), height=np.asarray(values, dtype=float),
                                                  width=0.8, brush="#4477aa"))
                self.plot.setTitle(key.replace("_", " "))
                rank = figure.numbers.get("r")
                if key == "singular_values" and rank:  # the values beyond r should be ~0 for a rank-r update
                    self.plot.addItem(pg.InfiniteLine(pos=rank - 0.5, angle=90, pen=pg.mkPen("#cc3311", width=2)))
                return
        self.plot.setTitle("")

    def _fill_table(self, figure: LensFigure) -> None:
        if not figure.table:
            return
        columns = max(len(row) for row in figure.table)
        self.table.setColumnCount(columns)
        self.table.setRowCount(len(figure.table))
        for r, row in enumerate(figure.table):
            for c, cell in enumerate(row):
                self.table.setItem(r, c, QTableWidgetItem(number_text(cell) if isinstance(cell, float) else str(cell)))

    # ---- export ------------------------------------------------------------------------------------
    def export_dialog(self) -> Path | None:
        path, _ = QFileDialog.getSaveFileName(self, "Export the lens", "lens.csv",
                                              "CSV: every number (*.csv);;PNG: the figure shown (*.png)")
        if not path:
            return None
        try:
            return self.export_png(path) if Path(path).suffix.lower() == ".png" else self.export_csv(path)
        except OSError as exc:
            set_plain(self.status, f"The lens cannot be exported: {exc}")
            return None

    def figure_image(self) -> QImage:
        """The figure shown: its title above its numbers, plot and table, as they are drawn (no buttons, no list)."""
        row = self.figure_list.currentRow()
        title = self.figures[row].title if 0 <= row < len(self.figures) else ""
        body = self.detail.grab().toImage()
        font = QFont(self.font())
        font.setBold(True)
        band = QFontMetrics(font).height() + 12
        image = QImage(body.width(), body.height() + band, QImage.Format.Format_RGB32)
        image.fill(Qt.GlobalColor.white)
        painter = QPainter(image)
        painter.setFont(font)
        painter.setPen(QColor("#1f2933"))
        painter.drawText(QRect(8, 0, body.width() - 16, band), Qt.AlignmentFlag.AlignVCenter, title)
        painter.drawImage(0, band, body)
        painter.end()
        return image

    def export_png(self, path: str | Path) -> Path:
        path = Path(path)
        if not self.figure_image().save(str(path), "PNG"):
            raise OSError(f"{path}: cannot write the PNG")
        return path

    def export_csv(self, path: str | Path) -> Path:
        path = Path(path)
        with path.open("w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            writer.writerow(["kind", "title", "site", "name", "value"])
            for figure in self.figures:
                for name, value in figure.numbers.items():
                    writer.writerow([figure.kind, figure.title, figure.site, name, repr(float(value))])
        return path

    def stop_and_wait(self, timeout_ms: int = 10_000) -> bool:
        return self.job.stop_and_wait(timeout_ms)

