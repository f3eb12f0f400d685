"""The seed's four exercises wired to the window: "Set up" prepares the studio, the app supplies the evidence.

1. steps through the four methods (each "Set up" press shows the next one: the diagram highlights
   its trainable part, the evidence line quotes its card's "where");
2. opens the seed example and shows the bytes of 20 adapters on one base against 20 full copies
   (and, when given, opens the Adapters dock to train a few);
3. opens the seed example and counts the bottleneck sweep; "Train the sweep" trains each point in a
   worker thread, feeding the plot as points come;
4. opens the word-order lesson, then asks the comparison board (a callback the window passes) or,
   without one, runs core method_comparison in a worker thread and shows memory and accuracy.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from PySide6.QtCore import QObject

from ...core.errors import PeftStudioError
from ...core.methods import METHODS
from ...core.teaching.exercises import MethodRow, bottleneck_sweep, exercise, method_comparison, task_bytes
from ...core.teaching.lesson import lesson_names, load_shipped_lesson
from ..jobs.gen_worker import BackgroundJob
from ..panels.exercises import ExercisesPanel
from ..window.lessons import apply_lesson

if TYPE_CHECKING:
    from ..window.main_window import MainWindow

SWEEP_STEPS = 100  # per bottleneck: enough for the seed's six sentences to separate
COMPARISON_STEPS = 150  # per method on word-order


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
        self.sweep = BackgroundJob(self)
        self.sweep.item.connect(self.panel.add_sweep_point)
        self.sweep.done.connect(self._sweep_done)
        self.comparison = BackgroundJob(self)
        self.comparison.item.connect(self._comparison_row)
        self.comparison.done.connect(self._comparison_done)
        self.rows: list[MethodRow] = []
        self.panel.set_up_requested.connect(self.set_up)
        self.panel.sweep_training_requested.connect(self.train_sweep)

    # ---- set up ------------------------------------------------------------------------------
    def set_up(self, number: int) -> bool:
        try:
            item = exercise(number)
        except PeftStudioError as exc:
            self.window.show_error("Exercises", str(exc))
            return False
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
        elif number == 4:
            if self.compare is not None:
                self.compare()
                self.panel.show_evidence(4, "The comparison board trains each method on word-order: read its memory "
                                            "and accuracy columns.")
            else:
                self.run_comparison()
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
            return apply_lesson(self.window, lesson)
        self.window.runner.stop_and_wait()
        return self.window.controller.studio.load_example(name)

    def next_method(self) -> bool:
        """Exercise 1: the first press opens its lesson; each press shows the next method."""
        item = exercise(1)
        if self.method_step < 0 and not self.open_start(item.lesson):
            return False
        self.window.runner.stop_and_wait()
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
        started = self.sweep.start(lambda: bottleneck_sweep(steps=steps))
        if started:
            self.panel.train_button.setEnabled(False)
            self.panel.show_evidence(3, f"Training each bottleneck for {steps} steps…")
        return started

    def _sweep_done(self, error: str) -> None:
        self.panel.train_button.setEnabled(True)
        if error:
            self.panel.show_evidence(3, f"The sweep stopped: {error.partition(chr(10))[2]}")
        else:
            self.panel.show_evidence(3, f"Trained {len(self.panel.points)} bottlenecks for {self.sweep_steps} steps "
                                        "each: accuracy is plotted below the counts.")

    # ---- exercise 4 without the board -------------------------------------------------------------
    def run_comparison(self) -> bool:
        steps = self.comparison_steps
        self.rows = []
        self.panel.evidence_labels[4].setStyleSheet("font-family: monospace;")  # a table of numbers
        started = self.comparison.start(lambda: method_comparison(steps=steps))
        if started:
            self.panel.show_evidence(4, f"Training each method on word-order for {steps} steps…")
        return started

    def _comparison_row(self, row: MethodRow) -> None:
        self.rows.append(row)
        self.panel.show_evidence(4, comparison_text(self.rows))

    def _comparison_done(self, error: str) -> None:
        if error:
            self.panel.show_evidence(4, comparison_text(self.rows) + f"\nstopped: {error.partition(chr(10))[2]}")

    # ---- closing ---------------------------------------------------------------------------------
    def stop_and_wait(self, timeout_ms: int = 10_000) -> bool:
        self.sweep.stop()
        self.comparison.stop()
        return self.sweep.stop_and_wait(timeout_ms) & self.comparison.stop_and_wait(timeout_ms)


def comparison_text(rows: list[MethodRow]) -> str:
    lines = [f"{'method':<14}{'trainable':>10}{'frozen bytes':>14}{'training bytes':>16}{'accuracy':>10}"]
    for r in rows:
        accuracy = f"{r.accuracy:.2f}" if r.accuracy is not None else "-"
        lines.append(f"{r.method:<14}{r.trainable:>10,}{r.base_bytes:>14,}{r.training_bytes:>16,}{accuracy:>10}")
    return "\n".join(lines)

