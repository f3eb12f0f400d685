"""The comparison board and the memory ledger, wired to the studio: "Run the family" trains every method
the current base supports in a worker thread (filling the board live), and the ledger follows the setup.

The family run is a visible job (the window lists it with progress, ETA and Stop) that the user starts; it
never changes the window's setup or undo history. While it trains a method the panel says so through
`method_started`, which the window shows as a marked preview of that method's diagram.
"""

from __future__ import annotations

from dataclasses import replace

from PySide6.QtCore import Signal
from PySide6.QtWidgets import QPushButton, QTabWidget, QVBoxLayout, QWidget

from ...core.errors import PeftStudioError
from ...core.memory.at_scale import MemoryPlan
from ...core.memory.ledger import measure_ledger
from ...core.methods import METHODS
from ...core.runs.compare import FamilyEvent, run_family
from ...core.runs.placement_compare import PlacementRow, compare_placements
from ...core.runs.run_store import RunStore
from ...core.runs.threads import ThreadChoice
from ...core.runs.train import TrainControl
from ..jobs.background import BackgroundJob
from ..jobs.worker import JobError
from ..panels.board import BoardWidget
from ..panels.ledger import LedgerWidget
from ..panels.placement import PlacementTable
from ..plain import plain_label
from ..window.controller import Controller

FAMILY_OWNER = "compare"


class ComparePanel(QWidget):
    method_started = Signal(str)  # the family run moved on to this method (the diagram can preview it)
    method_chosen = Signal(str)  # a placement row was activated: show that method, as placed, in the diagram
    failed = Signal(str, str)
    family_finished = Signal()

    def __init__(self, controller: Controller, store: RunStore | None = None, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.controller = controller
        self.store = store or RunStore()
        # the stored runs are read when the panel is first shown
        self.board = BoardWidget((), self.store, comparison=controller.comparison)
        self.ledger = LedgerWidget()
        self.measure_button = QPushButton("Measure one step")
        self.measure_button.setToolTip("Run one real training step, count the bytes of every tensor autograd keeps, "
                                       "then undo it (the weights do not change)")
        self.measure_button.clicked.connect(self.measure)
        ledger_tab = QWidget()
        ledger_layout = QVBoxLayout(ledger_tab)
        ledger_layout.addWidget(self.ledger, 1)
        ledger_layout.addWidget(self.measure_button)
        self.placement = PlacementTable()
        self.placement.method_chosen.connect(self.method_chosen)
        self.tabs = QTabWidget()
        self.tabs.addTab(self.board, "Board")
        self.tabs.addTab(ledger_tab, "Memory")
        self.tabs.addTab(self.placement, "Placement")
        self.tabs.setTabToolTip(2, "An architecture without weights (e.g. llama-3-70b): every method's placement, "
                                "count and memory to train, without training")
        self.status = plain_label("")  # quotes base names and run files
        self.status.setWordWrap(True)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(2, 2, 2, 2)
        layout.addWidget(self.tabs, 1)
        layout.addWidget(self.status)
        self.job = BackgroundJob(self, controller.jobs, FAMILY_OWNER)  # the family run, off the GUI thread
        self.job.item.connect(self._show)
        self.job.done.connect(self._finished)
        self.board.runFamilyRequested.connect(lambda: self.run_family())
        self.board.stopFamilyRequested.connect(self.stop_family)
        controller.changed.connect(self._setup_changed)
        controller.settings_changed.connect(self._setup_changed)
        self._runs_read = False
        self._ledger_stale = True
        self._steps = 0  # the running family's budget per method

    # ---- work only while seen: the window starts, and every click rebuilds, without it ---------
    def showEvent(self, event) -> None:  # noqa: N802 - Qt override
        super().showEvent(event)
        if not self._runs_read:
            self._runs_read = True
            self.board.reload()  # on a worker thread; unreadable files are listed under the runs
        if self._ledger_stale:
            self.refresh_ledger()

    def _setup_changed(self) -> None:
        self._ledger_stale = True
        self.ledger.set_measured(None)  # a measurement belongs to the setup (and batch) it was made on
        if self.isVisible():
            self.refresh_ledger()

    # ---- the ledger ---------------------------------------------------------------------------
    def refresh_ledger(self) -> None:
        """The estimate for the current setup (a few tiny forward passes fit the activation formula)."""
        self._ledger_stale = False
        c = self.controller
        if c.experiment.base.on_meta_device:  # shapes only: no forward pass to fit activations on
            self.ledger.clear("A meta-device architecture has no weights to run: its memory at scale is in the "
                              "Memory at scale panel (View menu).")
            self.measure_button.setEnabled(False)
            return
        self.measure_button.setEnabled(True)
        try:
            self.ledger.set_experiment(c.experiment, c.settings.batch_size, c.settings.optimizer)
        except PeftStudioError as exc:
            self.ledger.clear(f"memory estimate unavailable: {exc}")

    def measure(self) -> bool:
        c = self.controller
        if c.experiment.base.on_meta_device:
            self.status.setText("A meta-device architecture has no weights to run a step with.")
            return False
        if c.locked:
            self.status.setText("Stop the run first: measuring takes one training step (then undoes it).")
            return False
        try:
            measured = measure_ledger(c.experiment, c.settings.batch_size, c.settings.optimizer, c.settings.lr)
        except PeftStudioError as exc:
            self.failed.emit("Cannot measure memory", str(exc))
            return False
        self.ledger.set_measured(measured)
        return True

    # ---- the family run -----------------------------------------------------------------------
    @property
    def running(self) -> bool:
        return self.job.running

    def family_plan(self, methods: list[str] | None = None) -> str:
        """What Run the family will do, in words (the exercise's Set up says it before the class presses Run)."""
        count = len(methods) if methods else len(METHODS)
        return (f"Run the family trains up to {count} methods on {self.controller.setup.base} · "
                f"{self.controller.dataset.name}, {self.board.steps_box.value()} steps each (about a minute on the "
                "tiny base); it never changes your setup.")

    def run_family(self, methods: list[str] | None = None) -> None:
        """Train every method of the registry that builds on the current base (or just `methods`), each for the
        board's step budget; the window's own setup and history stay as they are."""
        if self.job.running:
            return
        c = self.controller
        if c.experiment.base.on_meta_device:
            self.place_family(methods)
            return
        control = TrainControl()  # stops the family between optimizer steps (and its timings)
        steps = self.board.steps_box.value()
        settings = replace(c.settings, steps=steps, eval_every=max(1, min(c.settings.eval_every, steps)))
        # threads measured once before the first run, as `peft-studio compare` does: the same count for every
        # method keeps the steps/s column comparable, and one thread when a core is busy elsewhere
        args = dict(base=c.setup.base, dataset=c.dataset, settings=settings, seed=c.setup.seed,
                    base_options=dict(c.setup.base_options), store=self.store, methods=methods, control=control,
                    threads=ThreadChoice())

        def events():  # a step is reported as (method index, step) only: the board shows finished runs
            for event in run_family(**args):
                yield (event.index, event.step.step) if event.kind == "step" else event

        self._steps = steps
        total = steps * (len(methods) if methods else len(METHODS))
        self.board.set_family_running(True)
        self.status.setText("Running the family…")
        self.job.start(events, control.stop, f"Family run on {c.setup.base} · {c.dataset.name}", total)

    def place_family(self, methods: list[str] | None = None) -> None:
        """An architecture without weights: no training, each method placed and counted (a worker thread:
        a 70B base takes a few seconds)."""
        c = self.controller
        args = dict(base_name=c.setup.base, dataset=c.dataset, methods=methods, plan=MemoryPlan(), seed=c.setup.seed,
                    base_options=dict(c.setup.base_options))
        self.placement.clear_rows()
        self.tabs.setCurrentWidget(self.placement)
        self.board.set_family_running(True)
        self.status.setText(f"Placing every method on {c.setup.base} (meta device: counts and memory, no training)…")
        self._steps = 0
        self.job.start(lambda: compare_placements(**args), None, f"Placing the family on {c.setup.base}",
                       len(methods) if methods else len(METHODS))

    def stop_family(self) -> None:
        self.board.stop_loading()
        if self.job.running:
            self.job.stop()
            self.status.setText("Stopping… (the step in flight finishes, then the run ends)")

    def stop_and_wait(self, timeout_ms: int = 10_000) -> bool:
        return self.job.stop_and_wait(timeout_ms) & self.board.stop_and_wait(timeout_ms)

    def _show(self, item: FamilyEvent | PlacementRow | tuple[int, int]) -> None:
        job = self.job.job
        if isinstance(item, tuple):  # a step of the method at index item[0]
            if job is not None:
                job.report(done=item[0] * self._steps + item[1] + 1)
            return
        if isinstance(item, PlacementRow):
            self.placement.add_row(item)
            if job is not None:
                job.report(done=len(self.placement.rows), detail=item.method)
            return
        where = f"{item.index + 1}/{item.total} {item.method}"
        if item.kind == "start":
            self.board.set_current_method(item.method)
            self.status.setText(f"Training {where}… ({item.threads} torch thread{'s' * (item.threads != 1)})")
            if job is not None:
                job.report(done=item.index * self._steps, detail=where)
            self.method_started.emit(item.method)
        elif item.kind == "skip":
            self.status.setText(f"Skipped {where}: {item.reason}")
            if job is not None:
                job.report(done=(item.index + 1) * self._steps, detail=f"skipped {item.method}")
        elif item.kind == "done" and item.record is not None:
            self.board.add_run(item.record)
        elif item.kind == "stopped":
            self.status.setText(f"Stopped during {where}; finished runs are kept.")

    def _finished(self, error: JobError | None) -> None:
        self.board.set_family_running(False)
        self.board.set_current_method(None)
        if error is not None:
            self.status.setText("The family run stopped.")
            self.failed.emit(error.title("The family run"), error.message)
        elif self.placement.rows and self.status.text().startswith("Placing"):
            self.status.setText(f"{len(self.placement.rows)} methods placed on {self.controller.setup.base}; "
                                "double-click one to see it in the diagram.")
        elif self.status.text().startswith("Stopping"):
            self.status.setText("Stopped; finished runs are kept.")
        elif not self.status.text().startswith(("Stopped", "Skipped")):
            self.status.setText("Family run finished.")
        self.family_finished.emit()
