"""Transport: Play/Pause, Step, Stop, Reset over one TrainWorker, drained by a frame timer.

The timer is the only GUI-thread work during a run: it takes every event posted since the last
tick and forwards them in one batch, so the window repaints once per frame, whatever the step
rate. Frames come at 30 Hz, slower only to keep the GUI thread within its CPU budget when the
trainer uses every core (see frame_budget). The timer runs only while a worker exists, so an
idle window does no periodic work at all.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from PySide6.QtCore import QObject, Qt, QTimer, Signal

from ...core.lenses.live import LiveLens
from ...core.runs.threads import ThreadChoice
from ...core.runs.torch_threads import set_torch_threads
from ..window.controller import Controller
from . import heap
from .frame_budget import FASTEST_MS, GUI_SHARE, FrameBudget
from .trainer_thread import Submitted
from .worker import GUI_TORCH_THREADS, TrainWorker, warm_up


def speed_text(steps_per_second: float, threads: int | None = None) -> str:
    """The toolbar's speed: "120 steps/s · 2 threads", one decimal below 10 steps/s."""
    rate = f"{steps_per_second:.1f}" if steps_per_second < 10 else f"{steps_per_second:.0f}"
    if threads is None:
        return f"{rate} steps/s"
    return f"{rate} steps/s · {threads} thread{'s' if threads != 1 else ''}"


class Runner(QObject):
    # a batch of plain-dict step events, passed by reference (receivers only read it): Signal(list) converted
    # every dict to a QVariantMap and back for each receiver, 0.12 ms a frame on tiny's 14 events
    events = Signal(object)
    state_changed = Signal(str)  # "idle" | "running" | "paused"
    failed = Signal(str, str)  # title, message from the worker
    finished = Signal()

    def __init__(self, controller: Controller) -> None:
        super().__init__()
        self.controller = controller
        set_torch_threads(GUI_TORCH_THREADS)  # per-thread in OpenMP: see worker.GUI_TORCH_THREADS
        self._warm_up: Submitted | None = None  # started after the first paint (start_warm_up)
        self.thread_choice = ThreadChoice()  # one for every run: a setup run again keeps its count
        self.worker: TrainWorker | None = None
        self.live_lens: LiveLens | None = None  # the Lens dock's, offered a snapshot between steps when it is on
        self.state = "idle"
        self.step = 0  # the next step index (= steps done since the last reset)
        self.steps_per_second = 0.0
        self.budget = FrameBudget(GUI_SHARE)
        self.timer = QTimer(self)
        # precise: Qt's default coarse timer may fire 5% late, which put the 10 Hz floor at 9.9 frames a second
        self.timer.setTimerType(Qt.TimerType.PreciseTimer)
        self.timer.setInterval(FASTEST_MS)
        self.timer.timeout.connect(self.tick)
        self._after_stop: list[Callable[[], None]] = []

    def start_warm_up(self) -> None:
        """Pay torch's first-use costs in the background (see worker.warm_up); idempotent."""
        if self._warm_up is None:
            self._warm_up = warm_up()

    @property
    def warmed_up(self) -> bool:
        return self._warm_up is not None and not self._warm_up.is_alive()

    # ---- transport --------------------------------------------------------------------------
    def play_pause(self) -> None:
        if self.worker is None:
            self._start(paused=False)
        elif self.state == "running":
            self.worker.control.pause()
            self._set_state("paused")
        else:
            self.worker.control.resume()
            self._restart_frames()
            self._set_state("running")

    def step_once(self) -> None:
        if self.worker is None:
            self._start(paused=True)
        assert self.worker is not None
        self.worker.control.step_once()
        self._set_state("paused")

    def stop(self) -> None:
        if self.worker is not None:
            self.worker.stop()

    def stop_then(self, then: Callable[[], None]) -> None:
        """Stop the run and call `then` once its thread has ended (at once when none runs). The GUI thread
        never waits: the step in flight finishes, or a long one ends at its next layer (runs/interrupt.py)."""
        if self.worker is None:
            then()
            return
        self._after_stop.append(then)
        self.stop()

    def stop_and_wait(self, timeout_ms: int = 10_000) -> bool:
        """Stop the run and wait for the thread. For tests and scripts only: the window uses stop_then."""
        if self._warm_up is not None:
            self._warm_up.join()  # no thread outlives the window
        worker = self.worker
        if worker is None:
            return True
        worker.stop()
        done = worker.wait(timeout_ms)
        self._finish()
        return done

    def when_stopped(self, action: Callable[[], None]) -> bool:
        """Run `action` now when no run is active (True); else stop the run and run it once the worker has
        ended (False): the GUI thread never waits for the rest of a long step."""
        if self.worker is None:
            action()
            return True
        self._after_stop.append(action)
        self.stop()
        return False

    def reset(self) -> None:
        """Fresh method parts and head (the base is rebuilt bit-identical), after the run has stopped."""
        def fresh() -> None:
            self.step = 0
            self.controller.reset_model()

        self.stop_then(fresh)

    @property
    def active(self) -> bool:
        return self.worker is not None

    # ---- internals ----------------------------------------------------------------------------
    def _start(self, paused: bool) -> None:
        self.start_warm_up()
        assert self._warm_up is not None
        self._warm_up.join()  # at once unless Play comes within a second or two of start-up
        # A full collection walks every object (Qt wrappers, torch modules): ~60-120 ms holding the GIL,
        # which freezes the GUI and the worker alike. Freezing the startup heap keeps collections tiny.
        heap.hold()
        controller = self.controller
        controller.lock()
        self.worker = TrainWorker(controller.experiment, controller.settings, self.step, paused=paused,
                                  threads=self.thread_choice, live=self.live_lens)
        self.worker.finished.connect(self._finish)
        self.worker.start()
        self._restart_frames()
        self.timer.start()
        self._set_state("paused" if paused else "running")

    def tick(self) -> None:
        if self.worker is None:
            return
        batch: list[dict[str, Any]] = self.worker.drain()
        if batch:
            self.step = batch[-1]["step"] + 1
            self.steps_per_second = batch[-1]["sps"]
            self.events.emit(batch)
        self.budget.set_active(self._cores_saturated())
        interval = self.budget.frame(time.monotonic(), time.thread_time())
        if interval != self.timer.interval():
            self.timer.setInterval(interval)

    @property
    def threads_used(self) -> int:
        """The torch threads of the current (or latest) run: fixed for a run, chosen before its first step."""
        worker_threads = self.worker.threads if self.worker is not None else None
        return worker_threads or self.thread_choice.threads

    def _cores_saturated(self) -> bool:
        """A GUI thread with a core of its own slows nobody: then no budget, frames always at 30 Hz."""
        return self.threads_used >= self.thread_choice.candidates[-1]

    def _restart_frames(self) -> None:
        self.budget.set_active(self._cores_saturated())
        self.budget.restart(time.monotonic(), time.thread_time())
        self.timer.setInterval(self.budget.interval_ms)

    def _finish(self) -> None:
        worker = self.worker
        if worker is None:
            return
        worker.wait()  # finished was emitted: returns at once
        self.tick()  # the last events
        self.worker = None
        self.timer.stop()
        self.controller.unlock()
        worker.deleteLater()
        heap.release()  # collect at leisure while idle
        self._set_state("idle")
        self.finished.emit()
        error = worker.error  # reported once idle (a modal dialog mid-tick would nest)
        if error is not None:
            self.failed.emit(error.title("Training"), error.message)
        then, self._after_stop = self._after_stop, []
        for callback in then:
            callback()

    def _set_state(self, state: str) -> None:
        if state != self.state:
            self.state = state
            self.state_changed.emit(state)
