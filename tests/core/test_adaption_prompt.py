"""LLaMA-Adapter's adaption prompt against PEFT's AdaptedAttention on small real decoders made with transformers:
drawn settings give PEFT's logits through an export (Llama with grouped-query attention, Mistral, GPT-2's fused
c_attn), adapters PEFT makes import with PEFT's logits, the zero gate leaves the model unchanged, and the decoders
PEFT does not adapt (and encoders) are refused with the reason."""

from __future__ import annotations

import functools
import warnings

import pytest
import torch
from decoder_checkpoints import write_checkpoint
from hypothesis import given, settings
from hypothesis import strategies as st

from peft_studio.core.data import load_builtin
from peft_studio.core.errors import ConfigError
from peft_studio.core.interop.hf_peft import export_peft, import_peft
from peft_studio.core.methods import get_method
from peft_studio.core.methods.adaption_prompt import GatedPrompt
from peft_studio.core.methods.peft_format import modules_of
from peft_studio.core.model.experiment import Experiment, Setup
from peft_studio.core.model.next_token import next_token_logits

transformers = pytest.importorskip("transformers", reason="transformers is the test-only reference")
peft = pytest.importorskip("peft", reason="peft is the test-only reference")
pytestmark = pytest.mark.filterwarnings("ignore::UserWarning", "ignore::FutureWarning")
FEW = settings(max_examples=3, deadline=None)
TEXTS = ["refund my order please", "cannot login"]


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("ckpt")
    return {family: str(write_checkpoint(root / family, family, std=0.2))
            for family in ("llama", "mistral", "gpt2", "qwen2")}


@functools.cache
def _texts():
    return load_builtin("texts")


def _hf(folder: str):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return transformers.AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)


def _logits(experiment):
    ids, mask = experiment.tokenizer.batch(TEXTS)
    experiment.model.eval()
    with torch.no_grad():
        return next_token_logits(experiment.base, ids, mask), ids, mask


@pytest.mark.parametrize("family", ["llama", "mistral", "gpt2"])
@FEW
@given(length=st.integers(1, 6), layers=st.sampled_from([0, 1, 2]))
def test_an_export_gives_peft_s_logits(folders, tmp_path_factory, family, length, layers):
    experiment = Experiment(Setup(folders[family], "adaption-prompt", {"adapter_len": length,
                                                                      "adapter_layers": layers}, seed=1), _texts())
    before, ids, mask = _logits(experiment)
    generator = torch.Generator().manual_seed(2)
    with torch.no_grad():  # as after training: the gates open, the prompts move
        for _, module in modules_of(experiment.base, GatedPrompt):
            module.adaption_gate.add_(torch.rand(1, generator=generator) + 0.5)
            module.adaption_prompt.add_(0.3 * torch.randn(module.adaption_prompt.shape, generator=generator))
    ours, _, _ = _logits(experiment)
    out = export_peft(experiment, tmp_path_factory.mktemp("adaption"))
    wrapped = peft.PeftModel.from_pretrained(_hf(folders[family]), str(out)).eval()
    assert sum(p.numel() for n, p in wrapped.named_parameters() if "adaption_" in n) == \
        experiment.method_parameter_count() == (layers or 2) * (length * 32 + 1)
    with torch.no_grad():
        theirs = wrapped(input_ids=ids, attention_mask=mask.long()).logits
    assert (ours - theirs)[mask].abs().max() <= 1e-5
    assert (ours - before)[mask].abs().max() > 1e-3  # the opened gates changed the predictions


@pytest.mark.parametrize("family", ["llama", "gpt2"])
def test_a_peft_adapter_imports_with_peft_s_logits(folders, tmp_path, family):
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = peft.get_peft_model(_hf(folders[family]), peft.AdaptionPromptConfig(
            task_type="CAUSAL_LM", adapter_len=4, adapter_layers=1))
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if "adaption_" in name:
                parameter.add_(torch.randn_like(parameter) * 0.5)
    model.save_pretrained(tmp_path / "a")
    experiment = import_peft(Setup(folders[family], seed=5), tmp_path / "a", _texts())
    assert experiment.setup.options["adapter_len"] == 4 and experiment.setup.options["adapter_layers"] == 1
    ours, ids, mask = _logits(experiment)
    with torch.no_grad():
        theirs = model.eval()(input_ids=ids, attention_mask=mask.long()).logits
    assert (ours - theirs)[mask].abs().max() <= 1e-5


def test_the_zero_gate_leaves_the_model_unchanged(folders):
    experiment = Experiment(Setup(folders["llama"], "adaption-prompt", {"adapter_len": 5}, seed=1), _texts())
    sites = experiment.selected_sites()
    assert [get_method("adaption-prompt").site_glyph(experiment.config, experiment.base, s) for s in sites] == \
        ["g=0.00", "g=0.00"]  # the diagram draws each layer's gate
    attached, ids, mask = _logits(experiment)
    top = experiment.base.get_submodule(sites[1].module_path).adaption_gate
    with torch.no_grad():
        top.fill_(0.25)  # the lens shows each layer's gate as it is
        gates, = get_method("adaption-prompt").lens(experiment, "refund my order")
        assert gates.arrays["magnitude"] == [0.0, 0.25] and gates.numbers["largest |gate|"] == 0.25
        top.zero_()
    experiment.model.detach_method()
    with torch.no_grad():
        assert torch.equal(attached, next_token_logits(experiment.base, ids, mask))


def test_decoders_peft_does_not_adapt_and_encoders_are_refused_with_the_reason(folders):
    with pytest.raises(ConfigError, match=r"supports model types llama, mistral, gpt2 only .*not 'qwen2'"):
        Experiment(Setup(folders["qwen2"], "adaption-prompt", {}), _texts())
    with pytest.raises(ConfigError, match="is not a decoder"):
        Experiment(Setup("tiny", "adaption-prompt", {}), load_builtin("intents"))
    with pytest.raises(ConfigError, match="adapter_layers: 3 layers from the top, but base .* has 2"):
        Experiment(Setup(folders["gpt2"], "adaption-prompt", {"adapter_layers": 3}), _texts())
