"""The diagram's view: wheel zoom under the cursor, drag to pan, fit to window, a fixed legend."""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtGui import QPainter
from PySide6.QtWidgets import QGraphicsView, QLabel, QWidget

from ...core.view import ViewState
from ..window import theme
from ..window.theme import LOCK_ICON, lock_html
from .scene import DiagramScene

__all__ = ["LOCK_ICON", "DiagramView", "legend_html", "lock_html"]


def legend_html(big: bool = False) -> str:
    size = "13pt" if big else "9pt"

    def chip(colour: str, border: str, text: str) -> str:
        return (f"<span style='background:{colour}; border:1px solid {border}; color:{colour}'>&nbsp;&nbsp;&nbsp;"
                f"</span>&nbsp;{text}")

    return (f"<div style='font-size:{size}'>"
            f"{chip('#eef0f3', '#9aa3ad', lock_html(20 if big else 12) + ' frozen base')}&nbsp;&nbsp; "
            f"{chip(theme.METHOD.name(), theme.METHOD.name(), 'trainable method part')}&nbsp;&nbsp; "
            f"{chip(theme.HEAD.name(), theme.HEAD.name(), 'trainable head')}&nbsp;&nbsp; "
            f"<span style='background:{theme.QUANT.name()}; color:white'>&nbsp;4-bit NF4&nbsp;</span> quantized"
            f"<br>insertion point: <b style='color:{theme.METHOD.name()}'>●</b> chosen &nbsp;"
            f"<b style='color:{theme.METHOD.name()}'>◌</b> available (click) &nbsp;"
            f"<b style='color:#c4c9cf'>◌</b> unavailable (hover for why) &nbsp; bar = live gradient norm</div>")


class DiagramView(QGraphicsView):
    """Wheel and Ctrl+=/- zoom about the cursor (the view's centre when the cursor is elsewhere) at any size:
    the limits are relative to the fitted scale, so an 80-layer stack fitted to a 35-pixel strip still zooms
    in. The zoom (1 = fitted) and the centre are kept in the view state, so a lesson can save them."""

    ZOOM_STEP = 1.18
    MAX_SCALE = 8.0  # text pixels per scene pixel: beyond that nothing more can be read
    MIN_FACTOR = 0.5  # zoomed out to half the fitted size at most

    def __init__(self, scene: DiagramScene, view_state: ViewState | None = None, parent: QWidget | None = None) -> None:
        super().__init__(scene, parent)
        self.view_state = view_state or scene.view_state
        self.setRenderHints(QPainter.RenderHint.Antialiasing | QPainter.RenderHint.TextAntialiasing)
        self.setDragMode(QGraphicsView.DragMode.ScrollHandDrag)
        self.setTransformationAnchor(QGraphicsView.ViewportAnchor.AnchorUnderMouse)
        self.setResizeAnchor(QGraphicsView.ViewportAnchor.AnchorViewCenter)
        self.setViewportUpdateMode(QGraphicsView.ViewportUpdateMode.SmartViewportUpdate)
        self.setBackgroundBrush(Qt.GlobalColor.white)
        self.setToolTip("")
        self.legend = QLabel(legend_html(), self)
        self.legend.setStyleSheet("background: rgba(255,255,255,230); border: 1px solid #d5dae1; "
                                  "border-radius: 6px; padding: 4px 8px;")
        self.legend.setToolTip("Colour legend: what trains and what stays frozen")
        self.legend.move(8, 8)
        self.legend.setWordWrap(True)  # wraps on a narrow screen instead of widening the window
        self.auto_fit = True
        self.presentation = False
        self.fit_scale = 1.0  # the scale at which the whole diagram fits (zoom 1)
        scene.rebuilt.connect(lambda: self.auto_fit and self.fit())
        self.legend.adjustSize()

    def set_presentation(self, on: bool) -> None:
        self.presentation = on
        self.legend.setText(legend_html(on))

    def wheelEvent(self, event) -> None:  # noqa: N802 - Qt override
        delta = event.angleDelta().y()
        if delta:
            self.zoom(self.ZOOM_STEP if delta > 0 else 1 / self.ZOOM_STEP)

    def zoom(self, factor: float) -> bool:
        """Scale by `factor` about the cursor when it is over the view (Qt's AnchorUnderMouse), else about the
        centre. False at the limits: half the fitted size, 8x."""
        target = self.transform().m11() * factor
        if not min(self.fit_scale * self.MIN_FACTOR, 1.0) <= target <= self.MAX_SCALE:
            return False
        self.auto_fit = False  # the user chose a zoom: keep it across resizes and rebuilds
        self.scale(factor, factor)
        self._remember()
        return True

    def fitted_scale(self) -> float | None:
        """The scale `fit` gives at the viewport's size now (None for an empty scene): a lesson's zoom 1."""
        rect = self.scene().sceneRect()
        if rect.isEmpty():
            return None
        viewport = self.viewport().size()
        margin = 4  # a pen's width inside the edge: every item, input to head, is in view
        # The whole diagram, always (deep stacks collapse their layers instead of shrinking past reading).
        scale = min((viewport.width() - 2 * margin) / rect.width(), (viewport.height() - 2 * margin) / rect.height())
        return max(0.002, min(scale, 2.5))

    def fit(self) -> None:
        """Whole diagram in view, below the legend; stays fitted on resize until the user zooms."""
        self.auto_fit = True
        scale = self.fitted_scale()
        if scale is None:
            return
        rect = self.scene().sceneRect()
        self.fit_scale = scale
        self.resetTransform()
        self.scale(scale, scale)
        self.centerOn(rect.center())

    def resizeEvent(self, event) -> None:  # noqa: N802
        super().resizeEvent(event)
        if self.auto_fit:
            self.fit()

    def mouseMoveEvent(self, event) -> None:  # noqa: N802
        if event.buttons():
            self.auto_fit = False  # dragging pans: the user placed the view
        super().mouseMoveEvent(event)

    def mouseReleaseEvent(self, event) -> None:  # noqa: N802
        super().mouseReleaseEvent(event)
        if not self.auto_fit:
            self._remember()

    def zoom_level(self) -> float:
        return self.transform().m11()

    def _remember(self) -> None:
        """The zoom relative to the fitted size and the scene point at the centre, into the view state."""
        centre = self.mapToScene(self.viewport().rect().center())
        zoom = self.zoom_level() / self.fit_scale if self.fit_scale else 1.0
        self.view_state.set(zoom=round(min(max(zoom, 0.05), 20.0), 4), scroll=(round(centre.x(), 1),
                                                                              round(centre.y(), 1)))
