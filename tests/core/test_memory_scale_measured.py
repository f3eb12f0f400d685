"""Memory at scale's formulas against real training steps: the studio's `tiny-decoder` and transformers' Llama.

Weights, gradients and optimizer state are counted from the real tensors and must match exactly. Activations are
counted as core/memory/ledger.py does (autograd's saved tensors, each storage once, weights and inputs excluded).

- tiny-decoder, over a hypothesis-drawn matrix of method x targets x layers x batch x length (fp32, the studio's
  own eager attention, `studio_decoder=True`): the estimate plus the pooled last-token vector the studio's head
  reads (transformers scores every position instead; the formula counts that) equals the measurement within
  TOLERANCE (it is byte-exact on every case drawn so far).
- transformers' LlamaForSequenceClassification with PEFT's LoRA, attn_implementation "sdpa" and "eager", in fp32
  and bf16, unpadded batches of 1 and padded batches of more (as the formula assumes): within TOLERANCE of the
  measurement; what is left is the loss's few bytes (logits, labels). flash-attention 2 needs CUDA and is not
  measured here.
"""

from __future__ import annotations

import os

import pytest
import torch
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from torch.nn import functional as F

from peft_studio.core.data import load_builtin
from peft_studio.core.memory.at_scale import MemoryPlan, activation_bytes, ledger
from peft_studio.core.memory.ledger import _SavedStorages, _storage_key, _weight_storages
from peft_studio.core.model.experiment import Experiment, Setup

TOLERANCE = 0.01  # activations, relative; see the module docstring
DRAWN = settings(max_examples=40, deadline=None, derandomize=True, phases=(Phase.explicit, Phase.generate),
                 suppress_health_check=[HealthCheck.too_slow])


def _experiment(method: str, options: dict, layers: int = 2) -> Experiment:
    return Experiment(Setup("tiny-decoder", method, options, base_options={"n_layers": layers}),
                      load_builtin("intents"))


def _plan(experiment: Experiment, batch: int, length: int, attention: str = "eager") -> MemoryPlan:
    change = experiment.shape_change()
    return MemoryPlan(weights="fp32", optimizer="adamw", batch=batch, seq_len=length, attention=attention,
                      extra_tokens=change.input_tokens, extra_keys=change.key_tokens)


def _batch(experiment: Experiment, batch: int, length: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(batch * 1000 + length)
    ids = torch.randint(1, experiment.base.cfg.vocab_size, (batch, length), generator=generator)
    labels = torch.randint(0, experiment.dataset.num_labels, (batch,), generator=generator)
    return ids, torch.ones(batch, length, dtype=torch.bool), labels


def _one_step(experiment: Experiment, batch: int, length: int) -> dict[str, int]:
    """One real AdamW step; bytes of the real tensors by ledger line."""
    model = experiment.model
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    ids, mask, labels = _batch(experiment, batch, length)
    saved = _SavedStorages(_weight_storages(experiment) | {_storage_key(t) for t in (ids, mask, labels)})
    optimizer = torch.optim.AdamW(params, lr=1e-3)
    with saved.hooks():
        logits = model(ids, mask)
    F.cross_entropy(logits, labels).backward()
    optimizer.step()
    moments = [s[key] for s in optimizer.state.values() for key in ("exp_avg", "exp_avg_sq")]
    steps = [s["step"] for s in optimizer.state.values()]
    return {"trainable": sum(p.numel() * p.element_size() for p in params),
            "gradients": sum(p.grad.numel() * p.grad.element_size() for p in params),
            "moments": sum(t.numel() * t.element_size() for t in moments),
            "steps": sum(t.numel() * t.element_size() for t in steps),
            "activations": saved.total}


def _studio_estimate(experiment: Experiment, batch: int, length: int) -> int:
    """The formula for the studio's own decoder, plus what its head reads: the pooled vector and its indices."""
    pooled = batch * experiment.base.cfg.hidden_size * 4 + 2 * batch * 8
    estimate = activation_bytes(experiment.base, _plan(experiment, batch, length), experiment.census(),
                                studio_decoder=True)
    return estimate + (pooled if experiment.census().trainable_of("head") else 0)


def test_weights_gradients_and_adamw_state_equal_the_real_tensors():
    experiment = _experiment("lora", {"r": 8, "targets": "all-linear"})
    book = ledger(experiment.census(), experiment.base, _plan(experiment, 2, 12))
    by_key = dict(zip(book.keys, (size for _, size in book.lines), strict=True))
    measured = _one_step(experiment, 2, 12)
    assert by_key["trainable"] == measured["trainable"]
    assert by_key["gradients"] == measured["gradients"]
    assert by_key["optimizer"] == measured["moments"] + measured["steps"]  # exp_avg, exp_avg_sq, step


LINEARS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


@st.composite
def studio_setups(draw):
    """A method with drawn targets and layers on a tiny decoder of 2-4 layers."""
    layers = draw(st.integers(2, 4))
    method = draw(st.sampled_from(["lora", "dora", "qlora", "ia3", "vera", "ln-tuning", "prefix-tuning",
                                   "prompt-tuning", "adapter", "full"]))
    chosen = ",".join(str(i) for i in sorted(draw(st.sets(st.integers(0, layers - 1), min_size=1))))
    pick = st.lists(st.sampled_from(LINEARS), min_size=1, max_size=4, unique=True)
    options: dict = {}
    if method in ("lora", "dora", "qlora", "vera"):
        options = {"r": draw(st.integers(1, 8)), "targets": ",".join(draw(pick)), "layers": chosen}
    elif method == "ia3":
        options = {"targets": ",".join(draw(st.lists(st.sampled_from([*LINEARS, "ffn-act"]), min_size=1,
                                                          max_size=4, unique=True))), "layers": chosen}
    elif method == "ln-tuning":
        options = {"targets": draw(st.sampled_from(["attn-norm", "ffn-norm", "attn-norm,ffn-norm"])),
                   "layers": chosen}
    elif method == "prefix-tuning":
        options = {"tokens": draw(st.integers(1, 6)), "layers": chosen}
    elif method == "prompt-tuning":
        options = {"tokens": draw(st.integers(1, 6))}
    elif method == "adapter":
        options = {"placement": draw(st.sampled_from(["after-attn", "after-ffn", "both"])), "layers": chosen,
                   "nonlinearity": draw(st.sampled_from(["tanh", "relu", "gelu", "swish"]))}
    return method, options, layers, draw(st.integers(1, 4)), draw(st.integers(3, 40))


@DRAWN
@given(case=studio_setups())
def test_tiny_decoder_activations_match_autograds_saved_tensors_over_a_drawn_matrix(case):
    method, options, layers, batch, length = case
    experiment = _experiment(method, options, layers)
    estimate = _studio_estimate(experiment, batch, length)
    measured = _one_step(experiment, batch, length)["activations"]
    assert abs(estimate - measured) <= TOLERANCE * measured, (case, estimate, measured)


def test_only_the_head_training_keeps_only_the_heads_input():
    experiment = _experiment("head-only", {})
    census, base = experiment.census(), experiment.base
    assert activation_bytes(base, _plan(experiment, 4, 64), census, studio_decoder=True) == 0  # the pooled vector
    # transformers' score Linear reads every position's final hidden state
    assert activation_bytes(base, _plan(experiment, 4, 64), census) == 4 * 64 * base.hidden_size * 4


# ---- transformers' Llama, attn_implementation sdpa and eager ------------------------------------------------
LLAMA = dict(vocab_size=100, hidden_size=64, num_attention_heads=4, num_key_value_heads=2, num_hidden_layers=3,
             intermediate_size=96, max_position_embeddings=256, rms_norm_eps=1e-6, tie_word_embeddings=False)


def _transformers_step(attention: str, dtype: torch.dtype, batch: int, length: int, targets: list[str],
                       r: int) -> int:
    """Bytes autograd saves in one forward of LlamaForSequenceClassification + PEFT LoRA (a padded batch when
    batch > 1, as the formula assumes)."""
    transformers = pytest.importorskip("transformers")
    peft = pytest.importorskip("peft")
    torch.manual_seed(0)
    config = transformers.LlamaConfig(**LLAMA, num_labels=2, pad_token_id=0, attn_implementation=attention)
    model = transformers.LlamaForSequenceClassification(config).to(dtype)
    wrapped = peft.get_peft_model(model, peft.LoraConfig(task_type="SEQ_CLS", r=r, target_modules=targets))
    wrapped.train()
    ids = torch.randint(1, LLAMA["vocab_size"], (batch, length))
    mask = torch.ones(batch, length, dtype=torch.long)
    if batch > 1:
        mask[0, -3:] = 0
    skip = {_storage_key(t) for t in [*wrapped.parameters(), *wrapped.buffers(), ids, mask]}
    saved = _SavedStorages(skip)
    with saved.hooks():
        wrapped(input_ids=ids, attention_mask=mask, labels=torch.zeros(batch, dtype=torch.long))
    return saved.total


def _formula(attention: str, dtype: torch.dtype, batch: int, length: int, targets: list[str], r: int) -> int:
    from peft_studio.core.bases.architectures import build_from_config
    from peft_studio.core.methods import get_method
    from peft_studio.core.model.census import take_census
    from peft_studio.core.model.studio_model import StudioModel

    base = build_from_config({"model_type": "llama", **LLAMA}, "config.json", "llama", "llama")
    model = StudioModel(base)
    method = get_method("lora")
    with torch.device("meta"):
        method.attach(model, method.config({"r": r, "targets": ",".join(targets)}))
        model.add_head(2)
    plan = MemoryPlan(weights="fp32" if dtype == torch.float32 else "bf16", batch=batch, seq_len=length,
                      attention=attention)
    return activation_bytes(base, plan, take_census(model))


@settings(max_examples=16, deadline=None, derandomize=True, phases=(Phase.explicit, Phase.generate))
@given(attention=st.sampled_from(["sdpa", "eager"]), dtype=st.sampled_from([torch.float32, torch.bfloat16]),
       batch=st.integers(1, 3), length=st.integers(8, 48), r=st.integers(1, 8),
       targets=st.lists(st.sampled_from(LINEARS), min_size=1, max_size=7, unique=True))
def test_the_formula_follows_transformers_llama_under_each_attention_implementation(attention, dtype, batch,
                                                                                     length, r, targets):
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    measured = _transformers_step(attention, dtype, batch, length, targets, r)
    estimate = _formula(attention, dtype, batch, length, targets, r)
    assert abs(estimate - measured) <= TOLERANCE * measured, (estimate, measured)


def test_sdpa_keeps_less_than_eager_and_the_ledger_says_which_it_assumes():
    experiment = Experiment(Setup("llama-3-8b", "qlora", {"r": 16, "targets": "all-linear"}),
                            load_builtin("intents"))
    census = experiment.census()
    sizes = {name: activation_bytes(experiment.base, MemoryPlan(weights="nf4", seq_len=2048, attention=name),
                                    census) for name in ("sdpa", "eager", "flash")}
    assert sizes["flash"] <= sizes["sdpa"] < 0.7 * sizes["eager"]
    lines = dict(ledger(census, experiment.base, MemoryPlan(weights="nf4", seq_len=2048)).lines)
    assert any("sdpa attention" in what for what in lines)
    assert any("eager attention" in what for what in dict(ledger(
        census, experiment.base, MemoryPlan(weights="nf4", seq_len=2048, attention="eager")).lines))
