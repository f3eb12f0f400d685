"""The comparison board: pick runs, overlay their curves, compare them in one sortable table.

It draws a core Comparison (core/runs/comparison.py): one step budget at a time (a budget chooser above
the run list), the ticked runs in the plots and the table. Curves are told apart by colour (where the
method puts its part) and line style + marker (which method), with the legend beside the plots, never over
the curves. The table's method column stays put when the numbers scroll sideways; "where" is its tooltip.

API (the window wires it; nothing here trains):
    board = BoardWidget(runs, store=None, comparison=None)
    board.set_runs(runs) / board.add_run(run) # replace the list / append one (a family run fills it live)
    board.selected_runs()                     # the ticked runs of the shown budget, as drawn
    board.set_current_method(name)            # whose adapters the "20 tasks" footer counts
    board.set_family_running(bool)            # the button reads Run the family / Stop
    board.reload()                            # read the store again, on a worker thread (board.loading)
    board.runFamilyRequested, board.stopFamilyRequested   # signals for the worker
    board.export_png(path), export_svg(path), export_csv(path)
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

os.environ.setdefault("PYQTGRAPH_QT_LIB", "PySide6")  # pyqtgraph prefers PyQt6 if both are installed

import pyqtgraph as pg  # noqa: E402
from PySide6.QtCore import QPoint, QPointF, QRect, QRectF, QSize, Qt, Signal  # noqa: E402
from PySide6.QtGui import QBrush, QColor, QFont, QFontMetrics, QIcon, QImage, QPainter, QPen, QPixmap  # noqa: E402
from PySide6.QtWidgets import (  # noqa: E402
    QAbstractItemView,
    QBoxLayout,
    QComboBox,
    QFileDialog,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QPushButton,
    QSpinBox,
    QSplitter,
    QTableView,
    QTableWidget,
    QTableWidgetItem,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from ...core.errors import PeftStudioError  # noqa: E402
from ...core.runs.compare import COLUMNS, LENS_KEYS, best_rows, lens_missing, twenty_tasks, write_csv  # noqa: E402
from ...core.runs.comparison import Comparison, budget_of  # noqa: E402
from ...core.runs.run_store import RunRecord, RunStore  # noqa: E402
from .. import plain  # noqa: E402
from ..jobs.background import BackgroundJob  # noqa: E402
from ..jobs.worker import JobError  # noqa: E402
from ..window.errors_dialog import show_error_dialog  # noqa: E402
from .palette import PLACE_WORDS, CurveStyle, curve_style  # noqa: E402

BEST = QColor("#d8f0e3")  # background of the best cell in a column
TABLE_COLUMNS = tuple(c for c in COLUMNS if c.key != "where")  # "where" is the method cell's tooltip
MARKERS = 8  # markers per curve: enough to tell styles apart, few enough not to hide the line


def method_colour(method: str) -> QColor:
    return QColor(curve_style(method).colour)


SWATCH = (40, 14)  # the legend's line sample, in pixels


def style_icon(style: CurveStyle, size: QSize | None = None) -> QIcon:
    """A short line in the curve's colour, dash and marker: the legend's swatch."""
    size = size or QSize(*SWATCH)
    pixmap = QPixmap(size)
    pixmap.fill(Qt.GlobalColor.transparent)
    painter = QPainter(pixmap)
    painter.setRenderHint(QPainter.RenderHint.Antialiasing)
    pen = QPen(QColor(style.colour), 2.2)
    pen.setStyle(style.dash)
    painter.setPen(pen)
    y = size.height() / 2
    painter.drawLine(QPointF(1, y), QPointF(size.width() - 1, y))
    if style.symbol:
        _draw_symbol(painter, style, QPointF(size.width() / 2, y), 4.0)
    painter.end()
    return QIcon(pixmap)


def _draw_symbol(painter: QPainter, style: CurveStyle, at: QPointF, r: float) -> None:
    painter.setPen(QPen(QColor(style.colour), 1.5))
    painter.setBrush(QColor(style.colour))
    if style.symbol == "o":
        painter.drawEllipse(at, r, r)
    elif style.symbol == "s":
        painter.drawRect(QRectF(at.x() - r, at.y() - r, 2 * r, 2 * r))
    elif style.symbol == "t":
        painter.drawPolygon([QPointF(at.x(), at.y() + r), QPointF(at.x() - r, at.y() - r),
                             QPointF(at.x() + r, at.y() - r)])
    elif style.symbol == "d":
        painter.drawPolygon([QPointF(at.x(), at.y() - r), QPointF(at.x() + r, at.y()), QPointF(at.x(), at.y() + r),
                             QPointF(at.x() - r, at.y())])
    elif style.symbol == "x":
        painter.drawLine(QPointF(at.x() - r, at.y() - r), QPointF(at.x() + r, at.y() + r))
        painter.drawLine(QPointF(at.x() - r, at.y() + r), QPointF(at.x() + r, at.y() - r))


class _SortItem(QTableWidgetItem):
    """Sorts by the raw value (bytes, fractions), not by the text; missing values sort last."""

    def __init__(self, text: str, value: object) -> None:
        super().__init__(text)
        self.value = value

    def __lt__(self, other: QTableWidgetItem) -> bool:
        mine, theirs = self.value, getattr(other, "value", None)
        if mine is None or theirs is None:
            return mine is not None and theirs is None
        if isinstance(mine, str) or isinstance(theirs, str):
            return str(mine) < str(theirs)
        return mine < theirs


class PinnedColumnTable(QTableWidget):
    """A table whose first column stays in view while the others scroll sideways (Qt's frozen-column
    example): a second view over the same model shows column 0 on top of the table's left edge."""

    def __init__(self, rows: int, columns: int, parent: QWidget | None = None) -> None:
        super().__init__(rows, columns, parent)
        self.pinned = QTableView(self)
        self.pinned.setModel(self.model())
        self.pinned.setSelectionModel(self.selectionModel())
        self.pinned.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        self.pinned.verticalHeader().hide()
        self.pinned.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Fixed)
        self.pinned.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.pinned.setVerticalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.pinned.setVerticalScrollMode(QAbstractItemView.ScrollMode.ScrollPerPixel)
        self.setVerticalScrollMode(QAbstractItemView.ScrollMode.ScrollPerPixel)
        self.pinned.setStyleSheet("QTableView { border: none; border-right: 1px solid #c9ced6; }")
        self.pinned.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.viewport().stackUnder(self.pinned)
        self.horizontalHeader().sectionResized.connect(self._section_resized)
        self.verticalHeader().sectionResized.connect(lambda row, _old, size: self.pinned.setRowHeight(row, size))
        self.pinned.verticalScrollBar().valueChanged.connect(self.verticalScrollBar().setValue)
        self.verticalScrollBar().valueChanged.connect(self.pinned.verticalScrollBar().setValue)
        self.pinned.horizontalHeader().sectionClicked.connect(self._sort_first)
        self.model().columnsInserted.connect(lambda *_: self._hide_other_columns())
        self._hide_other_columns()
        self.pinned.show()

    def _hide_other_columns(self) -> None:
        for column in range(self.columnCount()):
            self.pinned.setColumnHidden(column, column != 0)
        self.pinned.setColumnWidth(0, self.columnWidth(0))

    def _sort_first(self, _section: int) -> None:
        header = self.horizontalHeader()
        order = Qt.SortOrder.DescendingOrder if header.sortIndicatorSection() == 0 and \
            header.sortIndicatorOrder() == Qt.SortOrder.AscendingOrder else Qt.SortOrder.AscendingOrder
        self.sortItems(0, order)
        self.pinned.horizontalHeader().setSortIndicator(0, order)

    def _section_resized(self, column: int, _old: int, size: int) -> None:
        if column == 0:
            self.pinned.setColumnWidth(0, size)
            self._place()

    def _place(self) -> None:
        frame = self.frameWidth()
        self.pinned.setGeometry(self.verticalHeader().width() + frame, frame, self.columnWidth(0),
                                self.viewport().height() + self.horizontalHeader().height())

    def resizeEvent(self, event) -> None:  # noqa: N802 - Qt override
        super().resizeEvent(event)
        self._place()

    def updateGeometries(self) -> None:  # noqa: N802 - Qt override
        super().updateGeometries()
        if hasattr(self, "pinned"):
            self._place()


class BoardWidget(QWidget):
    runFamilyRequested = Signal()
    stopFamilyRequested = Signal()

    def __init__(self, runs: Sequence[RunRecord] = (), store: RunStore | None = None,
                 parent: QWidget | None = None, comparison: Comparison | None = None) -> None:
        super().__init__(parent)
        self.store = store
        self.comparison = comparison or Comparison()
        self._current: str | None = None
        self._running = False

        self.family_button = QPushButton("Run the family")
        self.family_button.setToolTip("Train every method this base supports on the same data and seed, each for "
                                      "the steps beside this button")
        self.family_button.clicked.connect(self._family_clicked)
        self.steps_box = QSpinBox()
        self.steps_box.setRange(1, 100_000)
        self.steps_box.setValue(self.comparison.family_steps)
        self.steps_box.setSuffix(" steps each")
        self.steps_box.setToolTip("Steps per method for the next family run (the default fits a class: the "
                                  "whole family on the tiny base in about a minute)")
        self.steps_box.valueChanged.connect(lambda v: setattr(self.comparison, "family_steps", v))
        self.budget_box = QComboBox()
        self.budget_box.setToolTip("The board compares runs of one step budget at a time")
        self.budget_box.activated.connect(lambda i: self.comparison.show_budget(self.budget_box.itemData(i)))
        self.run_list = QListWidget()
        self.run_list.setToolTip("Tick the runs to compare")
        self.run_list.itemChanged.connect(self._item_ticked)
        self.refresh_button = QPushButton("Refresh")
        self.refresh_button.setToolTip("Read the run folder again (runs saved by `peft-studio compare` too)")
        self.refresh_button.clicked.connect(self.reload)
        self.delete_button = QPushButton("Delete")
        self.delete_button.setToolTip("Delete the highlighted run from the run folder")
        self.delete_button.clicked.connect(self.delete_highlighted)
        self.export_button = QPushButton("Export…")
        self.export_button.setToolTip("The curves and the whole table as one PNG (no buttons), or SVG, or CSV")
        self.export_button.clicked.connect(self.export)
        self.refresh_button.setEnabled(store is not None)
        self.delete_button.setEnabled(store is not None)
        self.runs_button = QToolButton()
        self.runs_button.setText("Runs")
        self.runs_button.setCheckable(True)
        self.runs_button.setToolTip("Show the list of runs (tick which to compare, refresh, delete)")
        # Two short rows, not one long one: the board fits a 1280-pixel projector's side area.
        top = QVBoxLayout()
        top.setContentsMargins(0, 0, 0, 0)
        run_row = QHBoxLayout()
        run_row.addWidget(self.family_button)
        run_row.addWidget(self.steps_box)
        run_row.addStretch(1)
        run_row.addWidget(self.export_button)
        show_row = QHBoxLayout()
        show_row.addWidget(QLabel("showing"))
        show_row.addWidget(self.budget_box, 1)
        show_row.addWidget(self.runs_button)
        top.addLayout(run_row)
        top.addLayout(show_row)
        self.budget_box.setMinimumContentsLength(12)
        self.budget_box.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        self.runs_panel = QWidget()
        runs_layout = QVBoxLayout(self.runs_panel)
        runs_layout.setContentsMargins(0, 0, 0, 0)
        runs_layout.addWidget(self.run_list, 1)
        self.skipped_label = plain.plain_label("")  # run files the store could not read, and why
        self.skipped_label.setWordWrap(True)
        self.skipped_label.hide()
        runs_layout.addWidget(self.skipped_label)
        buttons = QHBoxLayout()
        buttons.addWidget(self.refresh_button)
        buttons.addWidget(self.delete_button)
        runs_layout.addLayout(buttons)
        self.runs_button.toggled.connect(self.runs_panel.setVisible)
        self.runs_panel.setVisible(False)
        self._runs_placed = False  # shown by default when the board is wide enough (first showEvent)

        self.loss_plot = pg.PlotWidget(title="loss")
        self.accuracy_plot = pg.PlotWidget(title="accuracy")
        for plot in (self.loss_plot, self.accuracy_plot):
            plot.setBackground("w")
            plot.showGrid(x=True, y=True, alpha=0.2)
            plot.setLabel("bottom", "step")
            plot.setMinimumHeight(120)
        self.accuracy_plot.setYRange(0, 1.02)
        # Forgetting beside the task accuracy: one point per run (the lens's one number per run).
        self.forgetting_plot = pg.PlotWidget(title="forgetting vs accuracy")
        self.forgetting_plot.setBackground("w")
        self.forgetting_plot.showGrid(x=True, y=True, alpha=0.2)
        self.forgetting_plot.setLabel("bottom", "accuracy (val, else train)")
        self.forgetting_plot.setLabel("left", "forgetting")
        for axis in ("bottom", "left"):  # "(x0.001)" on a 0-1 axis reads as a unit, not a scale
            self.forgetting_plot.getAxis(axis).enableAutoSIPrefix(False)
        self.forgetting_plot.setMinimumHeight(120)
        self.forgetting_plot.setToolTip("Each run's forgetting on general text (how far its outputs moved from "
                                        "the base's) against its task accuracy: lower right learned the task "
                                        "while moving least from the base")
        # The legend beside the curves, never over them: a wrapping row of swatches under both plots.
        self.legend = QListWidget()
        self.legend.setObjectName("boardLegend")
        self.legend.setToolTip("Colour: where the method puts its trainable part. Line style and marker: which "
                               "method. Thick line: training batch; thin line with markers: validation.")
        self.legend.setIconSize(QSize(*SWATCH))
        self.legend.setViewMode(QListWidget.ViewMode.ListMode)
        self.legend.setFlow(QListWidget.Flow.LeftToRight)
        self.legend.setWrapping(True)
        self.legend.setResizeMode(QListWidget.ResizeMode.Adjust)
        self.legend.setSelectionMode(QAbstractItemView.SelectionMode.NoSelection)
        self.legend.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        self.legend.setMaximumHeight(64)
        self.plot_row = QBoxLayout(QBoxLayout.Direction.LeftToRight)
        self.plot_row.addWidget(self.loss_plot, 1)
        self.plot_row.addWidget(self.accuracy_plot, 1)
        self.plot_row.addWidget(self.forgetting_plot, 1)
        self.plots = QWidget()
        plots_layout = QVBoxLayout(self.plots)
        plots_layout.setContentsMargins(0, 0, 0, 0)
        plots_layout.addLayout(self.plot_row, 1)
        plots_layout.addWidget(self.legend)

        self.table = PinnedColumnTable(0, len(TABLE_COLUMNS))
        self.table.setHorizontalHeaderLabels([c.header for c in TABLE_COLUMNS])
        for j, column in enumerate(TABLE_COLUMNS):
            if column.tip:
                self.table.horizontalHeaderItem(j).setToolTip(column.tip)
        self.table.horizontalHeader().setSortIndicator(-1, Qt.SortOrder.AscendingOrder)  # run order until clicked
        self.table.setSortingEnabled(True)
        self.table.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        self.table.verticalHeader().setVisible(False)
        self.table.setMinimumHeight(110)
        self.footer = plain.plain_label()
        self.footer.setWordWrap(True)
        self.footer.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        bottom = QWidget()
        bottom_layout = QVBoxLayout(bottom)
        bottom_layout.setContentsMargins(0, 0, 0, 0)
        bottom_layout.addWidget(self.table, 1)
        bottom_layout.addWidget(self.footer)

        right = QSplitter(Qt.Orientation.Vertical)
        right.addWidget(self.plots)
        right.addWidget(bottom)
        right.setChildrenCollapsible(False)
        right.setStretchFactor(0, 3)  # the curves a little larger than the table, both in view
        right.setStretchFactor(1, 2)
        splitter = QSplitter(Qt.Orientation.Horizontal)
        splitter.addWidget(self.runs_panel)
        splitter.addWidget(right)
        splitter.setStretchFactor(1, 1)
        splitter.setChildrenCollapsible(False)
        self.runs_panel.setMinimumWidth(180)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(top)
        layout.addWidget(splitter, 1)
        self.comparison.on_change(self._refresh_views)
        self._loader = BackgroundJob(self)  # reading the run folder: off the GUI thread
        self._loader.done.connect(self._loaded)
        self._loading: list[RunRecord] = []
        if runs:
            self.set_runs(runs)
        else:
            self._refresh_views()

    # ---- layout --------------------------------------------------------------------------------------
    NARROW = 700  # below this width the two plots stack (a board docked in a 1280-pixel side area)
    WIDE = 900  # from this width the run list shows beside the plots when the board first appears

    def resizeEvent(self, event) -> None:  # noqa: N802 - Qt override
        super().resizeEvent(event)
        if not self._runs_placed and self.isVisible() and self.width() > 100:  # its first real size, as shown
            self._runs_placed = True
            self.runs_button.setChecked(self.width() >= self.WIDE)
        direction = QBoxLayout.Direction.TopToBottom if self.width() < self.NARROW else \
            QBoxLayout.Direction.LeftToRight
        if self.plot_row.direction() != direction:
            self.plot_row.setDirection(direction)

    # ---- data ----------------------------------------------------------------------------------------
    def set_runs(self, runs: Sequence[RunRecord]) -> None:
        """Replace the runs; all of them start ticked."""
        self.comparison.unticked.clear()
        self.comparison.set_runs(runs)

    def add_run(self, run: RunRecord) -> None:
        """Append one run (ticked): the family run calls this as each method finishes."""
        self.comparison.add(run)

    def runs(self) -> list[RunRecord]:
        return list(self.comparison.runs)

    def selected_runs(self) -> list[RunRecord]:
        return self.comparison.selected()

    def set_current_method(self, method: str | None) -> None:
        self._current = method
        self._refresh_footer(self.selected_runs())

    def set_family_running(self, running: bool) -> None:
        self._running = running
        self.family_button.setText("Stop" if running else "Run the family")
        self.steps_box.setEnabled(not running)

    @property
    def loading(self) -> bool:
        return self._loader.running

    def reload(self) -> bool:
        """Read the store again (runs saved by another window or by `peft-studio compare`) on a worker thread:
        a folder of hundreds of runs, a FIFO or a huge file never holds the window. What could not be read
        is listed under the runs."""
        if self.store is None or self._loader.running:
            return False
        self._loading = []
        self.refresh_button.setEnabled(False)
        self._loader.item.connect(self._loaded_one, Qt.ConnectionType.UniqueConnection)
        return self._loader.start(self.store.iter_list)

    def stop_loading(self) -> None:
        """Stop reading the folder (between two files); `done` follows when its thread has ended."""
        self._loader.stop()

    def stop_and_wait(self, timeout_ms: int = 10_000) -> bool:
        """Stop reading and wait for the thread (tests and scripts; the window never waits). True when none is left."""
        return self._loader.stop_and_wait(timeout_ms)

    def _loaded_one(self, item: object) -> None:
        if isinstance(item, RunRecord):
            self._loading.append(item)

    def _loaded(self, error: JobError | None) -> None:
        self.refresh_button.setEnabled(self.store is not None)
        skipped = list(self.store.skipped) if self.store is not None else []
        if error is not None:
            skipped.append(f"{error.title('Reading the runs')}: {error.message}")
        self.set_runs(sorted(self._loading, key=lambda r: (r.created, r.run_id)))
        self._loading = []
        self.skipped_label.setVisible(bool(skipped))
        if skipped:
            plain.set_plain(self.skipped_label, f"{len(skipped)} file(s) skipped: {skipped[0]}", 300)
            self.skipped_label.setToolTip(plain.tip("\n".join(skipped[:50])))

    def delete_highlighted(self) -> None:
        item = self.run_list.currentItem()
        if self.store is None or item is None:
            return
        run_id = item.data(Qt.ItemDataRole.UserRole)
        try:
            self.store.delete(run_id)
        except PeftStudioError as exc:
            show_error_dialog(self, "The run cannot be deleted", str(exc))
            return
        self.comparison.remove(run_id)

    def _item_ticked(self, item: QListWidgetItem) -> None:
        self.comparison.tick(item.data(Qt.ItemDataRole.UserRole), item.checkState() == Qt.CheckState.Checked)

    def _family_clicked(self) -> None:
        (self.stopFamilyRequested if self._running else self.runFamilyRequested).emit()

    # ---- views ---------------------------------------------------------------------------------------
    def _refresh_views(self) -> None:
        self._refresh_budgets()
        self._refresh_list()
        runs = self.selected_runs()
        self._refresh_plots(runs)
        self._refresh_table(runs)
        self._refresh_footer(runs)

    def _refresh_budgets(self) -> None:
        self.budget_box.blockSignals(True)
        self.budget_box.clear()
        for steps in self.comparison.budgets():
            count = sum(1 for r in self.comparison.runs if budget_of(r) == steps)
            self.budget_box.addItem(f"{steps}-step runs ({count})", steps)
        current = self.comparison.current_budget()
        if current is not None:
            self.budget_box.setCurrentIndex(self.budget_box.findData(current))
        self.budget_box.setEnabled(self.budget_box.count() > 1)
        self.budget_box.blockSignals(False)

    def _refresh_list(self) -> None:
        self.run_list.blockSignals(True)
        highlighted = self.run_list.currentItem()
        keep = highlighted.data(Qt.ItemDataRole.UserRole) if highlighted is not None else None
        self.run_list.clear()
        for run in self.comparison.shown():
            item = QListWidgetItem(style_icon(curve_style(run.method)),
                                   f"{run.method} · {run.base} · {run.dataset} · seed {run.seed}")
            item.setFlags(item.flags() | Qt.ItemFlag.ItemIsUserCheckable)
            ticked = run.run_id not in self.comparison.unticked
            item.setCheckState(Qt.CheckState.Checked if ticked else Qt.CheckState.Unchecked)
            item.setData(Qt.ItemDataRole.UserRole, run.run_id)
            item.setToolTip(plain.tip(f"{run.run_id}\n{run.created}\n{run.steps_done} steps"))
            self.run_list.addItem(item)
            if run.run_id == keep:
                self.run_list.setCurrentItem(item)
        self.run_list.blockSignals(False)

    def _refresh_plots(self, runs: list[RunRecord]) -> None:
        for plot in (self.loss_plot, self.accuracy_plot, self.forgetting_plot):
            plot.clear()
        self.legend.clear()
        shown: set[str] = set()
        for run in runs:
            style = curve_style(run.method)
            colour = QColor(style.colour)
            solid = pg.mkPen(colour, width=2.2, style=style.dash)
            thin = pg.mkPen(colour, width=1.2, style=style.dash)
            curves = run.curves
            every = max(1, len(curves.step) // MARKERS)
            for plot, values in ((self.loss_plot, curves.loss), (self.accuracy_plot, curves.accuracy)):
                plot.plot(curves.step, values, pen=solid)
                if style.symbol:  # a few markers on the line: the same style at any zoom
                    plot.plot(curves.step[::every], values[::every], pen=None, symbol=style.symbol, symbolSize=7,
                              symbolBrush=colour, symbolPen=colour)
            steps, val_loss, val_acc = curves.validation()
            if steps:
                for plot, values in ((self.loss_plot, val_loss), (self.accuracy_plot, val_acc)):
                    plot.plot(steps, values, pen=thin, symbol=style.symbol or "o", symbolSize=4, symbolBrush=colour,
                              symbolPen=colour)
            if run.forgetting is not None:
                accuracy = run.final_val_accuracy if run.final_val_accuracy is not None else run.final_train_accuracy
                self.forgetting_plot.plot([accuracy], [run.forgetting], pen=None, symbol=style.symbol or "o",
                                          symbolSize=10, symbolBrush=colour, symbolPen=colour)
            if run.method not in shown:
                shown.add(run.method)
                item = QListWidgetItem(style_icon(style), run.method)
                item.setToolTip(plain.tip(f"{run.method}: {PLACE_WORDS[style.place]}"))
                self.legend.addItem(item)
        self.legend.setVisible(bool(shown))

    def _refresh_table(self, runs: list[RunRecord]) -> None:
        sort_column = self.table.horizontalHeader().sortIndicatorSection()
        order = self.table.horizontalHeader().sortIndicatorOrder()
        self.table.setSortingEnabled(False)
        self.table.setRowCount(len(runs))
        bold = QFont()
        bold.setBold(True)
        best = [best_rows(runs, column) for column in TABLE_COLUMNS]
        for i, run in enumerate(runs):
            for j, column in enumerate(TABLE_COLUMNS):
                value = column.value(run)
                item = _SortItem(column.text(value), value)
                if column.right_aligned:
                    item.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
                if i in best[j]:
                    item.setBackground(BEST)
                    item.setFont(bold)
                    item.setToolTip("best in this column")
                if column.key == "method":
                    style = curve_style(run.method)
                    item.setIcon(style_icon(style, QSize(28, 12)))
                    item.setForeground(QBrush(QColor(style.colour).darker(130)))
                    item.setToolTip(plain.tip(f"{run.method}: {run.where}"))
                if column.key in LENS_KEYS and value is None:  # "—": say why
                    item.setToolTip(plain.tip(lens_missing(run, column.key)))
                elif column.key == "forgetting":
                    item.setToolTip(plain.tip(run.forgetting_measure))
                self.table.setItem(i, j, item)
        self.table.setSortingEnabled(True)
        if 0 <= sort_column < len(TABLE_COLUMNS):
            self.table.sortItems(sort_column, order)
        self.table.resizeColumnToContents(0)

    def _refresh_footer(self, runs: list[RunRecord]) -> None:
        if not runs:
            self.footer.setText("No runs ticked. Run the family, or tick runs in the list (Runs).")
            return
        chosen = next((r for r in runs if r.method == self._current), runs[0])
        budget = self.comparison.current_budget()
        self.footer.setText(f"{budget} steps per run. Highlighted cells: best in the column (timings only when "
                            "clearly ahead of the next). " + twenty_tasks(chosen).text())

    def best_cells(self) -> set[tuple[str, str]]:
        """(method shown in the row, column key) of every cell marked best, as the table shows them now."""
        marked = set()
        for i in range(self.table.rowCount()):
            for j, column in enumerate(TABLE_COLUMNS):
                if self.table.item(i, j).background().color() == BEST:
                    marked.add((self.table.item(i, 0).text(), column.key))
        return marked

    # ---- export --------------------------------------------------------------------------------------
    def export(self) -> None:
        path, _ = QFileDialog.getSaveFileName(self, "Export the board", "board.png",
                                              "PNG image (*.png);;SVG drawing (*.svg);;CSV table (*.csv)")
        if not path:
            return
        try:
            {".svg": self.export_svg, ".csv": self.export_csv}.get(Path(path).suffix.lower(), self.export_png)(path)
        except (OSError, PeftStudioError) as exc:
            show_error_dialog(self, "The board cannot be exported", str(exc))

    def board_image(self) -> QImage:
        """The curves with their legend, then every row and column of the table and the footer: what a slide
        needs, without the buttons or the run list."""
        plots = self.plots.grab().toImage()
        table = self._table_image(max(plots.width(), 600))
        metrics = QFontMetrics(self.footer.font())
        width = max(plots.width(), table.width())
        footer_rect = metrics.boundingRect(QRect(0, 0, width - 16, 2000), Qt.TextFlag.TextWordWrap, self.footer.text())
        image = QImage(width, plots.height() + table.height() + footer_rect.height() + 24, QImage.Format.Format_RGB32)
        image.fill(Qt.GlobalColor.white)
        painter = QPainter(image)
        painter.drawImage(0, 0, plots)
        painter.drawImage(0, plots.height() + 8, table)
        painter.setPen(QColor("#1f2933"))
        painter.setFont(self.footer.font())
        painter.drawText(QRect(8, plots.height() + table.height() + 16, width - 16, footer_rect.height()),
                         Qt.TextFlag.TextWordWrap, self.footer.text())
        painter.end()
        return image

    def _table_image(self, min_width: int) -> QImage:
        """Every cell of the table as it is sorted now, at full size (the widget shows a scrolled part)."""
        font = self.table.font()
        bold = QFont(font)
        bold.setBold(True)
        metrics, bold_metrics = QFontMetrics(font), QFontMetrics(bold)
        headers = [self.table.horizontalHeaderItem(j).text() for j in range(self.table.columnCount())]
        rows = [[self.table.item(i, j) for j in range(self.table.columnCount())] for i in range(self.table.rowCount())]
        pad, icon = 8, 30
        widths = [max(bold_metrics.horizontalAdvance(h), *(metrics.horizontalAdvance(r[j].text()) +
                                                          (icon if j == 0 else 0) for r in rows), 20) + 2 * pad
                  for j, h in enumerate(headers)] if rows else [bold_metrics.horizontalAdvance(h) + 2 * pad
                                                                for h in headers]
        height = metrics.height() + 8
        image = QImage(max(min_width, sum(widths)), height * (len(rows) + 1) + 1, QImage.Format.Format_RGB32)
        image.fill(Qt.GlobalColor.white)
        painter = QPainter(image)
        painter.setFont(bold)
        x = 0
        for j, header in enumerate(headers):
            painter.fillRect(QRect(x, 0, widths[j], height), QColor("#eef0f3"))
            painter.drawText(QRect(x + pad, 0, widths[j] - 2 * pad, height), Qt.AlignmentFlag.AlignVCenter, header)
            x += widths[j]
        for i, row in enumerate(rows):
            x, y = 0, height * (i + 1)
            for j, item in enumerate(row):
                cell = QRect(x, y, widths[j], height)
                background = item.background()
                if background.style() != Qt.BrushStyle.NoBrush:
                    painter.fillRect(cell, background)
                painter.setFont(item.font())
                painter.setPen(item.foreground().color() if item.foreground().style() != Qt.BrushStyle.NoBrush
                               else QColor("#1f2933"))
                left = x + pad
                if j == 0 and not item.icon().isNull():
                    item.icon().paint(painter, QRect(left, y + 2, icon - 4, height - 4))
                    left += icon
                align = Qt.AlignmentFlag.AlignRight if TABLE_COLUMNS[j].right_aligned else \
                    Qt.AlignmentFlag.AlignLeft
                painter.drawText(QRect(left, y, x + widths[j] - pad - left, height),
                                 align | Qt.AlignmentFlag.AlignVCenter, item.text())
                x += widths[j]
            painter.setPen(QColor("#e3e7ec"))
            painter.drawLine(0, y, image.width(), y)
        painter.end()
        return image

    def export_png(self, path: str | Path) -> Path:
        path = Path(path)
        if not self.board_image().save(str(path), "PNG"):
            raise OSError(f"{path}: cannot write the PNG")
        return path

    def export_svg(self, path: str | Path) -> Path:
        """pyqtgraph's SVG exporter fails on Qt 6.11/6.12 (DESIGN.md): render the board into QSvgGenerator."""
        from PySide6.QtSvg import QSvgGenerator

        path = Path(path)
        widget = self
        size = widget.size() if widget.width() > 1 else QSize(1200, 800)
        generator = QSvgGenerator()
        generator.setFileName(str(path))
        generator.setSize(size)
        generator.setViewBox(QRect(0, 0, size.width(), size.height()))
        generator.setTitle("PEFT Studio comparison board")
        painter = QPainter(generator)
        try:
            widget.render(painter, QPoint(0, 0))
        finally:
            painter.end()
        if not path.is_file() or path.stat().st_size == 0:
            raise OSError(f"{path}: cannot write the SVG")
        return path

    def export_csv(self, path: str | Path) -> Path:
        return write_csv(self.selected_runs(), path)
