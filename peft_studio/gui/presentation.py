"""Presentation mode (F5): diagram fonts >= 18 pt and thick lines for a projector, side panel folded away."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .window import MainWindow


class Presentation:
    def __init__(self, window: MainWindow) -> None:
        self.window = window
        self.on = False

    def toggle(self) -> None:
        self.set(not self.on)

    def set(self, on: bool) -> None:
        w = self.window
        self.on = on
        w.actions_.present.setChecked(on)
        w.side.setVisible(not on)
        w.scene.set_presentation(on)
        w.view.set_presentation(on)
        w.step_label.setStyleSheet("font-size: 22pt;" if on else "")
        w.fix_step_label_width()
        w.view.fit()
