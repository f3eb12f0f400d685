"""AdaLoRA: LoRA in SVD form, h = W0 x + alpha / r0 * P diag(E) Q x, whose ranks are reallocated between the
adapted Linears during training by an importance score (Zhang et al., 2023).

Follows PEFT's AdaLoRA (peft/tuners/adalora): each Linear gets lora_A (Q, r x in), lora_E (the singular values,
r x 1, starting at zeros, so the model starts at W0) and lora_B (P, out x r), A and B drawn N(0, 0.02); the update
is scaled by lora_alpha / (init_r + 1e-5). Training adds orth_reg_weight times the mean of ||P^T P - I|| and
||Q Q^T - I|| to the loss, and after each optimizer step the rank allocator (rank_allocation.py) scores every
singular triplet and zeroes the least important ones until the adapter's total rank has fallen from init_r to
target_r per Linear on average: all ranks for `tinit` steps, a cubic decline to `total_step - tfinal`, then the
final pattern held. An exported adapter keeps only the live triplets (PEFT's `rank_pattern`); one imported that
way builds each Linear with its own rank (the studio's `rank_pattern`, e.g. `layers.0.attn.q=5,layers.1.attn.v=0`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ..bases.frozen import FrozenBase
from ..bases.sites import LINEAR, Site
from ..errors import AdapterFileError, ConfigError
from ..model.studio_model import StudioModel
from .config import MethodConfig, option
from .mergeable import WeightUpdate
from .method import REPARAMETERISED, Method, MethodCard, TargetedMethod, code_line
from .peft_fields import flag, number, refuse_set, whole
from .peft_format import KEY_PREFIX, hf_name, module_path, modules_of, split_module_keys, unknown
from .rank_allocation import RankAllocator, RankGrid


class SvdLinear(WeightUpdate):
    """A frozen Linear plus alpha / (init_r + 1e-5) * B (A * E): PEFT's SVDLinear. `r` is this layer's size (init_r,
    or the rank an imported rank_pattern gives it); `kept` marks the triplets the allocator has not pruned."""

    def __init__(self, base_layer: nn.Module, r: int, init_r: int, alpha: float, dropout: float) -> None:
        super().__init__(base_layer)
        self.r, self.alpha = r, alpha
        self.ranknum = float(init_r)  # PEFT's ranknum: init_r, kept when a rank_pattern resizes the layer
        self.lora_dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.lora_A = nn.Parameter(torch.empty(r, base_layer.in_features))
        self.lora_B = nn.Parameter(torch.empty(base_layer.out_features, r))
        self.lora_E = nn.Parameter(torch.zeros(r, 1))  # singular values start at zero: the model starts at W0
        nn.init.normal_(self.lora_A, mean=0.0, std=0.02)
        nn.init.normal_(self.lora_B, mean=0.0, std=0.02)
        self.kept: torch.Tensor | None = None  # bool (r,): the allocator's last mask; None: every triplet lives

    def delta_weight(self) -> torch.Tensor:
        return self.lora_B @ (self.lora_A * self.lora_E) * self.alpha / (self.ranknum + 1e-5)

    def update(self, x: torch.Tensor, result: torch.Tensor) -> torch.Tensor:
        svd = self.lora_dropout(x) @ (self.lora_A * self.lora_E).T @ self.lora_B.T  # P diag(E) Q x
        return result + svd * self.alpha / (self.ranknum + 1e-5)  # PEFT's order of rounding: its gradients

    def live_ranks(self) -> int:
        return self.r if self.kept is None else int(self.kept.sum())


@dataclass
class AdaLoraConfig(MethodConfig):
    init_r: int = option(12, "starting rank of every adapted Linear (PEFT's init_r)", low=1, high=4096)
    target_r: int = option(8, "average rank per Linear that the allocator prunes down to", low=0, high=4096)
    alpha: float = option(8.0, "scale numerator: the update is multiplied by alpha / init_r (PEFT's lora_alpha)",
                          low=1e-6, high=1e6)
    dropout: float = option(0.0, "dropout on the input of A during training (PEFT's lora_dropout)", low=0.0,
                            high=0.99)
    tinit: int = option(0, "steps at the full rank before pruning starts", low=0, high=10**9)
    tfinal: int = option(0, "last steps with the final rank pattern held (no more pruning)", low=0, high=10**9)
    deltaT: int = option(1, "steps between two reallocations during the pruning phase", low=1, high=10**9)
    beta1: float = option(0.85, "smoothing of the importance scores (exponential moving average)", low=1e-6,
                          high=0.999999)
    beta2: float = option(0.85, "smoothing of their uncertainty", low=1e-6, high=0.999999)
    orth_reg_weight: float = option(0.5, "weight of the orthogonality penalty on P and Q added to the loss",
                                    low=0.0, high=1e6)
    total_step: int = option(0, "steps of the whole schedule (PEFT's total_step); 0: the training run's own end",
                             low=0, high=10**9)
    targets: str | None = option(None, "comma list of Linear sites, e.g. q,v (Hugging Face names and site ids "
                                       "work too; default: the base's LoRA targets)")
    layers: str | None = option(None, "comma list of layer indices or ranges such as 0-3 (default: every layer)")
    rank_pattern: str | None = option(None, "a rank per site where it is not init_r, e.g. layers.0.attn.q=5 "
                                            "(what an imported adapter's pruning left)")


class AdaLoraMethod(TargetedMethod):
    name = "adalora"
    family_group = REPARAMETERISED
    title = "AdaLoRA"
    config_cls = AdaLoraConfig
    site_kinds = (LINEAR,)
    claims_kinds = ()  # a click on a Linear means LoRA unless AdaLoRA is already chosen
    targets_default_from = "lora"  # PEFT's BERT default is query, value as for LoRA
    # init_r above target_r: the allocator needs ranks to prune (PEFT's fails at its first pruning step otherwise)
    example_space = {**Method.example_space, "init_r": (3, 4, 6), "target_r": (1, 2), "alpha": (4.0, 8.0),
                     "tinit": (0, 1), "tfinal": (0, 1), "deltaT": (1, 2), "orth_reg_weight": (0.0, 0.5)}
    peft_space = {"init_r": (2, 4), "target_r": (1, 2), "lora_alpha": (8, 16), "total_step": (10,)}
    peft_type = "ADALORA"
    exchange_tolerance = 1e-5  # the bar for outputs equal to PEFT's
    peft_config_fields = {"init_r": ((int,), "a whole number"), "target_r": ((int,), "a whole number"),
                          "tinit": ((int,), "a whole number"), "tfinal": ((int,), "a whole number"),
                          "deltaT": ((int,), "a whole number"), "beta1": ((int, float), "a number"),
                          "beta2": ((int, float), "a number"), "orth_reg_weight": ((int, float), "a number"),
                          "total_step": ((int, type(None)), "a whole number")}
    glyph = "PΛQ"
    colour = "#b9770e"
    card = MethodCard(
        where="beside a frozen Linear: LoRA in SVD form P Λ Q, with the ranks moved between Linears while training",
        intuition="not every weight needs the same rank: score each singular value's importance and prune the "
                  "least useful ones, so the rank budget goes where the task needs it",
        advantages="the same parameter budget as LoRA spent where it matters; the final ranks show which layers "
                   "the task uses",
        limitations="a schedule to tune (init_r, target_r, tinit, tfinal, deltaT); importance scores cost memory "
                    "and time each step; pruned triplets still take memory until exported",
        formula="h = W0 x + (alpha / r) P Λ Q x,  Λ = diag(E) pruned to the rank budget",
    )

    # ---- where and how big ----------------------------------------------------------------------------
    def validate(self, config: AdaLoraConfig, base: FrozenBase) -> None:
        super().validate(config, base)
        self.site_ranks(config, base)
        if config.total_step and config.tinit >= config.total_step - config.tfinal:
            raise ConfigError(f"tinit ({config.tinit}) must be below total_step - tfinal ({config.total_step} - "
                              f"{config.tfinal}): the schedule leaves no steps to reallocate ranks in")

    def site_ranks(self, config: AdaLoraConfig, base: FrozenBase) -> list[tuple[Site, int]]:
        """Each selected site with its layer size: init_r, or its rank_pattern entry."""
        sites = self.selected_sites(config, base)
        pattern = parse_rank_pattern(config.rank_pattern, config.init_r)
        ids = {s.id for s in sites}
        strays = sorted(set(pattern) - ids)
        if strays:
            raise ConfigError(f"rank_pattern names {strays[0]}, which is not among the adapted sites")
        return [(s, pattern.get(s.id, config.init_r)) for s in sites]

    def attach(self, model: StudioModel, config: AdaLoraConfig) -> None:
        shared = RankAllocator(config.target_r, config.tinit, config.tfinal, config.deltaT, config.beta1,
                               config.beta2, config.total_step)
        model.extras["rank_allocator"] = shared
        for site, r in self.site_ranks(config, model.base):
            layer = SvdLinear(model.base.get_submodule(site.module_path), r, config.init_r, config.alpha,
                              config.dropout)
            layer.__dict__["allocator"] = shared  # a plain reference: the export reads the schedule in force
            model.swap(site.module_path, layer)

    def parameter_count(self, config: AdaLoraConfig, base: FrozenBase) -> int:
        return sum(r * (s.in_features + s.out_features + 1) for s, r in self.site_ranks(config, base))

    def formula_text(self, config: AdaLoraConfig, base: FrozenBase) -> str:
        ranks = self.site_ranks(config, base)
        sizes = "r = init_r" if all(r == config.init_r for _, r in ranks) else "r from rank_pattern"
        return (f"sum over {len(ranks)} Linear(s) of r x (in + out + 1), {sizes} = "
                f"{self.parameter_count(config, base):,}; pruned to {config.target_r} per Linear on average")

    def live_formula(self, config: AdaLoraConfig) -> str:
        return self.card.formula.replace("(alpha / r)", f"({config.alpha:g}/{config.init_r})")

    def code(self, config: AdaLoraConfig) -> str:
        return f"{code_line(SvdLinear.update, 'lora_E')}  # then: {code_line(SvdLinear.update, 'ranknum')}"

    def shape_notes(self, config: AdaLoraConfig, base: FrozenBase, seq_len: int) -> list[str]:
        return [f"{s.id}: P {s.out_features}x{r}, Λ {r} singular values, Q {r}x{s.in_features}"
                for s, r in self.site_ranks(config, base)]

    # ---- training: the orthogonality penalty and the rank allocator ------------------------------------
    def start_training(self, model: StudioModel, config: AdaLoraConfig, first_step: int, end_step: int) -> None:
        allocator(model).start(layers(model), end_step)

    def training_loss(self, model: StudioModel, config: AdaLoraConfig) -> torch.Tensor | None:
        if not config.orth_reg_weight:
            return None
        return config.orth_reg_weight * orthogonality_penalty(layers(model))

    def after_step(self, model: StudioModel, config: AdaLoraConfig, step: int) -> None:
        allocator(model).update_and_allocate(layers(model), step)

    def step_report(self, model: StudioModel, config: AdaLoraConfig) -> dict[str, Any]:
        return {"rank_grid": self.rank_grid(model, config).as_plain()}

    def rank_grid(self, model: StudioModel, config: AdaLoraConfig) -> RankGrid:
        """The live rank of every adapted site (what the window draws as a layers x targets grid)."""
        sites = {s.module_path: s for s in self.selected_sites(config, model.base)}
        cells = {sites[path].id: (layer.live_ranks(), layer.r) for path, layer in modules_of(model.base, SvdLinear)}
        layers_of = {sites[path].id: sites[path].layer for path, _ in modules_of(model.base, SvdLinear)}
        names = {sites[path].id: sites[path].name for path, _ in modules_of(model.base, SvdLinear)}
        return RankGrid(cells, layers_of, names, config.init_r, config.target_r, allocator(model).budget)

    # ---- Hugging Face PEFT exchange --------------------------------------------------------------------
    def peft_export(self, base: FrozenBase, config: AdaLoraConfig) -> tuple[dict, dict[str, torch.Tensor]]:
        tensors: dict[str, torch.Tensor] = {}
        targets, pattern = [], {}
        pruned = False
        for path, layer in modules_of(base, SvdLinear):
            name = hf_name(path, base)
            targets.append(name)
            # what the layer computes now: the allocator's kept triplets, and any pruned one that training has
            # moved off zero since (PEFT would drop it; the export must give the studio's outputs)
            keep = torch.ones(layer.r, dtype=torch.bool) if layer.kept is None else \
                layer.kept | (layer.lora_E.detach().view(-1) != 0)
            pattern[f"{name}.lora_E"] = keep.tolist() + [False] * (config.init_r - layer.r)
            pruned = pruned or layer.r < config.init_r or not bool(keep.all())
            tensors[f"{KEY_PREFIX}{name}.lora_A"] = layer.lora_A[keep]
            tensors[f"{KEY_PREFIX}{name}.lora_B"] = layer.lora_B[:, keep]
            tensors[f"{KEY_PREFIX}{name}.lora_E"] = layer.lora_E[keep]
        settings = {"init_r": config.init_r, "target_r": config.target_r, "tinit": config.tinit,
                    "tfinal": config.tfinal, "deltaT": config.deltaT, "beta1": config.beta1, "beta2": config.beta2,
                    "orth_reg_weight": config.orth_reg_weight, "total_step": self._total_step(config, base),
                    "rank_pattern": pattern if pruned else None, "r": 8, "lora_alpha": config.alpha,
                    "lora_dropout": config.dropout, "target_modules": targets, "bias": "none",
                    "fan_in_fan_out": any(layer.fan_in_fan_out for _, layer in modules_of(base, SvdLinear)),
                    "init_lora_weights": True, "use_rslora": False, "use_dora": False, "layers_to_transform": None,
                    "alpha_pattern": {}}
        return settings, tensors

    @staticmethod
    def _total_step(config: AdaLoraConfig, base: FrozenBase) -> int:
        """PEFT requires a total_step above tinit + tfinal: the config's, else the last run's, else the least that
        PEFT accepts (it only shapes further training, not the outputs)."""
        owners = [layer for _, layer in modules_of(base, SvdLinear)]
        run = owners[0].allocator.total if owners else None
        return config.total_step or run or config.tinit + config.tfinal + 1

    def peft_translate(self, peft_config: dict[str, Any], tensors: dict, where: str) -> tuple[dict, dict]:
        refuse_set(peft_config, where, {
            "use_dora": "AdaLoRA has no DoRA form", "use_rslora": "AdaLoRA scales by lora_alpha / init_r",
            "alpha_pattern": "the studio uses one alpha for every module", "lora_bias": "base biases do not train",
            "use_qalora": "plain AdaLoRA only"})
        if peft_config.get("bias", "none") != "none":
            raise AdapterFileError(f"{where}: bias {peft_config.get('bias')!r} trains base biases too; only 'none'")
        # PEFT sets fan_in_fan_out from the layer type itself (True on a Conv1D, False on a Linear): a
        # well-typed flag changes nothing the base does not already decide
        flag(peft_config, "fan_in_fan_out", where, False)
        init_r = whole(peft_config, "init_r", where, 12, high=4096)
        options: dict[str, Any] = {
            "init_r": init_r, "target_r": whole(peft_config, "target_r", where, 8, low=0, high=4096),
            "alpha": number(peft_config, "lora_alpha", where, 8.0, low=1e-6, high=1e6),
            "dropout": number(peft_config, "lora_dropout", where, 0.0, 0.0, 1.0, high_open=True),
            "tinit": whole(peft_config, "tinit", where, 0, low=0, high=10**9),
            "tfinal": whole(peft_config, "tfinal", where, 0, low=0, high=10**9),
            "deltaT": whole(peft_config, "deltaT", where, 1, high=10**9),
            "beta1": number(peft_config, "beta1", where, 0.85, 1e-6, 0.999999),
            "beta2": number(peft_config, "beta2", where, 0.85, 1e-6, 0.999999),
            "orth_reg_weight": number(peft_config, "orth_reg_weight", where, 0.5, 0.0, 1e6),
            "total_step": whole(peft_config, "total_step", where, 0, low=0, high=10**9)}
        ranks = _pattern_ranks(peft_config.get("rank_pattern"), init_r, where)
        studio: dict[str, torch.Tensor] = {}
        sizes: dict[str, int] = {}
        found: set[str] = set()
        for module, parts in split_module_keys(tensors, ("lora_A", "lora_B", "lora_E"), where, "an AdaLoRA").items():
            missing = [leaf for leaf in ("lora_A", "lora_B", "lora_E") if leaf not in parts]
            if missing:
                raise unknown(where, module, f"has no {missing[0]} (an AdaLoRA module has lora_A, lora_B, lora_E)")
            r = ranks.get(module, init_r)
            expected = {"lora_A": (r, None), "lora_B": (None, r), "lora_E": (r, 1)}
            for leaf, (rows, columns) in expected.items():
                tensor = parts[leaf]
                if tensor.dim() != 2 or (rows is not None and tensor.shape[0] != rows) \
                        or (columns is not None and tensor.shape[1] != columns):
                    raise unknown(where, f"{module}.{leaf}", f"has shape {tuple(tensor.shape)}; with rank {r} "
                                                             f"(init_r {init_r} and the rank_pattern) it cannot")
                studio[f"{module}.{leaf}"] = tensor
            found.add(module)
            if r != init_r:
                sizes[module] = r
        strays = sorted(set(ranks) - found)
        if strays:
            raise AdapterFileError(f"{where}: rank_pattern names {strays[0]}, which has no tensors in the adapter")
        if sizes:
            options["rank_pattern"] = ",".join(f"{module}={r}" for module, r in sizes.items())
        return options, studio

    def peft_check_model(self, base: FrozenBase, options: dict[str, Any], where: str) -> None:
        for path, layer in modules_of(base, SvdLinear):
            if layer.ranknum != options["init_r"] or abs(layer.alpha - options["alpha"]) > 1e-9 * options["alpha"]:
                raise AdapterFileError(f"{where}: the adapter's scale alpha / init_r = {options['alpha']:g}/"
                                       f"{options['init_r']}; the model's {path} uses {layer.alpha:g}/"
                                       f"{layer.ranknum:g}")


# ---- helpers --------------------------------------------------------------------------------------------------
def layers(model: StudioModel) -> list[SvdLinear]:
    return [layer for _, layer in modules_of(model.base, SvdLinear)]


def allocator(model: StudioModel) -> RankAllocator:
    return model.extras["rank_allocator"]


def orthogonality_penalty(svd_layers: list[SvdLinear]) -> torch.Tensor:
    """PEFT's regulariser: the mean over every lora_A and lora_B of ||A A^T - I||_F and ||B^T B - I||_F."""
    total, count = torch.zeros(()), 0
    for layer in svd_layers:
        for product in (layer.lora_A @ layer.lora_A.T, layer.lora_B.T @ layer.lora_B):
            identity = torch.eye(*product.size(), dtype=product.dtype, device=product.device)
            total = total + torch.norm(product - identity, p="fro")
            count += 1
    return total / count if count else total


_PATTERN_ENTRY = re.compile(r"\s*([\w.\-]+)\s*=\s*(\d+)\s*")


def parse_rank_pattern(text: str | None, init_r: int) -> dict[str, int]:
    """'layers.0.attn.q=5,layers.1.attn.v=0' -> {site id: rank}, each rank in [0, init_r]."""
    if not text:
        return {}
    ranks: dict[str, int] = {}
    for item in text.split(","):
        match = _PATTERN_ENTRY.fullmatch(item)
        if not match:
            raise ConfigError(f"rank_pattern: {item.strip()!r} is not site=rank (e.g. layers.0.attn.q=5)")
        rank = int(match.group(2))
        if rank > init_r:
            raise ConfigError(f"rank_pattern: {match.group(1)} = {rank} is above init_r = {init_r} (pruning only "
                              "lowers a rank)")
        ranks[match.group(1)] = rank
    return ranks


def _pattern_ranks(pattern: Any, init_r: int, where: str) -> dict[str, int]:
    """PEFT's rank_pattern ({'<module>.lora_E': [kept?] * init_r}) as {studio module: live rank}."""
    if pattern is None:
        return {}
    if not isinstance(pattern, dict):
        raise AdapterFileError(f"{where}: rank_pattern should be an object of masks, not {str(pattern)[:40]}")
    ranks: dict[str, int] = {}
    for key, mask in pattern.items():
        name = key.removesuffix(".lora_E").removeprefix("bert.") if isinstance(key, str) else None
        module = module_path(name) if name else None
        if module is None or not key.endswith(".lora_E"):
            raise AdapterFileError(f"{where}: rank_pattern key {str(key)[:60]!r} is not <module>.lora_E of a BERT "
                                   "encoder or a decoder")
        if not isinstance(mask, list) or len(mask) != init_r or not all(isinstance(v, bool) for v in mask):
            raise AdapterFileError(f"{where}: rank_pattern[{key!r}] should list {init_r} true/false values (init_r)")
        ranks[module] = sum(mask)
    return ranks
