"""WaveFT, OSF, PSOFT, DEFT and Lily beyond the method table: what the drawn cross-method tests cannot reach (every
wavelet's filters, WaveFT's merge, whose PEFT defaults do not fit the tiny base the merge table is chosen on, OSF's
projected gradients and random start, PSOFT's seeded low-rank SVD, DEFT's start at W0, Lily's sharing) and the PEFT
settings the studio refuses by name."""

from __future__ import annotations

import copy
import json

import pytest
import torch
from peft_reference import PEFT_WARNINGS, peft
from test_hf_peft_family import TEXTS, bert, dataset, nudge
from torch import nn

from peft_studio.core.data import load_builtin
from peft_studio.core.errors import AdapterFileError, ConfigError
from peft_studio.core.interop.hf_peft import export_peft, import_peft
from peft_studio.core.methods import get_method
from peft_studio.core.methods.deft import DeftLinear
from peft_studio.core.methods.mergeable import weight_updates
from peft_studio.core.methods.osf import OsfLinear
from peft_studio.core.methods.psoft import PsoftConfig, PsoftLinear
from peft_studio.core.methods.waveft import WaveletLinear
from peft_studio.core.methods.wavelets import WAVELETS
from peft_studio.core.model.experiment import Experiment, Setup

pytestmark = PEFT_WARNINGS


class One(nn.Module):
    """One Linear named as PEFT targets it."""

    def __init__(self, out_features: int, in_features: int) -> None:
        super().__init__()
        self.lin = nn.Linear(in_features, out_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.lin(x)


def peft_layer(module: One, config):
    return peft.get_peft_model(copy.deepcopy(module), config).base_model.model.lin


@pytest.mark.parametrize("wavelet", WAVELETS)
@pytest.mark.parametrize("shape", [(9, 7), (12, 16)])  # odd sides: padded, made even and cropped back
def test_every_wavelet_reconstructs_what_peft_reconstructs(wavelet, shape):
    torch.manual_seed(0)
    module = One(*shape)
    theirs = peft_layer(module, peft.WaveFTConfig(target_modules=["lin"], n_frequency=20, scaling=3.0,
                                                  wavelet_family=wavelet, init_weights=False))
    ours = WaveletLinear(copy.deepcopy(module.lin), 20, 3.0, wavelet, True, 777, zero_start=True)
    with torch.no_grad():
        ours.waveft_spectrum.copy_(theirs.waveft_spectrum["default"])
        assert torch.equal(ours.delta_weight(), theirs.get_delta_weight("default"))


def test_waveft_settings_it_cannot_reproduce_are_refused_by_name(tmp_path):
    out = export_peft(Experiment(Setup("minilm", "waveft", {"n_frequency": 50, "targets": "q", "layers": "0"}),
                                 dataset()), tmp_path / "waveft")
    saved = json.loads((out / "adapter_config.json").read_text())
    refusals = {"wavelet_family": ("coif5", "not one PEFT can reconstruct"),  # PEFT's own coif5 table is broken
                "proportional_parameters": (True, "proportional_parameters = True is not supported"),
                "n_frequency_pattern": ({"query": 10}, "n_frequency_pattern = .* is not supported")}
    for field, (value, words) in refusals.items():
        (out / "adapter_config.json").write_text(json.dumps({**saved, field: value}))
        with pytest.raises(AdapterFileError, match=words):
            import_peft(Setup("minilm"), out, dataset())


@pytest.fixture(scope="module")
def folder():
    from peft_studio.core.bases.pretrained import minilm_folder

    return str(minilm_folder())


def test_waveft_merges_as_peft_merges(tmp_path, folder):
    experiment = Experiment(Setup("minilm", "waveft", {"n_frequency": 300, "wavelet_family": "db2",
                                                       "targets": "q,down", "layers": "0,3"}, seed=1), dataset())
    nudge(experiment, get_method("waveft").perturbation)
    out = export_peft(experiment, tmp_path / "waveft")
    theirs = dict(peft.PeftModel.from_pretrained(bert(folder), str(out)).merge_and_unload().named_parameters())
    ids, mask = experiment.tokenizer.batch(TEXTS)
    experiment.model.eval()
    fingerprint = experiment.model.frozen_fingerprint()
    with torch.no_grad():
        before = experiment.model(ids, mask)
        layers = weight_updates(experiment.base)
        assert len(layers) == 4
        for path, layer in layers:
            layer.merge()
            assert (layer.base_layer.weight - theirs[f"{experiment.base.hf_module(path)}.weight"]).abs().max() <= 1e-5
        assert (experiment.model(ids, mask) - before).abs().max() <= 1e-4
        for _, layer in layers:
            layer.unmerge()
    assert experiment.model.frozen_fingerprint() == fingerprint


@pytest.mark.parametrize("shape", [(20, 14), (14, 20), (16, 16)])  # U_high kept, V_high kept, neither
def test_osf_gradients_are_peft_s_projected_gradients(shape):
    torch.manual_seed(0)
    module = One(*shape)
    theirs = peft_layer(module, peft.OSFConfig(target_modules=["lin"], effective_rank=5))
    ours = OsfLinear(copy.deepcopy(module.lin), 5, init_weights=True)
    x = torch.randn(4, shape[1])
    theirs(x).pow(2).sum().backward()
    ours(x).pow(2).sum().backward()
    for leaf in ("U_low", "S_low", "V_low"):
        torch.testing.assert_close(ours.osf_svd_params[leaf].grad, theirs.osf_svd_params["default"][leaf].grad,
                                   rtol=1e-6, atol=1e-6)
    high = ours.U_high if ours.U_high is not None else torch.linalg.svd(module.lin.weight)[0][:, :5]
    assert (high.T @ ours.osf_svd_params["U_low"].grad).abs().max() <= 1e-5  # nothing turns the kept directions


def test_osf_start_sizes_and_refusals(tmp_path):
    torch.manual_seed(0)
    linear = nn.Linear(12, 10)
    x = torch.randn(3, 12)
    with torch.no_grad():
        assert (OsfLinear(copy.deepcopy(linear), 4, init_weights=True)(x) - linear(x)).abs().max() <= 1e-5
        random = OsfLinear(copy.deepcopy(linear), 4, init_weights=False)  # PEFT's N(0, 1) factors
        assert (random(x) - linear(x)).abs().max() > 0.1
    assert random.osf_svd_params["U_low"].shape == (10, 6) and random.effective_rank == 4
    method = get_method("osf")
    experiment = Experiment(Setup("minilm", "osf", {"targets": "q", "layers": "0"}), dataset())
    with pytest.raises(ConfigError, match="at least one kept and one to train"):
        method.validate(method.config({"effective_rank": 384, "targets": "q"}), experiment.base)
    out = export_peft(experiment, tmp_path / "osf")
    config = json.loads((out / "adapter_config.json").read_text())
    assert config["effective_rank"] is None  # the studio's 0: PEFT's half of each smaller side
    config["effective_rank"] = 0.5  # the same half, written as a fraction
    (out / "adapter_config.json").write_text(json.dumps(config))
    assert import_peft(Setup("minilm"), out, dataset()).config.effective_rank == 0
    config["effective_rank"] = 0.25
    (out / "adapter_config.json").write_text(json.dumps(config))
    with pytest.raises(AdapterFileError, match="effective_rank = 0.25 is not supported"):
        import_peft(Setup("minilm"), out, dataset())


def test_psoft_rotation_is_orthogonal_and_its_lowrank_svd_is_seeded():
    torch.manual_seed(0)
    linear = nn.Linear(24, 20)
    config = PsoftConfig(r=6, psoft_mag_a=False, psoft_mag_b=False, psoft_svd="lowrank", random_seed=3)
    state = torch.random.get_rng_state()
    layer = PsoftLinear(copy.deepcopy(linear), config)
    assert torch.equal(torch.random.get_rng_state(), state)  # the seeded SVD leaves the global generator alone
    again = PsoftLinear(copy.deepcopy(linear), config)
    other = PsoftLinear(copy.deepcopy(linear), PsoftConfig(r=6, psoft_svd="lowrank", random_seed=4))
    assert torch.equal(layer.psoft_A, again.psoft_A) and not torch.equal(layer.psoft_A, other.psoft_A)
    with torch.no_grad():
        layer.psoft_R.weight.add_(torch.randn(layer.psoft_R.weight.shape))
        rotation = layer.psoft_R.matrix()
    torch.testing.assert_close(rotation.T @ rotation, torch.eye(6), rtol=0, atol=1e-5)
    rows = layer.psoft_A @ layer.psoft_A.T  # psoft_init: A's rows are W0's top right singular vectors
    torch.testing.assert_close(rows, torch.eye(6), rtol=0, atol=1e-4)


@pytest.mark.parametrize("decomposition", ["relu", "qr"])
def test_deft_starts_at_w0_and_para_removes_only(decomposition):
    torch.manual_seed(0)
    linear = nn.Linear(12, 10)
    x = torch.randn(3, 12)
    with torch.no_grad():
        start = DeftLinear(copy.deepcopy(linear), 4, decomposition, 16, False, 0.0, True, 1.0)
        assert (start(x) - linear(x)).abs().max() <= 1e-6
        para = DeftLinear(copy.deepcopy(linear), 4, decomposition, 0, True, 0.0, True, 1.0)
        q, right = para.project()
        removed = linear(x) - (linear(x) - linear.bias) @ right @ q.T  # (I - Q_P rightᵀ) W0 x + b
        torch.testing.assert_close(para(x), removed)
    assert para.deft_R is None and para.deft_P.shape == (10, 4)  # PaRa trains P alone


def test_lily_shares_as_peft_shares_and_is_refused_where_positions_must_not_mix(tmp_path):
    """stride_A consecutive layers of one kind share an A, every layer of the kind shares the B's (PEFT's
    post-injection hook); the router's batch mean lets a position read later ones, so next-token training is
    refused; a regular-expression target (PEFT then shares across kinds) is refused on import."""
    experiment = Experiment(Setup("minilm", "lily", {"r": 4, "stride_A": 2, "num_B": 3, "targets": "q,v",
                                                     "layers": "0,1,2,4"}), dataset())
    layers = {path: module for path, module in experiment.base.named_modules() if hasattr(module, "lily_router")}
    queries = [layers[f"layers.{i}.attn.q"] for i in (0, 1, 2, 4)]
    assert queries[0].lily_A is queries[1].lily_A and queries[2].lily_A is queries[3].lily_A
    assert queries[1].lily_A is not queries[2].lily_A and queries[0].lily_A is not layers["layers.0.attn.v"].lily_A
    assert all(q.lily_B is queries[0].lily_B for q in queries)
    assert queries[0].lily_B is not layers["layers.0.attn.v"].lily_B  # kinds never share
    with pytest.raises(ConfigError, match="reads the later tokens"):
        Experiment(Setup("tiny-decoder", "lily"), load_builtin("texts"))
    out = export_peft(experiment, tmp_path / "lily")
    config = json.loads((out / "adapter_config.json").read_text())
    assert config["target_modules"] == ["attention.self.query", "attention.self.value"]
    assert config["layers_to_transform"] == [0, 1, 2, 4]
    (out / "adapter_config.json").write_text(json.dumps({**config, "target_modules": ".*(query|value)",
                                                         "layers_to_transform": None}))
    with pytest.raises(AdapterFileError, match="regular expression is not supported for Lily"):
        import_peft(Setup("minilm"), out, dataset())
