"""Presentation mode (F5): diagram fonts >= 18 pt and thick lines for a projector, side panels folded away
(the Panels button brings them back), large plot fonts and trainable/total count, the whole model fitted."""

from __future__ import annotations

from typing import TYPE_CHECKING

from PySide6.QtCore import Qt

if TYPE_CHECKING:
    from .main_window import MainWindow

BIG_STATUS = "font-size: 18pt; font-weight: 700;"


class Presentation:
    def __init__(self, window: MainWindow) -> None:
        self.window = window
        self.on = False
        self._panels_before = True

    def toggle(self) -> None:
        self.set(not self.on)

    def set(self, on: bool) -> None:
        w = self.window
        if on == self.on:
            w.view.fit()
            return
        self.on = on
        w.actions_.present.setChecked(on)
        if on:
            self._panels_before = w.side.isVisible()
            w.set_panels(False)
        else:
            w.set_panels(self._panels_before)
        w.plots.set_presentation(on)
        # 16:9 projector: the (collapsed) model is tall and narrow, so the plots go beside it, full height.
        split = w.main_split
        if on:
            self._split_before = split.sizes()
            split.setOrientation(Qt.Orientation.Horizontal)
            width = max(split.width(), 2)
            split.setSizes([width * 11 // 20, width * 9 // 20])
        else:
            split.setOrientation(Qt.Orientation.Vertical)
            split.setSizes(getattr(self, "_split_before", [750, 200]))
        w.params_label.setStyleSheet(BIG_STATUS if on else "")
        w.bytes_label.setVisible(not on)  # room for the count that matters, within a 1280-pixel projector
        w.scene.set_presentation(on)
        w.view.set_presentation(on)
        w.step_label.setStyleSheet("font-size: 22pt;" if on else "")
        w.fix_step_label_width()
        w.view.fit()
