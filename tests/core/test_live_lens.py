"""The live lens: snapshots taken by the trainer between steps, read by another thread, against torch.linalg on
the weights as they were at the snapshot's step (ΔW of a watched layer) and against the method's own lens on the
model at that step (a twin for prompt, prefix, adapter, gains, ...); the gains' history against numpy."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch
from method_table import fitting_options, method_names

from peft_studio.core.bases import create_base
from peft_studio.core.data import load_builtin
from peft_studio.core.lenses.live import GAIN_EDGES, GainHistory, LiveLens, has_own_lens, live_figures, next_due
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


DECODER = create_base("tiny-decoder", load_builtin("intents").make_tokenizer())


def _experiment(method: str = "lora", options: dict | None = None, base: str = "tiny") -> Experiment:
    options = options if options is not None else fitting_options(method, DECODER if base != "tiny" else TINY)
    return Experiment(Setup(base, method, options or {}, seed=0), load_builtin("intents"))


def _singular(layer) -> torch.Tensor:
    with torch.no_grad():
        return torch.linalg.svdvals(layer.merged_weight().float() - layer.original_weight().float())


def _live(interval_s: float = 0.0) -> LiveLens:
    lens = LiveLens(interval_s, duty=1.0)  # the next snapshot is due as soon as the last one is read
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
            assert lens.offer(experiment, event.step)
            assert not lens.offer(experiment, event.step)  # not read yet: the trainer leaves it alone
            expected = _singular(layer)
    assert not torch.allclose(_singular(layer), expected)  # training went on after the snapshot
    step, figures = lens.take(1.0)
    assert step == 4 and figures[0].site == site_of[path] == lens.watched
    values = torch.tensor(figures[0].arrays["singular_values"])
    assert torch.allclose(values, expected[: len(values)], rtol=1e-4, atol=1e-6)
    assert lens.take(0.01) is None  # read once
    assert lens.offer(experiment, 99)  # read: the next one may come


def test_the_lens_thread_reads_each_snapshot_as_the_trainer_took_it():
    experiment = _experiment("lora", {"r": 4, "targets": "q"})
    base, lens = experiment.base, _live()
    _, layer = weight_updates(base)[0]
    expected: dict[int, torch.Tensor] = {}
    seen: list[tuple[int, list]] = []
    stop = threading.Event()
    reader = threading.Thread(target=lambda: seen.extend(live_figures(lens, stop.is_set, poll_s=0.01)))
    reader.start()
    try:
        for event in train(experiment, TrainSettings(steps=40, lr=0.05, eval_every=100, track_grads=False)):
            if lens.offer(experiment, event.step):
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
        assert lens.offer(experiment, 0), method
        _, figures = lens.take(1.0)
        path, layer = weight_updates(experiment.base)[0]
        direct = delta_w_figure(site_of.get(path, path), layer)
        assert figures[0].numbers == pytest.approx(direct.numbers, rel=1e-4, abs=1e-6), method
        assert len(figures) == 1 + callable(getattr(layer, "rotation", None)), method


def test_a_model_with_nothing_to_show_live_says_so():
    experiment = _experiment("ln-tuning")  # LayerNorm gains: no ΔW of a weight matrix, no lens of its own
    lens = _live()
    assert not lens.offer(experiment, 0) and lens.available is False
    lens.enabled = False
    lens.reset()
    assert lens.available is None and not lens.offer(experiment, 0)  # switched off


OWN_LENS = [(name, "tiny") for name in method_names(lambda m: has_own_lens(m) and fitting_options(m.name, TINY)
                                                    is not None)] + \
    [(name, "tiny-decoder") for name in method_names(lambda m: has_own_lens(m) and fitting_options(m.name, TINY) is None
                                                     and fitting_options(m.name, DECODER) is not None)]
SENTENCE = "turn the lights off"


def _same_figures(live: list, direct: list, method: str) -> None:
    assert [(f.kind, f.site, f.title) for f in live] == [(f.kind, f.site, f.title) for f in direct], method
    for got, want in zip(live, direct, strict=True):
        assert got.numbers == pytest.approx(want.numbers, rel=1e-4, abs=1e-6), (method, got.title)
        assert got.arrays.keys() == want.arrays.keys(), (method, got.title)
        for key, values in want.arrays.items():
            assert np.allclose(np.asarray(got.arrays[key], dtype=float), np.asarray(values, dtype=float),
                               rtol=1e-4, atol=1e-6), (method, got.title, key)
        assert len(got.table) == len(want.table), (method, got.title)
        for row, expected in zip(got.table, want.table, strict=True):  # words, and weights up to float order
            assert list(row) == [pytest.approx(c, rel=1e-4, abs=1e-6) if isinstance(c, float) else c
                                 for c in expected], (method, got.title)


@pytest.mark.parametrize(("method", "base"), OWN_LENS)
def test_a_method_with_its_own_lens_shows_it_live_as_it_was_at_the_snapshot(method, base):
    """The twin runs the method's own lens (nearest words, attention on the prefix, the bottleneck, ...) on the
    weights of the snapshot's step, while training goes on in the model."""
    experiment = _experiment(method, base=base)
    lens = _live()
    lens.sentence = SENTENCE
    direct = None
    for event in train(experiment, SETTINGS):
        if event.step == 4:
            assert lens.offer(experiment, event.step) and lens.own_lens, method
            direct = experiment.method.lens(experiment, SENTENCE)
    after = experiment.method.lens(experiment, SENTENCE)
    step, figures = lens.take(1.0)
    assert step == 4, method
    _same_figures(figures, direct, method)
    if not direct:  # e.g. BitFit's lens: ΔW of trained matrices, and it trains only vectors
        return
    moved = [f for f, a in zip(figures, after, strict=True) if f.numbers != pytest.approx(a.numbers, rel=1e-4)]
    assert moved, f"{method}: training went on after the snapshot, yet every figure is as at the end"


def test_the_twin_shares_the_frozen_base_and_copies_what_trains():
    experiment = _experiment("prefix-tuning", {"tokens": 2})
    lens = _live()
    assert lens.offer(experiment, 0)
    twin = lens._watch.view.model
    mine = dict(twin.named_parameters())
    for name, parameter in experiment.model.named_parameters():
        shared = mine[name].data_ptr() == parameter.data_ptr()
        assert shared != parameter.requires_grad, name  # frozen: the same storage; trained: a private copy
        assert torch.equal(mine[name], parameter), name
    assert all(a is b for a, b in zip(twin.buffers(), experiment.model.buffers(), strict=True))
    assert not twin.training and not any(p.requires_grad for p in twin.parameters())


def test_a_run_trains_the_same_bits_with_the_live_lens_reading_a_twin():
    """The twin's forward passes on the lens thread draw nothing from the run's generator and write nothing."""
    def losses(with_lens: bool) -> list[float]:
        experiment = _experiment("prompt-tuning", {"tokens": 3})
        lens = _live()
        stop = threading.Event()
        reader = threading.Thread(target=lambda: list(live_figures(lens, stop.is_set, poll_s=0.01)))
        reader.start()
        try:
            out = []
            for event in train(experiment, TrainSettings(steps=30, lr=0.05, eval_every=100, track_grads=False)):
                if with_lens:
                    lens.offer(experiment, event.step)
                out.append(event.loss)
            return out
        finally:
            stop.set()
            reader.join(10)

    assert losses(True) == losses(False)


def test_a_slow_lens_is_read_less_often():
    assert next_due(10.0, 0.25, 0.003, 0.03) == pytest.approx(10.25)  # cheap: the interval
    assert next_due(10.0, 0.25, 0.03, 0.03) == pytest.approx(11.0)  # 30 ms of CPU: once a second at most
    experiment = _experiment("lora", {"r": 2, "targets": "q"})
    lens = LiveLens(interval_s=0.0, duty=1e-6)  # any measurable cost postpones the next snapshot
    lens.enabled = True
    assert lens.offer(experiment, 0) and lens.take(1.0) is not None
    assert not lens.offer(experiment, 1) and lens.period_s > 1.0


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
