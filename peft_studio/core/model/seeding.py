"""Seeded builds on a process-wide generator, one at a time.

A build seeds torch's default generator and draws every initial weight from it; the window builds on
worker threads (a slow base) while a family run or an adapter set builds on others, and two seeded
builds that interleave their draws would give both the wrong weights. `seeded(seed)` holds one lock
from the seed to the last draw of a build.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

import torch

_SEEDED = threading.RLock()  # re-entrant: a build may build a base inside it


@contextmanager
def seeded(seed: int) -> Iterator[None]:
    with _SEEDED:
        torch.manual_seed(seed)
        yield
