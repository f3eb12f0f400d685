"""LoKr: the weight change is a Kronecker product of a small matrix and a (low-rank) larger one (Yeh et al.,
LyCORIS 2024).

Follows PEFT's LoKr for a Linear (peft/tuners/lokr/layer.py). The out and in widths are each split into two
factors near their square roots (`factorization`: out = a x b, in = c x d, the smaller first), and

    h = W0 x + b + (alpha / r) (W1 kron W2) x,   W1: a x c,  W2: b x d

W2 is a full matrix unless r < max(b, d) / 2, when it is W2_a W2_b of rank r; W1 likewise only with
decompose_both. W1 (or W1_a) starts at zeros, the rest Kaiming-uniform, so the model starts at W0.
decompose_factor asks the split for a factor of that size instead of the square root. Module dropout and rank
dropout (rows of the update; rescaled only with rank_dropout_scale) act during training, as PEFT's.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ..bases.frozen import FrozenBase
from ..bases.sites import LINEAR, Site
from ..errors import AdapterFileError
from ..model.studio_model import StudioModel
from .config import MethodConfig, option
from .lycoris import (
    LYCORIS_FIELDS,
    LycorisUpdate,
    check_scaling,
    export_own_parameters,
    lycoris_options,
    translate_leaves,
)
from .method import REPARAMETERISED, Method, MethodCard, TargetedMethod, code_line
from .peft_fields import flag, whole
from .peft_format import modules_of, unknown


def factorization(dimension: int, factor: int = -1) -> tuple[int, int]:
    """PEFT's split of a width into (m, n), m <= n, m * n = dimension: `factor` itself when it divides the width,
    else the divisor pair nearest the square root with m at most `factor` (-1: no limit)."""
    if factor > 0 and dimension % factor == 0:
        return factor, dimension // factor
    limit = dimension if factor == -1 else factor
    m, n = 1, dimension
    while m < n:
        new_m = m + 1
        while dimension % new_m != 0:
            new_m += 1
        new_n = dimension // new_m
        if new_m + new_n > m + n or new_m > limit:
            break
        m, n = new_m, new_n
    return (n, m) if m > n else (m, n)


@dataclass(frozen=True)
class KronShape:
    """One Linear's LoKr factors: W1 is a x c, W2 is b x d (out = a b, in = c d); each full or rank r."""

    a: int
    b: int
    c: int
    d: int
    full_w1: bool
    full_w2: bool

    @staticmethod
    def of(in_features: int, out_features: int, r: int, decompose_both: bool, factor: int) -> KronShape:
        c, d = factorization(in_features, factor)
        a, b = factorization(out_features, factor)
        return KronShape(a, b, c, d, full_w1=not (decompose_both and r < max(a, c) / 2),
                         full_w2=not r < max(b, d) / 2)

    def count(self, r: int) -> int:
        w1 = self.a * self.c if self.full_w1 else r * (self.a + self.c)
        w2 = self.b * self.d if self.full_w2 else r * (self.b + self.d)
        return w1 + w2

    def text(self, r: int) -> str:
        w1 = f"W1 {self.a}x{self.c}" if self.full_w1 else f"W1 = {self.a}x{r} @ {r}x{self.c}"
        w2 = f"W2 {self.b}x{self.d}" if self.full_w2 else f"W2 = {self.b}x{r} @ {r}x{self.d}"
        return f"{w1} kron {w2}"


class LokrLinear(LycorisUpdate):
    """A frozen Linear plus (alpha / r) W1 kron W2."""

    def __init__(self, base_layer: nn.Module, r: int, alpha: float, rank_dropout: float = 0.0,
                 module_dropout: float = 0.0, decompose_both: bool = False, decompose_factor: int = -1,
                 rank_dropout_scale: bool = False) -> None:
        super().__init__(base_layer, r, alpha, rank_dropout, module_dropout)
        self.rescale_rank_dropout = rank_dropout_scale
        shape = KronShape.of(self.in_features, self.out_features, r, decompose_both, decompose_factor)
        self.shape = shape
        if shape.full_w1:  # W1 starts at zeros (PEFT's init_weights=True), so the model starts at W0
            self.lokr_w1 = nn.Parameter(torch.zeros(shape.a, shape.c))
        else:
            self.lokr_w1_a = nn.Parameter(torch.zeros(shape.a, r))
            self.lokr_w1_b = nn.Parameter(torch.empty(r, shape.c))
            nn.init.kaiming_uniform_(self.lokr_w1_b, a=math.sqrt(5))
        if shape.full_w2:
            self.lokr_w2 = nn.Parameter(torch.empty(shape.b, shape.d))
            nn.init.kaiming_uniform_(self.lokr_w2, a=math.sqrt(5))
        else:
            self.lokr_w2_a = nn.Parameter(torch.empty(shape.b, r))
            self.lokr_w2_b = nn.Parameter(torch.empty(r, shape.d))
            nn.init.kaiming_uniform_(self.lokr_w2_a, a=math.sqrt(5))
            nn.init.kaiming_uniform_(self.lokr_w2_b, a=math.sqrt(5))

    def delta_weight(self) -> torch.Tensor:
        w1 = self.lokr_w1 if self.shape.full_w1 else self.lokr_w1_a @ self.lokr_w1_b
        w2 = self.lokr_w2 if self.shape.full_w2 else self.lokr_w2_a @ self.lokr_w2_b
        return torch.kron(w1, w2.contiguous()) * self.scaling  # (a b) x (c d) = out x in


@dataclass
class LokrConfig(MethodConfig):
    r: int = option(8, "rank of W2 when it is factored (only if r < half its larger side), and of W1 with "
                       "decompose_both", low=1, high=4096)
    alpha: float = option(8.0, "scale numerator: the update is multiplied by alpha / r", low=-1e6, high=1e6)
    decompose_both: bool = option(False, "also factor the small Kronecker factor W1 as W1_a W1_b of rank r")
    decompose_factor: int = option(-1, "split each width with a factor of this size (-1: near its square root)",
                                   low=-1, high=2**16)
    rank_dropout: float = option(0.0, "training only: probability of dropping each output row of the update",
                                 low=0.0, high=0.99)
    rank_dropout_scale: bool = option(False, "rescale the rows rank dropout keeps by their share, as LoHa does")
    module_dropout: float = option(0.0, "training only: probability of skipping the whole update for a step",
                                   low=0.0, high=0.99)
    targets: str | None = option(None, "comma list of Linear sites, e.g. q,v (Hugging Face names and site ids "
                                       "work too; default: the base's LoRA targets)")
    layers: str | None = option(None, "comma list of layer indices or ranges such as 0-3 (default: every layer)")


LOKR_LEAVES = ("lokr_w1", "lokr_w1_a", "lokr_w1_b", "lokr_w2", "lokr_w2_a", "lokr_w2_b")


class LokrMethod(TargetedMethod):
    name = "lokr"
    family_group = REPARAMETERISED
    refused_layers = {"Conv1D": ("PEFT's LoKr wraps nn.Linear (and Conv1d/Conv2d), not transformers' Conv1D, which "
                                  "stores GPT-2's weights as [in, out]")}
    title = "LoKr"
    config_cls = LokrConfig
    site_kinds = (LINEAR,)
    claims_kinds = ()  # a click on a Linear means LoRA unless LoKr is already chosen
    targets_default_from = "lora"  # with no targets of its own, the base's LoRA targets (PEFT: query, value)
    example_space = {**Method.example_space, "r": (1, 2, 8), "alpha": (4.0, 8.0), "decompose_both": (False, True),
                     "decompose_factor": (-1, 2, 4), "rank_dropout": (0.0, 0.3), "rank_dropout_scale": (False, True),
                     "module_dropout": (0.0, 0.1)}
    peft_space = {"r": (1, 2, 8), "alpha": (4, 8), "decompose_both": (False, True), "decompose_factor": (-1, 4),
                  "rank_dropout": (0.0, 0.2)}
    peft_type = "LOKR"
    exchange_tolerance = 1e-5  # the bar for outputs equal to PEFT's
    peft_config_fields = {**LYCORIS_FIELDS, "decompose_both": ((bool,), "true or false"),
                          "decompose_factor": ((int,), "a whole number"),
                          "rank_dropout_scale": ((bool,), "true or false"),
                          "init_weights": ((bool, str), "true, false or 'lycoris'")}
    glyph = "⊗"
    colour = "#1abc9c"
    card = MethodCard(
        where="beside a frozen Linear: the Kronecker product of a small matrix and a (low-rank) larger one, "
              "added to W0",
        intuition="a Kronecker product tiles one small matrix with scaled copies of another: a full-size, "
                  "full-rank update from very few numbers",
        advantages="far fewer parameters than LoRA for large layers, rank not capped by r; mergeable into W0",
        limitations="the structure (repeated blocks) is a strong assumption; builds the out x in update each step",
        formula="h = W0 x + (alpha / r) (W1 ⊗ W2) x",
    )

    def shapes(self, config: LokrConfig, base: FrozenBase) -> list[tuple[Site, KronShape]]:
        return [(s, KronShape.of(s.in_features, s.out_features, config.r, config.decompose_both,
                                 config.decompose_factor)) for s in self.selected_sites(config, base)]

    def attach(self, model: StudioModel, config: LokrConfig) -> None:
        for site in self.selected_sites(config, model.base):
            original = model.base.get_submodule(site.module_path)
            model.swap(site.module_path, LokrLinear(original, config.r, config.alpha, config.rank_dropout,
                                                    config.module_dropout, config.decompose_both,
                                                    config.decompose_factor, config.rank_dropout_scale))

    def parameter_count(self, config: LokrConfig, base: FrozenBase) -> int:
        return sum(shape.count(config.r) for _, shape in self.shapes(config, base))

    def formula_text(self, config: LokrConfig, base: FrozenBase) -> str:
        shapes = self.shapes(config, base)
        kinds = dict.fromkeys(f"{shape.text(config.r)} ({shape.count(config.r):,})" for _, shape in shapes)
        return f"sum over {len(shapes)} Linear(s) of {' or '.join(kinds)} = {self.parameter_count(config, base):,}"

    def live_formula(self, config: LokrConfig) -> str:
        return self.card.formula.replace("(alpha / r)", f"({config.alpha:g}/{config.r} = "
                                                         f"{config.alpha / config.r:g})")

    def code(self, config: LokrConfig) -> str:
        return f"{code_line(LokrLinear.delta_weight, 'torch.kron')}  # then: " \
               f"{code_line(LycorisUpdate.update, 'F.linear')}"

    def shape_notes(self, config: LokrConfig, base: FrozenBase, seq_len: int) -> list[str]:
        return [f"{s.id}: {s.out_features} = {k.a}x{k.b}, {s.in_features} = {k.c}x{k.d}: {k.text(config.r)}"
                for s, k in self.shapes(config, base)]

    # ---- Hugging Face PEFT exchange --------------------------------------------------------------------
    def peft_export(self, base: FrozenBase, config: LokrConfig) -> tuple[dict, dict[str, torch.Tensor]]:
        targets, tensors = export_own_parameters(base, LokrLinear)
        settings = {"r": config.r, "alpha": config.alpha, "rank_dropout": config.rank_dropout,
                    "module_dropout": config.module_dropout, "decompose_both": config.decompose_both,
                    "decompose_factor": config.decompose_factor, "rank_dropout_scale": config.rank_dropout_scale,
                    "target_modules": targets, "exclude_modules": None, "use_effective_conv2d": False,
                    "init_weights": True, "layers_to_transform": None, "layers_pattern": None, "rank_pattern": {},
                    "alpha_pattern": {}}
        return settings, tensors

    def peft_translate(self, peft_config: dict[str, Any], tensors: dict, where: str) -> tuple[dict, dict]:
        options = lycoris_options(peft_config, where)
        options["decompose_both"] = flag(peft_config, "decompose_both", where, False)
        options["decompose_factor"] = whole(peft_config, "decompose_factor", where, -1, low=-1, high=2**16)
        options["rank_dropout_scale"] = flag(peft_config, "rank_dropout_scale", where, False)
        r = options["r"]

        def check(module: str, parts: dict[str, torch.Tensor]) -> None:
            """The factors PEFT makes for some Linear at this r: W1 (a x c) full or of rank r, W2 (b x d) too."""
            w1 = _factor(parts, "lokr_w1", module, where, r)
            w2 = _factor(parts, "lokr_w2", module, where, r)
            full_w1, full_w2 = "lokr_w1" in parts, "lokr_w2" in parts
            if full_w2 == (r < max(w2) / 2):
                raise unknown(where, module, f"W2 is {w2[0]}x{w2[1]} {'full' if full_w2 else f'of rank {r}'}; "
                                             f"PEFT makes it {'factored' if full_w2 else 'full'} at r={r}")
            if not full_w1 and not r < max(w1) / 2:
                raise unknown(where, module, f"W1 is {w1[0]}x{w1[1]} factored at r={r}; PEFT makes it full")
            if full_w1 == (options["decompose_both"] and r < max(w1) / 2):
                raise unknown(where, module, f"W1 is {'full' if full_w1 else 'factored'}, which does not fit "
                                             f"decompose_both={str(options['decompose_both']).lower()} at r={r}")

        return options, translate_leaves(tensors, LOKR_LEAVES, where, "a LoKr", check)

    def peft_check_model(self, base: FrozenBase, options: dict[str, Any], where: str) -> None:
        check_scaling(base, LokrLinear, options, where)
        for path, module in modules_of(base, LokrLinear):
            if module.rescale_rank_dropout != options["rank_dropout_scale"]:
                raise AdapterFileError(f"{where}: rank_dropout_scale differs from the model's {path}")


def _factor(parts: dict[str, torch.Tensor], name: str, module: str, where: str, r: int) -> tuple[int, int]:
    """The (rows, columns) of one Kronecker factor, given whole or as `<name>_a` @ `<name>_b` of rank r."""
    if name in parts:
        if f"{name}_a" in parts or f"{name}_b" in parts:
            raise unknown(where, module, f"has {name} both whole and factored")
        return tuple(parts[name].shape)  # type: ignore[return-value]
    a, b = parts.get(f"{name}_a"), parts.get(f"{name}_b")
    if a is None or b is None:
        raise unknown(where, module, f"has no {name} (whole, or as {name}_a and {name}_b)")
    if a.shape[1] != r or b.shape[0] != r:
        raise unknown(where, module, f"{name}_a / {name}_b have rank {a.shape[1]} / {b.shape[0]}, r is {r}")
    return a.shape[0], b.shape[1]
