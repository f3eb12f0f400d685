"""PVeRA beyond the method table: while training, a layer with generator_seed draws PEFT's noise, so its outputs are
PEFT's layer's; at inference both use the mean; an adapter PEFT samples at inference is refused by name."""

from __future__ import annotations

import json

import pytest
import torch
from peft_reference import PEFT_WARNINGS, peft
from test_hf_peft_family import bert, dataset

from peft_studio.core.errors import AdapterFileError
from peft_studio.core.interop.hf_peft import export_peft, import_peft
from peft_studio.core.methods.mergeable import weight_updates
from peft_studio.core.model.experiment import Experiment, Setup

pytestmark = PEFT_WARNINGS


@pytest.fixture(scope="module")
def folder():
    from peft_studio.core.bases.pretrained import minilm_folder

    return str(minilm_folder())


def test_training_draws_peft_s_noise_and_inference_uses_the_mean(tmp_path, folder):
    experiment = Experiment(Setup("minilm", "pvera", {"r": 8, "targets": "q,up", "generator_seed": 5}), dataset())
    with torch.no_grad():
        for layer in (layer for _, layer in weight_updates(experiment.base)):
            layer.pvera_lambda_b.normal_(0, 0.1)
            layer.pvera_lambda_d.normal_(0, 0.5)  # a log-variance half far from zero: noise that shows
    out = export_peft(experiment, tmp_path / "pvera")
    wrapped = peft.PeftModel.from_pretrained(bert(folder), str(out), is_trainable=True)
    x = torch.randn(2, 3, 384, generator=torch.Generator().manual_seed(0))
    for path, layer in weight_updates(experiment.base):  # fresh generators on both sides, seeded alike
        theirs = wrapped.base_model.model.get_submodule(experiment.base.hf_module(path))
        layer.train(), theirs.train()
        with torch.no_grad():
            first, again = layer(x), layer(x)
            torch.testing.assert_close(first, theirs(x), rtol=1e-5, atol=1e-5)
            torch.testing.assert_close(again, theirs(x), rtol=1e-5, atol=1e-5)  # the streams advance alike
            assert not torch.equal(first, again)
            layer.eval(), theirs.eval()
            torch.testing.assert_close(layer(x), theirs(x), rtol=1e-5, atol=1e-5)


def test_sampling_at_inference_is_refused(tmp_path):
    experiment = Experiment(Setup("minilm", "pvera", {"r": 4, "targets": "v"}), dataset())
    out = export_peft(experiment, tmp_path / "pvera")
    config = json.loads((out / "adapter_config.json").read_text())
    config["sample_at_inference"] = True
    (out / "adapter_config.json").write_text(json.dumps(config))
    with pytest.raises(AdapterFileError, match="sample_at_inference = True is not supported"):
        import_peft(Setup("minilm"), out, dataset())
