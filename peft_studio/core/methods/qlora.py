"""QLoRA: every frozen Linear of the base stored as 4-bit NF4, LoRA trained on top (Dettmers et al., 2023)."""

from __future__ import annotations

from dataclasses import dataclass

from ..bases.frozen import FrozenBase
from ..bases.sites import LINEAR
from ..model.quant import DequantizedMatmul, NF4Linear
from ..model.studio_model import StudioModel
from .lora import LoraConfig, LoraMethod
from .method import REPARAMETERISED, MethodCard, code_line

# PEFT's hidden states on a 4-bit BertModel (bitsandbytes NF4, as the exported README loads it) against the
# studio's, max abs over MiniLM's real tokens, measured by tests/core/test_qlora_export.py (which holds both): with
# bitsandbytes' fp32 compute path (GPU; CPU in training), and with its CPU inference kernel for AVX512-BF16
# processors, which computes in bf16 (measured 0.015 on MiniLM with LoRA on q and v).
FOUR_BIT_AGREEMENT = 1e-4
FOUR_BIT_BF16_CPU = 0.05


@dataclass
class QLoraConfig(LoraConfig):
    pass


class QLoraMethod(LoraMethod):
    name = "qlora"
    family_group = REPARAMETERISED
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

    residual_inits = ()  # PEFT's PiSSA refuses a 4-bit weight and its OLoRA re-quantizes the residual: not reproduced

    def attach(self, model: StudioModel, config: QLoraConfig) -> None:
        self.train_biases(model, config)
        targets = {e.site.module_path: e for e in self.site_ranks(config, model.base)}
        for site in model.base.site_index().sites:
            if site.kind != LINEAR or not site.available_for(self.name):
                continue
            quantized = NF4Linear(model.base.get_submodule(site.module_path))
            entry = targets.pop(site.module_path, None)
            model.swap(site.module_path, quantized if entry is None else self.make_layer(quantized, entry, config))
        for path, entry in targets.items():  # embedding tables stay in full precision (bitsandbytes quantizes Linears)
            model.swap(path, self.make_layer(model.base.get_submodule(path), entry, config))

    def peft_claims(self, peft_config: dict) -> bool:
        return False  # a PEFT LoRA adapter imports as LoRA; a QLoRA model still takes it (peft_accepts)

    def peft_claims_any(self) -> bool:
        return False

    def peft_accepts(self, method_name: str) -> bool:
        return method_name in ("lora", self.name)

    def peft_notes(self, config: QLoraConfig, base: FrozenBase) -> list[str]:
        return [f"The base must be loaded in 4 bits as above: PEFT's hidden states then equal the studio's within "
                f"{FOUR_BIT_AGREEMENT:g} where bitsandbytes computes in fp32 (a GPU; a CPU while training), and "
                f"within {FOUR_BIT_BF16_CPU:g} under its CPU inference kernel for AVX512-BF16 processors, which "
                "computes in bf16 (measured on MiniLM). On a full-precision base they differ by the quantization "
                "error of every Linear (order 1).", ""]

    def code(self, config: QLoraConfig) -> str:
        return f"{code_line(DequantizedMatmul.forward, 'dequantized_weight')}  # then: {super().code(config)}"

    def shape_notes(self, config: QLoraConfig, base: FrozenBase, seq_len: int) -> list[str]:
        linears = [s for s in base.site_index().sites if s.kind == LINEAR]
        return [f"{len(linears)} frozen Linear weights stored as NF4 (4-bit codes, one fp32 scale per 64 weights)",
                *super().shape_notes(config, base, seq_len)]
