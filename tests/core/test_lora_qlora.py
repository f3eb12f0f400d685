"""LoRA merge equivalence; NF4 storage checked against bitsandbytes itself."""

from __future__ import annotations

import contextlib
import io

import pytest
import torch
from core_helpers import attach, build_base, toy_batch

from peft_studio.core.errors import ConfigError
from peft_studio.core.methods.lora import LoraLinear
from peft_studio.core.model.census import take_census
from peft_studio.core.model.quant import BLOCK_SIZE, NF4Linear

with contextlib.redirect_stderr(io.StringIO()):
    import bitsandbytes as bnb
    import bitsandbytes.functional as bnb_functional


def _randomise_lora(model):
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, LoraLinear):
                module.lora_B.normal_(0, 0.5)


@pytest.mark.parametrize("targets", ["q,v", "q,k,v,o,up,down"])
def test_merged_outputs_equal_unmerged(targets):
    base = build_base("tiny", n_layers=2)
    _, _, model = attach(base, "lora", {"r": 4, "alpha": 8, "targets": targets})
    _randomise_lora(model)
    ids, mask = toy_batch(base)
    model.eval()
    unmerged = model(ids, mask)
    layers = [m for m in model.modules() if isinstance(m, LoraLinear)]
    originals = [m.base_layer.weight.detach().clone() for m in layers]
    for layer in layers:
        layer.merge()
    merged = model(ids, mask)
    assert torch.allclose(merged, unmerged, atol=1e-5)
    assert not torch.equal(layers[0].base_layer.weight, originals[0])
    for layer, original in zip(layers, originals, strict=True):
        layer.unmerge()
        assert torch.equal(layer.base_layer.weight, original)  # exact, not W + dW - dW
    assert torch.allclose(model(ids, mask), unmerged, atol=1e-6)


def test_lora_starts_as_the_base_and_uses_alpha_over_r():
    base = build_base("tiny")
    ids, mask = toy_batch(base)
    reference = base(ids, mask)
    _, _, model = attach(base, "lora", {"r": 2, "alpha": 6})
    assert torch.equal(model.base(ids, mask), reference)  # B = 0: the update starts at zero
    layer = next(m for m in model.modules() if isinstance(m, LoraLinear))
    assert layer.scaling == 3.0


def test_nf4_codes_and_dequantization_match_bitsandbytes():
    torch.manual_seed(0)
    linear = torch.nn.Linear(96, 40)
    ours = NF4Linear(linear)
    packed, state = bnb_functional.quantize_4bit(linear.weight.detach().clone(), blocksize=64, quant_type="nf4")
    assert ours.quant_state.quant_type == "nf4" and ours.quant_state.blocksize == BLOCK_SIZE == 64
    assert torch.equal(ours.weight_nf4, packed)
    assert torch.equal(ours.weight_absmax, state.absmax)
    reference = bnb_functional.dequantize_4bit(packed, state)
    assert torch.equal(ours.dequantized_weight(), reference)
    assert ours.error.max_abs == pytest.approx(float((reference - linear.weight.detach()).abs().max()))


def test_nf4_linear_agrees_with_bitsandbytes_linear4bit():
    torch.manual_seed(1)
    linear = torch.nn.Linear(64, 32)
    reference = bnb.nn.Linear4bit(64, 32, bias=True, quant_type="nf4", compute_dtype=torch.float32)
    reference.weight = bnb.nn.Params4bit(linear.weight.detach().clone(), requires_grad=False, quant_type="nf4",
                                         blocksize=64)
    reference.bias = torch.nn.Parameter(linear.bias.detach().clone(), requires_grad=False)
    reference = reference.to("cpu")
    x = torch.randn(7, 64)
    assert torch.allclose(NF4Linear(linear)(x), reference(x), atol=1e-3)


def test_quantized_base_takes_at_most_a_sixth_of_its_fp32_bytes():
    base = build_base("tiny", d_model=64, n_heads=4)
    originals = [m.weight.detach().clone() for m in base.modules() if isinstance(m, torch.nn.Linear)]
    _, _, model = attach(base, "qlora", {"r": 4})
    quantized = [m for m in model.modules() if isinstance(m, NF4Linear)]
    assert len(quantized) == 6 * base.num_layers
    fp32_bytes = sum(4 * m.in_features * m.out_features for m in quantized)
    assert sum(m.stored_bytes for m in quantized) <= fp32_bytes / 6
    census = take_census(model)
    rows = [r for r in census.rows if r.dtype == "nf4"]
    assert len(rows) == len(quantized) and all(not r.trainable for r in rows)
    assert sum(r.bytes for r in rows) == sum(m.stored_bytes for m in quantized) == census.quantization.stored_bytes
    assert census.quantization.fp32_bytes == fp32_bytes and census.quantization.ratio <= 1 / 6
    worst = max(float((m.dequantized_weight() - w).abs().max()) for m, w in zip(quantized, originals, strict=True))
    assert census.quantization.max_abs_error == pytest.approx(worst)


def test_qlora_outputs_stay_close_to_the_fp32_base():
    base = build_base("tiny")
    ids, mask = toy_batch(base)
    reference = base(ids, mask)
    _, _, model = attach(base, "qlora", {"r": 4})
    quantized = model.base(ids, mask)
    assert not torch.equal(quantized, reference)  # 4-bit storage is lossy ...
    assert torch.allclose(quantized, reference, atol=0.5)  # ... but close


def test_a_quantized_linear_cannot_be_merged():
    base = build_base("tiny")
    _, _, model = attach(base, "qlora", {"r": 4})
    layer = next(m for m in model.modules() if isinstance(m, LoraLinear))
    with pytest.raises(ConfigError, match="4-bit"):
        layer.merge()
