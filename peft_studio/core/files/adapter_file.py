"""Adapter files: the trainable tensors as safetensors, the setup as JSON metadata. Loading runs no code."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import save_file

from ..bases import uses_dataset_vocabulary
from ..data.tokenizer import WordTokenizer
from ..errors import AdapterFileError
from ..model.experiment import Experiment
from . import safe_io
from .adapter_metadata import AdapterMetadata, check_head, parse_metadata

FORMAT = "peft-studio-adapter/1"
MAX_ADAPTER_BYTES = 2 * 2**30


def write_atomically(path: Path, write: Callable[[Path], None]) -> None:
    """Call write(temp_path) then rename over `path`, so a crash never leaves half a file (see safe_io)."""
    safe_io.write_atomically(path, write, AdapterFileError)


def adapter_path(path: str | Path) -> Path:
    """Where save_adapter writes for `path`: the name with .safetensors added when it has no such suffix."""
    path = Path(path)
    if path.suffix != ".safetensors":
        path = path.with_suffix(".safetensors") if path.suffix == "" else Path(f"{path}.safetensors")
    return path


def check_adapter_writable(path: str | Path) -> Path:
    """Raise AdapterFileError now if save_adapter(…, path) could not write (call it before a long run).
    The path as given must not be an empty name, a folder, a FIFO or a device: saving "beside" it under a
    derived name would hide the mistake."""
    if not str(path).strip():
        raise AdapterFileError("the adapter's path is empty; give a file name such as adapter.safetensors")
    safe_io.check_writable(path, AdapterFileError)  # what the user typed, before the suffix is added
    target = adapter_path(path)
    safe_io.check_writable(target, AdapterFileError)
    return target


def rebuild_metadata(experiment: Experiment) -> dict[str, str]:
    """What rebuilds the experiment's frozen base elsewhere (`peft-studio predict`, an adapter set): the seed it
    was built from, its options and, for a toy base, the vocabulary it took from the training texts."""
    setup = experiment.setup
    metadata = {"seed": str(setup.seed), "base_seed": str(setup.seed), "base_options": json.dumps(setup.base_options),
                "task": experiment.dataset.name}
    tokenizer = experiment.base.tokenizer
    if uses_dataset_vocabulary(setup.base) and isinstance(tokenizer, WordTokenizer):
        metadata["tokenizer"] = json.dumps({"vocab": tokenizer.vocab, "lowercase": tokenizer.lowercase,
                                            "max_len": tokenizer.max_len})
    return metadata


def save_adapter(experiment: Experiment, path: str | Path, extra_metadata: dict[str, str] | None = None) -> Path:
    """Save every trainable tensor (method parts and head) with the setup that made them and what rebuilds the base.

    `extra_metadata` adds or overrides string keys (an adapter set stores its adapter's name and its own seeds)."""
    experiment.require_weights("saved")  # a meta-device base has no values to save
    path = check_adapter_writable(path)
    tensors = {n: p.detach().cpu().contiguous() for n, p in experiment.model.named_parameters() if p.requires_grad}
    setup = experiment.setup
    metadata = {
        "format": FORMAT,
        "base": setup.base,
        "method": setup.method,
        "config": json.dumps(experiment.config.to_dict()),
        "labels": json.dumps(list(experiment.dataset.label_names)),
        "base_fingerprint": experiment.model.base_fingerprint,
        **rebuild_metadata(experiment),
        **(extra_metadata or {}),
    }
    write_atomically(path, lambda temp: save_file(tensors, str(temp), metadata=metadata))
    return path


@dataclass(frozen=True)
class AdapterContent:
    """An adapter file read once: its tensors and its checked metadata (pass it on rather than read again)."""

    name: str
    tensors: dict[str, torch.Tensor]
    metadata: dict[str, str]
    meta: AdapterMetadata


def read_adapter_content(path: str | Path) -> AdapterContent:
    """The file's tensors and metadata, every metadata field checked (adapter_metadata.py) and its labels
    checked against its head; one read of the file."""
    tensors, metadata = read_adapter(path)
    name = Path(path).name
    meta = parse_metadata(metadata, name)
    check_head(meta, tensors, name)
    return AdapterContent(name, tensors, metadata, meta)


def read_adapter(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Tensors (checked: float dtypes, finite) and metadata of an adapter file; nothing in it is executed."""
    path = Path(path)
    if not os.path.lexists(path):
        raise AdapterFileError(f"{path.name}: no such adapter file")
    try:
        tensors, metadata = safe_io.read_safetensors(path, path.name, AdapterFileError, limit=MAX_ADAPTER_BYTES)
    except AdapterFileError as exc:
        raise AdapterFileError(str(exc).replace("not a safetensors file", "not a safetensors adapter file")) from None
    if metadata.get("format") != FORMAT:
        raise AdapterFileError(f"{path.name}: not a PEFT Studio adapter (format {metadata.get('format', '')[:40]!r})")
    return tensors, metadata


def _show_labels(labels: list[str] | tuple[str, ...], limit: int = 8) -> str:
    shown = ", ".join(repr(label[:30]) for label in labels[:limit])
    return f"[{shown}{', ...' if len(labels) > limit else ''}] ({len(labels)})"


def load_adapter(experiment: Experiment, path: str | Path, content: AdapterContent | None = None) -> None:
    """Copy a saved adapter into a model built with the same base, method, config and labels.
    Every check runs before the first copy: a refused file changes nothing. `content`: the file already
    read (read_adapter_content), so that a large adapter is read once."""
    content = content or read_adapter_content(path)
    tensors, meta, name = content.tensors, content.meta, content.name
    if meta.method != experiment.setup.method:
        raise AdapterFileError(f"{name}: made for method {meta.method[:40]!r}, the model uses "
                               f"{experiment.setup.method!r}")
    if meta.base_fingerprint != experiment.model.base_fingerprint:
        raise AdapterFileError(f"{name}: made for a different base ({meta.base[:40]!r} with other weights)")
    labels = list(meta.labels)
    if labels != list(experiment.dataset.label_names):
        raise AdapterFileError(f"{name}: its head was trained for the labels {_show_labels(labels)}, the dataset "
                               f"has {_show_labels(experiment.dataset.label_names)}")
    params = {n: p for n, p in experiment.model.named_parameters() if p.requires_grad}
    missing = sorted(set(params) - set(tensors))
    if missing or set(tensors) - set(params):
        raise AdapterFileError(f"{name}: tensors do not match the model (missing: {', '.join(missing[:3]) or 'none'})")
    for key, parameter in params.items():
        if tensors[key].shape != parameter.shape:
            raise AdapterFileError(f"{name}: {key} has shape {tuple(tensors[key].shape)}, "
                                   f"the model needs {tuple(parameter.shape)}")
    # same shapes, other settings (alpha, dropout...) would compute differently
    ours = experiment.config.to_dict()
    differ = [key for key in ours if key in meta.options and meta.options[key] != ours[key]]
    if differ:
        raise AdapterFileError(f"{name}: made with {differ[0]}={meta.options[differ[0]]!r}, the model uses "
                               f"{differ[0]}={ours[differ[0]]!r}")
    with torch.no_grad():
        for key, parameter in params.items():
            parameter.copy_(tensors[key])
