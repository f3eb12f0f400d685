"""Adapter files: the trainable tensors as safetensors, the setup as JSON metadata. Loading runs no code."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from .errors import AdapterFileError
from .experiment import Experiment

FORMAT = "peft-studio-adapter/1"


def write_atomically(path: Path, write) -> None:
    """Call write(temp_path) then rename over `path`, so a crash never leaves half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(handle)
    try:
        write(Path(temp))
        os.replace(temp, path)
    finally:
        if os.path.exists(temp):
            os.unlink(temp)


def save_adapter(experiment: Experiment, path: str | Path) -> Path:
    """Save every trainable tensor (method parts and head) with the setup that made them."""
    experiment.require_weights("saved")  # a meta-device base has no values to save
    path = Path(path)
    if path.suffix != ".safetensors":
        path = path.with_suffix(".safetensors") if path.suffix == "" else Path(f"{path}.safetensors")
    tensors = {n: p.detach().cpu().contiguous() for n, p in experiment.model.named_parameters() if p.requires_grad}
    setup = experiment.setup
    metadata = {
        "format": FORMAT,
        "base": setup.base,
        "method": setup.method,
        "config": json.dumps(experiment.config.to_dict()),
        "labels": json.dumps(list(experiment.dataset.label_names)),
        "base_fingerprint": experiment.model.base_fingerprint,
    }
    write_atomically(path, lambda temp: save_file(tensors, str(temp), metadata=metadata))
    return path


def read_adapter(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    path = Path(path)
    if not path.is_file():
        raise AdapterFileError(f"{path.name}: no such adapter file")
    try:
        tensors = load_file(str(path))
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as handle:
            metadata = handle.metadata() or {}
    except (SafetensorError, OSError, ValueError) as exc:
        raise AdapterFileError(f"{path.name}: not a safetensors adapter file ({exc})") from None
    if metadata.get("format") != FORMAT:
        raise AdapterFileError(f"{path.name}: not a PEFT Studio adapter (format {metadata.get('format')!r})")
    return tensors, metadata


def load_adapter(experiment: Experiment, path: str | Path) -> None:
    """Copy a saved adapter into a model built with the same base, method and config."""
    tensors, metadata = read_adapter(path)
    name = Path(path).name
    if metadata.get("method") != experiment.setup.method:
        raise AdapterFileError(f"{name}: made for method {metadata.get('method')!r}, "
                               f"the model uses {experiment.setup.method!r}")
    if metadata.get("base_fingerprint") != experiment.model.base_fingerprint:
        raise AdapterFileError(f"{name}: made for a different base ({metadata.get('base')!r} with other weights)")
    params = {n: p for n, p in experiment.model.named_parameters() if p.requires_grad}
    missing = sorted(set(params) - set(tensors))
    if missing or set(tensors) - set(params):
        raise AdapterFileError(f"{name}: tensors do not match the model (missing: {', '.join(missing[:3]) or 'none'})")
    for key, parameter in params.items():  # check everything first: a refused file changes nothing
        if tensors[key].shape != parameter.shape:
            raise AdapterFileError(f"{name}: {key} has shape {tuple(tensors[key].shape)}, "
                                   f"the model needs {tuple(parameter.shape)}")
        if not torch.isfinite(tensors[key]).all():
            raise AdapterFileError(f"{name}: {key} holds NaN or infinite values")
    with torch.no_grad():
        for key, parameter in params.items():
            parameter.copy_(tensors[key])
