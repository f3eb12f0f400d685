"""Graphics items: blocks (frozen modules, containers, head), insertion points, arrows."""

from __future__ import annotations

from collections.abc import Callable

from PySide6.QtCore import QPointF, QRectF, Qt
from PySide6.QtGui import QBrush, QColor, QPainter, QPainterPath, QPen
from PySide6.QtWidgets import QGraphicsItem, QGraphicsObject, QGraphicsPathItem, QStyleOptionGraphicsItem, QWidget

from ..window import theme
from .style import Style


class GradBar(QGraphicsItem):
    """A small live bar under a part: its gradient norm relative to the largest right now.

    A child item of its own, so a new value repaints this strip alone, not the (cached) box and
    its text; and only when the filled length moves by half a pixel or more.
    """

    def __init__(self, parent: QGraphicsItem, track: QRectF, colour: QColor) -> None:
        super().__init__(parent)
        self.track, self.colour, self.fraction = track, colour.darker(115), 0.0
        self.setZValue(1)

    def set_fraction(self, fraction: float) -> None:
        fraction = max(0.0, min(1.0, fraction))
        if abs(fraction - self.fraction) * self.track.width() >= 0.5:
            self.fraction = fraction
            self.update()

    def boundingRect(self) -> QRectF:
        return self.track

    def paint(self, painter: QPainter, option: QStyleOptionGraphicsItem, widget: QWidget | None = None) -> None:
        painter.setPen(Qt.PenStyle.NoPen)
        painter.setBrush(QColor("#e4e7eb"))
        painter.drawRect(self.track)
        painter.setBrush(self.colour)
        painter.drawRect(QRectF(self.track.left(), self.track.top(), self.track.width() * self.fraction,
                                self.track.height()))


class LiveMarks:
    """Live gradient norm, table-selection mark and a tooltip made on first hover, shared by blocks and
    insertion points."""

    grad: float | None
    grad_max: float
    marked: bool
    _bar: GradBar | None = None
    _tip_maker: Callable[[], str] | None = None

    def set_tip_maker(self, make: Callable[[], str]) -> None:
        """The tooltip, made when first asked for (a hover, or a caller reading toolTip())."""
        self._tip_maker = make

    def set_tip(self, text: str) -> None:
        self._tip_maker = None
        QGraphicsItem.setToolTip(self, text)

    def toolTip(self) -> str:  # noqa: N802 - Qt name; the scene's helpEvent calls this before Qt shows it
        make, self._tip_maker = self._tip_maker, None
        if make is not None:
            QGraphicsItem.setToolTip(self, make())
        return QGraphicsItem.toolTip(self)

    def bar_geometry(self) -> tuple[QRectF, QColor] | None:
        """Where this item's gradient bar goes and its colour; None for an item without one."""
        return None

    def set_grad(self, value: float | None, vmax: float) -> None:
        self.grad, self.grad_max = value, max(vmax, 1e-12)
        if self._bar is None:
            geometry = self.bar_geometry()
            if geometry is None:
                return
            self._bar = GradBar(self, *geometry)
        self._bar.setVisible(value is not None)
        if value is not None:
            self._bar.set_fraction(value / self.grad_max)

    def set_marked(self, marked: bool) -> None:
        self.marked = marked
        self.update()


class BlockItem(LiveMarks, QGraphicsObject):
    """A box: a frozen module, a container (layer, attention, ...), the input or the head.

    role: "frozen" | "trainable" | "partial" (some tensors train, e.g. only the bias) | "head" | "head-frozen" |
    "container" | "plain" (no tensors).
    """

    def __init__(self, key: str, title: str, subtitle: str, role: str, rect: QRectF, style: Style,
                 on_click: Callable[[str], None], quant: bool = False, chevron: str = "",
                 on_chevron: Callable[[], None] | None = None) -> None:
        super().__init__()
        self.key, self.title, self.subtitle, self.role = key, title, subtitle, role
        self.rect, self.style, self.quant = rect, style, quant
        self.on_click, self.chevron, self.on_chevron = on_click, chevron, on_chevron
        self.grad: float | None = None
        self.grad_max = 1.0
        self.marked = False
        self.setPos(rect.topLeft())
        self.rect = QRectF(0, 0, rect.width(), rect.height())
        self.setAcceptHoverEvents(True)
        self.setZValue(0 if role == "container" else 1)
        # Live gradient bars repaint items ~10 times a second; a cached item (and the container
        # under it) blits a pixmap instead of re-rendering antialiased text.
        self.setCacheMode(QGraphicsItem.CacheMode.DeviceCoordinateCache)
        self.setCursor(Qt.CursorShape.PointingHandCursor)

    def boundingRect(self) -> QRectF:
        m = self.style.pen * 2
        return self.rect.adjusted(-m, -m, m, m)

    def chevron_rect(self) -> QRectF:
        size = self.style.title_fm.height()
        return QRectF(self.rect.right() - size - self.style.pad / 2, self.style.pad / 3, size, size)

    def paint(self, painter: QPainter, option: QStyleOptionGraphicsItem, widget: QWidget | None = None) -> None:
        st = self.style
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        fill, edge = _role_colours(self.role)
        pen = QPen(edge, st.pen * (1.6 if self.role in ("trainable", "head") else 1.0))
        if self.role == "container":
            pen.setStyle(Qt.PenStyle.SolidLine)
        painter.setPen(pen)
        painter.setBrush(QBrush(fill))
        painter.drawRoundedRect(self.rect, st.radius, st.radius)
        if self.marked:
            painter.setPen(QPen(theme.SELECTED, st.pen * 2.5))
            painter.setBrush(Qt.BrushStyle.NoBrush)
            painter.drawRoundedRect(self.rect.adjusted(-3, -3, 3, 3), st.radius, st.radius)
        if self.role == "partial":  # frozen box, trainable strip: only these tensors (the biases) learn
            painter.setPen(Qt.PenStyle.NoPen)
            painter.setBrush(theme.METHOD_FILL)
            painter.drawRoundedRect(self.partial_strip(), st.radius / 2, st.radius / 2)
            painter.setPen(QPen(theme.METHOD, st.pen * 1.4))
            painter.setBrush(Qt.BrushStyle.NoBrush)
            painter.drawRoundedRect(self.partial_strip(), st.radius / 2, st.radius / 2)
        painter.setPen(theme.TEXT if self.role not in ("frozen", "partial") else theme.FROZEN_TEXT)
        painter.setFont(st.title_font)
        if self.role == "container":
            header = QRectF(st.pad, st.pad / 3, self.rect.width() - 2 * st.pad, st.title_fm.height())
            painter.drawText(header, Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter, self.title)
            if self.subtitle:
                painter.setFont(st.small_font)
                painter.setPen(theme.FROZEN_TEXT)
                left = st.pad * 2 + st.text_width(self.title)
                painter.drawText(QRectF(left, st.pad / 3, self.rect.width() - left - st.pad, st.title_fm.height()),
                                 Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter, self.subtitle)
            if self.chevron:
                painter.setFont(st.title_font)
                painter.setPen(theme.ARROW)
                painter.drawText(self.chevron_rect(), Qt.AlignmentFlag.AlignCenter, self.chevron)
        else:
            lines = QRectF(self.rect.adjusted(st.pad / 2, st.pad / 3, -st.pad / 2, -st.pad / 3))
            count = self.title.count("\n") + 1
            top = QRectF(lines.left(), lines.top(), lines.width(), st.title_fm.height() * count)
            painter.drawText(top, Qt.AlignmentFlag.AlignCenter, self.title)
            if self.subtitle:
                painter.setFont(st.small_font)
                painter.setPen(theme.FROZEN_TEXT)
                sub = QRectF(lines.left(), top.bottom(), lines.width(), st.small_fm.height() + 2)
                painter.drawText(sub, Qt.AlignmentFlag.AlignCenter, self.subtitle)
            if self.chevron:
                painter.setFont(st.title_font)
                painter.setPen(theme.ARROW)
                painter.drawText(self.chevron_rect(), Qt.AlignmentFlag.AlignCenter, self.chevron)
        if self.role in ("frozen", "head-frozen", "partial"):
            draw_lock(painter, QPointF(st.pad * 0.25, st.pad * 0.25), st.small_fm.height() * 0.8, theme.FROZEN_EDGE)
        if self.quant:
            _badge(painter, st, QPointF(self.rect.right() - st.pad / 2, self.rect.bottom()), "4-bit NF4")

    def partial_strip(self) -> QRectF:
        """The band along the bottom that stands for the trainable tensors of a partly trained box."""
        st = self.style
        h = st.small_fm.height() + 4
        return QRectF(2, self.rect.height() - h - 1, self.rect.width() - 4, h)

    def bar_geometry(self) -> tuple[QRectF, QColor] | None:
        if self.role not in ("trainable", "head", "partial"):
            return None
        return _bar_track(self.style, self.rect), theme.METHOD if self.role == "partial" else \
            _role_colours(self.role)[1]

    def mousePressEvent(self, event) -> None:  # noqa: N802 - Qt override
        if self.chevron and self.on_chevron and self.chevron_rect().contains(event.pos()):
            self.on_chevron()
        else:
            self.on_click(self.key)
        event.accept()


class SiteItem(LiveMarks, QGraphicsObject):
    """An insertion point: where a method can put its trainable part. Click to add/remove."""

    def __init__(self, site_id: str, glyph: str, state: str, centre: QPointF, style: Style,
                 on_click: Callable[[str], None]) -> None:
        super().__init__()
        self.site_id, self.glyph, self.state, self.style = site_id, glyph, state, style
        self.on_click = on_click
        self.grad: float | None = None
        self.grad_max = 1.0
        self.marked = False
        self.hover = False
        self._strip: HeatStrip | None = None
        self.setPos(centre)
        self.setZValue(3)
        self.setCacheMode(QGraphicsItem.CacheMode.DeviceCoordinateCache)  # see BlockItem
        self.setAcceptHoverEvents(True)
        self.setCursor(Qt.CursorShape.ForbiddenCursor if state == "unavailable" else Qt.CursorShape.PointingHandCursor)

    @property
    def selected(self) -> bool:
        return self.state == "selected"

    def boundingRect(self) -> QRectF:
        r = self.style.site_r * 1.25 + self.style.pen * 2
        return QRectF(-r, -r, 2 * r, 2 * r + self.style.site_r * 0.9)

    def paint(self, painter: QPainter, option: QStyleOptionGraphicsItem, widget: QWidget | None = None) -> None:
        st = self.style
        r = st.site_r * (1.15 if self.hover and self.state != "unavailable" else 1.0)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        if self.state == "selected":
            painter.setPen(QPen(theme.METHOD.darker(130), st.pen))
            painter.setBrush(theme.METHOD)
            text = QColor("white")
        elif self.state == "available":
            pen = QPen(theme.METHOD, st.pen)
            pen.setStyle(Qt.PenStyle.DashLine)
            painter.setPen(pen)
            painter.setBrush(QColor("white"))
            text = theme.METHOD.darker(120)
        else:
            pen = QPen(theme.UNAVAILABLE, st.pen)
            pen.setStyle(Qt.PenStyle.DotLine)
            painter.setPen(pen)
            painter.setBrush(QColor("#f3f4f6"))
            text = theme.UNAVAILABLE
        painter.drawEllipse(QPointF(0, 0), r, r)
        if self.marked:
            painter.setPen(QPen(theme.SELECTED, st.pen * 2))
            painter.setBrush(Qt.BrushStyle.NoBrush)
            painter.drawEllipse(QPointF(0, 0), r + 4, r + 4)
        painter.setPen(text)
        painter.setFont(st.glyph_font)
        painter.drawText(QRectF(-r, -r, 2 * r, 2 * r), Qt.AlignmentFlag.AlignCenter, self.glyph)

    def bar_geometry(self) -> tuple[QRectF, QColor] | None:
        if self.state != "selected":
            return None
        w, r = 1.3 * self.style.site_r, self.style.site_r
        return _bar_track(self.style, QRectF(-w, -r, 2 * w, 2 * r + r * 0.85)), theme.METHOD

    def set_gains(self, gains: list[float]) -> None:
        """IA3's learned gain vector as a live heat strip above the point."""
        if self._strip is None:
            r = self.style.site_r
            self._strip = HeatStrip(self, QRectF(-1.6 * r, -2.0 * r, 3.2 * r, 0.6 * r))
        self._strip.set_values(gains)

    def hoverEnterEvent(self, event) -> None:  # noqa: N802
        self.hover = True
        self.update()

    def hoverLeaveEvent(self, event) -> None:  # noqa: N802
        self.hover = False
        self.update()

    def mousePressEvent(self, event) -> None:  # noqa: N802
        self.on_click(self.site_id)
        event.accept()


class HeatStrip(QGraphicsItem):
    """A gain vector as coloured cells: white 1.0 (neutral), blue below (damped), orange above (amplified).
    Wide vectors are averaged into at most MAX_CELLS cells."""

    MAX_CELLS = 16

    def __init__(self, parent: QGraphicsItem, rect: QRectF) -> None:
        super().__init__(parent)
        self.rect, self.values = rect, []
        self.setZValue(2)

    def set_values(self, values: list[float]) -> None:
        n = len(values)
        cells = min(n, self.MAX_CELLS)
        if cells:
            edges = [round(i * n / cells) for i in range(cells + 1)]
            values = [sum(values[a:b]) / max(1, b - a) for a, b in zip(edges, edges[1:], strict=False)]
        if values != self.values:
            self.values = values
            self.update()

    def boundingRect(self) -> QRectF:
        return self.rect.adjusted(-1, -1, 1, 1)

    def paint(self, painter: QPainter, option: QStyleOptionGraphicsItem, widget: QWidget | None = None) -> None:
        from .gains import gain_colour

        if not self.values:
            return
        w = self.rect.width() / len(self.values)
        painter.setPen(Qt.PenStyle.NoPen)
        for i, value in enumerate(self.values):
            painter.setBrush(QColor(*gain_colour(value)))
            painter.drawRect(QRectF(self.rect.left() + i * w, self.rect.top(), w, self.rect.height()))
        painter.setPen(QPen(theme.FROZEN_EDGE, 1))
        painter.setBrush(Qt.BrushStyle.NoBrush)
        painter.drawRect(self.rect)


class TokenRowItem(QGraphicsItem):
    """A row of token cells: n accent cells (soft prompts or prefix keys) then L plain ones (L -> L+n).

    With `words`, the plain cells carry the sentence's tokens (the "Try it" sentence on the input row)."""

    MAX_SHOWN = 10

    def __init__(self, length: int, prompt: int, origin: QPointF, style: Style,
                 words: tuple[str, ...] = (), scale: float = 1.0, prompt_label: str = "p", frozen: int = 0) -> None:
        super().__init__()
        self.length, self.prompt, self.style = length, prompt, style
        self.frozen = frozen  # the first accent cells are fixed (drawn frozen, with the method's edge)
        self.cell = 13 * style.scale * scale
        self.shown = min(length, self.MAX_SHOWN)
        self.shown_prompt = min(prompt, self.MAX_SHOWN)
        self.words = tuple(words[: self.shown])
        self.prompt_label = prompt_label
        self.layer: int | None = None  # the attention layer whose keys these are (prefix tuning's key rows)
        self.weights: list[float] | None = None  # each key's attention weight, n accent keys first (the lens's)
        self.font = style.small_font
        self.setPos(origin)
        self.setZValue(2)

    def cell_widths(self) -> list[float]:
        fm = self.style.small_fm
        widths = [max(self.cell, fm.horizontalAdvance(w) + self.cell * 0.6) for w in self.words]
        return widths + [self.cell] * (self.shown - len(widths))

    def height(self) -> float:
        return max(self.cell, self.style.small_fm.height() + 4) if self.words else self.cell

    def width(self) -> float:
        gap = self.cell * 0.35
        extra = (self.cell if self.length > self.shown else 0) + (self.cell if self.prompt > self.shown_prompt else 0)
        return (self.shown_prompt * (self.cell + gap) + sum(w + gap for w in self.cell_widths()) + extra
                + (gap * 2 if self.prompt else 0))

    def accent_count(self) -> int:
        return self.shown_prompt

    def set_weights(self, weights: list[float] | None) -> None:
        """Shade each key by the attention it gets (n accent keys, then the sentence's; None: no shading)."""
        self.weights = list(weights) if weights else None
        self.update()

    def _weight_bar(self, painter: QPainter, rect: QRectF, index: int) -> None:
        """The key's share of its row's largest weight, as a dark bar rising from the cell's bottom."""
        if not self.weights or index >= len(self.weights):
            return
        top = max(self.weights) or 1.0
        height = rect.height() * max(0.0, self.weights[index]) / top
        painter.save()
        painter.setPen(Qt.PenStyle.NoPen)
        painter.setBrush(QColor(31, 41, 51, 150))
        painter.drawRect(QRectF(rect.left(), rect.bottom() - height, rect.width(), height))
        painter.restore()

    def boundingRect(self) -> QRectF:
        return QRectF(0, 0, self.width() + 4, self.height() + 4)

    def paint(self, painter: QPainter, option: QStyleOptionGraphicsItem, widget: QWidget | None = None) -> None:
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        gap, x, h = self.cell * 0.35, 0.0, self.height()
        painter.setFont(self.font)
        for index in range(self.shown_prompt):
            painter.setPen(QPen(theme.METHOD.darker(120), self.style.pen))
            painter.setBrush(theme.FROZEN_FILL if index < self.frozen else theme.METHOD)
            painter.drawRoundedRect(QRectF(x, 0, self.cell, h), 2, 2)
            self._weight_bar(painter, QRectF(x, 0, self.cell, h), index)
            x += self.cell + gap
        if self.prompt > self.shown_prompt:
            painter.drawText(QRectF(x, 0, self.cell, h), Qt.AlignmentFlag.AlignCenter, "…")
            x += self.cell
        if self.prompt:
            x += gap * 2
        widths = self.cell_widths()
        for i, w in enumerate(widths):
            painter.setPen(QPen(theme.FROZEN_EDGE, self.style.pen))
            painter.setBrush(QColor("white"))
            painter.drawRoundedRect(QRectF(x, 0, w, h), 2, 2)
            self._weight_bar(painter, QRectF(x, 0, w, h), self.prompt + i)
            if i < len(self.words):
                painter.setPen(theme.TEXT)
                painter.drawText(QRectF(x, 0, w, h), Qt.AlignmentFlag.AlignCenter, self.words[i])
            x += w + gap
        if self.length > self.shown:
            painter.setPen(theme.FROZEN_TEXT)
            painter.drawText(QRectF(x, 0, self.cell, h), Qt.AlignmentFlag.AlignCenter, "…")


def arrow(start: QPointF, end: QPointF, style: Style, dashed: bool = False) -> QGraphicsPathItem:
    """A straight arrow with a filled head."""
    path = QPainterPath(start)
    path.lineTo(end)
    head = 6 * style.scale
    if abs(end.x() - start.x()) >= abs(end.y() - start.y()):
        sign = 1 if end.x() >= start.x() else -1
        a = QPointF(end.x() - sign * head, end.y() - head * 0.6)
        b = QPointF(end.x() - sign * head, end.y() + head * 0.6)
    else:
        sign = 1 if end.y() >= start.y() else -1
        a = QPointF(end.x() - head * 0.6, end.y() - sign * head)
        b = QPointF(end.x() + head * 0.6, end.y() - sign * head)
    path.moveTo(end)
    path.lineTo(a)
    path.lineTo(b)
    path.closeSubpath()
    item = QGraphicsPathItem(path)
    pen = QPen(theme.ARROW, style.pen)
    if dashed:
        pen.setStyle(Qt.PenStyle.DashLine)
    item.setPen(pen)
    item.setBrush(theme.ARROW)
    item.setZValue(0.5)
    return item


def _role_colours(role: str) -> tuple[QColor, QColor]:
    return {
        "frozen": (theme.FROZEN_FILL, theme.FROZEN_EDGE),
        "trainable": (theme.METHOD_FILL, theme.METHOD),
        "partial": (theme.FROZEN_FILL, theme.FROZEN_EDGE),
        "head": (theme.HEAD_FILL, theme.HEAD),
        "head-frozen": (theme.FROZEN_FILL, theme.FROZEN_EDGE),
        "container": (theme.CONTAINER_FILL, theme.CONTAINER_EDGE),
        "plain": (QColor("white"), theme.FROZEN_EDGE),
    }[role]


def _badge(painter: QPainter, st: Style, anchor: QPointF, text: str) -> None:
    painter.setFont(st.small_font)
    w, h = st.text_width(text, small=True) + st.pad, st.small_fm.height() + 2
    rect = QRectF(anchor.x() - w, anchor.y() - h / 2, w, h)
    painter.setPen(Qt.PenStyle.NoPen)
    painter.setBrush(theme.QUANT)
    painter.drawRoundedRect(rect, h / 2, h / 2)
    painter.setPen(QColor("white"))
    painter.drawText(rect, Qt.AlignmentFlag.AlignCenter, text)


def _bar_track(st: Style, rect: QRectF) -> QRectF:
    """The gradient bar's strip along the bottom of `rect`."""
    h = 5 * st.scale
    return QRectF(rect.left() + 3, rect.bottom() - h - 2, rect.width() - 6, h)


def draw_lock(painter: QPainter, at: QPointF, size: float, colour: QColor) -> None:
    """A padlock drawn with paths (no emoji font needed): the mark of a frozen tensor."""
    painter.save()
    w = size * 0.8
    body = QRectF(at.x(), at.y() + size * 0.45, w, size * 0.55)
    pen = QPen(colour, max(1.0, size * 0.13))
    painter.setPen(pen)
    painter.setBrush(Qt.BrushStyle.NoBrush)
    shackle = QRectF(at.x() + w * 0.2, at.y() + size * 0.05, w * 0.6, size * 0.8)
    painter.drawArc(shackle, 0, 180 * 16)
    painter.setPen(Qt.PenStyle.NoPen)
    painter.setBrush(colour)
    painter.drawRoundedRect(body, size * 0.08, size * 0.08)
    painter.restore()
