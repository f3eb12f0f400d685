"""Shortcuts while a text field has focus: the window's Ctrl/F-key shortcuts still work, the keys the field
needs (typing, arrows, its own undo/copy/paste) stay the field's, and Esc leaves the field."""

from __future__ import annotations

from collections.abc import Callable, Iterable

from PySide6.QtCore import QEvent, QObject, Qt
from PySide6.QtGui import QAction, QKeyEvent, QKeySequence
from PySide6.QtWidgets import QAbstractSpinBox, QApplication, QLineEdit, QPlainTextEdit, QTextEdit, QWidget

# Editing keys a text field owns even with Ctrl: undo/redo, select all, clipboard, word moves and deletes.
FIELD_KEYS = {Qt.Key.Key_Z, Qt.Key.Key_Y, Qt.Key.Key_A, Qt.Key.Key_C, Qt.Key.Key_V, Qt.Key.Key_X,
              Qt.Key.Key_Left, Qt.Key.Key_Right, Qt.Key.Key_Up, Qt.Key.Key_Down, Qt.Key.Key_Home, Qt.Key.Key_End,
              Qt.Key.Key_Backspace, Qt.Key.Key_Delete, Qt.Key.Key_Insert}
TEXT_FIELDS = (QLineEdit, QAbstractSpinBox, QTextEdit, QPlainTextEdit)


def text_field(widget: QWidget | None) -> QWidget | None:
    """The text field `widget` is (or sits in: a spin box's inner line edit), else None."""
    while widget is not None:
        if isinstance(widget, TEXT_FIELDS):
            outer = widget.parentWidget()
            return outer if isinstance(outer, QAbstractSpinBox) else widget
        widget = widget.parentWidget() if isinstance(widget, QLineEdit) else None
    return None


def field_needs(event: QKeyEvent) -> bool:
    """True for a key a text field uses itself: everything without Ctrl/Alt/Meta (but F-keys), and editing combos."""
    key = Qt.Key(event.key())
    if Qt.Key.Key_F1 <= key <= Qt.Key.Key_F35:
        return False
    mods = event.modifiers() & (Qt.KeyboardModifier.ControlModifier | Qt.KeyboardModifier.AltModifier
                                | Qt.KeyboardModifier.MetaModifier)
    if not mods:
        return True
    return key in FIELD_KEYS


class FieldKeys(QObject):
    """Event filter on the focused text fields of one window: see the module docstring."""

    def __init__(self, window: QWidget, leave_to: QWidget, actions: Callable[[], Iterable[QAction]]) -> None:
        super().__init__(window)
        self.window, self.leave_to, self.actions = window, leave_to, actions
        self._watched: set[int] = set()
        # Filter only the focused text fields (an application-wide Python filter would run for every event,
        # costing the GUI thread, and so the trainer, during a run).
        QApplication.instance().focusChanged.connect(self._focus_changed)

    def _focus_changed(self, _old: QWidget | None, new: QWidget | None) -> None:
        if new is not None and text_field(new) is not None and id(new) not in self._watched \
                and new.window() is self.window:
            key = id(new)
            self._watched.add(key)
            new.installEventFilter(self)
            new.destroyed.connect(lambda _o=None: self._watched.discard(key))

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:  # noqa: N802 - Qt override
        if event.type() != QEvent.Type.ShortcutOverride or not isinstance(watched, QWidget):
            return False
        field = text_field(watched)
        if field is None:
            return False
        if event.key() == Qt.Key.Key_Escape and not event.modifiers():
            field.clearFocus()
            self.leave_to.setFocus(Qt.FocusReason.ShortcutFocusReason)
            event.accept()  # consumed: Esc leaves the field, a second Esc reaches the window (Stop)
            return True
        if field_needs(event):
            return False  # the field's own handling decides (it accepts what it types)
        if self._is_window_shortcut(event):
            event.ignore()  # not the field's: the window's shortcut runs
            return True
        return False

    def _is_window_shortcut(self, event: QKeyEvent) -> bool:
        pressed = QKeySequence(event.keyCombination())
        for action in self.actions():
            for shortcut in action.shortcuts():
                if shortcut.matches(pressed) == QKeySequence.SequenceMatch.ExactMatch:
                    return True
        return False
