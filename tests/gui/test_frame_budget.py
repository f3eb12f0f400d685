"""The frame interval: 30 Hz within the GUI's CPU budget, slower (never below 10 Hz) beyond it."""

from __future__ import annotations

from PySide6.QtCore import Qt

from peft_studio.core.runs.threads import ThreadChoice
from peft_studio.gui.jobs.frame_budget import FASTEST_MS, MEASURE_S, SLOWEST_MS, FrameBudget


def feed(budget: FrameBudget, share_used: float, seconds: float, start: tuple[float, float]) -> tuple[float, float]:
    """Frames every 10 ms of wall time, the GUI thread using `share_used` of a core."""
    wall, cpu = start
    for _ in range(round(seconds / 0.01)):
        wall += 0.01
        cpu += 0.01 * share_used
        budget.frame(wall, cpu)
    return wall, cpu


def test_without_a_budget_frames_stay_at_30_hz():
    budget = FrameBudget(share=None)
    feed(budget, share_used=0.5, seconds=3, start=(0.0, 0.0))
    assert budget.interval_ms == FASTEST_MS


def test_the_budget_applies_only_while_active():
    budget = FrameBudget(share=0.05)
    budget.restart(0.0, 0.0)
    clocks = feed(budget, share_used=0.5, seconds=3, start=(0.0, 0.0))
    assert budget.interval_ms == SLOWEST_MS
    budget.set_active(False)  # the trainer moved to fewer threads than cores: the GUI has a core
    assert budget.interval_ms == FASTEST_MS
    clocks = feed(budget, share_used=0.5, seconds=3, start=clocks)
    assert budget.interval_ms == FASTEST_MS
    budget.set_active(True)
    feed(budget, share_used=0.5, seconds=3, start=clocks)
    assert budget.interval_ms == SLOWEST_MS


def test_over_budget_backs_off_in_proportion_and_stops_at_10_hz():
    budget = FrameBudget(share=0.05)
    budget.restart(0.0, 0.0)
    clocks = feed(budget, share_used=0.10, seconds=MEASURE_S + 0.05, start=(0.0, 0.0))
    assert budget.interval_ms == 2 * FASTEST_MS  # twice the budget: half the frame rate
    feed(budget, share_used=0.5, seconds=3, start=clocks)
    assert budget.interval_ms == SLOWEST_MS


def test_a_decision_waits_for_enough_frames():
    budget = FrameBudget(share=0.05)
    budget.restart(0.0, 0.0)
    feed(budget, share_used=0.5, seconds=MEASURE_S * 0.8, start=(0.0, 0.0))
    assert budget.interval_ms == FASTEST_MS


def test_well_under_budget_creeps_back_to_30_hz():
    budget = FrameBudget(share=0.05)
    budget.restart(0.0, 0.0)
    clocks = feed(budget, share_used=0.5, seconds=3, start=(0.0, 0.0))
    assert budget.interval_ms == SLOWEST_MS
    clocks = feed(budget, share_used=0.01, seconds=MEASURE_S * 2.1, start=clocks)
    assert FASTEST_MS < budget.interval_ms < SLOWEST_MS  # a step at a time, not a jump
    feed(budget, share_used=0.01, seconds=30, start=clocks)
    assert budget.interval_ms == FASTEST_MS


def test_a_restart_keeps_the_interval_the_last_run_settled_on_and_measures_afresh():
    """A frame costs what it cost in the last run: starting again at 30 Hz would spend twice the budget for the
    second the budget takes to find the interval again, all of a short run."""
    budget = FrameBudget(share=0.05)
    budget.restart(0.0, 0.0)
    feed(budget, share_used=0.5, seconds=3, start=(0.0, 0.0))
    assert budget.interval_ms == SLOWEST_MS
    budget.restart(100.0, 10.0)  # a pause of a minute: its idle time is not averaged in
    assert budget.interval_ms == SLOWEST_MS
    feed(budget, share_used=0.01, seconds=MEASURE_S * 1.1, start=(100.0, 10.0))
    assert budget.interval_ms == SLOWEST_MS - 5  # measured from the restart: well under budget, one step back


def test_the_runner_slows_its_frames_when_the_gui_exceeds_its_budget(window, qtbot):
    runner = window.runner
    runner.budget.share = 1e-9  # any painting at all is over this budget
    runner.thread_choice = ThreadChoice(1)  # a trainer on every core (here: one), whatever this machine's load
    window.controller.set_training(steps=100_000)
    runner.play_pause()
    # on a loaded machine the first frames may come before the first step: wait for both
    qtbot.waitUntil(lambda: runner.timer.interval() == SLOWEST_MS and window.plots.point_count() > 0, timeout=20_000)
    assert runner.state == "running"
    runner.play_pause()  # pause, then resume: at the interval the budget found
    runner.play_pause()
    assert runner.timer.interval() == SLOWEST_MS
    assert runner.timer.timerType() == Qt.TimerType.PreciseTimer  # a coarse timer may fire 5% late: 9.5 frames/s
    runner.stop_and_wait()
