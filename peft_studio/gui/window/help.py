"""Help for a first run: the keyboard shortcuts (generated from the actions) and About PEFT (the seed's four
places, one click each). The first-launch hint is a strip above the diagram (strips.py)."""

from __future__ import annotations

from collections.abc import Callable, Iterable

from PySide6.QtCore import Qt
from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QHeaderView,
    QLabel,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from ...core.bases.sites import ACTIVATION, ADAPTER, KV_PREFIX, PROMPT
from ...core.methods import METHODS

# The seed's four places (its own words), each the site kind a method claims there.
PLACES = (
    (PROMPT, "Input", "Put it on the input side: a few trainable soft-prompt vectors before the input embedding, "
                      "like hidden sticky notes on the desktop at startup (sequence length L → L + n)."),
    (KV_PREFIX, "KV prefix", "Put it in the context prefix of each layer: extra trainable key/value vectors that "
                             "attention can look at, like preloading some context before each software starts."),
    (ADAPTER, "Between layers", "Put it in a small module between layers: a bottleneck on the residual path, like "
                                "plugging a tiny expansion card into the motherboard."),
    (ACTIVATION, "Activation scaling", "Put it on the scaling factors of intermediate activations: multiply some "
                                       "hidden dimensions by learned gains, like adjustable gain controls on a few "
                                       "key knobs."),
)


def shortcut_rows(actions: Iterable[QAction]) -> list[tuple[str, str, str]]:
    """(keys, action, what it does) for every action that has a shortcut."""
    rows = []
    for action in actions:
        keys = ", ".join(s.toString(QKeySequence.SequenceFormat.NativeText) for s in action.shortcuts())
        if keys:
            rows.append((keys, action.text().replace("&", ""), action.statusTip()))
    return rows


def method_for_place(kind: str) -> str | None:
    """The registered method whose click claims this kind of place (the registry is the one list)."""
    return next((name for name, m in METHODS.items() if kind in m.claims_kinds), None)


class ShortcutsDialog(QDialog):
    def __init__(self, parent: QWidget, actions: Iterable[QAction]) -> None:
        super().__init__(parent)
        self.setWindowTitle("Keyboard shortcuts")
        rows = shortcut_rows(actions)
        self.table = QTableWidget(len(rows), 3)
        self.table.setHorizontalHeaderLabels(["keys", "action", "what it does"])
        self.table.verticalHeader().setVisible(False)
        self.table.horizontalHeader().setSectionResizeMode(2, QHeaderView.ResizeMode.Stretch)
        for r, row in enumerate(rows):
            for c, value in enumerate(row):
                item = QTableWidgetItem(value)
                item.setFlags(item.flags() & ~Qt.ItemFlag.ItemIsEditable)
                self.table.setItem(r, c, item)
        self.table.resizeColumnsToContents()
        note = QLabel("In a text field, typing and arrows stay the field's; Ctrl and F-key shortcuts still work. "
                      "Esc leaves the field.")
        note.setWordWrap(True)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addWidget(self.table)
        layout.addWidget(note)
        layout.addWidget(buttons)
        self.resize(760, 520)


class AboutPeftDialog(QDialog):
    """The four places, each with a button that selects the method that puts its part there."""

    def __init__(self, parent: QWidget, choose: Callable[[str], object]) -> None:
        super().__init__(parent)
        self.setWindowTitle("About PEFT: where does the trainable part go?")
        layout = QVBoxLayout(self)
        intro = QLabel("<h3>Freeze the big model; train a small part. The question is <i>where</i>.</h3>"
                       "Don't memorize methods by name: focus on where the trainable part is placed. Different "
                       "places mean different costs, expressive power and switching behaviour.")
        intro.setWordWrap(True)
        layout.addWidget(intro)
        self.buttons: dict[str, QPushButton] = {}
        for kind, title, text in PLACES:
            name = method_for_place(kind)
            label = QLabel(f"<b>{title}</b>: {text}")
            label.setWordWrap(True)
            layout.addWidget(label)
            if name is not None:
                button = QPushButton(f"Show me: {METHODS[name].title}")
                button.setToolTip(f"Select {METHODS[name].title} in the window: {METHODS[name].card.where}")
                button.clicked.connect(lambda _c=False, n=name: (choose(n), self.accept()))
                layout.addWidget(button, 0, Qt.AlignmentFlag.AlignLeft)
                self.buttons[kind] = button
        close = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        close.rejected.connect(self.reject)
        layout.addWidget(close)
        self.resize(640, 520)
