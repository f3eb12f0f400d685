"""The recipe's multi-process path, run: the written train.py on a small random decoder checkpoint folder, two
steps in two CPU processes (gloo) and with the written FSDP config on the CPU; both ranks train, one adapter is
saved, and its weights equal a one-process run with the same global batch and seed (within 1e-6). The adapter
then comes back into the studio with `generate --import-peft` and generates PeftModel's tokens.

`accelerate launch --cpu --num_processes 2` starts one process unless MPI is set up (accelerate's simple
launcher); `--multi_gpu` picks its torchrun launcher, and train.py's `--cpu` keeps both processes on the CPU."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import torch
from decoder_checkpoints import write_checkpoint
from safetensors.torch import load_file

from peft_studio.cli import main

transformers = pytest.importorskip("transformers")
peft = pytest.importorskip("peft")
pytest.importorskip("accelerate")
pytestmark = pytest.mark.filterwarnings("ignore::UserWarning", "ignore::FutureWarning")
RANK = re.compile(r"rank=(\d) step=(\d) examples=(\d+)\b")  # not anchored: other ranks' lines may interleave


def _free_port() -> int:
    with socket.socket() as probe:  # other test runs may hold the default port
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def recipe(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("distributed")
    checkpoint = write_checkpoint(root / "llama", "llama", std=0.2)
    setup = root / "setup.json"
    setup.write_text(json.dumps({
        "format": "peft-studio-setup", "version": 1, "base": str(checkpoint), "method": "lora", "options": {},
        "seed": 3, "dataset": {"builtin": "sentiment"},
        # Adam's first steps divide by sqrt(v): where a gradient is near eps, float noise from the two orders of
        # summation (one batch of 4; two of 2 averaged by the all-reduce) is amplified in proportion to the learning
        # rate; at 0.01 the runs agree to about 2e-7
        "training": {"steps": 2, "lr": 0.01, "batch_size": 4, "optimizer": "adamw", "weight_decay": 0.0, "seed": 5,
                     "eval_every": 2}}))
    assert main(["recipe", "--setup", str(setup), "--out", str(root / "recipe")]) == 0
    return root / "recipe", checkpoint


def _run(folder: Path, launcher: list[str], out: Path, batch: int) -> str:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}  # train.py needs only its own folder
    env.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", TOKENIZERS_PARALLELISM="false", OMP_NUM_THREADS="1",
               HF_HOME=str(out.parent / "hf-home"))
    result = subprocess.run([*launcher, "train.py", "--max-steps", "2", "--cpu", "--batch-size", str(batch),
                             "--grad-accum", "1", "--output-dir", str(out)],
                            cwd=folder, env=env, capture_output=True, text=True, timeout=400)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-4000:]
    return result.stdout


def _launch(*flags: str) -> list[str]:
    return [sys.executable, "-m", "accelerate.commands.launch", *flags, "--num_machines", "1", "--dynamo_backend",
            "no", "--main_process_port", str(_free_port())]


@pytest.fixture(scope="module")
def single(recipe) -> dict[str, torch.Tensor]:
    folder, _ = recipe
    out = folder.parent / "single"
    _run(folder, [sys.executable], out, batch=4)
    return load_file(str(out / "adapter_model.safetensors"))


@pytest.mark.parametrize("config", ["ddp", "fsdp"])
def test_two_processes_train_and_save_the_one_process_weights(recipe, single, config):
    folder, _ = recipe
    out = folder.parent / config
    flags = (["--multi_gpu", "--num_processes", "2", "--mixed_precision", "no"] if config == "ddp" else
             ["--config_file", "accelerate_configs/fsdp.yaml", "--num_processes", "2", "--mixed_precision", "no",
              "--fsdp_sync_module_states", "false", "--fsdp_cpu_ram_efficient_loading", "false"])
    stdout = _run(folder, _launch(*flags), out, batch=2)
    ranks = {(int(rank), int(step)) for rank, step, examples in RANK.findall(stdout) if int(examples) == 2}
    assert ranks == {(0, 1), (1, 1), (0, 2), (1, 2)}  # both ranks trained both steps, two examples each
    assert sorted(p.name for p in out.iterdir()) == ["README.md", "adapter_config.json", "adapter_model.safetensors"]
    weights = load_file(str(out / "adapter_model.safetensors"))
    assert sorted(weights) == sorted(single) and any(k.endswith("score.weight") for k in weights)
    for key, value in weights.items():
        assert torch.allclose(value, single[key], atol=1e-6, rtol=0), (key, (value - single[key]).abs().max())


def test_the_recipes_adapter_comes_back_and_generates_peft_s_tokens(recipe, single, capsys):
    folder, checkpoint = recipe
    adapter = folder.parent / "single"
    assert main(["generate", "--base", str(checkpoint), "--import-peft", str(adapter), "--json", "--max-new-tokens",
                 "10", "a wonderful film"]) == 0
    result = json.loads(capsys.readouterr().out)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = peft.PeftModel.from_pretrained(transformers.AutoModelForCausalLM.from_pretrained(checkpoint),
                                               str(adapter)).eval()
        prompt = torch.tensor([result["prompt_ids"]])
        theirs = model.generate(input_ids=prompt, attention_mask=torch.ones_like(prompt), do_sample=False,
                                max_new_tokens=10, pad_token_id=0)
    assert result["generated_ids"] == theirs[0, prompt.shape[1]:].tolist()
