"""P-tuning against PEFT's PromptEncoder itself (not only its saved output, which the family tests cover): the same
encoder weights give the same hidden states, and PEFT counts the same trainable parameters, on drawn configurations;
settings PEFT would ignore are refused by name; an import says the encoder is not in the file."""

from __future__ import annotations

import copy
import functools

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from peft_reference import PEFT_WARNINGS, peft, transformers

from peft_studio.core.data import load_builtin
from peft_studio.core.errors import ConfigError
from peft_studio.core.interop.hf_peft import export_peft, read_peft
from peft_studio.core.methods import get_method
from peft_studio.core.methods.p_tuning import EncodedPrompt
from peft_studio.core.methods.peft_format import modules_of
from peft_studio.core.model.experiment import Experiment, Setup

pytestmark = PEFT_WARNINGS
TEXTS = ["the food was great", "terrible service and a long slow wait", "ok"]
FEW = settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@functools.cache
def _bert():
    from peft_studio.core.bases.pretrained import minilm_folder

    return transformers.BertModel.from_pretrained(str(minilm_folder())).eval()


@functools.cache
def _dataset():
    return load_builtin("sentiment")


@st.composite
def encoder_options(draw):
    kind = draw(st.sampled_from(["MLP", "LSTM"]))
    options = {"tokens": draw(st.integers(1, 6)), "encoder_reparameterization_type": kind,
               "encoder_hidden_size": draw(st.sampled_from([0, 7, 24]))}
    if kind == "LSTM":
        options["encoder_num_layers"] = draw(st.integers(1, 3))
        if options["encoder_num_layers"] > 1:
            options["encoder_dropout"] = draw(st.sampled_from([0.0, 0.2]))
    return options


def peft_model_like(experiment, options):
    """PEFT's trainable P-tuning model with the studio's encoder weights copied in (PEFT's enum for the type: its
    MLP warning cannot format a plain string)."""
    kind = peft.PromptEncoderReparameterizationType(options["encoder_reparameterization_type"])
    config = peft.PromptEncoderConfig(task_type="FEATURE_EXTRACTION", num_virtual_tokens=options["tokens"],
                                      encoder_reparameterization_type=kind,
                                      encoder_hidden_size=options["encoder_hidden_size"] or None,
                                      encoder_num_layers=options.get("encoder_num_layers", 2),
                                      encoder_dropout=options.get("encoder_dropout", 0.0))
    wrapped = peft.get_peft_model(copy.deepcopy(_bert()), config)
    (_, ours), = modules_of(experiment.base, EncodedPrompt)
    wrapped.prompt_encoder.default.load_state_dict(ours.state_dict())  # PEFT's names: embedding, mlp_head, lstm_head
    return wrapped.eval()


@FEW
@given(encoder_options())
def test_the_encoder_computes_what_peft_computes_and_counts_the_same(options):
    experiment = Experiment(Setup("minilm", "p-tuning", options, seed=2), _dataset())
    generator = torch.Generator().manual_seed(5)
    with torch.no_grad():
        for parameter in experiment.model.trainable_parameters():
            parameter.add_(0.1 * torch.randn(parameter.shape, generator=generator))
    wrapped = peft_model_like(experiment, options)
    assert wrapped.get_nb_trainable_parameters()[0] == experiment.method_parameter_count()
    ids, mask = experiment.tokenizer.batch(TEXTS)
    experiment.model.eval()
    with torch.no_grad():
        theirs = wrapped(input_ids=ids, attention_mask=mask.long()).last_hidden_state
        ours, ours_mask = experiment.base.encode(ids, mask)
    assert theirs.shape == ours.shape
    assert (theirs - ours)[ours_mask].abs().max() <= 1e-4  # the prompt positions and the real tokens


def test_settings_peft_would_ignore_are_refused_by_name():
    data = load_builtin("intents")
    for options, words in (({"encoder_num_layers": 3}, "encoder_num_layers: PEFT's MLP prompt encoder always has 2"),
                           ({"encoder_dropout": 0.1}, "encoder_dropout: PEFT's MLP prompt encoder has no dropout"),
                           ({"encoder_reparameterization_type": "LSTM", "encoder_num_layers": 1,
                             "encoder_dropout": 0.1}, "a one-layer LSTM"),
                           ({"inference_mode": True, "encoder_hidden_size": 8}, "inference_mode has no encoder")):
        with pytest.raises(ConfigError, match=words):
            Experiment(Setup("tiny", "p-tuning", options), data)


def test_the_form_shows_the_hidden_size_in_force():
    experiment = Experiment(Setup("tiny", "p-tuning", {}), load_builtin("intents"))
    method = get_method("p-tuning")
    assert method.effective_options(experiment.config, experiment.base)["encoder_hidden_size"] == 32


def test_an_import_is_the_evaluated_prompt_and_says_the_encoder_is_not_in_the_file(tmp_path):
    data = load_builtin("sentiment")
    options = {"tokens": 3, "encoder_reparameterization_type": "LSTM", "encoder_hidden_size": 8,
               "pool_over": "text"}
    experiment = Experiment(Setup("minilm", "p-tuning", options, seed=1), data)
    out = export_peft(experiment, tmp_path / "ptuning")
    adapter = read_peft(out)
    assert adapter.options["inference_mode"] is True and adapter.options["pool_over"] == "text"
    assert adapter.options["encoder_reparameterization_type"] == "MLP"  # none of the encoder's settings carried
    assert list(adapter.tensors) == ["embeddings.prompt.embedding.weight"]
    assert adapter.tensors["embeddings.prompt.embedding.weight"].shape == (3, 384)
    notes = get_method("p-tuning").peft_import_notes({"encoder_reparameterization_type": "LSTM",
                                                      "encoder_hidden_size": 8, "num_virtual_tokens": 3}, "x")
    assert "not the encoder (LSTM, hidden size 8)" in notes[0]
