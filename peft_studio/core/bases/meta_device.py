"""Modules built on the meta device (shapes, no storage) without running their random initialisers.

`torch.device("meta")` alone still runs every `reset_parameters`: on meta tensors `normal_` and `uniform_` go
through torch's Python references, whose first call imports torch._dynamo (0.65-0.74 s of CPU, measured; about
half of the window's first switch to MiniLM). A meta tensor has no values to initialise and drawing for it takes
nothing from torch's generator (checked: the next CPU draw is the same), so skipping the initialisers changes no
number. The mode is thread-local, like every torch function mode: a build on a worker leaves other threads alone.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import torch
from torch.overrides import TorchFunctionMode

_INITIALISERS = {torch.Tensor.normal_, torch.Tensor.uniform_}


class _SkipMetaInit(TorchFunctionMode):
    def __torch_function__(self, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
        kwargs = kwargs or {}
        if getattr(func, "__module__", None) == "torch.nn.init" or func in _INITIALISERS:
            tensor = args[0] if args else kwargs.get("tensor")
            if isinstance(tensor, torch.Tensor) and tensor.is_meta:
                return tensor  # nothing to fill: a meta tensor is a shape
        return func(*args, **kwargs)


@contextlib.contextmanager
def on_meta() -> Iterator[None]:
    """Build modules on the meta device, their initialisers skipped (see the module docstring)."""
    with _SkipMetaInit(), torch.device("meta"):  # the device context puts itself above other modes
        yield
