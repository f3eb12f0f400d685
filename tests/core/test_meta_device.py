"""on_meta: modules on the meta device without their initialisers; torch's generator and other threads untouched."""

from __future__ import annotations

import threading

import torch
from torch import nn

from peft_studio.core.bases.meta_device import on_meta


def _modules() -> nn.Module:
    return nn.Sequential(nn.Embedding(50, 8), nn.Linear(8, 16), nn.LayerNorm(16), nn.Linear(16, 4, bias=False))


def test_the_same_shapes_as_torch_device_meta_and_no_draw_from_the_generator():
    with torch.device("meta"):
        plain = _modules()
    torch.manual_seed(0)
    expected = torch.rand(3)
    torch.manual_seed(0)
    with on_meta():
        skipped = _modules()
        extra = torch.empty(5)
        nn.init.kaiming_uniform_(extra.view(1, 5))
        extra.normal_()
    assert torch.equal(torch.rand(3), expected)  # the next CPU draw is the one it would have been
    assert extra.is_meta
    assert {n: (t.shape, t.dtype, t.is_meta) for n, t in skipped.state_dict().items()} == \
        {n: (t.shape, t.dtype, t.is_meta) for n, t in plain.state_dict().items()}


def test_other_threads_and_later_builds_initialise_as_usual():
    torch.manual_seed(1)
    reference = nn.Linear(4, 4).weight.detach().clone()
    built: list[torch.Tensor] = []

    def elsewhere() -> None:  # the mode is thread-local: a build on another thread is untouched
        torch.manual_seed(1)
        built.append(nn.Linear(4, 4).weight.detach().clone())

    with on_meta():
        thread = threading.Thread(target=elsewhere)
        thread.start()
        thread.join()
    torch.manual_seed(1)
    assert torch.equal(built[0], reference) and torch.equal(nn.Linear(4, 4).weight, reference)
