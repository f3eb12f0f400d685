"""Bases kept for the next build of the same base: an edit of the method alone need not build the base again.

A base is the same when its name, options and seed are (and, for a toy base, the very dataset whose vocabulary
it reads). The build draws the base first, then the method's parts from torch's generator, so a kept base
carries the generator's state right after its own build: the next build restores it and draws the same parts
a fresh build would. A kept base is free (no method attached: `StudioModel.detach_method` restores it exactly)
and taken by one build only. A replaced model's base is kept as the replaced experiment itself and detached by
the build that takes it (on its worker thread, not in the window's commit).
"""

from __future__ import annotations

import json
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from ..bases import create_base, uses_dataset_vocabulary
from ..bases.frozen import FrozenBase
from ..data import TextDataset
from .seeding import seeded

KEPT = 2  # a window alternates between two (its current model's and the next one's); more only holds memory


@dataclass(frozen=True)
class BaseKey:
    """What a base's build depends on."""

    name: str
    options: str  # the base options as sorted JSON
    seed: int
    dataset: TextDataset | None  # the dataset whose vocabulary a toy base reads, compared by identity

    def __eq__(self, other: object) -> bool:
        return isinstance(other, BaseKey) and (self.name, self.options, self.seed) == \
            (other.name, other.options, other.seed) and self.dataset is other.dataset

    def __hash__(self) -> int:
        return hash((self.name, self.options, self.seed, id(self.dataset)))


def base_key(name: str, options: dict[str, Any], seed: int, dataset: TextDataset) -> BaseKey:
    return BaseKey(name, json.dumps(options, sort_keys=True, default=repr), seed,
                   dataset if uses_dataset_vocabulary(name) else None)


@dataclass(frozen=True)
class PrebuiltBase:
    """A base with no method attached, and torch's generator state right after its seeded build."""

    key: BaseKey
    base: FrozenBase
    rng_after: torch.Tensor
    fingerprint: str | None = None  # the bare base's, when known (a replaced model's: detach restored it)


def build_base(name: str, options: dict[str, Any], seed: int, dataset: TextDataset) -> PrebuiltBase:
    """The base as an Experiment with this seed builds it, drawn from the same seeded generator."""
    with seeded(seed):
        tokenizer = dataset.make_tokenizer() if uses_dataset_vocabulary(name) else None
        base = create_base(name, tokenizer, **options)
        return PrebuiltBase(base_key(name, options, seed, dataset), base, torch.get_rng_state())


class BasePool:
    """Free bases by key (thread-safe: a window's build runs on a worker while its GUI thread keeps one)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._kept: OrderedDict[BaseKey, PrebuiltBase | Callable[[], PrebuiltBase]] = OrderedDict()

    def keep(self, prebuilt: PrebuiltBase) -> None:
        self._put(prebuilt.key, prebuilt)

    def keep_later(self, key: BaseKey, release: Callable[[], PrebuiltBase]) -> None:
        """A base still to be freed (`release` detaches its method): freed by the build that takes it."""
        self._put(key, release)

    def _put(self, key: BaseKey, entry: PrebuiltBase | Callable[[], PrebuiltBase]) -> None:
        with self._lock:
            self._kept[key] = entry
            self._kept.move_to_end(key)
            while len(self._kept) > KEPT:
                self._kept.popitem(last=False)

    def take(self, key: BaseKey) -> PrebuiltBase | None:
        """The kept base for `key`, removed from the pool (no other build can take it), or None."""
        with self._lock:
            entry = self._kept.pop(key, None)
        return entry() if callable(entry) else entry

    def clear(self) -> None:
        with self._lock:
            self._kept.clear()
