"""WaveFT: learn a few wavelet coefficients of the weight change; the update is their inverse 2-D discrete wavelet
transform (Bilican et al., 2025).

Follows PEFT's WaveFT (peft/tuners/waveft/layer.py): per Linear, n_frequency positions of the out x in coefficient
matrix are drawn once (randperm from a generator seeded with random_loc_seed, the same positions for every Linear of
one shape); the matrix is padded by the wavelet's filter length (centred, made even), split into its four
sub-bands and reconstructed by one level of the inverse DWT, then cropped back to out x in:

    h = W0 x + b + scaling * IDWT(S) x,   S zero except the n_frequency trained coefficients

With use_idwt false the coefficients are the update's entries themselves (a sparse ΔW, like SHiRA's). The
coefficients start at zero (PEFT's init_weights true: the model starts at W0) or N(0, 0.01²). Only the coefficients
are saved; the positions come back from the seed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from ..bases.frozen import FrozenBase
from ..bases.sites import LINEAR
from ..errors import AdapterFileError
from ..files.safe_io import expect_shape
from ..model.studio_model import StudioModel
from .config import MethodConfig, option
from .fourierft import check_frequencies_fit, spectrum_positions
from .mergeable import WeightUpdate
from .method import REPARAMETERISED, Method, MethodCard, TargetedMethod, code_line
from .peft_fields import flag, number, refuse_set, whole
from .peft_format import KEY_PREFIX, hf_name, modules_of, split_module_keys, unknown
from .wavelets import WAVELETS, inverse_dwt2, reconstruction_filters


def padded_size(size: int, wavelet: str) -> int:
    """A side of the coefficient matrix before the inverse DWT: grown by what the filter's boundary trims (PEFT's
    WAVELET_REDUCTIONS, L - 2 for filters of length L), then made even."""
    padded = size + len(reconstruction_filters(wavelet)[0]) - 2
    return padded + padded % 2


class WaveletLinear(WeightUpdate):
    """A frozen Linear plus scaling * IDWT(S), S holding the trained coefficients at fixed positions."""

    def __init__(self, base_layer: nn.Module, n_frequency: int, scaling: float, wavelet: str, use_idwt: bool,
                 seed: int, zero_start: bool) -> None:
        super().__init__(base_layer)
        self.out_features, self.in_features = base_layer.out_features, base_layer.in_features
        self.scaling, self.wavelet, self.use_idwt, self.seed = scaling, wavelet, use_idwt, seed
        # the positions are a function of the seed, not a tensor of the model: kept as a plain attribute
        self.indices = spectrum_positions(self.out_features, self.in_features, n_frequency, seed) \
            if torch.empty(0).device.type != "meta" else torch.zeros(2, n_frequency, dtype=torch.long)
        if zero_start:
            self.waveft_spectrum = nn.Parameter(torch.zeros(n_frequency))
        else:
            self.waveft_spectrum = nn.Parameter(torch.randn(n_frequency) * 0.01)  # PEFT's small random start

    def delta_weight(self) -> torch.Tensor:
        spectrum = self.waveft_spectrum
        indices = self.indices.to(spectrum.device)
        if not self.use_idwt:  # the coefficients are ΔW's entries
            dense = torch.zeros(self.out_features, self.in_features, device=spectrum.device, dtype=spectrum.dtype)
            dense[indices[0, :], indices[1, :]] = spectrum
            return dense * self.scaling
        rows, cols = padded_size(self.out_features, self.wavelet), padded_size(self.in_features, self.wavelet)
        dense = torch.zeros(rows, cols, device=spectrum.device, dtype=spectrum.dtype)
        dense[indices[0, :] + (rows - self.out_features) // 2, indices[1, :] + (cols - self.in_features) // 2] = \
            spectrum  # centred in the padded matrix
        half_rows, half_cols = rows // 2, cols // 2
        bands = (dense[:half_rows, :half_cols], dense[:half_rows, half_cols:], dense[half_rows:, :half_cols],
                 dense[half_rows:, half_cols:])  # approximation, horizontal, vertical, diagonal
        delta = inverse_dwt2(*bands, self.wavelet) * self.scaling  # from wavelet coefficients to weights
        top, left = (delta.shape[0] - self.out_features) // 2, (delta.shape[1] - self.in_features) // 2
        return delta[top:top + self.out_features, left:left + self.in_features]  # the centred out x in crop

    def update(self, x: torch.Tensor, result: torch.Tensor) -> torch.Tensor:
        delta = self.delta_weight()
        return result + F.linear(x.to(delta.dtype), delta)


@dataclass
class WaveFTConfig(MethodConfig):
    n_frequency: int = option(2592, "trained wavelet coefficients per Linear (at most in x out)", low=1,
                              high=2**31 - 1)
    scaling: float = option(25.0, "the update is scaling times the inverse DWT of the coefficients", low=-1e6,
                            high=1e6)
    wavelet_family: str = option("db1", "the wavelet of the inverse DWT (db1 is Haar; longer filters spread each "
                                        "coefficient further and cost more)", choices=WAVELETS)
    use_idwt: bool = option(True, "reconstruct ΔW by the inverse DWT; false: the coefficients are ΔW's entries "
                                  "(sparse, faster)")
    random_loc_seed: int = option(777, "seed of the coefficients' positions", low=0, high=2**31 - 1)
    init_weights: bool = option(True, "coefficients start at zero (the model starts at W0); false: N(0, 0.01²)")
    targets: str | None = option(None, "comma list of Linear sites, e.g. q,v (Hugging Face names and site ids "
                                       "work too; default: the base's LoRA targets)")
    layers: str | None = option(None, "comma list of layer indices or ranges such as 0-3 (default: every layer)")


class WaveFTMethod(TargetedMethod):
    family_group = REPARAMETERISED
    name = "waveft"
    title = "WaveFT"
    config_cls = WaveFTConfig
    site_kinds = (LINEAR,)
    claims_kinds = ()  # a click on a Linear means LoRA unless WaveFT is already chosen
    targets_default_from = "lora"
    example_space = {**Method.example_space, "n_frequency": (8, 64, 200), "scaling": (10.0, 25.0),
                     "wavelet_family": ("db1", "db2", "sym3", "coif1"), "use_idwt": (True, False),
                     "random_loc_seed": (0, 777), "init_weights": (True, False)}
    peft_space = {"n_frequency": (100, 1000), "scaling": (10.0, 25.0), "wavelet_family": ("db1", "sym2", "coif1"),
                  "use_idwt": (True, False), "random_loc_seed": (777, 5)}
    peft_type = "WAVEFT"
    exchange_tolerance = 1e-5  # the bar for outputs equal to PEFT's
    perturbation = 0.01  # a coefficient moves a patch of the matrix, times scaling (25): see Method.perturbation
    peft_config_fields = {"n_frequency": ((int,), "a whole number"), "scaling": ((int, float), "a number"),
                          "wavelet_family": ((str,), "a wavelet name"), "use_idwt": ((bool,), "true or false"),
                          "random_loc_seed": ((int,), "a whole number"), "init_weights": ((bool,), "true or false"),
                          "n_frequency_pattern": ((dict, type(None)), "an object"),
                          "proportional_parameters": ((bool,), "true or false")}
    glyph = "ψ"
    colour = "#5499c7"
    card = MethodCard(
        where="beside a frozen Linear: a weight change given by a few wavelet coefficients",
        intuition="a wavelet coefficient stands for a local patch of the matrix at one scale: learn n of them and "
                  "let the inverse wavelet transform place them",
        advantages="a fixed, tiny number of parameters per Linear, independent of its rank; local (unlike "
                   "FourierFT's global frequencies); mergeable into W0",
        limitations="an inverse DWT of the whole (padded) out x in matrix each step; the positions are random, "
                    "not learned",
        formula="h = W0 x + scaling · IDWT(S) x,  S: n trained coefficients at seeded positions",
    )

    def validate(self, config: WaveFTConfig, base: FrozenBase) -> None:
        super().validate(config, base)
        check_frequencies_fit(config.n_frequency, self.selected_sites(config, base))

    def attach(self, model: StudioModel, config: WaveFTConfig) -> None:
        for site in self.selected_sites(config, model.base):
            original = model.base.get_submodule(site.module_path)
            model.swap(site.module_path, WaveletLinear(original, config.n_frequency, config.scaling,
                                                       config.wavelet_family, config.use_idwt,
                                                       config.random_loc_seed, config.init_weights))

    def parameter_count(self, config: WaveFTConfig, base: FrozenBase) -> int:
        return config.n_frequency * len(self.selected_sites(config, base))

    def formula_text(self, config: WaveFTConfig, base: FrozenBase) -> str:
        sites = self.selected_sites(config, base)
        return f"{len(sites)} Linear(s) x n_frequency {config.n_frequency} = {self.parameter_count(config, base):,}"

    def live_formula(self, config: WaveFTConfig) -> str:
        transform = f"IDWT_{config.wavelet_family}(S)" if config.use_idwt else "S"
        return self.card.formula.replace("scaling", f"{config.scaling:g}").replace("IDWT(S)", transform) \
            .replace("n trained", f"{config.n_frequency} trained")

    def code(self, config: WaveFTConfig) -> str:
        return f"{code_line(WaveletLinear.delta_weight, 'inverse_dwt2')}  # then: " \
               f"{code_line(WaveletLinear.update, 'F.linear')}"

    def shape_notes(self, config: WaveFTConfig, base: FrozenBase, seq_len: int) -> list[str]:
        notes = []
        for s in self.selected_sites(config, base):
            share = f"{config.n_frequency} of {s.out_features}x{s.in_features} coefficients " \
                    f"({config.n_frequency / (s.out_features * s.in_features):.1%})"
            if config.use_idwt:
                rows, cols = (padded_size(n, config.wavelet_family) for n in (s.out_features, s.in_features))
                share += f"; the IDWT runs on {rows}x{cols}"
            notes.append(f"{s.id}: {share}")
        return notes

    # ---- Hugging Face PEFT exchange --------------------------------------------------------------------
    def peft_export(self, base: FrozenBase, config: WaveFTConfig) -> tuple[dict, dict[str, torch.Tensor]]:
        tensors: dict[str, torch.Tensor] = {}
        targets = []
        layers = modules_of(base, WaveletLinear)
        for path, layer in layers:
            name = hf_name(path, base)
            targets.append(name)
            tensors[f"{KEY_PREFIX}{name}.waveft_spectrum"] = layer.waveft_spectrum
        settings = {"n_frequency": config.n_frequency, "scaling": config.scaling,
                    "wavelet_family": config.wavelet_family, "use_idwt": config.use_idwt,
                    "random_loc_seed": config.random_loc_seed, "init_weights": config.init_weights,
                    "target_modules": targets, "exclude_modules": None,
                    "fan_in_fan_out": any(layer.fan_in_fan_out for _, layer in layers), "bias": "none",
                    "n_frequency_pattern": {}, "proportional_parameters": False, "layers_to_transform": None,
                    "layers_pattern": None}
        return settings, tensors

    def peft_translate(self, peft_config: dict[str, Any], tensors: dict, where: str) -> tuple[dict, dict]:
        refuse_set(peft_config, where, {
            "n_frequency_pattern": "the studio uses one n_frequency for every module",
            "proportional_parameters": "the studio uses one n_frequency for every module, not shares by size"})
        if peft_config.get("bias", "none") != "none":
            raise AdapterFileError(f"{where}: bias {peft_config.get('bias')!r} trains base biases too; only 'none'")
        # PEFT sets fan_in_fan_out from the layer type itself (True on a Conv1D, False on a Linear): a
        # well-typed flag changes nothing the base does not already decide
        flag(peft_config, "fan_in_fan_out", where, False)
        wavelet = peft_config.get("wavelet_family", "db1")
        if wavelet not in WAVELETS:
            raise AdapterFileError(f"{where}: wavelet_family {str(wavelet)[:40]!r} is not one PEFT can reconstruct "
                                   f"(choose from {', '.join(WAVELETS)})")
        options = {"n_frequency": whole(peft_config, "n_frequency", where, 2592, high=2**31 - 1),
                   "scaling": number(peft_config, "scaling", where, 25.0, -1e6, 1e6),
                   "wavelet_family": wavelet, "use_idwt": flag(peft_config, "use_idwt", where, True),
                   "random_loc_seed": whole(peft_config, "random_loc_seed", where, 777, low=0, high=2**31 - 1),
                   "init_weights": flag(peft_config, "init_weights", where, True)}
        studio: dict[str, torch.Tensor] = {}
        for module, parts in split_module_keys(tensors, ("waveft_spectrum",), where, "a WaveFT").items():
            spectrum = parts["waveft_spectrum"]
            expect_shape(spectrum, 1, f"{where}: {module}.waveft_spectrum", AdapterFileError, "a vector")
            if spectrum.shape[0] != options["n_frequency"]:
                raise unknown(where, f"{module}.waveft_spectrum", f"has {spectrum.shape[0]} coefficients, "
                                                                  f"n_frequency is {options['n_frequency']}")
            studio[f"{module}.waveft_spectrum"] = spectrum
        return options, studio

    def peft_check_model(self, base: FrozenBase, options: dict[str, Any], where: str) -> None:
        wanted = (options["scaling"], options["random_loc_seed"], options["wavelet_family"], options["use_idwt"])
        for path, layer in modules_of(base, WaveletLinear):
            have = (layer.scaling, layer.seed, layer.wavelet, layer.use_idwt)
            if have != wanted:
                raise AdapterFileError(f"{where}: the adapter uses scaling, random_loc_seed, wavelet_family, "
                                       f"use_idwt = {wanted}; the model's {path} uses {have}")
