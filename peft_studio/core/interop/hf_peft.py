"""Hugging Face PEFT adapter folders: export a studio adapter, import one trained with PEFT.

A PEFT folder is adapter_config.json + adapter_model.safetensors, with PEFT's key names for a
`BertModel` (feature extraction), e.g.

    base_model.model.encoder.layer.0.attention.self.query.lora_A.weight   LoRA A (r, in)
    base_model.model.encoder.layer.0.output.dense.ia3_l                   IA3 feed-forward (1, in)
    prompt_embeddings                                                     prompt tuning (n, d)

so `PeftModel.from_pretrained(BertModel.from_pretrained(checkpoint), folder)` loads an export. Each
method owns its format (methods/*.py: `peft_type`, `peft_export`, `peft_translate`, ...; see
methods/peft_format.py); this module reads, checks and writes the folders and names no method.
The classification head is not part of a feature-extraction adapter: it goes beside it as
head.safetensors (`weight` [labels, d], `bias` [labels]; label names, pooling and the studio setup
in its metadata), with a README.md holding the lines that give the studio's logits from PEFT's
outputs: logits = head(pool(hidden states)), with the pooling the base uses (mean over real tokens
for all-MiniLM-L6-v2, the [CLS] vector for a plain BERT folder; BERT's own pooler Linear + tanh is
not used; prompt tuning says which positions it pools). Import reads the head file when it is there.
Nothing here executes code from the files (safetensors + JSON only), and peft is not needed.
Every file goes through `safe_io` (regular files only, sizes, dtypes, finite values), every field of
adapter_config.json the studio reads is type- and range-checked (`_check_config`), and a regex
target_modules is bounded as `module_patterns` explains.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file

from ..bases.encoder import Encoder
from ..bases.hf_names import hf_module
from ..bases.sites import Site, longest_prefix
from ..data import TextDataset
from ..errors import AdapterFileError, ConfigError
from ..files import safe_io
from ..files.adapter_file import write_atomically
from ..methods import METHODS, Method, get_method
from ..methods.module_patterns import MAX_NAME_CHARS, ModuleSelector
from ..methods.peft_format import KEY_PREFIX
from ..methods.targets import targets_for_sites
from ..model.experiment import Experiment, Setup

ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = "adapter_model.safetensors"
HEAD_FILE = "head.safetensors"
HEAD_FORMAT = "peft-studio-head/1"
README_FILE = "README.md"
MAX_CONFIG_BYTES = 1 * 2**20
MAX_WEIGHTS_BYTES = 2 * 2**30
MAX_RANK = 4096
MAX_VIRTUAL_TOKENS = 64  # the studio's soft-token range (prompt and prefix)
# adapter_config.json fields the studio reads: name -> (allowed JSON types, what to say). Other fields
# (PEFT adds some in every release) are ignored; a field listed here of another type is refused, so
# "false" never means true.
_STR, _BOOL, _INT, _NUM, _LIST, _DICT, _NULL = str, bool, int, float, list, dict, type(None)
CONFIG_FIELDS: dict[str, tuple[tuple[type, ...], str]] = {
    "peft_type": ((_STR,), "text"),
    "task_type": ((_STR, _NULL), "text or null"),
    "base_model_name_or_path": ((_STR, _NULL), "text or null"),
    "revision": ((_STR, _NULL), "text or null"),
    "inference_mode": ((_BOOL, _NULL), "true or false"),
    "modules_to_save": ((_LIST, _NULL), "a list or null"),
    "r": ((_INT,), "a whole number"),
    "lora_alpha": ((_INT, _NUM), "a number"),
    "lora_dropout": ((_INT, _NUM), "a number"),
    "target_modules": ((_LIST, _STR, _NULL), "a list of names, a regular expression or null"),
    "feedforward_modules": ((_LIST, _STR, _NULL), "a list of names, a regular expression or null"),
    "bias": ((_STR,), "text"),
    "use_rslora": ((_BOOL, _NULL), "true or false"),
    "use_dora": ((_BOOL, _NULL), "true or false"),
    "use_qalora": ((_BOOL, _NULL), "true or false"),
    "lora_bias": ((_BOOL, _NULL), "true or false"),
    "fan_in_fan_out": ((_BOOL, _NULL), "true or false"),
    "init_lora_weights": ((_BOOL, _STR, _NULL), "true, false or a method name"),
    "init_ia3_weights": ((_BOOL, _NULL), "true or false"),
    "layers_to_transform": ((_INT, _LIST, _NULL), "a layer index, a list of them or null"),
    "rank_pattern": ((_DICT, _NULL), "an object"),
    "alpha_pattern": ((_DICT, _NULL), "an object"),
    "num_virtual_tokens": ((_INT,), "a whole number"),
    "token_dim": ((_INT, _NULL), "a whole number"),
    "num_transformer_submodules": ((_INT, _NULL), "a whole number"),
    "num_attention_heads": ((_INT, _NULL), "a whole number"),
    "num_layers": ((_INT, _NULL), "a whole number"),
    "prompt_tuning_init": ((_STR, _NULL), "text"),
    "prompt_tuning_init_text": ((_STR, _NULL), "text or null"),
    "tokenizer_name_or_path": ((_STR, _NULL), "text or null"),
}


# ---- export ------------------------------------------------------------------------------------
def _bert_base(experiment: Experiment, verb: str) -> Encoder:
    base = experiment.base
    if not isinstance(base, Encoder):
        raise AdapterFileError(f"{verb} PEFT format: base {base.name!r} is not a BERT-style encoder "
                               "(use minilm or a checkpoint folder)")
    return base


def _base_name_or_path(base: Encoder) -> str | None:
    if base.name == "minilm":
        return "sentence-transformers/all-MiniLM-L6-v2"
    folder = getattr(base, "folder", None)
    return None if folder is None else str(folder)


def _exchanging() -> list[str]:
    return [name for name, method in METHODS.items() if method.peft_type]


def _export_parts(experiment: Experiment) -> tuple[dict, dict[str, torch.Tensor]]:
    method = experiment.method
    if method.peft_type is None:
        raise AdapterFileError(f"export to PEFT format: method {method.name!r} has no PEFT adapter format here "
                               f"(supported: {', '.join(_exchanging())})")
    base = _bert_base(experiment, "export to")
    settings, tensors = method.peft_export(base, experiment.config)
    config = {"peft_type": method.peft_type, "task_type": "FEATURE_EXTRACTION",
              "base_model_name_or_path": _base_name_or_path(base), "revision": None, "inference_mode": True,
              "modules_to_save": None, **settings}
    return config, tensors


def _readme(experiment: Experiment) -> str:
    """How to use the folder outside the studio: PEFT's hidden states -> the studio's logits."""
    base = experiment.base
    notes = experiment.method.peft_notes(experiment.config, base)
    lines = [f"# {experiment.method.title} adapter exported by PEFT Studio", "",
             f"Base: {experiment.setup.base} ({_base_name_or_path(base) or 'a local BERT folder'}); "
             f"labels: {', '.join(experiment.dataset.label_names)}; pooling: {base.cfg.pooling}.", "",
             "```python",
             "from peft import PeftModel",
             "from transformers import BertModel",
             "peft_model = PeftModel.from_pretrained(BertModel.from_pretrained(checkpoint), folder).eval()",
             "```", ""]
    if not any(line.startswith("```python") for line in notes):
        pooled = "pooled = hidden[:, 0]" if base.cfg.pooling == "cls" else \
            "pooled = (hidden * mask[..., None]).sum(1) / mask.sum(1, keepdim=True)"
        notes = [*notes, "The studio's logits from PEFT's outputs (`ids`, `mask` from the checkpoint's tokenizer):",
                 "", "```python",
                 "hidden = peft_model(input_ids=ids, attention_mask=mask).last_hidden_state  # (batch, L, d)",
                 "mask = mask.to(hidden.dtype)", pooled,
                 "head = safetensors.torch.load_file('head.safetensors')",
                 "logits = pooled @ head['weight'].T + head['bias']", "```"]
    settings = ", ".join(f"{k} = {v}" for k, v in experiment.config.to_dict().items())
    return "\n".join([*lines, *notes, "", f"Studio settings: method {experiment.setup.method}, {settings}.", ""])


def check_peft_export(experiment: Experiment, folder: str | Path | None = None) -> None:
    """Raise AdapterFileError now if export_peft would refuse this experiment, or (given `folder`) could not
    write into that folder — call it before a long training, so the run is never lost."""
    _export_parts(experiment)
    if folder is not None:
        safe_io.check_writable(Path(folder).expanduser(), AdapterFileError, folder=True)


def export_peft(experiment: Experiment, folder: str | Path) -> Path:
    """Write adapter_config.json, adapter_model.safetensors, head.safetensors and README.md into `folder`."""
    folder = Path(folder)
    config, tensors = _export_parts(experiment)
    tensors = {k: v.detach().cpu().contiguous().clone() for k, v in tensors.items()}
    head = experiment.model.head
    head_tensors = {"weight": head.weight.detach().cpu().contiguous().clone(),
                    "bias": head.bias.detach().cpu().contiguous().clone()}
    head_metadata = {"format": HEAD_FORMAT, "labels": json.dumps(list(experiment.dataset.label_names)),
                     "pooling": experiment.base.cfg.pooling, "base": experiment.setup.base,
                     "method": experiment.setup.method, "config": json.dumps(experiment.config.to_dict()),
                     "base_fingerprint": experiment.model.base_fingerprint}
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise AdapterFileError(f"{folder}: cannot create the folder ({exc.strerror or exc})") from None
    write_atomically(folder / ADAPTER_WEIGHTS, lambda temp: save_file(tensors, str(temp), metadata={"format": "pt"}))
    write_atomically(folder / HEAD_FILE, lambda temp: save_file(head_tensors, str(temp), metadata=head_metadata))
    readme = _readme(experiment)
    write_atomically(folder / README_FILE, lambda temp: temp.write_text(readme, encoding="utf-8"))
    text = json.dumps(config, indent=2, sort_keys=True) + "\n"
    write_atomically(folder / ADAPTER_CONFIG, lambda temp: temp.write_text(text, encoding="utf-8"))
    return folder


# ---- reading a PEFT folder --------------------------------------------------------------------
@dataclass
class PeftAdapter:
    """A PEFT adapter folder translated to the studio: method, options, and tensors by studio name."""

    folder: Path
    peft_type: str
    method: str
    options: dict[str, Any]
    tensors: dict[str, torch.Tensor]  # studio parameter name (inside the base) -> value
    head: dict[str, torch.Tensor] | None = None
    head_labels: list[str] | None = None
    notes: list[str] = field(default_factory=list)


def _load_safetensors(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    label = f"{path.parent.name}/{path.name}"
    try:
        return safe_io.read_safetensors(path, label, AdapterFileError, limit=MAX_WEIGHTS_BYTES)
    except AdapterFileError as exc:
        raise AdapterFileError(str(exc).replace("not a safetensors file", "not a readable safetensors file")) \
            from None


def _read_config(folder: Path) -> dict[str, Any]:
    path = folder / ADAPTER_CONFIG
    if not folder.is_dir():
        raise AdapterFileError(f"{folder}: no such folder (a PEFT adapter folder holds {ADAPTER_CONFIG} and "
                               f"{ADAPTER_WEIGHTS})")
    if not os.path.lexists(path):
        raise AdapterFileError(f"{folder.name}: no {ADAPTER_CONFIG} (a PEFT adapter folder holds {ADAPTER_CONFIG} and "
                               f"{ADAPTER_WEIGHTS})")
    where = f"{folder.name}/{ADAPTER_CONFIG}"
    config = safe_io.read_json_object(path, where, AdapterFileError, limit=MAX_CONFIG_BYTES)
    _check_config(config, where)
    return config


def _check_config(config: dict[str, Any], where: str) -> None:
    """Types of every field the studio reads, and the ranges of the numbers it uses."""
    fields = dict(CONFIG_FIELDS)
    for method in METHODS.values():
        if method.peft_type is not None and method.peft_type == config.get("peft_type"):
            fields.update(method.peft_config_fields)
    for name, (kinds, what) in fields.items():
        if name not in config:
            continue
        value = config[name]
        if not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds):
            raise AdapterFileError(f"{where}: {name} should be {what}, not {json.dumps(value)[:40]}")
    numbers = {"r": (1, MAX_RANK), "num_virtual_tokens": (1, MAX_VIRTUAL_TOKENS),
               "num_transformer_submodules": (1, 2), "token_dim": (1, 2**20), "num_attention_heads": (1, 2**16),
               "num_layers": (1, 2**16)}
    for name, (low, high) in numbers.items():
        value = config.get(name)
        if value is not None and not low <= value <= high:
            raise AdapterFileError(f"{where}: {name} must be in [{low}, {high}] (got {value})")
    alpha = config.get("lora_alpha")
    if alpha is not None and not (math.isfinite(alpha) and alpha > 0):
        raise AdapterFileError(f"{where}: lora_alpha must be a positive number (got {alpha})")
    dropout = config.get("lora_dropout")
    if dropout is not None and not 0 <= dropout < 1:
        raise AdapterFileError(f"{where}: lora_dropout must be in [0, 1) (got {dropout})")
    layers = config.get("layers_to_transform")
    if isinstance(layers, list) and not all(type(v) is int and 0 <= v < 2**16 for v in layers[:2**16]):
        raise AdapterFileError(f"{where}: layers_to_transform should list layer indices, not {str(layers)[:40]}")
    for name in ("target_modules", "feedforward_modules"):
        ModuleSelector(config.get(name), name, where, AdapterFileError)  # refuses bad lists and unsafe regexes


def _split_keys(raw: dict[str, torch.Tensor], where: str, notes: list[str]) -> dict[str, torch.Tensor]:
    """Strip PEFT's prefixes and adapter names: 'base_model.model.bert.encoder...lora_A.default.weight' ->
    'encoder...lora_A.weight'. Saved modules_to_save copies (e.g. a classifier) are left out, with a note."""
    out: dict[str, torch.Tensor] = {}
    skipped: set[str] = set()
    for key, tensor in raw.items():
        if len(key) > MAX_NAME_CHARS + 40:  # the longest BERT adapter key is about 80 characters
            raise AdapterFileError(f"{where}: a tensor name of {len(key)} characters ({key[:40]}...) is no "
                                   "adapter key")
        name = key.removeprefix(KEY_PREFIX).removeprefix("bert.")
        name = re.sub(r"\.(lora_A|lora_B)\.default\.weight$", r".\1.weight", name)  # a raw state_dict's names
        name = re.sub(r"\.default$", "", name)  # ia3_l.default, vera_lambda_b.default, ...
        if ".modules_to_save." in name or name.startswith(("classifier.", "pooler.", "cls.")):
            skipped.add(name.split(".")[0])
            continue
        out[name] = tensor
    if skipped:
        notes.append(f"{where}: left out {', '.join(sorted(skipped))} (not part of the encoder adapter; the studio "
                     f"head comes from {HEAD_FILE} when present)")
    return out


def _method_for(peft_type: Any, config: dict[str, Any], where: str) -> Method:
    """The studio method that an adapter of this type and settings is (LORA with use_dora is DoRA)."""
    typed = [m for m in METHODS.values() if m.peft_type is not None and m.peft_type == peft_type]
    claimed = [m for m in typed if m.peft_claims(config)]
    if not claimed:
        if typed:
            raise AdapterFileError(f"{where}: no studio method takes this {peft_type} adapter's settings")
        supported = sorted({m.peft_type for m in METHODS.values() if m.peft_type})
        raise AdapterFileError(f"{where}: peft_type {peft_type!r} is not supported (supported: "
                               f"{', '.join(supported)})")
    return claimed[0]


def read_peft(folder: str | Path) -> PeftAdapter:
    """Read and check a PEFT adapter folder; tensors come back under the studio's names."""
    folder = Path(folder).expanduser()
    config = _read_config(folder)
    where = f"{folder.name}/{ADAPTER_CONFIG}"
    peft_type = config.get("peft_type")
    method = _method_for(peft_type, config, where)
    weights = folder / ADAPTER_WEIGHTS
    if not os.path.lexists(weights):
        hint = " (adapter_model.bin is pickle: save with safe_serialization=True)" \
            if (folder / "adapter_model.bin").is_file() else ""
        raise AdapterFileError(f"{folder.name}: no {ADAPTER_WEIGHTS}{hint}")
    notes: list[str] = []
    raw, _ = _load_safetensors(weights)
    tensors = _split_keys(raw, f"{folder.name}/{ADAPTER_WEIGHTS}", notes)
    if not tensors:
        raise AdapterFileError(f"{folder.name}/{ADAPTER_WEIGHTS}: holds no adapter tensors")
    options, studio = method.peft_translate(config, tensors, f"{folder.name}/{ADAPTER_WEIGHTS}")
    adapter = PeftAdapter(folder, peft_type, method.name, options,
                          {k: v.to(torch.float32) for k, v in studio.items()}, notes=notes)
    if os.path.lexists(folder / HEAD_FILE):
        adapter.head, adapter.head_labels = _read_head(folder)
        _merge_studio_options(adapter, folder)
    return adapter


def _merge_studio_options(adapter: PeftAdapter, folder: Path) -> None:
    """Settings PEFT's config cannot hold (e.g. prompt tuning's pooling) from the head's metadata, when the
    studio wrote that head for this method; the adapter's own settings win."""
    where = f"{folder.name}/{HEAD_FILE}"
    _, metadata = _load_safetensors(folder / HEAD_FILE)
    if metadata.get("format") != HEAD_FORMAT or metadata.get("method") != adapter.method or "config" not in metadata:
        return
    saved = safe_io.loads_json(metadata["config"], f"{where}: config", AdapterFileError)
    if not isinstance(saved, dict):
        raise AdapterFileError(f"{where}: its config metadata should be an object")
    fields = {f.name for f in dataclasses.fields(get_method(adapter.method).config_cls)}
    for key in sorted(fields - {"targets", "layers", "freeze_head"} - set(adapter.options)):
        if key in saved:
            adapter.options[key] = saved[key]


def _read_head(folder: Path) -> tuple[dict[str, torch.Tensor], list[str] | None]:
    where = f"{folder.name}/{HEAD_FILE}"
    head, metadata = _load_safetensors(folder / HEAD_FILE)
    if set(head) != {"weight", "bias"}:
        raise AdapterFileError(f"{where}: expected tensors weight and bias, found {', '.join(sorted(head))[:80]}")
    safe_io.expect_shape(head["weight"], 2, f"{where}: weight", AdapterFileError, "(labels, width)")
    safe_io.expect_shape(head["bias"], 1, f"{where}: bias", AdapterFileError, "(labels,)")
    if head["bias"].shape[0] != head["weight"].shape[0]:
        raise AdapterFileError(f"{where}: bias has {head['bias'].shape[0]} entries for {head['weight'].shape[0]} "
                               "labels")
    labels = None
    if "labels" in metadata:
        labels = safe_io.loads_json(metadata["labels"], f"{where}: labels", AdapterFileError)
        if not isinstance(labels, list) or not all(isinstance(label, str) for label in labels) \
                or len(labels) != head["weight"].shape[0]:
            raise AdapterFileError(f"{where}: its labels metadata should list {head['weight'].shape[0]} label "
                                   "names")
    return {k: v.to(torch.float32) for k, v in head.items()}, labels


# ---- import ------------------------------------------------------------------------------------
def _sites_for(adapter: PeftAdapter, base: Encoder) -> list[Site]:
    """The base sites the adapter's tensors sit on (checked to exist on this base)."""
    by_path = {s.module_path: s for s in reversed(base.sites())}  # a Linear before its input site
    paths: list[str] = []
    for name in adapter.tensors:  # the site module holding the tensor (a LayerNorm copy sits deeper inside)
        path = longest_prefix(name, ((p, p) for p in by_path), strict=True) or name.rsplit(".", 1)[0]
        if path not in paths:
            paths.append(path)
    sites = []
    for path in paths:
        if path not in by_path:
            hf = hf_module(path) or path
            layer = re.match(r"layers\.(\d+)\.", path)
            if layer and int(layer.group(1)) >= base.num_layers:
                raise AdapterFileError(f"{adapter.folder.name}: the adapter targets {hf}, which base {base.name!r} "
                                       f"({base.num_layers} layers) does not have")
            raise AdapterFileError(f"{adapter.folder.name}: the adapter targets {hf}, where the studio has no "
                                   f"{adapter.method} site (it attaches to the attention and feed-forward Linears)")
        sites.append(by_path[path])
    return sites


def peft_setup(folder: str | Path, base: str = "minilm", seed: int = 0) -> Setup:
    """A studio Setup (method + options) that builds the model this PEFT adapter fits."""
    from ..bases import create_base

    adapter = read_peft(folder)
    return _setup_for(adapter, base, seed, create_base(base))


def _setup_for(adapter: PeftAdapter, base_name: str, seed: int, base: Any, base_options: dict | None = None) -> Setup:
    if not isinstance(base, Encoder):
        raise AdapterFileError(f"import PEFT format: base {base_name!r} is not a BERT-style encoder")
    method = get_method(adapter.method)
    options = dict(adapter.options)
    if "targets" in {f.name for f in dataclasses.fields(method.config_cls)}:
        if options.get("targets") is not None:  # the translator named the sites (IA3: input or output)
            try:
                sites = method.selected_sites(method.config(options), base)
            except ConfigError as exc:
                raise AdapterFileError(f"{adapter.folder.name}: {exc}") from None
        else:
            sites = _sites_for(adapter, base)
        bad = [s.id for s in sites if s.kind not in method.site_kinds]
        if bad:
            raise AdapterFileError(f"{adapter.folder.name}: {adapter.method} cannot sit at {', '.join(bad)}")
        options.update(targets_for_sites(sites, method.usable_sites(base), base.num_layers))
    return Setup(base=base_name, method=adapter.method, options=options, seed=seed, base_options=base_options or {})


def import_peft(target: Experiment | Setup, folder: str | Path, dataset: TextDataset | None = None) -> Experiment:
    """Load a PEFT adapter folder into a studio experiment and return it.

    `target` is an Experiment whose method already matches the adapter, or a Setup naming the
    base and seed (its method and options are replaced by the adapter's; `dataset` is then needed).
    """
    adapter = read_peft(folder)
    if isinstance(target, Setup):
        if dataset is None:
            raise ConfigError("import PEFT format: a dataset is needed to build the experiment")
        from ..bases import create_base, uses_dataset_vocabulary

        tokenizer = dataset.make_tokenizer() if uses_dataset_vocabulary(target.base) else None
        base = create_base(target.base, tokenizer, **target.base_options)
        experiment = Experiment(_setup_for(adapter, target.base, target.seed, base, target.base_options), dataset)
    else:
        experiment = target
        _bert_base(experiment, "import")
    _load_into(experiment, adapter)
    return experiment


def _load_into(experiment: Experiment, adapter: PeftAdapter) -> None:
    name = adapter.folder.name
    if not experiment.method.peft_accepts(adapter.method):
        raise AdapterFileError(f"{name}: a {adapter.peft_type} adapter, but the model uses {experiment.setup.method!r}")
    base = experiment.base
    params = dict(base.named_parameters())
    trainable_method = {n for n, p in params.items() if p.requires_grad}
    missing = [n for n in adapter.tensors if n not in params]
    if missing:
        raise AdapterFileError(f"{name}: the model has no {missing[0]} (build it with the adapter's targets: "
                               f"peft_setup gives them)")
    extra = sorted(trainable_method - set(adapter.tensors))
    if extra:
        raise AdapterFileError(f"{name}: the model trains {extra[0]}, which the adapter does not have")
    experiment.method.peft_check_model(base, adapter.options, name)
    # every check before the first copy: a refused folder leaves the model as it was
    for key, value in adapter.tensors.items():
        if tuple(value.shape) != tuple(params[key].shape):
            raise AdapterFileError(f"{name}: {key} has shape {tuple(value.shape)}, the model needs "
                                   f"{tuple(params[key].shape)}")
    head = experiment.model.head
    if adapter.head is not None:
        if tuple(adapter.head["weight"].shape) != tuple(head.weight.shape):
            raise AdapterFileError(f"{name}/{HEAD_FILE}: a head for {adapter.head['weight'].shape[0]} labels of "
                                   f"width {adapter.head['weight'].shape[1]}; the model needs "
                                   f"{tuple(head.weight.shape)}")
        labels = list(experiment.dataset.label_names)
        if adapter.head_labels is not None and adapter.head_labels != labels:
            raise AdapterFileError(f"{name}/{HEAD_FILE}: trained for the labels {_show(adapter.head_labels)}, the "
                                   f"dataset has {_show(labels)}; use that dataset or remove {HEAD_FILE}")
    with torch.no_grad():
        for key, value in adapter.tensors.items():
            params[key].copy_(value)
        if adapter.head is not None:
            head.weight.copy_(adapter.head["weight"])
            head.bias.copy_(adapter.head["bias"])


def _show(labels: list[str], limit: int = 8) -> str:
    shown = ", ".join(repr(label[:30]) for label in labels[:limit])
    return f"[{shown}{', ...' if len(labels) > limit else ''}]"
