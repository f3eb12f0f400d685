"""OFT: a trainable block-diagonal orthogonal rotation of a frozen Linear's input (Qiu et al., 2023).

Follows PEFT's OFT for nn.Linear (peft/tuners/oft, PEFT >= 0.18): each of the r blocks of size b = in / r is the
Cayley transform of a skew-symmetric S stored as its upper triangle (b(b-1)/2 numbers), by default through the
Cayley-Neumann series I + 2S + 2S^2 + ... ; all zeros at the start, so R = I and the layer starts at W0:

    h = W0 (R x) + b,   R = diag(R_1, ..., R_r),   R_i = Cayley(S_i)   (merged: W = W0 R)

COFT keeps each S inside a ball of radius eps / sqrt(blocks) (projected in place before each use, as PEFT does);
block_share uses one rotation for every block. A block size that does not divide a Linear's input width is
adjusted per Linear exactly as PEFT adjusts it (and said in the shape notes).
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
from .peft_format import KEY_PREFIX, PEFT_VERSION, hf_name, modules_of, split_module_keys

LINEAR_ONLY = ("PEFT applies {} to nn.Linear layers only; GPT-2 stores these weights in Conv1D layers "
               "([in, out]), which PEFT refuses")


def peft_adjusted(in_features: int, value: int) -> int:
    """PEFT's `adjust_oft_parameters`: the divisor of in_features nearest to `value` (the lower one on a tie)."""
    if value >= in_features:
        return in_features
    higher = value
    while higher <= in_features and in_features % higher != 0:
        higher += 1
    lower = value
    while lower > 1 and in_features % lower != 0:
        lower -= 1
    return lower if value - lower <= higher - value else higher


def block_layout(in_features: int, r: int, block_size: int) -> tuple[int, int]:
    """(blocks, block size) PEFT builds for a Linear of this input width from r or oft_block_size."""
    if r == 0:
        size = block_size if in_features % block_size == 0 and block_size <= in_features else \
            peft_adjusted(in_features, block_size)
        return in_features // size, size
    blocks = r if in_features % r == 0 and r <= in_features else peft_adjusted(in_features, r)
    return blocks, in_features // blocks


class OftRotation(nn.Module):
    """PEFT's OFTRotationModule: `weight` holds, per block, the upper triangle of a skew-symmetric S."""

    def __init__(self, blocks: int, block_size: int, coft: bool, eps: float, neumann: bool, terms: int) -> None:
        super().__init__()
        self.block_size, self.coft, self.eps, self.neumann, self.terms = block_size, coft, eps, neumann, terms
        self.weight = nn.Parameter(torch.zeros(blocks, block_size * (block_size - 1) // 2))  # S = 0: R = I

    def upper(self, device: torch.device) -> torch.Tensor:
        """(rows, cols) of the upper triangle in PEFT's order (made per use: no buffers to store or count)."""
        return torch.triu_indices(self.block_size, self.block_size, 1, device=device)

    def skew(self, vector: torch.Tensor) -> torch.Tensor:
        """(blocks, b(b-1)/2) upper triangles -> (blocks, b, b) skew-symmetric matrices S."""
        matrix = torch.zeros(vector.shape[0], self.block_size, self.block_size, dtype=vector.dtype,
                             device=vector.device)
        rows, cols = self.upper(vector.device)
        matrix[:, rows, cols] = vector
        return matrix - matrix.transpose(-2, -1)

    def projected(self) -> torch.Tensor:
        """COFT: each S scaled back into the Frobenius ball of radius eps / sqrt(blocks) (PEFT's _project_batch)."""
        with torch.no_grad():
            skew = self.skew(self.weight)
            radius = self.eps * 1 / torch.sqrt(torch.tensor(float(skew.shape[0])))
            norm = torch.norm(skew, dim=(1, 2), keepdim=True)
            inside = torch.where(norm <= radius, skew, radius * (skew / norm))
            rows, cols = self.upper(skew.device)
            return inside[:, rows, cols]

    def blocks(self, project: bool = True) -> torch.Tensor:
        """The (blocks, b, b) rotations; with COFT the stored S is first projected in place, as PEFT's forward does
        (project=False leaves it untouched and rotates the projected copy)."""
        weight = self.weight
        if self.coft:
            if project:
                with torch.no_grad():
                    self.weight.copy_(self.projected())
            else:
                weight = self.projected()
        return cayley(self.skew(weight), self.neumann, self.terms)


def cayley(skew: torch.Tensor, neumann: bool, terms: int) -> torch.Tensor:
    """R = (I - S)(I + S)^-1 per block, exactly (a solve) or as PEFT's Neumann series I + 2S + 2S^2 + ... + S^(t-1)."""
    size = skew.shape[-1]
    if not neumann:
        eye = torch.eye(size, dtype=skew.dtype, device=skew.device).unsqueeze(0).expand_as(skew)
        return torch.linalg.solve(eye + skew, eye - skew, left=False)
    rotation = torch.eye(size, dtype=skew.dtype, device=skew.device).repeat(skew.shape[0], 1, 1)
    if terms > 1:
        rotation = torch.add(rotation, skew, alpha=2.0)
    if terms > 2:
        power = torch.bmm(skew, skew)
        rotation = torch.add(rotation, power, alpha=2.0)
        for _ in range(3, terms - 1):
            power = torch.bmm(power, skew)
            rotation = torch.add(rotation, power, alpha=2.0)
        rotation = rotation + torch.bmm(power, skew)  # the last term has weight 1
    return rotation


class OftLinear(WeightUpdate):
    """A frozen Linear whose input is first rotated block by block: h = W0 (R x) + b."""

    def __init__(self, base_layer: nn.Module, blocks: int, block_size: int, config: OftConfig) -> None:
        super().__init__(base_layer)
        self.num_blocks, self.block_size, self.block_share = blocks, block_size, config.block_share
        self.oft_R = OftRotation(1 if config.block_share else blocks, block_size, config.coft, config.eps,
                                 config.use_cayley_neumann, config.num_cayley_neumann_terms)

    def block_rotations(self, project: bool = True) -> torch.Tensor:
        rotations = self.oft_R.blocks(project)
        return rotations.repeat(self.num_blocks, 1, 1) if self.block_share else rotations

    def adapted(self, x: torch.Tensor) -> torch.Tensor:
        rotations = self.block_rotations()
        blocks = x.reshape(*x.shape[:-1], self.num_blocks, self.block_size)
        rotated = torch.einsum("...rk,rkc->...rc", blocks, rotations).reshape(x.shape)  # x R, block by block
        return self.base_layer(rotated)

    def rotation(self, project: bool = False) -> torch.Tensor:
        """R ([in, in]) with h = W0 (R x) + b: the transpose of PEFT's block-diagonal oft_mat (for a lens, COFT's
        projection is applied to a copy unless `project`)."""
        return torch.block_diag(*self.block_rotations(project)).T

    def merged_weight(self) -> torch.Tensor:
        return self.weight_out_in() @ self.rotation(project=True)  # PEFT: (oft_mat @ W0^T)^T


@dataclass
class OftConfig(MethodConfig):
    r: int = option(0, "number of blocks per Linear (0: size the blocks by oft_block_size instead; give exactly one "
                       "of r and oft_block_size)", low=0, high=4096)
    oft_block_size: int = option(32, "size b of each orthogonal block (0: use r blocks instead); a size that does "
                                     "not divide a Linear's input width is adjusted as PEFT adjusts it", low=0,
                                 high=4096)
    targets: str | None = option(None, "comma list of Linear sites, e.g. q,v (Hugging Face names and site ids "
                                       "work too; default: the base's LoRA targets)")
    layers: str | None = option(None, "comma list of layer indices or ranges such as 0-3 (default: every layer)")
    coft: bool = option(False, "constrained OFT: keep each block's skew matrix within radius eps")
    eps: float = option(6e-5, "COFT's radius (the freedom of rotation); used only with coft", low=0.0, high=1e3)
    block_share: bool = option(False, "one rotation shared by all blocks of a Linear")
    use_cayley_neumann: bool = option(True, "Cayley-Neumann series instead of the exact Cayley transform (faster, "
                                            "approximately orthogonal)")
    num_cayley_neumann_terms: int = option(5, "terms of the Cayley-Neumann series", low=1, high=64)
    module_dropout: float = option(0.0, "PEFT's multiplicative block dropout: only 0 (PEFT 0.21 builds it but never "
                                        "applies it to a Linear, so any other value trains differently from PEFT)",
                                   low=0.0, high=0.99)


class OftMethod(TargetedMethod):
    name = "oft"
    family_group = REPARAMETERISED
    title = "OFT"
    config_cls = OftConfig
    site_kinds = (LINEAR,)
    claims_kinds = ()  # a click on a Linear means LoRA unless OFT is already chosen
    targets_default_from = "lora"  # PEFT's OFT defaults for BERT are query and value too
    refused_layers = {"Conv1D": LINEAR_ONLY.format("OFT")}
    example_space = {**Method.example_space, ("r", "oft_block_size"): ((0, 4), (0, 8), (0, 32), (8, 0), (48, 0)),
                     "coft": (False, True), "eps": (6e-5, 0.5), "block_share": (False, True),
                     "use_cayley_neumann": (True, False), "num_cayley_neumann_terms": (3, 5)}
    peft_space = {("r", "oft_block_size"): ((0, 32), (0, 64), (48, 0)), "coft": (False, True), "eps": (6e-5, 0.5),
                  "block_share": (False, True), "use_cayley_neumann": (True, False),
                  "num_cayley_neumann_terms": (2, 5)}
    peft_type = "OFT"
    peft_config_fields = {"oft_block_size": ((int,), "a whole number"), "coft": ((bool,), "true or false"),
                          "eps": ((int, float), "a number"), "block_share": ((bool,), "true or false"),
                          "use_cayley_neumann": ((bool,), "true or false"),
                          "num_cayley_neumann_terms": ((int,), "a whole number"),
                          "module_dropout": ((int, float), "a number"), "init_weights": ((bool,), "true or false")}
    peft_config_ranges = {"r": (0, 4096), "oft_block_size": (0, 4096), "num_cayley_neumann_terms": (1, 64),
                          "eps": (0, 1e3), "module_dropout": (0, 1)}
    glyph = "R"
    colour = "#1f618d"
    card = MethodCard(
        where="before a frozen Linear: a block-diagonal orthogonal rotation of its input",
        intuition="turn the input directions a layer reads, never stretch them: the angles between W0's neurons "
                  "(the hyperspherical energy) stay as pretraining left them",
        advantages="keeps the pretrained geometry, stable at high learning rates; mergeable into W0 (W = W0 R)",
        limitations="b(b-1)/2 parameters per block: large blocks cost much; one rotation per step per block",
        formula="h = W0 (R x) + b,  R = diag(R_1, ..., R_r) orthogonal,  R_i = (I - S_i)(I + S_i)^-1, S_i skew",
    )

    # ---- where and how many ---------------------------------------------------------------------------
    def validate(self, config: OftConfig, base: FrozenBase) -> None:
        super().validate(config, base)
        self.layouts(config, base)

    def layouts(self, config: OftConfig, base: FrozenBase) -> list[tuple[Site, int, int]]:
        """(site, blocks, block size) per adapted Linear, as PEFT sizes them."""
        if config.module_dropout:
            raise ConfigError(f"module_dropout {config.module_dropout:g} is refused: PEFT's OFT builds its block "
                              "dropout but never applies it to a Linear, so no value other than 0 matches PEFT")
        if (config.r == 0) == (config.oft_block_size == 0):
            raise ConfigError(f"give exactly one of r ({config.r}) and oft_block_size ({config.oft_block_size}) "
                              "as non-zero: r x oft_block_size must equal each Linear's input width")
        layouts = []
        for site in self.selected_sites(config, base):
            blocks, size = block_layout(site.in_features, config.r, config.oft_block_size)
            if size < 2:
                raise ConfigError(f"{site.id}: {blocks} blocks of size {size} (input width {site.in_features}) "
                                  "leave nothing to rotate; use fewer blocks (r) or a larger oft_block_size")
            layouts.append((site, blocks, size))
        return layouts

    def attach(self, model: StudioModel, config: OftConfig) -> None:
        for site, blocks, size in self.layouts(config, model.base):
            original = model.base.get_submodule(site.module_path)
            model.swap(site.module_path, OftLinear(original, blocks, size, config))

    def parameter_count(self, config: OftConfig, base: FrozenBase) -> int:
        return sum((1 if config.block_share else blocks) * (size * (size - 1) // 2)
                   for _, blocks, size in self.layouts(config, base))

    def formula_text(self, config: OftConfig, base: FrozenBase) -> str:
        layouts = self.layouts(config, base)
        shapes = sorted({(blocks, size) for _, blocks, size in layouts})
        per = " + ".join(f"{'1' if config.block_share else blocks} x {size}x{size - 1}/2" for blocks, size in shapes)
        return f"{len(layouts)} Linear(s), each {per} = {self.parameter_count(config, base):,}"

    def live_formula(self, config: OftConfig) -> str:
        blocks = f"r = {config.r} blocks" if config.r else f"blocks of b = {config.oft_block_size}"
        how = f"Neumann series, {config.num_cayley_neumann_terms} terms" if config.use_cayley_neumann else "exact"
        extra = ", one R_i shared" if config.block_share else ""
        extra += f", COFT ||S_i|| <= {config.eps:g}/sqrt(blocks)" if config.coft else ""
        return f"{self.card.formula}  ({blocks}; Cayley {how}{extra})"

    def code(self, config: OftConfig) -> str:
        return code_line(OftLinear.adapted, "torch.einsum")

    def shape_notes(self, config: OftConfig, base: FrozenBase, seq_len: int) -> list[str]:
        notes = []
        for site, blocks, size in self.layouts(config, base):
            asked = config.oft_block_size if config.r == 0 else config.r
            got = size if config.r == 0 else blocks
            adjusted = f" ({'oft_block_size' if config.r == 0 else 'r'} {asked} does not divide {site.in_features}: " \
                       f"adjusted to {got} as PEFT does)" if asked != got else ""
            stored = "1 shared block" if config.block_share else f"{blocks} blocks"
            notes.append(f"{site.id}: R is {site.in_features}x{site.in_features} = {blocks} blocks of {size}x{size}; "
                         f"oft_R stores {stored} x {size * (size - 1) // 2}{adjusted}")
        return notes

    # ---- Hugging Face PEFT exchange --------------------------------------------------------------------
    def peft_export(self, base: FrozenBase, config: OftConfig) -> tuple[dict, dict[str, torch.Tensor]]:
        tensors: dict[str, torch.Tensor] = {}
        targets = []
        for path, module in modules_of(base, OftLinear):
            name = hf_name(path, base)
            targets.append(name)
            tensors[f"{KEY_PREFIX}{name}.oft_R.weight"] = module.oft_R.weight
        settings = {"r": config.r, "oft_block_size": config.oft_block_size, "module_dropout": 0.0,
                    "target_modules": targets, "fan_in_fan_out": False, "bias": "none", "exclude_modules": None,
                    "init_weights": True, "layers_to_transform": None, "layers_pattern": None, "coft": config.coft,
                    "eps": config.eps, "block_share": config.block_share,
                    "use_cayley_neumann": config.use_cayley_neumann,
                    "num_cayley_neumann_terms": config.num_cayley_neumann_terms,
                    "peft_version": PEFT_VERSION}  # the Cayley-Neumann series as PEFT >= 0.18 computes it
        return settings, tensors

    def peft_translate(self, peft_config: dict[str, Any], tensors: dict, where: str) -> tuple[dict, dict]:
        if "oft_block_size" not in peft_config:
            raise AdapterFileError(f"{where}: no oft_block_size: an OFT adapter from PEFT < 0.14, whose format "
                                   "PEFT itself no longer loads")
        if peft_config.get("bias", "none") != "none":
            raise AdapterFileError(f"{where}: bias {peft_config.get('bias')!r} trains base biases too; only 'none'")
        if peft_config.get("fan_in_fan_out"):
            raise AdapterFileError(f"{where}: fan_in_fan_out is for Conv1D layers, which PEFT's OFT does not take")
        options = {"r": peft_config.get("r", 0), "oft_block_size": peft_config["oft_block_size"],
                   "coft": bool(peft_config.get("coft", False)), "eps": float(peft_config.get("eps", 6e-5)),
                   "block_share": bool(peft_config.get("block_share", False)),
                   "use_cayley_neumann": bool(peft_config.get("use_cayley_neumann", True)),
                   "num_cayley_neumann_terms": peft_config.get("num_cayley_neumann_terms", 5)}
        if (options["r"] == 0) == (options["oft_block_size"] == 0):
            raise AdapterFileError(f"{where}: exactly one of r and oft_block_size must be non-zero")
        studio: dict[str, torch.Tensor] = {}
        for module, parts in split_module_keys(tensors, ("oft_R.weight",), where, "an OFT").items():
            tensor = parts["oft_R.weight"]
            expect_shape(tensor, 2, f"{where}: {module}.oft_R.weight", AdapterFileError, "(blocks, b(b-1)/2)")
            studio[f"{module}.oft_R.weight"] = tensor
        return options, studio

    def peft_import_notes(self, peft_config: dict[str, Any], where: str) -> list[str]:
        notes = []
        if peft_config.get("module_dropout"):
            notes.append(f"{where}: module_dropout {peft_config['module_dropout']} is left out: PEFT builds OFT's "
                         "block dropout but never applies it to a Linear, so it changed nothing in training either")
        version = str(peft_config.get("peft_version") or "0").partition("@")[0]
        if peft_config.get("use_cayley_neumann", True) and _older_than(version, (0, 18)):
            notes.append(f"{where}: made with PEFT {version if version != '0' else '< 0.18'}, whose Cayley-Neumann "
                         "series differed; the studio (like PEFT >= 0.18) computes the current one")
        return notes


def _older_than(version: str, reference: tuple[int, ...]) -> bool:
    parts = []
    for piece in version.split(".")[:len(reference)]:
        digits = "".join(c for c in piece if c.isdigit())
        parts.append(int(digits) if digits else 0)
    return tuple(parts) < reference
