"""The two ends of the spectrum, and bias-only tuning: head-only, full, bitfit."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..bases.frozen import FrozenBase
from ..bases.sites import LINEAR
from ..errors import ConfigError
from ..model.studio_model import StudioModel
from .config import MethodConfig
from .method import SELECTIVE, Method, MethodCard, code_line


@dataclass
class BaselineConfig(MethodConfig):
    pass


class HeadOnlyMethod(Method):
    name = "head-only"
    family_group = SELECTIVE
    peft_nearest = ("ia3", "PEFT always adapts the base; IA3 adds the fewest parameters inside it, and "
                                  "transformers trains a head alone without PEFT")
    example_space = {}  # a frozen head would leave nothing to train
    title = "Head only (linear probe)"
    config_cls = BaselineConfig
    glyph = "H"
    colour = "#2f7fd8"
    card = MethodCard(
        where="nowhere in the base: only the classification head trains",
        intuition="a linear probe: how far do the frozen features get on their own?",
        advantages="the cheapest possible adaptation; the baseline every method must beat",
        limitations="the features never change, so what the base did not encode stays out of reach",
        formula="logits = W_head h + b",
    )

    def code(self, config: MethodConfig) -> str:
        return code_line(StudioModel.forward, "self.head(")

    def validate(self, config: MethodConfig, base: FrozenBase) -> None:
        super().validate(config, base)
        if config.freeze_head:
            raise ConfigError("freeze_head: head-only with a frozen head leaves nothing to train")


class _UnfreezeMethod(Method):
    """Makes some base tensors trainable; detach restores their original values."""

    config_cls = BaselineConfig
    trains_base = True

    def code(self, config: MethodConfig) -> str:
        return code_line(StudioModel.unfreeze_base, "requires_grad_(True)")

    def chosen(self, base: FrozenBase) -> list[str]:
        raise NotImplementedError

    def validate(self, config: MethodConfig, base: FrozenBase) -> None:
        super().validate(config, base)
        if not self.chosen(base):  # e.g. bitfit on Llama, which has no bias vectors
            raise ConfigError(f"{self.name} cannot be used on base {base.name!r}: it has no such tensors "
                              f"({self.card.where})")

    def attach(self, model: StudioModel, config: MethodConfig) -> None:
        for name in self.chosen(model.base):
            model.unfreeze_base(name)

    def parameter_count(self, config: MethodConfig, base: FrozenBase) -> int:
        params = dict(base.named_parameters())
        return sum(params[name].numel() for name in self.chosen(base))

    def lens(self, experiment: Any, sentence: str) -> list[Any]:
        """ΔW of each trained Linear weight against its value before training (full fine-tuning: is the update
        really of high rank?)."""
        from ..lenses.spectra import delta_figure

        linears = {f"{s.module_path}.weight": s for s in experiment.base.sites() if s.kind == LINEAR}
        figures = []
        for name, original in experiment.model.unfrozen_originals().items():
            site = linears.get(name)
            if site is not None and original.dim() == 2:
                trained = experiment.base.get_parameter(name)
                weight = trained.T if tuple(trained.shape) != (site.out_features, site.in_features) else trained
                before = original.T if weight is not trained else original
                figures.append(delta_figure(site.id, before, weight.detach()))
        return figures


class FullMethod(_UnfreezeMethod):
    name = "full"
    family_group = SELECTIVE
    peft_nearest = ("lora", "full fine-tuning needs no PEFT (plain transformers trains every weight); "
                             "LoRA on all-linear reaches every Linear with a low-rank update")
    title = "Full fine-tuning"
    glyph = "F"
    colour = "#5b6672"
    card = MethodCard(
        where="everywhere: every tensor of the base trains",
        intuition="the reference point: retrain the whole computer",
        advantages="the most expressive; no method-specific choices",
        limitations="every parameter needs gradients and optimizer state; one full copy per task",
        formula="W <- W - lr * grad for every W",
    )

    def chosen(self, base: FrozenBase) -> list[str]:
        return [name for name, _ in base.named_parameters()]

    def formula_text(self, config: MethodConfig, base: FrozenBase) -> str:
        return f"every base tensor = {self.parameter_count(config, base):,}"


class BitFitMethod(_UnfreezeMethod):
    name = "bitfit"
    family_group = SELECTIVE
    peft_nearest = ("ln-tuning", "PEFT has no bias-only tuning; LayerNorm tuning trains the "
                                  "LayerNorms' gain and bias")
    title = "BitFit (biases only)"
    glyph = "b"
    colour = "#8c6d31"
    card = MethodCard(
        where="the bias vectors of the base's Linears and LayerNorms",
        intuition="keep every weight matrix, nudge only the offsets",
        advantages="tiny, and no new modules: the model's shape is unchanged",
        limitations="biases can shift features but not rotate them",
        formula="y = W0 x + b  (b trains)",
    )

    def code(self, config: MethodConfig) -> str:
        return f"{code_line(BitFitMethod.chosen, 'endswith')}  # each: {super().code(config)}"

    def chosen(self, base: FrozenBase) -> list[str]:
        return [name for name, _ in base.named_parameters() if name.endswith("bias")]

    def formula_text(self, config: MethodConfig, base: FrozenBase) -> str:
        return f"sum of bias lengths = {self.parameter_count(config, base):,}"
