"""Open a dataset file: preview, choose the text and label columns, load with the core loader."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtWidgets import (
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFormLayout,
    QHeaderView,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from ...core.data import TextDataset, load_dataset_file, preview_file
from ..plain import plain_label, shorten

RANDOM_SPLIT = "(random 80/20 split)"


class DataDialog(QDialog):
    """Raises DatasetError from `preview_file` in the constructor; `load()` raises the loader's error."""

    def __init__(self, path: str | Path, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.path = Path(path)
        self.setWindowTitle(f"Open dataset: {self.path.name}")
        columns, rows = preview_file(self.path, 20)
        self.text_column = QComboBox()
        self.label_column = QComboBox()
        self.text_column.addItems(columns)
        self.label_column.addItems(columns)
        self.text_column.setCurrentText(_guess(columns, ("text", "sentence", "review", "utterance")))
        self.label_column.setCurrentText(_guess(columns, ("label", "intent", "class", "category")))
        self.split_column = QComboBox()
        self.split_column.addItems([RANDOM_SPLIT, *columns])
        self.split_column.setCurrentText(_guess(columns, ("split",)) if "split" in columns else RANDOM_SPLIT)
        self.split_column.setToolTip("A column saying train/validation per row, or a random 80/20 split")
        table = QTableWidget(len(rows), len(columns))
        table.setHorizontalHeaderLabels(columns)
        table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Stretch)
        table.verticalHeader().setVisible(False)
        for r, row in enumerate(rows):
            for c, value in enumerate(row):
                table.setItem(r, c, QTableWidgetItem(shorten(value)))  # a 131,072-character cell lays out slowly
        form = QFormLayout()
        form.addRow("text column", self.text_column)
        form.addRow("label column", self.label_column)
        form.addRow("validation", self.split_column)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Open | QDialogButtonBox.StandardButton.Cancel)
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addWidget(plain_label(f"First {len(rows)} rows of {self.path}"))
        layout.addWidget(table)
        layout.addLayout(form)
        layout.addWidget(buttons)
        self.resize(720, 460)

    def load(self) -> TextDataset:
        split = self.split_column.currentText()
        return load_dataset_file(self.path, self.text_column.currentText(), self.label_column.currentText(),
                                 split_column=None if split == RANDOM_SPLIT else split)


def _guess(columns: list[str], preferred: tuple[str, ...]) -> str:
    lowered = {c.lower(): c for c in columns}
    for name in preferred:
        if name in lowered:
            return lowered[name]
    return columns[0] if columns else ""
