"""The family on an architecture without weights: one row per method (sites, trainable parameters, share
of the base, adapter size, memory to train, fits a 24 GB GPU). Double-click or Enter on a row shows that
method in the diagram."""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QColor
from PySide6.QtWidgets import QHeaderView, QTableWidget, QTableWidgetItem

from ...core.memory.at_scale import GIB
from ...core.methods import METHODS
from ...core.runs.compare import human_bytes
from ...core.runs.placement_compare import DEVICE_GB, PlacementRow
from ..plain import tip

HEADERS = ("method", "sites", "trainable", "% of base", "adapter", "memory to train", f"fits {DEVICE_GB} GB")


class PlacementTable(QTableWidget):
    method_chosen = Signal(str)

    def __init__(self, parent=None) -> None:
        super().__init__(0, len(HEADERS), parent)
        self.setHorizontalHeaderLabels(list(HEADERS))
        self.verticalHeader().setVisible(False)
        header = self.horizontalHeader()
        header.setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)  # numbers stay beside their names
        self.setSelectionBehavior(QTableWidget.SelectionBehavior.SelectRows)
        self.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
        self.setToolTip("Each method's default placement on this architecture, counted on the meta device (no "
                        "weights, no training). Double-click a row (or press Enter) to see it in the diagram.")
        self.rows: list[PlacementRow] = []
        self.itemActivated.connect(lambda item: self._chosen(item.row()))
        self.itemDoubleClicked.connect(lambda item: self._chosen(item.row()))

    def clear_rows(self) -> None:
        self.rows = []
        self.setRowCount(0)

    def add_row(self, row: PlacementRow) -> None:
        self.rows.append(row)
        r = self.rowCount()
        self.setRowCount(r + 1)
        method = METHODS.get(row.method)
        name = QTableWidgetItem(f"{method.glyph}  {row.title}" if method else row.title)
        if method is not None:
            name.setForeground(QColor(method.colour))
        cells = [name]
        if row.skipped:  # the reason in the stretching name column (elided), whole in the tooltip
            name.setText(f"{name.text()}: not on this base ({row.skipped})")
            name.setToolTip(tip(row.skipped))
            cells += [QTableWidgetItem("—") for _ in HEADERS[1:]]
        else:
            fits = row.memory_bytes <= DEVICE_GB * GIB
            cells += [QTableWidgetItem(f"{row.sites}"), QTableWidgetItem(f"{row.trainable:,}"),
                      QTableWidgetItem(f"{row.percent:.4f}%"), QTableWidgetItem(human_bytes(row.adapter_bytes)),
                      QTableWidgetItem(f"{row.memory_bytes / GIB:.1f} GiB ({row.weights})"),
                      QTableWidgetItem("yes" if fits else "no")]
            cells[-1].setForeground(QColor("#1b7f3b" if fits else "#b3261e"))
        for c, item in enumerate(cells):
            if c > 0:
                item.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
            self.setItem(r, c, item)
        self.mark_best()

    def mark_best(self) -> None:
        """Bold the fewest trainable parameters and the least memory, as the text table stars them."""
        placed = [(i, row) for i, row in enumerate(self.rows) if not row.skipped]
        if not placed:
            return
        fewest = min(row.trainable for _, row in placed)
        least = min(row.memory_bytes for _, row in placed)
        for i, row in placed:
            for column, best in ((2, row.trainable == fewest), (5, row.memory_bytes == least)):
                item = self.item(i, column)
                font = item.font()
                font.setBold(best)
                item.setFont(font)

    def _chosen(self, r: int) -> None:
        if 0 <= r < len(self.rows) and not self.rows[r].skipped:
            self.method_chosen.emit(self.rows[r].method)
