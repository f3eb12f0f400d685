"""The comparison board and the memory ledger, wired to the studio: "Run the family" trains every method
the current base supports in a worker thread (filling the board live), and the ledger follows the setup."""

from __future__ import annotations

import threading
from collections import deque

import torch
from PySide6.QtCore import QThread, QTimer, Signal
from PySide6.QtWidgets import QLabel, QPushButton, QTabWidget, QVBoxLayout, QWidget

from ..core.compare import FamilyEvent, run_family
from ..core.errors import PeftStudioError
from ..core.memory import measure_ledger
from ..core.runs import RunStore
from ..core.threads import usable_cores
from ..core.train import TrainControl
from .controller import Controller
from .panels.board import BoardWidget
from .panels.ledger import LedgerWidget

DRAIN_MS = 100  # the board is read, not watched frame by frame: 10 refreshes a second are plenty
FAMILY_THREADS = max(1, min(4, usable_cores()))  # a background job: a fixed, modest team


class FamilyWorker(QThread):
    """Runs core.compare.run_family off the GUI thread; events wait in a deque for the panel's timer."""

    def __init__(self, controller: Controller, store: RunStore, methods: list[str] | None = None) -> None:
        super().__init__()
        c = controller
        self.args = dict(base=c.setup.base, dataset=c.dataset, settings=c.settings, seed=c.setup.seed,
                         base_options=dict(c.setup.base_options), store=store, methods=methods)
        self.control = TrainControl()
        self.events: deque[FamilyEvent | str] = deque()  # a str is an error message
        self._done = threading.Event()

    def run(self) -> None:  # worker thread
        torch.set_num_threads(FAMILY_THREADS)
        try:
            for event in run_family(control=self.control, **self.args):
                if event.kind != "step":  # steps are many and the board shows finished runs only
                    self.events.append(event)
        except PeftStudioError as exc:
            self.events.append(str(exc))
        except Exception as exc:  # noqa: BLE001 - reported in the window, never a silent thread death
            self.events.append(f"{type(exc).__name__}: {exc}")
        finally:
            self._done.set()

    def drain(self) -> list[FamilyEvent | str]:
        items = []
        while self.events:
            items.append(self.events.popleft())
        return items


class ComparePanel(QWidget):
    method_started = Signal(str)  # the family run moved on to this method (the diagram can follow it)
    failed = Signal(str, str)
    family_finished = Signal()

    def __init__(self, controller: Controller, store: RunStore | None = None, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.controller = controller
        self.store = store or RunStore()
        try:
            runs = self.store.list()
        except PeftStudioError:
            runs = []
        self.board = BoardWidget(runs, self.store)
        self.ledger = LedgerWidget()
        self.measure_button = QPushButton("Measure one step")
        self.measure_button.setToolTip("Run one real training step, count the bytes of every tensor autograd keeps, "
                                       "then undo it (the weights do not change)")
        self.measure_button.clicked.connect(self.measure)
        ledger_tab = QWidget()
        ledger_layout = QVBoxLayout(ledger_tab)
        ledger_layout.addWidget(self.ledger, 1)
        ledger_layout.addWidget(self.measure_button)
        self.tabs = QTabWidget()
        self.tabs.addTab(self.board, "Board")
        self.tabs.addTab(ledger_tab, "Memory")
        self.status = QLabel("")
        layout = QVBoxLayout(self)
        layout.setContentsMargins(2, 2, 2, 2)
        layout.addWidget(self.tabs, 1)
        layout.addWidget(self.status)
        self.worker: FamilyWorker | None = None
        self.timer = QTimer(self)
        self.timer.setInterval(DRAIN_MS)
        self.timer.timeout.connect(self.drain)
        self.board.runFamilyRequested.connect(lambda: self.run_family())
        self.board.stopFamilyRequested.connect(self.stop_family)
        controller.changed.connect(self.refresh_ledger)
        controller.settings_changed.connect(self.refresh_ledger)
        self.refresh_ledger()

    # ---- the ledger ---------------------------------------------------------------------------
    def refresh_ledger(self) -> None:
        """The estimate for the current setup (cheap: shapes and a fitted activation formula)."""
        c = self.controller
        try:
            self.ledger.set_experiment(c.experiment, c.settings.batch_size, c.settings.optimizer)
        except PeftStudioError as exc:
            self.status.setText(f"memory estimate unavailable: {exc}")

    def measure(self) -> bool:
        c = self.controller
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
        return self.worker is not None

    def run_family(self, methods: list[str] | None = None) -> None:
        """Train every method of the registry that builds on the current base (or just `methods`)."""
        if self.worker is not None:
            return
        self.worker = FamilyWorker(self.controller, self.store, methods)
        self.worker.finished.connect(self._finished)
        self.board.set_family_running(True)
        self.status.setText("Running the family…")
        self.worker.start()
        self.timer.start()

    def stop_family(self) -> None:
        if self.worker is not None:
            self.worker.control.stop()
            self.status.setText("Stopping after the current step…")

    def stop_and_wait(self, timeout_ms: int = 10_000) -> bool:
        worker = self.worker
        if worker is None:
            return True
        worker.control.stop()
        done = worker.wait(timeout_ms)
        self._finished()
        return done

    def drain(self) -> None:
        if self.worker is None:
            return
        for item in self.worker.drain():
            self._show(item)

    def _show(self, item: FamilyEvent | str) -> None:
        if isinstance(item, str):
            self.failed.emit("The family run stopped", item)
            return
        where = f"{item.index + 1}/{item.total} {item.method}"
        if item.kind == "start":
            self.board.set_current_method(item.method)
            self.status.setText(f"Training {where}…")
            self.method_started.emit(item.method)
        elif item.kind == "skip":
            self.status.setText(f"Skipped {where}: {item.reason}")
        elif item.kind == "done" and item.record is not None:
            self.board.add_run(item.record)
        elif item.kind == "stopped":
            self.status.setText(f"Stopped during {where}; finished runs are kept.")

    def _finished(self) -> None:
        worker = self.worker
        if worker is None:
            return
        worker.wait()
        self.drain()
        self.worker = None
        self.timer.stop()
        worker.deleteLater()
        self.board.set_family_running(False)
        self.board.set_current_method(None)
        if not self.status.text().startswith(("Stopped", "Skipped")):
            self.status.setText("Family run finished.")
        self.family_finished.emit()
