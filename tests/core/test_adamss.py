"""AdaMSS against PEFT's own layer on one Linear: the same SVD, the same k-means subspaces (PEFT saves neither the
clustering nor the ranks, so a loaded adapter depends on both being recomputed identically), the same outputs and
merged weight; and what the studio refuses by name (scikit-learn missing, PEFT's adaptive subspace allocation)."""

from __future__ import annotations

import copy
import sys

import pytest
import torch
from core_helpers import attach, build_base
from peft_reference import PEFT_WARNINGS, peft  # offline switches, reference skips
from torch import nn

from peft_studio.core.errors import AdapterFileError, ConfigError
from peft_studio.core.methods import get_method
from peft_studio.core.methods.adamss import AdamssConfig, AdamssLinear, layout_of

pytestmark = PEFT_WARNINGS


class OneLinear(nn.Module):
    def __init__(self, linear: nn.Linear) -> None:
        super().__init__()
        self.proj = linear

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x)


@pytest.mark.parametrize("bias, settings", [
    (True, {"r": 8, "num_subspaces": 3, "subspace_rank": 2}),
    (False, {"r": 6, "num_subspaces": 4, "subspace_rank": 3, "use_dynamic_rank": True, "svd_threshold": 0.3,
             "random_seed": 5}),
])
def test_subspaces_outputs_and_merge_equal_peft(bias, settings):
    torch.manual_seed(0)
    linear = nn.Linear(20, 24, bias=bias)
    theirs = peft.get_peft_model(OneLinear(copy.deepcopy(linear)), peft.AdamssConfig(
        target_modules=["proj"], init_weights=None, **settings))
    their_layer = theirs.base_model.model.proj
    ours = AdamssLinear(linear, layout_of(linear, AdamssConfig(**settings)), "none")
    # the clustering PEFT does not save, and the frozen projection it does
    assert torch.equal(ours.scatter_index, their_layer.scatter_index["default"])
    assert torch.equal(ours.adamss_newB, their_layer.adamss_newB["default"])
    assert [tuple(b.shape) for b in ours.adamss_B] == [tuple(b.shape) for b in their_layer.adamss_B["default"]]
    with torch.no_grad():  # trained numbers: the studio's, copied into PEFT
        for mine, peft_list in ((ours.adamss_A, their_layer.adamss_A["default"]),
                                (ours.adamss_B, their_layer.adamss_B["default"])):
            for k, parameter in enumerate(mine):
                parameter.normal_(0.0, 0.3)
                peft_list[k].copy_(parameter)
    x = torch.randn(2, 5, 20)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), their_layer(x), rtol=0, atol=1e-5)
        torch.testing.assert_close(ours.delta_weight(), their_layer.get_delta_weight("default"), rtol=0,
                                   atol=1e-6)
        before = ours(x)
        ours.merge()
        torch.testing.assert_close(ours(x), before, rtol=0, atol=1e-5)
        if bias:
            torch.testing.assert_close(ours.base_layer.bias - ours._unmerged_bias,
                                       their_layer.get_delta_bias("default"), rtol=0, atol=1e-6)
        ours.unmerge()
        assert torch.equal(ours(x), before)


def test_the_start_is_w0_and_a_spans_each_subspace():
    base = build_base("tiny")
    _, _, model = attach(base, "adamss", {"r": 8, "num_subspaces": 3, "subspace_rank": 2})
    layers = [m for m in model.modules() if isinstance(m, AdamssLinear)]
    assert layers
    for layer in layers:
        assert all(not b.any() for b in layer.adamss_B)  # orthogonal init: B = 0, the model starts at W0
        for a in layer.adamss_A:  # A's rows orthonormal
            torch.testing.assert_close(a @ a.T, torch.eye(a.shape[0]), rtol=0, atol=1e-5)
        assert sorted(layer.scatter_index.tolist()) == list(range(layer.base_layer.out_features))


def test_without_scikit_learn_it_is_refused_with_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "sklearn.cluster", None)  # the import fails as if it were not installed
    base = build_base("tiny", seed=3)  # fresh weights: nothing clustered yet
    method = get_method("adamss")
    with pytest.raises(ConfigError, match=r"adamss needs scikit-learn.*pip install scikit-learn"):
        method.validate(method.config({}), base)


def test_settings_it_does_not_compute_are_refused_by_name():
    method = get_method("adamss")
    with pytest.raises(AdapterFileError, match="use_asa = true is not supported: PEFT's adaptive subspace"):
        method.peft_translate({"use_asa": True}, {}, "folder")
    with pytest.raises(AdapterFileError, match="init_weights must be orthogonal or null"):
        method.peft_translate({"init_weights": "gaussian"}, {}, "folder")
    # without ASA, PEFT never reads its schedule: the fields are only typed
    options, _ = method.peft_translate({"use_asa": False, "init_warmup": 7, "mask_interval": 3}, {}, "folder")
    assert options["subspace_rank"] == 1
    with pytest.raises(ConfigError, match="subspace_rank .* must be at most min"):
        method.validate(method.config({"r": 2, "subspace_rank": 3}), build_base("tiny"))
