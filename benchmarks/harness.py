"""The measuring machinery behind benchmarks/run.py, in the way pyperf and asv measure.

- Every side of a ratio is a long-lived child process ("a side") that measures one thing per request;
  the sides of a ratio are asked in turn, round after round (A B, then B A, ...), so that a change in
  the machine's load between rounds falls on both sides alike. Warm-up rounds are discarded.
- A ratio is taken per round, from the two sides measured next to each other; a figure is the
  median of its rounds with their spread (interquartile range and min-max) and the round count.
- A figure whose spread is wider than its gap to the goal is "inconclusive", not met or missed.

Torch-free and Qt-free: the parts that measure live in run.py and run in the children.
"""

from __future__ import annotations

import json
import os
import re
import selectors
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

# ---- figures -------------------------------------------------------------------------------------------
_GOAL = re.compile(r"^\s*(>=|<=|<|>)\s*([0-9.]+)")


@dataclass(frozen=True)
class Goal:
    """A goal a figure can be judged against: ">= 0.95", "<= 1.3", "< 150" (leading text only)."""

    op: str
    value: float

    @classmethod
    def parse(cls, text: str) -> Goal | None:
        match = _GOAL.match(text)
        return cls(match.group(1), float(match.group(2))) if match else None

    def met(self, value: float) -> bool:
        return {">=": value >= self.value, "<=": value <= self.value, ">": value > self.value,
                "<": value < self.value}[self.op]


@dataclass
class Figure:
    """One printed figure: the values of its measured rounds and, optionally, the goal it is judged by."""

    name: str
    values: list[float]
    goal: str = ""
    smoke: bool = False  # --quick: printed, never judged
    note: str = ""

    @property
    def n(self) -> int:
        return len(self.values)

    @property
    def median(self) -> float:
        return statistics.median(self.values)

    @property
    def quartiles(self) -> tuple[float, float]:
        """The interquartile range (inclusive method: with 2 or 3 rounds it stays inside the values)."""
        if self.n < 2:
            return self.values[0], self.values[0]
        q1, _, q3 = statistics.quantiles(self.values, n=4, method="inclusive")
        return q1, q3

    @property
    def low(self) -> float:
        return min(self.values)

    @property
    def high(self) -> float:
        return max(self.values)

    def verdict(self) -> str:
        """'met', 'missed', 'inconclusive' (the spread is wider than the gap to the goal) or '' (no goal)."""
        goal = Goal.parse(self.goal)
        if goal is None or self.smoke or not self.values:
            return ""
        q1, q3 = self.quartiles
        gap = abs(self.median - goal.value)
        if q3 - q1 >= gap:
            return "inconclusive"
        return "met" if goal.met(self.median) else "missed"

    def line(self) -> str:
        """`name: median (IQR a-b, range c-d, n=k; goal: verdict)`: the name: value prefix stays first."""
        if not self.values:
            return f"{self.name}: n/a" + (f" ({self.note})" if self.note else "")
        text = f"{self.name}: {fmt(self.name, self.median)}"
        details = []
        if self.n > 1:
            q1, q3 = self.quartiles
            details.append(f"IQR {fmt(self.name, q1)}-{fmt(self.name, q3)}, "
                           f"range {fmt(self.name, self.low)}-{fmt(self.name, self.high)}, n={self.n}")
        elif not self.smoke:
            details.append("n=1")
        if self.goal:
            verdict = self.verdict()
            details.append(f"goal {self.goal}" + (f": {verdict}" if verdict else ""))
        if self.note:
            details.append(self.note)
        return text + (f" ({'; '.join(details)})" if details else "")


def fmt(name: str, value: float) -> str:
    if re.search(r"(^|_)threads(_loaded)?$", name) and "_vs_" not in name:  # a count, not a ratio
        return str(int(round(value)))
    if abs(value) >= 100:
        return f"{value:.0f}"
    return f"{value:.3f}" if abs(value) < 10 else f"{value:.1f}"


def per_round_ratios(numerators: Sequence[float], denominators: Sequence[float]) -> list[float]:
    """Round i's numerator over round i's denominator (both measured next to each other)."""
    if len(numerators) != len(denominators):
        raise ValueError(f"{len(numerators)} numerators and {len(denominators)} denominators")
    return [a / b for a, b in zip(numerators, denominators, strict=True)]


# ---- sides: the things measured in turn ------------------------------------------------------------
class Side(Protocol):
    name: str

    def measure(self) -> dict[str, Any]: ...

    def close(self) -> None: ...


class ChildSide:
    """A child process that sets itself up once, then measures once per request.

    Protocol: the child prints one JSON line when ready, then for every "go" line on its stdin one JSON
    line with its measurement; it exits when its stdin closes. Its stderr goes to a file, shown on failure.
    """

    def __init__(self, name: str, command: list[str], env: dict[str, str], timeout_s: float = 600) -> None:
        self.name = name
        self.timeout_s = timeout_s
        self._stderr = tempfile.TemporaryFile(mode="w+")  # noqa: SIM115 - lives as long as the child
        self.process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._stderr,
                                        text=True, env=env, bufsize=1)
        self.ready = self._read()

    def measure(self) -> dict[str, Any]:
        assert self.process.stdin is not None
        try:
            self.process.stdin.write("go\n")
            self.process.stdin.flush()
        except BrokenPipeError:
            self._fail("exited")
        return self._read()

    def _read(self) -> dict[str, Any]:
        assert self.process.stdout is not None
        with selectors.DefaultSelector() as selector:
            selector.register(self.process.stdout, selectors.EVENT_READ)
            if not selector.select(self.timeout_s):
                self._fail(f"gave no answer within {self.timeout_s:.0f} s")
        line = self.process.stdout.readline()
        if not line:
            self._fail("exited")
        return json.loads(line)

    def _fail(self, what: str) -> None:
        self.close()
        self._stderr.seek(0)
        message = self._stderr.read()[-3000:]
        self._stderr.close()
        raise RuntimeError(f"side {self.name} {what}:\n{message}")

    def close(self) -> None:
        if self.process.poll() is None:
            try:
                assert self.process.stdin is not None
                self.process.stdin.close()
                self.process.wait(30)
            except (OSError, subprocess.TimeoutExpired):
                self.process.kill()
                self.process.wait()
        if self.process.stdout is not None:
            self.process.stdout.close()


class FreshSide:
    """A side whose every measurement is a new process (start-up times, whole commands)."""

    def __init__(self, name: str, measure: Callable[[], dict[str, Any]]) -> None:
        self.name = name
        self._measure = measure

    def measure(self) -> dict[str, Any]:
        return self._measure()

    def close(self) -> None:
        pass


def interleave(sides: Sequence[Side], rounds: int, warmup: int = 1, log: Callable[[str], None] | None = None,
               budget_s: float | None = None, min_rounds: int = 3) -> dict[str, list[dict[str, Any]]]:
    """Measure every side once per round, in an order reversed every other round (A B C, C B A, ...);
    the first `warmup` rounds are discarded. Returns each side's measured rounds, in order.

    With `budget_s`, no new round starts once that many seconds have passed and `min_rounds` are measured (a
    loaded machine gets fewer rounds, and says so through the round count, instead of an unbounded run)."""
    found: dict[str, list[dict[str, Any]]] = {side.name: [] for side in sides}
    started = time.monotonic()
    for number in range(warmup + rounds):
        measured = number - warmup
        if budget_s is not None and measured >= min_rounds and time.monotonic() - started > budget_s:
            if log is not None:
                log(f"time budget of {budget_s:.0f} s spent: {measured} of {rounds} rounds measured")
            break
        order = list(sides) if number % 2 == 0 else list(reversed(sides))
        for side in order:
            result = side.measure()
            if number >= warmup:
                found[side.name].append(result)
        if log is not None:
            label = "warm-up" if number < warmup else f"round {number - warmup + 1}/{rounds}"
            log(f"{label}: " + ", ".join(f"{side.name} {_short(found[side.name][-1] if number >= warmup else {})}"
                                         for side in sides))
    return found


def _short(result: dict[str, Any]) -> str:
    return " ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in result.items())


@dataclass
class Sides:
    """Several sides opened together and closed together, whatever happens in between."""

    sides: list[Side] = field(default_factory=list)

    def add(self, side: Side) -> Side:
        self.sides.append(side)
        return side

    def __enter__(self) -> Sides:
        return self

    def __exit__(self, *exc: object) -> None:
        for side in self.sides:
            side.close()


# ---- the machine ----------------------------------------------------------------------------------------
def load_average() -> str:
    return " ".join(f"{value:.2f}" for value in os.getloadavg()) if hasattr(os, "getloadavg") else "n/a"


def usable_cores() -> int:
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown CPU"


def machine() -> str:
    """nproc, the CPU model and the load average: what RESULTS.md records beside the figures."""
    return f"{usable_cores()} cores, {cpu_model()}, load average {load_average()}"


class Neighbour:
    """A busy process on one core (the last), as a browser or a video call would be: in a session of its own, so
    that the scheduler's autogroups weigh it as another program, not as one more process of the benchmark."""

    def __enter__(self) -> Neighbour:
        cores = usable_cores()
        pin = None
        if hasattr(os, "sched_setaffinity"):
            def pin() -> None:
                os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[cores - 1]})
        self.process = subprocess.Popen([sys.executable, "-c", "while True: pass"], preexec_fn=pin,
                                        start_new_session=True)
        time.sleep(0.3)
        return self

    def __exit__(self, *exc: object) -> None:
        self.process.kill()
        self.process.wait()
