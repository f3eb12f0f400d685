"""PEFT classification adapters (task_type SEQ_CLS on BertForSequenceClassification): every PEFT type the studio
exchanges imports with its saved classifier and BERT's pooler, and predicts the logits PEFT predicts; the adapter a
recipe's train.py writes is one of them."""

from __future__ import annotations

import copy

import pytest
import torch
from peft_reference import PEFT_WARNINGS, peft, transformers  # offline switches, reference skips
from safetensors.torch import load_file

from peft_studio.core.data import load_builtin
from peft_studio.core.errors import AdapterFileError
from peft_studio.core.interop.hf_peft import import_peft, peft_setup
from peft_studio.core.methods import METHODS
from peft_studio.core.model.experiment import Experiment, Setup

pytestmark = PEFT_WARNINGS

TEXTS = ["the food was great", "terrible service and a long slow wait", "ok", "i loved it", "not for me"]
_MODELS: dict = {}


@pytest.fixture(scope="module")
def data():
    return load_builtin("sentiment")


@pytest.fixture(scope="module")
def folder():
    from peft_studio.core.bases.pretrained import minilm_folder

    return str(minilm_folder())


def classifier(folder, labels=2, seed=0):
    """MiniLM as BertForSequenceClassification (its pooler from the checkpoint, a seeded random classifier)."""
    if (folder, labels) not in _MODELS:
        torch.manual_seed(seed)
        _MODELS[folder, labels] = transformers.BertForSequenceClassification.from_pretrained(
            folder, num_labels=labels).eval()
    return copy.deepcopy(_MODELS[folder, labels])


# One configuration per PEFT type the studio exchanges (and LoRA's variants), all with task_type SEQ_CLS.
SEQ_CLS_CONFIGS = {
    "lora": lambda: peft.LoraConfig(task_type="SEQ_CLS", r=4, lora_alpha=8, target_modules=["query", "value"]),
    "lora-all-linear-pissa": lambda: peft.LoraConfig(task_type="SEQ_CLS", r=4, target_modules="all-linear",
                                                     init_lora_weights="pissa", bias="lora_only"),
    "dora": lambda: peft.LoraConfig(task_type="SEQ_CLS", r=4, target_modules=["key", "dense"], use_dora=True),
    "ia3": lambda: peft.IA3Config(task_type="SEQ_CLS"),
    "vera": lambda: peft.VeraConfig(task_type="SEQ_CLS", r=8, target_modules=["query", "value"]),
    "ln-tuning": lambda: peft.LNTuningConfig(task_type="SEQ_CLS", target_modules=["LayerNorm"]),
    "prompt": lambda: peft.PromptTuningConfig(task_type="SEQ_CLS", num_virtual_tokens=4),
    "p-tuning": lambda: peft.PromptEncoderConfig(task_type="SEQ_CLS", num_virtual_tokens=3, encoder_hidden_size=16),
}
# PEFT's TrainableTokensConfig has no modules_to_save: its SEQ_CLS folder holds no classifier, and PEFT's own reload
# draws a random one, so there are no predictions to reproduce (the import says so)
HEADLESS = {"trainable-tokens": lambda: peft.TrainableTokensConfig(task_type="SEQ_CLS", token_indices=[2307, 101])}
UNRUNNABLE = {"prefix": lambda: peft.PrefixTuningConfig(task_type="SEQ_CLS", num_virtual_tokens=3),  # by PEFT itself
              "cartridge": lambda: peft.CartridgeConfig(task_type="SEQ_CLS", num_virtual_tokens=3),
              # PEFT puts an adaption prompt in llama, mistral and gpt2 attention only (decoders' tests have it)
              "adaption-prompt": lambda: peft.AdaptionPromptConfig(task_type="SEQ_CLS", adapter_len=2,
                                                                   adapter_layers=1)}
# every other exchanged type from the registry: PEFT's own defaults on query and value, with the settings PEFT needs
# on MiniLM's 384-wide Linears (its 256 defaults do not divide 384; AdaLoRA's schedule needs its length)
FITTING_384 = {"VBLORA": {"vector_length": 128}, "C3A": {"block_size": 128}, "ADALORA": {"total_step": 10}}
_COVERED = {make().peft_type.value for make in (*SEQ_CLS_CONFIGS.values(), *UNRUNNABLE.values(), *HEADLESS.values())}
for _type in sorted({m.peft_type for m in METHODS.values() if m.peft_type} - _COVERED):
    SEQ_CLS_CONFIGS[_type.lower()] = lambda t=_type: peft.PEFT_TYPE_TO_CONFIG_MAPPING[t](
        task_type="SEQ_CLS", target_modules=["query", "value"], **FITTING_384.get(t, {}))


def trained_like(wrapped):
    """Every trainable tensor moved off its initial value (LoRA's B and VeRA's lambda_b start at zero)."""
    generator = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for parameter in wrapped.parameters():
            if parameter.requires_grad:
                parameter.add_(0.1 * torch.randn(parameter.shape, generator=generator))
    return wrapped.eval()


def test_every_exchanged_peft_type_has_a_seq_cls_case():
    types = {m.peft_type for m in METHODS.values() if m.peft_type}
    made = {make().peft_type.value for make in (*SEQ_CLS_CONFIGS.values(), *UNRUNNABLE.values(), *HEADLESS.values())}
    assert types <= made


@pytest.mark.parametrize("name", list(SEQ_CLS_CONFIGS))
def test_a_peft_classifier_adapter_imports_with_its_head_and_predicts_the_same(tmp_path, folder, data, name):
    wrapped = trained_like(peft.get_peft_model(classifier(folder), SEQ_CLS_CONFIGS[name]()))
    wrapped.save_pretrained(str(tmp_path / name))
    # PEFT's own prediction from the saved folder, on a fresh model whose classifier is drawn differently
    loaded = peft.PeftModel.from_pretrained(classifier(folder, seed=99), str(tmp_path / name)).eval()
    experiment = import_peft(Setup("minilm", seed=5), tmp_path / name, data)
    assert experiment.setup.base_options == {"pooling": "pooler"}
    assert any("task_type SEQ_CLS" in note for note in experiment.notes)
    ids, mask = experiment.tokenizer.batch(TEXTS)
    experiment.model.eval()
    with torch.no_grad():
        theirs = loaded(input_ids=ids, attention_mask=mask.long()).logits
        ours = experiment.model(ids, mask)
    assert (theirs - ours).abs().max() <= 1e-4
    assert experiment.predict_labels(TEXTS) == [data.label_names[i] for i in theirs.argmax(-1).tolist()]
    if not wrapped.peft_config["default"].is_prompt_learning:  # loaded frozen: its vectors are PEFT's adapter
        adapter = sum(p.numel() for n, p in wrapped.named_parameters() if p.requires_grad and "classifier" not in n)
        assert experiment.method_parameter_count() == adapter
    assert peft_setup(tmp_path / name).base_options == {"pooling": "pooler"}


def test_a_classifier_needs_the_pooler_and_the_labels_it_was_trained_for(tmp_path, folder, data):
    wrapped = trained_like(peft.get_peft_model(classifier(folder, labels=3), SEQ_CLS_CONFIGS["lora"]()))
    wrapped.save_pretrained(str(tmp_path / "three"))
    with pytest.raises(AdapterFileError, match=r"a head for 3 labels .* \(2 labels\)"):
        import_peft(Setup("minilm"), tmp_path / "three", data)
    with pytest.raises(AdapterFileError, match="needs BERT's pooler"):
        import_peft(Setup("tiny"), tmp_path / "three", data)
    two = tmp_path / "two"
    trained_like(peft.get_peft_model(classifier(folder), SEQ_CLS_CONFIGS["lora"]())).save_pretrained(str(two))
    with pytest.raises(AdapterFileError, match="build it with base option pooling=pooler"):
        import_peft(Experiment(Setup("minilm", "lora", {"r": 4, "alpha": 8}), data), two)
    into = Experiment(Setup("minilm", "lora", {"r": 4, "alpha": 8}, base_options={"pooling": "pooler"}), data)
    assert import_peft(into, two) is into


@pytest.mark.parametrize("name", ["prefix", "cartridge"])
def test_a_classifier_adapter_peft_itself_cannot_run_is_refused_with_the_reason(tmp_path, folder, data, name):
    config = UNRUNNABLE[name]()
    wrapped = trained_like(peft.get_peft_model(classifier(folder), config))
    wrapped.save_pretrained(str(tmp_path / name))
    with pytest.raises(ValueError, match="past key values"):  # PEFT's own failure
        wrapped(input_ids=torch.tensor([[101, 102]]))
    with pytest.raises(AdapterFileError, match=f"task_type SEQ_CLS with {config.peft_type.value}: PEFT itself "
                                               "cannot run"):
        import_peft(Setup("minilm"), tmp_path / name, data)


@pytest.mark.parametrize("name", list(HEADLESS))
def test_a_classifier_adapter_saved_without_its_classifier_is_refused_with_the_reason(tmp_path, folder, data, name):
    wrapped = trained_like(peft.get_peft_model(classifier(folder), HEADLESS[name]()))
    wrapped.save_pretrained(str(tmp_path / name))
    assert not any("classifier" in key for key in load_file(str(tmp_path / name / "adapter_model.safetensors")))
    with pytest.raises(AdapterFileError, match="a SEQ_CLS adapter without its classifier"):
        import_peft(Setup("minilm"), tmp_path / name, data)
