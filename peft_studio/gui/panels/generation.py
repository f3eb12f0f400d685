"""Generate with a decoder in "Try it": streamed token by token from a worker, stoppable, the next-token top-5 of
each step, and the adapted model's continuation beside the bare base's (core/model/generate.py side_by_side)."""

from __future__ import annotations

from collections.abc import Callable

from PySide6.QtCore import Signal
from PySide6.QtWidgets import (
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QPlainTextEdit,
    QPushButton,
    QSpinBox,
    QWidget,
)

from ...core.model.generate import ADAPTED, BASE, GenerationSettings, decode, side_by_side, token_text
from ..jobs.background import BackgroundJob
from ..jobs.worker import JobError

DEFAULT_NEW_TOKENS = 20


class GenerationBox(QWidget):
    """Generate / Stop, the number of new tokens, and the two continuations side by side."""

    busy_changed = Signal(bool)  # True while generating: the window holds training back
    step_top = Signal(list, list)  # each step's top-5: token texts and probabilities (the panel's bars)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.generate_button = QPushButton("▶ Generate")
        self.generate_button.setToolTip("Continue the typed text with the current model (greedy), in the background")
        self.stop_button = QPushButton("■ Stop")
        self.stop_button.setEnabled(False)
        self.new_tokens = QSpinBox()
        self.new_tokens.setRange(1, 500)
        self.new_tokens.setValue(DEFAULT_NEW_TOKENS)
        self.new_tokens.setSuffix(" new tokens")
        self.outputs = {ADAPTED: QPlainTextEdit(), BASE: QPlainTextEdit()}
        self.titles = {ADAPTED: QLabel("with the method"), BASE: QLabel("base alone")}
        for box in self.outputs.values():
            box.setReadOnly(True)
            box.setMaximumHeight(110)
        row = QHBoxLayout()
        for widget in (self.generate_button, self.stop_button, self.new_tokens):
            row.addWidget(widget)
        grid = QGridLayout(self)
        grid.setContentsMargins(0, 0, 0, 0)
        grid.addLayout(row, 0, 0, 1, 2)
        for column, which in enumerate((ADAPTED, BASE)):
            grid.addWidget(self.titles[which], 1, column)
            grid.addWidget(self.outputs[which], 2, column)
        self.job = BackgroundJob(self)
        self.job.item.connect(self._on_step)
        self.job.done.connect(self._on_done)
        self.stop_button.clicked.connect(self.job.stop)
        self._ids: dict[str, list[int]] = {}
        self._tokenizer = None
        self.error = ""

    @property
    def running(self) -> bool:
        return self.job.running

    def start(self, experiment, text: str, method_title: str, on_error: Callable[[str, str], None]) -> bool:
        """Generate after `text` with `experiment` (the window holds training back while this runs)."""
        if self.job.running or not text.strip():
            return False
        settings = GenerationSettings(max_new_tokens=self.new_tokens.value())
        self._ids = {ADAPTED: [], BASE: []}
        self._tokenizer = experiment.tokenizer
        self._on_error = on_error
        self.titles[ADAPTED].setText(f"with {method_title}")
        for box in self.outputs.values():
            box.setPlainText(text)
        self.generate_button.setEnabled(False)
        self.stop_button.setEnabled(True)
        self.busy_changed.emit(True)
        return self.job.start(lambda: side_by_side(experiment, text, settings))

    def _on_step(self, item) -> None:
        which, step = item
        self._ids[which].append(step.token_id)
        box = self.outputs[which]
        prompt = box.property("prompt")
        if prompt is None:
            prompt = box.toPlainText()
            box.setProperty("prompt", prompt)
        box.setPlainText(prompt + decode(self._tokenizer, self._ids[which]))
        words = [token_text(self._tokenizer, token) for token, _ in step.top]
        self.step_top.emit(words, [p for _, p in step.top])

    def _on_done(self, ended: JobError | None) -> None:
        error = "" if ended is None else f"{ended.title('Generation')}\n{ended.message}"
        for box in self.outputs.values():
            box.setProperty("prompt", None)
        self.generate_button.setEnabled(True)
        self.stop_button.setEnabled(False)
        self.busy_changed.emit(False)
        self.error = error
        if error:
            title, _, text = error.partition("\n")
            self._on_error(title, text)

    def stop_and_wait(self) -> bool:
        return self.job.stop_and_wait()
