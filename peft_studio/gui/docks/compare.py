"""The comparison board and the memory ledger, wired to the studio: "Run the family" trains every method
the current base supports in a worker thread (filling the board live), and the ledger follows the setup."""

from __future__ import annotations

from PySide6.QtCore import Signal
from PySide6.QtWidgets import QPushButton, QTabWidget, QVBoxLayout, QWidget

from ...core.errors import PeftStudioError
from ...core.memory.at_scale import MemoryPlan
from ...core.memory.ledger import measure_ledger
from ...core.runs.compare import FamilyEvent, run_family
from ...core.runs.placement_compare import PlacementRow, compare_placements
from ...core.runs.run_store import RunStore
from ...core.runs.threads import ThreadChoice
from ...core.runs.train import TrainControl
from ..jobs.gen_worker import BackgroundJob
from ..panels.board import BoardWidget
from ..panels.ledger import LedgerWidget
from ..panels.placement import PlacementTable
from ..plain import plain_label
from ..window.controller import Controller


class ComparePanel(QWidget):
    method_started = Signal(str)  # the family run moved on to this method (the diagram can follow it)
    method_chosen = Signal(str)  # a placement row was activated: show that method in the diagram
    failed = Signal(str, str)
    family_finished = Signal()

    def __init__(self, controller: Controller, store: RunStore | None = None, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.controller = controller
        self.store = store or RunStore()
        self.board = BoardWidget((), self.store)  # the stored runs are read when the panel is first shown
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
        layout = QVBoxLayout(self)
        layout.setContentsMargins(2, 2, 2, 2)
        layout.addWidget(self.tabs, 1)
        layout.addWidget(self.status)
        self.job = BackgroundJob(self)  # the family run, off the GUI thread
        self.job.item.connect(self._show)
        self.job.done.connect(self._finished)
        self.board.runFamilyRequested.connect(lambda: self.run_family())
        self.board.stopFamilyRequested.connect(self.stop_family)
        controller.changed.connect(self._setup_changed)
        controller.settings_changed.connect(self._setup_changed)
        self._runs_read = False
        self._ledger_stale = True

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
        if self.isVisible():
            self.refresh_ledger()

    # ---- the ledger ---------------------------------------------------------------------------
    def refresh_ledger(self) -> None:
        """The estimate for the current setup (a few tiny forward passes fit the activation formula)."""
        self._ledger_stale = False
        c = self.controller
        if c.experiment.base.on_meta_device:  # shapes only: no forward pass to fit activations on
            self.status.setText("A meta-device architecture: its memory at scale is in core/memory/at_scale.py; "
                                "the measured ledger needs a base with weights.")
            return
        try:
            self.ledger.set_experiment(c.experiment, c.settings.batch_size, c.settings.optimizer)
        except PeftStudioError as exc:
            self.status.setText(f"memory estimate unavailable: {exc}")

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

    def run_family(self, methods: list[str] | None = None) -> None:
        """Train every method of the registry that builds on the current base (or just `methods`)."""
        if self.job.running:
            return
        c = self.controller
        if c.experiment.base.on_meta_device:
            self.place_family(methods)
            return
        control = TrainControl()  # stops the family between optimizer steps
        # threads measured once before the first run, as `peft-studio compare` does: the same count for every
        # method keeps the steps/s column comparable, and one thread when a core is busy elsewhere
        args = dict(base=c.setup.base, dataset=c.dataset, settings=c.settings, seed=c.setup.seed,
                    base_options=dict(c.setup.base_options), store=self.store, methods=methods, control=control,
                    threads=ThreadChoice())

        def finished_runs():  # steps are many and the board shows finished runs only
            return (event for event in run_family(**args) if event.kind != "step")

        self.board.set_family_running(True)
        self.status.setText("Running the family…")
        self.job.start(finished_runs, control)

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
        self.job.start(lambda: compare_placements(**args), TrainControl())

    def stop_family(self) -> None:
        self.board.stop_loading(wait=False)
        if self.job.running:
            self.job.stop()
            self.status.setText("Stopping after the current step…")

    def stop_and_wait(self, timeout_ms: int = 10_000) -> bool:
        return self.job.stop_and_wait(timeout_ms) & self.board.stop_loading(timeout_ms)

    def _show(self, item: FamilyEvent | PlacementRow) -> None:
        if isinstance(item, PlacementRow):
            self.placement.add_row(item)
            return
        where = f"{item.index + 1}/{item.total} {item.method}"
        if item.kind == "start":
            self.board.set_current_method(item.method)
            self.status.setText(f"Training {where}… ({item.threads} torch thread{'s' * (item.threads != 1)})")
            self.method_started.emit(item.method)
        elif item.kind == "skip":
            self.status.setText(f"Skipped {where}: {item.reason}")
        elif item.kind == "done" and item.record is not None:
            self.board.add_run(item.record)
        elif item.kind == "stopped":
            self.status.setText(f"Stopped during {where}; finished runs are kept.")

    def _finished(self, error: str) -> None:
        self.board.set_family_running(False)
        self.board.set_current_method(None)
        if error:
            title, _, message = error.partition("\n")
            self.status.setText("The family run stopped.")
            self.failed.emit(f"The family run: {title.lower()}", message)
        elif self.placement.rows and self.status.text().startswith("Placing"):
            self.status.setText(f"{len(self.placement.rows)} methods placed on {self.controller.setup.base}; "
                                "double-click one to see it in the diagram.")
        elif not self.status.text().startswith(("Stopped", "Skipped")):
            self.status.setText("Family run finished.")
        self.family_finished.emit()
