"""The Adapters panel's LoRA tools: merge the active LoRA into W0 and back (latency before and after, and
whether the outputs stay equal), and combine LoRA adapters of the set with weights (PEFT's
`add_weighted_adapter`, linear or concatenation) into a new adapter.

The merge measurement runs a few dozen forward passes, so it runs in a worker thread (BackgroundJob);
the set is left unmerged afterwards, as it was. Combining only copies small matrices: GUI thread."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from PySide6.QtCore import Signal
from PySide6.QtWidgets import (
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QDoubleSpinBox,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from ...core.adapters.adapter_set import AdapterSet
from ...core.adapters.lora_merge import COMBINATIONS, MergeReport, add_weighted_adapter, measure_merge
from ...core.errors import ConfigError, PeftStudioError
from ..jobs.background import BackgroundJob
from ..jobs.worker import JobError
from ..plain import plain_label, tip

if TYPE_CHECKING:
    from .adapter_lab import AdapterLab


def lora_names(adapters: AdapterSet | None) -> list[str]:
    """The set's LoRA adapters: the ones a merge or a weighted combination applies to."""
    if adapters is None:
        return []
    return [name for name in adapters.names() if adapters.get(name).setup.method == "lora"]


class CombineDialog(QDialog):
    """One weight per LoRA adapter (0 leaves it out), the combination type, and the new adapter's name."""

    def __init__(self, names: list[str], suggested: str, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Combine LoRA adapters")
        form = QFormLayout()
        self.weights: dict[str, QDoubleSpinBox] = {}
        for name in names:
            box = QDoubleSpinBox()
            box.setRange(-10.0, 10.0)
            box.setSingleStep(0.1)
            box.setDecimals(2)
            box.setValue(1.0 / len(names))
            box.setToolTip(tip(f"Weight of {name} in the combination (0 leaves it out; negative subtracts it)"))
            self.weights[name] = box
            form.addRow(name, box)
        self.combination = QComboBox()
        self.combination.addItems(list(COMBINATIONS))
        self.combination.setToolTip("linear: weighted sum of A and of B (equal ranks); cat: stack them (rank adds "
                                    "up), as PEFT's add_weighted_adapter")
        form.addRow("combination", self.combination)
        self.name = QLineEdit(suggested)
        form.addRow("new adapter", self.name)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel)
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addWidget(QLabel("The new adapter takes the first chosen adapter's head and labels."))
        layout.addLayout(form)
        layout.addWidget(buttons)

    def choice(self) -> tuple[list[str], list[float], str, str]:
        chosen = [(name, box.value()) for name, box in self.weights.items() if box.value() != 0.0]
        return ([n for n, _ in chosen], [w for _, w in chosen], self.combination.currentText(),
                self.name.text().strip())


class LoraTools(QWidget):
    """Two buttons and a result line under the switcher; enabled when the set has LoRA adapters."""

    measured = Signal(object)  # MergeReport, for tests and the status bar

    def __init__(self, lab: AdapterLab, ask_combination: Callable[[list[str], str], CombineDialog] | None = None,
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.lab = lab
        self.ask_combination = ask_combination or (lambda names, name: CombineDialog(names, name, self))
        self.job = BackgroundJob(self)
        self.job.item.connect(self._report)
        self.job.done.connect(self._measured)
        self.merge_button = QPushButton("Merge test")
        self.merge_button.setToolTip("Fold the active LoRA into W0, time a forward pass before and after, check the "
                                     "outputs agree, then unmerge (the set stays as it was)")
        self.merge_button.clicked.connect(lambda: self.merge_test())
        self.combine_button = QPushButton("Combine LoRA…")
        self.combine_button.setToolTip("A new LoRA adapter from a weighted combination of the set's LoRA adapters "
                                       "(PEFT's add_weighted_adapter)")
        self.combine_button.clicked.connect(lambda: self.combine_dialog())
        self.result = plain_label("")
        self.result.setWordWrap(True)
        row = QHBoxLayout()
        row.addWidget(self.merge_button)
        row.addWidget(self.combine_button)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(row)
        layout.addWidget(self.result)
        self.last_report: MergeReport | None = None

    def enable(self, busy: bool) -> None:
        adapters = self.lab.adapters
        active_is_lora = adapters is not None and adapters.active in lora_names(adapters)
        self.merge_button.setEnabled(not busy and not self.job.running and active_is_lora)
        self.combine_button.setEnabled(not busy and not self.job.running and bool(lora_names(adapters)))

    # ---- merge -----------------------------------------------------------------------------------
    def merge_test(self) -> bool:
        adapters = self.lab.adapters
        if adapters is None or adapters.active is None or self.lab.busy() or self.job.running:
            return False
        member = adapters.get(adapters.active)
        if member.setup.method != "lora":
            self.lab.window.show_error("Cannot merge", f"{member.name} is a {member.method.title} adapter: only a "
                                       "LoRA folds into the weights")
            return False
        self.result.setText(f"measuring {member.name}: unmerged, merged, unmerged again…")
        # W0 changes in place meanwhile: no training and no model edits in the window until it is unmerged
        self.lab.window.controller.lock("A merge test runs in the Adapters panel; it ends in a moment.")
        self.job.start(lambda: iter([measure_merge(member)]))
        self.lab.refresh_enabled()
        return True

    def _report(self, report: MergeReport) -> None:
        self.last_report = report
        self.result.setText(report.summary() + "; unmerged again")
        self.measured.emit(report)

    def _measured(self, error: JobError | None) -> None:
        self.lab.window.controller.unlock()
        if error is not None:
            title = error.title("The merge test")
            self.result.setText(title)
            self.lab.window.show_error(title, error.message)
        self.lab.refresh_enabled()
        self.lab.check_base()  # unmerged again: the frozen base must be bit-identical

    # ---- combine -----------------------------------------------------------------------------------
    def combine_dialog(self) -> str | None:
        adapters = self.lab.adapters
        names = lora_names(adapters)
        if adapters is None or not names or self.lab.busy() or self.job.running:
            return None
        dialog = self.ask_combination(names, self.lab.free_name("combined", "lora"))
        if dialog.exec() != QDialog.DialogCode.Accepted:
            return None
        sources, weights, combination, name = dialog.choice()
        return self.combine(sources, weights, combination, name)

    def combine(self, sources: list[str], weights: list[float], combination: str, name: str) -> str | None:
        adapters = self.lab.adapters
        if adapters is None or self.lab.busy() or self.job.running:
            return None
        try:
            if not name:
                raise ConfigError("give the combined adapter a name")
            result = add_weighted_adapter(adapters, sources, weights, name, combination)
        except PeftStudioError as exc:
            self.lab.window.show_error("Cannot combine these adapters", str(exc))
            self.lab.refresh()
            return None
        self.result.setText(f"{result.name} = {combination} of " + ", ".join(
            f"{w:g}×{s}" for s, w in zip(sources, weights, strict=True)) + f" (rank {result.config.r})")
        self.lab.show_active()
        return result.name

    def stop_and_wait(self, timeout_ms: int = 10_000) -> bool:
        return self.job.stop_and_wait(timeout_ms)
