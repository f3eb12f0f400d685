"""The comparison board's runs, Qt-free: the runs it holds, which are ticked, and the one step budget it
compares at a time (a 60-step run beside a 300-step run says more about the budgets than the methods).

The board widget draws `selected()`; a family run adds its runs as they finish and the board moves to
that run's budget.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from .run_store import RunRecord

# A family run's default budget per method: 12 methods on the tiny base finish in about a minute on a laptop
# (a class waits for it), and every method that can learn the toy tasks has separated from chance by then.
FAMILY_STEPS = 60

Listener = Callable[[], None]


def budget_of(run: RunRecord) -> int:
    """The steps a run was given (its settings), which is what makes two runs comparable."""
    steps = run.settings.get("steps") if isinstance(run.settings, dict) else None
    return int(steps) if isinstance(steps, int) and not isinstance(steps, bool) and steps > 0 else run.steps_done


@dataclass
class Comparison:
    runs: list[RunRecord] = field(default_factory=list)
    unticked: set[str] = field(default_factory=set)  # run ids left out of the plots and the table
    budget: int | None = None  # the budget the board shows; None: the newest run's
    family_steps: int = FAMILY_STEPS  # the next family run's budget per method
    _listeners: list[Listener] = field(default_factory=list, repr=False)

    def on_change(self, callback: Listener) -> None:
        self._listeners.append(callback)

    def _changed(self) -> None:
        for callback in list(self._listeners):
            callback()

    # ---- changing -------------------------------------------------------------------------------
    def set_runs(self, runs: Iterable[RunRecord]) -> None:
        self.runs = list(runs)
        ids = {r.run_id for r in self.runs}
        self.unticked &= ids
        if self.budget is not None and self.budget not in self.budgets():
            self.budget = None
        self._changed()

    def add(self, run: RunRecord) -> None:
        """A finished run (ticked); the board moves to its budget, so a new family run is compared with itself."""
        self.runs.append(run)
        self.budget = budget_of(run)
        self._changed()

    def remove(self, run_id: str) -> None:
        self.runs = [r for r in self.runs if r.run_id != run_id]
        self.unticked.discard(run_id)
        if self.budget is not None and self.budget not in self.budgets():
            self.budget = None
        self._changed()

    def tick(self, run_id: str, ticked: bool) -> None:
        if ticked:
            self.unticked.discard(run_id)
        else:
            self.unticked.add(run_id)
        self._changed()

    def show_budget(self, steps: int | None) -> None:
        self.budget = steps
        self._changed()

    # ---- reading --------------------------------------------------------------------------------
    def budgets(self) -> list[int]:
        """Every budget among the runs, smallest first."""
        return sorted({budget_of(r) for r in self.runs})

    def current_budget(self) -> int | None:
        if self.budget is not None:
            return self.budget
        return budget_of(self.runs[-1]) if self.runs else None

    def shown(self) -> list[RunRecord]:
        """The runs of the board's budget, in the order they were added."""
        budget = self.current_budget()
        return [r for r in self.runs if budget_of(r) == budget]

    def selected(self) -> list[RunRecord]:
        """The runs the plots and the table show: the budget's runs that are ticked."""
        return [r for r in self.shown() if r.run_id not in self.unticked]
