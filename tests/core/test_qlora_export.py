"""QLoRA exchanged with PEFT on a 4-bit base: the exported README loads BertModel in 4 bits through bitsandbytes
(NF4, blocks of 64) and PEFT's hidden states then equal the studio's within what the README states; on a
full-precision base they would not. GPT-2's Conv1D weights are quantized as transformers does (transposed)."""

from __future__ import annotations

import re

import pytest
import torch
from peft_reference import PEFT_WARNINGS, peft, transformers  # offline switches, reference skips

from peft_studio.core.data import load_builtin
from peft_studio.core.interop.hf_peft import export_peft
from peft_studio.core.methods.qlora import FOUR_BIT_AGREEMENT, FOUR_BIT_BF16_CPU
from peft_studio.core.model.experiment import Experiment, Setup

pytestmark = PEFT_WARNINGS
TEXTS = ["the food was great", "terrible service and a long slow wait", "ok", "i loved it"]


@pytest.fixture(scope="module")
def folder():
    from peft_studio.core.bases.pretrained import minilm_folder

    return str(minilm_folder())


def _nudge(experiment):
    generator = torch.Generator().manual_seed(5)
    with torch.no_grad():
        for name, parameter in experiment.model.named_parameters():
            if parameter.requires_grad and not name.startswith("head."):
                parameter.add_(0.1 * torch.randn(parameter.shape, generator=generator))


@pytest.mark.parametrize("options", [{"r": 4, "targets": "q,v"}, {"r": 2, "targets": "all-linear", "bias": "all"}])
def test_a_qlora_export_loads_on_a_4_bit_base_with_the_studios_outputs(tmp_path, folder, options):
    experiment = Experiment(Setup("minilm", "qlora", options, seed=1), load_builtin("sentiment"))
    _nudge(experiment)
    out = export_peft(experiment, tmp_path / "qlora")
    readme = (out / "README.md").read_text()
    assert "BitsAndBytesConfig" in readme and "quantization_config=four_bit" in readme
    assert f"within {FOUR_BIT_AGREEMENT:g}" in readme and f"within {FOUR_BIT_BF16_CPU:g}" in readme
    scope = {"checkpoint": folder, "folder": str(out)}
    exec(re.findall(r"```python\n(.*?)```", readme, re.S)[0], scope)  # noqa: S102 - the README's own lines
    loaded = scope["peft_model"]
    ids, mask = experiment.tokenizer.batch(TEXTS)
    experiment.model.eval()
    import bitsandbytes as bnb

    four_bit = [m for m in loaded.modules() if isinstance(m, bnb.nn.Linear4bit)]
    assert len(four_bit) == 6 * 6 + 1  # every Linear of the encoder and the pooler, as the studio's NF4
    with torch.no_grad():
        default = loaded(input_ids=ids, attention_mask=mask.long()).last_hidden_state  # this machine's kernel
        for module in four_bit:  # bitsandbytes' fp32 path: dequantize, then an fp32 matmul
            module.support_avx512bf16_for_cpu = False
        fp32_path = peft.PeftModel.from_pretrained(transformers.BertModel.from_pretrained(
            folder, quantization_config=scope["four_bit"], device_map="cpu"), str(out)).eval()
        for module in fp32_path.modules():
            if isinstance(module, bnb.nn.Linear4bit):
                module.support_avx512bf16_for_cpu = False
        exact = fp32_path(input_ids=ids, attention_mask=mask.long()).last_hidden_state
        ours, _ = experiment.base.encode(ids, mask)
        full = peft.PeftModel.from_pretrained(transformers.BertModel.from_pretrained(folder), str(out)).eval()
        unquantized = full(input_ids=ids, attention_mask=mask.long()).last_hidden_state
    assert float((exact - ours)[mask].abs().max()) <= FOUR_BIT_AGREEMENT
    assert float((default - ours)[mask].abs().max()) <= FOUR_BIT_BF16_CPU
    assert float((unquantized - ours)[mask].abs().max()) > 2 * FOUR_BIT_BF16_CPU  # why the README loads 4 bits


def test_gpt2_conv1d_weights_are_quantized_as_transformers_and_bitsandbytes_do(tmp_path):
    """A tiny random GPT-2 saved and loaded back in 4 bits by transformers: its c_attn / c_proj / c_fc are
    Linear4bit whose dequantized weights equal the studio's NF4 of the same Conv1D, and so do their outputs."""
    import bitsandbytes as bnb

    from peft_studio.core.bases.decoder import Conv1D as StudioConv1D
    from peft_studio.core.model.quant import NF4Linear

    torch.manual_seed(0)
    config = transformers.GPT2Config(n_embd=64, n_layer=1, n_head=4, n_positions=32, vocab_size=50)
    transformers.GPT2Model(config).save_pretrained(str(tmp_path / "gpt2"))
    full = transformers.GPT2Model.from_pretrained(str(tmp_path / "gpt2")).eval()
    four_bit = transformers.GPT2Model.from_pretrained(str(tmp_path / "gpt2"), device_map="cpu",
                                                      quantization_config=transformers.BitsAndBytesConfig(
                                                          load_in_4bit=True, bnb_4bit_quant_type="nf4",
                                                          bnb_4bit_compute_dtype=torch.float32)).eval()
    x = torch.randn(3, 5, 64)
    for name in ("attn.c_attn", "attn.c_proj", "mlp.c_fc"):
        conv = full.h[0].get_submodule(name)
        ours = StudioConv1D(*conv.weight.shape)
        with torch.no_grad():
            ours.weight.copy_(conv.weight)
            ours.bias.copy_(conv.bias)
        theirs = four_bit.h[0].get_submodule(name)
        assert isinstance(theirs, bnb.nn.Linear4bit)
        theirs.support_avx512bf16_for_cpu = False  # bitsandbytes' fp32 path (see the test above)
        quantized = NF4Linear(ours)
        weight = bnb.functional.dequantize_4bit(theirs.weight.data, theirs.weight.quant_state)
        assert torch.equal(quantized.dequantized_weight(), weight), name
        with torch.no_grad():
            assert torch.allclose(quantized(x), theirs(x), atol=1e-5), name
