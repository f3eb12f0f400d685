"""FRoD beyond the method table: the shared bases and sparse positions are the ones PEFT's joint decomposition and
generator give for the same roles, and a model decomposed with other settings is refused for an adapter."""

from __future__ import annotations

import pytest
import torch
from peft_reference import PEFT_WARNINGS, peft
from test_hf_peft_family import bert, dataset

from peft_studio.core.errors import AdapterFileError
from peft_studio.core.interop.hf_peft import export_peft, import_peft
from peft_studio.core.model.experiment import Experiment, Setup

pytestmark = PEFT_WARNINGS
OPTIONS = {"targets": "q,o,up", "layers": "0,2", "sparse_rate": 0.02, "projection_prng_key": 4,
           "save_projection": False}


@pytest.fixture(scope="module")
def folder():
    from peft_studio.core.bases.pretrained import minilm_folder

    return str(minilm_folder())


def test_bases_and_positions_are_peft_s(folder):
    experiment = Experiment(Setup("minilm", "frod", OPTIONS), dataset())
    wrapped = peft.get_peft_model(bert(folder), peft.FrodConfig(
        target_modules=["query", "attention.output.dense", "intermediate.dense"], layers_to_transform=[0, 2],
        sparse_rate=0.02, projection_prng_key=4, progressbar=False))
    shared = experiment.model.extras["frod"]
    assert sorted(shared.frod_V.keys()) == sorted(wrapped.base_model.frod_V.keys())  # the same roles
    for role, basis in shared.frod_V.items():
        assert torch.equal(basis, wrapped.base_model.frod_V[role]["default"]), role
        assert torch.equal(shared.frod_s_indices[role].long(), wrapped.base_model.frod_s_indices[role]["default"])


def test_a_model_decomposed_otherwise_is_refused(tmp_path):
    out = export_peft(Experiment(Setup("minilm", "frod", OPTIONS), dataset()), tmp_path / "frod")
    other = Experiment(Setup("minilm", "frod", {**OPTIONS, "projection_prng_key": 5}), dataset())
    with pytest.raises(AdapterFileError, match="projection_prng_key are"):
        import_peft(other, out)
