"""The adapter switcher: the adapters on one base (method glyph, task, bytes beside the base's).

A standalone widget: `show_set(adapters)` fills it from a core AdapterSet; a user's choice emits
`adapter_chosen(name)` and the owner activates it (`AdapterSet.activate`) and refreshes. Filling the
list never emits, so a refresh cannot loop back into a switch.
"""

from __future__ import annotations

from collections.abc import Sequence

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QColor, QFont
from PySide6.QtWidgets import QHeaderView, QTreeWidget, QTreeWidgetItem, QVBoxLayout, QWidget

from ...core.adapters.adapter_set import AdapterInfo, AdapterSet
from ..plain import plain_label, tip

COLUMNS = ("", "adapter", "task", "bytes")


def _bytes(count: int) -> str:
    for unit, size in (("MB", 1 << 20), ("KB", 1 << 10)):
        if count >= size:
            return f"{count / size:,.1f} {unit}"
    return f"{count:,} B"


class AdapterSwitcher(QWidget):
    """List of adapters; exactly one is marked active. Emits `adapter_chosen(name)` on a user's choice."""

    adapter_chosen = Signal(str)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.base_label = plain_label("no adapters yet")
        self.base_label.setWordWrap(True)
        self.tree = QTreeWidget()
        self.tree.setColumnCount(len(COLUMNS))
        self.tree.setHeaderLabels(list(COLUMNS))
        self.tree.setRootIsDecorated(False)
        self.tree.setUniformRowHeights(True)
        header = self.tree.header()
        for column in range(len(COLUMNS)):  # the name takes what the glyph, task and size leave
            header.setSectionResizeMode(column, QHeaderView.ResizeMode.Stretch if column == 1
                                        else QHeaderView.ResizeMode.ResizeToContents)
        header.setStretchLastSection(False)
        self.tree.setToolTip("Click an adapter to make it the active one: the base stays, only its small parts "
                             "switch")
        self.switch_label = plain_label("")
        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.addWidget(self.base_label)
        layout.addWidget(self.tree)
        layout.addWidget(self.switch_label)
        self.tree.itemClicked.connect(self._clicked)
        self.tree.itemActivated.connect(self._clicked)
        self._active: str | None = None

    # ---- filling ---------------------------------------------------------------------------------
    def show_set(self, adapters: AdapterSet) -> None:
        self.show_infos(adapters.infos(), adapters.base_name, adapters.base_bytes())

    def show_infos(self, infos: Sequence[AdapterInfo], base_name: str, base_bytes: int) -> None:
        self.tree.blockSignals(True)
        try:
            self.tree.clear()
            self._active = None
            for info in infos:
                item = QTreeWidgetItem([info.glyph, info.name, info.task, _bytes(info.bytes)])
                item.setData(1, Qt.ItemDataRole.UserRole, info.name)
                item.setForeground(0, QColor(info.colour))
                item.setTextAlignment(3, Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
                share = info.bytes / base_bytes if base_bytes else 0.0
                item.setToolTip(1, tip(f"{info.title} on {base_name}; labels {', '.join(info.labels)}; "
                                       f"{info.parameters:,} parameters = {info.bytes:,} bytes ({share:.2%} of the "
                                       "base)"))
                if info.active:
                    self._active = info.name
                    font = QFont(item.font(1))
                    font.setBold(True)
                    for column in range(len(COLUMNS)):
                        item.setFont(column, font)
                    item.setText(1, f"● {info.name}")
                self.tree.addTopLevelItem(item)
                if info.active:
                    self.tree.setCurrentItem(item)
        finally:
            self.tree.blockSignals(False)
        total = base_bytes + sum(i.bytes for i in infos)
        self.base_label.setText(f"base {base_name}: {_bytes(base_bytes)} (frozen, shared) · "
                                f"{len(infos)} adapter(s): {_bytes(total - base_bytes)} · together {_bytes(total)}")

    def show_switch_time(self, milliseconds: float, window_ms: float | None = None) -> None:
        shown = f" · window redrawn in {window_ms:.0f} ms" if window_ms is not None else ""
        self.switch_label.setText(f"last switch: {milliseconds:.2f} ms (no rebuild){shown}")

    # ---- reading ---------------------------------------------------------------------------------
    def names(self) -> list[str]:
        tree = self.tree
        return [tree.topLevelItem(i).data(1, Qt.ItemDataRole.UserRole) for i in range(tree.topLevelItemCount())]

    @property
    def active(self) -> str | None:
        return self._active

    def choose(self, name: str) -> None:
        """Choose `name` as a user would (emits adapter_chosen)."""
        for i in range(self.tree.topLevelItemCount()):
            item = self.tree.topLevelItem(i)
            if item.data(1, Qt.ItemDataRole.UserRole) == name:
                self.tree.setCurrentItem(item)
                self._clicked(item)
                return
        raise KeyError(name)

    def _clicked(self, item: QTreeWidgetItem, _column: int = 0) -> None:
        name = item.data(1, Qt.ItemDataRole.UserRole)
        if name and name != self._active:
            self.adapter_chosen.emit(name)
