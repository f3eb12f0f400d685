"""PEFT exchange for every method that has a PEFT form, through the methods' own hooks: studio -> PEFT folder ->
PeftModel gives the same outputs, and an adapter made with PEFT predicts the same in the studio."""

from __future__ import annotations

import copy
import functools
import os
import re

import pytest
import torch
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from method_table import draw_options, draw_peft_config, exchanging, method_names, peft_made
from peft_reference import PEFT_WARNINGS, peft, transformers  # offline switches, reference skips
from safetensors.torch import load_file, save_file

from peft_studio.core.bases import create_base
from peft_studio.core.data import load_builtin
from peft_studio.core.errors import AdapterFileError
from peft_studio.core.interop.hf_peft import export_peft, import_peft, peft_setup
from peft_studio.core.methods import METHODS
from peft_studio.core.model.experiment import Experiment, Setup

pytestmark = PEFT_WARNINGS

TEXTS = ["the food was great", "terrible service and a long slow wait", "ok", "i loved it"]


@functools.cache
def dataset():
    return load_builtin("sentiment")


@pytest.fixture(scope="module")
def data():
    return dataset()


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


EXCHANGING = method_names(exchanging)
PEFT_MADE = method_names(peft_made)
FEW = settings(max_examples=3, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                     HealthCheck.function_scoped_fixture])


@functools.cache
def minilm_base():
    return create_base("minilm")


def is_prompt_learning(method) -> bool:
    """PEFT's prompt-learning types (prompt, prefix, P-tuning): a file PEFT loads frozen, its prompt evaluated."""
    return issubclass(peft.PEFT_TYPE_TO_CONFIG_MAPPING[method.peft_type], peft.PromptLearningConfig)


def peft_prompt_count(wrapped) -> int:
    """Numbers PEFT's prompt encoder trains: its table, less a cartridge's frozen first rows (an attention sink)."""
    encoder = wrapped.prompt_encoder.default
    table = encoder.embedding.weight
    return table.numel() - getattr(encoder, "num_frozen_tokens", 0) * table.shape[1]


def prompt_positions(experiment) -> int:
    """Soft-prompt positions PEFT puts in front of the hidden states (prompt tuning's n, else 0)."""
    return experiment.method.shape_change(experiment.config).input_tokens


@pytest.mark.parametrize("method", EXCHANGING)
@FEW
@given(data=st.data())
def test_export_loads_in_peft_with_the_same_outputs(tmp_path_factory, folder, data, method):
    """Options drawn from the method's example_space: the exported folder in PeftModel gives the studio's hidden
    states and (through the README's lines) logits, PEFT counts the same parameters, and it imports back."""
    options = draw_options(data, method, minilm_base())
    experiment = Experiment(Setup("minilm", method, options, seed=1), dataset())
    nudge(experiment, METHODS[method].perturbation)
    try:
        out = export_peft(experiment, tmp_path_factory.mktemp("adapter"))
    except AdapterFileError:
        assume(False)  # a setting with no PEFT form (e.g. prefix positions kept): refused, as it must be
    tolerance = METHODS[method].exchange_tolerance
    prompt_learning = is_prompt_learning(METHODS[method])  # PEFT loads those frozen only
    wrapped = peft.PeftModel.from_pretrained(bert(folder), str(out), is_trainable=not prompt_learning).eval()
    ids, mask = experiment.tokenizer.batch(TEXTS)
    experiment.model.eval()
    with torch.no_grad():
        theirs = wrapped(input_ids=ids, attention_mask=mask.long()).last_hidden_state
        ours, _ = experiment.base.encode(ids, mask)
        logits = experiment.model(ids, mask)
    extra = theirs.shape[1] - ids.shape[1]  # prompt tuning: n virtual tokens in front
    assert extra == prompt_positions(experiment)
    real = torch.cat([torch.zeros(len(TEXTS), extra, dtype=torch.bool), mask], dim=1)
    assert (theirs - ours)[real].abs().max() <= tolerance
    assert (readme_logits(out, wrapped, ids, mask) - logits).abs().max() <= tolerance
    evaluated = METHODS[method].peft_evaluated(experiment.config)  # e.g. an evaluated MLP: fewer numbers in the file
    if not evaluated:
        trainable = peft_prompt_count(wrapped) if prompt_learning else \
            sum(p.numel() for p in wrapped.parameters() if p.requires_grad)
        assert trainable == experiment.method_parameter_count()
    again = import_peft(Setup("minilm", seed=9), out, dataset())  # and back: the same predictions
    again.model.eval()
    with torch.no_grad():
        assert (again.model(ids, mask) - logits).abs().max() <= tolerance
    if not evaluated:
        assert again.method_parameter_count() == experiment.method_parameter_count()


def peft_adapter(folder, config, scale=0.1):
    """A PEFT adapter whose every trainable tensor has moved off its initial value (as after training; VeRA's
    lambda_b and LoRA's B start at zero) by N(0, scale), and a head on the mean-pooled states."""
    wrapped = peft.get_peft_model(bert(folder), config)
    generator = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for parameter in wrapped.parameters():
            if parameter.requires_grad:
                parameter.add_(scale * torch.randn(parameter.shape, generator=generator))
    torch.manual_seed(0)
    return wrapped.eval(), torch.nn.Linear(384, 2)


def import_made_by_peft(tmp_path, folder, config, scale=0.1):
    """Save what PEFT makes from `config` (with a head), import it, and compare the logits; returns the
    experiment and PEFT's trainable count."""
    wrapped, head = peft_adapter(folder, config, scale)
    out = tmp_path / "trained"
    wrapped.save_pretrained(str(out))
    save_file({"weight": head.weight.detach().contiguous(), "bias": head.bias.detach().contiguous()},
              str(out / "head.safetensors"))
    experiment = import_peft(Setup("minilm", seed=5), out, dataset())
    ids, mask = experiment.tokenizer.batch(TEXTS)
    experiment.model.eval()
    with torch.no_grad():
        hidden = wrapped(input_ids=ids, attention_mask=mask.long()).last_hidden_state
        extra = hidden.shape[1] - ids.shape[1]
        pooled_prompt = experiment.config.to_dict().get("pool_over", "text") != "text"
        weights = torch.cat([torch.full((len(TEXTS), extra), float(pooled_prompt)), mask.float()], dim=1)[..., None]
        theirs = head((hidden * weights).sum(1) / weights.sum(1))
        ours = experiment.model(ids, mask)
    assert (theirs - ours).abs().max() <= 1e-4
    trainable = wrapped.get_nb_trainable_parameters()[0]
    return experiment, trainable


@pytest.mark.parametrize("method", PEFT_MADE)
@FEW
@given(data=st.data())
def test_a_peft_adapter_imports_and_predicts_the_same(tmp_path_factory, folder, data, method):
    fields = draw_peft_config(data, method, minilm_base(), peft)
    try:
        config = peft.get_peft_config(fields)
        experiment, trainable = import_made_by_peft(tmp_path_factory.mktemp("peft"), folder, config,
                                                    METHODS[method].perturbation)
    except ValueError as exc:  # PEFT refuses the drawn combination itself (e.g. layers with no target in them)
        assume("not found in the base model" not in str(exc) and "Target modules" not in str(exc))
        raise
    assert experiment.method == METHODS[method] or METHODS[method].peft_accepts(experiment.setup.method)
    if not config.is_prompt_learning:  # PEFT counts those by its encoder, the file holds what the encoder gives
        assert experiment.method_parameter_count() == trainable


def test_peft_default_ia3_is_16128_and_imports_as_the_studio_sites(tmp_path, folder):
    experiment, trainable = import_made_by_peft(tmp_path, folder, peft.IA3Config())
    assert experiment.method_parameter_count() == trainable == 16_128  # keys, values, inputs of both output.dense
    assert peft_setup(tmp_path / "trained").options["targets"] == "k,v,o-in,ffn-act"  # down's input: the activation


def test_every_peft_type_is_a_method_attribute_and_unknown_configs_are_refused(tmp_path, data):
    types = {m.peft_type for m in METHODS.values() if m.peft_type}
    assert types <= {t.value for t in peft.PeftType}  # each names one of the installed PEFT's adapter types
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
