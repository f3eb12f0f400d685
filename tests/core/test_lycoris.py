"""LoHa and LoKr details the method table cannot express: LoKr's width split is PEFT's for any width, and in
training (module dropout, rank dropout) a layer computes what PEFT's layer computes from the same random draws."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from peft_reference import PEFT_WARNINGS, peft
from test_hf_peft_family import dataset

from peft_studio.core.errors import AdapterFileError
from peft_studio.core.interop.hf_peft import export_peft, import_peft
from peft_studio.core.methods.loha import LohaLinear
from peft_studio.core.methods.lokr import LokrLinear, factorization
from peft_studio.core.model.experiment import Experiment, Setup

pytestmark = PEFT_WARNINGS
from peft.tuners.loha import layer as peft_loha  # noqa: E402 - after the reference's offline switches
from peft.tuners.lokr import layer as peft_lokr  # noqa: E402


@settings(max_examples=300, deadline=None)
@given(st.integers(1, 5000), st.sampled_from([-1, 0, 1, 2, 3, 4, 8, 16, 64]))
def test_lokr_width_split_is_peft_s(dimension, factor):
    assert factorization(dimension, factor) == peft_lokr.factorization(dimension, factor)


def _copy_into_peft(ours: torch.nn.Module, theirs: torch.nn.Module) -> None:
    with torch.no_grad():
        for name, parameter in ours.named_parameters(recurse=False):
            getattr(theirs, name)["default"].copy_(parameter)


@settings(max_examples=25, deadline=None)
@given(kind=st.sampled_from(["loha", "lokr"]), r=st.integers(1, 6), shape=st.sampled_from([(12, 8), (16, 24), (7, 9)]),
       rank_dropout=st.sampled_from([0.0, 0.3, 0.6]), module_dropout=st.sampled_from([0.0, 0.5]),
       decompose_both=st.booleans(), rank_dropout_scale=st.booleans(), seed=st.integers(0, 2**16))
def test_training_forward_equals_peft_layer_draw_for_draw(kind, r, shape, rank_dropout, module_dropout,
                                                          decompose_both, rank_dropout_scale, seed):
    torch.manual_seed(seed)
    base = torch.nn.Linear(*shape)
    common = {"r": r, "alpha": 3.0, "rank_dropout": rank_dropout, "module_dropout": module_dropout}
    if kind == "loha":
        ours = LohaLinear(base, r, 3.0, rank_dropout, module_dropout)
        theirs = peft_loha.Linear(base, "default", peft.LoHaConfig(**common), r=r, alpha=3.0)
    else:
        ours = LokrLinear(base, r, 3.0, rank_dropout, module_dropout, decompose_both, -1, rank_dropout_scale)
        config = peft.LoKrConfig(**common, decompose_both=decompose_both, rank_dropout_scale=rank_dropout_scale)
        theirs = peft_lokr.Linear(base, "default", config, r=r, alpha=3.0)
    with torch.no_grad():
        for parameter in ours.parameters():
            if parameter.requires_grad:
                parameter.add_(torch.randn(parameter.shape))
    _copy_into_peft(ours, theirs)
    ours.train()
    theirs.train()
    x = torch.randn(5, shape[0])
    for step in range(4):  # several draws: some steps drop the module, some rows
        torch.manual_seed(seed + step)
        expected = theirs(x)
        torch.manual_seed(seed + step)
        # equal_nan: a rank-dropout draw that drops every rank divides by zero under rank_dropout_scale, in PEFT
        # as here; the two must agree on that too
        assert torch.allclose(ours(x), expected, atol=1e-6, equal_nan=True), step


def test_per_module_ranks_are_refused_by_name(tmp_path):
    experiment = Experiment(Setup("minilm", "loha", {"r": 2}), dataset())
    out = export_peft(experiment, tmp_path / "loha")
    import json

    config = json.loads((out / "adapter_config.json").read_text())
    config["rank_pattern"] = {"query": 4}
    (out / "adapter_config.json").write_text(json.dumps(config))
    with pytest.raises(AdapterFileError, match="rank_pattern"):
        import_peft(Setup("minilm"), out, dataset())
