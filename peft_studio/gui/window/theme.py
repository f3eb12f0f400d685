"""Colours, fonts and the stylesheet: one place so the diagram, table and legend agree."""

from __future__ import annotations

from PySide6.QtGui import QColor

from ...core.files.resources import resource_path

# The legend's vocabulary: frozen base muted, method parts accent, head a second colour, 4-bit marked.
FROZEN_FILL = QColor("#eef0f3")
FROZEN_EDGE = QColor("#9aa3ad")
FROZEN_TEXT = QColor("#4a5260")
METHOD = QColor("#f07f16")  # trainable method parts (and base tensors a baseline unfreezes)
METHOD_FILL = QColor("#fde3c8")
HEAD = QColor("#2f7fd8")
HEAD_FILL = QColor("#d6e7fb")
QUANT = QColor("#8e44ad")  # 4-bit NF4 badge
UNAVAILABLE = QColor("#c4c9cf")
CONTAINER_FILL = QColor("#f8f9fb")
CONTAINER_EDGE = QColor("#c9ced6")
ARROW = QColor("#7b8694")
SELECTED = QColor("#1b9e77")  # table <-> diagram selection outline
TEXT = QColor("#1f2933")

LOCK = "\U0001f512"  # plain-text places only: many lab machines have no emoji font (a box in a tooltip)
LOCK_ICON = resource_path("icons", "lock.png")  # optional art: callers fall back to text when it is missing


def lock_html(px: int) -> str:
    """The drawn padlock as an <img> for rich text (emoji fonts are often missing on lab machines)."""
    return f"<img src='{LOCK_ICON.as_posix()}' width={px} height={px}>" if LOCK_ICON.is_file() else "(locked)"

STYLESHEET = """
QMainWindow, QWidget { font-size: 10pt; }
QToolBar { spacing: 4px; padding: 3px; border-bottom: 1px solid #d5dae1; background: #fbfcfd; }
QToolBar QToolButton { padding: 4px 5px; border-radius: 4px; }
QToolBar QToolButton:hover { background: #e8edf3; }
QToolBar QToolButton#qt_toolbar_ext_button { padding: 0px; min-width: 16px; }
QToolBar QToolButton:checked { background: #fde3c8; }
QLabel#stepCounter { background: #fbfcfd; font-size: 15pt; font-weight: 600; color: #1f2933; padding: 0 8px; }
QLabel#speed { color: #5b6672; min-width: 90px; }
QGroupBox { font-weight: 600; border: 1px solid #d5dae1; border-radius: 6px; margin-top: 10px; padding-top: 6px; }
QGroupBox::title { subcontrol-origin: margin; left: 8px; padding: 0 4px; }
QTableView { gridline-color: #e3e7ec; selection-background-color: #cfe9df; selection-color: #1f2933; }
QStatusBar QLabel { padding: 0 8px; }
QLabel#formError { color: #b3261e; }
QLabel#bigCount { font-size: 16pt; font-weight: 700; color: #f07f16; }
"""


def owner_colours(owner: str, trainable: bool) -> tuple[QColor, QColor]:
    """(fill, edge) for a tensor: head blue, trainable accent, frozen grey."""
    if owner == "head" and trainable:
        return HEAD_FILL, HEAD
    if trainable:
        return METHOD_FILL, METHOD
    return FROZEN_FILL, FROZEN_EDGE


def human_bytes(count: int) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if count < 1000 or unit == "GB":
            return f"{count:,} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1000
    return f"{count} B"
