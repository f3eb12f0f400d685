"""The family map: every registered method on the current base, side by side (View > Family map, `methods
--family-map`, `screenshot --family-map`).

Each method becomes a tile: its group on the seed's map (Method.group), the miniature's cells its trainable parts
light, the trainable count and share (the census), the adapter's bytes (the trainable tensors as an adapter file
stores them), whether it merges into W0 (the weight-update contract, methods/mergeable.py) and the inference
latency it adds, measured. A method that cannot sit on the base is a tile saying why.

The base is built once from the setup (its name, options and seed: the very weights the studio has), apart from
the studio's own model, and each method is attached to it, measured and detached again (detach restores the
base bit for bit), as placement_compare does: the studio's setup, model and history are never touched. A method
whose defaults do not fit the base starts from methods/fitting.py's options, as the family run does.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from ..bases import create_base, uses_dataset_vocabulary
from ..bases.frozen import FrozenBase
from ..data import TextDataset
from ..errors import ConfigError, PeftStudioError
from ..memory.budget import check_memory
from ..methods import METHODS
from ..methods.fitting import fitting_options
from ..methods.mergeable import mergeable_layers, weight_updates
from ..methods.method import FAMILY_GROUPS
from ..model.census import take_census
from ..model.experiment import Setup, attach_method
from ..model.seeding import seeded
from ..model.studio_model import StudioModel
from .compare import human_bytes
from .family_miniature import Miniature, lit_cells, miniature
from .torch_threads import set_torch_threads

LATENCY_TEXTS = 8  # the fixed batch: the dataset's first training texts
LATENCY_REPEATS = 9  # timed pairs of forwards (after one warm-up pair); the median difference is kept
LATENCY_NOISE_MS = 0.05  # below this an added latency is shown as about zero: the timer, not the method
META_LATENCY = "not measured (meta device: shapes, no weights)"


@dataclass(frozen=True)
class MapTile:
    """One method on the map. `skipped` says why a method cannot sit on this base (then the figures are empty)."""

    method: str
    title: str
    group: str
    colour: str
    where: str  # the card's "where the trainable part sits"
    options: dict[str, Any] = field(default_factory=dict)  # the options it was built with ({}: its defaults)
    fitted: bool = False  # its defaults did not fit this base: it starts from fitting options (methods/fitting.py)
    skipped: str = ""
    trainable: int = 0  # every trainable tensor: method parts, unfrozen base tensors and the head (the census)
    share: float = 0.0  # trainable as a percentage of every tensor of the model (the census's trainable_percent)
    method_trainable: int = 0  # the trainable numbers that are not the head's
    adapter_bytes: int = 0  # the trainable tensors as an adapter file stores them (count x dtype size)
    mergeable: bool | None = None  # folds into W0 (True), adds what stays at inference (False), adds nothing (None)
    merge_note: str = ""
    sites: tuple[str, ...] = ()  # ids of the sites it attaches to
    lit: frozenset[str] = frozenset()  # the miniature's cells its trainable tensors light
    latency_ms: float | None = None  # added inference latency (adapted minus bare, medians), None: not measured
    bare_ms: float | None = None
    latency_spread_ms: float = 0.0  # the differences' median absolute deviation: below it, the sign is the timer's
    latency_note: str = ""  # why it was not measured

    @property
    def applies(self) -> bool:
        return not self.skipped


@dataclass(frozen=True)
class FamilyMap:
    base: str
    dataset: str
    miniature: Miniature
    tiles: tuple[MapTile, ...]
    latency_batch: int  # texts per timed forward (0 on a meta-device base)


# ---- figures, for sorting and for the table ---------------------------------------------------------------------
@dataclass(frozen=True)
class Figure:
    key: str
    label: str  # the sort selector's words
    value: Callable[[MapTile], Any]  # ascending is the natural order (fewest, fastest, mergeable first); None: last


FIGURES: tuple[Figure, ...] = (
    Figure("registry", "registry order", lambda t: None),
    Figure("method", "name", lambda t: t.method),
    Figure("trainable", "trainable parameters", lambda t: t.trainable),
    Figure("share", "trainable share", lambda t: t.share),
    Figure("adapter_bytes", "adapter bytes", lambda t: t.adapter_bytes),
    Figure("latency", "added latency", lambda t: t.latency_ms),
    Figure("mergeable", "mergeable", lambda t: {True: 0, None: 1, False: 2}[t.mergeable]),
    Figure("sites", "sites used", lambda t: len(t.sites)),
)
FIGURE_KEYS = tuple(f.key for f in FIGURES)


def figure(key: str) -> Figure:
    for candidate in FIGURES:
        if candidate.key == key:
            return candidate
    raise ConfigError(f"unknown figure {key[:40]!r} to sort by (choose from {', '.join(FIGURE_KEYS)})")


def sort_tiles(tiles: Sequence[MapTile], key: str = "registry", descending: bool = False) -> list[MapTile]:
    """The tiles by one figure (stable: ties keep registry order); a method that does not apply, or a figure that
    was not measured, goes last whichever the direction."""
    chosen = figure(key)
    order = list(tiles)
    if chosen.key == "registry":
        return order[::-1] if descending else order
    known = [t for t in order if t.applies and chosen.value(t) is not None]
    placed = {id(t) for t in known}
    known.sort(key=chosen.value, reverse=descending)
    return known + [t for t in order if id(t) not in placed]


def grouped(tiles: Sequence[MapTile]) -> list[tuple[str, list[MapTile]]]:
    """(group, its tiles in the given order) for each group of the seed's map that has a tile, in the map's order;
    a group no registered method names comes after them."""
    names = list(FAMILY_GROUPS) + sorted({t.group for t in tiles} - set(FAMILY_GROUPS))
    return [(name, [t for t in tiles if t.group == name]) for name in names if any(t.group == name for t in tiles)]


# ---- building the map -------------------------------------------------------------------------------------------
def map_base(setup: Setup, dataset: TextDataset) -> FrozenBase:
    """The setup's base, built apart from the studio's model from the same name, options and seed (the same
    weights): the map attaches every method to this one."""
    check_memory(setup, dataset)
    tokenizer = dataset.make_tokenizer() if uses_dataset_vocabulary(setup.base) else None
    with seeded(setup.seed):
        return create_base(setup.base, tokenizer, **setup.base_options)


def family_map(setup: Setup, dataset: TextDataset, methods: Sequence[str] | None = None,
               should_stop: Callable[[], bool] = lambda: False, measure: bool = True) -> FamilyMap:
    """The whole map at once (the CLI); the window iterates `map_tiles` for progress."""
    base = map_base(setup, dataset)
    shape = miniature(base)
    tiles = tuple(map_tiles(base, shape, setup.seed, dataset, methods, should_stop, measure))
    return FamilyMap(setup.base, dataset.name, shape, tiles, latency_batch(base, dataset))


def latency_batch(base: FrozenBase, dataset: TextDataset) -> int:
    return 0 if base.on_meta_device else min(LATENCY_TEXTS, len(dataset.train_texts))


def map_tiles(base: FrozenBase, shape: Miniature, seed: int, dataset: TextDataset,
              methods: Sequence[str] | None = None, should_stop: Callable[[], bool] = lambda: False,
              measure: bool = True) -> Iterator[MapTile]:
    """One tile per method (default: the registry), in order, until `should_stop`; the base is left as it was."""
    names = list(methods) if methods else list(METHODS)
    unknown = [n for n in names if n not in METHODS]
    if unknown:
        raise ConfigError(f"unknown method {unknown[0][:40]!r} (choose from {', '.join(METHODS)})")
    inputs = None if base.on_meta_device or not measure else \
        base.tokenizer.batch(list(dataset.train_texts[:LATENCY_TEXTS]))
    for name in names:
        if should_stop():
            return
        yield _tile(base, shape, name, seed, dataset, inputs, should_stop)


def _tile(base: FrozenBase, shape: Miniature, name: str, seed: int, dataset: TextDataset,
          inputs: tuple[torch.Tensor, torch.Tensor] | None, should_stop: Callable[[], bool]) -> MapTile:
    method = METHODS[name]
    blank = MapTile(name, method.title, method.group(), method.colour, method.card.where)
    try:
        options, fitted = _starting_options(name, base)
        config = method.config(options)
        with seeded(seed):
            model = attach_method(base, method, config, dataset)
    except PeftStudioError as exc:
        return _skip(blank, str(exc))
    except ImportError as exc:  # e.g. the 4-bit method where bitsandbytes is not installed
        return _skip(blank, f"needs a missing package ({exc})")
    try:
        census = take_census(model)
        sites = tuple(s.id for s in method.selected_sites(config, base))
        mergeable, merge_note = merge_status(model, method.trains_base)
        latency, bare, spread, note = _latency(model, base, inputs, should_stop)
        return MapTile(
            name, method.title, method.group(), method.colour, method.card.where, dict(options), fitted,
            trainable=census.trainable, share=census.trainable_percent,
            method_trainable=census.trainable - census.trainable_of("head"),
            adapter_bytes=census.trainable_bytes, mergeable=mergeable, merge_note=merge_note, sites=sites,
            lit=lit_cells(shape, base, census, sites), latency_ms=latency, bare_ms=bare, latency_spread_ms=spread,
            latency_note=note)
    finally:
        model.detach_method()


def _skip(tile: MapTile, reason: str) -> MapTile:
    return MapTile(tile.method, tile.title, tile.group, tile.colour, tile.where, skipped=reason)


def _starting_options(name: str, base: FrozenBase) -> tuple[dict[str, Any], bool]:
    """The method's defaults, else the first example options that fit this base (as the family run starts it);
    a ConfigError with the defaults' reason when nothing fits."""
    method = METHODS[name]
    try:
        method.validate(method.default_config(), base)
        return {}, False
    except ConfigError as refusal:
        fitted = fitting_options(name, base)
        if not fitted:
            raise refusal from None
        return fitted, True


def merge_status(model: StudioModel, trains_base: bool) -> tuple[bool | None, str]:
    """What the weight-update contract says of this model: its update folds into W0 (True; inference then costs
    what the bare base costs), or its parts stay in the forward pass (False), or it adds nothing to fold (None)."""
    if mergeable_layers(model):
        return True, "folds into W0: no added inference cost once merged"
    if weight_updates(model):
        return False, "a weight update that cannot be folded into this base's weights (see its card)"
    if trains_base:
        return None, "trains the base's own tensors: the result is a new base, nothing to merge"
    added = any(p.requires_grad for n, p in model.named_parameters() if not n.startswith("head."))
    if not added:
        return None, "adds nothing to the base: only the head trains"
    return False, "its parts stay in the forward pass (tokens, keys, modules or scales)"


# ---- latency --------------------------------------------------------------------------------------------------
@torch.no_grad()
def _latency(model: StudioModel, base: FrozenBase, inputs: tuple[torch.Tensor, torch.Tensor] | None,
             should_stop: Callable[[], bool]) -> tuple[float | None, float | None, float, str]:
    """(added ms, bare ms, spread ms, why not measured): the adapted model and the bare base with the same head
    (StudioModel.bypassed) timed in turn on one torch thread, a warm-up pair, then the medians over LATENCY_REPEATS
    pairs of the difference and of the bare time, and the differences' median absolute deviation."""
    if base.on_meta_device:
        return None, None, 0.0, META_LATENCY
    if base.unusable:
        return None, None, 0.0, f"not measured: {base.unusable}"
    if inputs is None:
        return None, None, 0.0, "not measured"
    ids, mask = inputs
    was_training, threads = model.training, torch.get_num_threads()
    model.eval()
    # one torch thread: a small batch gains little from more, and a team of OpenMP threads on a busy machine
    # waits on its slowest member (tens of ms at random), which no median of a few pairs survives
    set_torch_threads(1)
    added: list[float] = []
    bare: list[float] = []
    try:
        for repeat in range(LATENCY_REPEATS + 1):
            if should_stop():
                return None, None, 0.0, "not measured (stopped)"
            adapted = _timed(model, ids, mask)
            with model.bypassed():
                alone = _timed(model, ids, mask)
            if repeat:  # the first pair warms up
                added.append(adapted - alone)  # a pair timed back to back: a burst of load spoils one pair only
                bare.append(alone)
    finally:
        model.train(was_training)
        set_torch_threads(threads)
    middle = statistics.median(added)
    spread = statistics.median(abs(d - middle) for d in added)
    return middle, statistics.median(bare), spread, ""


def _timed(model: StudioModel, ids: torch.Tensor, mask: torch.Tensor) -> float:
    started = time.perf_counter()
    model(ids, mask)
    return 1000.0 * (time.perf_counter() - started)


# ---- text ---------------------------------------------------------------------------------------------------
def latency_text(tile: MapTile) -> str:
    if tile.latency_ms is None:
        return tile.latency_note or "-"
    if abs(tile.latency_ms) < max(LATENCY_NOISE_MS, tile.latency_spread_ms):
        return "≈0 ms"  # within the timings' own spread: no sign to read
    return f"{tile.latency_ms:+.2f} ms"


def merge_text(tile: MapTile) -> str:
    return {True: "mergeable", False: "not mergeable", None: "nothing to merge"}[tile.mergeable]


def share_text(share: float) -> str:
    if share <= 0:
        return "0%"
    return f"{share:.3g}%" if share >= 0.001 else "<0.001%"


def map_table(result: FamilyMap, key: str = "registry", descending: bool = False) -> str:
    """The map as text, one section per group, each sorted by the figure `key`; a method that does not apply
    says why."""
    header = (f"{'method':16} {'trainable':>14} {'share':>9} {'adapter':>10} {'+latency':>10}  {'merge':16} "
              f"sites")
    timing = (f"added latency: adapted minus bare forward of {result.latency_batch} texts on one thread, median "
              f"of {LATENCY_REPEATS} pairs" if result.latency_batch else f"latency {META_LATENCY}")
    lines = [f"family map of {result.base} · {result.dataset} ({timing})"]
    for group, tiles in grouped(sort_tiles(result.tiles, key, descending)):
        lines += ["", f"[{group}]", header]
        for t in tiles:
            if t.skipped:
                lines.append(f"{t.method:16} does not apply: {t.skipped}")
                continue
            latency = latency_text(t) if t.latency_ms is not None else "-"
            fitted = "  (fitted: " + ", ".join(f"{k}={v}" for k, v in t.options.items()) + ")" if t.fitted else ""
            lines.append(f"{t.method:16} {t.trainable:>14,} {share_text(t.share):>9} "
                         f"{human_bytes(t.adapter_bytes):>10} {latency:>10}  {merge_text(t):16} {len(t.sites)}"
                         f"{fitted}")
    return "\n".join(lines)
