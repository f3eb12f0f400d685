"""A frozen Linear with a trainable change of its weight that can be folded into W0 and back (the Mergeable
contract of every weight-update method: LoRA, DoRA, LoHa, LoKr, OFT, ...).

A subclass says two things: `update(x, result)`, the layer's output with the change applied while unmerged,
and `merged_weight()`, the weight that gives the same output once folded in ([out, in], whatever the base
layer's own layout). Merging keeps a copy of W0, so unmerging restores it bit for bit rather than subtracting.
The comparison board's merged latency, the Adapters panel's merge test and detaching a merged method all go
through this class instead of knowing any method by name.
"""

from __future__ import annotations

import torch
from torch import nn

from ..errors import ConfigError


class WeightUpdate(nn.Module):
    """A frozen Linear-like layer (nn.Linear, GPT-2's Conv1D, a 4-bit Linear) plus a trainable weight change."""

    def __init__(self, base_layer: nn.Module) -> None:
        super().__init__()
        self.base_layer = base_layer
        weight = getattr(base_layer, "weight", None)
        # GPT-2's Conv1D stores W as [in, out] (PEFT's fan_in_fan_out): read and write it as [out, in]
        self.fan_in_fan_out = (not isinstance(base_layer, nn.Linear) and isinstance(weight, torch.Tensor)
                               and weight.dim() == 2 and tuple(weight.shape) == (base_layer.in_features,
                                                                                 base_layer.out_features))
        self._unmerged_weight: torch.Tensor | None = None

    # ---- what a subclass gives --------------------------------------------------------------------------
    def update(self, x: torch.Tensor, result: torch.Tensor) -> torch.Tensor:
        """The output with this method's change applied, given the frozen layer's own `result` for `x`."""
        raise NotImplementedError

    def delta_weight(self) -> torch.Tensor:
        """The additive change of W0 ([out, in]) for methods that add one; others override `merged_weight`."""
        raise NotImplementedError

    def merged_weight(self) -> torch.Tensor:
        """The weight ([out, in]) that computes the adapted layer once folded in."""
        return self.weight_out_in() + self.delta_weight()

    # ---- shared ---------------------------------------------------------------------------------------
    @property
    def merged(self) -> bool:
        return self._unmerged_weight is not None

    def weight_out_in(self) -> torch.Tensor:
        """W0 as the layer computes it now ([out, in]): a 4-bit Linear's dequantized weight."""
        dequantized = getattr(self.base_layer, "dequantized_weight", None)
        if callable(dequantized):
            return dequantized()
        weight = self.base_layer.weight
        return weight.T if self.fan_in_fan_out else weight

    def original_weight(self) -> torch.Tensor:
        """W0 ([out, in]) whether or not the update is merged into the layer's weight right now."""
        if self._unmerged_weight is None:
            return self.weight_out_in()
        return self._unmerged_weight.T if self.fan_in_fan_out else self._unmerged_weight

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        result = self.base_layer(x)
        if self.merged:
            return result
        return self.update(x, result)

    def can_merge(self) -> bool:
        """A full-precision weight to fold into (a 4-bit Linear has to be dequantized first)."""
        weight = getattr(self.base_layer, "weight", None)
        return isinstance(weight, nn.Parameter) and weight.dtype.is_floating_point and weight.dim() == 2

    def merge(self) -> None:
        """W = merged_weight(); keeps W0 so that unmerge is exact, not a subtraction."""
        if self.merged:
            return
        if not self.can_merge():
            raise ConfigError("merge: a 4-bit quantized Linear cannot be merged; dequantize first")
        weight = self.base_layer.weight
        with torch.no_grad():
            merged = self.merged_weight().to(weight.dtype)
            self._unmerged_weight = weight.detach().clone()
            weight.copy_(merged.T if self.fan_in_fan_out else merged)

    def unmerge(self) -> None:
        if self._unmerged_weight is None:
            return
        with torch.no_grad():
            self.base_layer.weight.copy_(self._unmerged_weight)
        self._unmerged_weight = None


def weight_updates(model: nn.Module) -> list[tuple[str, WeightUpdate]]:
    """Every weight-update layer of a model, with its path."""
    return [(name, module) for name, module in model.named_modules() if isinstance(module, WeightUpdate)]


def mergeable_layers(model: nn.Module) -> list[WeightUpdate]:
    """The model's weight-update layers when every one of them can be merged, else [] (a model is merged whole:
    QLoRA's 4-bit W0 cannot take the update without dequantizing)."""
    layers = [module for _, module in weight_updates(model)]
    return layers if layers and all(layer.can_merge() for layer in layers) else []
