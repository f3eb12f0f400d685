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
for all-MiniLM-L6-v2, the [CLS] vector for a plain BERT folder, BERT's pooler output with the base option
pooling=pooler; prompt tuning says which positions it pools). Import reads the head file when it is there, or a
SEQ_CLS adapter's saved classifier (BertForSequenceClassification's, on the pooler). What an import leaves out or
reads differently is kept as notes, which the CLI and the window show; what it cannot reproduce is refused.
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

from ..bases.decoder import DecoderBase
from ..bases.encoder import Encoder
from ..bases.pretrained import POOLINGS
from ..bases.sites import EMBEDDING, KV_PREFIX, LINEAR, Site, longest_prefix
from ..data import TextDataset
from ..errors import AdapterFileError, ConfigError, PeftStudioError
from ..files import safe_io
from ..files.adapter_file import write_atomically
from ..files.adapter_metadata import check_labels
from ..files.limits import float32_number
from ..files.setup_file import check_options
from ..methods import METHODS, Method, get_method
from ..methods.config import MAX_SOFT_TOKENS
from ..methods.method import prompt_slot
from ..methods.module_patterns import MAX_LIST_ENTRIES, MAX_NAME_CHARS, ModuleSelector
from ..methods.peft_format import KEY_PREFIX
from ..methods.targets import targets_for_sites
from ..model.experiment import Experiment, Setup

ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = "adapter_model.safetensors"
HEAD_FILE = "head.safetensors"
HEAD_FORMAT = "peft-studio-head/1"
README_FILE = "README.md"
README_MARK = "exported by PEFT Studio"  # in its first line: how an export knows its own README.md
MAX_CONFIG_BYTES = 1 * 2**20
MAX_WEIGHTS_BYTES = 2 * 2**30
MAX_RANK = 4096
MAX_VIRTUAL_TOKENS = MAX_SOFT_TOKENS  # a sanity bound; the base's positions and the memory check decide
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
def _bert_base(experiment: Experiment, verb: str) -> Encoder | DecoderBase:
    """The experiment's base when PEFT has a model for its family: a BERT-style encoder or a decoder."""
    base = experiment.base
    _check_family(base, experiment.setup.base, verb)
    return base


def _check_family(base: Any, name: str, verb: str) -> None:
    if not isinstance(base, Encoder | DecoderBase):
        raise AdapterFileError(f"{verb} PEFT format: base {name!r} is neither a BERT-style encoder nor a decoder "
                               "(use minilm, a checkpoint folder or tiny-decoder)")


def _decoder_task(experiment: Experiment) -> str:
    """PEFT's task type of a decoder adapter: CAUSAL_LM for the next-token task, SEQ_CLS for a classifier."""
    return "CAUSAL_LM" if experiment.next_token else "SEQ_CLS"


def _base_name_or_path(base: Encoder | DecoderBase) -> str | None:
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
    task, modules = "FEATURE_EXTRACTION", None
    if isinstance(base, DecoderBase):  # transformers' own heads: the LM head, or `score` (saved as PEFT saves it)
        task = _decoder_task(experiment)
        if task in method.peft_unsupported_tasks:  # a folder PEFT itself could not run
            raise AdapterFileError(f"export to PEFT format: task_type {task} with {method.peft_type}: "
                                   f"{method.peft_unsupported_tasks[task]}")
        if task == "SEQ_CLS":  # PEFT's key: inside the tuner's model, or (prompt learning) beside the prompt
            modules = ["score"]
            # a tuner's keys start base_model. (its shared ones too: Uni-LoRA saves only base_model.unilora_theta_d);
            # prompt learning's do not
            inside = any(key.startswith("base_model.") for key in tensors)
            key = f"{KEY_PREFIX if inside else 'base_model.'}score.weight"
            tensors = {**tensors, key: experiment.model.head.weight}
    config = {"peft_type": method.peft_type, "task_type": task,
              "base_model_name_or_path": _base_name_or_path(base), "revision": None, "inference_mode": True,
              "modules_to_save": modules, **settings}
    return config, tensors


def _decoder_readme(experiment: Experiment) -> str:
    """How to load a decoder adapter with transformers + PEFT (the studio's logits are the model's own)."""
    base = experiment.base
    causal = experiment.next_token
    auto = "AutoModelForCausalLM" if causal else "AutoModelForSequenceClassification"
    labels = "" if causal else f", num_labels={experiment.dataset.num_labels}"
    settings = ", ".join(f"{k} = {v}" for k, v in experiment.config.to_dict().items())
    lines = [f"# {experiment.method.title} adapter exported by PEFT Studio", "",
             f"Base: {_base_name_or_path(base) or experiment.setup.base} ({base.cfg.fam.causal_lm_class}); task: "
             + ("next-token (CAUSAL_LM)" if causal else "classification from the last token (SEQ_CLS; labels "
                f"{', '.join(experiment.dataset.label_names)}; the head is `score`, bias-free as transformers')"),
             "", "```python", "from peft import PeftModel", f"from transformers import {auto}",
             f"model = {auto}.from_pretrained(checkpoint{labels})",
             "peft_model = PeftModel.from_pretrained(model, folder).eval()",
             "logits = peft_model(input_ids=ids, attention_mask=mask).logits  # the studio's logits",
             "```", "", *experiment.method.peft_notes(experiment.config, base), "",
             f"Studio settings: method {experiment.setup.method}, {settings}.", ""]
    return "\n".join(lines)


def _readme(experiment: Experiment) -> str:
    """How to use the folder outside the studio: PEFT's hidden states -> the studio's logits."""
    base = experiment.base
    if isinstance(base, DecoderBase):
        return _decoder_readme(experiment)
    notes = experiment.method.peft_notes(experiment.config, base)
    note = export_note(experiment)
    lines = [f"# {experiment.method.title} adapter {README_MARK}", "", *([f"**Note:** {note}.", ""] if note else []),
             f"Base: {experiment.setup.base} ({_base_name_or_path(base) or 'a local BERT folder'}); "
             f"labels: {', '.join(experiment.dataset.label_names)}; pooling: {base.cfg.pooling}.", "",
             "```python", *_loading_lines(experiment), "```", ""]
    if not any(line.startswith("```python") for line in notes):
        pooled = {"cls": "pooled = hidden[:, 0]",
                  "pooler": "pooled = peft_model(input_ids=ids, attention_mask=mask).pooler_output  # BERT's pooler",
                  "mean": "pooled = (hidden * mask[..., None]).sum(1) / mask.sum(1, keepdim=True)"}[base.cfg.pooling]
        notes = [*notes, "The studio's logits from PEFT's outputs (`ids`, `mask` from the checkpoint's tokenizer):",
                 "", "```python",
                 "hidden = peft_model(input_ids=ids, attention_mask=mask).last_hidden_state  # (batch, L, d)",
                 "mask = mask.to(hidden.dtype)", pooled,
                 "head = safetensors.torch.load_file('head.safetensors')",
                 "logits = pooled @ head['weight'].T + head['bias']", "```"]
    settings = ", ".join(f"{k} = {v}" for k, v in experiment.config.to_dict().items())
    return "\n".join([*lines, *notes, "", f"Studio settings: method {experiment.setup.method}, {settings}.", ""])


def export_note(experiment: Experiment) -> str | None:
    """What the user must know about an export PEFT itself cannot load (None when PEFT can)."""
    if _base_name_or_path(experiment.base) is not None:
        return None
    return (f"base {experiment.setup.base!r} has no Hugging Face checkpoint (random weights over the dataset's own "
            "words), so PeftModel.from_pretrained has no model to load this folder onto; it loads back into PEFT "
            f"Studio only (--import-peft with --base {experiment.setup.base}, the same dataset and seed)")
def _loading_lines(experiment: Experiment) -> list[str]:
    """The lines that load the base and the adapter in PEFT: a 4-bit base when the method quantized it (QLoRA),
    with the bitsandbytes settings the studio's NF4 uses, since PEFT on a full-precision base computes else."""
    load = "peft_model = PeftModel.from_pretrained(BertModel.from_pretrained(checkpoint), folder).eval()"
    if not experiment.method.quantizes_base:
        return ["from peft import PeftModel", "from transformers import BertModel", load]
    return ["import torch", "from peft import PeftModel", "from transformers import BertModel, BitsAndBytesConfig",
            "# the studio's QLoRA base: every Linear in NF4, blocks of 64, no double quantization, fp32 compute",
            'four_bit = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", '
            "bnb_4bit_use_double_quant=False, bnb_4bit_compute_dtype=torch.float32)",
            load.replace("from_pretrained(checkpoint)", "from_pretrained(checkpoint, quantization_config=four_bit)")]


def check_peft_export(experiment: Experiment, folder: str | Path | None = None) -> None:
    """Raise AdapterFileError now if export_peft would refuse this experiment, or (given `folder`) could not
    write into that folder — call it before a long training, so the run is never lost."""
    _export_parts(experiment)
    if folder is not None:
        safe_io.check_writable(Path(folder).expanduser(), AdapterFileError, folder=True)
        _export_targets(Path(folder).expanduser())


def _export_targets(folder: Path) -> dict[str, Path]:
    """The four files export_peft writes, inside `folder` and not through a link; a README.md there that
    PEFT Studio did not write is the user's, and is not overwritten."""
    targets = {name: safe_io.file_inside(folder, name, AdapterFileError)
               for name in (ADAPTER_WEIGHTS, HEAD_FILE, README_FILE, ADAPTER_CONFIG)}
    readme = targets[README_FILE]
    if os.path.lexists(readme):
        head, _ = safe_io.read_head(readme, 200, f"{folder.name}/{README_FILE}", AdapterFileError)
        if README_MARK not in head.decode("utf-8", "replace"):
            raise AdapterFileError(f"{readme}: a README.md PEFT Studio did not write is already there; export into "
                                   "another folder (or move it) so that it is not overwritten")
    return targets


def export_peft(experiment: Experiment, folder: str | Path) -> Path:
    """Write adapter_config.json, adapter_model.safetensors, head.safetensors and README.md into `folder`."""
    folder = Path(folder)
    config, tensors = _export_parts(experiment)
    tensors = {k: v.detach().cpu().contiguous().clone() for k, v in tensors.items()}
    if isinstance(experiment.base, DecoderBase):
        return _write_decoder_folder(experiment, folder, config, tensors)
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
    targets = _export_targets(folder)
    write_atomically(targets[ADAPTER_WEIGHTS], lambda temp: save_file(tensors, str(temp), metadata={"format": "pt"}))
    write_atomically(targets[HEAD_FILE], lambda temp: save_file(head_tensors, str(temp), metadata=head_metadata))
    readme = _readme(experiment)
    write_atomically(targets[README_FILE], lambda temp: temp.write_text(readme, encoding="utf-8"))
    text = json.dumps(config, indent=2, sort_keys=True) + "\n"
    write_atomically(targets[ADAPTER_CONFIG], lambda temp: temp.write_text(text, encoding="utf-8"))
    return folder


def _write_decoder_folder(experiment: Experiment, folder: Path, config: dict, tensors: dict) -> Path:
    """A decoder adapter: PEFT's two files (the classifier, if any, inside as `score`) and the README; the label
    names ride in the weights' metadata, which PEFT does not read."""
    metadata = {"format": "pt", "labels": json.dumps(list(experiment.dataset.label_names)),
                "base_fingerprint": experiment.model.base_fingerprint}
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise AdapterFileError(f"{folder}: cannot create the folder ({exc.strerror or exc})") from None
    write_atomically(folder / ADAPTER_WEIGHTS, lambda temp: save_file(tensors, str(temp), metadata=metadata))
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
    notes: list[str] = field(default_factory=list)  # what the import leaves out or reads differently: always said
    layers_to_transform: list[int] | None = None  # PEFT's layer filter: checked against the base (_check_layers)
    target_modules: Any = None  # PEFT's target_modules as written: what PEFT would wrap (_check_targets)
    head_pooling: str | None = None  # the pooling the head was trained on (head.safetensors metadata)
    task_type: str | None = None
    base_options: dict[str, Any] = field(default_factory=dict)  # e.g. SEQ_CLS: BERT's pooler pooling


def _load_safetensors(path: Path, integers: bool = False) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    label = f"{path.parent.name}/{path.name}"
    try:
        return safe_io.read_safetensors(path, label, AdapterFileError, limit=MAX_WEIGHTS_BYTES, integers=integers)
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
    ranges: dict[str, tuple[float, float]] = {}
    for method in METHODS.values():
        if method.peft_type is not None and method.peft_type == config.get("peft_type"):
            fields.update(method.peft_config_fields)
            ranges.update(method.peft_config_ranges)
    for name, (kinds, what) in fields.items():
        if name not in config:
            continue
        value = config[name]
        if not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds):
            raise AdapterFileError(f"{where}: {name} should be {what}, not {json.dumps(value)[:40]}")
    numbers = {"r": (1, MAX_RANK), "num_virtual_tokens": (1, MAX_VIRTUAL_TOKENS),
               "num_transformer_submodules": (1, 2), "token_dim": (1, 2**20), "num_attention_heads": (1, 2**16),
               "num_layers": (1, 2**16), **ranges}
    for name, (low, high) in numbers.items():
        value = config.get(name)
        if value is not None and not low <= value <= high:
            raise AdapterFileError(f"{where}: {name} must be in [{low}, {high}] (got {value})")
    alpha = config.get("lora_alpha")
    if alpha is not None and not (math.isfinite(alpha) and alpha > 0):
        raise AdapterFileError(f"{where}: lora_alpha must be a positive number (got {alpha})")
    for name in ("lora_alpha", "lora_dropout", "d_initial", "vera_dropout"):  # they live in float32 tensors
        if isinstance(config.get(name), float):
            try:
                float32_number(config[name], name, nonzero=True)
            except ConfigError as exc:
                raise AdapterFileError(f"{where}: {exc}") from None
    dropout = config.get("lora_dropout")
    if dropout is not None and not 0 <= dropout < 1:
        raise AdapterFileError(f"{where}: lora_dropout must be in [0, 1) (got {dropout})")
    layers = config.get("layers_to_transform")
    if isinstance(layers, list) and (len(layers) > 2**16 or not all(type(v) is int and 0 <= v < 2**16
                                                                    for v in layers)):
        raise AdapterFileError(f"{where}: layers_to_transform should list layer indices, not {str(layers)[:40]}")
    if type(layers) is int and not 0 <= layers < 2**16:
        raise AdapterFileError(f"{where}: layers_to_transform should be a layer index, not {layers}")
    pattern = config.get("layers_pattern")
    if pattern is not None:  # as PEFT: only with layers_to_transform; on BERT the layer list is "layer"
        patterns = [pattern] if isinstance(pattern, str) else pattern
        if not isinstance(patterns, list) or not all(isinstance(v, str) for v in patterns):
            raise AdapterFileError(f"{where}: layers_pattern should be text or a list of text")
        if config.get("layers_to_transform") is None:
            raise AdapterFileError(f"{where}: layers_pattern is given without layers_to_transform (PEFT refuses it)")
        if "layer" not in patterns:
            raise AdapterFileError(f"{where}: layers_pattern {str(pattern)[:40]} does not name a BERT encoder's "
                                   "layer list ('layer'), so PEFT would select no layer")
    saved = config.get("modules_to_save")
    if isinstance(saved, list) and (len(saved) > MAX_LIST_ENTRIES or not all(isinstance(v, str) for v in saved)):
        raise AdapterFileError(f"{where}: modules_to_save should list at most {MAX_LIST_ENTRIES} module names")
    for name in ("target_modules", "feedforward_modules"):
        ModuleSelector(config.get(name), name, where, AdapterFileError)  # refuses bad lists and unsafe regexes


HEAD_MODULES = ("classifier", "score")  # PEFT's SEQ_CLS modules_to_save (transformers' classification heads)


def accepted_formats() -> str:
    """What --import-peft reads, from the registry: every peft_type with the methods it becomes, and the task types."""
    by_type: dict[str, list[str]] = {}
    for method in METHODS.values():
        if method.peft_type is not None and method.peft_claims_any():
            by_type.setdefault(method.peft_type, []).append(method.title)
    types = "; ".join(f"{peft_type} ({', '.join(titles)})" for peft_type, titles in by_type.items())
    return (f"{types}; task_type FEATURE_EXTRACTION (a head.safetensors beside it is the head) or SEQ_CLS (its "
            "classifier is the head, on BERT's pooler); safetensors weights only")


def _split_keys(raw: dict[str, torch.Tensor], where: str, notes: list[str]) -> tuple[dict[str, torch.Tensor],
                                                                                    dict[str, torch.Tensor]]:
    """Strip PEFT's prefixes and adapter names: 'base_model.model.bert.encoder...lora_A.default.weight' ->
    'encoder...lora_A.weight'. Returns (adapter tensors, saved classification head tensors by leaf); what is
    neither (e.g. a masked-LM head) is left out with a note."""
    out: dict[str, torch.Tensor] = {}
    head: dict[str, torch.Tensor] = {}
    skipped: set[str] = set()
    for key, tensor in raw.items():
        if len(key) > MAX_NAME_CHARS + 40:  # the longest BERT adapter key is about 80 characters
            raise AdapterFileError(f"{where}: a tensor name of {len(key)} characters ({key[:40]}...) is no "
                                   "adapter key")
        name = key.removeprefix(KEY_PREFIX).removeprefix("bert.")
        name = re.sub(r"\.(lora_A|lora_B)\.default\.weight$", r".\1.weight", name)  # a raw state_dict's names
        name = re.sub(r"\.default$", "", name)  # ia3_l.default, vera_lambda_b.default, ...
        name = name.replace(".modules_to_save.default.", ".")  # a raw state_dict's head copy
        if name.startswith("base_model.") and name.split(".")[1] in HEAD_MODULES:  # prompt learning's head key
            name = name.removeprefix("base_model.")
        top, _, leaf = name.partition(".")
        if top in HEAD_MODULES and leaf in ("weight", "bias"):
            head[name] = tensor  # classifier.weight (BERT) or score.weight (a decoder)
            continue
        if ".original_module." in name or name.startswith("cls."):  # BERT's pooler is a base part: kept
            skipped.add(name.split(".original_module.")[0] if ".original_module." in name else top)
            continue
        out[name] = tensor
    if skipped:
        notes.append(f"{where}: left out {', '.join(sorted(skipped))} (not part of the encoder or its "
                     "classifier)")
    return out, head


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


# BertModel's hidden states; *ForSequenceClassification; a decoder's *ForCausalLM (checked against the base on import)
TASK_TYPES = (None, "FEATURE_EXTRACTION", "SEQ_CLS", "CAUSAL_LM")


def read_peft(folder: str | Path) -> PeftAdapter:
    """Read and check a PEFT adapter folder; tensors come back under the studio's names."""
    folder = Path(folder).expanduser()
    config = _read_config(folder)
    where = f"{folder.name}/{ADAPTER_CONFIG}"
    peft_type = config.get("peft_type")
    method = _method_for(peft_type, config, where)
    task_type = config.get("task_type")
    if task_type not in TASK_TYPES:
        raise AdapterFileError(f"{where}: task_type {str(task_type)[:40]!r} is not supported (supported: "
                               f"{', '.join(t for t in TASK_TYPES if t)})")
    if task_type in method.peft_unsupported_tasks:
        raise AdapterFileError(f"{where}: task_type {task_type} with {peft_type}: "
                               f"{method.peft_unsupported_tasks[task_type]}")
    weights = folder / ADAPTER_WEIGHTS
    if not os.path.lexists(weights):
        hint = " (adapter_model.bin is pickle: save with safe_serialization=True)" \
            if (folder / "adapter_model.bin").is_file() else ""
        raise AdapterFileError(f"{folder.name}: no {ADAPTER_WEIGHTS}{hint}")
    notes: list[str] = []
    raw, metadata = _load_safetensors(weights, integers=True)  # PEFT saves some positions as integers (SHiRA's)
    tensors, head = _split_keys(raw, f"{folder.name}/{ADAPTER_WEIGHTS}", notes)
    if not tensors:
        raise AdapterFileError(f"{folder.name}/{ADAPTER_WEIGHTS}: holds no adapter tensors")
    saved_modules = _modules_to_save(config, where)
    options, studio = method.peft_translate(config, tensors, f"{folder.name}/{ADAPTER_WEIGHTS}")
    whole_numbers = [key for key, value in studio.items() if not value.is_floating_point()]
    if whole_numbers:  # a translator reads the integers it expects; any other is no weight
        raise AdapterFileError(f"{folder.name}/{ADAPTER_WEIGHTS}: {whole_numbers[0]} holds integers where a "
                               f"{method.name} weight must hold numbers")
    adapter = PeftAdapter(folder, peft_type, method.name, options,
                          {k: v.to(torch.float32) for k, v in studio.items()}, notes=notes, task_type=task_type,
                          layers_to_transform=_layer_list(config.get("layers_to_transform")),
                          target_modules=config.get("target_modules"))
    adapter.notes.extend(method.peft_import_notes(config, where))
    if task_type == "SEQ_CLS":
        _classifier_head(adapter, head, saved_modules, metadata, f"{folder.name}/{ADAPTER_WEIGHTS}")
    elif head:
        adapter.notes.append(f"{folder.name}/{ADAPTER_WEIGHTS}: left out the saved classifier (task_type "
                             f"{task_type or 'none'}: PEFT loads such an adapter into a model without one)")
    if os.path.lexists(folder / HEAD_FILE):
        if adapter.head is not None:
            adapter.notes.append(f"{folder.name}/{HEAD_FILE}: not used: the adapter's own classifier is the head")
        else:
            adapter.head, adapter.head_labels = _read_head(folder)
        _merge_studio_options(adapter, folder)
        adapter.head_pooling = _head_pooling(folder)
    elif adapter.head is None and task_type != "CAUSAL_LM":
        adapter.notes.append(f"{folder.name}: no classification head ({HEAD_FILE} or a SEQ_CLS classifier): the "
                             "studio's head starts untrained")
    return adapter


def _head_pooling(folder: Path) -> str | None:
    _, metadata = _load_safetensors(folder / HEAD_FILE)
    pooling = metadata.get("pooling")
    if pooling is not None and pooling not in POOLINGS:
        raise AdapterFileError(f"{folder.name}/{HEAD_FILE}: its pooling metadata should be one of "
                               f"{', '.join(POOLINGS)} (got {pooling[:20]!r})")
    return pooling


def _modules_to_save(config: dict[str, Any], where: str) -> list[str]:
    """modules_to_save must be transformers' classification head (SEQ_CLS): any other module would be a full
    trainable copy of a base part, which the studio does not make."""
    saved = config.get("modules_to_save") or []
    if not all(isinstance(name, str) for name in saved):
        raise AdapterFileError(f"{where}: modules_to_save should list module names")
    others = [name for name in saved if name.split(".")[-1] not in HEAD_MODULES]
    if others:
        raise AdapterFileError(f"{where}: modules_to_save {others} is not supported: the studio trains the adapter "
                               "and a classification head, not full copies of base modules")
    return saved


def _classifier_head(adapter: PeftAdapter, head: dict[str, torch.Tensor], saved: list[str],
                     metadata: dict[str, str], where: str) -> None:
    """A SEQ_CLS adapter's saved classifier becomes the studio's head: BertForSequenceClassification's
    `classifier` (weight and bias, read on BERT's pooler: the base then pools with its pooler), or a decoder's
    `score` (bias-free, read on the last token; the label names the studio stores beside it, if any)."""
    module = "score" if any(key.startswith("score.") for key in head) else "classifier"
    leaves = {key.partition(".")[2]: tensor for key, tensor in head.items() if key.startswith(f"{module}.")}
    wanted = {"weight"} if module == "score" else {"weight", "bias"}
    if set(leaves) != wanted:
        missing = sorted(wanted - set(leaves))
        what = "its classifier" if not leaves else f"the classifier's {', '.join(missing) or 'extra tensors'}"
        raise AdapterFileError(f"{where}: a SEQ_CLS adapter without {what} (modules_to_save {saved}): "
                               "transformers would draw a random head on load, so nothing can reproduce its "
                               "predictions")
    safe_io.expect_shape(leaves["weight"], 2, f"{where}: {module}.weight", AdapterFileError, "(labels, width)")
    labels = leaves["weight"].shape[0]
    if module == "classifier":
        safe_io.expect_shape(leaves["bias"], 1, f"{where}: classifier.bias", AdapterFileError, "(labels,)")
        if leaves["bias"].shape[0] != labels:
            raise AdapterFileError(f"{where}: classifier.bias has {leaves['bias'].shape[0]} entries for {labels} "
                                   "labels")
        adapter.base_options["pooling"] = "pooler"
        adapter.notes.append(f"{where}: task_type SEQ_CLS: the classifier ({labels} labels, in the dataset's label "
                             "order: a PEFT folder names none) reads BERT's pooler, tanh(dense([CLS])), so the base "
                             "pools with its pooler")
    elif "labels" in metadata:
        names = safe_io.loads_json(metadata["labels"], f"{where}: labels", AdapterFileError)
        if not isinstance(names, list) or len(names) != labels or not all(isinstance(n, str) for n in names):
            raise AdapterFileError(f"{where}: its labels metadata should list {labels} label names")
        adapter.head_labels = names
    adapter.head = {k: v.to(torch.float32) for k, v in leaves.items()}


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
    merged = {key: saved[key] for key in sorted(fields - {"targets", "layers", "freeze_head"} - set(adapter.options))
              if key in saved}
    try:  # typed and in range as a setup file's options are, before they reach the method
        check_options(adapter.method, {**adapter.options, **merged})
    except PeftStudioError as exc:
        raise AdapterFileError(f"{where}: its config metadata: {exc}") from None
    adapter.options.update(merged)


def _layer_list(value: Any) -> list[int] | None:
    """layers_to_transform as PEFT reads it: an index, or a list of them (duplicates are one layer)."""
    if value is None:
        return None
    return sorted({value} if type(value) is int else set(value))


def _check_layers(adapter: PeftAdapter, base: Encoder) -> None:
    """PEFT puts modules on the layers layers_to_transform names, and only there: a layer the base lacks, or
    a tensor on a layer the list leaves out (PEFT would not load it), is refused by name rather than guessed."""
    where = f"{adapter.folder.name}/{ADAPTER_CONFIG}"
    layers = adapter.layers_to_transform
    if layers is None:
        return
    beyond = [i for i in layers if i >= base.num_layers]
    if beyond:
        raise AdapterFileError(f"{where}: layers_to_transform names layer {beyond[0]}; base {base.name!r} has "
                               f"layers 0-{base.num_layers - 1}")
    every_bias = adapter.options.get("bias") == "all"  # LoRA's bias="all" trains the base's biases in every layer
    numbered = (re.search(r"(?:^|\.)(?:layers|h)\.(\d+)\.", name) for name in adapter.tensors
                if not (every_bias and name.endswith(".bias")))  # BERT, Llama, GPT-2
    used = sorted({int(m.group(1)) for m in numbered if m})
    outside = [i for i in used if i not in layers]
    if outside:
        raise AdapterFileError(f"{where}: the adapter holds tensors for layer {outside[0]}, which its "
                               f"layers_to_transform {layers[:8]} leaves out (PEFT would not load them)")


def _peft_selects(selector: ModuleSelector, base: Any, site: Site, layers: list[int] | None) -> bool:
    """PEFT's check_target_module_exists: a regex or a name equal to the module's whole name selects it whatever
    layers_to_transform says; a name matching a dotted suffix selects it only inside a listed layer."""
    name = base.hf_module(site.module_path) or site.module_path
    if not selector.matches(name):
        return False
    if layers is None or selector.names is None or name in selector.names:
        return True
    return site.layer is not None and site.layer in layers


def _check_targets(adapter: PeftAdapter, base: Encoder, sites: list[Site]) -> None:
    """PEFT wraps exactly the Linears target_modules (and layers_to_transform) select, then loads the saved
    tensors into them: a tensor for a module it does not select is dropped, a selected module without tensors
    keeps a fresh, untrained part. Either way PEFT's model would differ from what the tensors alone describe,
    so both are refused by name (LoRA, DoRA, VeRA, PVeRA, TinyLoRA: parts on Linears or tables)."""
    if adapter.peft_type not in ("LORA", "VERA", "PVERA", "TINYLORA"):
        return
    where = f"{adapter.folder.name}/{ADAPTER_CONFIG}"
    selector = ModuleSelector(adapter.target_modules, "target_modules", where, AdapterFileError)
    if not selector.given or selector.names == []:
        raise AdapterFileError(f"{where}: target_modules is empty; PEFT wraps nothing (or falls back to its defaults)")
    layers = adapter.layers_to_transform
    kinds = {LINEAR, EMBEDDING} & set(get_method(adapter.method).site_kinds)  # LoRA also adapts embedding tables
    selected = {s.module_path for s in base.sites() if s.kind in kinds and _peft_selects(selector, base, s, layers)}
    held = {s.module_path for s in sites}
    dropped, fresh = sorted(held - selected), sorted(selected - held)
    if dropped:
        raise AdapterFileError(f"{where}: the adapter holds tensors for {base.hf_module(dropped[0]) or dropped[0]}, "
                               "which target_modules does not select (PEFT would not load them)")
    if fresh:
        raise AdapterFileError(f"{where}: target_modules selects {base.hf_module(fresh[0]) or fresh[0]}, for which "
                               "the adapter holds no tensors (PEFT would put a fresh, untrained part there)")


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
    if "labels" in metadata:  # typed as an adapter file's labels are (adapter_metadata.check_labels)
        labels = list(check_labels(safe_io.loads_json(metadata["labels"], f"{where}: labels", AdapterFileError,
                                                      max_depth=4), where))
        if len(labels) != head["weight"].shape[0]:
            raise AdapterFileError(f"{where}: its labels metadata should list {head['weight'].shape[0]} label "
                                   "names")
    return {k: v.to(torch.float32) for k, v in head.items()}, labels


# ---- import ------------------------------------------------------------------------------------
def _sites_for(adapter: PeftAdapter, base: Encoder) -> list[Site]:
    """The base sites the adapter's tensors sit on (checked to exist on this base)."""
    by_path = {s.module_path: s for s in reversed(base.sites())}  # a Linear before its input site
    base_tensors = dict(base.named_parameters())  # a trained base bias (LoRA's bias all) is on no site
    paths: list[str] = []
    for name in adapter.tensors:  # the site module holding the tensor (a LayerNorm copy sits deeper inside)
        if name in base_tensors or name.startswith("extras."):  # a base bias, a method's shared part: on no site
            continue
        path = longest_prefix(name, ((p, p) for p in by_path), strict=True) or name.rsplit(".", 1)[0]
        if path not in paths:
            paths.append(path)
    sites = []
    for path in paths:
        if path not in by_path:
            hf = base.hf_module(path) or path
            layer = re.search(r"(?:layers|h)\.(\d+)\.", path)
            if layer and int(layer.group(1)) >= base.num_layers:
                raise AdapterFileError(f"{adapter.folder.name}: the adapter targets {hf}, which base {base.name!r} "
                                       f"({base.num_layers} layers) does not have")
            raise AdapterFileError(f"{adapter.folder.name}: the adapter targets {hf}, where the studio has no "
                                   f"{adapter.method} site (it attaches to the attention and feed-forward Linears)")
        sites.append(by_path[path])
    return sites


def peft_setup(folder: str | Path, base: str = "minilm", seed: int = 0) -> Setup:
    """A studio Setup (method, options and base options) that builds the model this PEFT adapter fits."""
    adapter = read_peft(folder)
    base_options = _base_options(adapter, base, {})
    return _setup_for(adapter, base, seed, _create(adapter, base, None, base_options), base_options)


def _base_options(adapter: PeftAdapter, base_name: str, given: dict[str, Any]) -> dict[str, Any]:
    """The setup's base options plus the ones the adapter needs (SEQ_CLS: BERT's pooler), checked to apply."""
    from ..bases import base_class

    wanted = {k: v for k, v in adapter.base_options.items() if given.get(k) != v}
    if wanted and not set(wanted) <= set(base_class(base_name).option_choices):
        raise AdapterFileError(f"{adapter.folder.name}: task_type {adapter.task_type} needs BERT's pooler, which "
                               f"BertForSequenceClassification classifies from; base {base_name!r} has none (use "
                               "minilm or a BERT checkpoint folder with pooler.dense)")
    return {**given, **adapter.base_options}


def _create(adapter: PeftAdapter, base_name: str, tokenizer: Any, base_options: dict[str, Any]) -> Any:
    from ..bases import create_base

    try:
        return create_base(base_name, tokenizer, **base_options)
    except ConfigError as exc:
        if not adapter.base_options:
            raise
        raise AdapterFileError(f"{adapter.folder.name}: task_type {adapter.task_type}: {exc}") from None


def _check_task(adapter: PeftAdapter, base: Any) -> None:
    """CAUSAL_LM is a decoder's language-model task: a BERT-style encoder has no LM head to load it into."""
    if adapter.task_type == "CAUSAL_LM" and not isinstance(base, DecoderBase):
        raise AdapterFileError(f"{adapter.folder.name}/{ADAPTER_CONFIG}: task_type CAUSAL_LM adapts a decoder's "
                               f"next-token predictions; base {base.name!r} is an encoder (give a decoder "
                               "checkpoint folder)")


def _setup_for(adapter: PeftAdapter, base_name: str, seed: int, base: Any, base_options: dict | None = None) -> Setup:
    _check_family(base, base_name, "import")
    _check_task(adapter, base)
    _check_layers(adapter, base)
    _place_prompt(adapter, base)
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
            _check_targets(adapter, base, sites)
        bad = [s.id for s in sites if s.kind not in method.site_kinds]
        if bad:
            raise AdapterFileError(f"{adapter.folder.name}: {adapter.method} cannot sit at {', '.join(bad)}")
        options.update(targets_for_sites(sites, method.usable_sites(base), base.num_layers))
    return Setup(base=base_name, method=adapter.method, options=options, seed=seed, base_options=base_options or {})


def _place_prompt(adapter: PeftAdapter, base: Any) -> None:
    """A soft prompt sits in the base's own prompt slot (`model.prompt` in a decoder, not BERT's embeddings), a
    prefix in each layer's own key/value slot (`model.layers.i.self_attn.kv_prefix` in a Llama)."""
    slot = prompt_slot(base)
    kv_slots = {s.layer: s.module_path for s in base.site_index().sites if s.kind == KV_PREFIX}
    placed = {}
    for name, value in adapter.tensors.items():
        prefix = re.fullmatch(r"layers\.(\d+)\.attn\.kv_prefix\.(\w+)", name)
        if slot is not None and name.startswith("embeddings.prompt."):
            name = f"{slot}.{name.removeprefix('embeddings.prompt.')}"
        elif prefix is not None and int(prefix[1]) in kv_slots:
            name = f"{kv_slots[int(prefix[1])]}.{prefix[2]}"
        placed[name] = value
    adapter.tensors = placed


def import_peft(target: Experiment | Setup, folder: str | Path, dataset: TextDataset | None = None) -> Experiment:
    """Load a PEFT adapter folder into a studio experiment and return it; `experiment.notes` then holds what the
    import left out or reads differently (the CLI prints each on stderr, the window shows them).

    `target` is an Experiment whose method already matches the adapter, or a Setup naming the
    base and seed (its method and options are replaced by the adapter's; `dataset` is then needed).
    """
    adapter = read_peft(folder)
    if isinstance(target, Setup):
        if dataset is None:
            raise ConfigError("import PEFT format: a dataset is needed to build the experiment")
        from ..bases import uses_dataset_vocabulary

        tokenizer = dataset.make_tokenizer() if uses_dataset_vocabulary(target.base) else None
        base_options = _base_options(adapter, target.base, target.base_options)
        base = _create(adapter, target.base, tokenizer, base_options)
        experiment = Experiment(_setup_for(adapter, target.base, target.seed, base, base_options), dataset)
    else:
        experiment = target
        base = _bert_base(experiment, "import")
        _check_task(adapter, base)
        _place_prompt(adapter, base)
        for key, value in adapter.base_options.items():
            if getattr(experiment.base.cfg, key, None) != value:
                raise AdapterFileError(f"{adapter.folder.name}: task_type {adapter.task_type} classifies with "
                                       f"{key} {value!r}; the model uses {getattr(experiment.base.cfg, key, None)!r} "
                                       f"(build it with base option {key}={value}: peft_setup gives it)")
    _load_into(experiment, adapter)
    experiment.notes = list(adapter.notes)
    return experiment


def _load_into(experiment: Experiment, adapter: PeftAdapter) -> None:
    name = adapter.folder.name
    if not experiment.method.peft_accepts(adapter.method):
        raise AdapterFileError(f"{name}: a {adapter.peft_type} adapter, but the model uses {experiment.setup.method!r}")
    base = experiment.base
    params = dict(base.named_parameters())
    # a method's shared parts (a bank all its layers read, ...) load too, under 'extras.<name>'
    params.update({f"extras.{n}": p for n, p in experiment.model.extras.named_parameters()})
    trainable_method = {n for n, p in params.items() if p.requires_grad}
    for key in list(params):  # a base bias under a wrapping layer answers to the base's own name too
        params.setdefault(key.replace(".base_layer.", "."), params[key])
    missing = [n for n in adapter.tensors if n not in params]
    if missing:
        raise AdapterFileError(f"{name}: the model has no {missing[0]} (build it with the adapter's targets: "
                               f"peft_setup gives them)")
    given = {id(params[n]) for n in adapter.tensors}
    extra = sorted(n for n in trainable_method if id(params[n]) not in given)
    if extra:
        raise AdapterFileError(f"{name}: the model trains {extra[0]}, which the adapter does not have")
    experiment.method.peft_check_model(base, adapter.options, name)
    _check_layers(adapter, base)
    pooling = getattr(getattr(base, "cfg", None), "pooling", None)
    if adapter.head is not None and adapter.head_pooling is not None and adapter.head_pooling != pooling:
        raise AdapterFileError(f"{name}/{HEAD_FILE}: the head was trained on {adapter.head_pooling} pooling, the "
                               f"base pools with {pooling}: its predictions would be wrong")
    # every check before the first copy: a refused folder leaves the model as it was
    for key, value in adapter.tensors.items():
        if tuple(value.shape) != tuple(params[key].shape):
            raise AdapterFileError(f"{name}: {key} has shape {tuple(value.shape)}, the model needs "
                                   f"{tuple(params[key].shape)}")
    head = experiment.model.head
    if adapter.head is not None and head is None:  # the next-token task predicts with the LM head
        adapter.notes.append(f"{name}: left out its classification head (score, {adapter.head['weight'].shape[0]} "
                             "labels): the next-token task predicts with the model's LM head")
        adapter.head = None
    if adapter.head is not None:
        if head is None:
            raise AdapterFileError(f"{name}: the adapter has a classification head; the model predicts next tokens")
        if tuple(adapter.head["weight"].shape) != tuple(head.weight.shape):
            raise AdapterFileError(f"{name}: a head for {adapter.head['weight'].shape[0]} labels of "
                                   f"width {adapter.head['weight'].shape[1]}; the model needs "
                                   f"{tuple(head.weight.shape)} ({experiment.dataset.num_labels} labels)")
        if ("bias" in adapter.head) != (head.bias is not None):
            has = "has a bias" if "bias" in adapter.head else "has no bias"
            raise AdapterFileError(f"{name}: its classification head {has}, the model's "
                                   f"{'does not' if head.bias is None else 'does'}: it was made for another family")
        labels = list(experiment.dataset.label_names)
        if adapter.head_labels is not None and adapter.head_labels != labels:
            raise AdapterFileError(f"{name}/{HEAD_FILE}: trained for the labels {_show(adapter.head_labels)}, the "
                                   f"dataset has {_show(labels)}; use that dataset or remove {HEAD_FILE}")
    with torch.no_grad():
        for key, value in adapter.tensors.items():
            params[key].copy_(value)
        if adapter.head is not None:
            head.weight.copy_(adapter.head["weight"])
            if head.bias is not None:
                head.bias.copy_(adapter.head["bias"])


def _show(labels: list[str], limit: int = 8) -> str:
    shown = ", ".join(repr(label[:30]) for label in labels[:limit])
    return f"[{shown}{', ...' if len(labels) > limit else ''}]"
