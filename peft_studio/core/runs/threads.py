"""How many torch threads the trainer uses: chosen by measuring, not from the core count.

On a shared machine (a laptop with a browser or a video call open) the best count changes while a
run goes on. Measured on 2 cores, tiny + intents + LoRA: quiet, 2 threads beat 1 (~120 vs ~75
steps/s); with one core taken by another process, 1 thread makes ~60-70 steps/s and 2 threads
13-58, depending on the OpenMP wait policy. So the trainer probes each candidate for a moment,
keeps the fastest, and probes again when its rate moves by a clear margin or every half minute.

This module is torch-free and Qt-free: `ThreadTuner` is fed step durations and a clock, and the
caller applies the count it returns (`tuned` does that around any step iterator).
"""

from __future__ import annotations

import os
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from typing import TypeVar

# OpenMP's wait policy is left as torch ships it. Measured on 2 cores (tiny + intents + LoRA, full
# batch): 2 threads made 108 steps/s spinning (the default) and 49 with OMP_WAIT_POLICY=PASSIVE on a
# quiet machine; with one core busy elsewhere, 30 spinning and 61 passive, and 1 thread ~60-75 either
# way. The tuner below moves to 1 thread when a neighbour arrives, so the default policy plus the
# tuner is best in both conditions; a user may still set OMP_WAIT_POLICY (e.g. for the CLI, which
# keeps a fixed thread count so that its losses are reproducible).


def usable_cores() -> int:
    """Cores this process may run on (taskset, containers), else the machine's count."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


def candidates(cores: int | None = None) -> tuple[int, ...]:
    """1, 2, 4, ... up to the core count, and the core count itself."""
    cores = max(1, cores or usable_cores())
    counts = {cores}
    count = 1
    while count < cores:
        counts.add(count)
        count *= 2
    return tuple(sorted(counts))


class ThreadTuner:
    """Feed it each step's duration; `threads` is the count to run the next step with.

    A probe runs every candidate for at least `probe_steps` steps and `probe_s` seconds (at most
    `max_probe_s`), after `settle_steps` discarded steps (a new thread team warms up), and keeps
    the one with the highest steps/s. Once settled, it probes again when the rate over the last
    `window_s` moves more than `margin` from the probed rate, or `reprobe_s` after the last probe.
    """

    def __init__(self, cores: int | None = None, *, probe_steps: int = 3, probe_s: float = 0.25,
                 max_probe_s: float = 1.5, settle_steps: int = 1, window_s: float = 1.0, window_steps: int = 5,
                 margin: float = 0.25, reprobe_s: float = 30.0) -> None:
        self.candidates = candidates(cores)
        self.probe_steps, self.probe_s, self.max_probe_s = probe_steps, probe_s, max_probe_s
        self.settle_steps = settle_steps
        self.window_s, self.window_steps, self.margin, self.reprobe_s = window_s, window_steps, margin, reprobe_s
        self.rates: dict[int, float] = {}  # steps/s of each candidate in the last probe
        self.probes = 0  # probes completed (for tests and the status line)
        self.baseline: float | None = None  # the chosen count's probed rate; None while probing
        self._order: list[int] = list(self.candidates)
        self._samples: list[float] = []
        self._discard = settle_steps
        self._window: deque[float] = deque()
        self._settled_at = 0.0
        self.threads = self._order[0]

    @property
    def probing(self) -> bool:
        return self.baseline is None

    def step(self, seconds: float, now: float) -> int:
        """Record one step that took `seconds`, ending at clock `now`; returns the count to use next."""
        if self._discard > 0:
            self._discard -= 1
            return self.threads
        if self.probing:
            self._probe_sample(seconds, now)
        else:
            self._settled_sample(seconds, now)
        return self.threads

    def skip(self) -> None:
        """The last interval was not a plain step (a pause, a new run): drop it and the next one."""
        self._discard = max(self._discard, self.settle_steps)
        self._samples.clear()
        self._window.clear()

    def reprobe(self) -> None:
        """Start a new probe at the next step, the current count first."""
        self.baseline = None
        self.rates = {}
        self._order = [self.threads] + [count for count in self.candidates if count != self.threads]
        self._samples.clear()
        self._window.clear()
        self._discard = self.settle_steps

    # ---- internals ----------------------------------------------------------------------------
    def _probe_sample(self, seconds: float, now: float) -> None:
        self._samples.append(seconds)
        spent = sum(self._samples)
        if spent < self.max_probe_s and (len(self._samples) < self.probe_steps or spent < self.probe_s):
            return
        self.rates[self.threads] = len(self._samples) / spent if spent > 0 else float("inf")
        self._samples.clear()
        self._order.pop(0)
        if self._order:  # next candidate
            self.threads = self._order[0]
            self._discard = self.settle_steps
            return
        self.threads = max(self.rates, key=self.rates.__getitem__)
        self.baseline = self.rates[self.threads]
        self.probes += 1
        self._settled_at = now
        self._window.clear()
        # back on a count used before: its team is warm, but the switch itself costs a step
        self._discard = self.settle_steps

    def _settled_sample(self, seconds: float, now: float) -> None:
        assert self.baseline is not None
        if now - self._settled_at >= self.reprobe_s:
            self.reprobe()
            return
        self._window.append(seconds)
        spent = sum(self._window)
        while len(self._window) > self.window_steps and spent - self._window[0] >= self.window_s:
            spent -= self._window.popleft()
        if len(self._window) < self.window_steps or spent < self.window_s:
            return
        rate = len(self._window) / spent
        if abs(rate - self.baseline) > self.margin * self.baseline:  # a neighbour came or went
            self.reprobe()


T = TypeVar("T")


def tuned(steps: Iterable[T], tuner: ThreadTuner, set_threads: Callable[[int], None],
          paused: Callable[[], bool] = lambda: False,
          clock: Callable[[], float] | None = None) -> Iterator[T]:
    """Yield from `steps`, timing each and applying the tuner's thread count between steps.

    A step's time runs from the consumer asking for the next item to its arrival (the consumer's
    own work is not the trainer's speed). Intervals during which `paused()` was true (at either
    end) are not step times and are skipped.
    """
    clock = clock or time.perf_counter
    applied = tuner.threads
    set_threads(applied)
    tuner.skip()  # the first step of a run pays one-off costs
    iterator = iter(steps)
    last = clock()
    was_paused = paused()
    for item in iterator:
        now = clock()
        if was_paused or paused():
            tuner.skip()
        else:
            tuner.step(now - last, now)
        if tuner.threads != applied:
            applied = tuner.threads
            set_threads(applied)
        yield item
        last = clock()
        was_paused = paused()
