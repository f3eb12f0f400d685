"""Trainable tokens against PEFT's TrainableTokensLayer itself (the family tests cover the file exchange): rows drawn
among the tokens the texts really use give PEFT's hidden states and count; on a decoder whose LM head is tied to the
table, the head reads the trained rows as PEFT's tied layer does; what the studio does not take is refused by name."""

from __future__ import annotations

import json
import warnings

import pytest
import torch
from decoder_checkpoints import write_checkpoint
from hypothesis import given, settings
from hypothesis import strategies as st
from peft_reference import PEFT_WARNINGS, peft, transformers
from safetensors.torch import load_file, save_file
from test_hf_peft_family import TEXTS, bert, dataset

from peft_studio.core.data import load_builtin
from peft_studio.core.errors import AdapterFileError, ConfigError
from peft_studio.core.interop.hf_peft import export_peft, import_peft
from peft_studio.core.methods.peft_format import modules_of
from peft_studio.core.methods.trainable_tokens import TiedTokenRows, TokenRows
from peft_studio.core.model.experiment import Experiment, Setup
from peft_studio.core.model.next_token import next_token_logits

pytestmark = PEFT_WARNINGS
FEW = settings(max_examples=4, deadline=None)


@pytest.fixture(scope="module")
def folder():
    from peft_studio.core.bases.pretrained import minilm_folder

    return str(minilm_folder())


def _nudge(experiment, seed=4):
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        (_, rows), = modules_of(experiment.base, TokenRows)
        rows.trainable_tokens_delta.add_(0.5 * torch.randn(rows.trainable_tokens_delta.shape, generator=generator))
    return rows


@FEW
@given(data=st.data())
def test_the_rows_compute_what_peft_computes_and_count_the_same(folder, data):
    experiment = Experiment(Setup("minilm", "trainable-tokens", {"token_indices": "0"}), dataset())
    ids, mask = experiment.tokenizer.batch(TEXTS)
    used = sorted(set(ids[mask].tolist()))  # tokens the texts read: a trained row then shows in the outputs
    chosen = data.draw(st.lists(st.sampled_from(used), min_size=1, max_size=6, unique=True))
    init = data.draw(st.booleans())
    experiment = Experiment(Setup("minilm", "trainable-tokens", {"token_indices": ",".join(map(str, chosen)),
                                                                  "init_weights": init}, seed=3), dataset())
    before, _ = experiment.base.encode(ids, mask)
    rows = _nudge(experiment)
    wrapped = peft.get_peft_model(bert(folder), peft.TrainableTokensConfig(token_indices=sorted(chosen),
                                                                           init_weights=init)).eval()
    assert wrapped.get_nb_trainable_parameters()[0] == experiment.method_parameter_count() == len(chosen) * 384
    layer = wrapped.base_model.model.embeddings.word_embeddings
    with torch.no_grad():
        layer.trainable_tokens_delta["default"].copy_(rows.trainable_tokens_delta)
        assert torch.equal(layer(ids), rows(ids))  # the layer itself: bit for bit
        theirs = wrapped(input_ids=ids, attention_mask=mask.long()).last_hidden_state
        ours, _ = experiment.base.encode(ids, mask)
    # through six layers float32 summation order alone parts the studio's encoder from BertModel by up to 1.1e-5
    # (measured with an N(0, 1) row for [CLS]; the bare encoders differ by a few 1e-6)
    assert (theirs - ours)[mask].abs().max() <= 2e-5
    assert (ours - before)[mask].abs().max() > 1e-2  # the trained rows were read


def test_a_tied_lm_head_reads_the_trained_rows_as_peft_s_tied_layer(tmp_path):
    checkpoint = write_checkpoint(tmp_path / "gpt2", "gpt2", std=0.2)  # GPT-2 ties lm_head to wte
    data = load_builtin("texts")  # the next-token task: the export is a CAUSAL_LM adapter
    experiment = Experiment(Setup(str(checkpoint), "trainable-tokens", {"token_indices": "0,5-7,40"}, seed=2), data)
    base = experiment.base
    assert isinstance(base.lm_head, TiedTokenRows) and base.lm_head.weight is base.input_embeddings().base_layer.weight
    ids, mask = experiment.tokenizer.batch(["refund my order please", "cannot login"])
    with torch.no_grad():
        before = next_token_logits(base, ids, mask)
    _nudge(experiment)
    assert experiment.method_parameter_count() == 5 * 32  # one k x d tensor, though the head reads it too
    out = export_peft(experiment, tmp_path / "out")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = transformers.AutoModelForCausalLM.from_pretrained(checkpoint, dtype=torch.float32)
        wrapped = peft.PeftModel.from_pretrained(model, str(out)).eval()
    experiment.model.eval()
    with torch.no_grad():
        ours = next_token_logits(base, ids, mask)
        theirs = wrapped(input_ids=ids, attention_mask=mask.long()).logits
    assert (ours - theirs)[mask].abs().max() <= 1e-5
    assert (ours - before)[mask][:, [0, 5, 6, 7, 40]].abs().min() > 0  # every trained row's logit moved
    experiment.model.detach_method()
    assert type(base.lm_head) is torch.nn.Linear and base.lm_head.weight is base.input_embeddings().weight
    assert base.fingerprint() == experiment.model.base_fingerprint


def test_token_ids_outside_the_table_and_other_tables_are_refused(tmp_path, folder):
    with pytest.raises(ConfigError, match=r"token_indices must be in \[0, 30521\] \(got 30522\)"):
        Experiment(Setup("minilm", "trainable-tokens", {"token_indices": "5,30522"}), dataset())
    wrapped = peft.get_peft_model(bert(folder), peft.TrainableTokensConfig(
        token_indices=[3, 1], target_modules=["position_embeddings"]))
    wrapped.save_pretrained(str(tmp_path / "positions"))
    with pytest.raises(AdapterFileError, match="the model has no embeddings.position.trainable_tokens_delta"):
        import_peft(Setup("minilm"), tmp_path / "positions", dataset())


def test_an_adapter_naming_a_token_twice_or_rows_of_another_count_is_refused(tmp_path):
    experiment = Experiment(Setup("minilm", "trainable-tokens", {"token_indices": "101,102"}), dataset())
    out = export_peft(experiment, tmp_path / "out")
    config = json.loads((out / "adapter_config.json").read_text())
    assert config["token_indices"] == [101, 102] and config["peft_type"] == "TRAINABLE_TOKENS"
    (out / "adapter_config.json").write_text(json.dumps({**config, "token_indices": [101, 101]}))
    with pytest.raises(AdapterFileError, match="names a token twice"):
        import_peft(Setup("minilm"), out, dataset())
    (out / "adapter_config.json").write_text(json.dumps({**config, "token_indices": [101, 102, 103]}))
    with pytest.raises(AdapterFileError, match="has 2 rows for 3 token_indices"):
        import_peft(Setup("minilm"), out, dataset())
    tensors = load_file(str(out / "adapter_model.safetensors"))
    assert [tuple(t.shape) for t in tensors.values()] == [(2, 384)]
    save_file({k: v[:, :8].contiguous() for k, v in tensors.items()}, str(out / "adapter_model.safetensors"))
    (out / "adapter_config.json").write_text(json.dumps(config))
    with pytest.raises(AdapterFileError):
        import_peft(Setup("minilm"), out, dataset())
