"""Hugging Face PEFT adapter folders: export a studio adapter, import one trained with PEFT.

A PEFT folder is adapter_config.json + adapter_model.safetensors, with PEFT's key names for a
`BertModel` (feature extraction):

    base_model.model.encoder.layer.0.attention.self.query.lora_A.weight   LoRA A (r, in)
    base_model.model.encoder.layer.0.attention.self.key.ia3_l             IA3 (out, 1)
    base_model.model.encoder.layer.0.output.dense.ia3_l                   IA3 feed-forward (1, in)
    prompt_embeddings                                                     prompt tuning (n, d)

so `PeftModel.from_pretrained(BertModel.from_pretrained(checkpoint), folder)` loads an export.
The classification head is not part of a feature-extraction adapter: it goes beside it as
head.safetensors (`weight` [labels, d], `bias` [labels]; label names, pooling and the studio setup
in its metadata). Outside the studio: logits = head(pool(hidden states)), with the pooling the
base uses (mean over real tokens for all-MiniLM-L6-v2, the [CLS] vector for a plain BERT folder;
BERT's own pooler Linear + tanh is not used). Import reads the head file when it is there.
Nothing here executes code from the files (safetensors + JSON only), and peft is not needed.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from .bases.encoder import Encoder
from .bases.hf_names import hf_module, studio_module
from .bases.sites import ACTIVATION, LINEAR, Site
from .data import TextDataset
from .errors import AdapterFileError, ConfigError
from .experiment import Experiment, Setup
from .jsonfile import read_json_object
from .methods.ia3 import ChannelScale
from .methods.lora import LoraLinear
from .methods.prompt_tuning import SoftPrompt
from .store import write_atomically

ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = "adapter_model.safetensors"
HEAD_FILE = "head.safetensors"
HEAD_FORMAT = "peft-studio-head/1"
KEY_PREFIX = "base_model.model."
PEFT_TYPES = {"lora": "LORA", "qlora": "LORA", "ia3": "IA3", "prompt-tuning": "PROMPT_TUNING"}
STUDIO_METHODS = {"LORA": "lora", "IA3": "ia3", "PROMPT_TUNING": "prompt-tuning"}
# PEFT's prefix tuning on a BERT model moves the real tokens to positions n..n+L-1 (transformers counts the
# prefix keys as past tokens); the studio's prefix leaves positions alone, so the two compute different things.
PREFIX_DIFFERS = ("PEFT's prefix tuning on a BERT model shifts the real tokens' positions by the prefix length "
                  "(transformers counts the prefix as past tokens) while the studio's prefix keeps them, so the "
                  "outputs would differ: prefix tuning is not exchanged")
_FFN_ACT = re.compile(r"layers\.(\d+)\.ffn\.act_scale")


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


def _modules(base: Encoder, kind: type) -> list[tuple[str, Any]]:
    return [(path, module) for path, module in base.named_modules() if isinstance(module, kind)]


def _hf(path: str) -> str:
    name = hf_module(path)
    if name is None:
        raise AdapterFileError(f"export to PEFT format: {path} has no Hugging Face BERT module name")
    return name


def _lora_export(base: Encoder, config: Any) -> tuple[dict, dict[str, torch.Tensor]]:
    tensors: dict[str, torch.Tensor] = {}
    targets = []
    for path, module in _modules(base, LoraLinear):
        name = _hf(path)
        targets.append(name)
        tensors[f"{KEY_PREFIX}{name}.lora_A.weight"] = module.lora_A
        tensors[f"{KEY_PREFIX}{name}.lora_B.weight"] = module.lora_B
    settings = {"r": config.r, "lora_alpha": config.alpha, "lora_dropout": config.dropout, "target_modules": targets,
                "bias": "none", "fan_in_fan_out": False, "init_lora_weights": True, "use_rslora": False,
                "use_dora": False, "layers_to_transform": None, "rank_pattern": {}, "alpha_pattern": {}}
    return settings, tensors


def _ia3_export(base: Encoder) -> tuple[dict, dict[str, torch.Tensor]]:
    tensors: dict[str, torch.Tensor] = {}
    targets, feedforward = [], []
    for path, module in _modules(base, ChannelScale):
        match = _FFN_ACT.fullmatch(path)
        if match:  # PEFT scales the input of a feed-forward module: the input of output.dense is the activation
            name = f"encoder.layer.{match.group(1)}.output.dense"
            feedforward.append(name)
            tensor = module.ia3_scale.view(1, -1)
        elif module.inner is not None:
            name = _hf(path)
            tensor = module.ia3_scale.view(-1, 1)
        else:
            raise AdapterFileError(f"export to PEFT format: IA3 at {path} has no PEFT equivalent")
        if name in targets:
            raise AdapterFileError(f"export to PEFT format: PEFT allows one IA3 vector per module, but {name} has "
                                   "two (the feed-forward activation and the down projection's output)")
        targets.append(name)
        tensors[f"{KEY_PREFIX}{name}.ia3_l"] = tensor
    settings = {"target_modules": targets, "feedforward_modules": feedforward, "fan_in_fan_out": False,
                "init_ia3_weights": True}
    return settings, tensors


def _prompt_settings(base: Encoder, tokens: int) -> dict:
    cfg = base.cfg
    return {"num_virtual_tokens": tokens, "token_dim": cfg.d_model, "num_transformer_submodules": 1,
            "num_attention_heads": cfg.n_heads, "num_layers": cfg.n_layers}


def _prompt_export(base: Encoder) -> tuple[dict, dict[str, torch.Tensor]]:
    modules = _modules(base, SoftPrompt)
    if not modules:
        raise AdapterFileError("export to PEFT format: the model has no soft prompt")
    prompt = modules[0][1].prompt
    settings = {**_prompt_settings(base, prompt.shape[0]), "prompt_tuning_init": "RANDOM",
                "prompt_tuning_init_text": None, "tokenizer_name_or_path": None}
    return settings, {"prompt_embeddings": prompt}


def _export_parts(experiment: Experiment) -> tuple[dict, dict[str, torch.Tensor]]:
    method = experiment.setup.method
    if method == "prefix-tuning":
        raise AdapterFileError(f"export to PEFT format: {PREFIX_DIFFERS}")
    if method not in PEFT_TYPES:
        raise AdapterFileError(f"export to PEFT format: method {method!r} has no PEFT adapter format here "
                               f"(supported: {', '.join(PEFT_TYPES)})")
    base = _bert_base(experiment, "export to")
    if method in ("lora", "qlora"):
        settings, tensors = _lora_export(base, experiment.config)
    elif method == "ia3":
        settings, tensors = _ia3_export(base)
    else:
        settings, tensors = _prompt_export(base)
    config = {"peft_type": PEFT_TYPES[method], "task_type": "FEATURE_EXTRACTION",
              "base_model_name_or_path": _base_name_or_path(base), "revision": None, "inference_mode": True,
              "modules_to_save": None, **settings}
    return config, tensors


def check_peft_export(experiment: Experiment) -> None:
    """Raise AdapterFileError now if export_peft would refuse this experiment (e.g. before a long training)."""
    _export_parts(experiment)


def export_peft(experiment: Experiment, folder: str | Path) -> Path:
    """Write adapter_config.json, adapter_model.safetensors and head.safetensors into `folder`."""
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
    folder.mkdir(parents=True, exist_ok=True)
    write_atomically(folder / ADAPTER_WEIGHTS, lambda temp: save_file(tensors, str(temp), metadata={"format": "pt"}))
    write_atomically(folder / HEAD_FILE, lambda temp: save_file(head_tensors, str(temp), metadata=head_metadata))
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
    try:
        with safe_open(str(path), framework="pt") as handle:
            return {k: handle.get_tensor(k) for k in handle.keys()}, dict(handle.metadata() or {})  # noqa: SIM118
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise AdapterFileError(f"{path.parent.name}/{path.name}: not a readable safetensors file ({exc})") from None


def _read_config(folder: Path) -> dict[str, Any]:
    path = folder / ADAPTER_CONFIG
    if not folder.is_dir():
        raise AdapterFileError(f"{folder}: no such folder (a PEFT adapter folder holds {ADAPTER_CONFIG} and "
                               f"{ADAPTER_WEIGHTS})")
    if not path.is_file():
        raise AdapterFileError(f"{folder.name}: no {ADAPTER_CONFIG} (a PEFT adapter folder holds {ADAPTER_CONFIG} and "
                               f"{ADAPTER_WEIGHTS})")
    return read_json_object(path, f"{folder.name}/{ADAPTER_CONFIG}", AdapterFileError)


def _module_matches(name: str, spec: Any) -> bool:
    """PEFT's rule: a regex string must match the whole name; a list entry matches the name or a dotted suffix."""
    if spec is None:
        return False
    if isinstance(spec, str):
        return re.fullmatch(spec, name) is not None
    return any(name == entry or name.endswith("." + entry) for entry in spec)


def _split_keys(raw: dict[str, torch.Tensor], where: str, notes: list[str]) -> dict[str, torch.Tensor]:
    """Strip PEFT's prefixes and adapter names: 'base_model.model.bert.encoder...lora_A.default.weight' ->
    'encoder...lora_A.weight'. Saved modules_to_save copies (e.g. a classifier) are left out, with a note."""
    out: dict[str, torch.Tensor] = {}
    skipped: set[str] = set()
    for key, tensor in raw.items():
        name = key.removeprefix(KEY_PREFIX).removeprefix("bert.")
        name = re.sub(r"\.(lora_A|lora_B)\.default\.weight$", r".\1.weight", name)  # a raw state_dict's names
        name = re.sub(r"\.ia3_l\.default$", ".ia3_l", name)
        if ".modules_to_save." in name or name.startswith(("classifier.", "pooler.", "cls.")):
            skipped.add(name.split(".")[0])
            continue
        out[name] = tensor
    if skipped:
        notes.append(f"{where}: left out {', '.join(sorted(skipped))} (not part of the encoder adapter; the studio "
                     f"head comes from {HEAD_FILE} when present)")
    return out


def _unknown(where: str, key: str, what: str) -> AdapterFileError:
    return AdapterFileError(f"{where}: {key}: {what}")


def _translate_lora(config: dict, tensors: dict[str, torch.Tensor], where: str) -> tuple[dict, dict]:
    for flag in ("use_dora", "use_qalora"):
        if config.get(flag):
            raise AdapterFileError(f"{where}: {flag} is not supported (plain LoRA only)")
    if config.get("bias", "none") != "none" or config.get("lora_bias"):
        raise AdapterFileError(f"{where}: bias {config.get('bias')!r} trains base biases too; only bias 'none' is "
                               "supported")
    if config.get("rank_pattern") or config.get("alpha_pattern"):
        raise AdapterFileError(f"{where}: rank_pattern / alpha_pattern (per-module ranks) are not supported")
    if config.get("fan_in_fan_out"):
        raise AdapterFileError(f"{where}: fan_in_fan_out is for GPT-2 style Conv1D layers, not a BERT encoder")
    r = config.get("r")
    if not isinstance(r, int) or r < 1:
        raise AdapterFileError(f"{where}: r must be a positive integer (got {r!r})")
    alpha = float(config.get("lora_alpha", 8))
    if config.get("use_rslora"):  # rsLoRA scales by alpha / sqrt(r): the same scale as alpha * sqrt(r) / r
        alpha *= math.sqrt(r)
    studio: dict[str, torch.Tensor] = {}
    for key, tensor in tensors.items():
        match = re.fullmatch(r"(.+)\.(lora_A|lora_B)\.weight", key)
        if not match:
            raise _unknown(where, key, "not a LoRA tensor (expected <module>.lora_A.weight / lora_B.weight)")
        module = studio_module(match.group(1))
        if module is None:
            raise _unknown(where, key, "unknown target module: not a Linear of a BERT encoder")
        studio[f"{module}.{match.group(2)}"] = tensor
        if match.group(2) == "lora_A" and tensor.shape[0] != r:
            raise _unknown(where, key, f"has rank {tensor.shape[0]}, adapter_config.json says r={r}")
    options = {"r": r, "alpha": alpha, "dropout": float(config.get("lora_dropout", 0.0))}
    return options, studio


def _translate_ia3(config: dict, tensors: dict[str, torch.Tensor], where: str) -> tuple[dict, dict]:
    feedforward = config.get("feedforward_modules")
    studio: dict[str, torch.Tensor] = {}
    for key, tensor in tensors.items():
        match = re.fullmatch(r"(.+)\.ia3_l", key)
        if not match:
            raise _unknown(where, key, "not an IA3 tensor (expected <module>.ia3_l)")
        name = match.group(1)
        module = studio_module(name)
        if module is None:
            raise _unknown(where, key, "unknown target module: not a Linear of a BERT encoder")
        is_ff = _module_matches(name, feedforward)
        if is_ff != (tensor.dim() == 2 and tensor.shape[0] == 1 and tensor.shape[1] != 1):
            shape = tuple(tensor.shape)
            raise _unknown(where, key, f"shape {shape} does not fit a {'feed-forward' if is_ff else 'plain'} IA3 "
                                       f"module ({'(1, in)' if is_ff else '(out, 1)'})")
        if is_ff:  # the input of output.dense is the feed-forward activation
            layer = re.fullmatch(r"layers\.(\d+)\.ffn\.down", module)
            if layer is None:
                raise _unknown(where, key, "feed-forward IA3 scales this module's input, which the studio has no "
                                           "site for (it scales the activation = the input of output.dense)")
            studio[f"layers.{layer.group(1)}.ffn.act_scale.ia3_scale"] = tensor.reshape(-1)
        else:
            studio[f"{module}.ia3_scale"] = tensor.reshape(-1)
    return {}, studio


def _translate_prompt(config: dict, tensors: dict[str, torch.Tensor], where: str) -> tuple[dict, dict]:
    if set(tensors) != {"prompt_embeddings"}:
        raise AdapterFileError(f"{where}: prompt tuning expects one tensor prompt_embeddings, found "
                               f"{', '.join(sorted(tensors)) or 'none'}")
    if config.get("num_transformer_submodules", 1) != 1:
        raise AdapterFileError(f"{where}: num_transformer_submodules {config.get('num_transformer_submodules')} "
                               "is for encoder-decoder models; a BERT encoder has 1")
    prompt = tensors["prompt_embeddings"]
    if prompt.dim() != 2:
        raise AdapterFileError(f"{where}: prompt_embeddings has shape {tuple(prompt.shape)}, expected (n, d)")
    return {"tokens": int(prompt.shape[0])}, {"embeddings.prompt.prompt": prompt}


TRANSLATORS = {"LORA": _translate_lora, "IA3": _translate_ia3, "PROMPT_TUNING": _translate_prompt}


def read_peft(folder: str | Path) -> PeftAdapter:
    """Read and check a PEFT adapter folder; tensors come back under the studio's names."""
    folder = Path(folder).expanduser()
    config = _read_config(folder)
    where = f"{folder.name}/{ADAPTER_CONFIG}"
    peft_type = config.get("peft_type")
    if peft_type == "PREFIX_TUNING":
        raise AdapterFileError(f"{where}: {PREFIX_DIFFERS}")
    if peft_type not in TRANSLATORS:
        raise AdapterFileError(f"{where}: peft_type {peft_type!r} is not supported (supported: "
                               f"{', '.join(TRANSLATORS)})")
    weights = folder / ADAPTER_WEIGHTS
    if not weights.is_file():
        hint = " (adapter_model.bin is pickle: save with safe_serialization=True)" \
            if (folder / "adapter_model.bin").is_file() else ""
        raise AdapterFileError(f"{folder.name}: no {ADAPTER_WEIGHTS}{hint}")
    notes: list[str] = []
    raw, _ = _load_safetensors(weights)
    tensors = _split_keys(raw, f"{folder.name}/{ADAPTER_WEIGHTS}", notes)
    if not tensors:
        raise AdapterFileError(f"{folder.name}/{ADAPTER_WEIGHTS}: holds no adapter tensors")
    options, studio = TRANSLATORS[peft_type](config, tensors, f"{folder.name}/{ADAPTER_WEIGHTS}")
    adapter = PeftAdapter(folder, peft_type, STUDIO_METHODS[peft_type], options,
                          {k: v.to(torch.float32) for k, v in studio.items()}, notes=notes)
    if (folder / HEAD_FILE).is_file():
        head, metadata = _load_safetensors(folder / HEAD_FILE)
        if set(head) != {"weight", "bias"}:
            raise AdapterFileError(f"{folder.name}/{HEAD_FILE}: expected tensors weight and bias, found "
                                   f"{', '.join(sorted(head))}")
        adapter.head = {k: v.to(torch.float32) for k, v in head.items()}
        try:
            labels = json.loads(metadata.get("labels", "null"))
        except json.JSONDecodeError:
            labels = None
        adapter.head_labels = labels if isinstance(labels, list) else None
    return adapter


# ---- import ------------------------------------------------------------------------------------
def _sites_for(adapter: PeftAdapter, base: Encoder) -> list[Site]:
    """The base sites the adapter's tensors sit on (checked to exist on this base)."""
    paths: list[str] = []
    for name in adapter.tensors:
        path = name.rsplit(".", 1)[0]
        if path not in paths:
            paths.append(path)
    by_path = {s.module_path: s for s in reversed(base.sites())}  # a Linear before its input site
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


def _targets_option(sites: list[Site], num_layers: int) -> tuple[str, str | None]:
    """The shortest --targets/--layers pair selecting exactly these sites."""
    layers_by_name: dict[str, list[int]] = {}
    for site in sites:
        layers_by_name.setdefault(site.name, []).append(site.layer)
    layer_sets = {tuple(sorted(v)) for v in layers_by_name.values()}
    if len(layer_sets) == 1:
        layers = next(iter(layer_sets))
        layer_text = None if list(layers) == list(range(num_layers)) else ",".join(map(str, layers))
        return ",".join(layers_by_name), layer_text
    return ",".join(s.id for s in sites), None


def peft_setup(folder: str | Path, base: str = "minilm", seed: int = 0) -> Setup:
    """A studio Setup (method + options) that builds the model this PEFT adapter fits."""
    from .bases import create_base

    adapter = read_peft(folder)
    return _setup_for(adapter, base, seed, create_base(base))


def _setup_for(adapter: PeftAdapter, base_name: str, seed: int, base: Any, base_options: dict | None = None) -> Setup:
    if not isinstance(base, Encoder):
        raise AdapterFileError(f"import PEFT format: base {base_name!r} is not a BERT-style encoder")
    options = dict(adapter.options)
    if adapter.method in ("lora", "ia3"):
        sites = _sites_for(adapter, base)
        kinds = (LINEAR,) if adapter.method == "lora" else (LINEAR, ACTIVATION)
        bad = [s.id for s in sites if s.kind not in kinds]
        if bad:
            raise AdapterFileError(f"{adapter.folder.name}: {adapter.method} cannot sit at {', '.join(bad)}")
        options["targets"], options["layers"] = _targets_option(sites, base.num_layers)
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
        from .bases import create_base, uses_dataset_vocabulary

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
    if experiment.setup.method not in ({adapter.method, "qlora"} if adapter.method == "lora" else {adapter.method}):
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
    if adapter.method == "lora":
        for path, module in _modules(base, LoraLinear):
            if not math.isclose(module.scaling, adapter.options["alpha"] / adapter.options["r"], rel_tol=1e-6):
                raise AdapterFileError(f"{name}: LoRA scale alpha/r = {adapter.options['alpha']:g}/"
                                       f"{adapter.options['r']}, the model's {path} uses {module.scaling:g}")
    with torch.no_grad():
        for key, value in adapter.tensors.items():
            parameter = params[key]
            if tuple(value.shape) != tuple(parameter.shape):
                raise AdapterFileError(f"{name}: {key} has shape {tuple(value.shape)}, the model needs "
                                       f"{tuple(parameter.shape)}")
            parameter.copy_(value)
        if adapter.head is not None:
            head = experiment.model.head
            if tuple(adapter.head["weight"].shape) != tuple(head.weight.shape):
                raise AdapterFileError(f"{name}/{HEAD_FILE}: a head for {adapter.head['weight'].shape[0]} labels of "
                                       f"width {adapter.head['weight'].shape[1]}; the model needs "
                                       f"{tuple(head.weight.shape)}")
            if adapter.head_labels and adapter.head_labels != list(experiment.dataset.label_names):
                adapter.notes.append(f"{HEAD_FILE}: trained for labels {adapter.head_labels}, the dataset has "
                                     f"{list(experiment.dataset.label_names)}")
            head.weight.copy_(adapter.head["weight"])
            head.bias.copy_(adapter.head["bias"])
