"""How many torch threads a run uses: measured before its first step, then fixed until it ends.

The best count depends on what else the machine does. Measured on 2 cores, tiny + intents + LoRA:
quiet, 2 threads beat 1 (~120 vs ~75 steps/s); with one core taken by another process, 1 thread makes
~60-70 steps/s and 2 threads 13-58 (OpenMP's threads spin-wait for the busy core). So the count is
measured, not taken from the core count.

It is measured before a run and never changed during one: 1 and 2 threads split some reductions
differently and so change the last bits of a loss, and a count changed mid-run made "Reset then Play
reproduces the same curve" fail 1 run in 4. A run that starts where an earlier one started (the same
setup, data and training settings: Reset then Play, a lesson reopened) gets the same count again
without measuring, so it reproduces the same bits whatever the machine's load is by then; a new
setup measures afresh.

This module is torch-free and Qt-free: the caller supplies `probe(threads) -> seconds of one step`
(core/runs/probe.py) and applies the count it gets.
"""

from __future__ import annotations

import os
import statistics
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable

# OpenMP's wait policy is left as torch ships it. Measured on 2 cores (tiny + intents + LoRA, full
# batch): 2 threads made 108 steps/s spinning (the default) and 49 with OMP_WAIT_POLICY=PASSIVE on a
# quiet machine; with one core busy elsewhere, 30 spinning and 61 passive, and 1 thread ~60-75 either
# way. Measuring before each new setup picks 1 thread when a neighbour is there, so the default policy
# is best in both conditions; a user may still set OMP_WAIT_POLICY.


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


Probe = Callable[[int], float]  # run one step's work at this many threads; its seconds


class ThreadChoice:
    """The thread count of each run: `for_run(key, probe)` before the first step, fixed until the run ends.

    Measuring runs every candidate once untimed (a new thread team warms up), then times them in turn, one
    step each, in an order reversed every round (1 2, 2 1, ...); a count leaves the turns once it has
    `probe_steps` steps and `probe_s` seconds of its own (or `max_probe_s`). The count with the shortest
    median step is kept. Turns, because a count timed alone in its own slice of time took the whole of any
    passing disturbance (the window's repaint after Play, a neighbour's burst), and a disturbance slows 2
    threads on 2 cores far more than 1: one burst could give a quiet machine's run 1 thread throughout.
    The count chosen for a key is remembered (the last `remember` keys).
    """

    def __init__(self, cores: int | None = None, *, probe_steps: int = 3, probe_s: float = 0.1,
                 max_probe_s: float = 0.6, remember: int = 64,
                 clock: Callable[[], float] = time.perf_counter) -> None:
        self.candidates = candidates(cores)
        self.probe_steps, self.probe_s, self.max_probe_s = probe_steps, probe_s, max_probe_s
        self.remember = remember
        self.clock = clock
        self.rates: dict[int, float] = {}  # steps/s of each candidate in the last measurement
        self.probes = 0  # measurements made (for tests and the status line)
        self.threads = self.candidates[-1]  # the count of the latest run
        self._chosen: OrderedDict[Hashable, int] = OrderedDict()

    def for_run(self, key: Hashable, probe: Probe) -> int:
        """The count a run starting from `key` trains with: the one this key had before, else measured now."""
        if key in self._chosen:
            self._chosen.move_to_end(key)
            self.threads = self._chosen[key]
            return self.threads
        self._chosen[key] = self.measure(probe)
        while len(self._chosen) > self.remember:
            self._chosen.popitem(last=False)
        return self.threads

    def measure(self, probe: Probe) -> int:
        """Time every candidate with `probe`; the fastest count (also kept as `threads`)."""
        if len(self.candidates) == 1:
            self.threads = self.candidates[0]
            return self.threads
        self.rates = self._rates(probe)
        self.probes += 1
        self.threads = max(self.rates, key=self.rates.__getitem__)
        return self.threads

    def _rates(self, probe: Probe) -> dict[int, float]:
        for count in self.candidates:
            probe(count)  # untimed: the team for this count starts up
        samples: dict[int, list[float]] = {count: [] for count in self.candidates}
        spent = dict.fromkeys(self.candidates, 0.0)  # each count's own time: a slow count cannot starve the others
        order = list(self.candidates)
        while order:
            for count in order:
                started = self.clock()
                samples[count].append(probe(count))
                spent[count] += self.clock() - started
            order = [count for count in reversed(order) if not self._measured(samples[count], spent[count])]
        medians = {count: statistics.median(times) for count, times in samples.items()}
        return {count: 1.0 / median if median > 0 else float("inf") for count, median in medians.items()}

    def _measured(self, samples: list[float], spent: float) -> bool:
        return spent >= self.max_probe_s or (len(samples) >= self.probe_steps and spent >= self.probe_s)
