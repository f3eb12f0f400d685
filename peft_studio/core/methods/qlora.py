"""QLoRA: every frozen Linear of the base stored as 4-bit NF4, LoRA trained on top (Dettmers et al., 2023)."""

from __future__ import annotations

from dataclasses import dataclass

from ..bases.frozen import FrozenBase
from ..bases.sites import LINEAR
from ..model.quant import NF4Linear
from ..model.studio_model import StudioModel
from .lora import LoraConfig, LoraLinear, LoraMethod
from .method import MethodCard, code_line


@dataclass
class QLoraConfig(LoraConfig):
    pass


class QLoraMethod(LoraMethod):
    name = "qlora"
    title = "QLoRA"
    config_cls = QLoraConfig
    claims_kinds = ()  # a click on a Linear chooses LoRA; QLoRA is chosen from the method list
    quantizes_base = True
    peft_space = None  # a PEFT LoRA adapter imports as LoRA (LoRA's row); a QLoRA model still takes it
    exchange_tolerance = None  # exported as LoRA on a 4-bit W0: PEFT's full-precision base differs by the quantization
    glyph = "BA"
    colour = "#c0392b"
    card = MethodCard(
        where="beside a 4-bit (NF4) frozen Linear: the same low-rank update as LoRA",
        intuition="store the frozen base in 4 bits to save memory; train LoRA in full precision on top",
        advantages="the base takes about 1/7 of its fp32 memory, so larger models fit small hardware",
        limitations="quantization error in the base; dequantizing on every forward costs time; no merge",
        formula="h = dequant(W0_nf4) x + (alpha / r) B A x",
    )

    def attach(self, model: StudioModel, config: QLoraConfig) -> None:
        targets = {s.module_path for s in self.selected_sites(config, model.base)}
        for site in model.base.site_index().sites:
            if site.kind != LINEAR or not site.available_for(self.name):
                continue
            quantized = NF4Linear(model.base.get_submodule(site.module_path))
            if site.module_path in targets:
                quantized = LoraLinear(quantized, config.r, config.alpha, config.dropout)
            model.swap(site.module_path, quantized)

    def peft_claims(self, peft_config: dict) -> bool:
        return False  # a PEFT LoRA adapter imports as LoRA; a QLoRA model still takes it (peft_accepts)

    def peft_accepts(self, method_name: str) -> bool:
        return method_name in ("lora", self.name)

    def code(self, config: QLoraConfig) -> str:
        return f"{code_line(NF4Linear.forward, 'dequantized_weight')}  # then: {super().code(config)}"

    def shape_notes(self, config: QLoraConfig, base: FrozenBase, seq_len: int) -> list[str]:
        linears = [s for s in base.site_index().sites if s.kind == LINEAR]
        return [f"{len(linears)} frozen Linear weights stored as NF4 (4-bit codes, one fp32 scale per 64 weights)",
                *super().shape_notes(config, base, seq_len)]
