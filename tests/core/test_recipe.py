"""`peft-studio recipe`: the written project really trains (two steps on the CPU, a tiny random Llama built from
a config.json), and the PEFT model it builds trains exactly the studio's count on the studio's modules.

transformers, peft and accelerate are test-only dependencies: the studio never imports them, the written
train.py does (run here in a subprocess with this interpreter, as a user would with `accelerate launch`)."""

from __future__ import annotations

import ast
import importlib.util
import io
import json
import logging
import os
import re
import subprocess
import sys
import time
import warnings
from pathlib import Path

import pytest
import torch

from peft_studio.cli import main
from peft_studio.core.data import load_builtin
from peft_studio.core.errors import ConfigError, OutputError
from peft_studio.core.interop.recipe import plan_recipe, recipe_from_setup_file, write_recipe
from peft_studio.core.methods import METHODS
from peft_studio.core.model.experiment import Experiment, Setup
from peft_studio.core.runs.train import TrainSettings

transformers = pytest.importorskip("transformers")
peft = pytest.importorskip("peft")
pytest.importorskip("accelerate")
logging.getLogger("transformers").setLevel(logging.ERROR)

TINY_LLAMA = {"model_type": "llama", "architectures": ["LlamaForCausalLM"], "hidden_size": 64,
              "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
              "vocab_size": 1000, "max_position_embeddings": 256, "rms_norm_eps": 1e-6, "tie_word_embeddings": False}
COUNT = re.compile(r"trainable parameters \(PEFT adapter, head excluded\) = (\d+)")
HEAD = re.compile(r"trainable parameters \(classification head\) = (\d+)")


@pytest.fixture
def tiny_config(tmp_path) -> Path:
    path = tmp_path / "tiny-llama" / "config.json"
    path.parent.mkdir()
    path.write_text(json.dumps(TINY_LLAMA))
    return path


def write_setup(folder: Path, method: str = "lora", options: dict | None = None, base: str = "tiny-decoder") -> Path:
    path = folder / "setup.json"
    path.write_text(json.dumps({
        "format": "peft-studio-setup", "version": 1, "base": base, "method": method, "options": options or {},
        "seed": 3, "dataset": {"builtin": "intents"},
        "training": {"steps": 50, "lr": 0.001, "batch_size": 4, "optimizer": "adamw", "weight_decay": 0.0,
                     "seed": 5, "eval_every": 2}}))
    return path


def studio_counts(base: str, method: str, options: dict) -> tuple[int, int]:
    """(method, inspect's trainable total) for the setup built by the studio itself, as `inspect` builds it."""
    experiment = Experiment(Setup(base, method, options, 3), load_builtin("intents"))
    return experiment.method_parameter_count(), experiment.census().trainable


def run_train(folder: Path, launcher: list[str], tmp_path: Path) -> tuple[str, str, float]:
    """Run the written train.py in a fresh interpreter that cannot import the studio (only the recipe's files)."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", HF_HOME=str(tmp_path / "hf-home"),
               TOKENIZERS_PARALLELISM="false", OMP_NUM_THREADS="2")
    started = time.perf_counter()
    result = subprocess.run([*launcher, "train.py", "--config-only", "model_config.json", "--max-steps", "2", "--cpu",
                             "--output-dir", str(tmp_path / "adapter")],
                            cwd=folder, env=env, capture_output=True, text=True, timeout=240)
    elapsed = time.perf_counter() - started
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-4000:]
    return result.stdout, result.stderr, elapsed


def test_lora_recipe_trains_two_steps_with_the_studio_count(tiny_config, tmp_path):
    options = {"r": 4, "targets": "q_proj,v_proj,down_proj", "layers": "1"}
    folder, plan = recipe_from_setup_file(write_setup(tmp_path, "lora", options), tmp_path / "recipe",
                                          base=str(tiny_config))
    expected = json.loads((folder / "expected.json").read_text())
    method_count, inspect_total = studio_counts(str(tiny_config), "lora", options)
    assert expected["studio"]["method_trainable"] == method_count == 4 * ((64 + 64) + (64 + 32) + (128 + 64))
    assert expected["studio"]["trainable"] == inspect_total
    assert json.loads((folder / "peft_config.json").read_text())["target_modules"] == [
        "model.layers.1.self_attn.q_proj", "model.layers.1.self_attn.v_proj", "model.layers.1.mlp.down_proj"]
    # as the README says: accelerate launch with the CPU config file
    out, err, elapsed = run_train(folder, [sys.executable, "-m", "accelerate.commands.launch", "--config_file",
                                           "accelerate_configs/cpu.yaml"], tmp_path)
    print(f"two LoRA steps through accelerate launch: {elapsed:.1f} s")
    # no 4-bit weights, so nothing from bitsandbytes (its import logs a CPU-kernel notice), and no bar in a pipe
    assert "bitsandbytes" not in err and "kernels-community" not in err and "step/s" not in err
    assert int(COUNT.search(out).group(1)) == method_count
    labels = len(load_builtin("intents").label_names)
    assert int(HEAD.search(out).group(1)) == 64 * labels  # transformers' score: no bias
    assert "count check: OK" in out and re.search(r"^step=2 loss=\d", out, re.M)
    saved = json.loads((tmp_path / "adapter" / "adapter_config.json").read_text())
    assert saved["peft_type"] == "LORA" and saved["r"] == 4
    assert set(saved["target_modules"]) == set(expected["peft"]["target_modules"])
    assert (tmp_path / "adapter" / "adapter_model.safetensors").is_file()
    assert plan.model_id is None and "--model ID_OR_FOLDER" in (folder / "README.md").read_text()


def run_in_process(folder: Path, capsys, *flags: str) -> tuple[int, str]:
    """The written train.py's main() in this process (transformers is imported already: no start-up cost)."""
    train = _load_train_module(folder)
    capsys.readouterr()
    code = train.main(["--config-only", str(folder / "model_config.json"), "--cpu", *flags])
    return code, capsys.readouterr().out


class Terminal(io.StringIO):
    def isatty(self) -> bool:  # tqdm draws its bar only on a terminal
        return True


def test_prompt_tuning_recipe_trains(tiny_config, tmp_path, capsys, monkeypatch):
    folder, _ = recipe_from_setup_file(write_setup(tmp_path, "prompt-tuning", {"tokens": 5}), tmp_path / "recipe",
                                       base=str(tiny_config))
    terminal = Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    code, out = run_in_process(folder, capsys, "--max-steps", "2", "--output-dir", str(tmp_path / "adapter"))
    assert code == 0, out
    bar = r"2/2 \[\d\d:\d\d<\d\d:\d\d, +[\d.]+(step/s|s/step)"  # done/total [elapsed<left, rate]
    assert re.search(bar, terminal.getvalue())
    assert int(COUNT.search(out).group(1)) == studio_counts(str(tiny_config), "prompt-tuning", {"tokens": 5})[0] \
        == 5 * 64
    assert "count check: OK" in out and "step=2 " in out and "val_acc=" in out
    assert json.loads((folder / "recipe.json").read_text())["padding_side"] == "left"
    assert json.loads((tmp_path / "adapter" / "adapter_config.json").read_text())["num_virtual_tokens"] == 5


def test_qlora_recipe_quantizes_every_studio_linear_and_trains(tiny_config, tmp_path, capsys):
    """bitsandbytes loads the random model back in NF4 (its CPU backend here): as many 4-bit Linears as the studio
    quantizes, the LoRA count equal, two steps."""
    pytest.importorskip("bitsandbytes")
    folder, plan = recipe_from_setup_file(write_setup(tmp_path, "qlora", {"r": 4}), tmp_path / "recipe",
                                          base=str(tiny_config))
    assert plan.expected["studio"]["quantized_linears"] == 2 * 7  # q, k, v, o, gate, up, down per layer
    code, out = run_in_process(folder, capsys, "--max-steps", "2", "--output-dir", str(tmp_path / "adapter"))
    assert code == 0, out
    assert "4-bit Linear layers = 14  studio = 14" in out
    assert int(COUNT.search(out).group(1)) == studio_counts(str(tiny_config), "qlora", {"r": 4})[0] == \
        4 * 2 * ((64 + 64) + (64 + 32))
    assert "count check: OK" in out and "step=2 " in out


def test_a_changed_config_stops_the_run_before_training(tiny_config, tmp_path, capsys):
    folder, _ = recipe_from_setup_file(write_setup(tmp_path), tmp_path / "recipe", base=str(tiny_config))
    other = dict(TINY_LLAMA, hidden_size=128)  # wider: every LoRA matrix grows
    (folder / "model_config.json").write_text(json.dumps(other))
    code, out = run_in_process(folder, capsys, "--max-steps", "1", "--output-dir", str(tmp_path / "adapter"))
    assert code == 3 and "error: the PEFT model differs from the studio's setup" in out
    assert "step=" not in out and not (tmp_path / "adapter").exists()


def _load_train_module(folder: Path):
    spec = importlib.util.spec_from_file_location(f"recipe_train_{abs(hash(folder))}", folder / "train.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize(("base", "method", "options"), [
    ("llama-3-8b", "lora", {"targets": "all-linear", "r": 16}),
    ("gpt2", "lora", {}),
    ("qwen2.5-0.5b", "ia3", {}),
    ("mistral-7b", "dora", {"targets": "attention", "layers": "0,31"}),
    ("bert-base", "ia3", {}),
    ("llama-3-8b", "qlora", {"r": 8}),
])
def test_shipped_architectures_give_peft_the_studio_count_on_the_meta_device(base, method, options, tmp_path):
    """The written peft_config.json on transformers' sequence-classification model (meta device), counted by the
    written train.py's own `counts`, equals the studio's inspect count; quantization is not built here."""
    labels = load_builtin("intents").label_names
    plan = plan_recipe(Setup(base, method, options, 0), load_builtin("intents"), TrainSettings())
    folder = write_recipe(plan, tmp_path / "recipe")
    train = _load_train_module(folder)
    config = transformers.AutoConfig.for_model(**json.loads((folder / "model_config.json").read_text()),
                                               num_labels=len(labels))
    config.pad_token_id = 0
    with torch.device("meta"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = transformers.AutoModelForSequenceClassification.from_config(config)
        settings = json.loads((folder / "peft_config.json").read_text())
        wrapped = peft.get_peft_model(model, peft.get_peft_config(settings))
    found = train.counts(wrapped)
    assert found["adapter_trainable"] == plan.expected["studio"]["method_trainable"] == studio_counts(
        base, method, options)[0]
    assert found["head_trainable"] == plan.expected["peft"]["head_trainable"]
    monkey_here = train.HERE
    train.HERE = folder  # check_counts reads expected.json beside train.py
    try:
        assert train.check_counts(found, lambda line: None) == []
    finally:
        train.HERE = monkey_here
    recipe = json.loads((folder / "recipe.json").read_text())
    assert recipe["model"] == json.loads((folder / "model_config.json").read_text())["_name_or_path"]
    assert (recipe["quantization"] is not None) == (method == "qlora")
    if method == "qlora":
        assert recipe["quantization"]["bnb_4bit_quant_type"] == "nf4" and "score" in \
            recipe["quantization"]["llm_int8_skip_modules"]
    fsdp = (folder / "accelerate_configs" / "fsdp.yaml").read_text()
    assert "distributed_type: \"FSDP\"" in fsdp and plan.layer_class in fsdp
    readme = (folder / "README.md").read_text()
    assert "accelerate launch --config_file accelerate_configs/1gpu.yaml train.py\n" in readme


def test_the_studio_plans_a_recipe_without_importing_transformers(tmp_path):
    code = ("import sys\nfrom peft_studio.core.interop.recipe import plan_recipe, write_recipe\n"
            "from peft_studio.core.model.experiment import Setup\nfrom peft_studio.core.data import load_builtin\n"
            "from peft_studio.core.runs.train import TrainSettings\n"
            f"write_recipe(plan_recipe(Setup('gpt2', 'lora'), load_builtin('intents'), TrainSettings()), "
            f"{str(tmp_path / 'r')!r})\n"
            "print(sorted(m for m in ('transformers', 'peft', 'accelerate') if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                            env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])})
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip().splitlines()[-1] == "[]"


# ---- user mistakes ---------------------------------------------------------------------------------
def _refused(capsys, argv: list[str], *words: str) -> None:
    assert main(argv) == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), captured.err
    assert "Traceback" not in captured.err and captured.out == ""
    for word in words:
        assert word in lines[0], lines[0]


def test_hostile_recipe_commands_are_one_error_line(capsys, tmp_path, tiny_config):
    setup = str(write_setup(tmp_path))
    out = tmp_path / "out"
    _refused(capsys, ["recipe", "--setup", setup, "--out", str(out)], "tiny-decoder", "no Hugging Face model")
    assert not out.exists()  # a refused recipe leaves no folder behind
    _refused(capsys, ["recipe", "--setup", setup, "--out", str(out), "--base", "llama-3-8b", "--method", "adapter"],
             "'adapter'", "no Hugging Face PEFT equivalent")
    _refused(capsys, ["recipe", "--setup", setup, "--out", str(out), "--base", "tiny"], "'tiny'")
    _refused(capsys, ["recipe", "--setup", str(tmp_path / "missing.json"), "--out", str(out)], "no such setup file")
    _refused(capsys, ["recipe", "--setup", setup, "--out", str(out), "--base", "gpt2", "--bottleneck", "3"],
             "bottleneck")
    _refused(capsys, ["recipe", "--setup", setup, "--out", str(out), "--base", str(tmp_path / "nope" / "config.json")],
             "config.json")
    _refused(capsys, ["recipe", "--setup", setup, "--out", str(out), "--base", "gpt2", "--method", "prefix-tuning"],
             "prefix-tuning")
    a_file = tmp_path / "file.txt"
    a_file.write_text("x")
    _refused(capsys, ["recipe", "--setup", setup, "--out", str(a_file), "--base", "gpt2"], "not a folder")
    _refused(capsys, ["recipe", "--setup", setup, "--out", str(a_file / "sub"), "--base", "gpt2"], "cannot write")
    full = tmp_path / "full"
    full.mkdir()
    (full / "keep.txt").write_text("mine")
    _refused(capsys, ["recipe", "--setup", setup, "--out", str(full), "--base", "gpt2"], "not empty", "--force")
    assert main(["recipe", "--setup", setup, "--out", str(full), "--base", "gpt2", "--force"]) == 0
    assert (full / "keep.txt").read_text() == "mine" and (full / "train.py").is_file()
    assert "wrote " in capsys.readouterr().out
    _refused(capsys, ["recipe", "--setup", setup], "--out")


def test_the_recipe_folder_shadows_no_package_train_py_imports(tmp_path):
    """A folder beside train.py named like a package it imports (the old accelerate/) hides that package."""
    folder = write_recipe(plan_recipe(Setup("qwen2.5-0.5b", "qlora"), load_builtin("intents"), TrainSettings()),
                          tmp_path / "r")
    tree = ast.parse((folder / "train.py").read_text())
    imported = {alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import)
                for alias in node.names}
    imported |= {node.module.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)
                 and node.module and node.level == 0}
    assert {"accelerate", "transformers", "peft", "torch"} <= imported
    entries = {path.name.removesuffix(".py") for path in folder.iterdir()}
    assert not imported & entries, imported & entries
    assert (folder / "accelerate_configs" / "cpu.yaml").is_file()


def test_only_a_qlora_recipe_lets_train_py_import_bitsandbytes(tmp_path):
    """train.py hides bitsandbytes (a None module entry) unless the recipe quantizes: what peft and transformers
    then ask (importlib.util.find_spec) says it is absent."""
    probe = ("import importlib.util, runpy, sys; train = runpy.run_path('train.py', run_name='recipe'); "
             "train['keep_bitsandbytes_out'](); print(importlib.util.find_spec('bitsandbytes') is None)")
    for method, hidden in (("lora", "True"), ("qlora", "False")):
        folder = write_recipe(plan_recipe(Setup("qwen2.5-0.5b", method), load_builtin("intents"), TrainSettings()),
                              tmp_path / method)
        result = subprocess.run([sys.executable, "-c", probe], cwd=folder, capture_output=True, text=True, timeout=60)
        assert result.stdout.strip() == hidden, result.stderr


def test_a_method_peft_lacks_names_the_nearest_peft_method(capsys, tmp_path):
    for name, method in METHODS.items():
        if method.peft_type is None:
            assert method.peft_nearest is not None, f"{name}: say which PEFT method comes nearest"
            assert METHODS[method.peft_nearest[0]].peft_type is not None
    setup = str(write_setup(tmp_path, "adapter", {"bottleneck": 4}, base="tiny"))
    _refused(capsys, ["recipe", "--setup", setup, "--out", str(tmp_path / "o"), "--base", "llama-3-8b"],
             "'adapter' has no Hugging Face PEFT equivalent", "the nearest is lora", "--method lora")
    assert main(["recipe", "--setup", setup, "--out", str(tmp_path / "o"), "--base", "llama-3-8b", "--method",
                 "lora"]) == 0  # the advice works


def test_the_api_refuses_with_studio_errors(tmp_path):
    dataset, settings = load_builtin("intents"), TrainSettings()
    with pytest.raises(ConfigError, match="no Hugging Face model"):
        plan_recipe(Setup("seed-pooled", "lora"), dataset, settings)
    with pytest.raises(ConfigError, match="full"):
        plan_recipe(Setup("llama-3-8b", "full"), dataset, settings)
    plan = plan_recipe(Setup("gpt2", "lora"), dataset, settings)
    write_recipe(plan, tmp_path / "r")
    with pytest.raises(OutputError, match="not empty"):
        write_recipe(plan, tmp_path / "r")
