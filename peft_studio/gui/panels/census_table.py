"""The tensor table: every tensor of the model, sortable and filterable, in the diagram's colours."""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import QAbstractTableModel, QModelIndex, QSortFilterProxyModel, Qt, Signal
from PySide6.QtGui import QBrush
from PySide6.QtWidgets import QAbstractItemView, QHeaderView, QLineEdit, QTableView, QVBoxLayout, QWidget

from ...core.model.census import CensusRow
from ..window import theme

# What a teacher asks first (trainable? how many?) comes right after the name, so it is on screen without
# scrolling sideways; the name column is capped and elided in the middle (the tooltip has it whole).
COLUMNS = ("name", "trainable", "numel", "owner", "site", "shape", "bytes", "grad norm")
NAME_WIDTH = 210


SIZE_SAMPLE_ROWS = 40

class CensusModel(QAbstractTableModel):
    def __init__(self) -> None:
        super().__init__()
        self.rows: list[CensusRow] = []
        self.grads: dict[str, float] = {}

    def set_rows(self, rows: list[CensusRow]) -> None:
        """New model: its rows, columns sized to fit the first SIZE_SAMPLE_ROWS."""
        self.beginResetModel()
        self.rows = list(rows)
        self.grads = {}
        self.endResetModel()

    def set_grads(self, grads: dict[str, float]) -> None:
        self.grads = grads
        if self.rows:  # one dataChanged for the whole column: cheap
            col = COLUMNS.index("grad norm")
            self.dataChanged.emit(self.index(0, col), self.index(len(self.rows) - 1, col))

    def rowCount(self, parent: QModelIndex = QModelIndex()) -> int:  # noqa: N802, B008
        return 0 if parent.isValid() else len(self.rows)

    def columnCount(self, parent: QModelIndex = QModelIndex()) -> int:  # noqa: N802, B008
        return len(COLUMNS)

    def headerData(self, section: int, orientation: Qt.Orientation, role: int = Qt.ItemDataRole.DisplayRole):  # noqa: N802
        if role == Qt.ItemDataRole.DisplayRole and orientation == Qt.Orientation.Horizontal:
            return COLUMNS[section]
        return None

    def grad_of(self, row: CensusRow) -> float:
        return self.grads.get(row.name, 0.0) if row.trainable else 0.0  # frozen: exactly zero

    def data(self, index: QModelIndex, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        row = self.rows[index.row()]
        column = COLUMNS[index.column()]
        if role == Qt.ItemDataRole.DisplayRole:
            return {"name": row.name, "site": row.site, "owner": row.owner,
                    "shape": "×".join(map(str, row.shape)) + (" (4-bit)" if row.dtype == "nf4" else ""),
                    "numel": f"{row.numel:,}", "bytes": f"{row.bytes:,}",
                    "trainable": "trainable" if row.trainable else "frozen",
                    "grad norm": f"{self.grad_of(row):.4g}"}[column]
        if role == Qt.ItemDataRole.UserRole:  # sort key
            return {"numel": row.numel, "bytes": row.bytes, "grad norm": self.grad_of(row),
                    "shape": row.numel}.get(column, str(self.data(index)))
        if role == Qt.ItemDataRole.BackgroundRole:
            fill, _ = theme.owner_colours(row.owner, row.trainable)
            return QBrush(fill)
        if role == Qt.ItemDataRole.ForegroundRole:
            if row.dtype == "nf4" and column == "shape":
                return QBrush(theme.QUANT)
            return QBrush(theme.FROZEN_TEXT if not row.trainable else theme.TEXT)
        if role == Qt.ItemDataRole.TextAlignmentRole and column in ("numel", "bytes", "grad norm"):
            return int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        if role == Qt.ItemDataRole.ToolTipRole:
            state = "trainable" if row.trainable else "frozen: gradient exactly 0"
            return f"{row.name}\n{row.owner}, {row.dtype}, {state}"
        return None


class CensusTable(QWidget):
    rows_selected = Signal(list)  # census row names

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.model = CensusModel()
        self.proxy = QSortFilterProxyModel(self)
        self.proxy.setSourceModel(self.model)
        self.proxy.setSortRole(Qt.ItemDataRole.UserRole)
        self.proxy.setFilterCaseSensitivity(Qt.CaseSensitivity.CaseInsensitive)
        self.proxy.setFilterKeyColumn(-1)
        self.filter = QLineEdit()
        self.filter.setPlaceholderText("filter tensors: name, site, owner (e.g. trainable, lora, head, frozen)…")
        self.filter.setClearButtonEnabled(True)
        self.filter.setToolTip("Type to filter the tensor table; matches any column")
        self.filter.textChanged.connect(self.proxy.setFilterFixedString)
        self.view = QTableView()
        self.view.setModel(self.proxy)
        self.view.setSortingEnabled(True)
        self.view.sortByColumn(-1, Qt.SortOrder.AscendingOrder)  # census order until a header is clicked
        self.view.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.view.setTextElideMode(Qt.TextElideMode.ElideMiddle)
        self.view.verticalHeader().setVisible(False)
        self.view.verticalHeader().setDefaultSectionSize(20)
        # Interactive, sized once per model: ResizeToContents re-measures every row on each live update
        self.view.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Interactive)
        self.view.horizontalHeader().setStretchLastSection(True)
        # Widths from the first rows only (about a screenful): measuring every row of a large model's
        # census took ~50 ms per rebuild, which an adapter switch on MiniLM pays on every click.
        self.view.horizontalHeader().setResizeContentsPrecision(SIZE_SAMPLE_ROWS)
        self.view.setToolTip("Every tensor of the model. Select a row to highlight its block in the diagram.")
        self.view.selectionModel().selectionChanged.connect(self._selection_changed)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.filter)
        layout.addWidget(self.view)
        self._quiet = False

    def clear_filter(self) -> None:
        self.filter.clear()

    def set_rows(self, rows: list[CensusRow]) -> None:
        """New model: its rows, columns sized to fit the first SIZE_SAMPLE_ROWS."""
        self.model.set_rows(rows)
        self.view.resizeColumnsToContents()
        if self.view.columnWidth(0) > NAME_WIDTH:
            self.view.setColumnWidth(0, NAME_WIDTH)

    def _selection_changed(self) -> None:
        if self._quiet:
            return
        names = [self.model.rows[self.proxy.mapToSource(i).row()].name
                 for i in self.view.selectionModel().selectedRows()]
        self.rows_selected.emit(names)

    def select_names(self, names: list[str]) -> None:
        """Select these rows without echoing back to the diagram."""
        self._quiet = True
        try:
            selection = self.view.selectionModel()
            selection.clearSelection()
            wanted = set(names)
            first = None
            for r, row in enumerate(self.model.rows):
                if row.name in wanted:
                    index = self.proxy.mapFromSource(self.model.index(r, 0))
                    if index.isValid():
                        selection.select(index, selection.SelectionFlag.Select | selection.SelectionFlag.Rows)
                        first = first or index
            if first is not None:
                self.view.scrollTo(first)
        finally:
            self._quiet = False
