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

from peft_studio.core.data import load_builtin
from peft_studio.core.errors import AdapterFileError, ConfigError
from peft_studio.core.methods import get_method
from peft_studio.core.methods.adamss import AdamssConfig, AdamssLinear, allocate, layout_of
from peft_studio.core.model.experiment import Experiment, Setup
from peft_studio.core.runs.train import TrainSettings, train

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
    for name in ("sklearn", "sklearn.cluster"):  # the import fails as if it were not installed
        monkeypatch.setitem(sys.modules, name, None)
    base = build_base("tiny", seed=3)  # fresh weights: nothing clustered yet
    method = get_method("adamss")
    with pytest.raises(ConfigError, match=r"adamss needs scikit-learn.*pip install scikit-learn"):
        method.validate(method.config({}), base)  # the window's method list says so before anything is built
    with pytest.raises(ConfigError, match=r"adamss needs scikit-learn.*pip install scikit-learn"):
        method.parameter_count(method.config({}), base)  # and so does what clusters


def test_settings_peft_refuses_are_refused():
    method = get_method("adamss")
    with pytest.raises(AdapterFileError, match="init_weights must be orthogonal or null"):
        method.peft_translate({"init_weights": "gaussian"}, {}, "folder")
    with pytest.raises(AdapterFileError, match="init_warmup .* must be below final_warmup"):
        method.peft_translate({"use_asa": True, "init_warmup": 9, "final_warmup": 9}, {}, "folder")
    base = build_base("tiny")
    with pytest.raises(ConfigError, match="init_warmup .* must be below final_warmup"):
        method.validate(method.config({"use_asa": True, "init_warmup": 5, "final_warmup": 2}), base)
    with pytest.raises(ConfigError, match="subspace_rank .* must be at most min"):
        method.validate(method.config({"r": 2, "subspace_rank": 3}), base)


class TwoLinears(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.q, self.v = nn.Linear(16, 20), nn.Linear(16, 12, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat((self.q(x), self.v(x)), dim=-1)


def test_asa_stops_the_subspaces_peft_stops():
    """The same weights and batches in PEFT (its update_and_allocate after each optimizer step, as its Trainer
    callback calls it) and in the studio (allocate, what after_step runs): the same subspaces stop at the same
    steps, across both Linears, and the same weights come out."""
    torch.manual_seed(2)
    net = TwoLinears()
    settings = {"r": 6, "num_subspaces": 4, "subspace_rank": 2, "use_asa": True, "asa_target_subspaces": 3,
                "init_warmup": 1, "final_warmup": 7, "mask_interval": 2}
    theirs = peft.get_peft_model(copy.deepcopy(net), peft.AdamssConfig(target_modules=["q", "v"],
                                                                       init_weights=None, **settings))
    config = AdamssConfig(init_weights="none", **settings)
    frozen = copy.deepcopy(net).requires_grad_(False)
    ours = {name: AdamssLinear(getattr(frozen, name), layout_of(getattr(net, name), config), "none")
            for name in ("q", "v")}
    for name, layer in ours.items():
        their_layer = getattr(theirs.base_model.model, name)
        with torch.no_grad():  # PEFT's random start, copied
            for mine, peft_list in ((layer.adamss_A, their_layer.adamss_A["default"]),
                                    (layer.adamss_B, their_layer.adamss_B["default"])):
                for k, parameter in enumerate(mine):
                    parameter.copy_(peft_list[k])
        layer.enable_asa()
    mine = [p for layer in ours.values() for p in layer.parameters() if p.requires_grad]
    their_optimizer = torch.optim.AdamW([p for p in theirs.parameters() if p.requires_grad], lr=0.05)
    our_optimizer = torch.optim.AdamW(mine, lr=0.05)
    generator = torch.Generator().manual_seed(0)
    stopped = []
    for step in range(10):
        x, target = torch.randn(8, 16, generator=generator), torch.randn(8, 32, generator=generator)
        for model, optimizer in ((theirs, their_optimizer), (None, our_optimizer)):
            optimizer.zero_grad()
            out = theirs(x) if model is not None else torch.cat((ours["q"](x), ours["v"](x)), dim=-1)
            ((out - target) ** 2).mean().backward()
            optimizer.step()
        theirs.base_model.update_and_allocate(step)
        allocate(list(ours.values()), config, step)
        for name, layer in ours.items():
            peft_active = [a.requires_grad for a in getattr(theirs.base_model.model, name).adamss_A["default"]]
            assert layer.active == peft_active, (step, name)
        stopped.append(sum(not a for layer in ours.values() for a in layer.active))
    # nothing before the first mask interval in the window, then twice fewer (PEFT keeps those strictly above
    # the scheduled rank's score, so ties and the last place stop too)
    assert stopped[1] == 0 < stopped[2] < stopped[-1] and 8 - stopped[-1] <= 3
    for name, layer in ours.items():
        their_layer = getattr(theirs.base_model.model, name)
        for k, parameter in enumerate(layer.adamss_B):
            torch.testing.assert_close(parameter, their_layer.adamss_B["default"][k], rtol=0, atol=1e-5)


def test_in_the_trainer_stopped_subspaces_stay_as_they_were():
    settings = {"r": 8, "num_subspaces": 3, "use_asa": True, "init_warmup": 0, "final_warmup": 3, "mask_interval": 1,
                "asa_target_subspaces": 3}
    experiment = Experiment(Setup("tiny", "adamss", settings, seed=1), load_builtin("intents"))
    events = list(train(experiment, TrainSettings(steps=4, lr=1e-2, batch_size=32, track_grads=True)))
    reports = [event.method_state for event in events]
    assert reports[0]["subspaces"] == 12 and reports[-1]["active_subspaces"] < reports[0]["active_subspaces"]
    layers = [m for m in experiment.model.modules() if isinstance(m, AdamssLinear)]
    before = {id(p): p.detach().clone() for layer in layers for p in (*layer.adamss_A, *layer.adamss_B)}
    list(train(experiment, TrainSettings(steps=2, lr=1e-2, batch_size=32), start_step=4))  # past the window
    for layer in layers:
        for k, active in enumerate(layer.active):
            for parameter in (layer.adamss_A[k], layer.adamss_B[k]):
                assert torch.equal(parameter, before[id(parameter)]) != active
