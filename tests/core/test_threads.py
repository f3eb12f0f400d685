"""A run's thread count: measured before its first step (fake clock), kept for runs from the same place."""

from __future__ import annotations

import pytest

from peft_studio.core.runs.threads import ThreadChoice, candidates


class Machine:
    """A fake machine: steps/s for each thread count (the test changes them), a clock the probe advances."""

    def __init__(self, rates: dict[int, float]) -> None:
        self.rates = rates
        self.now = 0.0
        self.steps: dict[int, int] = {}  # probe steps run at each count

    def clock(self) -> float:
        return self.now

    def probe(self, threads: int) -> float:
        seconds = 1.0 / self.rates[threads]
        self.now += seconds
        self.steps[threads] = self.steps.get(threads, 0) + 1
        return seconds

    def choice(self, cores: int = 2, **kwargs) -> ThreadChoice:
        return ThreadChoice(cores, clock=self.clock, **kwargs)


@pytest.mark.parametrize("cores, expected", [(1, (1,)), (2, (1, 2)), (4, (1, 2, 4)), (6, (1, 2, 4, 6)),
                                             (16, (1, 2, 4, 8, 16))])
def test_candidates_go_up_to_the_cores(cores, expected):
    assert candidates(cores) == expected


@pytest.mark.parametrize("rates, fastest", [({1: 75.0, 2: 120.0}, 2), ({1: 65.0, 2: 15.0}, 1)])
def test_measuring_keeps_the_fastest_count(rates, fastest):
    machine = Machine(rates)
    choice = machine.choice()
    assert choice.for_run("a", machine.probe) == fastest == choice.threads
    assert choice.rates == pytest.approx(rates) and choice.probes == 1


def test_a_run_from_the_same_place_keeps_its_count_whatever_the_load_is_by_then():
    machine = Machine({1: 75.0, 2: 120.0})
    choice = machine.choice()
    assert choice.for_run("lesson", machine.probe) == 2
    machine.rates = {1: 65.0, 2: 15.0}  # a neighbour arrives: 2 threads would now be slower
    machine.steps.clear()
    assert choice.for_run("lesson", machine.probe) == 2  # Reset then Play: the same bits, so the same count
    assert machine.steps == {} and choice.probes == 1  # not even measured
    assert choice.for_run("another setup", machine.probe) == 1  # a new setup measures the machine as it is
    assert choice.for_run("lesson", machine.probe) == 2 and choice.threads == 2
    assert choice.probes == 2


def test_only_the_latest_keys_are_remembered():
    machine = Machine({1: 75.0, 2: 120.0})
    choice = machine.choice(remember=2)
    for key in ("a", "b", "c"):
        choice.for_run(key, machine.probe)
    choice.for_run("c", machine.probe)
    assert choice.probes == 3
    choice.for_run("a", machine.probe)  # forgotten: measured again
    assert choice.probes == 4


def test_measuring_is_bounded_in_time_even_when_a_count_is_very_slow():
    machine = Machine({1: 60.0, 2: 0.5})  # 2 s a step at 2 threads
    choice = machine.choice(max_probe_s=0.6)
    assert choice.for_run("a", machine.probe) == 1
    assert machine.steps[2] == 2  # one untimed step, then one timed step already over the bound
    assert machine.steps[1] >= 1 + 3  # the untimed step, then at least probe_steps


def test_one_core_needs_no_measuring():
    machine = Machine({1: 75.0})
    choice = machine.choice(cores=1)
    assert choice.for_run("a", machine.probe) == 1 and machine.steps == {} and choice.probes == 0


class Burst(Machine):
    """A machine where another process takes a core from `start` to `end` s: 2 threads slow 10x, 1 not at all."""

    def __init__(self, rates: dict[int, float], start: float, end: float) -> None:
        super().__init__(rates)
        self.start, self.end = start, end

    def probe(self, threads: int) -> float:
        slow = threads > 1 and self.start <= self.now < self.end
        seconds = (10.0 if slow else 1.0) / self.rates[threads]
        self.now += seconds
        self.steps[threads] = self.steps.get(threads, 0) + 1
        return seconds


def test_a_passing_burst_does_not_decide_the_count():
    # the burst covers the slice of time in which 2 threads would be measured if each count were timed alone
    machine = Burst({1: 75.0, 2: 120.0}, start=0.11, end=0.4)
    choice = machine.choice()
    assert choice.for_run("a", machine.probe) == 2
    assert choice.rates[2] == pytest.approx(120.0)  # the median step: the slow ones are the minority
