"""The trainer cuts each mini-batch's unused padding (core/runs/padding.py): every method gives the texts the same
outputs either way, except a method that declares it reads padding, which then keeps it."""

from __future__ import annotations

import pytest
import torch
from method_table import fitting_options, method_names

from peft_studio.core.data import load_builtin
from peft_studio.core.methods import METHODS
from peft_studio.core.model.experiment import Experiment, Setup
from peft_studio.core.runs.padding import trim_trailing_padding
from peft_studio.core.runs.train import TrainSettings, train


def test_only_the_trailing_columns_no_row_uses_are_cut():
    ids = torch.tensor([[5, 6, 0, 0, 0], [0, 7, 8, 0, 0]])
    mask = ids != 0
    cut_ids, cut_mask = trim_trailing_padding(ids, mask)
    assert cut_ids.tolist() == [[5, 6, 0], [0, 7, 8]]  # leading padding stays: cutting it would shift positions
    assert torch.equal(cut_mask, mask[:, :3])
    assert cut_ids.data_ptr() == ids.data_ptr()  # a view, no copy
    full = torch.ones(2, 4, dtype=torch.bool)
    assert trim_trailing_padding(ids[:, :4], full)[1] is full  # nothing unused: the same tensors back
    empty = torch.zeros(2, 4, dtype=torch.bool)
    assert trim_trailing_padding(ids[:, :4], empty)[1].shape == (2, 1)  # at least one column stays


def _short_batch(experiment: Experiment) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The 8 shortest training texts: a batch whose trailing columns are padding in every row."""
    order = experiment.train_mask.sum(dim=1).argsort()[:8]
    ids, mask = experiment.train_ids[order], experiment.train_mask[order]
    assert not mask[:, -1].any()
    return ids, mask, experiment.train_labels[order]


@pytest.mark.parametrize("name", method_names())
def test_a_method_reads_padding_exactly_when_it_says_so(name):
    """On the encoder and the decoder, with trained-looking tensors (the zero-initialised parts moved): a method
    that does not declare `reads_padding` gives the cut batch the outputs and loss of the full one up to float32
    rounding; one that declares it really does read the padding (else the flag would cost its runs for nothing)."""
    data = load_builtin("sentiment")
    method = METHODS[name]
    tried = 0
    for base_name in ("tiny", "tiny-decoder"):
        options = fitting_options(name, Experiment(Setup(base_name, "head-only", {}, seed=0), data).base)
        if options is None:
            continue
        tried += 1
        experiment = Experiment(Setup(base_name, name, options, seed=0), data)
        model = experiment.model
        generator = torch.Generator().manual_seed(0)
        with torch.no_grad():
            for parameter in model.trainable_parameters():
                parameter.add_(0.1 * torch.randn(parameter.shape, generator=generator))
        model.eval()
        ids, mask, labels = _short_batch(experiment)
        cut_ids, cut_mask = trim_trailing_padding(ids, mask)
        assert cut_ids.shape[1] < ids.shape[1]
        with torch.no_grad():
            full, cut = model(ids, mask), model(cut_ids, cut_mask)
            full_loss = experiment.loss(full, ids, mask, labels)[0]
            cut_loss = experiment.loss(cut, cut_ids, cut_mask, labels)[0]
        same = torch.allclose(full, cut, rtol=1e-5, atol=1e-5) and torch.allclose(full_loss, cut_loss, rtol=1e-5)
        assert same != method.reads_padding, f"{name} on {base_name}: outputs {'differ' if not same else 'agree'}"
    assert tried, f"{name} fits neither toy base"


@pytest.mark.parametrize("name", ["lora", "lily"])
def test_the_trainer_cuts_padding_unless_the_method_reads_it(name):
    experiment = Experiment(Setup("tiny", name, {}, seed=0), load_builtin("sentiment"))
    widths = []
    experiment.model.register_forward_pre_hook(  # training steps only, not the validation passes
        lambda module, args: widths.append(args[0].shape[1]) if module.training else None)
    settings = TrainSettings(steps=8, batch_size=8, eval_every=1000, track_grads=False)
    list(train(experiment, settings))
    full = experiment.train_ids.shape[1]
    assert len(widths) == settings.steps
    if METHODS[name].reads_padding:
        assert widths == [full] * settings.steps
    else:
        assert min(widths) < full and max(widths) <= full
