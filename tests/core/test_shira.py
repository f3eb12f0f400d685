"""SHiRA beyond the method table: the trained positions are PEFT's random mask for any shape and seed, and what the
studio cannot reproduce (a custom mask, integers where weights belong) is refused by name."""

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
from peft_studio.core.methods.shira import random_positions
from peft_studio.core.model.experiment import Experiment, Setup

pytestmark = PEFT_WARNINGS
from peft.tuners.shira.mask_functions import random_mask  # noqa: E402 - after the reference's offline switches


@settings(max_examples=40, deadline=None)
@given(out_features=st.integers(2, 40), in_features=st.integers(2, 40), r=st.integers(1, 4),
       seed=st.one_of(st.none(), st.integers(0, 2**31 - 1)))
def test_positions_are_peft_s_random_mask(out_features, in_features, r, seed):
    if r * (in_features + out_features) > in_features * out_features:
        return  # PEFT refuses that size; the studio too (tested through its config)
    mask = random_mask(torch.nn.Linear(in_features, out_features), r, random_seed=seed)
    rows, columns = torch.where(mask == 1.0)
    assert torch.equal(random_positions(out_features, in_features, r, seed), torch.stack([rows, columns]).int())


def _exported(tmp_path):
    experiment = Experiment(Setup("minilm", "shira", {"r": 2, "random_seed": 5}), dataset())
    return export_peft(experiment, tmp_path / "shira")


def test_a_custom_mask_is_refused(tmp_path):
    out = _exported(tmp_path)
    tensors = load_file(str(out / "adapter_model.safetensors"))
    key = next(k for k in tensors if k.endswith("shira_indices"))
    tensors[key] = tensors[key].flip(1).contiguous()  # the same count at other positions: another mask function
    save_file(tensors, str(out / "adapter_model.safetensors"))
    with pytest.raises(AdapterFileError, match="not the positions random_seed 5 draws"):
        import_peft(Setup("minilm"), out, dataset())
    config = json.loads((out / "adapter_config.json").read_text())
    config["mask_type"] = "my_custom_mask"
    (out / "adapter_config.json").write_text(json.dumps(config))
    with pytest.raises(AdapterFileError, match="mask_type 'my_custom_mask'"):
        import_peft(Setup("minilm"), out, dataset())


def test_integers_where_a_weight_belongs_are_refused(tmp_path):
    out = _exported(tmp_path)
    tensors = load_file(str(out / "adapter_model.safetensors"))
    key = next(k for k in tensors if k.endswith("shira_weight"))
    tensors[key] = torch.zeros(tensors[key].shape, dtype=torch.int32)
    save_file(tensors, str(out / "adapter_model.safetensors"))
    with pytest.raises(AdapterFileError, match="holds integers where a shira weight must hold numbers"):
        import_peft(Setup("minilm"), out, dataset())
