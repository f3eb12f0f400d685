"""PEFT exchange for every method that has a PEFT form, through the methods' own hooks: studio -> PEFT folder ->
PeftModel gives the same outputs, and an adapter made with PEFT predicts the same in the studio."""

from __future__ import annotations

import copy
import os
import re

import pytest
import torch
from peft_reference import PEFT_WARNINGS, peft, transformers  # offline switches, reference skips
from safetensors.torch import load_file, save_file

from peft_studio.core.data import load_builtin
from peft_studio.core.errors import AdapterFileError
from peft_studio.core.interop.hf_peft import export_peft, import_peft, peft_setup
from peft_studio.core.methods import METHODS
from peft_studio.core.model.experiment import Experiment, Setup

pytestmark = PEFT_WARNINGS

TEXTS = ["the food was great", "terrible service and a long slow wait", "ok", "i loved it"]


@pytest.fixture(scope="module")
def data():
    return load_builtin("sentiment")


@pytest.fixture(scope="module")
def folder():
    from peft_studio.core.bases.pretrained import minilm_folder

    return str(minilm_folder())


_BERT: dict = {}


def bert(folder):
    """A fresh copy of MiniLM as transformers' BertModel (loaded once per run, copied per use)."""
    if folder not in _BERT:
        _BERT[folder] = transformers.BertModel.from_pretrained(folder).eval()
    return copy.deepcopy(_BERT[folder])


def nudge(experiment, scale=0.1):
    generator = torch.Generator().manual_seed(7)
    with torch.no_grad():
        for name, parameter in experiment.model.named_parameters():
            if parameter.requires_grad and not name.startswith("head."):
                parameter.add_(scale * torch.randn(parameter.shape, generator=generator))


def readme_logits(folder_path, wrapped, ids, mask):
    """Run the exported README's code block: the documented way from PEFT's outputs to the studio's logits."""
    text = (folder_path / "README.md").read_text()
    code = re.findall(r"```python\n(.*?)```", text, re.S)[-1]  # the last block: PEFT's outputs -> logits
    import safetensors.torch

    scope = {"peft_model": wrapped, "ids": ids, "mask": mask.long(), "torch": torch, "safetensors": safetensors}
    cwd = os.getcwd()
    os.chdir(folder_path)
    try:
        with torch.no_grad():
            exec(code, scope)  # noqa: S102 - the README's own lines, written by the studio
    finally:
        os.chdir(cwd)
    return scope["logits"]


CASES = [
    ("dora", {"r": 4, "targets": "query,value,output.dense", "layers": "0,3"}),
    ("vera", {"r": 32, "targets": "q,up", "projection_prng_key": 3}),
    ("ln-tuning", {"targets": "LayerNorm"}),
    ("ia3", {"targets": "q-in,up-in,v"}),
    ("prefix-tuning", {"tokens": 3, "positions": "shifted", "prefix_projection": 16}),
    ("prompt-tuning", {"tokens": 6, "pool_over": "text"}),
    ("prompt-tuning", {"tokens": 6, "pool_over": "prompt-and-text"}),
]


@pytest.mark.parametrize("method, options", CASES, ids=lambda v: v if isinstance(v, str) else ",".join(
    f"{k}={x}" for k, x in v.items()))
def test_export_loads_in_peft_with_the_same_outputs(tmp_path, folder, data, method, options):
    experiment = Experiment(Setup("minilm", method, options, seed=1), data)
    nudge(experiment)
    out = export_peft(experiment, tmp_path / "adapter")
    prompt_learning = method in ("prompt-tuning", "prefix-tuning")  # PEFT loads those frozen only
    wrapped = peft.PeftModel.from_pretrained(bert(folder), str(out), is_trainable=not prompt_learning).eval()
    ids, mask = experiment.tokenizer.batch(TEXTS)
    experiment.model.eval()
    with torch.no_grad():
        theirs = wrapped(input_ids=ids, attention_mask=mask.long()).last_hidden_state
        ours, _ = experiment.base.encode(ids, mask)
        logits = experiment.model(ids, mask)
    extra = theirs.shape[1] - ids.shape[1]  # prompt tuning: n virtual tokens in front
    assert extra == (options["tokens"] if method == "prompt-tuning" else 0)
    real = torch.cat([torch.zeros(len(TEXTS), extra, dtype=torch.bool), mask], dim=1)
    assert (theirs - ours)[real].abs().max() <= 1e-4
    assert (readme_logits(out, wrapped, ids, mask) - logits).abs().max() <= 1e-4
    if "prefix_projection" not in options:  # an evaluated MLP is a plain prefix: fewer numbers in the file
        trainable = wrapped.prompt_encoder.default.embedding.weight.numel() if prompt_learning else \
            sum(p.numel() for p in wrapped.parameters() if p.requires_grad)
        assert trainable == experiment.method_parameter_count()
    again = import_peft(Setup("minilm", seed=9), out, data)  # and back: the same predictions
    again.model.eval()
    with torch.no_grad():
        assert (again.model(ids, mask) - logits).abs().max() <= 1e-4
    if "prefix_projection" not in options:
        assert again.method_parameter_count() == experiment.method_parameter_count()


def peft_adapter(folder, config):
    """A PEFT adapter whose every trainable tensor has moved off its initial value (as after training; VeRA's
    lambda_b and LoRA's B start at zero), and a head on the mean-pooled states."""
    wrapped = peft.get_peft_model(bert(folder), config)
    generator = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for parameter in wrapped.parameters():
            if parameter.requires_grad:
                parameter.add_(0.1 * torch.randn(parameter.shape, generator=generator))
    torch.manual_seed(0)
    return wrapped.eval(), torch.nn.Linear(384, 2)


PEFT_CONFIGS = {
    "ia3-default": lambda: peft.IA3Config(),  # 16,128: keys, values, inputs of attention.output.dense and output.dense
    "dora": lambda: peft.LoraConfig(r=4, lora_alpha=8, target_modules=["key", "output.dense"], use_dora=True),
    "vera": lambda: peft.VeraConfig(r=16, target_modules=["query", "value"], projection_prng_key=11),
    "vera-no-projection": lambda: peft.VeraConfig(r=8, target_modules=["value"], save_projection=False),
    "ln-tuning": lambda: peft.LNTuningConfig(target_modules=["LayerNorm"]),
    "prefix": lambda: peft.PrefixTuningConfig(task_type="FEATURE_EXTRACTION", num_virtual_tokens=4),
}


@pytest.mark.parametrize("name", list(PEFT_CONFIGS))
def test_a_peft_adapter_imports_and_predicts_the_same(tmp_path, folder, data, name):
    wrapped, head = peft_adapter(folder, PEFT_CONFIGS[name]())
    out = tmp_path / "trained"
    wrapped.save_pretrained(str(out))
    save_file({"weight": head.weight.detach().contiguous(), "bias": head.bias.detach().contiguous()},
              str(out / "head.safetensors"))
    experiment = import_peft(Setup("minilm", seed=5), out, data)
    ids, mask = experiment.tokenizer.batch(TEXTS)
    experiment.model.eval()
    with torch.no_grad():
        hidden = wrapped(input_ids=ids, attention_mask=mask.long()).last_hidden_state
        weights = mask[..., None].float()
        theirs = head((hidden * weights).sum(1) / weights.sum(1))
        ours = experiment.model(ids, mask)
    assert (theirs - ours).abs().max() <= 1e-4
    assert experiment.method_parameter_count() == sum(p.numel() for p in wrapped.parameters() if p.requires_grad)
    if name == "ia3-default":
        assert experiment.method_parameter_count() == 16_128
        assert peft_setup(out).options["targets"] == "k,v,o-in,ffn-act"  # down's input is the activation site


def test_every_peft_type_is_a_method_attribute_and_unknown_configs_are_refused(tmp_path, data):
    types = {m.peft_type for m in METHODS.values() if m.peft_type}
    assert types == {"LORA", "IA3", "PROMPT_TUNING", "PREFIX_TUNING", "VERA", "LN_TUNING"}
    experiment = Experiment(Setup("minilm", "prefix-tuning", {"tokens": 2}), data)
    with pytest.raises(AdapterFileError, match="use positions = shifted"):
        export_peft(experiment, tmp_path / "kept")
    with pytest.raises(AdapterFileError, match="covers every layer"):
        export_peft(Experiment(Setup("minilm", "prefix-tuning", {"tokens": 2, "positions": "shifted",
                                                                 "layers": "0"}), data), tmp_path / "one")
    vera = Experiment(Setup("minilm", "vera", {"r": 4}), data)
    out = export_peft(vera, tmp_path / "vera")
    tensors = load_file(str(out / "adapter_model.safetensors"))
    tensors["base_model.vera_A"] = tensors["base_model.vera_A"] + 1
    save_file(tensors, str(out / "adapter_model.safetensors"))
    with pytest.raises(AdapterFileError, match="not the ones projection_prng_key 0 draws"):
        import_peft(Setup("minilm"), out, data)
