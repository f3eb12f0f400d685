"""Long work the user started, as visible jobs: a family run, a bottleneck sweep, an adapter's training, a slow
build, a checkpoint load. Each is a Job on the JobBoard; the window shows every running job with its progress,
ETA and a Stop button, and a panel that started one asks before it closes with the job still running.

A job reports into its own panel and never edits the studio's setup or its undo history (a panel that shows
what a job is doing does so as a marked preview). Qt-free: the window observes the board.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

RUNNING, STOPPING, FINISHED, STOPPED, FAILED = "running", "stopping", "finished", "stopped", "failed"

Listener = Callable[..., None]


@dataclass
class Job:
    """One long piece of work: what it is, how far it got, and how to stop it."""

    title: str  # e.g. "Family run on tiny · word-order"
    owner: str = ""  # the panel that started it: "compare", "exercises", "adapters", "window"
    total: int | None = None  # units of work (steps, points); None when not known
    done: int = 0
    detail: str = ""  # what it does right now, e.g. "ia3 (3/12)"
    state: str = RUNNING
    stop: Callable[[], None] | None = None  # None: it cannot be stopped (it is short, or ends on its own)
    started: float = field(default_factory=time.monotonic)
    board: JobBoard | None = field(default=None, repr=False, compare=False)

    @property
    def active(self) -> bool:
        return self.state in (RUNNING, STOPPING)

    @property
    def fraction(self) -> float | None:
        if not self.total:
            return None
        return min(1.0, max(0.0, self.done / self.total))

    def eta_s(self, now: float | None = None) -> float | None:
        """Seconds left at the rate so far; None before the first unit or without a total."""
        if not self.total or self.done <= 0 or self.state != RUNNING:
            return None
        elapsed = (time.monotonic() if now is None else now) - self.started
        return max(0.0, elapsed / self.done * (self.total - self.done))

    def report(self, done: int | None = None, total: int | None = None, detail: str | None = None) -> None:
        """Progress from the owner (on the thread that owns the board)."""
        if done is not None:
            self.done = done
        if total is not None:
            self.total = total
        if detail is not None:
            self.detail = detail
        if self.board is not None:
            self.board.changed(self)

    def request_stop(self) -> bool:
        """Ask the job to stop (it ends at its next check: a step, a point, a phase). False when it cannot."""
        if self.state != RUNNING or self.stop is None:
            return False
        self.state = STOPPING
        self.stop()
        if self.board is not None:
            self.board.changed(self)
        return True

    def status_text(self, now: float | None = None) -> str:
        """One line for the window: title, detail, done/total, ETA."""
        parts = [self.title]
        if self.detail:
            parts.append(self.detail)
        if self.total:
            parts.append(f"{self.done:,}/{self.total:,}")
        if self.state == STOPPING:
            parts.append("stopping…")
        else:
            eta = self.eta_s(now)
            if eta is not None:
                parts.append(f"about {duration_text(eta)} left")
        return " · ".join(parts)


class JobBoard:
    """Every job the user started and that has not ended; observers hear "added", "changed" and "ended"."""

    def __init__(self) -> None:
        self.jobs: list[Job] = []
        self._listeners: dict[str, list[Listener]] = {}

    def on(self, event: str, callback: Listener) -> None:
        self._listeners.setdefault(event, []).append(callback)

    def _emit(self, event: str, *args: Any) -> None:
        for callback in list(self._listeners.get(event, ())):
            callback(*args)

    def start(self, title: str, owner: str = "", total: int | None = None,
              stop: Callable[[], None] | None = None) -> Job:
        job = Job(title, owner, total, stop=stop, board=self)
        self.jobs.append(job)
        self._emit("added", job)
        return job

    def changed(self, job: Job) -> None:
        if job in self.jobs:
            self._emit("changed", job)

    def end(self, job: Job, state: str = FINISHED) -> None:
        """The job is over (finished, stopped or failed): it leaves the board."""
        job.state = state
        if job in self.jobs:
            self.jobs.remove(job)
            self._emit("ended", job)

    def running(self, owner: str | None = None) -> list[Job]:
        return [j for j in self.jobs if j.active and (owner is None or j.owner == owner)]

    def stop_all(self, owner: str | None = None) -> None:
        for job in self.running(owner):
            job.request_stop()


def duration_text(seconds: float) -> str:
    """'45 s', '3 min', '1 h 05 min': an ETA is read at a glance, not to the second."""
    seconds = max(0, round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    minutes = round(seconds / 60)
    if minutes < 60:
        return f"{minutes} min"
    return f"{minutes // 60} h {minutes % 60:02d} min"
