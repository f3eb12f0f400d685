"""FourierFT: learn a few spectral coefficients of the weight change; the update is their inverse 2-D Fourier
transform (Gao et al., 2024).

Follows PEFT's FourierFT (peft/tuners/fourierft/layer.py): per Linear, n_frequency positions of the out x in
spectrum are drawn once (randperm from a generator seeded with random_loc_seed, the same positions for every Linear
of one shape), and

    h = W0 x + b + scaling * Re(ifft2(S)) x,   S zero except the n_frequency trained coefficients

The coefficients start N(0, 1) as PEFT's default (init_weights=False; the update starts non-zero), or at zeros
with init_weights. Only the coefficients are saved; the positions come back from the seed.
"""

from __future__ import annotations

from collections.abc import Iterable
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
from .peft_fields import flag, number, refuse_set, whole
from .peft_format import KEY_PREFIX, hf_name, modules_of, split_module_keys, unknown


def spectrum_positions(out_features: int, in_features: int, n_frequency: int, seed: int) -> torch.Tensor:
    """(2, n) rows and columns of the trained coefficients: PEFT's randperm from the seed, on the CPU."""
    flat = torch.randperm(out_features * in_features, generator=torch.Generator().manual_seed(seed),
                          device="cpu")[:n_frequency]
    return torch.stack([flat // in_features, flat % in_features], dim=0)


class FourierLinear(WeightUpdate):
    """A frozen Linear plus scaling * Re(ifft2(S)), S holding the trained coefficients at fixed positions."""

    def __init__(self, base_layer: nn.Module, n_frequency: int, scaling: float, seed: int,
                 zero_start: bool) -> None:
        super().__init__(base_layer)
        self.out_features, self.in_features = base_layer.out_features, base_layer.in_features
        self.scaling, self.seed = scaling, seed
        # the positions are a function of the seed, not a tensor of the model: kept as a plain attribute
        self.indices = spectrum_positions(self.out_features, self.in_features, n_frequency, seed) \
            if torch.empty(0).device.type != "meta" else torch.zeros(2, n_frequency, dtype=torch.long)
        self.fourierft_spectrum = nn.Parameter(torch.randn(n_frequency))
        if zero_start:
            nn.init.zeros_(self.fourierft_spectrum)

    def delta_weight(self) -> torch.Tensor:
        spectrum = self.fourierft_spectrum
        indices = self.indices.to(spectrum.device)
        dense = torch.zeros(self.out_features, self.in_features, device=spectrum.device)
        dense[indices[0, :], indices[1, :]] = spectrum.float()
        return (torch.fft.ifft2(dense).real * self.scaling).to(spectrum.dtype)  # back from the spectrum

    def update(self, x: torch.Tensor, result: torch.Tensor) -> torch.Tensor:
        delta = self.delta_weight()
        return result + F.linear(x.to(delta.dtype), delta)


@dataclass
class FourierFTConfig(MethodConfig):
    n_frequency: int = option(1000, "trained spectral coefficients per Linear (at most in x out)", low=1,
                              high=2**31 - 1)
    scaling: float = option(150.0, "the update is scaling times the inverse FFT of the coefficients", low=-1e6,
                            high=1e6)
    random_loc_seed: int = option(777, "seed of the coefficients' positions in the spectrum", low=0, high=2**31 - 1)
    init_weights: str = option("randn", "how the coefficients start: randn (N(0, 1), PEFT's default false) or zeros "
                                        "(at W0; PEFT's true)", choices=("randn", "zeros"))
    targets: str | None = option(None, "comma list of Linear sites, e.g. q,v (Hugging Face names and site ids "
                                       "work too; default: the base's LoRA targets)")
    layers: str | None = option(None, "comma list of layer indices or ranges such as 0-3 (default: every layer)")


class FourierFTMethod(TargetedMethod):
    name = "fourierft"
    family_group = REPARAMETERISED
    title = "FourierFT"
    config_cls = FourierFTConfig
    site_kinds = (LINEAR,)
    claims_kinds = ()  # a click on a Linear means LoRA unless FourierFT is already chosen
    targets_default_from = "lora"
    example_space = {**Method.example_space, "n_frequency": (8, 64, 200), "scaling": (10.0, 150.0),
                     "random_loc_seed": (0, 777), "init_weights": ("randn", "zeros")}
    peft_space = {"n_frequency": (100, 1000), "scaling": (10.0, 150.0), "random_loc_seed": (777, 5),
                  "init_weights": (False, True)}
    peft_type = "FOURIERFT"
    exchange_tolerance = 1e-5  # the bar for outputs equal to PEFT's
    perturbation = 0.01  # a coefficient moves the whole matrix, times scaling (150): see Method.perturbation
    peft_config_fields = {"n_frequency": ((int,), "a whole number"), "scaling": ((int, float), "a number"),
                          "random_loc_seed": ((int,), "a whole number"), "init_weights": ((bool,), "true or false"),
                          "n_frequency_pattern": ((dict, type(None)), "an object")}
    glyph = "ℱ"
    colour = "#c0392b"
    card = MethodCard(
        where="beside a frozen Linear: a weight change given by a few coefficients of its 2-D Fourier spectrum",
        intuition="a smooth, spread-out change of a whole matrix needs few frequencies: learn n of them and let the "
                  "inverse FFT spread them over every weight",
        advantages="a fixed, tiny number of parameters per Linear, independent of its rank; mergeable into W0",
        limitations="an inverse FFT of the whole out x in matrix each step; the positions are random, not learned",
        formula="h = W0 x + scaling · Re(IFFT2(S)) x,  S: n trained coefficients at seeded positions",
    )

    def validate(self, config: FourierFTConfig, base: FrozenBase) -> None:
        super().validate(config, base)
        check_frequencies_fit(config.n_frequency, self.selected_sites(config, base))

    def attach(self, model: StudioModel, config: FourierFTConfig) -> None:
        for site in self.selected_sites(config, model.base):
            original = model.base.get_submodule(site.module_path)
            model.swap(site.module_path, FourierLinear(original, config.n_frequency, config.scaling,
                                                       config.random_loc_seed, config.init_weights == "zeros"))

    def parameter_count(self, config: FourierFTConfig, base: FrozenBase) -> int:
        return config.n_frequency * len(self.selected_sites(config, base))

    def formula_text(self, config: FourierFTConfig, base: FrozenBase) -> str:
        sites = self.selected_sites(config, base)
        return f"{len(sites)} Linear(s) x n_frequency {config.n_frequency} = {self.parameter_count(config, base):,}"

    def live_formula(self, config: FourierFTConfig) -> str:
        return self.card.formula.replace("scaling", f"{config.scaling:g}").replace("n trained",
                                                                                   f"{config.n_frequency} trained")

    def code(self, config: FourierFTConfig) -> str:
        return f"{code_line(FourierLinear.delta_weight, 'ifft2')}  # then: " \
               f"{code_line(FourierLinear.update, 'F.linear')}"

    def shape_notes(self, config: FourierFTConfig, base: FrozenBase, seq_len: int) -> list[str]:
        return [f"{s.id}: {config.n_frequency} of {s.out_features}x{s.in_features} spectral coefficients "
                f"({config.n_frequency / (s.out_features * s.in_features):.1%})"
                for s in self.selected_sites(config, base)]

    # ---- Hugging Face PEFT exchange --------------------------------------------------------------------
    def peft_export(self, base: FrozenBase, config: FourierFTConfig) -> tuple[dict, dict[str, torch.Tensor]]:
        tensors: dict[str, torch.Tensor] = {}
        targets = []
        layers = modules_of(base, FourierLinear)
        for path, layer in layers:
            name = hf_name(path, base)
            targets.append(name)
            tensors[f"{KEY_PREFIX}{name}.fourierft_spectrum"] = layer.fourierft_spectrum
        settings = {"n_frequency": config.n_frequency, "scaling": config.scaling,
                    "random_loc_seed": config.random_loc_seed, "init_weights": config.init_weights == "zeros",
                    "target_modules": targets, "exclude_modules": None,
                    "fan_in_fan_out": any(layer.fan_in_fan_out for _, layer in layers), "bias": "none",
                    "n_frequency_pattern": {}, "layers_to_transform": None, "layers_pattern": None}
        return settings, tensors

    def peft_translate(self, peft_config: dict[str, Any], tensors: dict, where: str) -> tuple[dict, dict]:
        refuse_set(peft_config, where, {"n_frequency_pattern": "the studio uses one n_frequency for every module"})
        if peft_config.get("bias", "none") != "none":
            raise AdapterFileError(f"{where}: bias {peft_config.get('bias')!r} trains base biases too; only 'none'")
        # PEFT sets fan_in_fan_out from the layer type itself (True on a Conv1D, False on a Linear): a
        # well-typed flag changes nothing the base does not already decide
        flag(peft_config, "fan_in_fan_out", where, False)
        options = {"n_frequency": whole(peft_config, "n_frequency", where, 1000, high=2**31 - 1),
                   "scaling": number(peft_config, "scaling", where, 150.0, -1e6, 1e6),
                   "random_loc_seed": whole(peft_config, "random_loc_seed", where, 777, low=0, high=2**31 - 1),
                   "init_weights": "zeros" if flag(peft_config, "init_weights", where, False) else "randn"}
        studio: dict[str, torch.Tensor] = {}
        for module, parts in split_module_keys(tensors, ("fourierft_spectrum",), where, "a FourierFT").items():
            spectrum = parts["fourierft_spectrum"]
            expect_shape(spectrum, 1, f"{where}: {module}.fourierft_spectrum", AdapterFileError, "a vector")
            if spectrum.shape[0] != options["n_frequency"]:
                raise unknown(where, f"{module}.fourierft_spectrum", f"has {spectrum.shape[0]} coefficients, "
                                                                     f"n_frequency is {options['n_frequency']}")
            studio[f"{module}.fourierft_spectrum"] = spectrum
        return options, studio

    def peft_check_model(self, base: FrozenBase, options: dict[str, Any], where: str) -> None:
        for path, layer in modules_of(base, FourierLinear):
            if (layer.scaling, layer.seed) != (options["scaling"], options["random_loc_seed"]):
                raise AdapterFileError(f"{where}: the adapter uses scaling {options['scaling']:g} and positions from "
                                       f"random_loc_seed {options['random_loc_seed']}; the model's {path} uses "
                                       f"{layer.scaling:g} and {layer.seed}")


def check_frequencies_fit(n_frequency: int, sites: Iterable[Site]) -> None:
    """n trained coefficients need n places in every adapted out x in matrix (FourierFT's spectrum, WaveFT's
    wavelet coefficients)."""
    for site in sites:
        if n_frequency > site.in_features * site.out_features:
            raise ConfigError(f"n_frequency ({n_frequency}) must be at most in x out of every adapted Linear; "
                              f"{site.id} has {site.in_features} x {site.out_features} = "
                              f"{site.in_features * site.out_features}")
