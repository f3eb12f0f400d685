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

from ..bases import base_names
from ..data import TextDataset, load_builtin, load_dataset_file
from ..errors import ConfigError, DatasetError, OutputError
from ..methods import METHODS, get_method
from ..methods.config import make_config
from ..model.experiment import Setup
from ..runs.train import TrainSettings
from . import limits, safe_io

FORMAT = "peft-studio-setup"
VERSION = 1
SAVED_SETTINGS = ("steps", "lr", "batch_size", "optimizer", "weight_decay", "seed", "eval_every")
FILE_DATASET_KEYS = {"path": str, "text_column": str, "label_column": str, "split_column": (str, type(None)),
                     "val_fraction": (int, float), "seed": int, "max_rows": int, "max_len": int}
TOP_LEVEL_KEYS = ("format", "version", "base", "base_options", "method", "options", "seed", "dataset", "training")
MAX_SETUP_BYTES = 1 * 2**20
MAX_ROWS = 1_000_000
MAX_LEN = 4096
MAX_NAME_CHARS = 4096
# whole-number settings: (low, high); lr and weight_decay are checked by TrainSettings.check
# (the lower bounds of steps, batch_size and eval_every are TrainSettings.check's, with its messages)
TRAINING_INT_RANGES = {"steps": (-2**63, 10_000_000), "batch_size": (-2**63, 10_000_000),
                       "eval_every": (-2**63, 10_000_000), "seed": limits.SEED_RANGE}


def save_setup(path: str | os.PathLike, setup: Setup, dataset: TextDataset, settings: TrainSettings) -> Path:
    """Write the setup as JSON (atomically: a half-written file never replaces a good one)."""
    path = Path(path)
    document = setup_document(setup, dataset, settings, path.parent)
    return safe_io.write_text_atomically(path, json.dumps(document, indent=2) + "\n", OutputError)


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
    if not os.path.lexists(path):
        raise ConfigError(f"{path}: no such setup file")
    if os.path.isdir(path):
        raise ConfigError(f"{path.name}: is a folder, not a setup file")
    doc = safe_io.read_json_object(path, path.name, ConfigError, limit=MAX_SETUP_BYTES)
    return parse_setup(doc, path.parent, path.name)


def parse_setup(doc: dict[str, Any], folder: Path, where: str) -> tuple[Setup, TextDataset, TrainSettings]:
    """Check a setup object (a file's, or one inside a lesson) and load its dataset; errors name `where`."""
    if doc.get("format") != FORMAT:
        raise ConfigError(f"{where}: not a PEFT Studio setup (its \"format\" should be \"{FORMAT}\")")
    version = doc.get("version")
    if type(version) is not int or version != VERSION:
        raise ConfigError(f"{where}: setup version {json.dumps(version)[:20]} is not supported (this PEFT Studio "
                          f"reads version {VERSION})")
    unknown = sorted(set(doc) - set(TOP_LEVEL_KEYS))
    if unknown:
        raise ConfigError(f"{where}: unknown field {unknown[0][:40]!r}; known: {', '.join(TOP_LEVEL_KEYS)}")
    try:
        base = _base(_field(doc, "base", str, where), where)
        method = _field(doc, "method", str, where)
        if method not in METHODS:
            raise ConfigError(f"unknown method {method[:40]!r}; known: {', '.join(METHODS)}")
        options = _options(method, _field(doc, "options", dict, where))
        seed = limits.check_seed(_field(doc, "seed", int, where))
        base_options = limits.check_base_options(base, _field(doc, "base_options", dict, where, default={}))
    except ConfigError as exc:
        raise ConfigError(exc.args[0] if exc.args[0].startswith(f"{where}: ") else f"{where}: {exc}") from None
    settings = _settings(_field(doc, "training", dict, where), where)
    try:
        dataset = _dataset(_field(doc, "dataset", dict, where), folder, where)
    except DatasetError as exc:  # the loader names the data file; say which setup pointed at it
        raise DatasetError(f"{where}: its dataset: {exc}") from None
    # a setup that builds but cannot train is refused now, not on Play
    input_tokens = get_method(method).shape_change(get_method(method).config(options)).input_tokens  # a soft prompt
    limits.check_positions(base, base_options, dataset.max_len, input_tokens, f"{where}: ")
    return Setup(base, method, options, seed, base_options), dataset, settings


def _base(name: str, where: str) -> str:
    if not name or len(name) > MAX_NAME_CHARS or "\0" in name:
        raise ConfigError(f"{where}: \"base\" should name a base ({', '.join(base_names())}) or a folder")
    if name not in base_names() and not os.path.isdir(os.path.expanduser(name)):
        raise ConfigError(f"{where}: unknown base {name[:60]!r} (choose from {', '.join(base_names())}, or an "
                          "existing checkpoint folder)")
    return name


def _options(method: str, options: dict[str, Any]) -> dict[str, Any]:
    """Each option of the JSON type of its default (no "false" for false), then the method's ranges."""
    config_cls = get_method(method).config_cls
    fields = {f.name: f for f in dataclasses.fields(config_cls)}
    for name, value in options.items():
        if name in fields:
            default = fields[name].default
            limits.check_option_value(f"options.{name}", value, None if default is dataclasses.MISSING else default)
    make_config(config_cls, options)  # unknown names and ranges
    return options


def _field(doc: dict[str, Any], name: str, kind: type, where: str, default: Any = ...) -> Any:
    if name not in doc:
        if default is not ...:
            return default
        raise ConfigError(f"{where}: missing \"{name}\"")
    value = doc[name]
    if not isinstance(value, kind) or (isinstance(value, bool) and bool not in _kinds(kind)):
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
        if name in TRAINING_INT_RANGES:
            try:
                limits.whole_number(value, name, *TRAINING_INT_RANGES[name])
            except ConfigError as exc:
                raise ConfigError(f"{where}: training: {exc}") from None
        changes[name] = float(value) if expected is float else value
    settings = dataclasses.replace(defaults, **changes, track_grads=False)
    try:
        settings.check()
    except ConfigError as exc:
        raise ConfigError(f"{where}: training: {exc}") from None
    return settings


def _dataset(spec: dict[str, Any], folder: Path, where: str) -> TextDataset:
    if "builtin" in spec:
        if set(spec) != {"builtin"}:
            raise ConfigError(f"{where}: a built-in dataset takes no other fields (got "
                              f"{', '.join(sorted(set(spec) - {'builtin'}))[:80]})")
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
    _check_dataset_args(args, where)
    data_path = Path(args.pop("path")).expanduser()
    if not data_path.is_absolute():
        data_path = folder / data_path
    if not os.path.lexists(data_path):
        raise ConfigError(f"{where}: its dataset file {data_path} does not exist (moved or renamed?)")
    return load_dataset_file(data_path, args.pop("text_column"), args.pop("label_column"), **args)


def _check_dataset_args(args: dict[str, Any], where: str) -> None:
    try:
        for name in ("path", "text_column", "label_column", "split_column"):
            value = args.get(name)
            if value is not None and not (0 < len(value) <= MAX_NAME_CHARS and "\0" not in value):
                raise ConfigError(f"{name} should be a non-empty name of at most {MAX_NAME_CHARS} characters")
        if "val_fraction" in args:
            fraction = limits.real_number(args["val_fraction"], "val_fraction", 0.0, 1.0)
            if fraction >= 1.0:
                raise ConfigError(f"val_fraction must be at least 0 and below 1 (got {fraction})")
        if "seed" in args:
            limits.check_seed(args["seed"], "seed")
        if "max_rows" in args:
            limits.whole_number(args["max_rows"], "max_rows", 1, MAX_ROWS)
        if "max_len" in args:
            limits.whole_number(args["max_len"], "max_len", 1, MAX_LEN)
    except ConfigError as exc:
        raise ConfigError(f"{where}: dataset: {exc}") from None


def _kinds(kind: type | tuple[type, ...]) -> tuple[type, ...]:
    return kind if isinstance(kind, tuple) else (kind,)


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
