"""OSF, orthogonal subspace fine-tuning: W0's top singular directions stay frozen and only its low ones train, their
gradients kept orthogonal to the frozen ones (Nayak et al., 2025, "Sculpting Subspaces").

Follows PEFT's OSF (peft/tuners/osf): per Linear, W0 = U S V (SVD in float32) is split at k = effective_rank; the
low part U_low S_low V_low (rank m - k, m = min(out, in)) trains, starting at its own values, so

    h = W0 x + b + (U_low S_low V_low - U0_low S0_low V0_low) x

is W0 at the start. Each step the gradients of U_low and V_low are projected off the frozen high subspace (PEFT's
gradient hooks), so training never turns the kept directions. Only U_low, S_low and V_low are saved; PEFT (and the
studio) decomposes W0 again when an adapter is loaded.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from ..bases.frozen import FrozenBase
from ..bases.sites import LINEAR, Site
from ..errors import AdapterFileError, ConfigError
from ..files.safe_io import expect_shape
from ..model.studio_model import StudioModel
from .config import MethodConfig, option
from .mergeable import WeightUpdate
from .method import REPARAMETERISED, Method, MethodCard, TargetedMethod, code_line
from .oft import LINEAR_ONLY
from .peft_fields import flag, refuse_set
from .peft_format import KEY_PREFIX, hf_name, modules_of, split_module_keys, unknown

LEAVES = ("osf_svd_params.U_low", "osf_svd_params.S_low", "osf_svd_params.V_low")


def kept_rank(effective_rank: int, out_features: int, in_features: int) -> int:
    """The frozen rank k on one Linear: PEFT's effective_rank clamped to min(out, in); 0 (PEFT's none) is half."""
    smaller = min(out_features, in_features)
    return smaller // 2 if effective_rank == 0 else min(smaller, effective_rank)


class OsfLinear(WeightUpdate):
    """A frozen Linear whose low singular part U_low S_low V_low trains (the high part stays as it is in W0)."""

    def __init__(self, base_layer: nn.Module, effective_rank: int, init_weights: bool) -> None:
        super().__init__(base_layer)
        weight = self.weight_out_in()
        out_features, in_features = weight.shape
        k = kept_rank(effective_rank, out_features, in_features)
        low = min(out_features, in_features) - k
        if weight.is_meta:  # shapes only: nothing to decompose
            u, s, v = torch.empty(out_features, k + low), torch.empty(k + low), torch.empty(k + low, in_features)
        else:
            u, s, v = torch.linalg.svd(weight.detach().to(torch.float32), full_matrices=False)  # costs one SVD of W0
        u, s, v = u.to(weight.dtype), s.to(weight.dtype), v.to(weight.dtype)
        # frozen: the low part as it starts (subtracted in the update) and, where the low part cannot span the
        # complement on its own (a non-square factor), the high part the gradients are projected off
        self.U_low_init = nn.Parameter(u[:, k:].contiguous().clone(), requires_grad=False)
        self.S_low_init = nn.Parameter(s[k:].contiguous().clone(), requires_grad=False)
        self.V_low_init = nn.Parameter(v[k:, :].contiguous().clone(), requires_grad=False)
        self.U_high = nn.Parameter(u[:, :k].contiguous().clone(), requires_grad=False) \
            if out_features > in_features else None
        self.V_high = nn.Parameter(v[:k, :].contiguous().clone(), requires_grad=False) \
            if out_features < in_features else None
        starts = (torch.randn_like(self.U_low_init), torch.randn_like(self.S_low_init),
                  torch.randn_like(self.V_low_init)) if not init_weights else \
            (self.U_low_init.detach().clone(), self.S_low_init.detach().clone(), self.V_low_init.detach().clone())
        self.osf_svd_params = nn.ParameterDict({"U_low": nn.Parameter(starts[0]), "S_low": nn.Parameter(starts[1]),
                                                "V_low": nn.Parameter(starts[2])})
        self.effective_rank = k

    # ---- PEFT's gradient hooks: the updates of U_low and V_low stay off the frozen high subspace -----------------
    def _project_u(self, grad: torch.Tensor) -> torch.Tensor:
        if self.U_high is not None:
            return grad - self.U_high @ (self.U_high.transpose(0, 1) @ grad)
        return self.U_low_init @ (self.U_low_init.transpose(0, 1) @ grad)  # square U: the low part spans the rest

    def _project_v(self, grad: torch.Tensor) -> torch.Tensor:
        if self.V_high is not None:
            return grad - (grad @ self.V_high.transpose(0, 1)) @ self.V_high
        return (grad @ self.V_low_init.transpose(0, 1)) @ self.V_low_init

    @staticmethod
    def _projected(parameter: torch.Tensor, project: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
        """The parameter as used in this forward, its gradient passing through `project` (linear, so projecting
        each use equals PEFT's projecting the summed gradient)."""
        if not (parameter.requires_grad and torch.is_grad_enabled()):
            return parameter
        used = parameter.view_as(parameter)
        used.register_hook(project)
        return used

    def factors(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(A, B) with ΔW = A B: A = [U_low S_low, -U0_low S0_low] (out x 2r), B = [V_low; V0_low] (2r x in)."""
        params = self.osf_svd_params
        u_low = self._projected(params["U_low"], self._project_u)
        v_low = self._projected(params["V_low"], self._project_v)
        a = torch.cat([u_low * params["S_low"].unsqueeze(0), -(self.U_low_init * self.S_low_init.unsqueeze(0))],
                      dim=1)
        return a, torch.cat([v_low, self.V_low_init], dim=0)

    def delta_weight(self) -> torch.Tensor:
        params = self.osf_svd_params
        current = torch.mm(params["U_low"] * params["S_low"].unsqueeze(0), params["V_low"])
        return current - torch.mm(self.U_low_init * self.S_low_init.unsqueeze(0), self.V_low_init)

    def update(self, x: torch.Tensor, result: torch.Tensor) -> torch.Tensor:
        a, b = self.factors()
        return result + F.linear(F.linear(x.to(a.dtype), b), a)  # x ΔWᵀ = (x Bᵀ) Aᵀ, never forming ΔW


@dataclass
class OsfConfig(MethodConfig):
    effective_rank: int = option(0, "singular directions of W0 kept frozen per Linear (the top ones); the other "
                                    "min(out, in) - k train. 0: half of each Linear's smaller side (PEFT's none)",
                                 low=0, high=2**20)
    init_weights: bool = option(True, "the trained factors start at W0's own low part (the model starts at W0); "
                                      "false: N(0, 1) factors")
    targets: str | None = option(None, "comma list of Linear sites, e.g. q,v (Hugging Face names and site ids "
                                       "work too; default: the base's LoRA targets)")
    layers: str | None = option(None, "comma list of layer indices or ranges such as 0-3 (default: every layer)")


class OsfMethod(TargetedMethod):
    family_group = REPARAMETERISED
    name = "osf"
    title = "OSF"
    config_cls = OsfConfig
    site_kinds = (LINEAR,)
    claims_kinds = ()  # a click on a Linear means LoRA unless OSF is already chosen
    targets_default_from = "lora"
    refused_layers = {"Conv1D": LINEAR_ONLY.format("OSF")}
    # init_weights false starts from N(0, 1) factors, an update hundreds of times W0's size: through a whole encoder
    # float32 rounding then parts merged from unmerged outputs by 1e-2, so its start is tested on its own
    example_space = {**Method.example_space, "effective_rank": (0, 1, 4, 8)}
    peft_space = {"effective_rank": (None, 16, 300), "init_weights": (True, False)}
    peft_type = "OSF"
    exchange_tolerance = 1e-5  # the bar for outputs equal to PEFT's
    perturbation = 0.01  # every entry of U_low and V_low moves: see Method.perturbation
    peft_config_fields = {"effective_rank": ((int, float, type(None)), "a whole number, a fraction or null"),
                          "init_weights": ((bool, type(None)), "true or false"),
                          "target_svd_config": ((dict, type(None)), "an object")}
    glyph = "⊥"
    colour = "#45b39d"
    card = MethodCard(
        where="inside a frozen Linear: W0's low singular directions train, its top ones stay frozen",
        intuition="the top singular directions carry what the model already knows; training only in the "
                  "orthogonal rest learns a new task with less forgetting",
        advantages="full-rank reach inside the low subspace, no new shapes; gradients never disturb the kept "
                   "directions; mergeable into W0",
        limitations="an SVD of every adapted W0 when attaching and again when loading (min(out, in)³ work per "
                    "Linear); many trained numbers: (m - k) x (out + in + 1) per Linear",
        formula="h = W0 x + (U_low S_low V_low - U0 S0 V0) x,  ∇U_low, ∇V_low ⊥ the top k directions",
    )

    def validate(self, config: OsfConfig, base: FrozenBase) -> None:
        super().validate(config, base)
        for site in self.selected_sites(config, base):
            k = kept_rank(config.effective_rank, site.out_features, site.in_features)
            if k < 1 or k >= min(site.out_features, site.in_features):
                raise ConfigError(f"effective_rank keeps {k} of {site.id}'s {min(site.out_features, site.in_features)}"
                                  f" singular directions: OSF needs at least one kept and one to train (choose "
                                  f"effective_rank in [1, {min(site.out_features, site.in_features) - 1}] here)")

    def attach(self, model: StudioModel, config: OsfConfig) -> None:
        for site in self.selected_sites(config, model.base):
            original = model.base.get_submodule(site.module_path)
            model.swap(site.module_path, OsfLinear(original, config.effective_rank, config.init_weights))

    @staticmethod
    def _low_rank(config: OsfConfig, site: Site) -> int:
        return min(site.out_features, site.in_features) - kept_rank(config.effective_rank, site.out_features,
                                                                    site.in_features)

    def parameter_count(self, config: OsfConfig, base: FrozenBase) -> int:
        return sum(self._low_rank(config, s) * (s.out_features + s.in_features + 1)
                   for s in self.selected_sites(config, base))

    def formula_text(self, config: OsfConfig, base: FrozenBase) -> str:
        sites = self.selected_sites(config, base)
        return f"sum over {len(sites)} Linear(s) of (min(out, in) - k) x (out + in + 1) = " \
               f"{self.parameter_count(config, base):,}"

    def live_formula(self, config: OsfConfig) -> str:
        kept = "half of min(out, in)" if config.effective_rank == 0 else str(config.effective_rank)
        return self.card.formula.replace("top k", f"top {kept}")

    def code(self, config: OsfConfig) -> str:
        return code_line(OsfLinear.update, "F.linear(F.linear")

    def shape_notes(self, config: OsfConfig, base: FrozenBase, seq_len: int) -> list[str]:
        notes = []
        for s in self.selected_sites(config, base):
            low = self._low_rank(config, s)
            notes.append(f"{s.id}: {min(s.out_features, s.in_features) - low} directions kept; U_low "
                         f"{s.out_features}x{low}, S_low {low}, V_low {low}x{s.in_features} train")
        return notes

    # ---- Hugging Face PEFT exchange --------------------------------------------------------------------
    def peft_export(self, base: FrozenBase, config: OsfConfig) -> tuple[dict, dict[str, torch.Tensor]]:
        targets, tensors = [], {}
        for path, layer in modules_of(base, OsfLinear):
            name = hf_name(path, base)
            targets.append(name)
            for leaf, parameter in layer.osf_svd_params.items():
                tensors[f"{KEY_PREFIX}{name}.osf_svd_params.{leaf}"] = parameter
        settings = {"effective_rank": config.effective_rank or None, "init_weights": config.init_weights,
                    "target_modules": targets, "rank_pattern": None, "target_svd_config": None}
        return settings, tensors

    def peft_translate(self, peft_config: dict[str, Any], tensors: dict, where: str) -> tuple[dict, dict]:
        refuse_set(peft_config, where, {"rank_pattern": "the studio keeps one effective_rank for every module"})
        rank = peft_config.get("effective_rank")
        if rank == 0.5 and isinstance(rank, float):  # half of each smaller side: what none means, int() rounding down
            rank = None
        if rank is not None and (type(rank) is not int or not 1 <= rank <= 2**20):
            raise AdapterFileError(f"{where}: effective_rank = {str(rank)[:40]} is not supported: the studio keeps "
                                   f"a whole number of directions in [1, {2**20}] or half (null)")
        options = {"effective_rank": rank or 0, "init_weights": flag(peft_config, "init_weights", where, True)}
        studio: dict[str, torch.Tensor] = {}
        for module, parts in split_module_keys(tensors, LEAVES, where, "an OSF").items():
            if set(parts) != set(LEAVES):
                raise unknown(where, module, "needs U_low, S_low and V_low")
            u, s, v = (parts[leaf] for leaf in LEAVES)
            expect_shape(u, 2, f"{where}: {module}.U_low", AdapterFileError, "a matrix")
            expect_shape(s, 1, f"{where}: {module}.S_low", AdapterFileError, "a vector")
            expect_shape(v, 2, f"{where}: {module}.V_low", AdapterFileError, "a matrix")
            if not u.shape[1] == s.shape[0] == v.shape[0]:
                raise unknown(where, module, f"U_low / S_low / V_low have ranks {u.shape[1]} / {s.shape[0]} / "
                                             f"{v.shape[0]}")
            studio.update({f"{module}.{leaf}": parts[leaf] for leaf in LEAVES})
        return options, studio
