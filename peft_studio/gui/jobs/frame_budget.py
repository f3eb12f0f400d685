"""How often the window repaints while training: 30 Hz, unless painting would slow the trainer.

Measured on 2 cores (tiny + intents + LoRA, within-process A/B): when the trainer's thread team
uses every core, each millisecond the GUI thread spends painting stalls the whole team, so a
window repainting at 30 Hz (~6.5% of one core) cost ~8% of the training speed, and ~3% at 10 Hz.
So on such a machine the GUI thread gets a CPU budget, and the frame interval adapts to it:
longer when painting costs more than the budget (a big window, a slow machine), back towards
30 Hz when it costs less. With a spare core the budget does not apply and frames stay at 30 Hz.
At 3% the 2-core benchmark repainted ~24 times a second (a frame costs ~1.25 ms of the GUI thread) and
trained at 0.91 of a bare loop (benchmarks/run.py, gui_vs_bare, quiet run of 2026-12-05 11:35); the budget is
1.5%: measured 16.8 frames a second while both cores train (the quiet run of 14:06), the window at 0.96 of the
headless trainer (0.944 at 3%), and a loss curve still moves smoothly. It is 1% since frames got cheaper (the live
curves' pieces, panels/plots.py): at 1.5% the budget spent the saving on more frames (10.6 a second, the GUI thread
at 1.8% of a core), at 1% it keeps 10.3 frames a second at 1.3% of a core and the window trained at 0.964 of the bare
loop against 0.941 (separate processes, 7 rounds, 2026-12-05 about 21:00).
"""

from __future__ import annotations

FASTEST_MS = 33  # ~30 Hz: the most a plot or counter needs to look live
SLOWEST_MS = 100  # 10 Hz: never less live than this, whatever painting costs
GUI_SHARE = 0.01  # of one core, for the GUI thread while training saturates every core
MEASURE_S = 0.5  # re-decide twice a second: long enough to average over several frames


class FrameBudget:
    """The frame interval: backs off in proportion when over budget, returns 5 ms at a time.

    Feed it (wall clock, GUI-thread CPU clock) once per frame; `interval_ms` is the frame
    interval to use next. `share=None` means no budget: always FASTEST_MS.
    """

    def __init__(self, share: float | None = GUI_SHARE) -> None:
        self.share = share
        self.active = True  # see set_active
        self.interval_ms = FASTEST_MS
        self._since: tuple[float, float] | None = None

    def set_active(self, active: bool) -> None:
        """Whether the budget applies now: only while the trainer's threads take every core."""
        if active != self.active:
            self.active = active
            if not active:
                self.interval_ms = FASTEST_MS
            self._since = None

    def restart(self, wall: float, cpu: float) -> None:
        """A run starts (or resumes): measure from here, at the interval the last run settled on. A frame costs
        what it cost then (the same window), and starting each run at 30 Hz spent twice the budget for as long
        as the budget takes to find the interval again: about a second, the whole of a 200-step run on tiny."""
        self._since = (wall, cpu)

    def frame(self, wall: float, cpu: float) -> int:
        """Record a frame at these clocks; returns the interval (ms) to the next one."""
        if self.share is None or not self.active:
            return self.interval_ms
        if self._since is None:
            self._since = (wall, cpu)
            return self.interval_ms
        wall0, cpu0 = self._since
        if wall - wall0 < MEASURE_S:
            return self.interval_ms
        used = (cpu - cpu0) / (wall - wall0)
        if used > self.share:  # over budget: back off in proportion
            self.interval_ms = min(SLOWEST_MS, round(self.interval_ms * min(2.0, used / self.share)))
        elif used < 0.7 * self.share:  # well under: creep back towards 30 Hz
            self.interval_ms = max(FASTEST_MS, self.interval_ms - 5)
        self._since = (wall, cpu)
        return self.interval_ms
