"""The live lens: snapshots taken by the trainer between steps, read by another thread, against torch.linalg on
the weights as they were at the snapshot's step; the gains' history against numpy."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch
from method_table import fitting_options, method_names

from peft_studio.core.bases import create_base
from peft_studio.core.data import load_builtin
from peft_studio.core.lenses.live import GAIN_EDGES, GainHistory, LiveLens, live_figures
from peft_studio.core.lenses.spectra import delta_w_figure
from peft_studio.core.methods.mergeable import weight_updates
from peft_studio.core.methods.method import site_paths
from peft_studio.core.model.experiment import Experiment, Setup
from peft_studio.core.runs.train import TrainSettings, train

TINY = create_base("tiny", load_builtin("intents").make_tokenizer())
SETTINGS = TrainSettings(steps=12, lr=0.05, eval_every=100, track_grads=False)


@pytest.fixture(autouse=True)
def one_torch_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _experiment(method: str = "lora", options: dict | None = None) -> Experiment:
    options = options if options is not None else fitting_options(method, TINY)
    return Experiment(Setup("tiny", method, options or {}, seed=0), load_builtin("intents"))


def _singular(layer) -> torch.Tensor:
    with torch.no_grad():
        return torch.linalg.svdvals(layer.merged_weight().float() - layer.original_weight().float())


def _live(interval_s: float = 0.0) -> LiveLens:
    lens = LiveLens(interval_s)
    lens.enabled = True
    return lens


def test_a_snapshot_is_the_weights_at_its_step_not_after():
    experiment = _experiment("lora", {"r": 2, "targets": "q,v"})
    base, lens = experiment.base, _live()
    site_of = site_paths(base)
    path, layer = weight_updates(base)[1]
    lens.watch(site_of[path])
    expected = None
    for event in train(experiment, SETTINGS):
        if event.step == 4:
            assert lens.offer(base, site_of, event.step)
            assert not lens.offer(base, site_of, event.step)  # not read yet: the trainer leaves it alone
            expected = _singular(layer)
    assert not torch.allclose(_singular(layer), expected)  # training went on after the snapshot
    step, figures = lens.take(1.0)
    assert step == 4 and figures[0].site == site_of[path] == lens.watched
    values = torch.tensor(figures[0].arrays["singular_values"])
    assert torch.allclose(values, expected[: len(values)], rtol=1e-4, atol=1e-6)
    assert lens.take(0.01) is None  # read once
    assert lens.offer(base, site_of, 99)  # read: the next one may come


def test_the_lens_thread_reads_each_snapshot_as_the_trainer_took_it():
    experiment = _experiment("lora", {"r": 4, "targets": "q"})
    base, lens = experiment.base, _live()
    site_of = site_paths(base)
    _, layer = weight_updates(base)[0]
    expected: dict[int, torch.Tensor] = {}
    seen: list[tuple[int, list]] = []
    stop = threading.Event()
    reader = threading.Thread(target=lambda: seen.extend(live_figures(lens, stop.is_set, poll_s=0.01)))
    reader.start()
    try:
        for event in train(experiment, TrainSettings(steps=40, lr=0.05, eval_every=100, track_grads=False)):
            if lens.offer(base, site_of, event.step):
                expected[event.step] = _singular(layer)
    finally:
        stop.set()
        reader.join(10)
    assert len(seen) >= 2
    for step, figures in seen:
        values = torch.tensor(figures[0].arrays["singular_values"])
        assert torch.allclose(values, expected[step][: len(values)], rtol=1e-4, atol=1e-6), step


WEIGHT_UPDATES = method_names(lambda m: fitting_options(m.name, TINY) is not None and bool(
    weight_updates(_experiment(m.name).base)))


def test_every_weight_update_method_gets_the_same_figures_live():
    """The private copy computes what the live layer would: the contract's ΔW (and rotation) for every method."""
    generator = torch.Generator().manual_seed(5)
    for method in WEIGHT_UPDATES:
        experiment = _experiment(method)
        with torch.no_grad():
            for parameter in experiment.model.trainable_parameters():
                parameter.add_(0.1 * torch.randn(parameter.shape, generator=generator))
        lens = _live()
        site_of = site_paths(experiment.base)
        assert lens.offer(experiment.base, site_of, 0), method
        _, figures = lens.take(1.0)
        path, layer = weight_updates(experiment.base)[0]
        direct = delta_w_figure(site_of.get(path, path), layer)
        assert figures[0].numbers == pytest.approx(direct.numbers, rel=1e-4, abs=1e-6), method
        assert len(figures) == 1 + callable(getattr(layer, "rotation", None)), method


def test_a_model_without_weight_updates_has_nothing_live():
    experiment = _experiment("prompt-tuning", {"tokens": 2})
    lens = _live()
    assert not lens.offer(experiment.base, site_paths(experiment.base), 0) and lens.available is False
    lens.enabled = False
    lens.reset()
    assert lens.available is None and not lens.offer(experiment.base, {}, 0)  # switched off


def test_the_gains_history_is_numpys_histogram_of_every_vector_clipped_to_its_range():
    history = GainHistory()
    generator = np.random.default_rng(0)
    samples = [{"a": generator.normal(1.0, s, 16).tolist(), "b": generator.normal(1.0, s, 8).tolist()}
               for s in (0.1, 0.5, 2.0)]
    for step, gains in enumerate(samples):
        history.add(10 * step, gains)
    figure = history.figure()
    assert figure.arrays["steps"] == [0, 10, 20]
    for row, gains in zip(figure.arrays["history"], samples, strict=True):
        values = np.clip(np.concatenate([gains["a"], gains["b"]]), *GAIN_EDGES)
        counts, _ = np.histogram(values, bins=len(figure.arrays["edges"]) - 1, range=GAIN_EDGES)
        assert row == counts.tolist() and sum(row) == 24
