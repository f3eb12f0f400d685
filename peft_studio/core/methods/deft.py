"""DEFT, decompositional efficient fine-tuning: remove a learned rank-r subspace of W0's outputs and inject new
content there (PaRa with para: remove only).

Follows PEFT's DEFT (peft/tuners/deft/layer.py): per Linear a direction P (out x r, r capped at out) and an injection
R (r x in); with Q_P = P, right = relu(P) (decomposition relu) or Q_P = right = qr(P) (decomposition qr), the
adapted weight is

    W' = (I - Q_P rightᵀ) W0 + scaling · Q_P R,   scaling = alpha / r (1 without alpha)

computed on the activations (never an out x out matrix), in float32. P starts N(0, 0.02²); R starts at
rightᵀ W0 / scaling, so the model starts at W0 (init_weights), or N(0, (0.02 init_scale)²).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from ..bases.frozen import FrozenBase
from ..bases.sites import LINEAR, Site
from ..errors import AdapterFileError
from ..files.safe_io import expect_shape
from ..model.studio_model import StudioModel
from .config import MethodConfig, option
from .lycoris import export_own_parameters
from .mergeable import WeightUpdate
from .method import REPARAMETERISED, Method, MethodCard, TargetedMethod, code_line
from .peft_fields import flag, number, whole
from .peft_format import modules_of, split_module_keys, unknown

DECOMPOSITIONS = ("relu", "qr")


class DeftLinear(WeightUpdate):
    """A frozen Linear whose output loses a learned subspace (P) and gains an injection there (R)."""

    def __init__(self, base_layer: nn.Module, r: int, decomposition: str, alpha: float, para: bool, dropout: float,
                 init_weights: bool, init_scale: float) -> None:
        super().__init__(base_layer)
        weight = self.weight_out_in()
        out_features, in_features = weight.shape
        self.r = min(r, out_features)  # P Pᵀ has rank at most out, as PEFT caps it
        self.decomposition, self.para = decomposition, para
        self.scaling = alpha / self.r if alpha else 1.0
        self.deft_dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.deft_P = nn.Parameter(torch.empty(out_features, self.r))
        nn.init.normal_(self.deft_P, mean=0.0, std=0.02)
        if para:  # PaRa: pure removal, nothing injected
            self.deft_R = None
            return
        self.deft_R = nn.Parameter(torch.empty(self.r, in_features))
        if weight.is_meta:  # shapes only
            return
        if init_weights:  # R = rightᵀ W0 / scaling: the injection puts back exactly what the removal takes
            _, right = self.project()
            with torch.no_grad():
                self.deft_R.copy_((right.detach().transpose(0, 1) @ weight.detach().float()) / self.scaling)
        else:
            nn.init.normal_(self.deft_R, mean=0.0, std=0.02 * init_scale)

    def project(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(Q_P, right), both float32: the removed projector is Q_P rightᵀ."""
        p = self.deft_P.to(torch.float32)
        if self.decomposition == "relu":
            return p, torch.relu(p)
        q, _ = torch.linalg.qr(p)
        return q, q

    def delta_weight(self) -> torch.Tensor:
        weight = self.weight_out_in()
        q, right = self.project()
        factor = right.transpose(0, 1) @ weight.to(torch.float32)  # rightᵀ W0, r x in
        if self.para:
            return (-(q @ factor)).to(weight.dtype)
        return (q @ (self.deft_R.to(torch.float32) * self.scaling - factor)).to(weight.dtype)

    def update(self, x: torch.Tensor, result: torch.Tensor) -> torch.Tensor:
        out = result.to(torch.float32)
        bias = getattr(self.base_layer, "bias", None)
        product = out if bias is None else out - bias.to(torch.float32)  # W0 x without the bias
        q, right = self.project()
        out = out - (product @ right) @ q.transpose(0, 1)  # remove: Q_P rightᵀ W0 x
        if not self.para:
            injected = F.linear(self.deft_dropout(x.to(torch.float32)), self.deft_R.to(torch.float32) * self.scaling)
            out = out + injected @ q.transpose(0, 1)  # inject: scaling Q_P R x
        return out.to(x.dtype)


@dataclass
class DeftConfig(MethodConfig):
    r: int = option(8, "rank of the removed subspace and of the injection (at most out per Linear)", low=1,
                    high=4096)
    decomposition_method: str = option("relu", "the projector from P: relu (P relu(P)ᵀ, not orthogonal) or qr "
                                               "(Q Qᵀ, orthogonal)", choices=DECOMPOSITIONS)
    alpha: float = option(0.0, "the injection is scaled by alpha / r (0: no scaling, PEFT's none)", low=0.0,
                          high=1e6)
    para: bool = option(False, "PaRa: remove the subspace only (no injection; the model does not start at W0)")
    deft_dropout: float = option(0.0, "dropout on the injection's input during training", low=0.0, high=0.99)
    init_weights: bool = option(True, "R starts so that the model starts at W0; false: R ~ N(0, (0.02 "
                                      "init_scale)²)")
    init_scale: float = option(1.0, "scales R's random start (with init_weights false)", low=0.0, high=1e6)
    targets: str | None = option(None, "comma list of Linear sites, e.g. q,v (Hugging Face names and site ids "
                                       "work too; default: the base's LoRA targets)")
    layers: str | None = option(None, "comma list of layer indices or ranges such as 0-3 (default: every layer)")


class DeftMethod(TargetedMethod):
    family_group = REPARAMETERISED
    name = "deft"
    title = "DEFT"
    config_cls = DeftConfig
    site_kinds = (LINEAR,)
    claims_kinds = ()  # a click on a Linear means LoRA unless DEFT is already chosen
    targets_default_from = "lora"
    example_space = {**Method.example_space, "r": (1, 4, 8), "decomposition_method": DECOMPOSITIONS,
                     "alpha": (0.0, 16.0), "para": (False, True), "deft_dropout": (0.0, 0.1),
                     "init_weights": (True, False), "init_scale": (1.0, 0.5)}
    peft_space = {"r": (2, 8), "decomposition_method": DECOMPOSITIONS, "alpha": (None, 16), "para": (False, True)}
    peft_type = "DEFT"
    exchange_tolerance = 1e-5  # the bar for outputs equal to PEFT's
    perturbation = 0.01  # P starts at N(0, 0.02²): a step of 0.1 would be five times its size
    peft_config_fields = {"decomposition_method": ((str,), "relu or qr"), "alpha": ((int, float, type(None)),
                                                                                     "a number or null"),
                          "para": ((bool,), "true or false"), "deft_dropout": ((int, float), "a number"),
                          "init_weights": ((bool,), "true or false"), "init_scale": ((int, float), "a number")}
    glyph = "⇄"
    colour = "#af7ac5"
    card = MethodCard(
        where="inside a frozen Linear: a learned rank-r subspace of its outputs removed and refilled",
        intuition="instead of adding to everything W0 does, pick r output directions, take out what W0 puts there "
                  "and put new content in: knowledge is replaced rather than piled on",
        advantages="r (out + in) numbers per Linear, LoRA's count; starts at W0; mergeable into W0",
        limitations="the removal term needs W0 x again (one more r-wide product per step); PaRa (remove only) does "
                    "not start at W0",
        formula="h = (I - Q_P rightᵀ) W0 x + b + scaling · Q_P R x",
    )

    def attach(self, model: StudioModel, config: DeftConfig) -> None:
        for site in self.selected_sites(config, model.base):
            original = model.base.get_submodule(site.module_path)
            model.swap(site.module_path, DeftLinear(original, config.r, config.decomposition_method, config.alpha,
                                                    config.para, config.deft_dropout, config.init_weights,
                                                    config.init_scale))

    @staticmethod
    def _site_count(config: DeftConfig, site: Site) -> int:
        r = min(config.r, site.out_features)
        return r * site.out_features + (0 if config.para else r * site.in_features)

    def parameter_count(self, config: DeftConfig, base: FrozenBase) -> int:
        return sum(self._site_count(config, s) for s in self.selected_sites(config, base))

    def formula_text(self, config: DeftConfig, base: FrozenBase) -> str:
        sites = self.selected_sites(config, base)
        shape = "out" if config.para else "(out + in)"
        return f"sum over {len(sites)} Linear(s) of min(r, out) x {shape} = {self.parameter_count(config, base):,}"

    def live_formula(self, config: DeftConfig) -> str:
        formula = self.card.formula
        if config.para:
            formula = formula.replace(" + scaling · Q_P R x", "")
        else:
            formula = formula.replace("scaling", f"{config.alpha:g}/{config.r}" if config.alpha else "1")
        if config.decomposition_method == "relu":  # Q_P = P, right = relu(P)
            return formula.replace("Q_P rightᵀ", "P relu(P)ᵀ").replace("Q_P", "P")
        return formula.replace("rightᵀ", "Q_Pᵀ").replace("Q_P", "Q")  # Q = qr(P)

    def code(self, config: DeftConfig) -> str:
        return f"{code_line(DeftLinear.update, 'remove:')}  # then: {code_line(DeftLinear.update, 'inject:')}"

    def shape_notes(self, config: DeftConfig, base: FrozenBase, seq_len: int) -> list[str]:
        notes = []
        for s in self.selected_sites(config, base):
            r = min(config.r, s.out_features)
            injection = "" if config.para else f", R {r}x{s.in_features}"
            notes.append(f"{s.id}: P {s.out_features}x{r}{injection}")
        return notes

    # ---- Hugging Face PEFT exchange --------------------------------------------------------------------
    def peft_export(self, base: FrozenBase, config: DeftConfig) -> tuple[dict, dict[str, torch.Tensor]]:
        targets, tensors = export_own_parameters(base, DeftLinear)
        settings = {"r": config.r, "decomposition_method": config.decomposition_method,
                    "alpha": _peft_alpha(config.alpha), "para": config.para, "deft_dropout": config.deft_dropout,
                    "init_weights": config.init_weights,
                    "init_scale": config.init_scale, "target_modules": targets, "exclude_modules": None,
                    "fan_in_fan_out": any(layer.fan_in_fan_out for _, layer in modules_of(base, DeftLinear)),
                    "bias": "none", "layers_to_transform": None, "layers_pattern": None}
        return settings, tensors

    def peft_translate(self, peft_config: dict[str, Any], tensors: dict, where: str) -> tuple[dict, dict]:
        if peft_config.get("bias", "none") != "none":
            raise AdapterFileError(f"{where}: bias {peft_config.get('bias')!r} trains base biases too; only 'none'")
        # PEFT sets fan_in_fan_out from the layer type itself (True on a Conv1D, False on a Linear): a
        # well-typed flag changes nothing the base does not already decide
        flag(peft_config, "fan_in_fan_out", where, False)
        decomposition = peft_config.get("decomposition_method", "relu")
        if decomposition not in DECOMPOSITIONS:
            raise AdapterFileError(f"{where}: decomposition_method must be relu or qr (got "
                                   f"{str(decomposition)[:40]!r})")
        options = {"r": whole(peft_config, "r", where, 8, high=4096), "decomposition_method": decomposition,
                   "alpha": number(peft_config, "alpha", where, 0.0, 0.0, 1e6),  # null or 0: no scaling
                   "para": flag(peft_config, "para", where, False),
                   "deft_dropout": number(peft_config, "deft_dropout", where, 0.0, 0.0, 1.0, high_open=True),
                   "init_weights": flag(peft_config, "init_weights", where, True),
                   "init_scale": number(peft_config, "init_scale", where, 1.0, 0.0, 1e6)}
        wanted = {"deft_P"} if options["para"] else {"deft_P", "deft_R"}
        studio: dict[str, torch.Tensor] = {}
        for module, parts in split_module_keys(tensors, ("deft_P", "deft_R"), where, "a DEFT").items():
            if set(parts) != wanted:
                raise unknown(where, module, f"holds {', '.join(sorted(parts))}; para = {options['para']} needs "
                                             f"{', '.join(sorted(wanted))}")
            for leaf, tensor in parts.items():
                expect_shape(tensor, 2, f"{where}: {module}.{leaf}", AdapterFileError, "a matrix")
            r = parts["deft_P"].shape[1]
            if r != min(options["r"], parts["deft_P"].shape[0]) or ("deft_R" in parts and parts["deft_R"].shape[0]
                                                                     != r):
                raise unknown(where, module, f"deft_P / deft_R have rank {r} / "
                                             f"{parts['deft_R'].shape[0] if 'deft_R' in parts else '-'}, r is "
                                             f"{options['r']}")
            studio.update({f"{module}.{leaf}": tensor for leaf, tensor in parts.items()})
        return options, studio

    def peft_check_model(self, base: FrozenBase, options: dict[str, Any], where: str) -> None:
        for path, layer in modules_of(base, DeftLinear):
            alpha = options["alpha"]
            have = (layer.decomposition, layer.para, layer.scaling)
            wanted = (options["decomposition_method"], options["para"], alpha / layer.r if alpha else 1.0)
            if have != wanted:
                raise AdapterFileError(f"{where}: the adapter's decomposition, para and scaling are {wanted}; the "
                                       f"model's {path} has {have}")


def _peft_alpha(alpha: float) -> int | float | None:
    """PEFT's alpha field: an int (its type) when whole, null for no scaling."""
    if not alpha:
        return None
    return int(alpha) if float(alpha).is_integer() else alpha
