"""The method settings form, generated from the config dataclass's fields and their metadata."""

from __future__ import annotations

import dataclasses
from typing import Any

from PySide6.QtCore import Signal
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFormLayout,
    QLabel,
    QLineEdit,
    QSpinBox,
    QWidget,
)

from ...core.methods.config import MethodConfig

TEXT_FIELDS = ("targets", "layers")  # comma lists, kept in sync with diagram clicks


class MethodForm(QWidget):
    """One editor per config field: int -> spin box, float -> double spin, choices -> combo, bool -> check."""

    option_changed = Signal(str, object)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.layout_ = QFormLayout(self)
        self.layout_.setContentsMargins(4, 4, 4, 4)
        self.editors: dict[str, QWidget] = {}
        self._signature: tuple = ()

    def show_config(self, config: MethodConfig, values: dict[str, Any],
                    choices: dict[str, tuple[str, ...]] | None = None) -> None:
        """Rebuild the editors for a new method (or new per-base choices), else just refresh values
        (signals blocked: no loops). `values` are the options in force (defaults resolved);
        `choices` gives a list of allowed values for a text field."""
        fields = dataclasses.fields(config)
        choices = {k: v for k, v in (choices or {}).items() if v}
        signature = (type(config), tuple(sorted(choices.items())))
        if signature != self._signature:
            self._build(fields, choices)
            self._signature = signature
        for f in fields:
            editor = self.editors[f.name]
            value = values.get(f.name, getattr(config, f.name))
            editor.blockSignals(True)
            if isinstance(editor, QCheckBox):
                editor.setChecked(bool(value))
            elif isinstance(editor, QComboBox):
                editor.setCurrentIndex(max(0, editor.findText(str(value))) if value is not None else 0)
            elif isinstance(editor, QSpinBox | QDoubleSpinBox):
                editor.setValue(value)
            elif isinstance(editor, QLineEdit):
                editor.setText("" if value is None else str(value))
            editor.blockSignals(False)

    def _build(self, fields: tuple[dataclasses.Field, ...], choices: dict[str, tuple[str, ...]]) -> None:
        while self.layout_.rowCount():
            self.layout_.removeRow(0)
        self.editors.clear()
        for f in fields:
            editor = self._editor(f, choices.get(f.name))
            editor.setToolTip(f"{f.name}: {f.metadata.get('help', '')}")
            editor.setObjectName(f"field_{f.name}")
            self.editors[f.name] = editor
            label = QLabel(f.name.replace("_", " "))
            label.setToolTip(editor.toolTip())
            self.layout_.addRow(label, editor)

    def _editor(self, f: dataclasses.Field, base_choices: tuple[str, ...] | None) -> QWidget:
        meta, default, name = f.metadata, f.default, f.name
        low, high, choices = meta.get("low"), meta.get("high"), base_choices or meta.get("choices")
        emit = lambda value: self.option_changed.emit(name, value)  # noqa: E731
        if choices:
            combo = QComboBox()
            combo.addItems(list(choices))
            combo.currentTextChanged.connect(emit)
            return combo
        if isinstance(default, bool):
            check = QCheckBox()
            check.toggled.connect(emit)
            return check
        if isinstance(default, int):
            spin = QSpinBox()
            spin.setRange(int(low if low is not None else 0), int(high if high is not None else 1_000_000))
            spin.setKeyboardTracking(False)  # one rebuild per committed value, not per keystroke
            spin.valueChanged.connect(emit)
            return spin
        if isinstance(default, float):
            spin = QDoubleSpinBox()
            spin.setDecimals(3)
            spin.setRange(float(low if low is not None else 0.0), float(high if high is not None else 1e6))
            spin.setSingleStep(0.05 if (high or 1e6) <= 1 else 1.0)
            spin.setKeyboardTracking(False)
            spin.valueChanged.connect(emit)
            return spin
        line = QLineEdit()
        line.setPlaceholderText("e.g. q,v" if name == "targets" else "e.g. 0,1")
        line.editingFinished.connect(lambda: self._text_committed(name, line))
        return line

    def _text_committed(self, name: str, line: QLineEdit) -> None:
        text = line.text().strip()
        self.option_changed.emit(name, text or None)

    def set_locked(self, locked: bool, reason: str = "") -> None:
        for name, editor in self.editors.items():
            editor.setEnabled(not locked)
            help_text = editor.toolTip().split("\n")[0]
            editor.setToolTip(f"{help_text}\n{reason}" if locked else help_text)
            del name
