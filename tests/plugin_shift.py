"""A method the size of a real one, defined only in the tests: proof that a method is one file.

The `shift_method` fixture registers it for one test and removes it after."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
import torch
from torch import nn

from peft_studio.core.bases.frozen import FrozenBase
from peft_studio.core.bases.sites import LINEAR, Site
from peft_studio.core.methods import register_method, unregister_method
from peft_studio.core.methods.config import MethodConfig, option
from peft_studio.core.methods.method import Method, MethodCard, code_line
from peft_studio.core.methods.targets import resolve_targets, targets_for_sites
from peft_studio.core.model.studio_model import StudioModel


class ShiftedLinear(nn.Module):
    """A frozen Linear whose output gets a learned per-channel shift."""

    def __init__(self, inner: nn.Module, width: int, start: float) -> None:
        super().__init__()
        self.inner = inner
        self.shift = nn.Parameter(torch.full((width,), start))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.inner(x) + self.shift  # the shift method's one line


@dataclass
class ShiftConfig(MethodConfig):
    start: float = option(0.0, "initial value of every shift", low=-10.0, high=10.0)
    targets: str | None = option(None, "comma list of Linear sites")
    layers: str | None = option(None, "comma list of layer indices")


class ShiftMethod(Method):
    name = "shift-test"
    title = "Output shift (test plugin)"
    config_cls = ShiftConfig
    site_kinds = (LINEAR,)
    glyph = "S"
    colour = "#123456"
    card = MethodCard(where="a learned shift on a frozen Linear's output", intuition="move the features",
                      advantages="tiny", limitations="only shifts", formula="h = W0 x + s")

    def selected_sites(self, config: ShiftConfig, base: FrozenBase) -> list[Site]:
        return resolve_targets(base, self.name, self.site_kinds, config.targets or "q", config.layers)

    def options_for_sites(self, sites, base, current):
        return {**current, **targets_for_sites(sites, self.usable_sites(base), base.num_layers)}

    def attach(self, model: StudioModel, config: ShiftConfig) -> None:
        for site in self.selected_sites(config, model.base):
            inner = model.base.get_submodule(site.module_path)
            model.swap(site.module_path, ShiftedLinear(inner, site.out_features, config.start))

    def parameter_count(self, config: ShiftConfig, base: FrozenBase) -> int:
        return sum(s.out_features for s in self.selected_sites(config, base))

    def code(self, config: ShiftConfig) -> str:
        return code_line(ShiftedLinear.forward, "self.shift")


@pytest.fixture
def shift_method():
    method = register_method(ShiftMethod())
    yield method
    unregister_method(method.name)
