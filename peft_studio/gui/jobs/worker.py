"""The one place that runs core training off the GUI thread.

The worker iterates the core's `train` generator and appends plain dicts to a deque; the window
drains the deque on a ~30 Hz timer. No signal is emitted per step (a signal per step would queue
thousands of events and make the GUI thread do per-step work), no tensor crosses threads.
"""

from __future__ import annotations

import threading
import time
import weakref
from collections import deque
from dataclasses import replace
from typing import Any

import torch
from PySide6.QtCore import QThread

from ...core.errors import PeftStudioError
from ...core.logs import report_unexpected
from ...core.model.experiment import Experiment
from ...core.runs.probe import choose_threads
from ...core.runs.threads import ThreadChoice
from ...core.runs.train import StepEvent, TrainControl, TrainSettings, grad_norms, train
from ..diagram.gains import sample_gains

# Measured on 2 cores (tiny + intents + LoRA, benchmarks/run.py gui_vs_bare): any torch op on
# the GUI thread with >1 threads (a predict, a backward) halves the trainer's speed for the rest of
# the process. So the GUI thread gets exactly one torch thread; the trainer thread's count is
# measured before a run's first step and fixed for the run (core/runs/threads.py), since the best
# count depends on what else the machine is doing.
GUI_TORCH_THREADS = 1
GRAD_INTERVAL_S = 0.1  # gradient norms at most 10 times a second: they cost ~30% when taken per step


class TrainWorker(QThread):
    """Trains `experiment` for `settings.steps` steps from `start_step`; see `drain`."""

    instances: weakref.WeakSet[TrainWorker] = weakref.WeakSet()  # lets tests prove none is left running

    def __init__(self, experiment: Experiment, settings: TrainSettings, start_step: int = 0,
                 paused: bool = False, threads: ThreadChoice | None = None) -> None:
        super().__init__()
        TrainWorker.instances.add(self)
        self.experiment = experiment
        self.settings = settings
        self.start_step = start_step
        # the runner passes one choice to every run: the same setup trains with the same count again
        self.thread_choice = threads or ThreadChoice()
        self.threads: int | None = None  # chosen on the worker thread before the first step
        self.control = TrainControl()
        if paused:
            self.control.pause()
        self._events: deque[dict[str, Any]] = deque()

    def run(self) -> None:  # worker thread
        settings = replace(self.settings, track_grads=False)  # taken here, throttled, from p.grad
        named = [(n, p) for n, p in self.experiment.model.named_parameters() if p.requires_grad]
        last_grads = 0.0
        try:
            self.threads = choose_threads(self.thread_choice, self.experiment, settings)
            for event in train(self.experiment, settings, self.control, self.start_step):
                payload = _plain(event)
                payload["threads"] = self.threads
                now = time.perf_counter()
                if now - last_grads >= GRAD_INTERVAL_S or event.last or self.control.paused:
                    last_grads = now
                    payload["grads"] = grad_norms(named)
                    payload["gains"] = sample_gains(named)  # IA3's scaling vectors, for the live heat strips
                self._events.append(payload)
        except PeftStudioError as exc:
            self._events.append({"error": str(exc), "title": "Training stopped"})
        except Exception as exc:  # noqa: BLE001 - a failing forward must not kill the app; logged with its traceback
            self._events.append({"error": report_unexpected(exc, "training"), "title": "Training failed"})

    def drain(self) -> list[dict[str, Any]]:
        """Every event posted since the last drain, oldest first (GUI thread)."""
        events = []
        while self._events:
            events.append(self._events.popleft())
        return events

    def stop_and_wait(self, timeout_ms: int = 10_000) -> bool:
        self.control.stop()
        return self.wait(timeout_ms)


def warm_up() -> threading.Thread:
    """Start paying torch's first-use costs on a throwaway thread; join it before the first run.

    The first optimizer step imports ~800 modules (torch._dynamo, sympy, ...): over a second of
    work that holds the GIL in chunks, which would make the first run stutter the window. It runs
    on its own thread because a backward pass on the GUI thread halved later training speed with
    2 torch threads (measured: 117 -> 60 steps/s on tiny + LoRA, 2 cores). The window starts it
    after its first paint, so start-up does not wait for it.
    """
    thread = threading.Thread(target=_one_optimizer_step, name="torch-warm-up")
    thread.start()
    return thread


def _one_optimizer_step() -> None:
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
