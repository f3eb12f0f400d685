"""Uni-LoRA beyond the method table: the index stream is PEFT's for any size and seed, saved indices are checked
against proj_seed, and what the studio cannot place (a regex of targets, another seed) is refused by name."""

from __future__ import annotations

import json

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from peft_reference import PEFT_WARNINGS
from safetensors.torch import load_file, save_file
from test_hf_peft_family import dataset

from peft_studio.core.errors import AdapterFileError
from peft_studio.core.interop.hf_peft import export_peft, import_peft
from peft_studio.core.methods.unilora import generate_index
from peft_studio.core.model.experiment import Experiment, Setup

pytestmark = PEFT_WARNINGS
from peft.tuners.unilora.model import UniLoraModel  # noqa: E402 - after the reference's offline switches


@settings(max_examples=15, deadline=None)
@given(count=st.integers(0, 3000), length=st.integers(1, 300), seed=st.integers(0, 2**31 - 1))
def test_the_index_stream_is_peft_s(count, length, seed):
    assert torch.equal(generate_index(count, length, seed), UniLoraModel.generate_index(count, length, seed))


def _exported(tmp_path, **options):
    experiment = Experiment(Setup("minilm", "unilora", {"r": 2, "theta_d_length": 32, "targets": "q,v",
                                                        **options}), dataset())
    return export_peft(experiment, tmp_path / "unilora")


def test_saved_indices_must_be_the_ones_proj_seed_draws(tmp_path):
    out = _exported(tmp_path, save_indices=True)
    tensors = load_file(str(out / "adapter_model.safetensors"))
    key = next(k for k in tensors if k.endswith("unilora_indices_A"))
    tensors[key] = tensors[key].flip(1).contiguous()  # the same entries of theta_d, gathered at other positions
    save_file(tensors, str(out / "adapter_model.safetensors"))
    with pytest.raises(AdapterFileError, match="not the ones proj_seed 42 draws"):
        import_peft(Setup("minilm"), out, dataset())


def test_a_regex_of_targets_and_another_seed_are_refused(tmp_path):
    out = _exported(tmp_path)
    with pytest.raises(AdapterFileError, match="has r 2, theta_d_length 32, proj_seed 42"):
        import_peft(Experiment(Setup("minilm", "unilora", {"r": 2, "theta_d_length": 32, "targets": "q,v",
                                                           "proj_seed": 7}), dataset()), out)
    config = json.loads((out / "adapter_config.json").read_text())
    config["target_modules"] = ".*query"
    (out / "adapter_config.json").write_text(json.dumps(config))
    with pytest.raises(AdapterFileError, match="target_modules should list module names"):
        import_peft(Setup("minilm"), out, dataset())
