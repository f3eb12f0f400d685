"""A whole lens for an experiment (its method's figures plus forgetting), as figures, text lines or JSON."""

from __future__ import annotations

from typing import Any

from . import LensFigure, lens_sentence
from .forgetting import forgetting

NUMBER_WORDS = {  # how a number reads in a line; unknown names read as themselves
    "effective_rank": "effective rank", "numerical_rank": "numerical rank", "r": "r",
    "relative_norm": "‖ΔW‖/‖W0‖", "max_singular_value": "σ1", "intruder_dimensions": "intruder dimensions",
    "magnitude_change": "|m - ‖W0‖row| / ‖W0‖row", "max_angle_deg": "largest angle (deg)",
    "mean_angle_deg": "mean angle (deg)", "branch_to_main": "‖branch‖/‖main path‖",
    "active_units": "active units", "mean_best_cosine": "mean best cosine", "forgetting": "forgetting",
    "mean_share": "mean share", "max_share": "largest share (one head)", "front_keys": "keys in front",
}


def lens_report(experiment: Any, sentence: str | None = None, with_forgetting: bool = True) -> list[LensFigure]:
    """The method's own lens figures for `sentence` (default: the first training text), then forgetting."""
    if experiment.base.on_meta_device:
        return []  # shapes only: nothing has trained
    figures = list(experiment.method.lens(experiment, lens_sentence(experiment, sentence)))
    if with_forgetting:
        figures.append(forgetting(experiment).figure())
    return figures


def number_text(value: float) -> str:
    """A lens number as the CLI and the Lens dock show it: whole numbers with separators, else 4 digits."""
    return f"{int(value):,}" if float(value).is_integer() else f"{value:.4g}"


def lens_lines(figures: list[LensFigure]) -> list[str]:
    """One line per figure with its numbers, then the arrays and tables a terminal can show."""
    lines = []
    for figure in figures:
        numbers = ", ".join(f"{NUMBER_WORDS.get(k, k)} {number_text(v)}" for k, v in figure.numbers.items())
        lines.append(f"{figure.title}: {numbers}" if numbers else figure.title)
        if "singular_values" in figure.arrays:
            values = figure.arrays["singular_values"][:12]
            lines.append("  singular values: " + " ".join(f"{v:.3g}" for v in values)
                         + (" …" if len(figure.arrays["singular_values"]) > 12 else ""))
        if "angles_deg" in figure.arrays:
            lines.append("  angles (deg): " + " ".join(f"{v:.3g}" for v in figure.arrays["angles_deg"][:12]))
        if figure.columns:
            lines.append("  " + " | ".join(figure.columns))
        for row in figure.table:
            lines.append("  " + " | ".join(number_text(c) if isinstance(c, float) else str(c) for c in row))
        if figure.note:
            lines.append(f"  ({figure.note})")
    return lines
