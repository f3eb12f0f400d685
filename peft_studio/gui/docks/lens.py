"""The Lens dock: what training changed, for the window's experiment (core/lenses: each method's own figures
through its Method.lens hook, then forgetting on general text).

The figures are computed on a worker thread (an SVD per adapted Linear, forward passes for the bottleneck,
attention and forgetting), never while a run trains: forgetting compares the adapted model with its own
base through StudioModel.bypassed(), so the window holds Play and Step until the look has finished.
While a run trains and the dock is shown, the lens is live (core/lenses/live.py): the trainer snapshots the
watched layer between steps, a lens thread computes its ΔW figures from the snapshot, and the dock draws them
on the runner's frame timer (so within the frame budget, gui/jobs/frame_budget.py), beside the gains'
histogram over training; forgetting waits for the run to stop, and the dock says so. A
figure shows its numbers, its arrays (a ΔW heatmap, singular values against r, rotation angles, gains) and
its table (nearest words, attention shares); Export writes every number as CSV, or the figure shown as PNG.
"""

from __future__ import annotations

import csv
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QRect, QRectF, Qt, Signal
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
from ...core.lenses.live import LIVE_INTERVAL_S, GainHistory, LiveLens, live_figures
from ...core.lenses.report import NUMBER_WORDS, lens_report, number_text
from ..jobs.background import BackgroundJob
from ..jobs.worker import JobError
from ..plain import plain_label, set_plain

IDLE_TEXT = "Look shows what training changed: press it after a run (or on an imported adapter)."
FORGETTING_LATER = ("Forgetting is computed when the run stops: it runs the base without the method, which a "
                    "step in flight must not see.")
TITLE_SIZE = "9pt"  # a plot title that fits a docked panel's width
BAR_TITLES = {"best_cosine": "each soft token's best cosine with a word",
              "mean_abs_activation": "mean |activation| of each bottleneck unit"}
LIVE_DRAW_S = LIVE_INTERVAL_S  # redraw a live figure no more often than snapshots come


def key_weights(figures: list[LensFigure]) -> dict[int, list[float]]:
    """Prefix tuning's key rows of the figures ({} when none has them): layer -> each key's attention weight."""
    for figure in figures:
        rows = figure.arrays.get("key_rows")
        if figure.kind == "prefix-attention" and rows:
            return dict(zip((int(x) for x in figure.arrays["layers"]), rows, strict=True))
    return {}


class LensPanel(QWidget):
    key_weights = Signal(object)  # {layer: each key's attention weight} of the prefix figure shown ({}: none)

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
        # the live lens: the runner hands `live` to the trainer; a second job computes its figures
        self.live = LiveLens()
        self.gain_history = GainHistory()
        self.live_job = BackgroundJob(self)
        self.live_job.item.connect(self._live_item)
        self.live_job.done.connect(self._live_done)
        self._live_failed = False  # a bug in the live lens: reported once, not retried until the next run
        self._live_stop = threading.Event()
        self._live_pending: tuple[int, list[LensFigure]] | None = None
        self._live_figures: list[LensFigure] = []
        self._live_step = -1
        self._drawn_at = 0.0
        self._run_active = False
        self._dock_visible = False
        self.live_updates = 0  # live figure sets drawn (the benchmark's lens_live_updates_per_s)
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
        self.figure_list.setTextElideMode(Qt.TextElideMode.ElideLeft)  # long titles keep their site (the end)
        self.figure_list.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.figure_list.currentRowChanged.connect(self._select)
        self.numbers = plain_label("")
        self.numbers.setWordWrap(True)
        self.numbers.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.plot = pg.PlotWidget()
        self.plot.setMinimumHeight(140)
        self.image = pg.ImageItem()
        self.table = QTableWidget(0, 0)
        self.table.setMinimumHeight(80)
        self.table.verticalHeader().setVisible(False)  # each table's first column names its rows
        self.detail = detail = QWidget()
        self.detail_layout = detail_layout = QVBoxLayout(detail)
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
        history = self.gain_history.figure()
        trained = {name for name, p in self.experiment().model.named_parameters() if p.requires_grad}
        if history is not None and self.gain_history.names <= trained:  # the last run's gains, this model's
            figures = [*figures, history]
        self._show_figures(figures, keep=False)
        set_plain(self.status, f"{len(self.figures)} figure(s). Pick one to see its numbers and arrays.")

    def _show_figures(self, figures: list[LensFigure], keep: bool) -> None:
        """Fill the list; `keep`: stay on the figure of the same title (a live update), else the first."""
        current = self.figure_list.currentRow()
        title = self.figures[current].title if keep and 0 <= current < len(self.figures) else None
        titles = [f.title for f in figures]
        self.key_weights.emit(key_weights(figures))
        if keep and titles == [f.title for f in self.figures] and 0 <= current < len(titles):
            self.figures = list(figures)  # a live update of the same figures: the list stays, the one shown is redrawn
            self._select(current)
            return
        self.figures = list(figures)
        self.figure_list.blockSignals(True)
        self.figure_list.clear()
        self.figure_list.addItems(titles)  # list items are plain text
        for index, text in enumerate(titles):  # the list is narrow at 1280x720: the whole title on hover
            self.figure_list.item(index).setToolTip(text)
        self.figure_list.blockSignals(False)
        if self.figures:
            row = titles.index(title) if title in titles else 0
            self.figure_list.setCurrentRow(row)
            self._select(row)
        self.export_button.setEnabled(bool(self.figures))

    # ---- live, while a run trains --------------------------------------------------------------------
    def set_run_active(self, active: bool) -> None:
        """The window's run started (running or paused) or ended."""
        self._run_active = active
        if not active:
            self._live_failed = False
        self._update_live()

    def set_dock_visible(self, visible: bool) -> None:
        self._dock_visible = visible
        self._update_live()

    @property
    def live_on(self) -> bool:
        return self.live.enabled

    def _update_live(self) -> None:
        want = self._run_active and self._dock_visible and not self._live_failed
        if want and not self.live.enabled and not self.live_job.running:  # a job still ending retries on done
            self._live_stop.clear()
            self._live_pending, self._live_figures, self._live_step = None, [], -1
            self.live.sentence = self.sentence()  # the lenses that read a forward pass read the Try-it sentence
            self.live.enabled = True
            self.live_job.start(lambda: live_figures(self.live, self._live_stop.is_set), stop=self._live_stop.set)
            set_plain(self.status, f"Live: waiting for the first snapshot. {FORGETTING_LATER}")
        elif not want and self.live.enabled:
            self.live.enabled = False  # the trainer takes no more snapshots
            self.live_job.stop()

    def _live_done(self, error: JobError | None) -> None:
        if error is not None:
            self._live_failed = True
            self.live.enabled = False
            set_plain(self.status, f"{error.title('The live lens')}: {error.message}")
        self._update_live()  # shown again while the last job was ending: start anew

    def _live_item(self, item: tuple[int, list[LensFigure]]) -> None:
        self._live_pending = item  # drawn on the next frame (on_events), the newest only

    def on_events(self, batch: list[dict]) -> None:
        """The runner's frame: record the gains, and draw the newest live figures at most every LIVE_DRAW_S."""
        gains = [(e["step"], e["gains"]) for e in batch if e.get("gains")]
        for step, values in gains:
            self.gain_history.add(step, values)
        if not self.live.enabled or not (self._live_pending or gains):
            return
        now = time.monotonic()
        if now - self._drawn_at < LIVE_DRAW_S and not batch[-1].get("last"):
            return
        self._drawn_at = now
        if self._live_pending is not None:
            self._live_step, self._live_figures = self._live_pending
            self._live_pending = None
            self.live_updates += 1
        history = self.gain_history.figure()
        figures = [*self._live_figures, *([history] if history is not None else [])]
        if figures:
            self._show_figures(figures, keep=True)
        self._say_live()

    def _say_live(self) -> None:
        parts = []
        if self._live_figures:
            first = self._live_figures[0]
            if first.kind == "delta-w":
                what = f"ΔW at {first.site}"
            elif len(self._live_figures) > 1:
                what = f"{first.title} (and the method's other figures)"
            else:
                what = first.title
            parts.append(f"{what} as of step {self._live_step + 1} (a snapshot every {self.live.period_s:.2g} s "
                         f"at most: the lens takes at most {self.live.duty:.0%} of a core)")
        elif self.live.available is False:
            parts.append("this method has no lens that can be shown live: Look shows its figures when the run stops")
        elif self._live_step >= 0:
            parts.append(f"the method's lens has no figure for this model (as of step {self._live_step + 1})")
        if self.gain_history.rows:
            parts.append("gains over training")
        set_plain(self.status, f"Live: {'; '.join(parts) or 'waiting for the first snapshot'}. {FORGETTING_LATER}")

    def _done(self, error: JobError | None) -> None:
        self.look_button.setEnabled(True)
        if error is not None:
            set_plain(self.status, f"{error.title('The lens')}: {error.message}")

    # ---- drawing -----------------------------------------------------------------------------------
    def _select(self, row: int) -> None:
        if 0 <= row < len(self.figures) and self.figures[row].kind in ("delta-w", "rotation"):
            self.live.watch(self.figures[row].site)  # the live lens follows the layer looked at
        self.plot.clear()
        self._ticks(None, None)
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
        history = figure.arrays.get("history")
        if history:  # [samples x bins]: training left to right, the gain's value upwards
            values, edges, steps = np.asarray(history, dtype=float), figure.arrays["edges"], figure.arrays["steps"]
            self.image = pg.ImageItem(np.log1p(values))  # log counts: the few channels that moved stay visible
            self.image.setColorMap(pg.colormap.get("viridis"))
            self.image.setRect(QRectF(steps[0], edges[0], max(1, steps[-1] - steps[0]), edges[-1] - edges[0]))
            self.plot.addItem(self.image)
            self.plot.addItem(pg.InfiniteLine(pos=1.0, angle=0, pen=pg.mkPen("#cc3311", width=1)))
            self.plot.setTitle("gains by step (red: 1 = unchanged)", size=TITLE_SIZE)
            return
        heatmap = figure.arrays.get("heatmap")
        if heatmap:
            values = np.asarray(heatmap, dtype=float)
            limit = float(np.abs(values).max()) or 1.0
            self.image = pg.ImageItem(values.T)
            self.image.setLevels((-limit, limit))
            self.image.setColorMap(pg.colormap.get("CET-D1"))
            self.plot.addItem(self.image)
            self.plot.setTitle("ΔW (blue < 0 < red)", size=TITLE_SIZE)
            return
        grid = figure.arrays.get("share_by_layer_head")
        if grid:  # [layers x heads]: heads to the right, layers upwards
            values = np.asarray(grid, dtype=float)
            self.image = pg.ImageItem(values.T)
            self.image.setLevels((0.0, max(float(values.max()), 1e-6)))
            self.image.setColorMap(pg.colormap.get("viridis"))
            self.plot.addItem(self.image)
            heads, layers = values.shape[1], figure.arrays.get("layers") or list(range(values.shape[0]))
            self._ticks([(i + 0.5, str(i)) for i in range(heads)], [(i + 0.5, str(layer))
                                                                   for i, layer in enumerate(layers)])
            keys = int(figure.numbers.get("front_keys", 0))
            self.plot.setTitle(f"share on the {keys} front keys (head →, layer ↑)", size=TITLE_SIZE)
            return
        counts, edges = figure.arrays.get("counts"), figure.arrays.get("edges")
        if counts and edges:  # a histogram: bars between its edges, 1.0 (unchanged) marked
            edge = np.asarray(edges, dtype=float)
            self.plot.addItem(pg.BarGraphItem(x0=edge[:-1], x1=edge[1:], height=np.asarray(counts, dtype=float),
                                              brush="#4477aa"))
            self.plot.addItem(pg.InfiniteLine(pos=1.0, angle=90, pen=pg.mkPen("#cc3311", width=2)))
            self.plot.setTitle("values (red: 1 = unchanged)", size=TITLE_SIZE)
            return
        for key in ("singular_values", "angles_deg", "magnitude", "best_cosine", "mean_abs_activation"):
            values = figure.arrays.get(key)
            if values:
                self.plot.addItem(pg.BarGraphItem(x=np.arange(len(values)), height=np.asarray(values, dtype=float),
                                                  width=0.8, brush="#4477aa"))
                self.plot.setTitle(BAR_TITLES.get(key, key.replace("_", " ")), size=TITLE_SIZE)
                rank = figure.numbers.get("r")
                if key == "singular_values" and rank:  # the values beyond r should be ~0 for a rank-r update
                    self.plot.addItem(pg.InfiniteLine(pos=rank - 0.5, angle=90, pen=pg.mkPen("#cc3311", width=2)))
                return
        self.plot.setTitle("")

    def _ticks(self, bottom: list[tuple[float, str]] | None, left: list[tuple[float, str]] | None) -> None:
        """Whole-number ticks at a grid's cells (None: pyqtgraph's own)."""
        for name, ticks in (("bottom", bottom), ("left", left)):
            self.plot.getAxis(name).setTicks([ticks] if ticks is not None else None)

    def _fill_table(self, figure: LensFigure) -> None:
        self.table.setVisible(bool(figure.table))  # the plot takes the room a figure without a table leaves
        words = figure.kind == "nearest-words"  # the words are the figure; the bars only rank them
        self.detail_layout.setStretchFactor(self.plot, 1 if words else 2)
        self.detail_layout.setStretchFactor(self.table, 3 if words else 1)
        if not figure.table:
            return
        columns = max(len(figure.columns), *(len(row) for row in figure.table))
        self.table.setColumnCount(columns)
        self.table.setRowCount(len(figure.table))
        if figure.columns:
            self.table.setHorizontalHeaderLabels(list(figure.columns))  # header items are plain text
        for r, row in enumerate(figure.table):
            for c, cell in enumerate(row):
                self.table.setItem(r, c, QTableWidgetItem(number_text(cell) if isinstance(cell, float) else str(cell)))
        self.table.resizeColumnsToContents()

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

    def stop(self) -> None:
        """Ask both jobs to stop, without waiting."""
        self.live.enabled = False
        self.job.stop()
        self.live_job.stop()

    def stop_and_wait(self, timeout_ms: int = 10_000) -> bool:
        self.live.enabled = False
        return self.job.stop_and_wait(timeout_ms) & self.live_job.stop_and_wait(timeout_ms)

