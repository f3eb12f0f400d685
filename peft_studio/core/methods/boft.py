"""BOFT: OFT's rotation built as a product of butterfly-permuted block-diagonal rotations, plus a scale per output
(Liu et al., 2024, "Parameter-Efficient Orthogonal Finetuning via Butterfly Factorization").

Follows PEFT's BOFT for nn.Linear (peft/tuners/boft) as it computes with its block-diagonal extension: m =
boft_n_butterfly_factor factors, each D blocks of size b (D b = in; the factor i's blocks are mixed by the
butterfly permutation P_i), each block the exact Cayley transform of a full b x b matrix's skew part; a vector s
(ones at the start) scales each output. All R start at zero, so the layer starts at W0:

    h = s * (W0 (R x)) + b,   R^T = B_m ... B_2 B_1,   B_i = P_i diag(C(A_i1), ..., C(A_iD)) P_i^T,
    C(A) = (I - K)(I + K)^-1 with K = (A - A^T) / 2          (merged: W = s * W0 R)

PEFT builds the m > 1 butterfly only where its CUDA extension compiles; without it, it silently uses one factor
(plain OFT blocks), so such an export loads in PEFT on a GPU machine only (its README says so).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ..bases.frozen import FrozenBase
from ..bases.sites import LINEAR, Site
from ..errors import AdapterFileError, ConfigError
from ..files.safe_io import expect_shape
from ..model.studio_model import StudioModel
from .config import MethodConfig, option
from .mergeable import WeightUpdate
from .method import REPARAMETERISED, Method, MethodCard, TargetedMethod, code_line
from .oft import LINEAR_ONLY
from .peft_format import KEY_PREFIX, hf_name, modules_of, split_module_keys


def butterfly_permutation(n: int, blocks: int, half: int, factors_after_first: int) -> torch.Tensor:
    """PEFT's `block_butterfly_perm`: within each group of n / blocks entries, the chunks of `half` entries are
    reordered evens first, then odds (the identity when there is a single factor)."""
    if factors_after_first == 0:
        return torch.arange(n)
    group = n // blocks
    chunks = group // half
    order = [*range(0, chunks, 2), *range(1, chunks, 2)]
    within = torch.cat([torch.arange(pos * half, pos * half + half) for pos in order])
    return torch.cat([start + within for start in range(0, n, group)])


def boft_layout(in_features: int, block_size: int, block_num: int, factors: int) -> tuple[int, int]:
    """(blocks, block size) PEFT builds for a Linear of this input width, or ConfigError with PEFT's reason."""
    extra = factors - 1
    if factors < 1:
        raise ConfigError(f"boft_n_butterfly_factor must be a positive whole number (got {factors})")
    if (block_size == 0) == (block_num == 0):
        raise ConfigError(f"give exactly one of boft_block_size ({block_size}) and boft_block_num ({block_num}) as "
                          "non-zero: their product must equal each Linear's input width")
    if block_num:
        if in_features % block_num:
            raise ConfigError(f"in_features ({in_features}) must be divisible by boft_block_num ({block_num})")
        if extra and (extra > block_num.bit_length() - 1 or block_num % 2 ** extra):
            raise ConfigError(f"boft_block_num ({block_num}) must be a multiple of 2^{extra} for "
                              f"boft_n_butterfly_factor {factors}")
        block_size = in_features // block_num
    else:
        if in_features % block_size:
            raise ConfigError(f"in_features ({in_features}) must be divisible by boft_block_size ({block_size})")
        if extra and in_features % (block_size * 2 ** extra):
            raise ConfigError(f"in_features ({in_features}) must be divisible by boft_block_size x "
                              f"2^(boft_n_butterfly_factor - 1) = {block_size * 2 ** extra}")
        block_num = in_features // block_size
    if extra and (block_num % 2 or block_size % 2):
        raise ConfigError(f"with more than one butterfly factor, blocks ({block_num}) and block size ({block_size}) "
                          "must both be even")
    return block_num, block_size


def skew_cayley(matrices: torch.Tensor) -> torch.Tensor:
    """PEFT's BOFT `cayley_batch`: (I - K)(I + K)^-1 with K the skew part of each square matrix."""
    skew = 0.5 * (matrices - matrices.transpose(1, 2))
    eye = torch.eye(matrices.shape[1], device=matrices.device).unsqueeze(0).expand_as(matrices)
    return torch.linalg.solve(eye + skew, eye - skew, left=False).to(matrices.dtype)


class BlockDropout(nn.Module):
    """PEFT's BOFT MultiplicativeDropoutLayer: in training, int(p D) random blocks of one random factor become I."""

    def __init__(self, p: float) -> None:
        super().__init__()
        self.p = p

    def forward(self, blocks: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p <= 0:
            return blocks
        factors, count, size, _ = blocks.shape
        chosen = torch.randint(0, factors, (1,)).item()
        replaced = int(self.p * count)
        mask = torch.cat([torch.ones(replaced, device=blocks.device), torch.zeros(count - replaced,
                                                                                   device=blocks.device)])
        mask = mask[torch.randperm(count)].view(1, count, 1, 1)
        full = torch.zeros(factors, count, 1, 1, device=blocks.device)
        full[chosen] = mask
        eye = torch.eye(size, device=blocks.device).repeat(factors, count, 1, 1)
        return (1 - full) * blocks + full * eye


class BoftLinear(WeightUpdate):
    """A frozen Linear behind a butterfly rotation of its input, with a trainable scale per output."""

    def __init__(self, base_layer: nn.Module, blocks: int, block_size: int, factors: int, dropout: float) -> None:
        super().__init__(base_layer)
        in_features, out_features = base_layer.in_features, base_layer.out_features
        self.blocks, self.block_size, self.factors = blocks, block_size, factors
        self.boft_R = nn.Parameter(torch.zeros(factors, blocks, block_size, block_size))  # C(0) = I: starts at W0
        self.boft_s = nn.Parameter(torch.ones(out_features, 1))
        self.boft_dropout = BlockDropout(dropout)
        # the permutation of each factor, as indices (PEFT keeps [in, in] permutation matrices: same numbers)
        self._permutations = [butterfly_permutation(in_features, blocks // 2 ** i, block_size // 2, factors - 1)
                              for i in range(factors)]

    def butterfly(self) -> torch.Tensor:
        """PEFT's butterfly_oft_mat M ([in, in], x -> x M): B_m ... B_1 with B_i = P_i diag(...) P_i^T."""
        rotations = skew_cayley(self.boft_R.reshape(-1, self.block_size, self.block_size))
        rotations = self.boft_dropout(rotations.view(self.factors, self.blocks, self.block_size, self.block_size))
        product = None
        for factor, permutation in zip(rotations, self._permutations, strict=True):
            index = permutation.to(factor.device)
            mixed = torch.block_diag(*factor)[index][:, index]  # P B P^T for the permutation matrix P[i, perm[i]] = 1
            product = mixed if product is None else mixed @ product
        return product

    def adapted(self, x: torch.Tensor) -> torch.Tensor:
        result = self.base_layer(x @ self.butterfly())  # the input, rotated by the butterfly
        bias = self.base_layer.bias
        scale = self.boft_s.squeeze(-1)
        return result * scale if bias is None else (result - bias) * scale + bias

    def rotation(self) -> torch.Tensor:
        """R ([in, in]) with h = s * (W0 (R x)) + b."""
        return self.butterfly().T

    def merged_weight(self) -> torch.Tensor:
        return (self.weight_out_in() @ self.rotation()) * self.boft_s  # PEFT: (M @ W0^T)^T * s


@dataclass
class BoftConfig(MethodConfig):
    boft_block_size: int = option(4, "size b of each orthogonal block (0: use boft_block_num blocks instead; give "
                                     "exactly one of the two)", low=0, high=4096)
    boft_block_num: int = option(0, "number of blocks per factor (0: size them by boft_block_size)", low=0, high=4096)
    boft_n_butterfly_factor: int = option(1, "butterfly factors m: 1 is OFT's block-diagonal rotation; each more "
                                             "doubles how far a rotation mixes channels", low=1, high=16)
    targets: str | None = option(None, "comma list of Linear sites, e.g. q,v (Hugging Face names and site ids "
                                       "work too; default: the base's LoRA targets)")
    layers: str | None = option(None, "comma list of layer indices or ranges such as 0-3 (default: every layer)")
    boft_dropout: float = option(0.0, "in training, this share of one random factor's blocks is set to I each step",
                                 low=0.0, high=0.99)


class BoftMethod(TargetedMethod):
    name = "boft"
    family_group = REPARAMETERISED
    title = "BOFT"
    config_cls = BoftConfig
    site_kinds = (LINEAR,)
    claims_kinds = ()  # a click on a Linear means LoRA unless BOFT is already chosen
    targets_default_from = "lora"
    refused_layers = {"Conv1D": LINEAR_ONLY.format("BOFT")}
    peft_merge_draws = "boft_dropout"  # measured: dropout 0.1 moves PEFT's merged W by 0.28, dropout 0 by 0.0
    example_space = {**Method.example_space,
                     ("boft_block_size", "boft_block_num"): ((4, 0), (8, 0), (0, 8), (0, 16)),
                     "boft_n_butterfly_factor": (1, 2), "boft_dropout": (0.0, 0.1)}
    peft_space = {("boft_block_size", "boft_block_num"): ((4, 0), (8, 0), (0, 32)), "boft_n_butterfly_factor": (1, 2),
                  "boft_dropout": (0.0, 0.1)}
    peft_type = "BOFT"
    peft_on_meta_device = False  # PEFT's perm2mat calls .item() on each index: not on the meta device
    peft_config_fields = {"boft_block_size": ((int,), "a whole number"), "boft_block_num": ((int,), "a whole number"),
                          "boft_n_butterfly_factor": ((int,), "a whole number"),
                          "boft_dropout": ((int, float), "a number"), "init_weights": ((bool,), "true or false")}
    peft_config_ranges = {"boft_block_size": (0, 4096), "boft_block_num": (0, 4096),
                          "boft_n_butterfly_factor": (1, 16), "boft_dropout": (0, 0.99)}
    glyph = "⋈"
    colour = "#117864"
    card = MethodCard(
        where="before a frozen Linear: a butterfly of orthogonal blocks rotates its input; a scale per output",
        intuition="OFT's blocks only mix neighbours; butterfly permutations between factors let a few small "
                  "rotations mix every channel with every other, like an FFT",
        advantages="a dense orthogonal R from few parameters; keeps W0's geometry; mergeable (W = s * W0 R)",
        limitations="m x in x b parameters (full b x b blocks, half of them redundant), m dense in x in products "
                    "per step; PEFT builds m > 1 only with its CUDA extension",
        formula="h = s * (W0 (R x)) + b,  R^T = B_m ... B_1,  B_i = P_i diag(R_i1, ..., R_iD) P_i^T orthogonal",
    )

    def validate(self, config: BoftConfig, base: FrozenBase) -> None:
        super().validate(config, base)
        self.layouts(config, base)

    def layouts(self, config: BoftConfig, base: FrozenBase) -> list[tuple[Site, int, int]]:
        layouts = []
        for site in self.selected_sites(config, base):
            try:
                blocks, size = boft_layout(site.in_features, config.boft_block_size, config.boft_block_num,
                                           config.boft_n_butterfly_factor)
            except ConfigError as exc:
                raise ConfigError(f"{site.id}: {exc}") from None
            layouts.append((site, blocks, size))
        return layouts

    def attach(self, model: StudioModel, config: BoftConfig) -> None:
        for site, blocks, size in self.layouts(config, model.base):
            original = model.base.get_submodule(site.module_path)
            model.swap(site.module_path, BoftLinear(original, blocks, size, config.boft_n_butterfly_factor,
                                                    config.boft_dropout))

    def parameter_count(self, config: BoftConfig, base: FrozenBase) -> int:
        return sum(config.boft_n_butterfly_factor * blocks * size * size + site.out_features
                   for site, blocks, size in self.layouts(config, base))

    def formula_text(self, config: BoftConfig, base: FrozenBase) -> str:
        layouts = self.layouts(config, base)
        m = config.boft_n_butterfly_factor
        shapes = sorted({f"{m} x {blocks} x {size}x{size} + {site.out_features}" for site, blocks, size in layouts})
        return (f"sum over {len(layouts)} Linear(s) of m x blocks x b^2 + out ({'; '.join(shapes)}) = "
                f"{self.parameter_count(config, base):,}")

    def live_formula(self, config: BoftConfig) -> str:
        blocks = f"{config.boft_block_num} blocks" if config.boft_block_num else f"b = {config.boft_block_size}"
        return f"{self.card.formula}  (m = {config.boft_n_butterfly_factor}, {blocks})"

    def code(self, config: BoftConfig) -> str:
        return code_line(BoftLinear.adapted, "self.butterfly()")

    def shape_notes(self, config: BoftConfig, base: FrozenBase, seq_len: int) -> list[str]:
        m = config.boft_n_butterfly_factor
        return [f"{site.id}: boft_R ({m}, {blocks}, {size}, {size}) -> R {site.in_features}x{site.in_features}; "
                f"boft_s ({site.out_features}, 1)" for site, blocks, size in self.layouts(config, base)]

    # ---- Hugging Face PEFT exchange --------------------------------------------------------------------
    def peft_export(self, base: FrozenBase, config: BoftConfig) -> tuple[dict, dict[str, torch.Tensor]]:
        tensors: dict[str, torch.Tensor] = {}
        targets = []
        for path, module in modules_of(base, BoftLinear):
            name = hf_name(path, base)
            targets.append(name)
            tensors[f"{KEY_PREFIX}{name}.boft_R"] = module.boft_R
            tensors[f"{KEY_PREFIX}{name}.boft_s"] = module.boft_s
        settings = {"boft_block_size": config.boft_block_size, "boft_block_num": config.boft_block_num,
                    "boft_n_butterfly_factor": config.boft_n_butterfly_factor, "boft_dropout": config.boft_dropout,
                    "target_modules": targets, "fan_in_fan_out": False, "bias": "none", "init_weights": True,
                    "layers_to_transform": None, "layers_pattern": None, "exclude_modules": None}
        return settings, tensors

    def peft_notes(self, config: BoftConfig, base: FrozenBase) -> list[str]:
        if config.boft_n_butterfly_factor == 1:
            return []
        return [f"boft_n_butterfly_factor is {config.boft_n_butterfly_factor}: PEFT builds the butterfly only where "
                "its CUDA extension (fbd_cuda) compiles; elsewhere it silently uses one factor and cannot load this "
                "adapter (a size mismatch in boft_R).", ""]

    def peft_translate(self, peft_config: dict[str, Any], tensors: dict, where: str) -> tuple[dict, dict]:
        if peft_config.get("bias", "none") != "none":
            raise AdapterFileError(f"{where}: bias {peft_config.get('bias')!r} trains base biases too; only 'none'")
        if peft_config.get("fan_in_fan_out"):
            raise AdapterFileError(f"{where}: fan_in_fan_out is for Conv1D layers, which PEFT's BOFT does not take")
        size, num = peft_config.get("boft_block_size", 4), peft_config.get("boft_block_num", 0)
        if (size == 0) == (num == 0):
            raise AdapterFileError(f"{where}: exactly one of boft_block_size and boft_block_num must be non-zero")
        studio: dict[str, torch.Tensor] = {}
        factors: set[int] = set()
        for module, parts in split_module_keys(tensors, ("boft_R", "boft_s"), where, "a BOFT").items():
            for leaf, tensor in parts.items():
                dims, what = (4, "(factors, blocks, b, b)") if leaf == "boft_R" else (2, "(out, 1)")
                expect_shape(tensor, dims, f"{where}: {module}.{leaf}", AdapterFileError, what)
                if leaf == "boft_R":
                    factors.add(tensor.shape[0])
                studio[f"{module}.{leaf}"] = tensor
        asked = peft_config.get("boft_n_butterfly_factor", 1)
        if len(factors) > 1 or (factors and max(factors) not in (1, asked)):
            raise AdapterFileError(f"{where}: boft_R holds {sorted(factors)} butterfly factor(s), the config says "
                                   f"{asked}")
        # PEFT without its CUDA extension builds one factor whatever the config says: the tensors tell which it was
        options = {"boft_block_size": size, "boft_block_num": num,
                   "boft_n_butterfly_factor": max(factors) if factors else asked,
                   "boft_dropout": float(peft_config.get("boft_dropout") or 0.0)}
        return options, studio

    def peft_import_notes(self, peft_config: dict[str, Any], where: str) -> list[str]:
        factors = peft_config.get("boft_n_butterfly_factor", 1)
        if factors == 1:
            return []
        return [f"{where}: boft_n_butterfly_factor {factors}: PEFT builds that many factors only with its CUDA "
                "extension, else one; the studio uses the factors the saved boft_R holds, as PEFT predicts with them"]
