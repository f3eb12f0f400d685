"""Metrics of the diagram at normal and presentation scale (fonts >= 18 pt, thick pens)."""

from __future__ import annotations

from dataclasses import dataclass

from PySide6.QtGui import QFont, QFontMetricsF


@dataclass
class Style:
    presentation: bool = False

    def __post_init__(self) -> None:
        s = self.scale = 1.8 if self.presentation else 1.0
        self.title_font = QFont()
        self.title_font.setPointSizeF(20 if self.presentation else 10.5)
        self.title_font.setWeight(QFont.Weight.DemiBold)
        self.small_font = QFont()
        self.small_font.setPointSizeF(18 if self.presentation else 8.5)
        self.glyph_font = QFont()
        self.glyph_font.setPointSizeF(18 if self.presentation else 8)
        self.glyph_font.setWeight(QFont.Weight.Bold)
        self.pen = 3.5 if self.presentation else 1.4
        self.pad = 10 * s
        self.hgap = 24 * s
        self.vgap = 26 * s
        self.site_r = 11 * s
        self.radius = 7 * s
        self.title_fm = QFontMetricsF(self.title_font)
        self.small_fm = QFontMetricsF(self.small_font)

    def text_width(self, text: str, small: bool = False) -> float:
        return (self.small_fm if small else self.title_fm).horizontalAdvance(text)
