"""Training on a real decoder checkpoint: every method that applies trains on the next-token task (built-in texts or
the user's .txt / JSONL file, loss over real positions) and on classification from the last token; gradient
checkpointing gives the same gradients while keeping fewer tensors; the memory check before training is the
ledger's; QLoRA quantizes the checkpoint's own weights."""

from __future__ import annotations

import json

import pytest
import torch
from decoder_checkpoints import write_checkpoint
from method_table import fitting_options

from peft_studio.cli import main
from peft_studio.core.bases import create_base
from peft_studio.core.data import load_builtin, load_dataset_file
from peft_studio.core.errors import ConfigError, DatasetError
from peft_studio.core.methods import METHODS
from peft_studio.core.model.experiment import Experiment, Setup
from peft_studio.core.model.quant import NF4Linear
from peft_studio.core.runs.train import TrainSettings, evaluate, train

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning", "ignore::FutureWarning")
NOT_ON_LLAMA = {"bitfit": "no such tensors", "head-only": "head-only trains a new classification head"}


def refused_on_llama() -> dict[str, str]:
    """The refusals above, and every method that declares why it cannot train on next-token (the registry)."""
    return {**NOT_ON_LLAMA, **{name: method.next_token_refusal for name, method in METHODS.items()
                               if method.next_token_refusal}}


@pytest.fixture(scope="module")
def llama(tmp_path_factory):
    return str(write_checkpoint(tmp_path_factory.mktemp("ckpt") / "llama", "llama", std=0.1))


@pytest.fixture(scope="module")
def gpt2(tmp_path_factory):
    return str(write_checkpoint(tmp_path_factory.mktemp("ckpt") / "gpt2", "gpt2", std=0.1))


def _small(name: str, rows: int = 24):
    data = load_builtin(name)
    if data.task == "next-token":
        return type(data)(data.name, (), data.train_texts[:rows], (), data.val_texts[:8], (), data.source,
                          task=data.task)
    return type(data)(data.name, data.label_names, data.train_texts[:rows], data.train_labels[:rows],
                      data.val_texts[:8], data.val_labels[:8], data.source)


@pytest.mark.parametrize("method", list(METHODS))
def test_every_method_trains_on_next_token_or_says_why_not(llama, method):
    try:
        # PEFT's defaults are sized for real models (FourierFT's 1000 coefficients): the table's that fit, if any
        options = fitting_options(method, create_base(llama)) or {}
        experiment = Experiment(Setup(llama, method, options), _small("texts"))
    except ConfigError as exc:
        assert method in refused_on_llama() and refused_on_llama()[method] in str(exc)
        return
    assert method not in refused_on_llama()

    def whole_loss() -> float:  # on every training text: one batch's loss is too noisy for a slow starter
        with torch.no_grad():
            return evaluate(experiment, experiment.train_ids, experiment.train_mask, experiment.train_labels)[0]

    before = whole_loss()
    for _ in train(experiment, TrainSettings(steps=24, lr=2e-2, batch_size=8, eval_every=24, track_grads=False)):
        pass
    assert whole_loss() < before


@pytest.mark.parametrize("method", ["lora", "prompt-tuning", "ia3"])
def test_classification_from_the_last_token_learns(gpt2, method):
    experiment = Experiment(Setup(gpt2, method, {}), _small("sentiment", 32))
    events = list(train(experiment, TrainSettings(steps=30, lr=2e-2, eval_every=30, track_grads=False)))
    assert events[-1].loss < events[0].loss
    # the pooled vector is the final-normed state of each text's last real token
    ids, mask = experiment.tokenizer.batch(["good", "a long and rather boring film"])
    experiment.model.eval()
    with torch.no_grad():
        hidden, extended = experiment.base.encode(ids, mask)
        pooled = experiment.base(ids, mask)
    last = extended.long().cumsum(1).argmax(1)
    assert torch.equal(pooled, hidden[torch.arange(2), last])


def test_gradient_checkpointing_gives_the_same_gradients_and_keeps_less(llama):
    def step(checkpointing: bool):
        experiment = Experiment(Setup(llama, "lora", {"targets": "all-linear"}, seed=3), _small("texts", 8))
        experiment.base.gradient_checkpointing = checkpointing
        experiment.model.train()
        saved = []
        with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t.numel()) or t, lambda t: t):
            logits = experiment.model(experiment.train_ids, experiment.train_mask)
            loss, _ = experiment.loss(logits, experiment.train_ids, experiment.train_mask, experiment.train_labels)
        loss.backward()
        grads = [p.grad.clone() for p in experiment.model.trainable_parameters()]
        return loss.item(), grads, sum(saved)

    plain, checkpointed = step(False), step(True)
    assert plain[0] == pytest.approx(checkpointed[0], abs=1e-6)
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(plain[1], checkpointed[1], strict=True))
    assert checkpointed[2] < plain[2] / 2  # layer inputs only (recomputed in backward)


def test_the_memory_check_before_training_is_the_ledger(llama, monkeypatch):
    experiment = Experiment(Setup(llama, "lora", {}), _small("texts", 24))
    from peft_studio.core.memory.budget import ledger_estimate

    plain, checkpointed = ledger_estimate(experiment, 8), ledger_estimate(experiment, 8, checkpointing=True)
    assert checkpointed.total < plain.total
    frozen = sum(p.numel() for p in experiment.base.parameters() if not p.requires_grad)  # a tied head counts once
    assert plain.parts["frozen weights"] == 4 * frozen
    monkeypatch.setenv("PEFT_STUDIO_MEMORY_LIMIT_MB", "1")
    with pytest.raises(ConfigError, match="training at batch 8 needs about"):
        next(train(experiment, TrainSettings(steps=1, batch_size=8)))


def test_qlora_quantizes_the_checkpoints_own_weights(llama):
    experiment = Experiment(Setup(llama, "qlora", {}), _small("texts", 8))
    from peft_studio.core.bases import create_base

    original = create_base(llama)
    layer = experiment.base.get_submodule("model.layers.0.self_attn.q_proj")
    quantized = layer.base_layer if hasattr(layer, "base_layer") else layer
    assert isinstance(quantized, NF4Linear)
    weight = original.get_submodule("model.layers.0.self_attn.q_proj").weight
    import bitsandbytes.functional as bnb

    packed, state = bnb.quantize_4bit(weight.detach().contiguous(), blocksize=64, quant_type="nf4")
    assert torch.equal(quantized.dequantized_weight(), bnb.dequantize_4bit(packed, state))  # bitsandbytes' own NF4
    assert experiment.census().quantization.tensors == 2 * 7


def test_next_token_from_a_text_file_and_a_jsonl_file(llama, tmp_path, capsys):
    text = tmp_path / "notes.txt"
    text.write_text("the parcel never came\n\nplease refund my order\nmy login fails again\nthanks for the help\n")
    data = load_dataset_file(text, "text", "label", task="next-token", val_fraction=0.25)
    assert data.task == "next-token" and len(data.train_texts) + len(data.val_texts) == 4
    rows = tmp_path / "rows.jsonl"
    rows.write_text("\n".join(json.dumps({"text": t, "other": 1}) for t in ["a b c", "d e f", "g h i"]))
    assert load_dataset_file(rows, "text", "label", task="next-token").train_texts
    with pytest.raises(DatasetError, match="a .txt file holds texts without labels"):
        load_dataset_file(text, "text", "label")
    assert main(["train", "--base", llama, "--data", str(text), "--steps", "3", "--log-every", "1"]) == 0
    assert "next_token_acc" in capsys.readouterr().out
    assert main(["train", "--base", llama, "--data", str(rows), "--task", "next-token", "--steps", "2",
                 "--gradient-checkpointing"]) == 0
    assert main(["train", "--base", llama, "--dataset", "texts", "--task", "next-token", "--steps", "1"]) == 2
    assert "--task applies to a --data file" in capsys.readouterr().err


def test_a_saved_adapter_generates_what_the_trained_model_generates(llama, tmp_path, capsys):
    from peft_studio.core.files.adapter_file import save_adapter
    from peft_studio.core.model.generate import GenerationSettings, encode_prompt, generate

    experiment = Experiment(Setup(llama, "lora", {"targets": "all-linear"}), _small("texts", 16))
    for _ in train(experiment, TrainSettings(steps=8, lr=5e-2, batch_size=8, eval_every=8, track_grads=False)):
        pass
    path = save_adapter(experiment, tmp_path / "trained")
    experiment.model.eval()
    prompt = encode_prompt(experiment.tokenizer, "please refund")
    ours = generate(experiment.base, prompt, GenerationSettings(max_new_tokens=8)).generated_ids
    with experiment.model.bypassed():
        bare = generate(experiment.base, prompt, GenerationSettings(max_new_tokens=8)).generated_ids
    assert ours != bare  # training changed the continuation, so the comparison below can fail
    assert main(["generate", "--base", llama, "--adapter", str(path), "--json", "--max-new-tokens", "8",
                 "please refund"]) == 0
    assert json.loads(capsys.readouterr().out)["generated_ids"] == ours
