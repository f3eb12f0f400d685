"""Choosing a run's torch thread count: one step's work timed at a given count, leaving no trace.

`step_probe` gives ThreadChoice (threads.py) its measuring function: a forward and backward pass of
the run's batch shape at `threads` threads, after which the weights, their gradients, the model's
mode and torch's random state are exactly as before, so a run that was measured trains bit for bit
like one that was not. `run_key` says which runs start from the same place (and so keep one count).
"""

from __future__ import annotations

import time
from collections.abc import Callable

import torch

from ..model.experiment import Experiment
from .threads import ThreadChoice
from .torch_threads import set_torch_threads
from .train import TrainSettings, check_run


def run_key(experiment: Experiment, settings: TrainSettings) -> str:
    """Runs with equal keys start from the same place: same setup, same data, same training settings (the
    step count and evaluation interval aside: 6 steps are the first 6 of 60). Equal keys keep one count."""
    setup, data = experiment.setup, experiment.dataset
    return repr((setup.base, setup.method, sorted(setup.options.items()), setup.seed,
                 sorted(setup.base_options.items()), data.name, len(data.train_texts), len(data.val_texts or ()),
                 hash(tuple(data.train_texts)), settings.lr, settings.batch_size, settings.optimizer,
                 settings.weight_decay, settings.seed, str(experiment.device)))


def step_probe(experiment: Experiment, settings: TrainSettings,
               set_threads: Callable[[int], None] = set_torch_threads) -> Callable[[int], float]:
    """A function that runs one forward + backward of a batch of the run's size at `threads` threads and
    returns its seconds; call it on the thread that will train (OpenMP's count is per thread)."""
    model = experiment.model
    count = len(experiment.train_ids)
    size = count if settings.batch_size == 0 or settings.batch_size >= count else settings.batch_size
    ids, mask = experiment.train_ids[:size], experiment.train_mask[:size]
    labels = experiment.train_labels[:size]
    trainable = [p for p in model.parameters() if p.requires_grad]

    def probe(threads: int) -> float:
        set_threads(threads)
        grads = [p.grad for p in trainable]
        rng = torch.get_rng_state()
        was_training = model.training
        model.train()
        try:
            started = time.perf_counter()
            loss, _ = experiment.loss(model(ids, mask), ids, mask, labels)
            loss.backward()
            return time.perf_counter() - started
        finally:
            for parameter, grad in zip(trainable, grads, strict=True):
                parameter.grad = grad
            torch.set_rng_state(rng)
            model.train(was_training)

    return probe


def choose_threads(choice: ThreadChoice, experiment: Experiment, settings: TrainSettings) -> int:
    """Set and return the count this run trains with (measured now, or the one its key had before).
    A run that cannot start is refused first, as `train` refuses it; a model on an accelerator keeps the current
    count: the CPU threads only feed it."""
    check_run(experiment, settings)
    if experiment.device.type != "cpu":
        return torch.get_num_threads()
    threads = choice.for_run(run_key(experiment, settings), step_probe(experiment, settings))
    set_torch_threads(threads)
    return threads
