"""The seed's four exercises wired to the window: "Set up" prepares the studio, the user runs what takes time.

1. steps through the four methods (each "Set up" press shows the next one: the diagram highlights
   its trainable part, the evidence line quotes its card's "where");
2. opens the seed example and shows the bytes of 20 adapters on one base against 20 full copies
   (and opens the Adapters dock, with a set on the exercise's base, to train a few);
3. opens the seed example and counts the bottleneck sweep; "Train the sweep" (a visible job) trains
   each point on a task where size matters, feeding the plot as points come;
4. opens the word-order lesson and shows the comparison board ready to run (a callback the window
   passes); the class presses Run the family. Without the board, "Run" trains core method_comparison.

Set up never starts a long job: long work is a job the user starts, listed in the window with Stop.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from PySide6.QtCore import QObject

from ...core.errors import PeftStudioError
from ...core.methods import METHODS
from ...core.runs.train import TrainControl
from ...core.teaching.exercises import (
    SWEEP_DATASET,
    MethodRow,
    bottleneck_sweep,
    exercise,
    method_comparison,
    task_bytes,
)
from ...core.teaching.lesson import lesson_names, load_shipped_lesson
from ..jobs.background import BackgroundJob
from ..jobs.worker import JobError
from ..panels.exercises import ExercisesPanel
from ..window.lessons import apply_lesson

if TYPE_CHECKING:
    from ..window.main_window import MainWindow

SWEEP_STEPS = 100  # per bottleneck: the sentiment task separates the sizes by then
COMPARISON_STEPS = 150  # per method on word-order
OWNER = "exercises"


class ExercisesDock(QObject):
    """Owns the ExercisesPanel's wiring; `panel` is the widget a dock shows."""

    def __init__(self, window: MainWindow, panel: ExercisesPanel | None = None,
                 compare: Callable[[], object] | None = None,
                 show_adapters: Callable[[], object] | None = None) -> None:
        super().__init__(window)
        self.window = window
        self.panel = panel or ExercisesPanel()
        self.compare = compare
        self.show_adapters = show_adapters
        self.sweep_steps = SWEEP_STEPS
        self.comparison_steps = COMPARISON_STEPS
        self.method_step = -1  # exercise 1: index of the method shown last
        jobs = window.controller.jobs
        self.sweep = BackgroundJob(self, jobs, OWNER)
        self.sweep.item.connect(self._sweep_point)
        self.sweep.done.connect(self._sweep_done)
        self.comparison = BackgroundJob(self, jobs, OWNER)
        self.comparison.item.connect(self._comparison_row)
        self.comparison.done.connect(self._comparison_done)
        self.rows: list[MethodRow] = []
        self.panel.set_up_requested.connect(self.set_up)
        self.panel.sweep_training_requested.connect(self.train_sweep)
        self.panel.comparison_training_requested.connect(self.run_comparison)

    @property
    def running(self) -> bool:
        return self.sweep.running or self.comparison.running

    # ---- set up ------------------------------------------------------------------------------
    def set_up(self, number: int) -> bool:
        """Prepare exercise `number` once the window's run (if any) has stopped; never starts a long job."""
        try:
            exercise(number)
        except PeftStudioError as exc:
            self.window.show_error("Exercises", str(exc))
            return False
        self.window.runner.stop_then(lambda: self._set_up_now(number))
        return True

    def _set_up_now(self, number: int) -> bool:
        item = exercise(number)
        if number == 1:
            return self.next_method()
        if not self.open_start(item.lesson):
            return False
        if number == 2:
            self.panel.show_task_bytes(task_bytes(self.window.controller.experiment))
            if self.show_adapters is not None:
                self.show_adapters()
        elif number == 3:
            self.panel.run_count_sweep()
            self.panel.show_evidence(3, f"Counted. Train the sweep trains each size on {SWEEP_DATASET} for "
                                        f"{self.sweep_steps} steps (a few seconds).")
        elif number == 4:
            if self.compare is not None:
                self.compare()
                self.panel.show_evidence(4, "The comparison board is ready on word-order: press Run the family "
                                            "there, then read its memory and accuracy columns.")
            else:
                self.panel.comparison_button.setVisible(True)
                self.panel.show_evidence(4, "Ready: press Train the comparison to train each method on "
                                            f"word-order for {self.comparison_steps} steps.")
        return True

    def open_start(self, name: str | None) -> bool:
        """A shipped lesson by that name, else a shipped example (setups/NAME.json)."""
        if name is None:
            return True
        if name in lesson_names():
            try:
                lesson = load_shipped_lesson(name)
            except PeftStudioError as exc:
                self.window.show_error("Cannot open this exercise's lesson", str(exc))
                return False
            return apply_lesson(self.window.lesson_host, lesson)
        return self.window.controller.load_example(name)

    def next_method(self) -> bool:
        """Exercise 1: the first press opens its lesson; each press shows the next method."""
        item = exercise(1)
        if self.method_step < 0 and not self.open_start(item.lesson):
            return False
        self.method_step = (self.method_step + 1) % len(item.methods)
        name = item.methods[self.method_step]
        if not self.window.controller.set_method(name):
            return False
        method = METHODS[name]
        self.panel.show_evidence(1, f"{self.method_step + 1}/{len(item.methods)} {method.title}: "
                                    f"{method.card.where}\n(press Set up again for the next method)")
        return True

    # ---- exercise 3: the trained sweep ---------------------------------------------------------
    def train_sweep(self) -> bool:
        steps = self.sweep_steps
        control = TrainControl()
        started = self.sweep.start(lambda: bottleneck_sweep(steps=steps, dataset=SWEEP_DATASET, control=control),
                                   control.stop, f"Bottleneck sweep on {SWEEP_DATASET}",
                                   len(self.panel.points) or 6)
        if started:
            self.panel.train_button.setEnabled(False)
            self.panel.show_evidence(3, f"Training each bottleneck on {SWEEP_DATASET} for {steps} steps…")
        return started

    def _sweep_point(self, point) -> None:
        self.panel.add_sweep_point(point)
        job = self.sweep.job
        if job is not None:
            trained = sum(1 for p in self.panel.points if p.accuracy is not None)
            job.report(done=trained, detail=f"m = {point.bottleneck}")

    def _sweep_done(self, error: JobError | None) -> None:
        self.panel.train_button.setEnabled(True)
        trained = [p for p in self.panel.points if p.accuracy is not None]
        if error is not None:
            self.panel.show_evidence(3, f"The sweep stopped: {error.message}")
        elif len(trained) < len(self.panel.points):
            self.panel.show_evidence(3, f"Stopped after {len(trained)} of {len(self.panel.points)} bottlenecks.")
        else:
            self.panel.show_evidence(3, f"Trained {len(trained)} bottlenecks on {SWEEP_DATASET} for "
                                        f"{self.sweep_steps} steps each: accuracy is plotted below the counts.")

    # ---- exercise 4 without the board -------------------------------------------------------------
    def run_comparison(self) -> bool:
        steps = self.comparison_steps
        self.rows = []
        self.panel.evidence_labels[4].setStyleSheet("font-family: monospace;")  # a table of numbers
        control = TrainControl()
        methods = exercise(4).methods
        started = self.comparison.start(lambda: method_comparison(steps=steps, control=control), control.stop,
                                        "Exercise 4: each method on word-order", len(methods))
        if started:
            self.panel.show_evidence(4, f"Training each method on word-order for {steps} steps…")
        return started

    def _comparison_row(self, row: MethodRow) -> None:
        self.rows.append(row)
        self.panel.show_evidence(4, comparison_text(self.rows))
        if self.comparison.job is not None:
            self.comparison.job.report(done=len(self.rows), detail=row.method)

    def _comparison_done(self, error: JobError | None) -> None:
        if error is not None:
            self.panel.show_evidence(4, comparison_text(self.rows) + f"\nstopped: {error.message}")

    # ---- stopping --------------------------------------------------------------------------------
    def stop(self) -> None:
        self.sweep.stop()
        self.comparison.stop()

    def stop_and_wait(self, timeout_ms: int = 10_000) -> bool:
        return self.sweep.stop_and_wait(timeout_ms) & self.comparison.stop_and_wait(timeout_ms)


def comparison_text(rows: list[MethodRow]) -> str:
    lines = [f"{'method':<14}{'trainable':>10}{'frozen bytes':>14}{'training bytes':>16}{'accuracy':>10}"]
    for r in rows:
        accuracy = f"{r.accuracy:.2f}" if r.accuracy is not None else "-"
        lines.append(f"{r.method:<14}{r.trainable:>10,}{r.base_bytes:>14,}{r.training_bytes:>16,}{accuracy:>10}")
    return "\n".join(lines)
