"""The next-token task on the tiny decoder: causality with every method attached, the loss, training, refusals."""

from __future__ import annotations

import pytest
import torch
from method_table import applies, method_names
from torch.nn import functional as F

from peft_studio.cli import main
from peft_studio.core.bases import create_base
from peft_studio.core.data import TextDataset, load_builtin
from peft_studio.core.errors import ConfigError, DatasetError
from peft_studio.core.files.setup_file import load_setup, save_setup
from peft_studio.core.model.experiment import Experiment, Setup
from peft_studio.core.model.next_token import check_next_token, next_token_loss, predict_next
from peft_studio.core.runs.train import TrainSettings, train

DECODER = create_base("tiny-decoder", load_builtin("texts").make_tokenizer())


def _next_token_allows(method: str) -> bool:
    try:
        check_next_token(DECODER, method)
    except ConfigError:
        return False
    return applies(method, DECODER)


METHODS = method_names(lambda m: _next_token_allows(m.name))  # head-only is refused (tested below)


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny models on a shared machine: no OpenMP spin-waiting
    yield
    torch.set_num_threads(threads)


def _experiment(method: str, **options) -> Experiment:
    return Experiment(Setup("tiny-decoder", method, options), load_builtin("texts"))


def _perturb(experiment: Experiment) -> None:
    """Random values in every trainable tensor, so each method's part really changes the output (LoRA's B
    starts at zero, IA3 at ones)."""
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in experiment.model.trainable_parameters():
            p.add_(0.5 * torch.randn(p.shape, generator=generator))


def test_texts_dataset_is_a_labelless_next_token_dataset():
    dataset = load_builtin("texts")
    assert dataset.task == "next-token" and dataset.num_labels == 0 and not dataset.train_labels
    assert len(dataset.train_texts) > 500 and dataset.val_texts
    assert set(dataset.train_texts) >= set(load_builtin("sentiment").train_texts)
    assert not set(dataset.train_texts) & set(dataset.val_texts)
    with pytest.raises(DatasetError, match="no labels"):
        TextDataset("x", ("a",), ("a b",), (0,), (), (), "code", task="next-token")


@pytest.mark.parametrize("method", METHODS)
def test_position_t_never_sees_later_tokens(method):
    experiment = _experiment(method, tokens=3) if method in ("prompt-tuning", "prefix-tuning") else _experiment(method)
    _perturb(experiment)
    model = experiment.model.eval()
    ids, mask = experiment.tokenizer.batch(["the customer pays the vendor last week"])
    changed = ids.clone()
    changed[0, 4:] = torch.tensor([5, 6, 7])  # other words after position 3
    with torch.no_grad():
        before, after = model(ids, mask), model(changed, mask)
    assert before.shape == (1, ids.shape[1], experiment.tokenizer.vocab_size)  # real positions only
    torch.testing.assert_close(before[0, :4], after[0, :4], rtol=1e-5, atol=1e-4)
    assert (before[0, 4:] - after[0, 4:]).abs().max() > 1e-3  # the later positions do read them


@pytest.mark.parametrize("method", METHODS)
def test_padding_changes_no_real_position(method):
    experiment = _experiment(method)
    _perturb(experiment)
    model = experiment.model.eval()
    short, long = "my card was declined", "i returned the watch last week and want my money"
    alone_ids, alone_mask = experiment.tokenizer.batch([short])
    ids, mask = experiment.tokenizer.batch([short, long])
    with torch.no_grad():
        alone, padded = model(alone_ids, alone_mask), model(ids, mask)
    torch.testing.assert_close(padded[0, :alone_ids.shape[1]], alone[0], rtol=1e-5, atol=1e-4)


def test_prefix_keys_and_prompt_reach_every_position():
    for method in ("prefix-tuning", "prompt-tuning"):
        experiment = _experiment(method, tokens=2)
        model = experiment.model.eval()
        ids, mask = experiment.tokenizer.batch(["the customer pays the vendor"])
        with torch.no_grad():
            before = model(ids, mask)
            for p in model.trainable_parameters():
                p.add_(1.0)
            after = model(ids, mask)
        assert ((before - after).abs().amax(dim=-1) > 1e-3).all(), method  # position 0 included


def test_loss_is_cross_entropy_over_real_next_tokens():
    torch.manual_seed(0)
    logits = torch.randn(2, 4, 7)
    ids = torch.tensor([[3, 4, 5, 0], [1, 2, 3, 6]])
    mask = ids != 0
    loss, accuracy = next_token_loss(logits, ids, mask)
    pairs = [(0, 0), (0, 1), (1, 0), (1, 1), (1, 2)]  # (row, t): t and t+1 real
    expected = torch.stack([F.cross_entropy(logits[r, t][None], ids[r, t + 1][None]) for r, t in pairs]).mean()
    torch.testing.assert_close(loss, expected)
    hits = sum(int(logits[r, t].argmax() == ids[r, t + 1]) for r, t in pairs)
    assert float(accuracy) == pytest.approx(hits / len(pairs))


def test_lora_lowers_the_next_token_loss_and_the_base_never_changes():
    experiment = _experiment("lora")
    fingerprint = experiment.model.frozen_fingerprint()  # every frozen tensor, the tied LM head included
    base_fingerprint = experiment.model.base_fingerprint  # the bare base, before the method was attached
    settings = TrainSettings(steps=100, lr=3e-2, batch_size=64, eval_every=99, track_grads=False)
    events = list(train(experiment, settings))
    first, last = events[0], events[-1]
    assert last.loss < 0.5 * first.loss  # measured: 30.1 -> 9.7
    assert last.val_loss < 0.5 * first.val_loss  # measured: 30.1 -> 10.6
    assert last.val_accuracy > 0.04 > first.val_accuracy  # measured: 0.00 -> 0.06
    assert experiment.model.frozen_fingerprint() == fingerprint
    experiment.model.detach_method()
    assert experiment.base.fingerprint() == base_fingerprint
    assert all(len(top) == 3 for top in predict_next(experiment, ["can i still", "my card"]))


def test_no_head_is_added_and_the_lm_head_stays_frozen():
    experiment = _experiment("lora", freeze_head=True)
    census = experiment.census()
    assert experiment.model.head is None and not [r for r in census.rows if r.owner == "head"]
    assert census.trainable == experiment.method_parameter_count()
    assert not experiment.base.lm_head.weight.requires_grad
    assert experiment.base.lm_head.weight is experiment.base.model.embed_tokens.weight  # tied: one tensor


@pytest.mark.parametrize("base, method, message", [
    ("tiny", "lora", "needs a decoder with an LM head"),
    ("seed-pooled", "adapter", "needs a decoder with an LM head"),
    ("tiny-decoder", "head-only", "nothing would train"),
])
def test_refused_with_a_clear_error(base, method, message, capsys):
    with pytest.raises(ConfigError, match=message):
        Experiment(Setup(base, method, {}), load_builtin("texts"))
    assert main(["train", "--base", base, "--method", method, "--dataset", "texts", "--steps", "2"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and "Traceback" not in err


def test_cli_trains_next_token_and_prints_its_accuracy(capsys):
    assert main(["train", "--base", "tiny-decoder", "--dataset", "texts", "--steps", "30", "--lr", "0.03",
                 "--batch-size", "32", "--log-every", "10"]) == 0
    out = capsys.readouterr().out
    assert "step=029" in out and "next_token_acc=" in out and "val_next_token_acc=" in out
    assert out.count(" -> ") == 12  # the expected next words for 12 validation texts


def test_setup_file_round_trips_the_task(tmp_path):
    experiment = _experiment("prefix-tuning", tokens=2)
    path = save_setup(tmp_path / "lm.json", experiment.setup, experiment.dataset, TrainSettings(steps=5))
    setup, dataset, settings = load_setup(path)
    assert dataset.task == "next-token" and setup.method == "prefix-tuning"
    assert Experiment(setup, dataset).next_token


def test_measured_ledger_holds_the_lm_logits_and_adapter_sets_refuse():
    from peft_studio.core.adapters.adapter_set import AdapterSet
    from peft_studio.core.memory.ledger import measure_ledger

    experiment = _experiment("lora")
    ledger = measure_ledger(experiment, 16)
    batch, length = 16, int(experiment.train_ids.shape[1])
    assert ledger.logits >= batch * length * experiment.tokenizer.vocab_size * 4  # b x s x V floats at least
    adapters = AdapterSet.build("tiny-decoder", [load_builtin("texts")])
    with pytest.raises(ConfigError, match="classification adapters only"):
        adapters.add("lm", "lora", {}, load_builtin("texts"))
