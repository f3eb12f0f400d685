"""Lenses: what training changed, in numbers a class can read.

Each method supplies its lens through its own file (`Method.lens`), built from the helpers in this package:
weight-update methods show their ΔW (spectrum, effective rank, size against W0, intruder dimensions),
orthogonal ones their rotation angles, prompt tuning its soft tokens' nearest words, adapters their bottleneck,
IA3 its gains. Forgetting — how far the adapted model moved away from the base on other text — is one number per
run for every method. Everything here is Qt-free and returns plain Python values, so a worker thread can compute
a lens and the window, the CLI and the comparison board can show the same numbers.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class LensFigure:
    """One figure of a lens: a few named numbers, arrays to draw and an optional table, for one site or the
    whole method (site '')."""

    kind: str  # e.g. "delta-w", "rotation", "nearest-words", "bottleneck", "gains"
    title: str
    site: str = ""
    numbers: dict[str, float] = field(default_factory=dict)
    arrays: dict[str, list[Any]] = field(default_factory=dict)  # 1-D lists, or a 2-D heatmap as a list of rows
    table: list[tuple[Any, ...]] = field(default_factory=list)
    note: str = ""
    columns: list[str] = field(default_factory=list)  # the table's column names, when it has them

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "title": self.title, "site": self.site, "numbers": dict(self.numbers),
                "arrays": {k: list(v) for k, v in self.arrays.items()}, "table": [list(r) for r in self.table],
                "note": self.note, "columns": list(self.columns)}


def lens_sentence(experiment: Any, sentence: str | None) -> str:
    """The sentence a lens that reads a forward pass runs on: the one given, else the first training text."""
    texts = experiment.dataset.train_texts
    return sentence or (texts[0] if texts else "hello")


def token_text(decode: Any, token_id: int) -> str:
    """One token as the tokenizer writes it (`#id` for one it cannot write)."""
    return (decode([token_id]) or [f"#{token_id}"])[0]


__all__ = ["LensFigure", "lens_sentence", "token_text"]
