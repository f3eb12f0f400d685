"""VB-LoRA: every adapted Linear builds its LoRA factors from one shared, trainable bank of vectors, each slice a
top-k mixture of bank vectors (Li et al., 2024).

Follows PEFT's VBLoRA (peft/tuners/vblora): a bank of num_vectors vectors of vector_length, drawn
U(-init_vector_bank_bound, init_vector_bank_bound); per Linear, logits (r, in / L, num_vectors) for A and
(out / L, r, num_vectors) for B, drawn N(0, init_logits_std). Each length-L slice of A and B is the softmax over its
top-k logits times those k bank vectors, and

    h = W0 x + b + B (A x)            (no scale; both factors start random, so the update starts non-zero)

The widths must be multiples of vector_length. The bank trains with the logits and is shared by every Linear.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from ..bases.frozen import FrozenBase
from ..bases.sites import LINEAR, Site
from ..errors import AdapterFileError, ConfigError
from ..model.studio_model import StudioModel
from .config import MethodConfig, option
from .mergeable import WeightUpdate
from .method import REPARAMETERISED, Method, MethodCard, TargetedMethod, code_line
from .peft_fields import flag, number, refuse_set, whole
from .peft_format import KEY_PREFIX, hf_name, modules_of, split_module_keys, unknown

BANK_KEY = "base_model.vblora_vector_bank"  # PEFT's key of the shared bank (adapter name removed)


class VectorBank(nn.Module):
    """The shared trainable bank (num_vectors x vector_length), kept in StudioModel.extras."""

    def __init__(self, num_vectors: int, vector_length: int, bound: float) -> None:
        super().__init__()
        self.vblora_vector_bank = nn.Parameter(torch.empty(num_vectors, vector_length))
        nn.init.uniform_(self.vblora_vector_bank, -bound, bound)


def mix(logits: torch.Tensor, bank: torch.Tensor, topk: int) -> torch.Tensor:
    """Each slice: softmax over its top-k logits, times the k bank vectors they pick, summed (PEFT's
    _get_low_rank_matrix)."""
    top_logits, indices = logits.topk(topk, dim=-1)
    return (F.softmax(top_logits, dim=-1).unsqueeze(-1) * bank[indices]).sum(-2)


class VBLoraLinear(WeightUpdate):
    """A frozen Linear plus B (A x), A and B mixed from the shared bank."""

    def __init__(self, base_layer: nn.Module, bank: VectorBank, r: int, topk: int, dropout: float,
                 logits_std: float) -> None:
        super().__init__(base_layer)
        num_vectors, length = bank.vblora_vector_bank.shape
        self.r, self.topk = r, topk
        self.__dict__["bank"] = bank  # a plain reference: the bank is registered once, in model.extras
        self.vblora_dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.vblora_logits_A = nn.Parameter(torch.zeros(r, base_layer.in_features // length, num_vectors))
        self.vblora_logits_B = nn.Parameter(torch.zeros(base_layer.out_features // length, r, num_vectors))
        nn.init.normal_(self.vblora_logits_A, 0, logits_std)
        nn.init.normal_(self.vblora_logits_B, 0, logits_std)

    def factors(self) -> tuple[torch.Tensor, torch.Tensor]:
        """A (r x in) and B (out x r), each slice a top-k mixture of bank vectors."""
        bank = self.bank.vblora_vector_bank
        a = mix(self.vblora_logits_A, bank, self.topk).reshape(self.vblora_logits_A.shape[0], -1)
        b = mix(self.vblora_logits_B, bank, self.topk).transpose(1, 2).reshape(-1, self.vblora_logits_B.shape[1])
        return a, b

    def delta_weight(self) -> torch.Tensor:
        a, b = self.factors()
        return b @ a

    def update(self, x: torch.Tensor, result: torch.Tensor) -> torch.Tensor:
        a, b = self.factors()
        return result + F.linear(F.linear(self.vblora_dropout(x), a), b)  # B (A x), A and B from the bank


@dataclass
class VBLoraConfig(MethodConfig):
    r: int = option(4, "rank of the update B A", low=1, high=4096)
    num_vectors: int = option(256, "vectors in the shared bank", low=1, high=2**20)
    vector_length: int = option(0, "length of each bank vector, dividing every adapted width (0: PEFT's 256 where "
                                   "it divides them, else the largest power of two that does)", low=0, high=2**16)
    topk: int = option(2, "bank vectors mixed into each slice of A and B", low=1, high=2**20)
    dropout: float = option(0.0, "dropout on the input of A during training (PEFT's vblora_dropout)", low=0.0,
                            high=0.99)
    init_vector_bank_bound: float = option(0.02, "the bank starts uniform in [-bound, bound]", low=0.0, high=1e3)
    init_logits_std: float = option(0.1, "the logits start normal with this standard deviation", low=0.0, high=1e3)
    targets: str | None = option(None, "comma list of Linear sites, e.g. q,v (Hugging Face names and site ids "
                                       "work too; default: the base's LoRA targets)")
    layers: str | None = option(None, "comma list of layer indices or ranges such as 0-3 (default: every layer)")


class VBLoraMethod(TargetedMethod):
    name = "vblora"
    family_group = REPARAMETERISED
    title = "VB-LoRA"
    config_cls = VBLoraConfig
    site_kinds = (LINEAR,)
    claims_kinds = ()  # a click on a Linear means LoRA unless VB-LoRA is already chosen
    targets_default_from = "lora"
    example_space = {**Method.example_space, "r": (1, 2, 4), "num_vectors": (4, 16), "vector_length": (0, 4, 8),
                     "topk": (1, 2, 3)}
    peft_space = {"r": (2, 4), "num_vectors": (8, 32), "vector_length": (64, 128), "topk": (1, 2)}
    peft_type = "VBLORA"
    exchange_tolerance = 1e-5  # the bar for outputs equal to PEFT's
    peft_config_fields = {"num_vectors": ((int,), "a whole number"), "vector_length": ((int,), "a whole number"),
                          "topk": ((int,), "a whole number"), "vblora_dropout": ((int, float), "a number"),
                          "save_only_topk_weights": ((bool,), "true or false"),
                          "init_vector_bank_bound": ((int, float), "a number"),
                          "init_logits_std": ((int, float), "a number")}
    glyph = "VB"
    colour = "#7d3c98"
    card = MethodCard(
        where="beside a frozen Linear: LoRA factors assembled from one bank of vectors shared by every Linear",
        intuition="most of a LoRA update is redundant across layers: keep one small bank of vectors and let each "
                  "slice of A and B pick a top-k mixture of them",
        advantages="the bank is shared, so each Linear adds only its selection logits; the saved adapter can be "
                   "tiny (top-k indices and weights); mergeable into W0",
        limitations="widths must be multiples of vector_length; logits for every bank vector cost memory while "
                    "training; the update starts non-zero",
        formula="h = W0 x + B A x,  each slice of A, B = Σ_topk softmax(logits) · bank vectors",
    )

    # ---- where and how big ----------------------------------------------------------------------------
    def vector_length(self, config: VBLoraConfig, sites: list[Site]) -> int:
        """The length in force: the config's, or (0) PEFT's 256 if it divides every width, else the largest power
        of two that does."""
        if config.vector_length:
            return config.vector_length
        widths = [w for s in sites for w in (s.in_features, s.out_features)]
        common = math.gcd(*widths) if widths else 256
        return 256 if common % 256 == 0 else common & -common

    def validate(self, config: VBLoraConfig, base: FrozenBase) -> None:
        super().validate(config, base)
        sites = self.selected_sites(config, base)
        length = self.vector_length(config, sites)
        for site in sites:
            for what, width in (("in_features", site.in_features), ("out_features", site.out_features)):
                if width % length:
                    raise ConfigError(f"vector_length {length} must divide every adapted width, but {site.id} has "
                                      f"{what} {width} (PEFT refuses it too)")
        if config.topk > config.num_vectors:
            raise ConfigError(f"topk ({config.topk}) cannot exceed num_vectors ({config.num_vectors})")

    def effective_options(self, config: VBLoraConfig, base: FrozenBase) -> dict[str, Any]:
        values = super().effective_options(config, base)
        values["vector_length"] = self.vector_length(config, self.selected_sites(config, base))
        return values

    def attach(self, model: StudioModel, config: VBLoraConfig) -> None:
        sites = self.selected_sites(config, model.base)
        bank = VectorBank(config.num_vectors, self.vector_length(config, sites), config.init_vector_bank_bound)
        model.extras["vblora"] = bank
        for site in sites:
            original = model.base.get_submodule(site.module_path)
            model.swap(site.module_path, VBLoraLinear(original, bank, config.r, config.topk, config.dropout,
                                                      config.init_logits_std))

    def parameter_count(self, config: VBLoraConfig, base: FrozenBase) -> int:
        sites = self.selected_sites(config, base)
        length = self.vector_length(config, sites)
        logits = sum(config.r * (s.in_features + s.out_features) // length for s in sites) * config.num_vectors
        return config.num_vectors * length + logits

    def formula_text(self, config: VBLoraConfig, base: FrozenBase) -> str:
        sites = self.selected_sites(config, base)
        length = self.vector_length(config, sites)
        return (f"bank {config.num_vectors} x {length} + sum over {len(sites)} Linear(s) of r x (in + out) / "
                f"{length} x {config.num_vectors} logits = {self.parameter_count(config, base):,}")

    def live_formula(self, config: VBLoraConfig) -> str:
        return f"{self.card.formula}, top-{config.topk} of {config.num_vectors}"

    def code(self, config: VBLoraConfig) -> str:
        return f"{code_line(mix, 'bank[indices]')}  # then: {code_line(VBLoraLinear.update, 'F.linear')}"

    def shape_notes(self, config: VBLoraConfig, base: FrozenBase, seq_len: int) -> list[str]:
        sites = self.selected_sites(config, base)
        length = self.vector_length(config, sites)
        return [f"bank: {config.num_vectors} vectors of length {length}, shared"] + [
            f"{s.id}: logits A {config.r}x{s.in_features // length}x{config.num_vectors}, B "
            f"{s.out_features // length}x{config.r}x{config.num_vectors} -> A {config.r}x{s.in_features}, B "
            f"{s.out_features}x{config.r}" for s in sites]

    # ---- Hugging Face PEFT exchange --------------------------------------------------------------------
    def peft_export(self, base: FrozenBase, config: VBLoraConfig) -> tuple[dict, dict[str, torch.Tensor]]:
        tensors: dict[str, torch.Tensor] = {}
        targets = []
        layers = modules_of(base, VBLoraLinear)
        for path, layer in layers:
            name = hf_name(path, base)
            targets.append(name)
            tensors[f"{KEY_PREFIX}{name}.vblora_logits_A"] = layer.vblora_logits_A
            tensors[f"{KEY_PREFIX}{name}.vblora_logits_B"] = layer.vblora_logits_B
        bank = layers[0][1].bank.vblora_vector_bank
        tensors[BANK_KEY] = bank
        settings = {"r": config.r, "num_vectors": config.num_vectors, "vector_length": bank.shape[1],
                    "topk": config.topk, "vblora_dropout": config.dropout, "target_modules": targets,
                    "exclude_modules": None, "save_only_topk_weights": False,
                    "fan_in_fan_out": any(layer.fan_in_fan_out for _, layer in layers), "bias": "none",
                    "init_vector_bank_bound": config.init_vector_bank_bound,
                    "init_logits_std": config.init_logits_std, "layers_to_transform": None, "layers_pattern": None}
        return settings, tensors

    def peft_translate(self, peft_config: dict[str, Any], tensors: dict, where: str) -> tuple[dict, dict]:
        refuse_set(peft_config, where, {
            "save_only_topk_weights": "a top-k-only file holds weights and indices, not the logits the studio "
                                      "trains; save without it"})
        if peft_config.get("bias", "none") != "none":
            raise AdapterFileError(f"{where}: bias {peft_config.get('bias')!r} trains base biases too; only 'none'")
        # PEFT sets fan_in_fan_out from the layer type itself (True on a Conv1D, False on a Linear): a
        # well-typed flag changes nothing the base does not already decide
        flag(peft_config, "fan_in_fan_out", where, False)
        options = {"r": whole(peft_config, "r", where, 4, high=4096),
                   "num_vectors": whole(peft_config, "num_vectors", where, 256, high=2**20),
                   "vector_length": whole(peft_config, "vector_length", where, 256, high=2**16),
                   "topk": whole(peft_config, "topk", where, 2, high=2**20),
                   "dropout": number(peft_config, "vblora_dropout", where, 0.0, 0.0, 1.0, high_open=True),
                   "init_vector_bank_bound": number(peft_config, "init_vector_bank_bound", where, 0.02, 0.0, 1e3),
                   "init_logits_std": number(peft_config, "init_logits_std", where, 0.1, 0.0, 1e3)}
        tensors = dict(tensors)
        bank = tensors.pop(BANK_KEY, None)
        shape = (options["num_vectors"], options["vector_length"])
        if bank is None or tuple(bank.shape) != shape:
            found = "none" if bank is None else f"shape {tuple(bank.shape)}"
            raise AdapterFileError(f"{where}: {BANK_KEY} should be the shared bank of shape {shape}; found {found}")
        studio: dict[str, torch.Tensor] = {"extras.vblora.vblora_vector_bank": bank}
        modules = []
        r, num_vectors = options["r"], options["num_vectors"]
        for module, parts in split_module_keys(tensors, ("vblora_logits_A", "vblora_logits_B"), where,
                                               "a VB-LoRA").items():
            for leaf, tensor in parts.items():
                rank_axis = 0 if leaf == "vblora_logits_A" else 1
                if tensor.dim() != 3 or tensor.shape[rank_axis] != r or tensor.shape[2] != num_vectors:
                    raise unknown(where, f"{module}.{leaf}", f"has shape {tuple(tensor.shape)}; expected r={r} on "
                                                             f"axis {rank_axis} and {num_vectors} logits per slice")
                studio[f"{module}.{leaf}"] = tensor
            modules.append(module)
        options["targets"], options["layers"] = ",".join(modules), None  # the module paths are the sites' ids
        return options, studio

    def peft_check_model(self, base: FrozenBase, options: dict[str, Any], where: str) -> None:
        for path, layer in modules_of(base, VBLoraLinear):
            if layer.topk != options["topk"]:
                raise AdapterFileError(f"{where}: the adapter mixes the top {options['topk']} bank vectors, the "
                                       f"model's {path} the top {layer.topk}")
