"""Hugging Face PEFT interop: studio -> PEFT folder -> PeftModel gives the same outputs, and back."""

from __future__ import annotations

import json

import pytest
import torch
from peft_reference import PEFT_WARNINGS, peft, transformers  # offline switches, reference skips
from safetensors.torch import load_file, save_file

from peft_studio.core.data import load_builtin
from peft_studio.core.errors import AdapterFileError, ConfigError
from peft_studio.core.interop.hf_peft import (
    check_peft_export,
    export_peft,
    import_peft,
    peft_setup,
)
from peft_studio.core.model.experiment import Experiment, Setup

pytestmark = PEFT_WARNINGS

TEXTS = ["the food was great", "terrible service and a long slow wait", "ok", "i loved it"]
FF = r".*layer\.\d+\.output\.dense$"


@pytest.fixture(scope="module")
def data():
    return load_builtin("sentiment")


@pytest.fixture(scope="module")
def folder():
    from peft_studio.core.bases.pretrained import minilm_folder

    return str(minilm_folder())


def bert(folder):
    return transformers.BertModel.from_pretrained(folder).eval()


def mean_pool(hidden, mask):
    weights = mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * weights).sum(1) / weights.sum(1)


def randomize(experiment, scale=0.05):
    """Non-trivial method weights (LoRA B non-zero, IA3 scales not one), same values wherever copied."""
    generator = torch.Generator().manual_seed(123)
    with torch.no_grad():
        for name, parameter in experiment.model.named_parameters():
            if parameter.requires_grad and not name.startswith("head."):
                noise = torch.randn(parameter.shape, generator=generator)
                if "ia3_scale" in name:
                    parameter.copy_(1 + 0.3 * noise)
                elif "lora_A" not in name:  # LoRA B starts at zero; prompts and prefixes get nudged too
                    parameter.add_(scale * noise)


def peft_outputs(wrapped, experiment, texts, head_file):
    """Hidden states, mean over the (prompt-extended) mask, and head logits from the PEFT side."""
    ids, mask = experiment.tokenizer.batch(texts)
    with torch.no_grad():
        hidden = wrapped(input_ids=ids, attention_mask=mask.long()).last_hidden_state
    extra = hidden.shape[1] - ids.shape[1]  # prompt tuning puts n virtual tokens in front
    full_mask = torch.cat([torch.ones(len(texts), extra, dtype=torch.bool), mask], dim=1)
    pooled = mean_pool(hidden, full_mask)
    head = load_file(str(head_file))
    return hidden, full_mask, pooled, pooled @ head["weight"].T + head["bias"]


def studio_outputs(experiment, texts):
    ids, mask = experiment.tokenizer.batch(texts)
    experiment.model.eval()
    with torch.no_grad():
        hidden, full_mask = experiment.base.encode(ids, mask)
        return hidden, full_mask, experiment.base(ids, mask), experiment.model(ids, mask)


CASES = [
    ("lora", {"r": 8, "targets": "query,value"}),
    ("lora", {"r": 4, "alpha": 8, "targets": "k,o,up,down", "layers": "1,4"}),
    ("ia3", {}),  # keys, values and the feed-forward activation
    ("ia3", {"targets": "q,up"}),  # Linear outputs
    ("prompt-tuning", {"tokens": 20}),
]


@pytest.mark.parametrize("method, options", CASES, ids=lambda v: v if isinstance(v, str) else json.dumps(v))
def test_export_loads_in_peft_with_the_same_outputs(tmp_path, folder, data, method, options):
    experiment = Experiment(Setup("minilm", method, options, seed=1), data)
    randomize(experiment)
    out = export_peft(experiment, tmp_path / "adapter")
    assert sorted(p.name for p in out.iterdir()) == ["README.md", "adapter_config.json", "adapter_model.safetensors",
                                                     "head.safetensors"]
    wrapped = peft.PeftModel.from_pretrained(bert(folder), str(out)).eval()
    assert sum(p.numel() for n, p in wrapped.named_parameters() if "lora_" in n or "ia3_" in n or
               "prompt_encoder" in n) == experiment.method_parameter_count()
    theirs = peft_outputs(wrapped, experiment, TEXTS, out / "head.safetensors")
    ours = studio_outputs(experiment, TEXTS)
    assert torch.equal(theirs[1], ours[1])  # same (prompt-extended) mask
    assert (theirs[0] - ours[0])[ours[1]].abs().max() <= 1e-4
    assert (theirs[2] - ours[2]).abs().max() <= 1e-4
    assert (theirs[3] - ours[3]).abs().max() <= 1e-4


def test_exported_files_are_peft_shaped(tmp_path, data):
    experiment = Experiment(Setup("minilm", "lora", {"targets": "q,v"}), data)
    out = export_peft(experiment, tmp_path / "a")
    config = json.loads((out / "adapter_config.json").read_text())
    assert config["peft_type"] == "LORA" and config["task_type"] == "FEATURE_EXTRACTION"
    assert config["r"] == 8 and config["lora_alpha"] == 16 and len(config["target_modules"]) == 12
    keys = set(load_file(str(out / "adapter_model.safetensors")))
    assert "base_model.model.encoder.layer.0.attention.self.query.lora_A.weight" in keys and len(keys) == 24
    assert config["base_model_name_or_path"] == "sentence-transformers/all-MiniLM-L6-v2"
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # atomic writes leave no temp files


def peft_train(folder, config, data, steps=2, seed=0):
    """Train with PEFT itself: BertModel + adapter + a Linear head on mean-pooled states."""
    torch.manual_seed(seed)
    wrapped = peft.get_peft_model(bert(folder), config)
    head = torch.nn.Linear(384, data.num_labels)
    from peft_studio.core.bases.pretrained import load_pretrained

    ids, mask = load_pretrained("minilm").tokenizer.batch(list(data.train_texts[:16]))
    labels = torch.tensor(data.train_labels[:16])
    params = [p for p in wrapped.parameters() if p.requires_grad] + list(head.parameters())
    optimizer = torch.optim.Adam(params, lr=1e-2)
    wrapped.train()
    for _ in range(steps):
        hidden = wrapped(input_ids=ids, attention_mask=mask.long()).last_hidden_state
        extra = hidden.shape[1] - ids.shape[1]
        full = torch.cat([torch.ones(len(ids), extra, dtype=torch.bool), mask], dim=1)
        loss = torch.nn.functional.cross_entropy(head(mean_pool(hidden, full)), labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    wrapped.eval()
    return wrapped, head


PEFT_CONFIGS = [
    lambda: peft.LoraConfig(r=4, lora_alpha=8, target_modules=["query", "value", "output.dense"]),
    lambda: peft.LoraConfig(r=8, lora_alpha=16, target_modules=["key"], layers_to_transform=[0, 2],
                            use_rslora=True),
    lambda: peft.IA3Config(target_modules=rf".*\.(key|value)$|{FF}", feedforward_modules=FF),
    lambda: peft.PromptTuningConfig(task_type="FEATURE_EXTRACTION", num_virtual_tokens=6),
]


@pytest.mark.parametrize("make_config", PEFT_CONFIGS, ids=["lora", "lora-rslora-layers", "ia3", "prompt"])
def test_a_peft_trained_adapter_imports_and_predicts_the_same(tmp_path, folder, data, make_config):
    wrapped, head = peft_train(folder, make_config(), data)
    out = tmp_path / "trained"
    wrapped.save_pretrained(str(out))
    save_file({"weight": head.weight.detach().contiguous(), "bias": head.bias.detach().contiguous()},
              str(out / "head.safetensors"))
    experiment = import_peft(Setup("minilm", seed=5), out, data)
    theirs = peft_outputs(wrapped, experiment, TEXTS, out / "head.safetensors")
    ours = studio_outputs(experiment, TEXTS)
    assert (theirs[3] - ours[3]).abs().max() <= 1e-4
    trainable = sum(p.numel() for p in wrapped.parameters() if p.requires_grad)
    assert experiment.method_parameter_count() == trainable
    assert experiment.predict_labels(TEXTS) == [data.label_names[i] for i in theirs[3].argmax(-1).tolist()]


def test_round_trip_into_an_existing_experiment(tmp_path, data):
    first = Experiment(Setup("minilm", "lora", {"targets": "v,up", "layers": "2,3"}, seed=0), data)
    randomize(first)
    export_peft(first, tmp_path / "a")
    setup = peft_setup(tmp_path / "a")
    assert setup.method == "lora" and setup.options["targets"] == "v,up" and setup.options["layers"] == "2,3"
    second = Experiment(Setup("minilm", "lora", {"targets": "value,intermediate.dense", "layers": "2,3"}, seed=9),
                        data)
    import_peft(second, tmp_path / "a")
    ids, mask = first.tokenizer.batch(TEXTS)
    with torch.no_grad():
        assert torch.equal(first.model(ids, mask), second.model(ids, mask))


# ---- refusals ----------------------------------------------------------------------------------
def _lora_folder(tmp_path, data):
    experiment = Experiment(Setup("minilm", "lora", {}), data)
    return export_peft(experiment, tmp_path / "a"), experiment


def _edit(path, **changes):
    config = json.loads(path.read_text())
    config.update(changes)
    path.write_text(json.dumps(config))


def _retensor(path, change):
    tensors = load_file(str(path))
    change(tensors)
    save_file(tensors, str(path))


BREAKAGES = [
    (lambda f: (f / "adapter_config.json").unlink(), "no adapter_config.json"),
    (lambda f: (f / "adapter_model.safetensors").unlink(), "no adapter_model.safetensors"),
    (lambda f: (f / "adapter_model.safetensors").rename(f / "adapter_model.bin"), "adapter_model.bin is pickle"),
    (lambda f: (f / "adapter_config.json").write_text("[1"), "not readable JSON"),
    (lambda f: (f / "adapter_model.safetensors").write_bytes(b"\x00" * 9), "not a readable safetensors file"),
    (lambda f: _edit(f / "adapter_config.json", peft_type="NO_SUCH_TYPE"), "peft_type 'NO_SUCH_TYPE' is not supported"),
    (lambda f: _edit(f / "adapter_config.json", r=4), "has rank 8, adapter_config.json says r=4"),
    (lambda f: _edit(f / "adapter_config.json", use_dora=True),  # DoRA's, but without its magnitudes
     "lora_magnitude_vector, which the adapter does not have"),
    (lambda f: _edit(f / "adapter_config.json", bias="all"),  # PEFT's bias all saves every bias it trained
     "the model trains embeddings.norm.bias, which the adapter does not have"),
    (lambda f: _edit(f / "adapter_config.json", bias="some"), "bias must be one of none, all, lora_only"),
    (lambda f: _edit(f / "adapter_config.json", lora_bias=True), "lora_bias (a bias on lora_B) is not supported"),
    (lambda f: _edit(f / "adapter_config.json", init_lora_weights="pissa_niter_4"), "randomized SVD"),
    (lambda f: _edit(f / "adapter_config.json", init_lora_weights="corda"), "preprocess_corda"),
    (lambda f: _edit(f / "adapter_config.json", modules_to_save=["pooler"]), "modules_to_save ['pooler']"),
    (lambda f: _edit(f / "adapter_config.json", task_type="SEQ_CLS"), "a SEQ_CLS adapter without its classifier"),
    (lambda f: _edit(f / "adapter_config.json", task_type="CAUSAL_LM"), "task_type CAUSAL_LM adapts a decoder"),
    (lambda f: _retensor(f / "adapter_model.safetensors", lambda t: t.update({
        "base_model.model.encoder.layer.9.attention.self.query.lora_A.weight": torch.zeros(8, 384),
        "base_model.model.encoder.layer.9.attention.self.query.lora_B.weight": torch.zeros(384, 8)})),
     "targets encoder.layer.9.attention.self.query, which base 'minilm' (6 layers) does not have"),
    (lambda f: _retensor(f / "adapter_model.safetensors", lambda t: t.update({
        "base_model.model.embeddings.word_embeddings.lora_A.weight": torch.zeros(8, 30522)})),
     "an embedding table's LoRA is lora_embedding_A and lora_embedding_B"),
    (lambda f: _retensor(f / "adapter_model.safetensors", lambda t: t.update({
        "base_model.model.embeddings.LayerNorm.lora_A.weight": torch.zeros(8, 384)})),
     "holds tensors for embeddings.LayerNorm, which target_modules does not select"),
    (lambda f: _retensor(f / "adapter_model.safetensors", lambda t: t.update({
        "base_model.model.pooler.dense.lora_A.weight": torch.zeros(8, 384)})),
     "holds tensors for pooler.dense, which target_modules does not select"),
    (lambda f: _retensor(f / "adapter_model.safetensors", lambda t: t.update({
        "base_model.model.cls.predictions.bias": torch.zeros(30522)})), None),  # left out with a note
    (lambda f: _retensor(f / "adapter_model.safetensors", lambda t: t.update({
        "base_model.model.encoder.layer.0.attention.self.qkv.lora_A.weight": torch.zeros(8, 384)})),
     "unknown target module"),
    (lambda f: _retensor(f / "adapter_model.safetensors", lambda t: t.update({
        "base_model.model.encoder.layer.0.attention.self.query.lora_B.weight": torch.zeros(100, 8)})),
     "lora_B has shape (100, 8), the model needs (384, 8)"),
    (lambda f: _retensor(f / "head.safetensors", lambda t: t.update({"weight": torch.zeros(3, 384)})),
     "bias has 2 entries for 3 labels"),
    (lambda f: _retensor(f / "head.safetensors", lambda t: t.update({"weight": torch.zeros(2, 8)})),
     "a head for 2 labels of width 8"),
    (lambda f: _retensor(f / "head.safetensors", lambda t: t.update({"weight": torch.zeros(384)})),
     "weight has shape (384,); expected (labels, width)"),
]


@pytest.mark.parametrize("breakage, message", BREAKAGES)
def test_broken_adapter_folders_are_refused_with_the_reason(tmp_path, data, breakage, message):
    out, _ = _lora_folder(tmp_path, data)
    breakage(out)
    if message is None:
        assert any("left out cls" in note for note in import_peft(Setup("minilm"), out, data).notes)
        return
    with pytest.raises(AdapterFileError) as error:
        import_peft(Setup("minilm"), out, data)
    assert message in str(error.value)


def test_ia3_feed_forward_on_another_module_scales_its_input(tmp_path, folder, data):
    wrapped = peft.get_peft_model(bert(folder), peft.IA3Config(target_modules=["intermediate.dense"],
                                                              feedforward_modules=["intermediate.dense"]))
    wrapped.save_pretrained(str(tmp_path / "ia3"))
    setup = peft_setup(tmp_path / "ia3")
    assert setup.method == "ia3" and setup.options["targets"] == "up-in" and setup.options["layers"] is None


def test_mismatched_experiments_and_methods_are_refused(tmp_path, data):
    out, _ = _lora_folder(tmp_path, data)
    with pytest.raises(AdapterFileError, match="a LORA adapter, but the model uses 'ia3'"):
        import_peft(Experiment(Setup("minilm", "ia3"), data), out)
    with pytest.raises(AdapterFileError, match="which the adapter does not have"):
        import_peft(Experiment(Setup("minilm", "lora", {"targets": "q,v,k"}), data), out)
    with pytest.raises(AdapterFileError, match=r"LoRA scale 2 \(alpha / r = 16/8\)"):
        import_peft(Experiment(Setup("minilm", "lora", {"alpha": 4}), data), out)
    with pytest.raises(AdapterFileError, match="no such folder"):
        import_peft(Setup("minilm"), tmp_path / "missing", data)
    with pytest.raises(ConfigError, match="a dataset is needed"):
        import_peft(Setup("minilm"), out)
    with pytest.raises(AdapterFileError, match="method 'adapter' has no PEFT adapter format"):
        check_peft_export(Experiment(Setup("minilm", "adapter"), data))
    with pytest.raises(AdapterFileError, match="method 'adapter' has no PEFT adapter format"):
        export_peft(Experiment(Setup("minilm", "adapter"), data), tmp_path / "b")
    assert not (tmp_path / "b").exists()
    with pytest.raises(AdapterFileError, match="one IA3 vector per module"):
        check_peft_export(Experiment(Setup("minilm", "ia3", {"targets": "ffn-act,down"}), data))
    with pytest.raises(AdapterFileError, match="neither a BERT-style encoder nor a decoder"):
        export_peft(Experiment(Setup("seed-pooled", "lora"), load_builtin("seed-intents")), tmp_path / "c")


def test_prefix_tuning_is_exchanged_only_with_peft_positions(tmp_path, folder, data):
    """PEFT's prefix on BertModel equals the studio's prefix only with every real position moved by n."""
    experiment = Experiment(Setup("minilm", "prefix-tuning", {"tokens": 5}, seed=1), data)
    with pytest.raises(AdapterFileError, match="shifts the real tokens' positions"):
        export_peft(experiment, tmp_path / "p")
    wrapped = peft.get_peft_model(bert(folder), peft.PrefixTuningConfig(task_type="FEATURE_EXTRACTION",
                                                                        num_virtual_tokens=5)).eval()
    base = experiment.base
    with torch.no_grad():  # the same prefixes on both sides: PEFT's layout is [layer0 K, layer0 V, layer1 K, ...]
        wrapped.prompt_encoder.default.embedding.weight.copy_(torch.cat(
            [t for i in range(6) for t in (base.layers[i].attn.kv_prefix.keys, base.layers[i].attn.kv_prefix.values)],
            dim=1))
        ids, mask = experiment.tokenizer.batch(TEXTS)
        theirs = wrapped(input_ids=ids, attention_mask=mask.long()).last_hidden_state
        position = base.embeddings.position.weight
        original = position.clone()
        position.copy_(torch.cat([original[5:], original[:5]]))  # real tokens at positions 5, 6, ...
        shifted, _ = base.encode(ids, mask)
        position.copy_(original)
        ours, _ = base.encode(ids, mask)
    assert (theirs - shifted)[mask].abs().max() <= 1e-4
    assert (theirs - ours)[mask].abs().max() > 1e-2
    wrapped.save_pretrained(str(tmp_path / "peft-prefix"))
    assert peft_setup(tmp_path / "peft-prefix").options["positions"] == "shifted"  # the setting that equals PEFT
