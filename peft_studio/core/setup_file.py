"""A whole setup in one JSON file: base, method and its options, dataset, training settings.

A setup file names its dataset (a built-in, or a data file with the loader's arguments) rather than
copying it, and never holds weights (an adapter file does that). Loading checks everything and
builds nothing: every mistake is a ConfigError or DatasetError naming the file and the field.
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Any

from .data import TextDataset, load_builtin, load_dataset_file
from .errors import ConfigError, DatasetError
from .experiment import Setup
from .jsonfile import read_json_object
from .methods import METHODS, get_method
from .methods.config import make_config
from .train import TrainSettings

FORMAT = "peft-studio-setup"
VERSION = 1
SAVED_SETTINGS = ("steps", "lr", "batch_size", "optimizer", "weight_decay", "seed", "eval_every")
FILE_DATASET_KEYS = {"path": str, "text_column": str, "label_column": str, "split_column": (str, type(None)),
                     "val_fraction": (int, float), "seed": int, "max_rows": int, "max_len": int}


def save_setup(path: str | os.PathLike, setup: Setup, dataset: TextDataset, settings: TrainSettings) -> Path:
    """Write the setup as JSON (atomically: a half-written file never replaces a good one)."""
    path = Path(path)
    document = setup_document(setup, dataset, settings, path.parent)
    tmp = path.with_name(path.name + ".tmp")
    try:
        tmp.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
        tmp.replace(path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise ConfigError(f"{path.name}: could not write the setup ({exc.strerror or exc})") from None
    return path


def setup_document(setup: Setup, dataset: TextDataset, settings: TrainSettings, folder: Path) -> dict[str, Any]:
    """The JSON object a setup file holds (a lesson embeds it); data paths relative to `folder`."""
    if not dataset.recipe:
        raise ConfigError(f"the dataset '{dataset.name}' was not loaded from a file or the built-ins, so a "
                          "setup file cannot name it")
    return {
        "format": FORMAT, "version": VERSION,
        "base": setup.base, "base_options": dict(setup.base_options),
        "method": setup.method, "options": dict(setup.options), "seed": setup.seed,
        "dataset": _portable(dict(dataset.recipe), folder),
        "training": {name: getattr(settings, name) for name in SAVED_SETTINGS},
    }


def load_setup(path: str | os.PathLike) -> tuple[Setup, TextDataset, TrainSettings]:
    """Read and check a setup file, then load its dataset. Relative data paths are taken from the
    setup file's folder, so a folder holding both can be moved or shared."""
    path = Path(path)
    if path.is_dir():
        raise ConfigError(f"{path.name}: is a folder, not a setup file")
    if not path.exists():
        raise ConfigError(f"{path}: no such setup file")
    doc = read_json_object(path, path.name, ConfigError)
    return parse_setup(doc, path.parent, path.name)


def parse_setup(doc: dict[str, Any], folder: Path, where: str) -> tuple[Setup, TextDataset, TrainSettings]:
    """Check a setup object (a file's, or one inside a lesson) and load its dataset; errors name `where`."""
    if doc.get("format") != FORMAT:
        raise ConfigError(f"{where}: not a PEFT Studio setup (its \"format\" should be \"{FORMAT}\")")
    if doc.get("version") != VERSION:
        raise ConfigError(f"{where}: setup version {doc.get('version')!r} is not supported (this PEFT Studio "
                          f"reads version {VERSION})")
    base = _field(doc, "base", str, where)
    method = _field(doc, "method", str, where)
    if method not in METHODS:
        raise ConfigError(f"{where}: unknown method {method!r}; known: {', '.join(METHODS)}")
    options = _field(doc, "options", dict, where)
    try:
        make_config(get_method(method).config_cls, options)  # checks names, types and ranges now
    except ConfigError as exc:
        raise ConfigError(f"{where}: {exc}") from None
    seed = _field(doc, "seed", int, where)
    base_options = _field(doc, "base_options", dict, where, default={})
    settings = _settings(_field(doc, "training", dict, where), where)
    try:
        dataset = _dataset(_field(doc, "dataset", dict, where), folder, where)
    except DatasetError as exc:  # the loader names the data file; say which setup pointed at it
        raise DatasetError(f"{where}: its dataset: {exc}") from None
    return Setup(base, method, options, seed, base_options), dataset, settings


def _field(doc: dict[str, Any], name: str, kind: type, where: str, default: Any = ...) -> Any:
    if name not in doc:
        if default is not ...:
            return default
        raise ConfigError(f"{where}: missing \"{name}\"")
    value = doc[name]
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise ConfigError(f"{where}: \"{name}\" should be {_kind_name(kind)}, not {type(value).__name__} "
                          f"({json.dumps(value)[:40]})")
    return value


def _settings(values: dict[str, Any], where: str) -> TrainSettings:
    defaults = TrainSettings()
    unknown = sorted(set(values) - set(SAVED_SETTINGS))
    if unknown:
        raise ConfigError(f"{where}: unknown training setting {unknown[0]!r}; known: {', '.join(SAVED_SETTINGS)}")
    changes = {}
    for name, value in values.items():
        expected = type(getattr(defaults, name))
        kind = (int, float) if expected is float else expected
        value = _field(values, name, kind, f"{where}: training")
        changes[name] = float(value) if expected is float else value
    settings = dataclasses.replace(defaults, **changes, track_grads=False)
    try:
        settings.check()
    except ConfigError as exc:
        raise ConfigError(f"{where}: training: {exc}") from None
    return settings


def _dataset(spec: dict[str, Any], folder: Path, where: str) -> TextDataset:
    if "builtin" in spec:
        return load_builtin(_field(spec, "builtin", str, f"{where}: dataset"))
    if "path" not in spec:
        raise ConfigError(f"{where}: the dataset needs \"builtin\" (a built-in's name) or \"path\" (a data file)")
    unknown = sorted(set(spec) - set(FILE_DATASET_KEYS))
    if unknown:
        raise ConfigError(f"{where}: unknown dataset field {unknown[0]!r}; known: {', '.join(FILE_DATASET_KEYS)}")
    args = {name: _field(spec, name, kind, f"{where}: dataset") for name, kind in FILE_DATASET_KEYS.items()
            if name in spec}
    for required in ("text_column", "label_column"):
        if required not in args:
            raise ConfigError(f"{where}: the dataset file needs \"{required}\"")
    data_path = Path(args.pop("path")).expanduser()
    if not data_path.is_absolute():
        data_path = folder / data_path
    if not data_path.exists():
        raise ConfigError(f"{where}: its dataset file {data_path} does not exist (moved or renamed?)")
    return load_dataset_file(data_path, args.pop("text_column"), args.pop("label_column"), **args)


def _portable(spec: dict[str, Any], folder: Path) -> dict[str, Any]:
    """A data file inside the setup's folder is stored relative to it, so the two move together."""
    if "path" in spec:
        data_path = Path(spec["path"])
        if data_path.is_relative_to(folder.resolve()):
            spec["path"] = data_path.relative_to(folder.resolve()).as_posix()
    return spec


def _kind_name(kind: type | tuple[type, ...]) -> str:
    names = {str: "text", int: "a whole number", float: "a number", dict: "an object", bool: "true or false"}
    kinds = kind if isinstance(kind, tuple) else (kind,)
    if float in kinds:
        return "a number"
    return " or ".join(names.get(k, "null" if k is type(None) else k.__name__) for k in kinds)
