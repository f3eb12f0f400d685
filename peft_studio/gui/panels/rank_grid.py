"""A method's live per-site ranks (core RankGrid, e.g. AdaLoRA's allocator): one row per layer, one column per
target, each cell the live rank over the layer's size, shaded by the share left. It shows what a step reported in
StepEvent.method_state["rank_grid"] (plain numbers that crossed from the training thread), and knows no method."""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import Qt
from PySide6.QtGui import QBrush, QColor
from PySide6.QtWidgets import (
    QDockWidget,
    QLabel,
    QMainWindow,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from ...core.methods.rank_allocation import RankGrid

EMPTY = "—"


class RankGridPanel(QWidget):
    """The grid and a line with the total rank against the allocator's budget."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.table = QTableWidget(0, 0, self)
        self.table.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
        self.table.setToolTip("live rank / the layer's size at each adapted site; pruned triplets lower it")
        self.summary = QLabel("no ranks reported yet", self)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.addWidget(self.table)
        layout.addWidget(self.summary)
        self.grid: RankGrid | None = None

    def show_grid(self, plain: dict[str, Any]) -> None:
        grid = RankGrid.from_plain(plain)
        self.grid = grid
        layers, names = grid.layers, grid.names
        if self.table.rowCount() != len(layers) or self.table.columnCount() != len(names):
            self.table.setRowCount(len(layers))
            self.table.setColumnCount(len(names))
        self.table.setHorizontalHeaderLabels(names)
        self.table.setVerticalHeaderLabels(["-" if layer is None else f"layer {layer}" for layer in layers])
        sizes = {(grid.layer_of[site], grid.name_of[site]): cell for site, cell in grid.cells.items()}
        for row, layer in enumerate(layers):
            for column, name in enumerate(names):
                live, size = sizes.get((layer, name), (None, None))
                item = self.table.item(row, column)
                if item is None:
                    item = QTableWidgetItem()
                    self.table.setItem(row, column, item)
                item.setTextAlignment(Qt.AlignmentFlag.AlignCenter)
                if live is None:
                    item.setText(EMPTY)
                    item.setBackground(QBrush())
                else:
                    item.setText(f"{live}/{size}")
                    share = live / size if size else 0.0
                    item.setBackground(QBrush(QColor.fromRgbF(1.0, 1.0 - 0.45 * share, 1.0 - 0.9 * share)))
        budget = "" if grid.budget is None else f" · budget {grid.budget}"
        self.summary.setText(f"total rank {grid.total} of {sum(size for _, size in grid.cells.values())} · "
                             f"target {grid.target_r} per Linear{budget}")


def rank_grid_dock(window: QMainWindow) -> tuple[QDockWidget, RankGridPanel]:
    """A dock for the grid, hidden until a method reports one (the window shows it then)."""
    panel = RankGridPanel()
    dock = QDockWidget("Rank allocation", window)
    dock.setObjectName("rank_allocation")
    dock.setWidget(panel)
    window.addDockWidget(Qt.DockWidgetArea.RightDockWidgetArea, dock)
    dock.hide()
    return dock, panel
