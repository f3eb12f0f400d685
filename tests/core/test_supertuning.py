"""Super-Tuning beyond the method table: the support is torch.topk of |W0| as PEFT finds it, a saved support is the
one used (PEFT loads it rather than searching again), and a model built for the other end of |W0| is refused."""

from __future__ import annotations

import copy

import pytest
import torch
from peft_reference import PEFT_WARNINGS, peft
from safetensors.torch import load_file, save_file
from test_hf_peft_family import TEXTS, bert, dataset

from peft_studio.core.errors import AdapterFileError
from peft_studio.core.interop.hf_peft import export_peft, import_peft
from peft_studio.core.model.experiment import Experiment, Setup

pytestmark = PEFT_WARNINGS


@pytest.fixture(scope="module")
def folder():
    from peft_studio.core.bases.pretrained import minilm_folder

    return str(minilm_folder())


def test_a_saved_support_is_the_one_used(tmp_path, folder):
    wrapped = peft.get_peft_model(bert(folder), peft.SupertuningConfig(target_modules=["query", "dense"],
                                                                       sparsity=0.98, r=2))
    with torch.no_grad():
        for parameter in wrapped.parameters():
            if parameter.requires_grad:
                parameter.add_(0.1 * torch.randn(parameter.shape, generator=torch.Generator().manual_seed(3)))
    wrapped.save_pretrained(str(tmp_path / "made"))
    weights = tmp_path / "made" / "adapter_model.safetensors"
    tensors = load_file(str(weights))
    key = next(k for k in tensors if k.endswith("query.supertuning_indices"))
    tensors[key] = (tensors[key] + 1) % (384 * 384)  # another support than |W0| gives: PEFT uses it as saved
    save_file(tensors, str(weights))
    loaded = peft.PeftModel.from_pretrained(bert(folder), str(tmp_path / "made")).eval()
    experiment = import_peft(Setup("minilm", seed=5), tmp_path / "made", dataset())
    ids, mask = experiment.tokenizer.batch(TEXTS)
    experiment.model.eval()
    with torch.no_grad():
        theirs = loaded(input_ids=ids, attention_mask=mask.long()).last_hidden_state
        ours, _ = experiment.base.encode(ids, mask)
    assert (theirs - ours)[mask.bool()].abs().max() <= 1e-5


def test_the_other_end_of_the_magnitudes_is_refused(tmp_path):
    options = {"sparsity": 0.99, "targets": "v", "save_precomputed_indices": False}
    experiment = Experiment(Setup("minilm", "supertuning", options), dataset())
    out = export_peft(experiment, tmp_path / "super")
    other = Experiment(Setup("minilm", "supertuning", {**options, "select_top": False}), dataset())
    before = copy.deepcopy(other.model.state_dict())
    with pytest.raises(AdapterFileError, match="largest-magnitude weights"):
        import_peft(other, out)
    assert all(torch.equal(before[k], v) for k, v in other.model.state_dict().items())  # refused before any copy
