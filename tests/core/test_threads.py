"""The trainer's thread count is chosen by measurement: probes, re-probes, pauses (fake clock)."""

from __future__ import annotations

import pytest

from peft_studio.core.runs.threads import ThreadTuner, candidates, tuned


class Machine:
    """A fake machine: steps/s for each thread count, which the test changes mid-run."""

    def __init__(self, rates: dict[int, float]) -> None:
        self.rates = rates
        self.now = 0.0
        self.time_at: dict[int, float] = {}  # seconds trained at each count

    def run(self, tuner: ThreadTuner, seconds: float) -> None:
        end = self.now + seconds
        while self.now < end:
            threads = tuner.threads
            step = 1.0 / self.rates[threads]
            self.now += step
            self.time_at[threads] = self.time_at.get(threads, 0.0) + step
            tuner.step(step, self.now)


@pytest.mark.parametrize("cores, expected", [(1, (1,)), (2, (1, 2)), (4, (1, 2, 4)), (6, (1, 2, 4, 6)),
                                             (16, (1, 2, 4, 8, 16))])
def test_candidates_go_up_to_the_cores(cores, expected):
    assert candidates(cores) == expected


def test_a_probe_keeps_the_fastest_count():
    machine, tuner = Machine({1: 75.0, 2: 120.0}), ThreadTuner(2)
    machine.run(tuner, 2.0)
    assert tuner.probes == 1 and not tuner.probing and tuner.threads == 2
    assert tuner.rates == pytest.approx({1: 75.0, 2: 120.0})
    machine.rates = {1: 120.0, 2: 75.0}  # the other way round
    tuner = ThreadTuner(2)
    machine.run(tuner, 2.0)
    assert tuner.threads == 1


def test_steady_rates_probe_again_only_periodically_and_cost_little():
    machine, tuner = Machine({1: 75.0, 2: 120.0}), ThreadTuner(2, reprobe_s=30.0)
    machine.run(tuner, 2.0)
    machine.time_at.clear()
    machine.run(tuner, 25.0)
    assert tuner.probes == 1 and tuner.threads == 2 and set(machine.time_at) == {2}
    machine.run(tuner, 95.0)
    assert tuner.probes == 4 and tuner.threads == 2
    assert machine.time_at[1] / sum(machine.time_at.values()) < 0.03  # the slower count's share of the run


def test_a_neighbour_taking_a_core_moves_the_trainer_to_one_thread_and_back_when_it_leaves():
    machine, tuner = Machine({1: 75.0, 2: 120.0}), ThreadTuner(2, reprobe_s=30.0)
    machine.run(tuner, 3.0)
    assert tuner.threads == 2
    machine.rates = {1: 65.0, 2: 15.0}  # a busy process starts on one core
    machine.run(tuner, 3.0)
    assert tuner.threads == 1 and tuner.probes == 2
    machine.rates = {1: 75.0, 2: 120.0}  # it stops: 1 thread runs as fast as before, so only the
    machine.run(tuner, 31.0)  # periodic probe can find that 2 are better again
    assert tuner.threads == 2


def test_probes_are_bounded_in_time_even_when_a_count_is_very_slow():
    machine, tuner = Machine({1: 60.0, 2: 0.5}), ThreadTuner(2, max_probe_s=1.5)
    machine.run(tuner, 6.0)
    assert tuner.threads == 1 and machine.time_at[2] <= 2 * 2.0 + 1e-9  # one discarded step + the probe


def test_tuned_applies_counts_between_steps_and_skips_paused_intervals():
    clock = [0.0]
    paused = [False]
    applied: list[int] = []
    tuner = ThreadTuner(2, window_s=0.5)

    def steps():
        for index in range(400):
            if index == 201:  # resumed after 10 s: the trainer's wait_turn blocked meanwhile
                clock[0] += 10.0
                paused[0] = False
            clock[0] += 1.0 / {1: 75.0, 2: 120.0}[applied[-1]]
            if index == 200:  # Pause pressed during this step
                paused[0] = True
            yield index

    seen = list(tuned(steps(), tuner, applied.append, lambda: paused[0], clock=lambda: clock[0]))
    assert seen == list(range(400))
    assert applied[0] == 1 and applied[-1] == 2 and all(a != b for a, b in zip(applied, applied[1:], strict=False))
    assert tuner.probes == 1  # the pause was not read as a slow step (that would have started a probe)
