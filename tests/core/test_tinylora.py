"""TinyLoRA beyond the method table: an embedding table and Linears sharing one v exchange with PEFT exactly, and a
model whose P another seed drew is refused for an adapter that does not carry P."""

from __future__ import annotations

import pytest
import torch
from peft_reference import PEFT_WARNINGS, peft
from test_hf_peft_family import TEXTS, bert, dataset, nudge

from peft_studio.core.errors import AdapterFileError
from peft_studio.core.interop.hf_peft import export_peft, import_peft
from peft_studio.core.model.experiment import Experiment, Setup

pytestmark = PEFT_WARNINGS


@pytest.fixture(scope="module")
def folder():
    from peft_studio.core.bases.pretrained import minilm_folder

    return str(minilm_folder())


def test_an_embedding_and_linears_with_one_v_are_peft_s(tmp_path, folder):
    options = {"r": 2, "u": 5, "weight_tying": 1.0, "targets": "word,q,down", "save_projection": False}
    experiment = Experiment(Setup("minilm", "tinylora", options), dataset())
    assert experiment.method_parameter_count() == 5  # one v for the table and every Linear
    nudge(experiment)
    out = export_peft(experiment, tmp_path / "tiny")
    wrapped = peft.PeftModel.from_pretrained(bert(folder), str(out)).eval()
    ids, mask = experiment.tokenizer.batch(TEXTS)
    experiment.model.eval()
    with torch.no_grad():
        theirs = wrapped(input_ids=ids, attention_mask=mask.long()).last_hidden_state
        ours, _ = experiment.base.encode(ids, mask)
    assert (theirs - ours)[mask.bool()].abs().max() <= 1e-5
    with pytest.raises(AdapterFileError, match="not the one projection_seed 42 draws"):
        import_peft(Experiment(Setup("minilm", "tinylora", {**options, "projection_seed": 3}), dataset()), out)
