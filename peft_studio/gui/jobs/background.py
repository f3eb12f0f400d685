"""A background job owned by a panel: one generator at a time on a Worker, drained on the GUI thread.

`item(obj)` per item, then `done(JobError or None)`. Given a JobBoard and a title, the job is visible:
the window lists it with progress, ETA and Stop (core/jobs.py), and the owner reports its progress.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from PySide6.QtCore import QObject, QTimer, Signal

from ...core.jobs import FAILED, FINISHED, STOPPED, Job, JobBoard
from .worker import Worker

DRAIN_MS = 100  # progress is read, not watched frame by frame


class BackgroundJob(QObject):
    item = Signal(object)
    done = Signal(object)  # JobError | None

    def __init__(self, parent: QObject | None = None, board: JobBoard | None = None, owner: str = "") -> None:
        super().__init__(parent)
        self.board = board
        self.owner = owner
        self.worker: Worker | None = None
        self.job: Job | None = None  # the visible job while one runs
        self.timer = QTimer(self)
        self.timer.setInterval(DRAIN_MS)
        self.timer.timeout.connect(self.drain)

    @property
    def running(self) -> bool:
        return self.worker is not None

    @property
    def stopping(self) -> bool:
        return self.worker is not None and self.worker.stopping

    def start(self, make: Callable[[], Iterator[Any]], stop: Callable[[], None] | None = None, title: str = "",
              total: int | None = None) -> bool:
        """Run `make()` on a worker thread; `stop` also stops inside an item (a TrainControl's stop). With a
        title (and a board), the job is listed in the window until it ends."""
        if self.worker is not None:
            return False
        self.worker = Worker(make, stop)
        self.worker.finished.connect(self._finished)
        if title and self.board is not None:
            self.job = self.board.start(title, self.owner, total, stop=self.worker.stop)
        self.worker.start()
        self.timer.start()
        return True

    def stop(self) -> None:
        """Ask the job to stop; `done` follows when its thread has ended (at its next check)."""
        if self.job is not None:
            self.job.request_stop()
        elif self.worker is not None:
            self.worker.stop()

    def stop_and_wait(self, timeout_ms: int = 10_000) -> bool:
        """Stop, wait for the thread, deliver what it left; True when no thread is left. For tests and
        scripts: the window itself never waits on a job (it stops them and closes when they end)."""
        worker = self.worker
        if worker is None:
            return True
        self.stop()
        done = worker.wait(timeout_ms)
        if done:
            self._finished()
        return done

    def drain(self) -> None:
        if self.worker is not None:
            for item in self.worker.drain():
                self.item.emit(item)

    def _finished(self) -> None:
        worker = self.worker
        if worker is None:
            return
        worker.wait()  # finished was emitted: returns at once
        self.drain()
        self.worker = None
        self.timer.stop()
        worker.deleteLater()
        job, self.job = self.job, None
        if job is not None and self.board is not None:
            state = FAILED if worker.error is not None and not worker.error.refused else \
                STOPPED if worker.stopping or worker.error is not None else FINISHED
            self.board.end(job, state)
        self.done.emit(worker.error)
