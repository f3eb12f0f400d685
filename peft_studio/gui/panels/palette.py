"""How the board tells a dozen curves (and soon ~40) apart: colour says *where* the method puts its trainable
part (the seed's question), and within one place the line style and marker tell the methods apart.

Colours are the Okabe-Ito set (distinct for colour-blind readers and on a washed-out projector); a place
holds 90 methods before a style repeats (line style k mod 5, marker k mod 6, and past 30 a darker, then a
lighter shade of the place's colour). Everything comes from the
registry (each method's site kinds, in registration order), so a new method gets its style by existing.
"""

from __future__ import annotations

from dataclasses import dataclass

from PySide6.QtCore import Qt
from PySide6.QtGui import QColor

from ...core.bases.sites import (
    ACTIVATION,
    ADAPTER,
    GATED_PROMPT,
    KV_PREFIX,
    LINEAR,
    LINEAR_INPUT,
    NORM,
    PROMPT,
    TOKEN_ROWS,
)
from ...core.methods import METHODS, Method

BASELINE = "baseline"  # no insertion point of its own: head-only, full fine-tuning, BitFit
PLACE_ORDER = (PROMPT, TOKEN_ROWS, KV_PREFIX, GATED_PROMPT, ADAPTER, ACTIVATION, LINEAR, NORM, BASELINE)
PLACE_COLOURS = {
    PROMPT: "#CC79A7",  # reddish purple
    TOKEN_ROWS: "#F0E442",  # yellow
    KV_PREFIX: "#0072B2",  # blue
    GATED_PROMPT: "#882255",  # wine
    ADAPTER: "#009E73",  # bluish green
    ACTIVATION: "#E69F00",  # orange
    LINEAR: "#D55E00",  # vermillion
    NORM: "#56B4E9",  # sky blue
    BASELINE: "#3d3d3d",  # near black
}
PLACE_WORDS = {PROMPT: "input (soft prompt)", TOKEN_ROWS: "rows of the token table",
               KV_PREFIX: "attention's keys/values", GATED_PROMPT: "a gated prompt in attention",
               ADAPTER: "between sublayers",
               ACTIVATION: "activation scaling", LINEAR: "beside a Linear", NORM: "a norm's gain and bias",
               BASELINE: "no insertion point (baseline)"}
DASHES = (Qt.PenStyle.SolidLine, Qt.PenStyle.DashLine, Qt.PenStyle.DotLine, Qt.PenStyle.DashDotLine,
          Qt.PenStyle.DashDotDotLine)
SYMBOLS = (None, "o", "s", "t", "d", "x")  # pyqtgraph symbol names; None: a plain line
SHADES = (100, 150, 70)  # the place's colour, darker (QColor.darker's percent), lighter (130%)


@dataclass(frozen=True)
class CurveStyle:
    colour: str
    dash: Qt.PenStyle
    symbol: str | None
    place: str


def place_of(method: Method) -> str:
    """The place a method's trainable part goes: the kind of site it claims first, else its own first kind."""
    kinds = [k if k != LINEAR_INPUT else ACTIVATION for k in (*method.claims_kinds, *method.site_kinds)]
    return kinds[0] if kinds else BASELINE


def curve_style(name: str) -> CurveStyle:
    """A method's colour, line style and marker (a method no longer registered: grey, dotted)."""
    method = METHODS.get(name)
    if method is None:
        return CurveStyle("#9aa3ad", Qt.PenStyle.DotLine, "x", BASELINE)
    place = place_of(method)
    same_place = [n for n, m in METHODS.items() if place_of(m) == place]
    k = same_place.index(name)
    colour = QColor(PLACE_COLOURS[place])
    shade = (k // (len(DASHES) * len(SYMBOLS))) % len(SHADES)
    if SHADES[shade] != 100:
        colour = colour.darker(SHADES[shade]) if SHADES[shade] > 100 else colour.lighter(200 - SHADES[shade])
    return CurveStyle(colour.name().upper(), DASHES[k % len(DASHES)], SYMBOLS[k % len(SYMBOLS)], place)
