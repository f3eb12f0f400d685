"""Live loss/accuracy plots: growing buffers, setData on the window's ~30 Hz timer, never per step.

Long runs stay smooth: peak downsampling and clip-to-view (pyqtgraph's scrollingPlots recipe).
The previous run stays, faded, for comparison.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

os.environ.setdefault("PYQTGRAPH_QT_LIB", "PySide6")  # pyqtgraph prefers PyQt6 if both are installed

import numpy as np  # noqa: E402
import pyqtgraph as pg  # noqa: E402
from PySide6.QtCore import Qt  # noqa: E402
from PySide6.QtGui import QFont, QPen  # noqa: E402
from PySide6.QtWidgets import (  # noqa: E402
    QBoxLayout,
    QCheckBox,
    QGraphicsItem,
    QGraphicsPathItem,
    QHBoxLayout,
    QLabel,
    QSizePolicy,
    QVBoxLayout,
    QWidget,
)

from ...core.files.safe_io import write_csv_atomically  # noqa: E402
from ..window.status import ElidedLabel  # noqa: E402

SERIES = ("loss", "val_loss", "accuracy", "val_accuracy")
LAST_VALUES_INTERVAL_S = 0.25  # numbers are read at ~4 Hz; the final value is shown by flush_last


class Series:
    """A growing (step, value) buffer; amortised O(1) append, no per-append allocation."""

    def __init__(self) -> None:
        self.x = np.empty(1024)
        self.y = np.empty(1024)
        self.n = 0
        self.y_max = 0.0  # running maximum: the y range is set from it, not re-scanned per repaint

    def append(self, x: float, y: float) -> None:
        if self.n == len(self.x):
            self.x = np.resize(self.x, 2 * self.n)
            self.y = np.resize(self.y, 2 * self.n)
        self.x[self.n] = x
        self.y[self.n] = y
        self.n += 1
        if y > self.y_max:
            self.y_max = y

    def view(self) -> tuple[np.ndarray, np.ndarray]:
        return self.x[: self.n], self.y[: self.n]


class LiveCurve:
    """One growing series drawn as a settled part and the pieces each frame added since.

    Why: a thick pen (2.5 px, readable on a projector) is stroked segment by segment, and redrawing
    whole curves at 30 Hz cost ~3 ms a frame for the two plots, enough to slow a 2-core trainer by
    ~10%. The settled part (a PlotDataItem: downsampling, clip to view, log mode) is blitted from a
    pixmap cache and redrawn only when the pieces are merged into it. Each frame's new points become one
    piece, a plain QGraphicsPathItem that Qt paints without calling back into Python (pyqtgraph items cost
    ~1 ms of Python per repaint, and Python on the GUI thread stalls the trainer thread for the GIL) and that
    never changes after: a frame repaints just the small rectangle of its new piece. (A single growing tail
    repainted its whole box every frame, up to a third of the plot, and the settled part was redrawn every
    64 points: together ~0.8 ms of the GUI thread a frame while training took both cores.)
    """

    MERGE_POINTS = 512  # the pieces join the settled part once they hold this many points...
    MERGE_PIECES = 48  # ...or are this many items (a slow run adds a piece of one or two points a frame)

    def __init__(self, plot: pg.PlotWidget, pen: QPen) -> None:
        self.settled = plot.plot(pen=pen)
        self.settled.curve.setCacheMode(QGraphicsItem.CacheMode.DeviceCoordinateCache)
        self.pen = pen  # cosmetic: pixels wide whatever the data scale
        # the pieces' parent: a plain Qt item inside the plot's data area (pyqtgraph's own group answers every
        # child added or removed in Python)
        self.layer = QGraphicsPathItem(plot.getPlotItem().getViewBox().childGroup)
        self.layer.setFlag(QGraphicsItem.GraphicsItemFlag.ItemHasNoContents)
        self.pieces: list[QGraphicsPathItem] = []
        self.log_y = False
        self._series: Series | None = None
        self._settled_end = 0  # points [0, _settled_end] are in the settled item
        self.shown = 0  # points drawn so far

    def show(self, series: Series) -> None:
        if series is self._series and series.n == self.shown:
            return  # validation points arrive rarely: an unchanged curve costs nothing
        if series is not self._series:
            self.clear()
            self._series = series
        if series.n - self._settled_end > self.MERGE_POINTS or len(self.pieces) >= self.MERGE_PIECES:
            self._merge(series)
        elif series.n:
            start = max(self.shown - 1, 0)  # each piece starts at the last point of the one before
            x, y = series.view()
            self._add_piece(x[start:], y[start:])
        self.shown = series.n

    def settle(self) -> None:
        """Merge the pieces into the settled part now (pyqtgraph's auto range sees only that part)."""
        if self._series is not None and self.pieces:
            self._merge(self._series)

    def newest_y(self) -> tuple[float, float] | None:
        """The lowest and highest value of the newest piece, as plotted (log10 in log mode); None without one."""
        if not self.pieces:
            return None
        y = self._y(self.pieces[-1].data(0)[1])
        return float(y.min()), float(y.max())

    def _merge(self, series: Series) -> None:
        x, y = series.view()
        self.settled.setData(x, y)
        self._settled_end = series.n - 1
        self._drop_pieces()

    def _add_piece(self, x: np.ndarray, y: np.ndarray) -> None:
        piece = QGraphicsPathItem(self.layer)
        piece.setAcceptedMouseButtons(Qt.MouseButton.NoButton)  # the plot's own pan and zoom get every click
        piece.setPen(self.pen)
        piece.setPath(pg.arrayToQPath(x, self._y(y)))
        piece.setData(0, (x.copy(), y.copy()))  # the data units, for getData
        self.pieces.append(piece)

    def _y(self, y: np.ndarray) -> np.ndarray:
        return np.log10(np.maximum(y, 1e-30)) if self.log_y else y

    def _drop_pieces(self) -> None:
        scene = self.layer.scene()
        for piece in self.pieces:
            if scene is not None:
                scene.removeItem(piece)
            else:
                piece.setParentItem(None)
        self.pieces = []

    def set_log_y(self, on: bool) -> None:
        """The plot's log mode reaches the settled PlotDataItem by itself; the bare pieces need redrawing."""
        self.log_y = on
        for piece in self.pieces:
            x, y = piece.data(0)
            piece.setPath(pg.arrayToQPath(x, self._y(y)))

    def clear(self) -> None:
        self.settled.setData([], [])
        self._drop_pieces()
        self._series = None
        self._settled_end = 0
        self.shown = 0

    def getData(self) -> tuple[np.ndarray, np.ndarray]:
        """Every point given to the items, in data units and order (before downsampling)."""
        xs, ys = [], []
        settled_x, settled_y = self.settled.getOriginalDataset()
        if settled_x is not None and len(settled_x):
            xs.append(np.asarray(settled_x))
            ys.append(np.asarray(settled_y))
        for piece in self.pieces:  # each piece repeats the last point before it
            x, y = piece.data(0)
            skip = 1 if xs else 0
            xs.append(x[skip:])
            ys.append(y[skip:])
        if not xs:
            return np.empty(0), np.empty(0)
        return np.concatenate(xs), np.concatenate(ys)


class LivePlots(QWidget):
    COLOURS = {"loss": "#f07f16", "val_loss": "#2f7fd8", "accuracy": "#f07f16", "val_accuracy": "#2f7fd8"}

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        pg.setConfigOptions(antialias=False, background="w", foreground="#333")
        self.loss_plot = pg.PlotWidget(title="loss")
        self.acc_plot = pg.PlotWidget(title="accuracy")
        self.accuracy_name = "accuracy"  # "next-token accuracy" on the next-token task (set_accuracy_name)
        self.acc_plot.setMouseEnabled(x=True, y=False)
        self.y_top = 0.0
        for plot, label in ((self.loss_plot, "cross-entropy"), (self.acc_plot, "accuracy")):
            plot.setLabel("bottom", "step")
            plot.setLabel("left", label)
            plot.getAxis("left").enableAutoSIPrefix(False)  # a loss of 0.7 reads 0.7, not 700 (x0.001)
            plot.showGrid(x=False, y=True, alpha=0.15)
            plot.setDownsampling(auto=True, mode="peak")
            plot.setClipToView(True)
            plot.disableAutoRange()  # ranges move in jumps (_grow_x, _fit_loss_y), not on every repaint
            for side in ("left", "bottom"):  # axes repaint from a cached pixmap unless their range moves
                plot.getPlotItem().getAxis(side).setCacheMode(QGraphicsItem.CacheMode.DeviceCoordinateCache)
        self.x_max = 0.0
        self.acc_plot.setYRange(-0.03, 1.1, padding=0)  # accuracy lives in [0, 1]: a fixed, cached axis
        for plot in (self.loss_plot, self.acc_plot):
            plot.setXRange(0, 20, padding=0.02)
        self.current = {name: Series() for name in SERIES}
        self.previous = {name: Series() for name in SERIES}
        self.curves = {}
        self.old_curves = {}
        for name in SERIES:
            plot = self.loss_plot if "loss" in name else self.acc_plot
            dash = pg.QtCore.Qt.PenStyle.DashLine
            style = {"width": 2.5} if not name.startswith("val") else {"width": 2, "style": dash}
            self.old_curves[name] = plot.plot(pen=pg.mkPen(color=(*_rgb(self.COLOURS[name]), 70), **style))
            self.old_curves[name].curve.setCacheMode(QGraphicsItem.CacheMode.DeviceCoordinateCache)  # static
            self.old_curves[name].setVisible(False)  # until a run ends: an empty pyqtgraph item still costs
            self.curves[name] = LiveCurve(plot, pg.mkPen(self.COLOURS[name], **style))
        self.log_y = QCheckBox("log-y loss")
        self.log_y.setToolTip("Logarithmic loss axis: small losses stay visible")
        self.log_y.toggled.connect(self._log_mode)
        top = self.plot_row = QBoxLayout(QBoxLayout.Direction.LeftToRight)
        top.addWidget(self.loss_plot)
        top.addWidget(self.acc_plot)
        # The legend sits above the plots, not inside them: an in-plot legend under the growing
        # curve was repainted with it on every frame.
        self.legend = QLabel(self._legend_html())

        self.legend.setToolTip("Both plots: training batch (solid) and validation set (dashed); the faded "
                               "curves are the previous run, kept for comparison")
        # The last step's numbers, read from the back row: the curve shows the trend, these the value.
        self.last_values = ElidedLabel("", tip="Loss and accuracy of the last training step (validation when "
                                       "evaluated)")  # cut at a word on a narrow screen, never mid-number
        self.last_values.setObjectName("lastValues")
        self.last_values.setAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        header = QHBoxLayout()
        header.setContentsMargins(8, 0, 8, 0)
        header.addWidget(self.legend)
        header.addWidget(self.last_values, 1)
        header.addSpacing(16)
        self.header = header
        self.values_row = QHBoxLayout()  # presentation: the last values get a row of their own
        self.values_row.setContentsMargins(8, 0, 8, 0)
        header.addWidget(self.log_y)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(2)
        layout.addLayout(header)
        layout.addLayout(self.values_row)
        layout.addLayout(top)
        self.dirty = False
        self.last: dict | None = None
        self.task: tuple[str, bool] | None = None  # (dataset, next-token): the window says which runs compare
        self.presentation = False
        self._last_shown_at = 0.0
        self.last_values.setStyleSheet("font-size: 12pt; font-weight: 700; color: #1f2933;")
        self._fix_last_width()

    def set_presentation(self, on: bool) -> None:
        """Projector sizes: tick labels, axis labels, titles, legend and the last values, all large."""
        self.presentation = on
        # Beside the diagram on a projector: the plots stack (loss above accuracy) in a narrower column.
        self.plot_row.setDirection(QBoxLayout.Direction.TopToBottom if on else QBoxLayout.Direction.LeftToRight)
        tick = QFont()
        tick.setPointSizeF(16 if on else 9)
        label_size = "18pt" if on else "10pt"
        for plot, label, title in ((self.loss_plot, "cross-entropy", "loss"),
                                   (self.acc_plot, self.accuracy_name, self.accuracy_name)):
            item = plot.getPlotItem()
            for side in ("left", "bottom"):
                axis = item.getAxis(side)
                axis.setTickFont(tick)
                axis.setStyle(tickTextOffset=8 if on else 3)
            plot.setLabel("bottom", "step", **{"font-size": label_size})
            plot.setLabel("left", label, **{"font-size": label_size})
            plot.setTitle(title, size="20pt" if on else "11pt")
        size = "13pt" if on else "10pt"
        self.legend.setText(self._legend_html())
        self.legend.setWordWrap(on)  # large text wraps in the narrower plot column instead of widening the window
        (self.header if on else self.values_row).removeWidget(self.last_values)
        if on:
            self.values_row.addWidget(self.last_values, 1)
        else:
            self.header.insertWidget(2, self.last_values, 1)
        self.legend.setStyleSheet(f"font-size: {size};")
        self.log_y.setStyleSheet(f"font-size: {size};")
        self.last_values.setStyleSheet(f"font-size: {'20pt' if on else '12pt'}; font-weight: 700; color: #1f2933;")
        self.last_values.setAlignment((Qt.AlignmentFlag.AlignLeft if on else Qt.AlignmentFlag.AlignRight)
                                      | Qt.AlignmentFlag.AlignVCenter)  # a narrow column clips the end, not the start
        self._fix_last_width()
        self._show_last(force=True)

    def set_accuracy_name(self, name: str) -> None:
        """What the accuracy plot measures: "accuracy" (classification) or "next-token accuracy"."""
        if name == self.accuracy_name:
            return
        self.accuracy_name = name
        self.acc_plot.setTitle(name, size="20pt" if self.presentation else "11pt")
        self.acc_plot.setLabel("left", name, **{"font-size": "18pt" if self.presentation else "10pt"})
        self._show_last(force=True)

    def _fix_last_width(self) -> None:
        """The label takes the room the header gives it and never asks for more (a new number repaints the
        label, never re-lays out the plots or widens the window)."""
        self.last_values.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Fixed)
        self.last_values.setMinimumWidth(0)

    def _show_last(self, force: bool = True) -> None:
        now = time.monotonic()
        if not force and now - self._last_shown_at < LAST_VALUES_INTERVAL_S:
            return
        self._last_shown_at = now
        event = self.last
        if event is None:
            self.last_values.setText("")
            return
        if self.presentation:  # the toolbar already shows the step in large type; keep the column's width
            self.last_values.setText(f"loss {event['loss']:.3g}  ·  {self.accuracy_name} {event['accuracy']:.0%}")
            return
        text = (f"step {event['step'] + 1}:  loss {event['loss']:.4g}  ·  {self.accuracy_name} "
                f"{event['accuracy']:.0%}")
        if event.get("val_loss") is not None:
            text += f"   (validation {event['val_loss']:.4g} · {event['val_accuracy']:.0%})"
        self.last_values.setText(text)

    def _legend_html(self) -> str:
        train, val = self.COLOURS["loss"], self.COLOURS["val_loss"]
        faded = "#f7c9a0"
        return (f'<span style="color:{train}; font-weight:700">━━</span> training batch &nbsp;&nbsp; '
                f'<span style="color:{val}; font-weight:700">╍╍</span> validation set &nbsp;&nbsp; '
                f'<span style="color:{faded}; font-weight:700">━━</span> previous run (faded)')

    def add(self, event: dict) -> None:
        """Record one step (no repaint: `refresh` does that on the timer)."""
        step = event["step"]
        self.current["loss"].append(step, event["loss"])
        self.current["accuracy"].append(step, event["accuracy"])
        if event.get("val_loss") is not None:
            self.current["val_loss"].append(step, event["val_loss"])
            self.current["val_accuracy"].append(step, event["val_accuracy"])
        if event.get("val_loss") is None and self.last is not None and self.last.get("val_loss") is not None:
            event = {**event, "val_loss": self.last["val_loss"], "val_accuracy": self.last["val_accuracy"]}
        self.last = event
        self.dirty = True

    def refresh(self) -> None:
        """Push the buffers to the curves: called on the ~30 Hz timer, never per step."""
        if not self.dirty:
            return
        for name, curve in self.curves.items():
            curve.show(self.current[name])
        self._show_last(force=False)
        self._grow_x()
        self._fit_loss_y()
        self.dirty = False

    def _fit_loss_y(self) -> None:
        """Loss axis 0..top, moved only when the curve leaves it: a still axis repaints from cache."""
        if self.log_y.isChecked():  # log axis: pyqtgraph's auto range handles decades, from the settled parts
            low, high = self.loss_plot.getViewBox().viewRange()[1]
            for name in ("loss", "val_loss"):
                newest = self.curves[name].newest_y()
                if newest is not None and (newest[0] < low or newest[1] > high):
                    self.curves[name].settle()  # a new piece left the range: let the auto range see it
            return
        peak = max(self.current["loss"].y_max, self.current["val_loss"].y_max, self.previous["loss"].y_max)
        if peak > self.y_top or peak < 0.3 * self.y_top:
            self.y_top = peak * 1.08 if peak > 0 else 1.0
            self.loss_plot.setYRange(0, self.y_top, padding=0)

    def _log_mode(self, on: bool) -> None:
        self.loss_plot.setLogMode(y=on)
        for name, curve in self.curves.items():
            if "loss" in name:
                curve.set_log_y(on)
        if on:
            self.loss_plot.enableAutoRange(axis="y")
        else:
            self.y_top = 0.0
            self._fit_loss_y()

    def _grow_x(self) -> None:
        """Widen the step axis in jumps (x1.5), so the axes are not re-laid out on every repaint."""
        n = self.current["loss"].n
        last = float(self.current["loss"].x[n - 1]) if n else 0.0
        older = self.previous["loss"]
        last = max(last, float(older.x[older.n - 1]) if older.n else 0.0)
        if last >= self.x_max or self.x_max == 0.0:
            self.x_max = max(20.0, last * 1.5)
            for plot in (self.loss_plot, self.acc_plot):
                plot.setXRange(0, self.x_max, padding=0.02)

    def new_run(self, same_task: bool = True) -> None:
        """The current run becomes the faded previous run (only if it has points). A run on another task is
        not kept: its losses live on another scale (next-token loss 30 flattened a word-order curve)."""
        if self.current["loss"].n and same_task:
            self.previous = self.current
            for name, curve in self.old_curves.items():
                curve.setData(*self.previous[name].view())
                curve.setVisible(True)
        elif not same_task:
            self.previous = {name: Series() for name in SERIES}
            for curve in self.old_curves.values():
                curve.setData([], [])
                curve.setVisible(False)
        self.current = {name: Series() for name in SERIES}
        for curve in self.curves.values():
            curve.clear()
        self.x_max = 0.0
        self.y_top = 0.0
        self.dirty = False
        self.last = None
        self._show_last()

    def flush_last(self) -> None:
        """Show the very last step's numbers (the run ended or paused between two throttled updates)."""
        self._show_last(force=True)

    def point_count(self) -> int:
        return self.current["loss"].n

    def export_png(self, path: str | Path) -> Path:
        path = Path(path)
        if not self.grab().save(str(path)):
            raise OSError(f"{path}: could not write the PNG")
        return path

    def export_csv(self, path: str | Path) -> Path:
        """step, loss, accuracy, val_loss, val_accuracy (blank where not evaluated)."""
        steps = self.current["loss"].view()[0]
        val = dict(zip(self.current["val_loss"].view()[0].tolist(), self.current["val_loss"].view()[1].tolist(),
                       strict=True))
        val_acc = dict(zip(*(a.tolist() for a in self.current["val_accuracy"].view()), strict=True))
        rows = ([int(step), self.current["loss"].y[i], self.current["accuracy"].y[i], val.get(step, ""),
                 val_acc.get(step, "")] for i, step in enumerate(steps.tolist()))
        # atomic: a half-written CSV never replaces a good one
        return write_csv_atomically(path, ["step", "loss", "accuracy", "val_loss", "val_accuracy"], rows)


def _rgb(hex_colour: str) -> tuple[int, int, int]:
    value = hex_colour.lstrip("#")
    return int(value[0:2], 16), int(value[2:4], 16), int(value[4:6], 16)
