"""One tile of the family map: a method's miniature of the base with its trainable parts lit in its colour, and its
figures under it (core/runs/family_map.py). Click it, or press Enter while it has the keyboard focus, to open the
method in the main diagram. A method that cannot sit on the base is a grey tile saying why.
"""

from __future__ import annotations

from dataclasses import dataclass

from PySide6.QtCore import QRectF, QSize, Qt, Signal
from PySide6.QtGui import QColor, QFont, QFontMetrics, QPainter, QPen
from PySide6.QtWidgets import QSizePolicy, QWidget

from ...core.runs.compare import human_bytes
from ...core.runs.family_map import MapTile, latency_text, merge_text, share_text
from ...core.runs.family_miniature import Miniature, MiniRow
from ..plain import tip

BLOCK_FILL = QColor("#eef0f3")
BLOCK_EDGE = QColor("#b8bec8")
CELL_OFF = QColor("#d5d9df")
TEXT = QColor("#1f2328")
MUTED = QColor("#6a7380")


@dataclass(frozen=True)
class TileMetrics:
    """Sizes at normal and presentation scale (a projector at 1280x720 must read the figures)."""

    presentation: bool = False

    @property
    def size(self) -> QSize:
        return QSize(236, 196) if self.presentation else QSize(164, 144)

    @property
    def miniature_height(self) -> int:
        return 62 if self.presentation else 46

    def font(self, bold: bool = False) -> QFont:
        font = QFont()
        font.setPointSizeF((15 if bold else 12.5) if self.presentation else (10 if bold else 8.5))
        font.setBold(bold)
        return font


def figure_lines(tile: MapTile) -> list[str]:
    """The figures under a tile's miniature, in words that fit its width."""
    if tile.skipped:
        return ["does not apply here:", tile.skipped]
    latency = f"{latency_text(tile)} added" if tile.latency_ms is not None else \
        "latency: meta device" if "meta device" in tile.latency_note else "latency not measured"
    return [f"{compact(tile.trainable)} trainable · {share_text(tile.share)}",
            f"adapter {human_bytes(tile.adapter_bytes)}", latency, merge_text(tile)]


def compact(count: int) -> str:
    """3,428,352 -> 3.43M: a tile is narrow (its tooltip has every digit)."""
    for limit, unit in ((1e9, "G"), (1e6, "M"), (1e4, "k")):
        if count >= limit:
            return f"{count / limit:.3g}{unit}"
    return f"{count:,}"


def tooltip_text(tile: MapTile, batch: int) -> str:
    lines = [f"{tile.title} ({tile.method}) — {tile.group}", f"where: {tile.where}"]
    if tile.skipped:
        lines.append(f"does not apply to this base: {tile.skipped}")
        return "\n".join(lines)
    head = tile.trainable - tile.method_trainable
    lines += [f"trainable: {tile.trainable:,} ({tile.method_trainable:,} of the method"
              f"{f', {head:,} of the head' if head else ''}), {share_text(tile.share)} of the model",
              f"adapter: {human_bytes(tile.adapter_bytes)} ({tile.adapter_bytes:,} bytes of trainable tensors)",
              f"sites used: {len(tile.sites)}",
              f"{merge_text(tile)}: {tile.merge_note}"]
    if tile.latency_ms is not None:
        lines.append(f"added latency: {tile.latency_ms:+.3f} ms (spread ±{tile.latency_spread_ms:.3f} ms) over the "
                     f"bare base's {tile.bare_ms:.3f} ms: medians of timed pairs of forwards of {batch} texts on one "
                     "thread")
    else:
        lines.append(f"latency: {tile.latency_note}")
    if tile.fitted:
        lines.append("its defaults do not fit this base; built from " +
                     ", ".join(f"{k}={v}" for k, v in tile.options.items()))
    lines.append("Click (or Enter) to open it in the diagram.")
    return "\n".join(lines)


class FamilyTile(QWidget):
    """Paints one MapTile; `chosen(method)` on a click or Enter."""

    chosen = Signal(str)

    def __init__(self, tile: MapTile, shape: Miniature, batch: int, metrics: TileMetrics,
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.tile = tile
        self.shape = shape
        self.metrics = metrics
        self.current = False  # the studio's method: drawn with a thick border
        self.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
        self.setSizePolicy(QSizePolicy.Policy.Fixed, QSizePolicy.Policy.Fixed)
        self.setFixedSize(metrics.size)
        self.setCursor(Qt.CursorShape.PointingHandCursor)
        self.setToolTip(tip(tooltip_text(tile, batch)))
        self.setAccessibleName(f"{tile.method}: {'; '.join(figure_lines(tile))}")

    def set_metrics(self, metrics: TileMetrics) -> None:
        self.metrics = metrics
        self.setFixedSize(metrics.size)
        self.update()

    def set_current(self, current: bool) -> None:
        if current != self.current:
            self.current = current
            self.update()

    # ---- input ---------------------------------------------------------------------------------------
    def mouseReleaseEvent(self, event) -> None:  # noqa: N802 - Qt override
        if event.button() == Qt.MouseButton.LeftButton and self.rect().contains(event.position().toPoint()):
            self.chosen.emit(self.tile.method)
            return
        super().mouseReleaseEvent(event)

    def keyPressEvent(self, event) -> None:  # noqa: N802 - Qt override
        if event.key() in (Qt.Key.Key_Return, Qt.Key.Key_Enter, Qt.Key.Key_Space):
            self.chosen.emit(self.tile.method)
            return
        super().keyPressEvent(event)

    def focusInEvent(self, event) -> None:  # noqa: N802 - Qt override
        super().focusInEvent(event)
        self.update()

    def focusOutEvent(self, event) -> None:  # noqa: N802 - Qt override
        super().focusOutEvent(event)
        self.update()

    # ---- drawing -------------------------------------------------------------------------------------
    def paintEvent(self, event) -> None:  # noqa: N802 - Qt override
        painter = QPainter(self)
        try:
            self._paint(painter)
        finally:
            painter.end()

    def _paint(self, painter: QPainter) -> None:
        tile, m = self.tile, self.metrics
        colour = QColor(tile.colour) if tile.applies else MUTED
        rect = QRectF(self.rect()).adjusted(1.5, 1.5, -1.5, -1.5)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing, True)
        painter.setPen(QPen(colour if self.current else BLOCK_EDGE, 4 if self.current else 1))
        painter.setBrush(QColor("#ffffff") if tile.applies else QColor("#f4f4f4"))
        painter.drawRoundedRect(rect, 6, 6)
        if self.hasFocus():
            painter.setPen(QPen(QColor("#1f6feb"), 2, Qt.PenStyle.DashLine))
            painter.setBrush(Qt.BrushStyle.NoBrush)
            painter.drawRoundedRect(rect.adjusted(3, 3, -3, -3), 5, 5)
        pad = 7.0 if m.presentation else 5.0
        inner = rect.adjusted(pad, pad, -pad, -pad)
        title_font = m.font(bold=True)
        painter.setFont(title_font)
        painter.setPen(colour if tile.applies else MUTED)
        title_h = QFontMetrics(title_font).height()
        title = QFontMetrics(title_font).elidedText(tile.method, Qt.TextElideMode.ElideRight, int(inner.width()))
        painter.drawText(QRectF(inner.left(), inner.top(), inner.width(), title_h),
                         Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter, title)
        top = inner.top() + title_h + 2
        mini = QRectF(inner.left(), top, inner.width(), m.miniature_height)
        self._paint_miniature(painter, mini, colour)
        body = m.font()
        painter.setFont(body)
        metrics = QFontMetrics(body)
        y = mini.bottom() + 3
        painter.setPen(TEXT if tile.applies else MUTED)
        lines = figure_lines(tile)
        if tile.skipped:  # the reason, wrapped into what is left of the tile
            painter.drawText(QRectF(inner.left(), y, inner.width(), metrics.height()), Qt.AlignmentFlag.AlignLeft,
                             lines[0])
            painter.drawText(QRectF(inner.left(), y + metrics.height(), inner.width(),
                                    inner.bottom() - y - metrics.height()),
                             Qt.AlignmentFlag.AlignLeft | Qt.TextFlag.TextWordWrap, lines[1])
            return
        for line in lines:
            if y + metrics.height() > inner.bottom() + 2:
                break
            painter.drawText(QRectF(inner.left(), y, inner.width(), metrics.height()),
                             Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter,
                             metrics.elidedText(line, Qt.TextElideMode.ElideRight, int(inner.width())))
            y += metrics.height()

    def _paint_miniature(self, painter: QPainter, area: QRectF, colour: QColor) -> None:
        """Rows as blocks (before the layers at the top, the head at the bottom), cells as sites; a deep stack
        draws bands of layers, a band's cell lit when the cell is lit in any of its layers."""
        rows = _bands(self.shape.rows, max(3, int(area.height() // 3)))
        if not rows:
            return
        painter.setRenderHint(QPainter.RenderHint.Antialiasing, False)
        row_h = area.height() / len(rows)
        gap = 1.0 if row_h >= 3 else 0.0
        lit = self.tile.lit
        for i, (cells, _label) in enumerate(rows):
            block = QRectF(area.left(), area.top() + i * row_h, area.width(), row_h - gap)
            painter.setPen(Qt.PenStyle.NoPen)
            painter.setBrush(BLOCK_FILL)
            painter.drawRect(block)
            if not cells:
                continue
            cell_w = block.width() / len(cells)
            for j, keys in enumerate(cells):
                on = self.tile.applies and any(key in lit for key in keys)
                painter.setBrush(colour if on else CELL_OFF)
                painter.drawRect(QRectF(block.left() + j * cell_w + 0.5, block.top(), max(1.0, cell_w - 1.0),
                                        max(1.0, block.height())))
        painter.setPen(QPen(BLOCK_EDGE, 1))
        painter.setBrush(Qt.BrushStyle.NoBrush)
        painter.drawRect(area)


def _bands(rows: tuple[MiniRow, ...], most: int) -> list[tuple[list[tuple[str, ...]], str]]:
    """Each row as its cells' keys; with more layer rows than `most`, consecutive layers merged into bands (a
    cell of a band holds that column's key in every layer of it)."""
    if len(rows) <= most:
        return [([(c.key,) for c in row.cells], row.label) for row in rows]
    first, layers, last = rows[0], rows[1:-1], rows[-1]
    per = -(-len(layers) // max(1, most - 2))
    bands = []
    for start in range(0, len(layers), per):
        group = layers[start:start + per]
        width = max(len(r.cells) for r in group)
        cells = [tuple(r.cells[j].key for r in group if j < len(r.cells)) for j in range(width)]
        bands.append((cells, f"layers {group[0].key}-{group[-1].key}"))
    return [([(c.key,) for c in first.cells], first.label), *bands, ([(c.key,) for c in last.cells], last.label)]
