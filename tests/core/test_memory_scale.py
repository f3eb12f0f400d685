"""The memory ledger: formulas checked against bitsandbytes, the QLoRA paper and a saved adapter file."""

from __future__ import annotations

import pytest
import torch

from peft_studio.core.data import load_builtin
from peft_studio.core.errors import ConfigError
from peft_studio.core.files.adapter_file import save_adapter
from peft_studio.core.memory.at_scale import GIB, MemoryPlan, frozen_weight_bytes, ledger, lm_logits_bytes
from peft_studio.core.model.experiment import Experiment, Setup
from peft_studio.core.model.tensor_bytes import nf4_bytes


@pytest.mark.parametrize("shape", [(64, 64), (96, 100), (4096, 1024)])
def test_nf4_bytes_equal_bitsandbytes_storage(shape):
    from peft_studio.core.model.quant import _bnb_functional

    bnb = _bnb_functional()
    weight = torch.randn(shape)
    packed, state = bnb.quantize_4bit(weight, blocksize=64, quant_type="nf4")
    assert nf4_bytes(weight.numel()) == packed.numel() + 4 * state.absmax.numel()
    packed, state = bnb.quantize_4bit(weight, blocksize=64, quant_type="nf4", compress_statistics=True)
    stored = packed.numel() + state.absmax.numel() * state.absmax.element_size() + \
        state.state2.absmax.numel() * state.state2.absmax.element_size()
    assert nf4_bytes(weight.numel(), double_quant=True) == stored


def test_double_quantization_saves_what_the_qlora_paper_says():
    """QLoRA, section 3: 32/64 = 0.5 bits of constants per weight become 8/64 + 32/(64*256) = 0.127,
    'a reduction of 0.373 bits per parameter' (about 3 GB for a 65B model)."""
    n = 64 * 256 * 4096
    saved_bits = 8 * (nf4_bytes(n) - nf4_bytes(n, double_quant=True)) / n
    assert saved_bits == pytest.approx(0.373, abs=5e-4)
    assert 65e9 * saved_bits / 8 / 1e9 == pytest.approx(3.0, abs=0.1)


def test_llama_3_70b_qlora_ledger_and_fit_line():
    experiment = Experiment(Setup("llama-3-70b", "qlora", {"targets": "all-linear", "r": 16}),
                            load_builtin("intents"))
    census, base = experiment.census(), experiment.base
    bf16 = frozen_weight_bytes(census, base, "bf16")
    nf4 = frozen_weight_bytes(census, base, "nf4")
    dq = frozen_weight_bytes(census, base, "nf4-dq")
    assert bf16 > 2 * 70e9 and dq < nf4 < bf16 / 3  # 4-bit codes + constants, embeddings and LM head in bf16
    plan = MemoryPlan(weights="nf4-dq", optimizer="adamw", batch=1, seq_len=512, checkpointing=True)
    book = ledger(census, base, plan)
    lines = dict(book.lines)
    assert lines["trainable weights (fp32)"] == 4 * census.trainable
    tensors = sum(1 for row in census.rows if row.trainable)
    assert lines["optimizer state (adamw)"] == 8 * census.trainable + 4 * tensors  # moments + AdamW's step
    assert book.fits(80) and not book.fits(24)
    assert "80 GB yes" in book.fit_line() and "24 GB no" in book.fit_line()
    unchecked = ledger(census, base, MemoryPlan(weights="nf4-dq", batch=8, seq_len=4096))
    assert dict(unchecked.lines)[next(k for k in dict(unchecked.lines) if k.startswith("activations"))] > 80 * GIB
    assert lm_logits_bytes(base, plan) == 4 * 512 * 128256
    with pytest.raises(ConfigError, match="optimizer"):
        ledger(census, base, MemoryPlan(optimizer="lion"))


def test_trainable_bytes_equal_the_saved_adapter_file(tmp_path):
    experiment = Experiment(Setup("tiny-decoder", "lora", {"r": 4}), load_builtin("intents"))
    census = experiment.census()
    path = save_adapter(experiment, tmp_path / "a.safetensors")
    lines = dict(ledger(census, experiment.base, MemoryPlan()).lines)
    header = int.from_bytes(path.read_bytes()[:8], "little")  # safetensors: 8-byte length, JSON header, data
    assert path.stat().st_size - 8 - header == lines["trainable weights (fp32)"]
