"""C3A: the weight change is a block-circulant matrix, applied as circular convolutions through the FFT (Chen et
al., 2025).

Follows PEFT's C3A (peft/tuners/c3a): per Linear a kernel (out / b, in / b, b) of block_size b; block (i, j) of
the update is the b x b circulant matrix of kernel[i, j], and

    h = W0 x + b + (1 / in) C x,   C x computed blockwise as Re(FFT(sum_j IFFT(x_j) * FFT(kernel[i, j])))

The kernel starts Xavier-uniform as PEFT's default (the update starts non-zero); init_weights `zeros` (PEFT's
true) starts at W0. block_size must divide both widths; PEFT applies C3A to nn.Linear only.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.fft import fft, ifft

from ..bases.frozen import FrozenBase
from ..bases.sites import LINEAR, Site
from ..errors import AdapterFileError, ConfigError
from ..model.studio_model import StudioModel
from .config import MethodConfig, option
from .mergeable import WeightUpdate
from .method import REPARAMETERISED, Method, MethodCard, TargetedMethod, code_line
from .peft_fields import refuse_set, whole
from .peft_format import KEY_PREFIX, hf_name, modules_of, split_module_keys, unknown

INITS = ("xavier_uniform", "kaiming_uniform", "gaussian", "zeros")


def circular_convolution(x: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """x (..., in) through the block-circulant matrix of kernel (m, n, b): PEFT's BlockCircularConvolution."""
    _, n, b = kernel.shape
    blocks = x.reshape(*x.shape[:-1], n, b)
    mixed = torch.einsum("...nb,mnb->...mb", ifft(blocks), fft(kernel))  # each output block sums its input blocks
    return fft(mixed).real.reshape(*x.shape[:-1], -1)


def circulant(kernel: torch.Tensor) -> torch.Tensor:
    """The (out, in) matrix of the block-circulant map (PEFT's get_circulant_fast)."""
    _, n, b = kernel.shape
    eye = torch.eye(n * b, dtype=kernel.dtype, device=kernel.device).reshape(n * b, n, b)
    mixed = torch.einsum("...nb,mnb->...mb", ifft(eye), fft(kernel))
    return fft(mixed).real.flatten(start_dim=1).T


class C3ALinear(WeightUpdate):
    """A frozen Linear plus the block-circulant update, divided by in_features."""

    def __init__(self, base_layer: nn.Module, block_size: int, init: str) -> None:
        super().__init__(base_layer)
        self.in_features, self.out_features = base_layer.in_features, base_layer.out_features
        self.block_size = block_size
        self.c3a_kernel = nn.Parameter(torch.zeros(self.out_features // block_size, self.in_features // block_size,
                                                   block_size))
        with torch.no_grad():
            if init == "gaussian":
                nn.init.normal_(self.c3a_kernel)
            elif init == "xavier_uniform":
                bound = math.sqrt(3.0) * math.sqrt(2.0 / float(self.in_features + self.out_features))
                nn.init.uniform_(self.c3a_kernel, -bound, bound)
            elif init == "kaiming_uniform":
                bound = math.sqrt(1.0 / float(self.in_features))
                nn.init.uniform_(self.c3a_kernel, -bound, bound)

    def delta_weight(self) -> torch.Tensor:
        weight = self.weight_out_in()
        return circulant(self.c3a_kernel.to(torch.float32)).to(weight.dtype) / weight.size(-1)

    def update(self, x: torch.Tensor, result: torch.Tensor) -> torch.Tensor:
        x = x.to(torch.float32)
        change = circular_convolution(x, self.c3a_kernel.to(torch.float32)) / x.size(-1)  # C x / in
        return result + change.to(result.dtype)


@dataclass
class C3AConfig(MethodConfig):
    block_size: int = option(0, "side of each circulant block, dividing every adapted width (0: PEFT's 256 where it "
                                 "divides them, else the largest power of two that does)", low=0, high=2**16)
    init_weights: str = option("xavier_uniform", "how the kernel starts: xavier_uniform (PEFT's default), "
                                                 "kaiming_uniform, gaussian, or zeros (at W0; PEFT's true)",
                               choices=INITS)
    targets: str | None = option(None, "comma list of Linear sites, e.g. q,v (Hugging Face names and site ids "
                                       "work too; default: the base's LoRA targets)")
    layers: str | None = option(None, "comma list of layer indices or ranges such as 0-3 (default: every layer)")


class C3AMethod(TargetedMethod):
    name = "c3a"
    family_group = REPARAMETERISED
    refused_layers = {"Conv1D": "PEFT's C3A wraps nn.Linear only, not transformers' Conv1D (GPT-2's [in, out] "
                                "weights)"}
    title = "C3A"
    config_cls = C3AConfig
    site_kinds = (LINEAR,)
    claims_kinds = ()  # a click on a Linear means LoRA unless C3A is already chosen
    targets_default_from = "lora"
    example_space = {**Method.example_space, "block_size": (0, 4, 8), "init_weights": INITS}
    peft_space = {"block_size": (64, 128), "init_weights": ("xavier_uniform", "kaiming_uniform", "gaussian", True)}
    peft_type = "C3A"
    exchange_tolerance = 1e-5  # the bar for outputs equal to PEFT's
    peft_config_fields = {"block_size": ((int,), "a whole number"),
                          "init_weights": ((bool, str, type(None)), "true, false or an initialisation's name"),
                          "block_size_pattern": ((dict, type(None)), "an object")}
    glyph = "C3"
    colour = "#a04000"
    card = MethodCard(
        where="beside a frozen Linear: a block-circulant weight change, applied as circular convolutions by FFT",
        intuition="a circulant block is a whole b x b matrix defined by one length-b vector; many blocks give a "
                  "high-rank update for out x in / b numbers",
        advantages="high rank for few parameters; runs in O(n log n) per block through the FFT; mergeable into W0",
        limitations="widths must be multiples of block_size; the FFTs cost more than LoRA's two small matmuls on "
                    "a CPU; the update starts non-zero by default",
        formula="h = W0 x + (1 / in) C x,  C: block-circulant from the kernels (FFT · IFFT)",
    )

    def block_size(self, config: C3AConfig, sites: list[Site]) -> int:
        if config.block_size:
            return config.block_size
        widths = [w for s in sites for w in (s.in_features, s.out_features)]
        common = math.gcd(*widths) if widths else 256
        return 256 if common % 256 == 0 else common & -common

    def validate(self, config: C3AConfig, base: FrozenBase) -> None:
        super().validate(config, base)
        sites = self.selected_sites(config, base)
        size = self.block_size(config, sites)
        for site in sites:
            for what, width in (("in_features", site.in_features), ("out_features", site.out_features)):
                if width % size:
                    raise ConfigError(f"block_size {size} must divide every adapted width, but {site.id} has {what} "
                                      f"{width} (PEFT refuses it too)")

    def effective_options(self, config: C3AConfig, base: FrozenBase) -> dict[str, Any]:
        values = super().effective_options(config, base)
        values["block_size"] = self.block_size(config, self.selected_sites(config, base))
        return values

    def attach(self, model: StudioModel, config: C3AConfig) -> None:
        sites = self.selected_sites(config, model.base)
        size = self.block_size(config, sites)
        for site in sites:
            original = model.base.get_submodule(site.module_path)
            model.swap(site.module_path, C3ALinear(original, size, config.init_weights))

    def parameter_count(self, config: C3AConfig, base: FrozenBase) -> int:
        sites = self.selected_sites(config, base)
        return sum(s.in_features * s.out_features for s in sites) // self.block_size(config, sites)

    def formula_text(self, config: C3AConfig, base: FrozenBase) -> str:
        sites = self.selected_sites(config, base)
        size = self.block_size(config, sites)
        return f"sum over {len(sites)} Linear(s) of out x in / {size} = {self.parameter_count(config, base):,}"

    def code(self, config: C3AConfig) -> str:
        return f"{code_line(circular_convolution, 'torch.einsum')}  # then: {code_line(C3ALinear.update, 'C x / in')}"

    def shape_notes(self, config: C3AConfig, base: FrozenBase, seq_len: int) -> list[str]:
        sites = self.selected_sites(config, base)
        b = self.block_size(config, sites)
        return [f"{s.id}: kernel {s.out_features // b}x{s.in_features // b}x{b}: {s.out_features // b}x"
                f"{s.in_features // b} circulant blocks of {b}x{b}" for s in sites]

    # ---- Hugging Face PEFT exchange --------------------------------------------------------------------
    def peft_export(self, base: FrozenBase, config: C3AConfig) -> tuple[dict, dict[str, torch.Tensor]]:
        tensors: dict[str, torch.Tensor] = {}
        targets = []
        layers = modules_of(base, C3ALinear)
        for path, layer in layers:
            name = hf_name(path, base)
            targets.append(name)
            tensors[f"{KEY_PREFIX}{name}.c3a_kernel"] = layer.c3a_kernel
        init = True if config.init_weights == "zeros" else config.init_weights
        settings = {"block_size": layers[0][1].block_size, "init_weights": init, "target_modules": targets,
                    "bias": "none", "block_size_pattern": {}, "layers_to_transform": None, "layers_pattern": None}
        return settings, tensors

    def peft_translate(self, peft_config: dict[str, Any], tensors: dict, where: str) -> tuple[dict, dict]:
        refuse_set(peft_config, where, {"block_size_pattern": "the studio uses one block_size for every module"})
        if peft_config.get("bias", "none") != "none":
            raise AdapterFileError(f"{where}: bias {peft_config.get('bias')!r} trains base biases too; only 'none'")
        init = peft_config.get("init_weights", "xavier_uniform")
        init = {True: "zeros", False: "xavier_uniform", None: "xavier_uniform"}.get(init, init)
        if init not in INITS:
            raise AdapterFileError(f"{where}: init_weights {init!r} is not one of PEFT's ({', '.join(INITS[:3])}, "
                                   "true, false)")
        size = whole(peft_config, "block_size", where, 256, high=2**16)
        studio: dict[str, torch.Tensor] = {}
        for module, parts in split_module_keys(tensors, ("c3a_kernel",), where, "a C3A").items():
            kernel = parts["c3a_kernel"]
            if kernel.dim() != 3 or kernel.shape[2] != size or 0 in kernel.shape:
                raise unknown(where, f"{module}.c3a_kernel", f"has shape {tuple(kernel.shape)}; expected (out / "
                                                             f"{size}, in / {size}, {size})")
            studio[f"{module}.c3a_kernel"] = kernel
        return {"block_size": size, "init_weights": init}, studio
