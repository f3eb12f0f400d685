"""The trainer: a plain generator of step events, controllable from another thread between steps."""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import torch

from ..errors import ConfigError, TrainingDiverged
from ..files.limits import FLOAT32_MAX, float32_number
from ..memory.budget import check_training_memory
from ..model.experiment import Experiment
from .padding import trim_trailing_padding

OPTIMIZERS = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW}
# A loss this many times above its first value (or above chance, ln(labels), if that is larger) is
# divergence even while finite: cross-entropy that high means confidently wrong logits in the hundreds.
DIVERGENCE_FACTOR = 1000
ADAM_BETA1 = 0.9  # torch's default for Adam and AdamW, which the trainer uses


@dataclass
class TrainSettings:
    steps: int = 200
    lr: float = 1e-2
    batch_size: int = 0  # 0: the full training set every step, as in the seed
    optimizer: str = "adam"
    weight_decay: float = 0.0
    seed: int = 0  # order of mini-batches
    eval_every: int = 10  # validation metrics every k steps (and at the last step)
    track_grads: bool = True  # per-tensor gradient norms in each event
    gradient_checkpointing: bool = False  # decoders: keep layer inputs only, recompute each layer in backward

    def check(self) -> None:
        if self.steps < 1:
            raise ConfigError(f"steps must be at least 1 (got {self.steps})")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise ConfigError(f"lr must be a positive number (got {self.lr})")
        self._check_float32_steps()
        if self.batch_size < 0:
            raise ConfigError(f"batch size must be 0 (full batch) or more (got {self.batch_size})")
        if not (0 <= self.weight_decay <= 100 and math.isfinite(self.weight_decay)):
            raise ConfigError(f"weight decay must be a number in [0, 100] (got {self.weight_decay})")
        if self.optimizer not in OPTIMIZERS:
            raise ConfigError(f"optimizer must be one of {', '.join(OPTIMIZERS)} (got {self.optimizer!r})")
        if self.eval_every < 1:
            raise ConfigError(f"eval every must be at least 1 (got {self.eval_every})")

    def _check_float32_steps(self) -> None:
        """The optimizer applies lr through float32 scalars: Adam's first update is lr / (1 - beta1) = 10 lr,
        AdamW's decay 1 - lr * weight_decay. A value that overflows there raises deep inside torch."""
        float32_number(self.lr, "lr", nonzero=True)
        scalars = {"lr / (1 - beta1), Adam's first step": self.lr / (1 - ADAM_BETA1)}
        if self.optimizer == "adamw":
            scalars["lr x weight decay, AdamW's decay"] = self.lr * self.weight_decay
        for what, value in scalars.items():
            if abs(value) > FLOAT32_MAX:
                raise ConfigError(f"lr = {self.lr:g} is too large for float32, the dtype the optimizer computes in: "
                                  f"{what}, is {value:.3g} (float32 holds at most {FLOAT32_MAX:.3g})")


@dataclass
class StepEvent:
    """What one optimizer step reports; plain Python values only, safe to send across threads."""

    step: int
    loss: float  # on the batch, before the update (as the seed prints it)
    accuracy: float
    steps_per_second: float
    val_loss: float | None = None
    val_accuracy: float | None = None
    grad_norms: dict[str, float] = field(default_factory=dict)  # trainable tensor name -> L2 norm
    method_state: dict = field(default_factory=dict)  # the method's step_report (AdaLoRA: its rank grid)
    last: bool = False


class TrainControl:
    """Pause, resume, step-once and stop from any thread; the trainer checks between steps."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._paused = False
        self._stopped = False
        self._single_steps = 0

    def pause(self) -> None:
        with self._cond:
            self._paused = True

    def resume(self) -> None:
        with self._cond:
            self._paused = False
            self._cond.notify_all()

    def step_once(self) -> None:
        """Allow exactly one more step, then stay paused."""
        with self._cond:
            self._paused = True
            self._single_steps += 1
            self._cond.notify_all()

    def stop(self) -> None:
        with self._cond:
            self._stopped = True
            self._cond.notify_all()

    @property
    def paused(self) -> bool:
        return self._paused

    @property
    def stopped(self) -> bool:
        """A stop was asked for: a long step ends at its next layer (runs/interrupt.py), a family run skips
        the measurements it no longer needs (runs/compare.py)."""
        return self._stopped

    def wait_turn(self) -> bool:
        """Block while paused; True when the next step may run, False once stopped."""
        with self._cond:
            while self._paused and not self._single_steps and not self._stopped:
                self._cond.wait()
            if self._stopped:
                return False
            if self._paused:
                self._single_steps -= 1
            return True


def _batches(count: int, batch_size: int, seed: int) -> Iterator[torch.Tensor | None]:
    """None (the full batch, no copy) forever, or shuffled mini-batches epoch after epoch."""
    if batch_size == 0 or batch_size >= count:
        while True:
            yield None
    generator = torch.Generator().manual_seed(seed)
    while True:
        order = torch.randperm(count, generator=generator)
        for start in range(0, count, batch_size):
            yield order[start:start + batch_size]


FOREACH_MAX_BYTES = 16 * 2**20


def use_foreach(parameters: list[torch.Tensor]) -> bool:
    """Whether Adam takes the trainable tensors as one list (torch's foreach kernels) instead of one by one.

    On CPU torch defaults to one tensor at a time, ~10 small ops each: with an adapter's many small tensors that
    overhead is the step (0.18 ms of a 6.4 ms step on tiny + LoRA, 0.13 ms as lists; 0.60 vs 0.44 ms on MiniLM).
    The lists do the same arithmetic in the same order, so the weights are the same bits (tested against torch's
    default in tests/core/test_train.py), but their temporaries cover every trainable tensor at once rather than
    the largest: lists only while that is small."""
    return sum(p.numel() * p.element_size() for p in parameters) <= FOREACH_MAX_BYTES


def grad_norms(named: list[tuple[str, torch.Tensor]]) -> dict[str, float]:
    """The L2 norm of each trainable tensor's gradient (0 when it has none): the one sampler, used per step
    here and throttled by the window's worker."""
    return {n: float(p.grad.norm()) if p.grad is not None else 0.0 for n, p in named}


def frozen_versions(model: torch.nn.Module) -> list[tuple[str, int, int, int]]:
    """Each frozen tensor's name, identity, storage and in-place version: any in-place write bumps the version
    (views share it), a replaced tensor changes identity, so comparing them before and after a run says whether
    training touched a frozen tensor (the check the pretrained base's fingerprint also relies on). It costs
    O(tensors); hashing every frozen byte before and after each run cost 0.28 s a run on MiniLM."""
    tensors = [(n, p) for n, p in model.named_parameters() if not p.requires_grad] + list(model.named_buffers())
    return [(name, id(t), 0 if t.is_meta else t.data_ptr(), t._version) for name, t in tensors]


def mode_setter(model: torch.nn.Module) -> Callable[[bool], object]:
    """`set(mode)` with the effect of `model.train(mode)`, for a model whose modules stay the same meanwhile.

    `Module.train` walks the tree recursively through `Module.__setattr__`: ~80 us a call on tiny, so the
    two switches around a validation pass every 10 steps cost ~0.25% of a step. When no module overrides
    `train`, setting each module's flag from a list made once is the same and ~10x cheaper."""
    modules = list(model.modules())
    if any(type(module).train is not torch.nn.Module.train for module in modules):
        return model.train

    def set_mode(mode: bool) -> None:
        for module in modules:
            module.__dict__["training"] = mode  # what Module.train's `self.training = mode` stores

    return set_mode


@torch.no_grad()
def evaluate(experiment: Experiment, ids: torch.Tensor, mask: torch.Tensor, labels: torch.Tensor,
             set_mode: Callable[[bool], object] | None = None) -> tuple[float, float]:
    """(loss, accuracy) in eval mode; the model's mode is restored after. `set_mode`: a run's mode_setter."""
    model = experiment.model
    was_training = model.training
    set_mode = set_mode or model.train
    set_mode(False)
    logits = model(ids, mask)
    set_mode(was_training)
    loss, accuracy = experiment.loss(logits, ids, mask, labels)
    return float(loss), float(accuracy)


def check_run(experiment: Experiment, settings: TrainSettings) -> None:
    """What makes a run impossible, refused before any step (and before measuring its thread count): bad
    settings, a base without weights, a batch that cannot fit in memory."""
    settings.check()
    experiment.require_weights("trained")
    base = experiment.base
    if settings.gradient_checkpointing and not hasattr(base, "gradient_checkpointing"):
        raise ConfigError(f"gradient checkpointing is implemented for decoder bases; base {base.name!r} is not one")
    check_training_memory(experiment, settings.batch_size, checkpointing=settings.gradient_checkpointing)


def train(experiment: Experiment, settings: TrainSettings, control: TrainControl | None = None,
          start_step: int = 0) -> Iterator[StepEvent]:
    """Train whatever is trainable; yields one StepEvent per optimizer step.

    Raises TrainingDiverged (after restoring the last finite weights) on a NaN/inf loss, and checks
    at the end that no frozen tensor was written or replaced (frozen_versions).
    """
    check_run(experiment, settings)
    base = experiment.base
    if hasattr(base, "gradient_checkpointing"):
        base.gradient_checkpointing = settings.gradient_checkpointing  # a setting of this run only
    model = experiment.model
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    parameters = [p for _, p in named]
    kwargs = {"lr": settings.lr}
    if settings.weight_decay or settings.optimizer == "adamw":
        kwargs["weight_decay"] = settings.weight_decay
    optimizer = OPTIMIZERS[settings.optimizer](parameters, foreach=use_foreach(parameters), **kwargs)
    frozen_before = frozen_versions(model)
    batches = _batches(len(experiment.train_ids), settings.batch_size, settings.seed)
    recent: deque[float] = deque(maxlen=20)
    snapshot: list[torch.Tensor] | None = None
    first_loss: float | None = None
    method, config = experiment.method, experiment.config
    last = start_step + settings.steps - 1
    method.start_training(model, config, start_step, last + 1)
    model.train()
    set_mode = mode_setter(model)
    trim = not method.reads_padding  # the full set needs no trim: its longest text is in it
    for step in range(start_step, last + 1):
        if control is not None and not control.wait_turn():
            break
        started = time.perf_counter()
        index = next(batches)
        ids, mask, labels = experiment.train_ids, experiment.train_mask, experiment.train_labels
        if index is not None:
            ids, mask, labels = ids[index], mask[index], labels[index]
            if trim:
                ids, mask = trim_trailing_padding(ids, mask)
        logits = model(ids, mask)
        loss, accuracy = experiment.loss(logits, ids, mask, labels)
        loss_value = loss.item()  # once: the divergence checks and the event read this float, not the tensor
        if not math.isfinite(loss_value):
            _restore(named, snapshot)
            raise TrainingDiverged(f"the loss became {loss_value} at step {step}; the last finite weights are "
                                   f"restored. Try a lower learning rate (now {settings.lr:g}).")
        if first_loss is None:
            first_loss = loss_value
        elif loss_value > DIVERGENCE_FACTOR * max(first_loss, math.log(max(2, experiment.dataset.num_labels))):
            # finite but orders of magnitude above where it started: no optimiser recovers from that
            _restore(named, snapshot)
            raise TrainingDiverged(f"the loss grew from {first_loss:.3g} to {loss_value:.3g} by step {step} (more "
                                   f"than {DIVERGENCE_FACTOR}x): training diverged; the previous step's weights are "
                                   f"restored. Try a lower learning rate (now {settings.lr:g}).")
        if snapshot is None:
            snapshot = [p.detach().clone() for p in parameters]
        else:  # reuse the buffers: these weights gave a finite loss (one fused copy, not one call per tensor)
            with torch.no_grad():
                torch._foreach_copy_(snapshot, parameters)
        optimizer.zero_grad()
        extra = method.training_loss(model, config)
        (loss if extra is None else loss + extra).backward()  # the run reports the task's loss
        norms = grad_norms(named) if settings.track_grads else {}
        optimizer.step()
        method.after_step(model, config, step)
        if step == last and not all(bool(torch.isfinite(p).all()) for _, p in named):
            _restore(named, snapshot)
            raise TrainingDiverged(f"a weight became NaN or infinite at step {step}; the last finite weights "
                                   f"are restored. Try a lower learning rate (now {settings.lr:g}).")
        recent.append(time.perf_counter() - started)
        event = StepEvent(step, loss_value, float(accuracy),
                          len(recent) / sum(recent), grad_norms=norms, last=step == last,
                          method_state=method.step_report(model, config))
        if experiment.val_ids is not None and ((step - start_step) % settings.eval_every == 0 or step == last):
            event.val_loss, event.val_accuracy = evaluate(experiment, experiment.val_ids, experiment.val_mask,
                                                          experiment.val_labels, set_mode)
        yield event
    if frozen_versions(model) != frozen_before:
        raise RuntimeError("a frozen tensor changed during training: this is a bug in PEFT Studio")


@torch.no_grad()
def _restore(named: list[tuple[str, torch.nn.Parameter]], snapshot: list[torch.Tensor] | None) -> None:
    if snapshot is not None:
        for (_, parameter), saved in zip(named, snapshot, strict=True):
            parameter.copy_(saved)
