"""The trainer: events, divergence handling, and control from another thread."""

from __future__ import annotations

import math
import threading
import time

import pytest
import torch
from method_table import fitting_options

from peft_studio.core.data import load_builtin
from peft_studio.core.errors import ConfigError, TrainingDiverged
from peft_studio.core.model.experiment import Experiment, Setup
from peft_studio.core.runs.train import TrainControl, TrainSettings, train


def _experiment(method="lora", base="tiny", options=None):
    return Experiment(Setup(base, method, options or {}, seed=0), load_builtin("intents"))


def test_events_carry_metrics_and_gradient_norms_of_trainable_tensors_only():
    experiment = _experiment()
    events = list(train(experiment, TrainSettings(steps=5, eval_every=2)))
    assert [e.step for e in events] == [0, 1, 2, 3, 4]
    assert [e.val_accuracy is not None for e in events] == [True, False, True, False, True]
    trainable = {n for n, p in experiment.model.named_parameters() if p.requires_grad}
    assert set(events[0].grad_norms) == trainable
    assert all(math.isfinite(v) for v in events[-1].grad_norms.values())
    assert events[-1].last and events[-1].steps_per_second > 0


def test_a_diverging_loss_stops_the_run_and_restores_finite_weights():
    experiment = _experiment(method="full")
    with pytest.raises(TrainingDiverged, match="lower learning rate"):
        for _ in train(experiment, TrainSettings(steps=50, lr=1e12)):
            pass
    assert all(torch.isfinite(p).all() for p in experiment.model.parameters())


@pytest.mark.parametrize("bad, pattern", [
    (TrainSettings(steps=0), "steps must be at least 1"),
    (TrainSettings(lr=-1.0), "lr must be a positive number"),
    (TrainSettings(optimizer="sgd9"), "optimizer must be one of adam, adamw"),
])
def test_bad_training_settings(bad, pattern):
    with pytest.raises(ConfigError, match=pattern):
        next(train(_experiment(), bad))


def test_pause_step_resume_and_stop_from_another_thread():
    experiment = _experiment()
    control = TrainControl()
    control.pause()
    steps: list[int] = []
    run = threading.Thread(target=lambda: steps.extend(e.step for e in train(
        experiment, TrainSettings(steps=10_000, track_grads=False), control)))
    run.start()
    run.join(0.3)
    assert steps == []  # paused before the first step
    control.step_once()
    control.step_once()
    wait_for(lambda: len(steps) >= 2)
    run.join(0.2)
    assert steps == [0, 1]  # exactly two single steps, then paused again
    control.resume()
    wait_for(lambda: len(steps) >= 20)
    control.stop()
    run.join(5)
    assert not run.is_alive()
    assert steps == list(range(len(steps))) and len(steps) < 10_000


def wait_for(condition, timeout_s: float = 30.0) -> None:
    """Poll until `condition()` holds; fail (never hang) after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.01)


def _plain_loop(experiment: Experiment, settings: TrainSettings,
                trim: bool = True) -> tuple[list[tuple], list[torch.Tensor]]:
    """The plainest PyTorch loop on the same batches: what every number the trainer reports must equal. Returns
    per step (loss before the update, batch accuracy, then validation after the update) and the weights
    before each step. `trim`: a mini-batch loses the columns past its longest text, as the trainer's do."""
    from torch.nn import functional as F

    from peft_studio.core.runs.train import _batches

    model = experiment.model
    parameters = [p for p in model.parameters() if p.requires_grad]
    torch_default = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW}[settings.optimizer]  # one by one on CPU
    optimizer = torch_default(parameters, lr=settings.lr, weight_decay=settings.weight_decay)
    batches = _batches(len(experiment.train_ids), settings.batch_size, settings.seed)
    rows, weights = [], []
    model.train()
    for step in range(settings.steps):
        weights.append([p.detach().clone() for p in parameters])
        index = next(batches)
        ids, mask, labels = experiment.train_ids, experiment.train_mask, experiment.train_labels
        if index is not None:
            ids, mask, labels = ids[index], mask[index], labels[index]
            if trim:
                longest = int(mask.sum(dim=1).max())  # the texts are right-padded
                ids, mask = ids[:, :longest], mask[:, :longest]
        logits = model(ids, mask)
        loss = F.cross_entropy(logits, labels)
        accuracy = (logits.argmax(-1) == labels).float().mean().item()
        if not math.isfinite(loss.item()):
            break
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        val = (None, None)
        if step % settings.eval_every == 0 or step == settings.steps - 1:  # after the update, as the trainer
            with torch.no_grad():
                model.eval()
                val_logits = model(experiment.val_ids, experiment.val_mask)
                model.train()
            val = (F.cross_entropy(val_logits, experiment.val_labels).item(),
                   (val_logits.argmax(-1) == experiment.val_labels).float().mean().item())
        rows.append((loss.item(), accuracy, *val))
    return rows, weights


@pytest.mark.parametrize("method, batch_size, optimizer, weight_decay", [
    ("lora", 0, "adam", 0.0), ("full", 16, "adamw", 0.01), ("prompt-tuning", 32, "adam", 0.1), ("ia3", 0, "adamw", 0.0),
    ("adapter", 0, "adam", 0.0)])
def test_every_reported_number_is_what_a_plain_loop_computes_bit_for_bit(method, batch_size, optimizer, weight_decay):
    """The trainer's extras (divergence checks, snapshot, accuracy, events) and its optimizer's list kernels
    (use_foreach) change no number it reports: torch's default one-tensor-at-a-time loop gives the same bits."""
    from peft_studio.core.runs.train import use_foreach

    settings = TrainSettings(steps=12, lr=0.01, batch_size=batch_size, optimizer=optimizer, eval_every=5,
                             weight_decay=weight_decay, track_grads=False)
    trained = _experiment(method)
    assert use_foreach(list(trained.model.trainable_parameters()))  # the list kernels are what is compared
    reported = [(e.loss, e.accuracy, e.val_loss, e.val_accuracy) for e in train(trained, settings)]
    plain = _experiment(method)
    expected, _ = _plain_loop(plain, settings)
    assert reported == expected  # exact floats
    for mine, theirs in zip(trained.model.parameters(), plain.model.parameters(), strict=True):
        assert torch.equal(mine, theirs)


@pytest.mark.parametrize("method", ["lora", "prompt-tuning", "prefix-tuning", "adapter"])
def test_cutting_a_batchs_unused_padding_moves_no_reported_number_beyond_float_rounding(method):
    """The trainer cuts each mini-batch's all-padding columns (core/runs/padding.py): the reported numbers are
    those of the batches as tokenized, up to float32 rounding (the masked sums add their zeros in another order)."""
    settings = TrainSettings(steps=12, lr=0.01, batch_size=16, eval_every=5, track_grads=False)
    trained = _experiment(method)
    from peft_studio.core.runs.train import _batches

    batches = _batches(len(trained.train_ids), 16, settings.seed)
    cut = sum(not trained.train_mask[next(batches)][:, -1].any() for _ in range(settings.steps))
    assert cut >= 3  # batches that leave the last column unused, and so lose it
    reported = [(e.loss, e.accuracy, e.val_loss, e.val_accuracy) for e in train(trained, settings)]
    untrimmed, _ = _plain_loop(_experiment(method), settings, trim=False)
    for mine, theirs in zip(reported, untrimmed, strict=True):
        assert mine[1] == theirs[1] and mine[3] == theirs[3]  # accuracies: the same predictions
        assert mine[0] == pytest.approx(theirs[0], rel=1e-5)
        assert mine[2] == theirs[2] or mine[2] == pytest.approx(theirs[2], rel=1e-5)


def test_a_diverged_run_restores_exactly_the_last_weights_that_gave_a_finite_loss():
    settings = TrainSettings(steps=60, lr=1e12, optimizer="adam", eval_every=1000, track_grads=False)
    trained = _experiment("full")
    with pytest.raises(TrainingDiverged) as caught:
        for _ in train(trained, settings):
            pass
    step = int(str(caught.value).split("at step ")[1].split(";")[0]) if "at step" in str(caught.value) else \
        int(str(caught.value).split("by step ")[1].split(" ")[0])
    plain = _experiment("full")
    _, weights = _plain_loop(plain, settings)
    restored = [p for p in trained.model.parameters() if p.requires_grad]
    assert step >= 1 and all(torch.equal(a, b) for a, b in zip(restored, weights[step - 1], strict=True))


@pytest.mark.parametrize("write", ["in place", "replaced"])
def test_a_run_that_writes_or_replaces_a_frozen_tensor_is_reported_as_a_bug(write):
    experiment = _experiment("lora")
    frozen = experiment.model.base.embeddings.norm  # below every trainable part: autograd keeps none of it

    def corrupt(module, inputs, output):  # a forward that touches its frozen weight: the bug the check catches
        with torch.no_grad():
            if write == "in place":
                module.weight[0] += 1e-3  # through a view: the view shares the version counter
            else:
                module.weight = torch.nn.Parameter(module.weight.detach().clone(), requires_grad=False)

    frozen.register_forward_hook(corrupt)
    with pytest.raises(RuntimeError, match="a frozen tensor changed during training"):
        for _ in train(experiment, TrainSettings(steps=2, track_grads=False)):
            pass


def test_a_clean_run_leaves_every_frozen_byte_as_it_was_for_every_method():
    from peft_studio.core.methods import METHODS

    for method in METHODS:
        options = fitting_options(method, _experiment("lora").base)  # PEFT-sized defaults need not fit tiny
        base = "tiny" if options is not None else "tiny-decoder"  # a decoder's method (LLaMA-Adapter)
        experiment = _experiment(method, base, options)
        before = experiment.model.frozen_fingerprint()
        for _ in train(experiment, TrainSettings(steps=2, track_grads=False)):  # no false alarm either
            pass
        assert experiment.model.frozen_fingerprint() == before, method


def test_the_runs_mode_setter_sets_every_module_as_module_train_does():
    from peft_studio.core.runs.train import mode_setter

    model = _experiment("adapter").model
    set_mode = mode_setter(model)
    set_mode(False)
    assert not any(m.training for m in model.modules())
    set_mode(True)
    assert all(m.training for m in model.modules())

    class CountsSwitches(torch.nn.Linear):  # a module with its own train(): the setter must call it
        switches = 0

        def train(self, mode: bool = True):
            CountsSwitches.switches += 1
            return super().train(mode)

    model.base.add_module("watcher", CountsSwitches(2, 2))
    set_mode = mode_setter(model)
    set_mode(False)
    assert CountsSwitches.switches == 1 and not any(m.training for m in model.modules())
