"""PEFT exchange for decoder checkpoints (test-only references: transformers and peft).

Export: every method with a PEFT format, trained a few steps on the next-token task (CAUSAL_LM) or on
classification (SEQ_CLS), written with --export-peft and loaded by
`PeftModel.from_pretrained(AutoModelFor...(FOLDER), out)`: the same logits. Import: adapters made by PEFT itself
(drawn LoRA settings, IA3, prompt tuning, a SEQ_CLS classifier) give the studio PEFT's logits and, through
`peft-studio generate --import-peft`, PEFT's greedy tokens."""

from __future__ import annotations

import functools
import json
import warnings

import pytest
import torch
from decoder_checkpoints import write_checkpoint
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from method_table import applies, fitting_options

from peft_studio.cli import main
from peft_studio.core.bases import create_base
from peft_studio.core.data import load_builtin
from peft_studio.core.errors import AdapterFileError, ConfigError
from peft_studio.core.interop.hf_peft import export_peft, import_peft
from peft_studio.core.methods import METHODS
from peft_studio.core.methods.prefix_tuning import PrefixTuningMethod
from peft_studio.core.model.experiment import Experiment, Setup
from peft_studio.core.runs.train import TrainSettings, train

transformers = pytest.importorskip("transformers", reason="transformers is the test-only reference")
peft = pytest.importorskip("peft", reason="peft is the test-only reference")
pytestmark = pytest.mark.filterwarnings("ignore::UserWarning", "ignore::FutureWarning")
# QLoRA exports a LoRA adapter trained on an NF4 base: its logits match PEFT only on a 4-bit base (issue 19);
EXACT = [name for name, method in METHODS.items() if method.peft_type and name != "qlora"]
# prefix tuning and Cartridges exchange with PEFT's shifted positions only: the real tokens at n .. n + L - 1 (the
# prefix counts as past tokens), the setting an import gives
FEW = settings(max_examples=6, deadline=None, derandomize=True,
               suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])


@functools.cache
def _base(folder: str):
    return create_base(folder)


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("ckpt")
    return {family: str(write_checkpoint(root / family, family, std=0.2)) for family in ("llama", "gpt2", "qwen2")}


def _data(task: str):
    data = load_builtin("texts" if task == "CAUSAL_LM" else "sentiment")
    if data.task == "next-token":
        return type(data)(data.name, (), data.train_texts[:16], (), (), (), data.source, task=data.task)
    return type(data)(data.name, data.label_names, data.train_texts[:16], data.train_labels[:16], (), (), data.source)


def _peft_model(folder: str, adapter, task: str, labels: int = 2, pad: int = 0):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if task == "CAUSAL_LM":
            model = transformers.AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
        else:
            model = transformers.AutoModelForSequenceClassification.from_pretrained(folder, num_labels=labels,
                                                                                  dtype=torch.float32)
            model.config.pad_token_id = pad
        return peft.PeftModel.from_pretrained(model, str(adapter)).eval()


@pytest.mark.parametrize("task", ["CAUSAL_LM", "SEQ_CLS"])
@pytest.mark.parametrize("method", EXACT)
@pytest.mark.parametrize("family", ["llama", "gpt2"])
def test_export_loads_in_peft_with_the_same_logits(folders, tmp_path, family, method, task):
    data = _data(task)
    options = fitting_options(method, _base(folders[family]))
    if options is None:  # the method cannot sit on this family (GPT-2's Conv1D, as PEFT refuses): said, not skipped
        with pytest.raises(ConfigError):
            Experiment(Setup(folders[family], method, {}), data)
        assert METHODS[method].refused_layers or not applies(method, _base(folders[family]))
        return
    if task == "CAUSAL_LM" and METHODS[method].next_token_refusal:  # said, not skipped (Lily's batch-wide router)
        with pytest.raises(ConfigError, match="cannot train on the next-token task"):
            Experiment(Setup(folders[family], method, options), data)
        return
    if isinstance(METHODS[method], PrefixTuningMethod):
        options = {**options, "positions": "shifted"}
    experiment = Experiment(Setup(folders[family], method, options), data)
    for _ in train(experiment, TrainSettings(steps=3, lr=5e-2, batch_size=8, eval_every=10, track_grads=False)):
        pass
    if task in METHODS[method].peft_unsupported_tasks:  # PEFT itself cannot run it: refused with that reason
        with pytest.raises(AdapterFileError, match=f"task_type {task} with .*: PEFT itself cannot run"):
            export_peft(experiment, tmp_path / "out")
        return
    out = export_peft(experiment, tmp_path / "out")
    config = json.loads((out / "adapter_config.json").read_text())
    assert config["task_type"] == task and config["base_model_name_or_path"] == folders[family]
    # one text per batch for SEQ_CLS: PEFT's soft prompt feeds inputs_embeds, and transformers then scores the last
    # position, which is a pad for a shorter row
    texts = ["refund my order please", "cannot login"] if task == "CAUSAL_LM" else ["refund my order please"]
    ids, mask = experiment.tokenizer.batch(texts)
    experiment.model.eval()
    with torch.no_grad():
        ours = experiment.model(ids, mask)
        theirs = _peft_model(folders[family], out, task, data.num_labels or 2, experiment.tokenizer.pad_id)(
            input_ids=ids, attention_mask=mask.long()).logits
    if task == "CAUSAL_LM":
        theirs = theirs[:, theirs.shape[1] - ids.shape[1]:]  # PEFT's logits include a soft prompt's positions
        ours, theirs = ours[mask], theirs[mask]
    assert torch.allclose(ours, theirs, atol=1e-4), (ours - theirs).abs().max()
    back = import_peft(Setup(folders[family], seed=9), out, data)  # and the folder comes back unchanged
    back.model.eval()
    with torch.no_grad():
        again = back.model(ids, mask)
    # an AdaLoRA adapter comes back pruned to its live triplets: the same sum in another order (2e-6 measured)
    assert torch.allclose(again[mask] if task == "CAUSAL_LM" else again, ours, atol=1e-5), \
        ((again[mask] if task == "CAUSAL_LM" else again) - ours).abs().max()


@st.composite
def lora_configs(draw):
    targets = draw(st.sampled_from([["q_proj", "v_proj"], ["k_proj", "o_proj", "down_proj"], "all-linear",
                                    ["gate_proj", "up_proj"]]))
    return peft.LoraConfig(task_type="CAUSAL_LM", r=draw(st.sampled_from([2, 4, 8])),
                           lora_alpha=draw(st.sampled_from([4, 16, 32])), target_modules=targets,
                           use_rslora=draw(st.booleans()), init_lora_weights=False)


def _made_by_peft(folder: str, config, out, seed: int = 0):
    torch.manual_seed(seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = peft.get_peft_model(transformers.AutoModelForCausalLM.from_pretrained(folder), config)
        with torch.no_grad():  # every adapter weight away from its identity start, so a mistake shows
            for parameter in model.parameters():
                if parameter.requires_grad:
                    parameter.add_(torch.randn_like(parameter) * 0.3)
        model.save_pretrained(out)
    return _peft_model(folder, out, "CAUSAL_LM")


def _peft_greedy(model, prompt: list[int], new: int) -> list[int]:
    if model.peft_config["default"].peft_type in (peft.PeftType.PROMPT_TUNING, peft.PeftType.PREFIX_TUNING,
                                                  peft.PeftType.CARTRIDGE):
        # PEFT 0.21's generate() with a soft prompt under transformers 5.25 departs from PEFT's own forward after
        # the second new token (its cache positions leave the virtual tokens out), with a prefix or a cartridge
        # after the first (measured: the first token agrees, then the cache continues from other positions); the
        # model is its forward: greedy decoding, the whole sequence each step
        sequence = list(prompt)
        with torch.no_grad():
            for _ in range(new):
                sequence.append(int(model(input_ids=torch.tensor([sequence])).logits[0, -1].argmax()))
        return sequence[len(prompt):]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = model.generate(input_ids=torch.tensor([prompt]), attention_mask=torch.ones(1, len(prompt),
                             dtype=torch.long), do_sample=False, max_new_tokens=new, pad_token_id=0)
    return out[0, len(prompt):].tolist()


@FEW
@given(config=lora_configs())
def test_peft_lora_imports_and_generates_the_same_tokens(folders, tmp_path_factory, capsys, config):
    out = tmp_path_factory.mktemp("lora")
    model = _made_by_peft(folders["qwen2"], config, out)
    assert main(["generate", "--base", folders["qwen2"], "--import-peft", str(out), "--json", "--max-new-tokens",
                 "10", "refund my order"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["generated_ids"] == _peft_greedy(model, result["prompt_ids"], 10)


@pytest.mark.parametrize("config", [
    lambda: peft.IA3Config(task_type="CAUSAL_LM", init_ia3_weights=False),  # PEFT's Llama default targets
    lambda: peft.IA3Config(task_type="CAUSAL_LM", target_modules=["q_proj", "o_proj", "up_proj"],
                           feedforward_modules=["o_proj"], init_ia3_weights=False),
    lambda: peft.PromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=5),
    lambda: peft.LNTuningConfig(task_type="CAUSAL_LM"),
    lambda: peft.LoraConfig(task_type="CAUSAL_LM", r=4, use_dora=True, target_modules=["v_proj", "down_proj"]),
    # served as past key values: the real tokens at positions n .. n + L - 1, the prefix keys not rotated
    lambda: peft.PrefixTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=3),
    lambda: peft.PrefixTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=2, prefix_projection=True,
                                    encoder_hidden_size=8),
    lambda: peft.CartridgeConfig(task_type="CAUSAL_LM", num_virtual_tokens=4, num_frozen_tokens=1),
])
def test_other_peft_adapters_import_and_generate_the_same_tokens(folders, tmp_path, capsys, config):
    model = _made_by_peft(folders["llama"], config(), tmp_path / "a", seed=1)
    assert main(["generate", "--base", folders["llama"], "--import-peft", str(tmp_path / "a"), "--json",
                 "--max-new-tokens", "8", "need a refund today"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["generated_ids"] == _peft_greedy(model, result["prompt_ids"], 8)


def test_a_gpt2_lora_with_fan_in_fan_out_imports(folders, tmp_path, capsys):
    config = peft.LoraConfig(task_type="CAUSAL_LM", r=4, target_modules=["c_attn", "mlp.c_proj"],
                             fan_in_fan_out=True, init_lora_weights=False)
    model = _made_by_peft(folders["gpt2"], config, tmp_path / "g")
    assert main(["generate", "--base", folders["gpt2"], "--import-peft", str(tmp_path / "g"), "--json",
                 "--max-new-tokens", "8", "cannot login"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["generated_ids"] == _peft_greedy(model, result["prompt_ids"], 8)


def test_a_peft_classifier_imports_with_its_score_head(folders, tmp_path):
    data = _data("SEQ_CLS")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = transformers.AutoModelForSequenceClassification.from_pretrained(folders["llama"], num_labels=2)
        model = peft.get_peft_model(model, peft.LoraConfig(task_type="SEQ_CLS", r=4, init_lora_weights=False))
        model.save_pretrained(tmp_path / "cls")
    experiment = import_peft(Setup(folders["llama"]), tmp_path / "cls", data)
    ids, mask = experiment.tokenizer.batch(["refund my order please"])
    experiment.model.eval()
    reference = _peft_model(folders["llama"], tmp_path / "cls", "SEQ_CLS", 2, experiment.tokenizer.pad_id)
    with torch.no_grad():
        assert torch.allclose(experiment.model(ids, mask), reference(input_ids=ids).logits, atol=1e-5)
    with pytest.raises(AdapterFileError, match="a head for 2 labels"):  # a dataset with other labels is refused
        import_peft(Setup(folders["llama"]), tmp_path / "cls", load_builtin("intents"))


def test_generate_with_a_seq_cls_adapter_says_its_head_is_left_out(folders, tmp_path, capsys):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = transformers.AutoModelForSequenceClassification.from_pretrained(folders["llama"], num_labels=3)
        peft.get_peft_model(model, peft.LoraConfig(task_type="SEQ_CLS", r=4)).save_pretrained(tmp_path / "c")
    assert main(["generate", "--base", folders["llama"], "--import-peft", str(tmp_path / "c"), "hi"]) == 0
    assert "left out its classification head (score, 3 labels)" in capsys.readouterr().err
