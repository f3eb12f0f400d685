"""The "Memory at scale" dock: core/memory/at_scale.py's ledger for the window's experiment, as bars.

Thin: every number is core's `ledger(census, base, plan)`; this module only draws it. Cheap: no forward
pass (census shapes and closed forms), so it works on meta-device bases (Llama-3-70B), and it recomputes
only while visible (a hidden dock marks itself stale, as compare_panel.py does, and catches up when shown).
"""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFormLayout,
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QProgressBar,
    QSlider,
    QVBoxLayout,
    QWidget,
)

from ...core.errors import PeftStudioError
from ...core.memory.at_scale import (
    DEVICES_GB,
    FORMULAS,
    GIB,
    OPTIMIZERS,
    WEIGHT_DTYPES,
    Ledger,
    frozen_storage,
    ledger,
    plan_for,
)
from ..plain import html, plain_label
from ..window.controller import Controller

SEQ_LENGTHS = (64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384, 32768)  # the slider's stops
MAX_BATCH = 64
BAR_STEPS = 1000  # a QProgressBar holds ints; bytes of a 70B model do not fit one
FITS, NO_FIT = "#1b7f3b", "#b3261e"  # dark green / dark red under white text: legible on a projector
LINE_KEYS = ("frozen", "trainable", "gradients", "optimizer", "activations", "overhead")
OPTIMIZER_TITLES = {"adamw": "AdamW (fp32 moments)", "adam8bit": "8-bit Adam", "sgd": "SGD (no momentum)"}


def size_text(size: int) -> str:
    if size >= GIB // 10:
        return f"{size / GIB:,.2f} GiB"
    if size >= 1024**2 // 10:
        return f"{size / 1024**2:,.1f} MiB"
    return f"{size / 1024:,.1f} KiB" if size >= 1024 else f"{size} B"


AS_BUILT = "as built"  # the frozen storage the method itself chose (NF4 under QLoRA), else bf16

class MemoryScalePanel(QWidget):
    def __init__(self, controller: Controller, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.controller = controller
        self.book: Ledger | None = None
        self._stale = True
        self.device = self._combo([(f"{gb} GB", gb) for gb in DEVICES_GB], DEVICES_GB.index(24),
                                  "The accelerator's memory the total is checked against")
        self.weights = self._combo([(AS_BUILT, AS_BUILT)] + [(w.upper(), w) for w in WEIGHT_DTYPES], 0,
                                   "How the frozen base weights are stored. As built: NF4 when the method quantizes "
                                   "the base (QLoRA), else BF16. " + FORMULAS["frozen"])
        self.optimizer = self._combo([(OPTIMIZER_TITLES[o], o) for o in OPTIMIZERS], 0, FORMULAS["optimizer"])
        self.batch, self.batch_value = self._slider(1, MAX_BATCH, 1, "Sequences per training step")
        self.seq_len, self.seq_value = self._slider(0, len(SEQ_LENGTHS) - 1, SEQ_LENGTHS.index(512),
                                                    "Tokens per sequence (a soft prompt's tokens are added)")
        self.checkpointing = QCheckBox("&Gradient checkpointing")
        self.checkpointing.setToolTip("Keep only each layer's input and recompute the layer in backward: "
                                      "L x h x e bytes per token + one layer's activations")
        self.checkpointing.toggled.connect(self.refresh)
        self.summary = QLabel("")
        self.summary.setWordWrap(True)
        self.verdict = plain_label("")  # names the base
        self.verdict.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.verdict.setAccessibleName("fit verdict")
        font = self.verdict.font()
        font.setPointSize(16)  # the line a room reads from the back: large, bold, white on green or red
        font.setBold(True)
        self.verdict.setFont(font)
        self.verdict.setMinimumHeight(self.verdict.fontMetrics().height() + 16)
        self.fit_line = QLabel("")
        self.fit_line.setWordWrap(True)
        self.fit_line.setTextFormat(Qt.TextFormat.RichText)
        self.fit_line.setAccessibleName("fit for every device")
        self.names: list[QLabel] = []
        self.bars: list[QProgressBar] = []
        bars = QGridLayout()
        for row, key in enumerate(LINE_KEYS):
            name = QLabel("")
            name.setMinimumWidth(name.fontMetrics().horizontalAdvance("x" * 44))  # the longest line's label
            bar = QProgressBar()
            bar.setRange(0, BAR_STEPS)
            bar.setTextVisible(True)
            bar.setAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
            for widget in (name, bar):
                widget.setToolTip(FORMULAS[key])
            bars.addWidget(name, row, 0)
            bars.addWidget(bar, row, 1)
            self.names.append(name)
            self.bars.append(bar)
        bars.setColumnStretch(1, 1)
        form = QFormLayout()
        form.addRow(self._buddy("&Device memory", self.device), self.device)
        form.addRow(self._buddy("Frozen &weights", self.weights), self.weights)
        form.addRow(self._buddy("&Optimizer", self.optimizer), self.optimizer)
        form.addRow(self._buddy("&Batch", self.batch), self._with_value(self.batch, self.batch_value))
        form.addRow(self._buddy("&Sequence length", self.seq_len), self._with_value(self.seq_len, self.seq_value))
        form.addRow("", self.checkpointing)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(6, 6, 6, 6)
        layout.addWidget(self.summary)
        layout.addLayout(form)
        layout.addLayout(bars)
        layout.addWidget(self.verdict)
        layout.addWidget(self.fit_line)
        layout.addStretch(1)
        controller.changed.connect(self._setup_changed)
        self._show_values()

    # ---- controls -------------------------------------------------------------------------------
    def _combo(self, items: list[tuple[str, object]], index: int, tip: str) -> QComboBox:
        combo = QComboBox()
        for text, data in items:
            combo.addItem(text, data)
        combo.setCurrentIndex(index)
        combo.setToolTip(tip)
        combo.currentIndexChanged.connect(self.refresh)
        return combo

    def _slider(self, low: int, high: int, value: int, tip: str) -> tuple[QSlider, QLabel]:
        slider = QSlider(Qt.Orientation.Horizontal)
        slider.setRange(low, high)
        slider.setValue(value)
        slider.setPageStep(1 if high - low < 16 else 8)
        slider.setToolTip(tip)
        slider.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
        label = QLabel("")
        label.setMinimumWidth(56)
        slider.valueChanged.connect(self._show_values)
        slider.valueChanged.connect(self.refresh)
        return slider, label

    @staticmethod
    def _buddy(text: str, widget: QWidget) -> QLabel:
        label = QLabel(text)
        label.setBuddy(widget)  # Alt+letter moves the focus to the control
        widget.setAccessibleName(text.replace("&", ""))
        return label

    @staticmethod
    def _with_value(slider: QSlider, label: QLabel) -> QWidget:
        row = QWidget()
        layout = QHBoxLayout(row)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(slider, 1)
        layout.addWidget(label)
        return row

    def _show_values(self) -> None:
        self.batch_value.setText(str(self.batch.value()))
        self.seq_value.setText(f"{SEQ_LENGTHS[self.seq_len.value()]:,}")
        self.seq_len.setAccessibleDescription(self.seq_value.text() + " tokens")
        self.batch.setAccessibleDescription(self.batch_value.text() + " sequences")

    def choices(self) -> dict[str, object]:
        """The plan's user choices, as memory_scale.MemoryPlan takes them."""
        chosen = self.weights.currentData()
        weights = frozen_storage(self.controller.census, "bf16") if chosen == AS_BUILT else chosen
        return {"weights": weights, "optimizer": self.optimizer.currentData(),
                "batch": self.batch.value(), "seq_len": SEQ_LENGTHS[self.seq_len.value()],
                "checkpointing": self.checkpointing.isChecked()}

    @property
    def device_gb(self) -> int:
        return int(self.device.currentData())

    # ---- work only while seen -------------------------------------------------------------------
    def showEvent(self, event) -> None:  # noqa: N802 - Qt override
        super().showEvent(event)
        if self._stale:
            self.refresh()

    def _setup_changed(self) -> None:
        self._stale = True
        if self.isVisible():
            self.refresh()

    def refresh(self) -> None:
        """Recompute the ledger (census shapes and closed forms only) and redraw; skipped while hidden."""
        if not self.isVisible():
            self._stale = True
            return
        self._stale = False
        c = self.controller
        experiment = c.experiment
        plan = plan_for(experiment.shape_change(), **self.choices())
        try:
            self.book = ledger(c.census, experiment.base, plan)
        except PeftStudioError as exc:
            self.verdict.setText(f"memory estimate unavailable: {exc}")
            return
        extra = [f"{plan.extra_tokens} prompt tokens added to the sequence"] if plan.extra_tokens else []
        extra += [f"{plan.extra_keys} prefix keys added to attention"] if plan.extra_keys else []
        self.summary.setText(f"<b>{html(experiment.base.describe())}</b> · {experiment.method.title} · "
                             f"{c.census.trainable:,} trainable parameters"
                             + "".join(f" · {text}" for text in extra))
        self._draw(self.book)

    def _draw(self, book: Ledger) -> None:
        device = self.device_gb
        scale = max(book.total, device * GIB)  # bars share one scale: the device, or the total when it is more
        for name, bar, (what, size), key in zip(self.names, self.bars, book.lines, book.keys, strict=True):
            name.setText(what)
            bar.setValue(round(BAR_STEPS * size / scale))
            bar.setFormat(size_text(size))
            bar.setAccessibleName(f"{what}: {size_text(size)}")
            bar.setToolTip(f"{size:,} bytes\n{FORMULAS[key]}")
        fits = book.fits(device)
        self.verdict.setText(("✓ " if fits else "✗ ") + book.verdict(device))
        self.verdict.setStyleSheet(f"background: {FITS if fits else NO_FIT}; color: white; padding: 6px; "
                                   "border-radius: 4px;")
        marks = [f"<span style='color:{FITS if book.fits(gb) else NO_FIT}; font-weight:600'>"
                 f"{gb} GB {'✓' if book.fits(gb) else '✗'}</span>" for gb in DEVICES_GB]
        self.fit_line.setText(f"needs {book.total / GIB:,.1f} GiB: " + " &nbsp; ".join(marks))
        self.fit_line.setAccessibleDescription(book.fit_line())
