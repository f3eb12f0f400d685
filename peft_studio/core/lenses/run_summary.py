"""A run's lens in three numbers, for the comparison board's lens columns: the effective rank of ΔW and
‖ΔW‖/‖W0‖ (each the mean over the adapted weight matrices) and forgetting on general text.

They are read from the method's own lens figures (Method.lens), so a method that has a ΔW figure (every
weight-update method, full fine-tuning) gets both numbers and one that has none says why in `note`.
Computed where the run ends (the family run's worker thread, `peft-studio compare`), never on the GUI thread.
"""

from __future__ import annotations

from dataclasses import dataclass
from statistics import fmean
from typing import Any

from . import lens_sentence
from .forgetting import forgetting

OLD_RUN_NOTE = "this run was saved before runs kept their lens figures"


@dataclass(frozen=True)
class RunLens:
    effective_rank: float | None  # mean over the ΔW figures; None: the method has no ΔW
    relative_norm: float | None  # mean ‖ΔW‖_F / ‖W0‖_F over the same figures
    forgetting: float
    forgetting_measure: str
    note: str  # why there is no ΔW ("" when there is)


def no_delta_note(title: str, kinds: list[str]) -> str:
    """Why a method has no ΔW columns, naming what its lens shows instead."""
    shown = ", ".join(dict.fromkeys(kinds)) or "nothing beyond forgetting"
    return f"{title} changes no weight matrix, so it has no ΔW (its lens shows: {shown})"


def run_lens(experiment: Any, sentence: str | None = None) -> RunLens:
    """The three board numbers of a trained experiment (see the module docstring)."""
    figures = experiment.method.lens(experiment, lens_sentence(experiment, sentence))
    deltas = [f for f in figures if f.kind == "delta-w"]
    drift = forgetting(experiment)
    if not deltas:
        return RunLens(None, None, drift.value, drift.measure,
                       no_delta_note(experiment.method.title, [f.kind for f in figures]))
    return RunLens(fmean(f.numbers["effective_rank"] for f in deltas),
                   fmean(f.numbers["relative_norm"] for f in deltas), drift.value, drift.measure, "")
