"""The comparison board: pick runs, overlay their curves, compare them in one sortable table.

API (the window wires it; nothing here trains):
    board = BoardWidget(runs, store=None)     # runs: RunRecords; store: a RunStore for Refresh and Delete
    board.set_runs(runs) / board.add_run(run) # replace the list / append one (a family run fills it live)
    board.selected_runs()                     # the checked runs, as shown in the plots and the table
    board.set_current_method(name)            # whose adapters the "20 tasks" footer counts
    board.set_family_running(bool)            # the button reads Run the family / Stop
    board.runFamilyRequested, board.stopFamilyRequested   # signals for the worker
    board.export_png(path), export_svg(path), export_csv(path)
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

os.environ.setdefault("PYQTGRAPH_QT_LIB", "PySide6")  # pyqtgraph prefers PyQt6 if both are installed

import pyqtgraph as pg  # noqa: E402
from PySide6.QtCore import QPoint, QRect, QSize, Qt, Signal  # noqa: E402
from PySide6.QtGui import QBrush, QColor, QFont, QPainter  # noqa: E402
from PySide6.QtWidgets import (  # noqa: E402
    QFileDialog,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QMessageBox,
    QPushButton,
    QSplitter,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from ...core.errors import PeftStudioError  # noqa: E402
from ...core.methods import METHODS  # noqa: E402
from ...core.runs.compare import COLUMNS, best_rows, twenty_tasks, write_csv  # noqa: E402
from ...core.runs.run_store import RunRecord, RunStore  # noqa: E402
from ..window.errors_dialog import show_error_dialog

# One colour per method, used for its curves and its row marker (the diagram draws every method's parts in
# the same accent, so the board needs its own palette to tell runs apart).
FALLBACK = "#17becf"  # a run of a method that is no longer registered
BEST = QColor("#d8f0e3")  # background of the best cell in a column


def method_colour(method: str) -> QColor:
    """The method's own colour (its glyph's), from the registry."""
    registered = METHODS.get(method)
    return QColor(registered.colour if registered is not None else FALLBACK)


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


class BoardWidget(QWidget):
    runFamilyRequested = Signal()
    stopFamilyRequested = Signal()

    def __init__(self, runs: Sequence[RunRecord] = (), store: RunStore | None = None,
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.store = store
        self._runs: list[RunRecord] = []
        self._current: str | None = None
        self._running = False

        self.run_list = QListWidget()
        self.run_list.setToolTip("Tick the runs to compare")
        self.run_list.itemChanged.connect(lambda _: self._refresh_views())
        self.family_button = QPushButton("Run the family")
        self.family_button.setToolTip("Train every method this base supports on the same data, seed and steps")
        self.family_button.clicked.connect(self._family_clicked)
        buttons = QHBoxLayout()
        self.refresh_button = QPushButton("Refresh")
        self.refresh_button.clicked.connect(self.reload)
        self.delete_button = QPushButton("Delete")
        self.delete_button.setToolTip("Delete the highlighted run from the run folder")
        self.delete_button.clicked.connect(self.delete_highlighted)
        self.export_button = QPushButton("Export…")
        self.export_button.clicked.connect(self.export)
        for button in (self.refresh_button, self.delete_button, self.export_button):
            buttons.addWidget(button)
        self.refresh_button.setEnabled(store is not None)
        self.delete_button.setEnabled(store is not None)
        left = QWidget()
        left_layout = QVBoxLayout(left)
        left_layout.setContentsMargins(0, 0, 0, 0)
        left_layout.addWidget(self.family_button)
        left_layout.addWidget(self.run_list, 1)
        left_layout.addLayout(buttons)

        self.loss_plot = pg.PlotWidget(title="loss")
        self.accuracy_plot = pg.PlotWidget(title="accuracy")
        for plot in (self.loss_plot, self.accuracy_plot):
            plot.setBackground("w")
            plot.showGrid(x=True, y=True, alpha=0.2)
            plot.setLabel("bottom", "step")
            plot.addLegend(offset=(-10, 10))
        self.accuracy_plot.setYRange(0, 1.02)
        plots = QWidget()
        plots_layout = QHBoxLayout(plots)
        plots_layout.setContentsMargins(0, 0, 0, 0)
        plots_layout.addWidget(self.loss_plot)
        plots_layout.addWidget(self.accuracy_plot)

        self.table = QTableWidget(0, len(COLUMNS))
        self.table.setHorizontalHeaderLabels([c.header for c in COLUMNS])
        self.table.horizontalHeader().setSortIndicator(-1, Qt.SortOrder.AscendingOrder)  # run order until clicked
        self.table.setSortingEnabled(True)
        self.table.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        self.table.verticalHeader().setVisible(False)
        self.footer = QLabel()
        self.footer.setWordWrap(True)
        self.footer.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        bottom = QWidget()
        bottom_layout = QVBoxLayout(bottom)
        bottom_layout.setContentsMargins(0, 0, 0, 0)
        bottom_layout.addWidget(self.table, 1)
        bottom_layout.addWidget(self.footer)

        right = QSplitter(Qt.Orientation.Vertical)
        right.addWidget(plots)
        right.addWidget(bottom)
        splitter = QSplitter(Qt.Orientation.Horizontal)
        splitter.addWidget(left)
        splitter.addWidget(right)
        splitter.setStretchFactor(1, 1)
        layout = QVBoxLayout(self)
        layout.addWidget(splitter)
        self.set_runs(runs)

    # ---- data ----------------------------------------------------------------------------------------
    def set_runs(self, runs: Sequence[RunRecord]) -> None:
        """Replace the runs; all of them start ticked."""
        self._runs = list(runs)
        self.run_list.blockSignals(True)
        self.run_list.clear()
        for run in self._runs:
            self._add_item(run)
        self.run_list.blockSignals(False)
        self._refresh_views()

    def add_run(self, run: RunRecord) -> None:
        """Append one run (ticked): the family run calls this as each method finishes."""
        self._runs.append(run)
        self.run_list.blockSignals(True)
        self._add_item(run)
        self.run_list.blockSignals(False)
        self._refresh_views()

    def runs(self) -> list[RunRecord]:
        return list(self._runs)

    def selected_runs(self) -> list[RunRecord]:
        return [run for i, run in enumerate(self._runs)
                if self.run_list.item(i).checkState() == Qt.CheckState.Checked]

    def set_current_method(self, method: str | None) -> None:
        self._current = method
        self._refresh_footer(self.selected_runs())

    def set_family_running(self, running: bool) -> None:
        self._running = running
        self.family_button.setText("Stop" if running else "Run the family")

    def reload(self) -> None:
        """Read the store again (runs saved by another window or by `peft-studio compare`)."""
        if self.store is None:
            return
        self.set_runs(self.store.list())
        if self.store.skipped:
            QMessageBox.warning(self, "Some runs could not be read", "\n".join(self.store.skipped[:5]))

    def delete_highlighted(self) -> None:
        row = self.run_list.currentRow()
        if self.store is None or not 0 <= row < len(self._runs):
            return
        try:
            self.store.delete(self._runs[row].run_id)
        except PeftStudioError as exc:
            show_error_dialog(self, "The run cannot be deleted", str(exc))
            return
        del self._runs[row]
        self.run_list.blockSignals(True)
        self.run_list.takeItem(row)
        self.run_list.blockSignals(False)
        self._refresh_views()

    def _add_item(self, run: RunRecord) -> None:
        label = f"{run.method} · {run.base} · {run.dataset} · seed {run.seed} · {run.steps_done} steps"
        item = QListWidgetItem(label)
        item.setFlags(item.flags() | Qt.ItemFlag.ItemIsUserCheckable)
        item.setCheckState(Qt.CheckState.Checked)
        item.setForeground(QBrush(method_colour(run.method).darker(130)))
        item.setToolTip(f"{run.run_id}\n{run.created}")
        self.run_list.addItem(item)

    def _family_clicked(self) -> None:
        (self.stopFamilyRequested if self._running else self.runFamilyRequested).emit()

    # ---- views ---------------------------------------------------------------------------------------
    def _refresh_views(self) -> None:
        runs = self.selected_runs()
        self._refresh_plots(runs)
        self._refresh_table(runs)
        self._refresh_footer(runs)

    def _refresh_plots(self, runs: list[RunRecord]) -> None:
        for plot in (self.loss_plot, self.accuracy_plot):
            plot.clear()  # also empties the legend
        for run in runs:
            colour = method_colour(run.method)
            solid = pg.mkPen(colour, width=2)
            dashed = pg.mkPen(colour, width=2, style=Qt.PenStyle.DashLine)
            curves = run.curves
            self.loss_plot.plot(curves.step, curves.loss, pen=solid, name=run.method)
            self.accuracy_plot.plot(curves.step, curves.accuracy, pen=solid, name=run.method)
            steps, val_loss, val_acc = curves.validation()
            if steps:
                self.loss_plot.plot(steps, val_loss, pen=dashed, symbol="o", symbolSize=4, symbolBrush=colour,
                                    symbolPen=colour)
                self.accuracy_plot.plot(steps, val_acc, pen=dashed, symbol="o", symbolSize=4, symbolBrush=colour,
                                        symbolPen=colour)

    def _refresh_table(self, runs: list[RunRecord]) -> None:
        sort_column = self.table.horizontalHeader().sortIndicatorSection()
        order = self.table.horizontalHeader().sortIndicatorOrder()
        self.table.setSortingEnabled(False)
        self.table.setRowCount(len(runs))
        bold = QFont()
        bold.setBold(True)
        best = [best_rows(runs, column) for column in COLUMNS]
        for i, run in enumerate(runs):
            for j, column in enumerate(COLUMNS):
                value = column.value(run)
                item = _SortItem(column.text(value), value)
                if column.better is not None:
                    item.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
                if i in best[j]:
                    item.setBackground(BEST)
                    item.setFont(bold)
                    item.setToolTip("best in this column")
                if column.key == "method":
                    item.setForeground(QBrush(method_colour(run.method).darker(130)))
                self.table.setItem(i, j, item)
        self.table.setSortingEnabled(True)
        if 0 <= sort_column < len(COLUMNS):
            self.table.sortItems(sort_column, order)

    def _refresh_footer(self, runs: list[RunRecord]) -> None:
        if not runs:
            self.footer.setText("No runs ticked. Run the family, or tick runs on the left.")
            return
        chosen = next((r for r in runs if r.method == self._current), runs[0])
        self.footer.setText("Highlighted cells: best in the column. " + twenty_tasks(chosen).text())

    def best_cells(self) -> set[tuple[str, str]]:
        """(method shown in the row, column key) of every cell marked best, as the table shows them now."""
        marked = set()
        for i in range(self.table.rowCount()):
            for j, column in enumerate(COLUMNS):
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

    def export_png(self, path: str | Path) -> Path:
        path = Path(path)
        if not self.grab().save(str(path), "PNG"):
            raise OSError(f"{path}: cannot write the PNG")
        return path

    def export_svg(self, path: str | Path) -> Path:
        """pyqtgraph's SVG exporter fails on Qt 6.11/6.12 (DESIGN.md): render the widget into QSvgGenerator."""
        from PySide6.QtSvg import QSvgGenerator

        path = Path(path)
        size = self.size() if self.width() > 1 else QSize(1200, 800)
        generator = QSvgGenerator()
        generator.setFileName(str(path))
        generator.setSize(size)
        generator.setViewBox(QRect(0, 0, size.width(), size.height()))
        generator.setTitle("PEFT Studio comparison board")
        painter = QPainter(generator)
        try:
            self.render(painter, QPoint(0, 0))
        finally:
            painter.end()
        if not path.is_file() or path.stat().st_size == 0:
            raise OSError(f"{path}: cannot write the SVG")
        return path

    def export_csv(self, path: str | Path) -> Path:
        return write_csv(self.selected_runs(), path)
