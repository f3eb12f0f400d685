"""Lenses while a run trains, from snapshots the trainer takes between steps; and the gains' histogram over
training.

What is watched depends on the method (`watch_for`):
- a method with its own lens (`Method.lens` overridden: prompt tuning's nearest words and attention on the soft
  tokens, prefix tuning's attention on the prefix keys, an adapter's bottleneck, IA3's gains, ...) gets a
  private twin of the whole model: its own modules, sharing every tensor training never writes (the frozen base,
  the buffers) and holding copies of the trainable ones. The lens thread runs the method's own lens on the twin,
  so the live figures are the figures Look shows, at the snapshot's step.
- any other method shows ΔW of one watched weight-update layer (and its rotation for OFT-like layers), from a
  private copy of that layer; the window picks the layer (`LiveLens.watch`).

Three threads share a LiveLens without waiting on one another:
- the trainer, between two steps, calls `offer`: when a snapshot is due and the last one has been read, it
  copies the trained tensors into the private copy (one fused copy; the first offer makes the copy). It never
  waits: a snapshot still being read is simply skipped.
- a lens thread calls `take`: the figures of the latest snapshot, computed from the private copy only, so no
  tensor that training writes is ever read off the trainer's thread. The next snapshot is due after
  `interval_s`, or later when the lens is slow: its CPU time stays under `duty` of the time between snapshots
  (the lens thread's core is one the trainer's threads would use).
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
from typing import Any

import numpy as np
import torch
from torch import nn

from ..methods.mergeable import weight_updates
from ..methods.method import Method, site_paths
from ..runs.torch_threads import set_torch_threads
from . import LensFigure, lens_sentence
from .spectra import delta_w_figure, rotation_figure

LIVE_INTERVAL_S = 0.5  # a snapshot at most twice a second: a lens moves slower than a loss curve
LIVE_DUTY = 0.03  # the lens thread's CPU at most 3% of the time between snapshots (measured per snapshot)
GAIN_EDGES = (-0.5, 2.5)  # the gains histogram's fixed range over a whole run (1.0 = unchanged)
GAIN_HISTORY_BINS = 30
GAIN_HISTORY_ROWS = 240  # samples kept; when full, every other one is dropped (the whole run stays in view)


class _LayerCopy:
    """One weight-update layer's private copy: ΔW (and the rotation of OFT-like layers) of a chosen site."""

    def __init__(self, experiment: Any, wanted: str | None) -> None:
        base = experiment.base
        site_of = site_paths(base)
        layers = weight_updates(base)
        chosen = next(((p, layer) for p, layer in layers if site_of.get(p, p) == wanted), None) if wanted else None
        path, layer = chosen or layers[0]
        self.path, self.site, self.layer = path, site_of.get(path, path), layer
        with torch.no_grad():
            self.private: nn.Module = copy.deepcopy(layer)
        self.private.requires_grad_(False)
        self.live, self.copies = _trained_pairs(layer, self.private)

    def follows(self, experiment: Any, wanted: str | None) -> bool:
        """Still the layer to copy: the same module at its path, and the site asked for."""
        return _current(experiment.base, self.path) is self.layer and wanted in (None, self.site)

    def figures(self) -> list[LensFigure]:
        figures = [delta_w_figure(self.site, self.private)]
        rotation = getattr(self.private, "rotation", None)
        if callable(rotation):
            with torch.no_grad():
                figures.append(rotation_figure(self.site, rotation()))
        return figures


@dataclass
class TwinView:
    """What a method's lens reads of an experiment (model, method, config, tokenizer, dataset), here the twin's."""

    model: nn.Module
    method: Any
    config: Any
    tokenizer: Any
    dataset: Any

    @property
    def base(self) -> nn.Module:
        return self.model.base


class _Twin:
    """A private twin of the whole model for a method with its own lens; the sentence its lens reads."""

    def __init__(self, experiment: Any, sentence: str) -> None:
        model = self.source = experiment.model
        self.method, self.sentence = experiment.method, sentence
        with torch.no_grad():
            twin = copy.deepcopy(model, memo=_never_written(model))
        twin.requires_grad_(False)
        twin.eval()  # no dropout: the twin draws no random numbers (the generator is the run's)
        self.view = TwinView(twin, experiment.method, experiment.config, experiment.tokenizer, experiment.dataset)
        self.live, self.copies = _trained_pairs(model, twin)

    def follows(self, experiment: Any, wanted: str | None) -> bool:
        return experiment.model is self.source

    def figures(self) -> list[LensFigure]:
        with torch.no_grad():
            return list(self.method.lens(self.view, self.sentence))


def _never_written(model: nn.Module) -> dict[int, Any]:
    """deepcopy's memo that makes a copy share the tensors training never writes: the frozen parameters, the
    buffers (train.py checks both are unchanged) and the originals a baseline keeps of the tensors it trains."""
    shared = [p for p in model.parameters() if not p.requires_grad] + list(model.buffers())
    originals = model.unfrozen_originals() if hasattr(model, "unfrozen_originals") else {}
    return {id(t): t for t in [*shared, *originals.values()]}


def _trained_pairs(module: nn.Module, private: nn.Module) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """The module's trained tensors and their places in the private copy, in the same order."""
    mine = dict(private.named_parameters())
    pairs = [(p.detach(), mine[name].detach()) for name, p in module.named_parameters() if p.requires_grad]
    return [live for live, _ in pairs], [copied for _, copied in pairs]


def _current(model: nn.Module, path: str) -> nn.Module | None:
    """The module at `path` now (None when a new model has none there)."""
    try:
        return model.get_submodule(path)
    except AttributeError:
        return None


def has_own_lens(method: Any) -> bool:
    """The method writes its own lens (prompt, prefix, adapter, gains, ...) rather than the default ΔW one."""
    return type(method).lens is not Method.lens


def watch_for(experiment: Any, wanted: str | None, sentence: str) -> _LayerCopy | _Twin | None:
    """The private copy the live lens reads for this experiment's method (None: nothing it can show live)."""
    if has_own_lens(experiment.method):
        return _Twin(experiment, sentence)
    return _LayerCopy(experiment, wanted) if weight_updates(experiment.base) else None


def next_due(taken_at: float, interval_s: float, cost_s: float, duty: float) -> float:
    """When the next snapshot may be taken: after the interval, and late enough that the lens's `cost_s` of CPU
    per snapshot stays within `duty` of the time between two."""
    return taken_at + max(interval_s, cost_s / duty)


class LiveLens:
    """See the module docstring. `enabled` is the window's switch: off, `offer` returns at once."""

    def __init__(self, interval_s: float = LIVE_INTERVAL_S, duty: float = LIVE_DUTY) -> None:
        self.interval_s = interval_s
        self.duty = duty
        self.enabled = False
        self.sentence = ""  # what a lens that reads a forward pass runs on ("": the first training text)
        self.available: bool | None = None  # False: the last model offered has nothing to show live
        self.own_lens = False  # the watched method's own lens (True) or ΔW of one layer
        self._none_in: nn.Module | None = None  # that model (a new one is looked at again)
        self._wanted: str | None = None
        self._watch: _LayerCopy | _Twin | None = None
        self._ready = threading.Event()  # set: a snapshot waits to be read, the trainer leaves the copy alone
        self._due = -math.inf
        self._taken_at = -math.inf
        self._step = -1

    def reset(self) -> None:
        """Before a run: forget the last model's copy (only while no trainer offers)."""
        self._ready.clear()
        self._watch, self.available, self._none_in, self._due, self._step = None, None, None, -math.inf, -1

    def watch(self, site: str | None) -> None:
        """The site whose ΔW is shown (None: the first weight-update layer); any thread."""
        self._wanted = site

    @property
    def watched(self) -> str | None:
        watch = self._watch
        return watch.site if isinstance(watch, _LayerCopy) else None

    @property
    def period_s(self) -> float:
        """The time between two snapshots now: the interval, or longer for a lens that costs more."""
        spacing = self._due - self._taken_at
        return max(self.interval_s, spacing) if math.isfinite(spacing) else self.interval_s

    def offer(self, experiment: Any, step: int) -> bool:
        """Trainer thread, between steps: take a snapshot when one is due; True when it did. Never waits."""
        now = time.monotonic()
        if not self.enabled or self._ready.is_set() or now < self._due or experiment.model is self._none_in:
            return False  # the common case, every step: a few attribute reads
        return self._snapshot(experiment, step, now)

    @torch.no_grad()
    def _snapshot(self, experiment: Any, step: int, now: float) -> bool:
        watch = self._watch
        if watch is None or not watch.follows(experiment, self._wanted):
            sentence = lens_sentence(experiment, self.sentence.strip())  # as Look's default
            watch = self._watch = watch_for(experiment, self._wanted, sentence)
            self.available = watch is not None
            self.own_lens = isinstance(watch, _Twin)
            if watch is None:
                self._none_in = experiment.model
                return False
        if watch.live:
            torch._foreach_copy_(watch.copies, watch.live)
        self._step, self._taken_at = step, now
        self._due = now + self.interval_s  # until the lens says what it cost
        self._ready.set()
        return True

    def take(self, timeout_s: float) -> tuple[int, list[LensFigure]] | None:
        """Lens thread: (step, figures) of the latest snapshot, or None when none came within the timeout."""
        if not self._ready.wait(timeout_s):
            return None
        try:
            watch, step = self._watch, self._step
            assert watch is not None
            started = time.thread_time()
            figures = watch.figures()
            self._due = next_due(self._taken_at, self.interval_s, time.thread_time() - started, self.duty)
            return step, figures
        finally:
            self._ready.clear()


def live_figures(lens: LiveLens, stopped: Callable[[], bool],
                 poll_s: float = 0.1) -> Iterator[tuple[int, list[LensFigure]]]:
    """The lens thread's loop: each snapshot's figures until `stopped()`. One torch thread: the trainer's
    threads keep the cores."""
    set_torch_threads(1)
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
