"""Run a core generator (a sweep, a comparison, an adapter's training) off the GUI thread.

Like TrainWorker: the thread appends each yielded item to a deque and the owner drains it on a
timer, so no signal is emitted per item and no tensor crosses threads. A stop is cooperative:
`stop()` sets a flag checked between items (and a TrainControl, when given, stops inside a run).
"""

from __future__ import annotations

import threading
import weakref
from collections import deque
from collections.abc import Callable, Iterator
from typing import Any

import torch
from PySide6.QtCore import QObject, QThread, QTimer, Signal

from ...core.errors import PeftStudioError
from ...core.logs import report_unexpected
from ...core.runs.threads import usable_cores
from ...core.runs.train import TrainControl

DRAIN_MS = 100  # progress is read, not watched frame by frame


class GeneratorWorker(QThread):
    """Iterates `make()` (called on the worker thread) and queues each item; errors are queued as text."""

    instances: weakref.WeakSet[GeneratorWorker] = weakref.WeakSet()  # lets tests prove none is left running

    def __init__(self, make: Callable[[], Iterator[Any]], control: TrainControl | None = None) -> None:
        super().__init__()
        GeneratorWorker.instances.add(self)
        self.make = make
        self.control = control
        self.items: deque[Any] = deque()
        self.error: tuple[str, str] | None = None
        self._stop = threading.Event()

    def run(self) -> None:  # worker thread
        torch.set_num_threads(max(1, min(4, usable_cores())))  # a background job: a fixed, modest team
        try:
            for item in self.make():
                self.items.append(item)
                if self._stop.is_set():
                    break
        except PeftStudioError as exc:
            self.error = ("Stopped", str(exc))
        except Exception as exc:  # noqa: BLE001 - reported in the window (traceback logged), never a silent death
            self.error = ("Failed", report_unexpected(exc, "a background job"))

    def stop(self) -> None:
        self._stop.set()
        if self.control is not None:
            self.control.stop()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def drain(self) -> list[Any]:
        items = []
        while self.items:
            items.append(self.items.popleft())
        return items


class BackgroundJob(QObject):
    """One generator at a time, drained on the GUI thread: `item(obj)` per item, then `done(error)`.

    `done` carries "" on success, else "title\\nmessage"; the owner shows it as it sees fit."""

    item = Signal(object)
    done = Signal(str)

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.worker: GeneratorWorker | None = None
        self.timer = QTimer(self)
        self.timer.setInterval(DRAIN_MS)
        self.timer.timeout.connect(self.drain)

    @property
    def running(self) -> bool:
        return self.worker is not None

    def start(self, make: Callable[[], Iterator[Any]], control: TrainControl | None = None) -> bool:
        if self.worker is not None:
            return False
        self.worker = GeneratorWorker(make, control)
        self.worker.finished.connect(self._finished)
        self.worker.start()
        self.timer.start()
        return True

    def stop(self) -> None:
        if self.worker is not None:
            self.worker.stop()

    def stop_and_wait(self, timeout_ms: int = 10_000) -> bool:
        """Stop, wait for the thread, deliver what it left. True when no thread is left."""
        worker = self.worker
        if worker is None:
            return True
        worker.stop()
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
        error = worker.error
        self.done.emit("" if error is None else f"{error[0]}\n{error[1]}")
