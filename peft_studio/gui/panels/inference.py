"""Type a sentence, see the label and class probabilities; a predictions table for the dataset.

On the next-token task: the most likely next words after the typed text, and for the dataset's first
texts the word the model expects after their first half."""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QHeaderView,
    QLineEdit,
    QProgressBar,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from ...core.bases.decoder import DecoderBase
from ...core.model.experiment import Experiment
from ...core.model.next_token import predict_next
from ..plain import plain_label, set_plain
from .generation import GenerationBox

TOP_WORDS = 5  # next-token: bars for the five most likely next words


class InferencePanel(QWidget):
    text_changed = Signal(str)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.entry = QLineEdit()
        self.entry.setPlaceholderText("type a sentence, e.g. “need a refund”")
        self.entry.setToolTip("Predicted with the current model (updates when training pauses or stops)")
        self.result = plain_label("")  # labels and words come from the dataset file
        self.result.setStyleSheet("font-size: 13pt; font-weight: 600;")
        self.result.setWordWrap(True)  # a long reason wraps in the side area, never cut mid-word
        self.bars = QVBoxLayout()
        self.table = QTableWidget(0, 3)
        self.table.setHorizontalHeaderLabels(["sentence", "predicted", "p"])
        self.table.horizontalHeader().setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        self.table.verticalHeader().setVisible(False)
        self.table.setToolTip("Predictions for the first sentences of the dataset (the seed's six for seed-intents)")
        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        self.generation = GenerationBox()  # decoders: continue the text, the method beside the bare base
        self.generation.step_top.connect(self._show_bars)
        layout.addWidget(self.entry)
        layout.addWidget(self.result)
        layout.addLayout(self.bars)
        layout.addWidget(self.generation)
        layout.addWidget(self.table)
        self.entry.textChanged.connect(self.text_changed.emit)
        self._bar_widgets: list[QProgressBar] = []

    def show_busy(self) -> None:
        self.result.setText("training… predictions refresh when it pauses or stops")

    def show_error(self, message: str) -> None:
        """The model cannot predict (e.g. a meta-device base): say so, and show nothing from the last model."""
        set_plain(self.result, message)  # may quote the user's text or a file's: never rich text
        self._show_bars((), [])
        self._fill_table([])

    def refresh(self, experiment: Experiment) -> None:
        """Predict the typed sentence and the table (GUI thread; only while no step is running)."""
        base = experiment.base
        self.generation.setVisible(isinstance(base, DecoderBase) and not base.on_meta_device)
        if self.generation.running:  # the worker reads the model: the bars follow its steps
            return
        if experiment.next_token:
            self._refresh_next_token(experiment)
            return
        self.table.setHorizontalHeaderLabels(["sentence", "predicted", "p"])
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
        rows = []
        for sentence, probs in zip(texts, probs_all, strict=True):
            best = max(range(len(probs)), key=probs.__getitem__)
            rows.append((sentence, names[best], f"{probs[best]:.2f}"))
        self._fill_table(rows)

    def _refresh_next_token(self, experiment: Experiment) -> None:
        """The next word instead of a label: top words for the typed text, and the dataset's half-texts."""
        self.table.setHorizontalHeaderLabels(["text so far", "next word", "p"])
        text = self.entry.text().strip()
        if text:
            top = predict_next(experiment, [text], TOP_WORDS)[0]
            self.result.setText(f"{text} → {top[0][0]}  ({top[0][1]:.0%})")
            self._show_bars([word for word, _ in top], [p for _, p in top])
        else:
            self.result.setText("")
            self._show_bars((), [])
        dataset = experiment.dataset
        texts = list(dataset.val_texts or dataset.train_texts)[:6]
        halves = [" ".join(t.split()[:max(1, len(t.split()) // 2)]) + " …" for t in texts]
        tops = predict_next(experiment, [h[:-2] for h in halves], 1) if halves else []
        self._fill_table([(half, top[0][0], f"{top[0][1]:.2f}") for half, top in zip(halves, tops, strict=True)])

    def _fill_table(self, rows: list[tuple[str, str, str]]) -> None:
        self.table.setRowCount(len(rows))
        for r, row in enumerate(rows):
            for c, value in enumerate(row):
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
