"""Work off the GUI thread: one Worker class for training and for every background job.

A Worker iterates a generator on its own thread (training: on the one long-lived trainer thread, while the
worker's own thread waits for it, trainer_thread.py) and appends each item to a deque; the owner drains
the deque on a timer (the runner at ~30 Hz, background jobs at 10 Hz). No signal is emitted per item
(a signal per step would queue thousands of events and make the GUI thread do per-step work) and no
tensor crosses threads. Stop is cooperative: a flag checked between items, plus the job's own stop
(a TrainControl stops between optimizer steps, and a layer hook ends a long step: runs/interrupt.py).
An error ends the thread as one JobError: a user mistake (PeftStudioError) says what to fix; anything
else is a bug, reported through core/logs.py (its traceback in the log file and under the dialog's Details…).
"""

from __future__ import annotations

import threading
import time
import weakref
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from typing import Any

import torch
from PySide6.QtCore import QThread

from ...core.errors import PeftStudioError
from ...core.lenses.live import LiveLens
from ...core.logs import report_unexpected
from ...core.model.experiment import Experiment
from ...core.runs.interrupt import StepInterrupted, interruptible
from ...core.runs.probe import choose_threads
from ...core.runs.threads import ThreadChoice, usable_cores
from ...core.runs.torch_threads import set_torch_threads
from ...core.runs.train import StepEvent, TrainControl, TrainSettings, grad_norms, train
from ...core.torch_first_use import import_lazy_parts
from ..diagram.gains import sample_gains
from .trainer_thread import TRAINER, Submitted, TrainerThread

# Measured on 2 cores (tiny + intents + LoRA, benchmarks/run.py gui_vs_bare): any torch op on
# the GUI thread with >1 threads (a predict, a backward) halves the trainer's speed for the rest of
# the process. So the GUI thread gets exactly one torch thread; the trainer thread's count is
# measured before a run's first step and fixed for the run (core/runs/threads.py), since the best
# count depends on what else the machine is doing.
GUI_TORCH_THREADS = 1
# A build (a new setup's model, made off the GUI thread) copies, hashes and tokenizes: memory-bound work that a
# second torch thread does not speed up, and that collapses when another process wants a core. Switching from
# tiny to MiniLM (the core's build alone, load average 9 on 2 cores): 2 threads 3.0 s (0.65 s of CPU), 1 thread
# 0.41 s (0.10 s of CPU). One thread also leaves the GUI thread a core of its own while it waits to repaint.
BUILD_TORCH_THREADS = 1
GRAD_INTERVAL_S = 0.1  # gradient norms at most 10 times a second: they cost ~30% when taken per step


@dataclass(frozen=True)
class JobError:
    """How a worker ended badly: `refused` for a user mistake (the message says what to fix), else a bug (its
    traceback is in the log, and the window's dialog finds it for Details…)."""

    refused: bool
    message: str

    def title(self, what: str) -> str:
        return f"{what} stopped" if self.refused else f"{what} failed"


class Worker(QThread):
    """Iterates `make()` (called on the worker thread) and queues each item; see the module docstring."""

    instances: weakref.WeakSet[Worker] = weakref.WeakSet()  # lets tests prove none is left running
    compute_thread: TrainerThread | None = None  # None: the work runs on this QThread itself

    def __init__(self, make: Callable[[], Iterator[Any]], on_stop: Callable[[], None] | None = None,
                 where: str = "a background job", torch_threads: int | None = None) -> None:
        super().__init__()
        self.torch_threads = torch_threads  # None: a modest team (prepare_thread)
        Worker.instances.add(self)
        self.make = make
        self.on_stop = on_stop
        self.where = where  # for the log: what was running when a bug showed
        self.items: deque[Any] = deque()
        self.error: JobError | None = None
        self._stop = threading.Event()

    def prepare_thread(self) -> None:
        """A background job gets a fixed, modest team of torch threads, or the count it asked for (training
        chooses by measuring)."""
        set_torch_threads(self.torch_threads or max(1, min(4, usable_cores())))

    def run(self) -> None:  # worker thread
        if self.compute_thread is None:
            self._work()
        else:  # this thread waits; the work runs on a long-lived thread (trainer_thread.py)
            self.compute_thread.run(self._work)

    def _work(self) -> None:
        import_lazy_parts()  # not at the same time as another thread (core/torch_first_use.py)
        self.prepare_thread()
        try:
            for item in self.make():
                self.items.append(item)
                if self._stop.is_set() and self.on_stop is None:  # a job with its own stop ends by itself,
                    break  # reporting where it stopped; others end between items
        except StepInterrupted:
            pass  # a stop ended a long step: the weights are as the last finished step left them
        except PeftStudioError as exc:
            self.error = JobError(True, str(exc))
        except Exception as exc:  # noqa: BLE001 - reported in the window (traceback logged), never a silent death
            self.error = JobError(False, report_unexpected(exc, self.where))

    def stop(self) -> None:
        self._stop.set()
        if self.on_stop is not None:
            self.on_stop()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def drain(self) -> list[Any]:
        """Every item posted since the last drain, oldest first (GUI thread)."""
        items = []
        while self.items:
            items.append(self.items.popleft())
        return items


class TrainWorker(Worker):
    """Trains `experiment` for `settings.steps` steps from `start_step`; items are plain-dict step events."""

    instances: weakref.WeakSet[TrainWorker] = weakref.WeakSet()
    compute_thread = TRAINER  # every run on one warm thread: a fresh one costs ~6 ms a run (trainer_thread.py)

    def __init__(self, experiment: Experiment, settings: TrainSettings, start_step: int = 0,
                 paused: bool = False, threads: ThreadChoice | None = None, live: LiveLens | None = None) -> None:
        self.control = TrainControl()
        super().__init__(self._events, self.control.stop, "training")
        TrainWorker.instances.add(self)
        self.experiment = experiment
        self.settings = settings
        self.start_step = start_step
        # the runner passes one choice to every run: the same setup trains with the same count again
        self.thread_choice = threads or ThreadChoice()
        self.threads: int | None = None  # chosen on the worker thread before the first step
        self.live = live  # the Lens dock's snapshots, taken here between steps (core/lenses/live.py)
        if paused:
            self.control.pause()

    def prepare_thread(self) -> None:
        """Nothing here: the run measures its thread count before its first step and keeps it
        (core/runs/threads.py)."""

    def _events(self) -> Iterator[dict[str, Any]]:  # worker thread
        settings = replace(self.settings, track_grads=False)  # taken here, throttled, from p.grad
        named = [(n, p) for n, p in self.experiment.model.named_parameters() if p.requires_grad]
        last_grads = 0.0
        self.threads = choose_threads(self.thread_choice, self.experiment, settings)
        live = self.live
        with interruptible(self.experiment.model, lambda: self.control.stopped) as layer_stops:
            for event in train(self.experiment, settings, self.control, self.start_step):
                payload = _plain(event)
                payload["threads"] = self.threads
                now = time.perf_counter()
                if now - last_grads >= GRAD_INTERVAL_S or event.last or self.control.paused:
                    last_grads = now
                    payload["grads"] = grad_norms(named)
                    payload["gains"] = sample_gains(named)  # IA3's scaling vectors, for the live heat strips
                if live is not None:
                    live.offer(self.experiment, event.step)  # between steps; never waits
                yield payload
                # The run's next step keeps the run's count (and so its bits) whatever ran meanwhile on this
                # thread; other threads' counts cannot reach it once set (core/runs/torch_threads.py).
                if torch.get_num_threads() != self.threads:
                    set_torch_threads(self.threads)
                layer_stops.step_done()  # a short step's run needs no check inside its steps


def warm_up() -> Submitted:
    """Start paying torch's first-use costs on the trainer thread; join it before the first run.

    The first optimizer step imports ~800 modules (torch._dynamo, sympy, ...): over a second of
    work that holds the GIL in chunks, which would make the first run stutter the window. It runs
    off the GUI thread because a backward pass there halved later training speed with 2 torch
    threads (measured: 117 -> 60 steps/s on tiny + LoRA, 2 cores), and on the trainer thread so that
    the first run finds that thread warm. The window starts it after its first paint, so start-up
    does not wait for it.
    """
    return TrainWorker.compute_thread.submit(_one_optimizer_step)


def _one_optimizer_step() -> None:
    try:
        _pay_first_use()
    except Exception as exc:  # noqa: BLE001 - logged (nobody awaits the warm-up's result); the run will say it too
        report_unexpected(exc, "torch's warm-up")


def _pay_first_use() -> None:
    import_lazy_parts()
    parameter = torch.nn.Parameter(torch.zeros(2, 2))
    optimizer = torch.optim.AdamW([parameter], lr=1e-3)
    loss = torch.nn.functional.cross_entropy(torch.softmax(parameter, -1) @ parameter, torch.tensor([0, 1]))
    loss.backward()
    optimizer.step()
    torch.optim.Adam([parameter], lr=1e-3).step()


def _plain(event: StepEvent) -> dict[str, Any]:
    return {"step": event.step, "loss": event.loss, "accuracy": event.accuracy, "sps": event.steps_per_second,
            "val_loss": event.val_loss, "val_accuracy": event.val_accuracy, "last": event.last,
            "method_state": event.method_state}
