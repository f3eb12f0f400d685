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
        self.error = QLabel("")
        self.error.setObjectName("formError")
        self.error.setWordWrap(True)
        self._signature: tuple = ()

    def show_config(self, config: MethodConfig, selected_names: str, selected_layers: str) -> None:
        """Rebuild the editors for a new method, or just refresh values (signals blocked: no loops)."""
        fields = dataclasses.fields(config)
        signature = (type(config),)
        if signature != self._signature:
            self._build(fields)
            self._signature = signature
        for f in fields:
            editor = self.editors[f.name]
            value = getattr(config, f.name)
            if f.name == "targets" and value is None:
                value = selected_names
            if f.name == "layers" and value is None:
                value = selected_layers
            editor.blockSignals(True)
            if isinstance(editor, QCheckBox):
                editor.setChecked(bool(value))
            elif isinstance(editor, QComboBox):
                editor.setCurrentText(str(value))
            elif isinstance(editor, QSpinBox | QDoubleSpinBox):
                editor.setValue(value)
            elif isinstance(editor, QLineEdit):
                editor.setText("" if value is None else str(value))
            editor.blockSignals(False)
        self.error.setText("")

    def _build(self, fields: tuple[dataclasses.Field, ...]) -> None:
        while self.layout_.rowCount():
            self.layout_.removeRow(0)
        self.editors.clear()
        for f in fields:
            editor = self._editor(f)
            editor.setToolTip(f"{f.name}: {f.metadata.get('help', '')}")
            editor.setObjectName(f"field_{f.name}")
            self.editors[f.name] = editor
            label = QLabel(f.name.replace("_", " "))
            label.setToolTip(editor.toolTip())
            self.layout_.addRow(label, editor)
        self.error = QLabel("")
        self.error.setObjectName("formError")
        self.error.setWordWrap(True)
        self.layout_.addRow(self.error)

    def _editor(self, f: dataclasses.Field) -> QWidget:
        meta, default, name = f.metadata, f.default, f.name
        low, high, choices = meta.get("low"), meta.get("high"), meta.get("choices")
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

    def show_error(self, message: str) -> None:
        self.error.setText(message)

    def set_locked(self, locked: bool, reason: str = "") -> None:
        for name, editor in self.editors.items():
            editor.setEnabled(not locked)
            help_text = editor.toolTip().split("\n")[0]
            editor.setToolTip(f"{help_text}\n{reason}" if locked else help_text)
            del name

    def value(self, name: str) -> Any:
        editor = self.editors[name]
        if isinstance(editor, QCheckBox):
            return editor.isChecked()
        if isinstance(editor, QComboBox):
            return editor.currentText()
        if isinstance(editor, QSpinBox | QDoubleSpinBox):
            return editor.value()
        return editor.text()
