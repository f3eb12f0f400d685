"""Stop inside a long training step: the forward pass checks the stop flag before each layer.

A run stops between optimizer steps; on a real checkpoint one step can take seconds. `interruptible`
hooks each layer of the base so that a stop ends the step in flight at the next layer, before its
backward pass and update: the weights stay exactly as the last finished step left them. Only training
forwards are interrupted (an evaluation after the update runs to its end, so the reported step and the
weights agree). One hook per layer, not per module: a small model pays nothing measurable.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

from torch import nn

from ..bases.sites import Block
from ..model.studio_model import StudioModel


class StepInterrupted(Exception):  # noqa: N818 - a stop, not an error
    """Raised inside a forward pass when a stop was requested; the step in flight is abandoned."""


def layer_modules(model: StudioModel) -> list[nn.Module]:
    """The base's repeated layers (the diagram's "layer" blocks), the natural places to check."""
    base = model.base

    def walk(blocks: tuple[Block, ...] | list[Block]) -> Iterator[Block]:
        for block in blocks:
            yield block
            yield from walk(block.children)

    modules = []
    for block in walk(base.blocks()):
        if block.kind == "layer" and block.module_path:
            try:
                modules.append(base.get_submodule(block.module_path))
            except AttributeError:  # a block drawn without a module of its own
                continue
    return modules


@contextmanager
def interruptible(model: StudioModel, stopped: Callable[[], bool]) -> Iterator[None]:
    """While inside, a training forward raises StepInterrupted at the next layer once `stopped()` is true."""

    def check(module: nn.Module, _inputs: object) -> None:
        if module.training and stopped():
            raise StepInterrupted

    handles = [layer.register_forward_pre_hook(check) for layer in layer_modules(model)]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()
