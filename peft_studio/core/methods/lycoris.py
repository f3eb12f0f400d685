"""What LoHa and LoKr share (PEFT's LycorisLayer / LycorisConfig): an update built as one out x in matrix every
step and applied as F.linear(x, delta); module dropout and rank dropout while training; the adapter_config.json
fields both use (r, alpha, the dropouts; rank_pattern / alpha_pattern refused by name)."""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from ..bases.frozen import FrozenBase
from ..errors import AdapterFileError
from ..files.safe_io import expect_shape
from .mergeable import WeightUpdate
from .peft_fields import PATTERNS, number, refuse_set, whole
from .peft_format import KEY_PREFIX, hf_name, modules_of, split_module_keys


class LycorisUpdate(WeightUpdate):
    """What LoHa and LoKr share (PEFT's LycorisLayer): a delta weight built every step and applied as
    F.linear(x, delta), module dropout and rank dropout during training."""

    rescale_rank_dropout = True  # LoHa divides the kept rows by their share; LoKr only with rank_dropout_scale

    def __init__(self, base_layer: nn.Module, r: int, alpha: float, rank_dropout: float,
                 module_dropout: float) -> None:
        super().__init__(base_layer)
        self.r, self.alpha, self.scaling = r, alpha, alpha / r
        self.rank_dropout, self.module_dropout = rank_dropout, module_dropout
        self.in_features, self.out_features = base_layer.in_features, base_layer.out_features

    def dropped_rows(self, weight: torch.Tensor) -> torch.Tensor:
        """PEFT's rank dropout: each output row of the update kept with probability 1 - rank_dropout."""
        drop = (torch.rand(weight.size(0)) > self.rank_dropout).to(weight.dtype).view(-1, 1).to(weight.device)
        if self.rescale_rank_dropout:
            drop = drop / drop.mean()
        return weight * drop

    def update(self, x: torch.Tensor, result: torch.Tensor) -> torch.Tensor:
        if self.training and not torch.rand(1) > self.module_dropout:  # drawn even at 0, as PEFT draws it
            return result  # module dropout: this step runs the frozen layer alone
        weight = self.delta_weight()
        if self.training and self.rank_dropout:
            weight = self.dropped_rows(weight)
        return result + F.linear(x.to(weight.dtype), weight)  # the update, as one out x in matrix


def lycoris_options(config: dict[str, Any], where: str) -> dict[str, Any]:
    """r, alpha and the two dropouts of a LoHa / LoKr adapter_config.json, checked; fields the studio does not
    compute refused by name."""
    refuse_set(config, where, PATTERNS)
    return {"r": whole(config, "r", where, high=4096),
            "alpha": number(config, "alpha", where, 8.0, low=-1e6, high=1e6),
            "rank_dropout": number(config, "rank_dropout", where, 0.0, 0.0, 1.0, high_open=True),
            "module_dropout": number(config, "module_dropout", where, 0.0, 0.0, 1.0, high_open=True)}


LYCORIS_FIELDS: dict[str, tuple[tuple[type, ...], str]] = {
    "alpha": ((int, float), "a number"), "rank_dropout": ((int, float), "a number"),
    "module_dropout": ((int, float), "a number"), "use_effective_conv2d": ((bool,), "true or false"),
    "exclude_modules": ((list, str, type(None)), "a list of names, a regular expression or null"),
    "layers_pattern": ((list, str, type(None)), "a list of names, text or null"),
}


def translate_leaves(tensors: dict[str, torch.Tensor], leaves: tuple[str, ...], where: str, what: str,
                     check: Any) -> dict[str, torch.Tensor]:
    """Studio tensors `<module>.<leaf>` from PEFT keys, each 2-D and passed to check(module, parts) whole."""
    studio: dict[str, torch.Tensor] = {}
    for module, parts in split_module_keys(tensors, leaves, where, what).items():
        for leaf, tensor in parts.items():
            expect_shape(tensor, 2, f"{where}: {module}.{leaf}", AdapterFileError, "a matrix")
        check(module, parts)
        studio.update({f"{module}.{leaf}": tensor for leaf, tensor in parts.items()})
    return studio


def check_scaling(base: FrozenBase, kind: type, options: dict[str, Any], where: str) -> None:
    """The model's scale alpha / r must be the adapter's (a shape check cannot see alpha)."""
    for path, module in modules_of(base, kind):
        if not math.isclose(module.scaling, options["alpha"] / options["r"], rel_tol=1e-6):
            raise AdapterFileError(f"{where}: scale alpha/r = {options['alpha']:g}/{options['r']}, the model's "
                                   f"{path} uses {module.scaling:g}")


def export_own_parameters(base: FrozenBase, kind: type) -> tuple[list[str], dict[str, torch.Tensor]]:
    """The Hugging Face names of the `kind` layers and each layer's own parameters (not its frozen base layer's)
    under PEFT's keys: `base_model.model.<module>.<parameter name>` (a sub-Linear's as `<name>.weight`), the studio
    naming them as PEFT does."""
    targets: list[str] = []
    tensors: dict[str, torch.Tensor] = {}
    for path, module in modules_of(base, kind):
        name = hf_name(path, base)
        targets.append(name)
        for leaf, parameter in module.named_parameters():
            if not leaf.startswith("base_layer."):
                tensors[f"{KEY_PREFIX}{name}.{leaf}"] = parameter
    return targets, tensors
