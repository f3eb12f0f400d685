"""A runnable training project for the studio's method on the real model: `peft-studio recipe`.

The studio teaches on small or meta-device models; a recipe hands the same choice to a real trainer.
`plan_recipe` builds the setup the way `inspect` does (a shipped architecture or a config.json on the
meta device, MiniLM or a checkpoint folder with its weights), asks the method's own PEFT export hook
(`Method.peft_export`, as core/interop/hf_peft.py does) for the adapter_config settings, and records the
studio's counts. `write_recipe` writes the folder:

    train.py                 transformers + peft (+ bitsandbytes for QLoRA), driven by accelerate
    recipe.json              model id, task, labels, quantization, training settings
    peft_config.json         the PEFT config (peft_type + the export hook's settings + the task type)
    expected.json            the studio's counts and targets, which train.py checks before training
    model_config.json        the architecture's config.json (`--config-only` builds a random model from it)
    data/                    train.jsonl, validation.jsonl (text, label, label_name), labels.json
    accelerate_configs/      1gpu.yaml, multi-gpu.yaml (DDP), fsdp.yaml, cpu.yaml (a smoke test)
    README.md                the `accelerate launch` lines and what was checked

Nothing here imports transformers, peft or accelerate: only the written train.py does. Toy bases
(random weights, a vocabulary built from the texts) have no Hugging Face model and are refused.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..bases import BASES, architectures
from ..bases.decoder import DecoderBase
from ..bases.encoder import Encoder
from ..data import TextDataset
from ..errors import AdapterFileError, ConfigError, OutputError
from ..files import safe_io
from ..methods import METHODS
from ..model.experiment import Experiment, Setup
from ..runs.train import TrainSettings

TRAIN_SCRIPT = Path(__file__).with_name("recipe_train.py")  # copied verbatim as train.py
# Not "accelerate/": beside train.py a folder of that name is a namespace package that shadows the accelerate
# library ("cannot import name 'Accelerator' from 'accelerate' (unknown location)").
CONFIG_FOLDER = "accelerate_configs"
MINILM_ID = "sentence-transformers/all-MiniLM-L6-v2"
# transformers' decoder-layer class per model_type: FSDP wraps one of these per shard unit
LAYER_CLASSES = {"llama": "LlamaDecoderLayer", "mistral": "MistralDecoderLayer", "qwen2": "Qwen2DecoderLayer",
                 "gpt2": "GPT2Block", "bert": "BertLayer"}
# AutoModelForSequenceClassification's head per family: decoders score the last real token with
# `score` (Linear without bias); BERT classifies the pooled [CLS] with `classifier` (Linear with bias).
HEAD_MODULES = {"bert": ("classifier", True)}
DECODER_HEAD = ("score", False)
PROMPT_INPUT_TYPES = ("PROMPT_TUNING", "P_TUNING")  # PEFT feeds inputs_embeds: a decoder then scores the last position


@dataclass
class RecipePlan:
    """Everything a recipe folder holds, decided and checked before a file is written."""

    setup: Setup
    dataset: TextDataset
    settings: TrainSettings
    model_id: str | None  # a Hugging Face model id or a local folder; None: give --model or --config-only
    model_config: dict[str, Any]  # the architecture's config.json facts
    peft_config: dict[str, Any]  # peft_type, task_type and the export hook's settings
    quantization: dict[str, Any] | None  # BitsAndBytesConfig arguments (QLoRA) or None
    expected: dict[str, Any]  # the studio's counts and targets
    layer_class: str
    padding_side: str
    notes: list[str]


def _refuse_toy(name: str) -> None:
    entry = BASES.get(name)
    if entry is None or name in architectures.shipped() or name == "minilm":
        return
    reason = "random weights and a vocabulary built from the texts" if entry.uses_dataset_vocabulary \
        else "no published weights"
    raise ConfigError(f"base {name!r} is a studio model ({reason}): it has no Hugging Face model to train; "
                      f"choose a real one ({', '.join(sorted(architectures.shipped()))}, minilm, a PATH/config.json or "
                      "a checkpoint folder)")


def _read_config(path: Path) -> dict[str, Any]:
    return safe_io.read_json_object(path, f"{path.parent.name}/{path.name}", ConfigError)


def _model_source(name: str, base: Any) -> tuple[str | None, dict[str, Any]]:
    """(the model to load, its config.json facts)."""
    if name in architectures.shipped():
        raw = _read_config(architectures.shipped()[name])
        source = raw.get("_name_or_path")
        return (source if isinstance(source, str) and source else None), raw
    if architectures.is_config_spec(name):
        raw = _read_config(architectures.config_path(name))
        source = raw.get("_name_or_path")  # a config.json saved by transformers names its model
        return (source if isinstance(source, str) and source else None), raw
    folder = getattr(base, "folder", None)
    if isinstance(base, Encoder | DecoderBase) and folder is not None:  # minilm, a BERT or decoder checkpoint folder
        return (MINILM_ID if name == "minilm" else str(folder)), _read_config(Path(folder) / "config.json")
    raise ConfigError(f"base {name!r} has no Hugging Face model to train")


def _peft_config(experiment: Experiment) -> dict[str, Any]:
    """PEFT's config for the attached method, from the method's own export hook (no method named here)."""
    method = experiment.method
    if method.peft_type is None:
        supported = [n for n, m in METHODS.items() if m.peft_type]
        nearest = f"; the nearest is {method.peft_nearest[0]} ({method.peft_nearest[1]}): --method " \
                  f"{method.peft_nearest[0]}" if method.peft_nearest else ""
        raise ConfigError(f"method {method.name!r} has no Hugging Face PEFT equivalent, so no recipe can train it"
                          f"{nearest} (recipes exist for: {', '.join(supported)})")
    try:
        settings, _ = method.peft_export(experiment.base, experiment.config)
    except AdapterFileError as exc:
        raise ConfigError(f"no PEFT recipe for this {method.name} setup: "
                          f"{str(exc).removeprefix('export to PEFT format: ')}") from None
    return {"peft_type": method.peft_type, "task_type": "SEQ_CLS", **settings}


def _quantization(experiment: Experiment, head: str) -> dict[str, Any] | None:
    """QLoRA's BitsAndBytesConfig: NF4 (the studio's 4-bit code, blocks of 64 as bitsandbytes' default)."""
    if not experiment.method.quantizes_base:
        return None
    # the studio's NF4 keeps one fp32 constant per block: no double quantization
    return {"load_in_4bit": True, "bnb_4bit_quant_type": "nf4", "bnb_4bit_use_double_quant": False,
            "bnb_4bit_compute_dtype": "bfloat16", "bnb_4bit_quant_storage": "bfloat16",
            "llm_int8_skip_modules": [head]}  # the classification head stays in full precision, as in the studio


def plan_recipe(setup: Setup, dataset: TextDataset, settings: TrainSettings) -> RecipePlan:
    """Check the setup can become a real training run and gather what the folder needs (nothing written)."""
    _refuse_toy(setup.base)
    experiment = Experiment(setup, dataset)  # a meta-device architecture costs shapes only, as in inspect
    model_id, raw = _model_source(setup.base, experiment.base)
    model_type = raw.get("model_type")
    if model_type not in LAYER_CLASSES:
        raise ConfigError(f"base {setup.base!r}: model_type {model_type!r} has no recipe "
                          f"(supported: {', '.join(LAYER_CLASSES)})")
    peft_config = _peft_config(experiment)
    head, head_bias = HEAD_MODULES.get(model_type, DECODER_HEAD)
    if model_type == "gpt2" and peft_config["peft_type"] in ("LORA", "VERA"):
        peft_config["fan_in_fan_out"] = True  # GPT-2 stores its Linears as Conv1D (in, out)
    census = experiment.census()
    labels = dataset.num_labels
    method_count = experiment.method_parameter_count()
    studio_head = experiment.head_parameter_count()
    if census.trainable != method_count + studio_head:  # the closed form and the census must agree
        raise ConfigError(f"internal: the census trains {census.trainable:,} parameters, the method's formula "
                          f"{method_count:,} + head {studio_head:,}")
    width = experiment.base.hidden_size
    hf_head = 0 if experiment.config.freeze_head else width * labels + (labels if head_bias else 0)
    targets = peft_config.get("target_modules")
    expected = {
        "studio": {"base": setup.base, "method": setup.method, "options": experiment.method.effective_options(
                   experiment.config, experiment.base), "trainable": census.trainable,
                   "method_trainable": method_count, "head_trainable": studio_head,
                   "formula": experiment.method.formula_text(experiment.config, experiment.base),
                   "quantized_linears": census.quantization.tensors if census.quantization else 0},
        "peft": {"adapter_trainable": method_count, "head_module": head, "head_trainable": hf_head,
                 "trainable": method_count + hf_head, "target_modules": list(targets) if isinstance(targets, list)
                 else None},
    }
    notes = [f"The PEFT adapter trains {method_count:,} parameters, the studio's {setup.method} "
             f"({experiment.method.formula_text(experiment.config, experiment.base)})."]
    if hf_head != studio_head:
        notes.append(f"The classification head differs by its bias: the studio's head has {studio_head:,} parameters "
                     f"(weight and bias), transformers' `{head}` has {hf_head:,} (no bias).")
    if model_type == "bert" and getattr(experiment.base.cfg, "pooling", None) != "pooler":
        notes.append("BERT's AutoModelForSequenceClassification classifies its pooler output (the [CLS] vector "
                     "through a dense + tanh layer); this setup pools without it (base option pooling=pooler "
                     "does the same as transformers, and importing the trained adapter sets it).")
    padding = "left" if model_type != "bert" and peft_config["peft_type"] in PROMPT_INPUT_TYPES else "right"
    return RecipePlan(setup, dataset, settings, model_id, dict(raw), peft_config, _quantization(experiment, head),
                      expected, LAYER_CLASSES[model_type], padding, notes)


# ---- writing ------------------------------------------------------------------------------------
def check_recipe_folder(out: str | os.PathLike, force: bool = False) -> Path:
    """The folder a recipe may be written into: new, empty, or (force) a folder to overwrite files in."""
    folder = Path(out).expanduser()
    if os.path.lexists(folder) and not folder.is_dir():
        raise OutputError(f"{folder}: exists and is not a folder")
    if folder.is_dir() and any(folder.iterdir()) and not force:
        raise OutputError(f"{folder}: the folder is not empty (choose a new folder, or use --force to write over it)")
    safe_io.check_writable(folder, OutputError, folder=True)
    return folder


def _jsonl(texts: tuple[str, ...], labels: tuple[int, ...], names: tuple[str, ...]) -> str:
    return "".join(json.dumps({"text": t, "label": y, "label_name": names[y]}, ensure_ascii=False) + "\n"
                   for t, y in zip(texts, labels, strict=True))


def _accelerate_yaml(kind: str, layer_class: str) -> str:
    """accelerate's config files (the keys `accelerate config` writes)."""
    common = {"compute_environment": "LOCAL_MACHINE", "debug": False, "downcast_bf16": "no",
              "machine_rank": 0, "main_training_function": "main", "num_machines": 1, "rdzv_backend": "static",
              "same_network": True, "tpu_env": [], "tpu_use_cluster": False, "tpu_use_sudo": False, "use_cpu": False}
    if kind == "cpu":
        values = {**common, "distributed_type": "NO", "mixed_precision": "no", "num_processes": 1, "use_cpu": True}
    elif kind == "1gpu":
        values = {**common, "distributed_type": "NO", "gpu_ids": "0", "mixed_precision": "bf16", "num_processes": 1}
    elif kind == "multi-gpu":
        values = {**common, "distributed_type": "MULTI_GPU", "gpu_ids": "all", "mixed_precision": "bf16",
                  "num_processes": 2}
    else:
        values = {**common, "distributed_type": "FSDP", "mixed_precision": "bf16", "num_processes": 2,
                  "fsdp_config": {"fsdp_auto_wrap_policy": "TRANSFORMER_BASED_WRAP",
                                  "fsdp_transformer_layer_cls_to_wrap": layer_class,
                                  "fsdp_backward_prefetch": "BACKWARD_PRE", "fsdp_cpu_ram_efficient_loading": True,
                                  "fsdp_forward_prefetch": False, "fsdp_offload_params": False,
                                  "fsdp_sharding_strategy": "FULL_SHARD", "fsdp_state_dict_type": "FULL_STATE_DICT",
                                  "fsdp_sync_module_states": True, "fsdp_use_orig_params": True}}
    return _yaml(values)


def _yaml(values: dict[str, Any], indent: int = 0) -> str:
    """The small YAML subset accelerate's files use (scalars, a list, one nested mapping)."""
    lines = []
    for key in sorted(values):
        value = values[key]
        if isinstance(value, dict):
            lines.append(f"{' ' * indent}{key}:")
            lines.append(_yaml(value, indent + 2).rstrip("\n"))
        else:
            text = json.dumps(value) if isinstance(value, str | list) else _scalar(value)
            lines.append(f"{' ' * indent}{key}: {text}")
    return "\n".join(lines) + "\n"


def _scalar(value: Any) -> str:
    return ("true" if value else "false") if isinstance(value, bool) else str(value)


def _training(plan: RecipePlan) -> dict[str, Any]:
    s = plan.settings
    return {"steps": s.steps, "lr": s.lr, "batch_size": s.batch_size, "optimizer": s.optimizer,
            "weight_decay": s.weight_decay, "seed": s.seed, "eval_every": s.eval_every,
            "max_length": plan.dataset.max_len}


def recipe_document(plan: RecipePlan) -> dict[str, Any]:
    return {"format": "peft-studio-recipe/1", "model": plan.model_id, "model_type": plan.model_config.get("model_type"),
            "labels": list(plan.dataset.label_names), "padding_side": plan.padding_side,
            "freeze_head": bool(plan.expected["peft"]["head_trainable"] == 0),
            "quantization": plan.quantization, "training": _training(plan), "seed": plan.setup.seed,
            "fsdp_layer_class": plan.layer_class, "dataset": plan.dataset.name}


def write_recipe(plan: RecipePlan, out: str | os.PathLike, force: bool = False) -> Path:
    """Write the recipe folder (see the module docstring); returns the folder."""
    folder = check_recipe_folder(out, force)
    files: dict[str, str] = {
        "recipe.json": json.dumps(recipe_document(plan), indent=2) + "\n",
        "peft_config.json": json.dumps(plan.peft_config, indent=2) + "\n",
        "expected.json": json.dumps(plan.expected, indent=2) + "\n",
        "model_config.json": json.dumps(plan.model_config, indent=2) + "\n",
        "data/train.jsonl": _jsonl(plan.dataset.train_texts, plan.dataset.train_labels, plan.dataset.label_names),
        "data/validation.jsonl": _jsonl(plan.dataset.val_texts, plan.dataset.val_labels, plan.dataset.label_names),
        "data/labels.json": json.dumps(list(plan.dataset.label_names), ensure_ascii=False) + "\n",
        "README.md": readme(plan),
    }
    for kind in ("1gpu", "multi-gpu", "fsdp", "cpu"):
        files[f"{CONFIG_FOLDER}/{kind}.yaml"] = _accelerate_yaml(kind, plan.layer_class)
    files["train.py"] = safe_io.read_text(TRAIN_SCRIPT, 2**20, TRAIN_SCRIPT.name, OutputError)
    targets = {name: safe_io.file_inside(folder, name, OutputError) for name in files}  # no link written through
    try:
        for name, text in files.items():
            targets[name].parent.mkdir(parents=True, exist_ok=True)
            safe_io.write_text_atomically(targets[name], text, OutputError)
    except OSError as exc:
        raise OutputError(f"{folder}: cannot write the recipe ({exc.strerror or exc})") from None
    return folder


def readme(plan: RecipePlan) -> str:
    setup, expected = plan.setup, plan.expected
    model = plan.model_id or "MODEL (no model id is known for this config.json: pass --model ID_OR_FOLDER)"
    flags = "" if plan.model_id else " --model ID_OR_FOLDER"
    quant = plan.quantization
    lines = [
        f"# {setup.method} on {setup.base}: a training recipe from PEFT Studio", "",
        f"Model: `{model}` ({plan.model_config.get('model_type')}), sequence classification over "
        f"{len(plan.dataset.label_names)} labels ({', '.join(plan.dataset.label_names)}) of the dataset "
        f"`{plan.dataset.name}` ({len(plan.dataset.train_texts)} training and {len(plan.dataset.val_texts)} validation "
        "texts in data/).", "",
        f"PEFT config (peft_config.json): {plan.peft_config['peft_type']}"
        + (f" on {len(expected['peft']['target_modules'])} modules" if expected["peft"]["target_modules"] else "")
        + ("; the base loaded in 4-bit NF4 by bitsandbytes and prepared with `prepare_model_for_kbit_training`"
           if quant else "") + ".", "",
        "## Run", "",
        "```sh",
        "pip install 'transformers>=4.40' 'peft>=0.11' 'accelerate>=0.30'" + (" 'bitsandbytes>=0.45'" if quant else ""),
        "# one GPU",
        f"accelerate launch --config_file {CONFIG_FOLDER}/1gpu.yaml train.py{flags}",
        "# several GPUs, data parallel (set num_processes in the file to your GPU count)",
        f"accelerate launch --config_file {CONFIG_FOLDER}/multi-gpu.yaml train.py{flags}",
        f"# several GPUs, sharded (FSDP, one unit per {plan.layer_class})",
        f"accelerate launch --config_file {CONFIG_FOLDER}/fsdp.yaml train.py{flags}",
        "# a smoke test on the CPU: a random model from model_config.json, two steps, no download",
        f"accelerate launch --config_file {CONFIG_FOLDER}/cpu.yaml train.py --config-only model_config.json "
        "--max-steps 2 --cpu",
        "# two processes on the CPU (gloo): accelerate's torchrun launcher, train.py kept on the CPU",
        f"accelerate launch --multi_gpu --num_processes 2 train.py --cpu{flags}",
        "```", "",
        "(`accelerate launch --cpu --num_processes 2` starts a single process unless MPI is set up; `--multi_gpu` "
        "selects the launcher that starts both.)", "",
        "train.py flags: `--model ID_OR_FOLDER`, `--config-only PATH/config.json`, `--max-steps N`, `--lr`, "
        "`--batch-size`, `--grad-accum`, `--output-dir` (default outputs/adapter), `--cpu`, `--skip-check`.", "",
        "## What is checked", "",
        f"- Before training, train.py counts the PEFT model's trainable parameters and compares them with "
        f"expected.json: the adapter must train {expected['peft']['adapter_trainable']:,} parameters (the studio's "
        f"inspect shows {expected['studio']['method_trainable']:,} for the method, and "
        f"{expected['studio']['trainable']:,} with its head), on the same modules; a difference stops the run "
        "(`--skip-check` runs anyway).",
        *[f"- {note}" for note in plan.notes],
        "- PEFT Studio's test suite writes a recipe for a tiny random Llama config and runs this train.py for two "
        "steps on the CPU (`--config-only`), checking the count above; and for a small random decoder checkpoint "
        "folder it runs two steps in two CPU processes (gloo, the launch line above) and with fsdp.yaml on the CPU "
        "(with `--mixed_precision no --fsdp_sync_module_states false --fsdp_cpu_ram_efficient_loading false`, which "
        "CPU FSDP needs): one adapter is saved and its weights equal a one-process run with the same global batch "
        "and seed within 1e-6. The GPU and bitsandbytes paths were not run by the studio.", "",
        "## Settings from the studio", "",
        f"Training: {json.dumps(_training(plan))}. The studio's learning rate suits its small models; for LoRA on a "
        "large model 1e-4 to 3e-4 is usual (`--lr`). A batch size of 0 (the studio's full batch) becomes micro-batches "
        "of at most 8 with gradient accumulation over the whole training set.", "",
        f"Method options in force: {json.dumps(expected['studio']['options'])}.", "",
    ]
    if quant:
        lines += ["QLoRA with FSDP needs `bnb_4bit_quant_storage` equal to the training dtype (bfloat16 here) and "
                  "transformers >= 4.46 / accelerate >= 1.0.", ""]
    return "\n".join(lines)


def recipe_from_setup_file(setup_file: str | os.PathLike, out: str | os.PathLike, base: str | None = None,
                           method: str | None = None, options: dict[str, Any] | None = None,
                           force: bool = False, data_file: str | os.PathLike | None = None) -> tuple[Path, RecipePlan]:
    """`peft-studio recipe`: load a saved setup, apply the overrides (another base; another method, whose options
    start from its defaults; option values), plan and write. `data_file`: the setup's data file, named by the user
    (a setup's data outside its folder is never copied into the recipe otherwise)."""
    existed = os.path.lexists(Path(out).expanduser())
    check_recipe_folder(out, force)  # before the (possibly slow) build
    try:
        return _recipe_from_setup_file(setup_file, out, base, method, options, force, data_file)
    except BaseException:
        if not existed:  # a refused recipe leaves no empty folder behind
            with contextlib.suppress(OSError):
                Path(out).expanduser().rmdir()
        raise


def _recipe_from_setup_file(setup_file: str | os.PathLike, out: str | os.PathLike, base: str | None,
                            method: str | None, options: dict[str, Any] | None,
                            force: bool, data_file: str | os.PathLike | None = None) -> tuple[Path, RecipePlan]:
    from ..teaching.lesson import load_setup_or_lesson

    setup, dataset, settings = load_setup_or_lesson(setup_file, data_file=data_file)
    if base is not None:
        setup = dataclasses.replace(setup, base=base, base_options={})
    if method is not None and method != setup.method:
        setup = dataclasses.replace(setup, method=method, options={})
    if options:
        setup = dataclasses.replace(setup, options={**setup.options, **options})
    plan = plan_recipe(setup, dataset, settings)
    return write_recipe(plan, out, force), plan
