"""Lenses while a run trains: ΔW of one watched weight-update layer from a snapshot, and the gains' histogram
over training.

Three threads share a LiveLens without waiting on one another:
- the trainer, between two steps, calls `offer`: when a snapshot is due and the last one has been read, it
  copies the watched layer's trained tensors into a private copy of that layer (one fused copy; the first
  offer makes the copy, W0 included). It never waits: a snapshot still being read is simply skipped.
- a lens thread calls `take`: the figures of the latest snapshot (an SVD per figure), computed from the
  private copy only, so no tensor that training writes is ever read off the trainer's thread.
- the window picks the watched site (`watch`) and draws what the lens thread returned, on its frame timer.
Forgetting compares the adapted model with its own base (the method bypassed), which a step in flight must
never see: it is computed when the run stops, not here.
"""

from __future__ import annotations

import copy
import math
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from ..methods.mergeable import WeightUpdate, weight_updates
from . import LensFigure
from .spectra import delta_w_figure, rotation_figure

LIVE_INTERVAL_S = 0.25  # a snapshot at most 4 times a second: a lens moves slower than a loss curve
GAIN_EDGES = (-0.5, 2.5)  # the gains histogram's fixed range over a whole run (1.0 = unchanged)
GAIN_HISTORY_BINS = 30
GAIN_HISTORY_ROWS = 240  # samples kept; when full, every other one is dropped (the whole run stays in view)


@dataclass
class _Private:
    """The watched layer's private copy and the tensors copied into it at each snapshot."""

    path: str
    site: str
    layer: WeightUpdate  # the live layer (identity checked: a rebuilt model gets a new copy)
    private: WeightUpdate
    live: list[torch.Tensor]
    copies: list[torch.Tensor]


def _private_copy(model: nn.Module, site_of: dict[str, str], wanted: str | None) -> _Private | None:
    layers = weight_updates(model)
    chosen = next(((p, layer) for p, layer in layers if site_of.get(p, p) == wanted), None) if wanted else None
    chosen = chosen or next(iter(layers), None)
    if chosen is None:
        return None
    path, layer = chosen
    with torch.no_grad():
        private = copy.deepcopy(layer)
    private.requires_grad_(False)
    live = dict(layer.named_parameters())
    names = [name for name, p in live.items() if p.requires_grad]
    mine = dict(private.named_parameters())
    return _Private(path, site_of.get(path, path), layer, private, [live[n].detach() for n in names],
                    [mine[n].detach() for n in names])


def _current(model: nn.Module, path: str) -> nn.Module | None:
    """The module at `path` now (None when a new model has none there)."""
    try:
        return model.get_submodule(path)
    except AttributeError:
        return None


class LiveLens:
    """See the module docstring. `enabled` is the window's switch: off, `offer` returns at once."""

    def __init__(self, interval_s: float = LIVE_INTERVAL_S) -> None:
        self.interval_s = interval_s
        self.enabled = False
        self.available: bool | None = None  # False: the last model offered has no weight-update layer to watch
        self._none_in: nn.Module | None = None  # that model (a new one is looked at again)
        self._wanted: str | None = None
        self._private: _Private | None = None
        self._ready = threading.Event()  # set: a snapshot waits to be read, the trainer leaves the copy alone
        self._taken_at = -math.inf
        self._step = -1

    def reset(self) -> None:
        """Before a run: forget the last model's copy (only while no trainer offers)."""
        self._ready.clear()
        self._private, self.available, self._none_in, self._taken_at, self._step = None, None, None, -math.inf, -1

    def watch(self, site: str | None) -> None:
        """The site whose ΔW is shown (None: the first weight-update layer); any thread."""
        self._wanted = site

    @property
    def watched(self) -> str | None:
        private = self._private
        return private.site if private is not None else None

    def offer(self, model: nn.Module, site_of: dict[str, str], step: int) -> bool:
        """Trainer thread, between steps: take a snapshot when one is due; True when it did. Never waits."""
        now = time.monotonic()
        if not self.enabled or self._ready.is_set() or now - self._taken_at < self.interval_s \
                or model is self._none_in:
            return False  # the common case, every step: a few attribute reads
        return self._snapshot(model, site_of, step, now)

    @torch.no_grad()
    def _snapshot(self, model: nn.Module, site_of: dict[str, str], step: int, now: float) -> bool:
        private, wanted = self._private, self._wanted
        if private is None or _current(model, private.path) is not private.layer or \
                (wanted is not None and wanted != private.site):
            private = self._private = _private_copy(model, site_of, wanted)
            self.available = private is not None
            if private is None:
                self._none_in = model
                return False
        if private.live:
            torch._foreach_copy_(private.copies, private.live)
        self._step, self._taken_at = step, now
        self._ready.set()
        return True

    def take(self, timeout_s: float) -> tuple[int, list[LensFigure]] | None:
        """Lens thread: (step, figures) of the latest snapshot, or None when none came within the timeout."""
        if not self._ready.wait(timeout_s):
            return None
        try:
            private, step = self._private, self._step
            assert private is not None
            figures = [delta_w_figure(private.site, private.private)]
            rotation = getattr(private.private, "rotation", None)
            if callable(rotation):
                with torch.no_grad():
                    figures.append(rotation_figure(private.site, rotation()))
            return step, figures
        finally:
            self._ready.clear()


def live_figures(lens: LiveLens, stopped: Callable[[], bool],
                 poll_s: float = 0.1) -> Iterator[tuple[int, list[LensFigure]]]:
    """The lens thread's loop: each snapshot's figures until `stopped()`. One torch thread: the trainer's
    threads keep the cores."""
    torch.set_num_threads(1)
    while not stopped():
        got = lens.take(poll_s)
        if got is not None:
            yield got


@dataclass
class GainHistory:
    """Every gain vector's values pooled into one histogram per sample, over a fixed range for the whole run
    (values outside it are counted in the end bins), as a [samples x bins] picture of training."""

    edges: np.ndarray = field(default_factory=lambda: np.linspace(*GAIN_EDGES, GAIN_HISTORY_BINS + 1))
    steps: list[int] = field(default_factory=list)
    rows: list[list[int]] = field(default_factory=list)
    names: set[str] = field(default_factory=set)  # the gain vectors' parameter names

    def add(self, step: int, gains: dict[str, list[float]]) -> None:
        """One sample; a step at or before the last one starts a new history (a run after Reset)."""
        if self.steps and step <= self.steps[-1]:
            self.clear()
        self.names = set(gains)
        values = np.concatenate([np.asarray(v, dtype=float) for v in gains.values()]) if gains else np.zeros(0)
        if not values.size:
            return
        clipped = np.clip(values, self.edges[0], self.edges[-1])
        counts, _ = np.histogram(clipped, bins=self.edges)
        self.steps.append(step)
        self.rows.append(counts.tolist())
        if len(self.rows) > GAIN_HISTORY_ROWS:
            self.steps, self.rows = self.steps[::2], self.rows[::2]

    def clear(self) -> None:
        self.steps, self.rows, self.names = [], [], set()

    def figure(self) -> LensFigure | None:
        if not self.rows:
            return None
        return LensFigure("gains-history", "gains over training (every gain vector)", "",
                          {"samples": float(len(self.rows)), "first_step": float(self.steps[0]),
                           "last_step": float(self.steps[-1])},
                          {"history": [list(r) for r in self.rows], "edges": self.edges.tolist(),
                           "steps": list(self.steps)},
                          note=f"one histogram per sample (left to right, by step; colour: log count), gains "
                               f"from {self.edges[0]:g} to {self.edges[-1]:g} (values beyond are counted in the "
                               f"end bins); 1 = unchanged")
