"""The window's one facade over the core workspace (core/workspace.py): every read and every change of the
studio goes through here, and StudioState's events come out as Qt signals.

Slow builds (a checkpoint, a 70B architecture) run on a worker thread: the window says "building…", stays
responsive, and edits made meanwhile wait their turn and then apply to the new setup, in order. Stopping a
build abandons it: the previous setup stays and the thread's result is dropped.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import Any

from PySide6.QtCore import QObject, QTimer, Signal

from ...core.adapters.adapter_set import AdapterSet, SetAdapter
from ...core.bases.sites import Site
from ...core.data import TextDataset
from ...core.jobs import STOPPED, Job, JobBoard
from ...core.model.census import Census
from ...core.model.experiment import Experiment, Setup
from ...core.runs.comparison import Comparison
from ...core.runs.train import TrainSettings
from ...core.studio import BuildFailure, Built, ClickEffect, Edit, Snapshot, StudioState
from ...core.teaching.examples import SEED_EXAMPLE
from ...core.view import ViewState
from ...core.workspace import Workspace
from ..jobs import heap
from ..jobs.worker import BUILD_TORCH_THREADS, Worker

HEAP_RESUME_MS = 500  # collections paused for a build resume this long after it ends: the repaint comes first


class Controller(QObject):
    changed = Signal()  # a new experiment was built (setup, dataset or a reset)
    settings_changed = Signal()  # training settings only
    failed = Signal(str, str)  # title, message: the previous experiment stays
    history_changed = Signal(bool, bool)  # can undo, can redo
    notice = Signal(str)  # something the status bar should say (e.g. sites dropped on a base change)
    lock_changed = Signal(bool)
    building_changed = Signal(bool)  # a slow build started (True) or ended (False)

    def __init__(self, setup: Setup | None = None, dataset: TextDataset | None = None,
                 state: StudioState | None = None, workspace: Workspace | None = None) -> None:
        super().__init__()
        self.workspace = workspace or Workspace(state or StudioState(setup, dataset))
        self._studio = self.workspace.studio
        for event in ("changed", "settings_changed", "failed", "history_changed", "notice", "lock_changed"):
            self._studio.on(event, getattr(self, event).emit)
        self._studio.background = self._build_in_background
        self._waiting: deque[Callable[[], object]] = deque()  # edits made while a build runs, in order
        self._build: tuple[Worker, Edit, Job] | None = None
        self._abandoned: list[Worker] = []  # stopped builds whose threads have not ended yet

    # ---- the rest of the workspace ---------------------------------------------------------------
    @property
    def view(self) -> ViewState:
        return self.workspace.view

    @property
    def jobs(self) -> JobBoard:
        return self.workspace.jobs

    @property
    def comparison(self) -> Comparison:
        return self.workspace.comparison

    @property
    def adapters(self) -> AdapterSet | None:
        return self.workspace.adapters

    @adapters.setter
    def adapters(self, adapters: AdapterSet | None) -> None:
        self.workspace.adapters = adapters

    # ---- reading -------------------------------------------------------------------------------
    @property
    def experiment(self) -> Experiment:
        return self._studio.experiment

    @property
    def census(self) -> Census:
        return self._studio.census

    @property
    def frozen_at_build(self) -> str:
        return self._studio.frozen_at_build

    @property
    def setup(self) -> Setup:
        return self._studio.setup

    @property
    def dataset(self) -> TextDataset:
        return self._studio.dataset

    @property
    def settings(self) -> TrainSettings:
        return self._studio.settings

    @property
    def state(self) -> Snapshot:
        return self._studio.snapshot

    @property
    def locked(self) -> bool:
        return self._studio.locked

    @property
    def lock_reason(self) -> str:
        return self._studio.lock_reason

    @property
    def can_undo(self) -> bool:
        return self._studio.can_undo

    @property
    def can_redo(self) -> bool:
        return self._studio.can_redo

    @property
    def showing_adapter(self) -> SetAdapter | None:
        return self._studio.showing_adapter

    @property
    def building(self) -> bool:
        """A slow build runs: the window shows the previous experiment, marked "building…"."""
        return self._build is not None

    @property
    def idle(self) -> bool:
        """No build thread is left (a stopped build's thread may still be finishing)."""
        self._abandoned = [w for w in self._abandoned if _alive(w)]
        return self._build is None and not self._abandoned

    def selected_site_ids(self) -> set[str]:
        return self._studio.selected_site_ids()

    def method_for_site(self, site: Site) -> str:
        return self._studio.method_for_site(site)

    def click_effect(self, site: Site) -> ClickEffect | None:
        return self._studio.click_effect(site)

    # ---- changing --------------------------------------------------------------------------------
    def _edit(self, change: Callable[[], bool]) -> bool:
        """Run an edit now, or after the build in flight (True: taken)."""
        if self._build is not None:
            self._waiting.append(change)
            return True
        return change()

    def apply(self, snapshot: Snapshot, record: bool = True) -> bool:
        return self._edit(lambda: self._studio.apply(snapshot, record))

    def set_base(self, name: str) -> bool:
        return self._edit(lambda: self._studio.set_base(name))

    def set_method(self, name: str, options: dict[str, Any] | None = None) -> bool:
        return self._edit(lambda: self._studio.set_method(name, options))

    def set_option(self, name: str, value: Any) -> bool:
        return self._edit(lambda: self._studio.set_option(name, value))

    def set_seed(self, seed: int) -> bool:
        return self._edit(lambda: self._studio.set_seed(seed))

    def set_dataset(self, dataset: TextDataset) -> bool:
        return self._edit(lambda: self._studio.set_dataset(dataset))

    def set_everything(self, setup: Setup, dataset: TextDataset, settings: TrainSettings) -> bool:
        return self._edit(lambda: self._studio.set_everything(setup, dataset, settings))

    def adopt(self, experiment: Experiment, settings: TrainSettings) -> bool:
        """A checked, already built experiment becomes current (one undo step; see StudioState.adopt)."""
        return self._edit(lambda: self._studio.adopt(experiment, settings))

    def start_from(self, setup: Setup, dataset: TextDataset, settings: TrainSettings) -> bool:
        return self._edit(lambda: self._studio.start_from(setup, dataset, settings))

    def set_training(self, **changes: Any) -> bool:
        return self._edit(lambda: self._studio.set_training(**changes))

    def seed_example(self) -> bool:
        return self.load_example(SEED_EXAMPLE)

    def load_example(self, name: str) -> bool:
        """A shipped example: a whole new setup, so a lesson's notes (about the lesson's setup) go too."""
        taken = self._edit(lambda: self._studio.load_example(name))
        if taken:
            self.view.set(notes_title="", notes=())
        return taken

    def open_setup(self, setup: Setup, dataset: TextDataset, settings: TrainSettings) -> bool:
        """A saved setup from a file: one undo step; like an example, it ends the open lesson's notes."""
        taken = self.set_everything(setup, dataset, settings)
        if taken:
            self.view.set(notes_title="", notes=())
        return taken

    def show_adapter(self, member: SetAdapter) -> bool:
        return self._edit(lambda: self._studio.show_adapter(member))

    def reset_model(self) -> None:
        def reset() -> bool:
            self._studio.reset_model()
            return True

        self._edit(reset)

    def toggle_site(self, site_id: str) -> bool:
        return self._edit(lambda: self._studio.toggle_site(site_id))

    def undo(self) -> bool:
        return self._edit(self._studio.undo)

    def redo(self) -> bool:
        return self._edit(self._studio.redo)

    def lock(self, reason: str = "") -> None:
        """A run holds the model (the window's, the Adapters panel's, a merge test): edits are refused."""
        self._studio.lock(reason)

    def unlock(self) -> None:
        self._studio.unlock()

    # ---- slow builds ------------------------------------------------------------------------------
    def _build_in_background(self, edit: Edit) -> bool:
        studio = self._studio
        heap.pause()  # no collection of the window's heap inside the build and its commit (jobs/heap.py)
        worker = Worker(lambda: iter([studio.prepare(edit)]), where="building", torch_threads=BUILD_TORCH_THREADS)
        job = self.jobs.start(f"Building {edit.label or 'the model'}", "window",
                              stop=lambda: self._abandon(worker))
        self._build = (worker, edit, job)
        worker.finished.connect(lambda: self._built(worker))
        # resumed when this worker ends, whatever becomes of the build (committed, abandoned, its window gone)
        worker.finished.connect(lambda: QTimer.singleShot(HEAP_RESUME_MS, heap.resume))
        worker.start()
        self.building_changed.emit(True)
        return True

    def _built(self, worker: Worker) -> None:
        worker.wait()
        worker.deleteLater()
        if self._build is None or self._build[0] is not worker:  # abandoned: the previous setup stays
            return
        _, edit, job = self._build
        self._build = None
        self.jobs.end(job)
        items = worker.drain()
        result: Built | BuildFailure = items[0] if items else BuildFailure(
            "This setup cannot be built", worker.error.message if worker.error else "the build did not finish")
        self._studio.commit(edit, result)
        self.building_changed.emit(False)
        self._next_edit()

    def _abandon(self, worker: Worker) -> None:
        if self._build is None or self._build[0] is not worker:
            return
        _, edit, job = self._build
        self._build = None
        self._abandoned.append(worker)
        self.jobs.end(job, STOPPED)
        if edit.after is not None:
            edit.after(False)
        self.notice.emit("Build stopped: the previous setup stays")
        self.building_changed.emit(False)
        self._next_edit()

    def stop_build(self) -> None:
        if self._build is not None:
            self._build[2].request_stop()

    def _next_edit(self) -> None:
        while self._waiting and self._build is None:
            self._waiting.popleft()()

    def wait_for_builds(self, timeout_ms: int = 60_000) -> bool:
        """Block until no build runs (tests and scripts only; the window never waits)."""
        from PySide6.QtCore import QCoreApplication, QDeadlineTimer

        deadline = QDeadlineTimer(timeout_ms)
        while not self.idle and not deadline.hasExpired():
            if self._build is not None:
                self._build[0].wait(50)
            for worker in self._abandoned:
                worker.wait(50)
            QCoreApplication.processEvents()
        return self.idle


def _alive(worker: Worker) -> bool:
    try:
        return worker.isRunning()
    except RuntimeError:  # deleted: it had finished
        return False
