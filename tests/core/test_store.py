"""Adapter files: round trip, atomic write, and every bad file a clear AdapterFileError."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import save_file

from peft_studio.core.data import load_builtin
from peft_studio.core.errors import AdapterFileError
from peft_studio.core.files.adapter_file import load_adapter, save_adapter
from peft_studio.core.model.experiment import Experiment, Setup


def _experiment(method="lora", options=None, seed=0):
    return Experiment(Setup("tiny", method, options or {}, seed=seed), load_builtin("intents"))


def test_round_trip_restores_predictions(tmp_path):
    trained = _experiment()
    with torch.no_grad():
        for parameter in trained.model.trainable_parameters():
            parameter.add_(torch.randn_like(parameter) * 0.1)
    path = save_adapter(trained, tmp_path / "lora")
    assert path.name == "lora.safetensors" and not list(tmp_path.glob(".*tmp"))
    fresh = _experiment()
    texts = list(trained.dataset.val_texts[:8])
    assert not torch.equal(fresh.predict(texts), trained.predict(texts))
    load_adapter(fresh, path)
    assert torch.equal(fresh.predict(texts), trained.predict(texts))


@pytest.mark.parametrize("make, phrase", [
    (lambda p: None, "no such adapter file"),
    (lambda p: p.write_bytes(b""), "not a safetensors adapter file"),
    (lambda p: p.write_bytes(b"\x00" * 64), "not a safetensors adapter file"),
    (lambda p: p.write_text("hello, I am text", encoding="utf-8"), "not a safetensors adapter file"),
    (lambda p: save_file({"x": torch.zeros(2)}, str(p)), "not a PEFT Studio adapter"),
])
def test_bad_adapter_files(tmp_path, make, phrase):
    path = tmp_path / "bad.safetensors"
    make(path)
    with pytest.raises(AdapterFileError, match=phrase) as info:
        load_adapter(_experiment(), path)
    assert str(info.value).startswith("bad.safetensors")


def test_an_adapter_for_another_method_or_shape_is_refused(tmp_path):
    path = save_adapter(_experiment("lora", {"r": 4}), tmp_path / "r4.safetensors")
    with pytest.raises(AdapterFileError, match="made for method 'lora'"):
        load_adapter(_experiment("ia3"), path)
    with pytest.raises(AdapterFileError, match="shape"):
        load_adapter(_experiment("lora", {"r": 8}), path)
    with pytest.raises(AdapterFileError, match="different base"):
        load_adapter(_experiment("lora", {"r": 4}, seed=5), path)
