"""Type a sentence, see the label and class probabilities; a predictions table for the dataset."""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QHeaderView,
    QLabel,
    QLineEdit,
    QProgressBar,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from ...core.experiment import Experiment


class InferencePanel(QWidget):
    text_changed = Signal(str)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.entry = QLineEdit()
        self.entry.setPlaceholderText("type a sentence, e.g. “need a refund”")
        self.entry.setToolTip("Predicted with the current model (updates when training pauses or stops)")
        self.result = QLabel("")
        self.result.setStyleSheet("font-size: 13pt; font-weight: 600;")
        self.bars = QVBoxLayout()
        self.table = QTableWidget(0, 3)
        self.table.setHorizontalHeaderLabels(["sentence", "predicted", "p"])
        self.table.horizontalHeader().setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        self.table.verticalHeader().setVisible(False)
        self.table.setToolTip("Predictions for the first sentences of the dataset (the seed's six for seed-intents)")
        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.addWidget(self.entry)
        layout.addWidget(self.result)
        layout.addLayout(self.bars)
        layout.addWidget(self.table)
        self.entry.textChanged.connect(self.text_changed.emit)
        self._bar_widgets: list[QProgressBar] = []

    def show_busy(self) -> None:
        self.result.setText("training… predictions refresh when it pauses or stops")

    def refresh(self, experiment: Experiment) -> None:
        """Predict the typed sentence and the table (GUI thread; only while no step is running)."""
        names = experiment.dataset.label_names
        text = self.entry.text().strip()
        if text:
            probs = experiment.predict([text])[0].tolist()
            best = max(range(len(probs)), key=probs.__getitem__)
            self.result.setText(f"→ {names[best]}  ({probs[best]:.0%})")
            self._show_bars(names, probs)
        else:
            self.result.setText("")
            self._show_bars((), [])
        dataset = experiment.dataset
        texts = list(dataset.val_texts or dataset.train_texts)[:6] if dataset.name != "seed-intents" \
            else list(dataset.train_texts)
        probs_all = experiment.predict(texts).tolist() if texts else []
        self.table.setRowCount(len(texts))
        for r, (sentence, probs) in enumerate(zip(texts, probs_all, strict=True)):
            best = max(range(len(probs)), key=probs.__getitem__)
            for c, value in enumerate((sentence, names[best], f"{probs[best]:.2f}")):
                item = QTableWidgetItem(value)
                item.setFlags(item.flags() & ~Qt.ItemFlag.ItemIsEditable)
                self.table.setItem(r, c, item)

    def _show_bars(self, names, probs) -> None:
        while len(self._bar_widgets) < len(names):
            bar = QProgressBar()
            bar.setRange(0, 1000)
            bar.setTextVisible(True)
            self.bars.addWidget(bar)
            self._bar_widgets.append(bar)
        for i, bar in enumerate(self._bar_widgets):
            bar.setVisible(i < len(names))
            if i < len(names):
                bar.setValue(int(probs[i] * 1000))
                bar.setFormat(f"{names[i]}  {probs[i]:.1%}")
