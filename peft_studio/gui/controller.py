"""The studio's state: setup, dataset, training settings, the built experiment, and undo/redo.

Qt only for signals; every model change goes through `apply`, which builds first and swaps only
on success, so a bad choice leaves the previous working experiment in place.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field, replace
from typing import Any

from PySide6.QtCore import QObject, Signal

from ..core.bases.sites import ACTIVATION, ADAPTER, KV_PREFIX, LINEAR, PROMPT, Site
from ..core.census import Census
from ..core.data import TextDataset, load_builtin
from ..core.experiment import Experiment, Setup
from ..core.methods import get_method
from ..core.train import TrainSettings

# Which method a click on a site of each kind chooses (linear keeps LoRA/QLoRA/IA3 if current).
KIND_METHOD = {PROMPT: "prompt-tuning", KV_PREFIX: "prefix-tuning", ADAPTER: "adapter", ACTIVATION: "ia3",
               LINEAR: "lora"}
LINEAR_METHODS = ("lora", "qlora", "ia3")
TARGETED = ("lora", "qlora", "ia3")  # methods whose sites are targets x layers


def default_settings(base: str, dataset: str) -> TrainSettings:
    """Sensible per-base defaults: quick toy bases, gentler pretrained ones."""
    if base == "seed-pooled":
        return TrainSettings(steps=201, lr=0.05, eval_every=10, track_grads=False)
    if base == "tiny":
        return TrainSettings(steps=300, lr=1e-2, eval_every=10, track_grads=False)
    return TrainSettings(steps=100, lr=5e-3, batch_size=32, eval_every=10, track_grads=False)


@dataclass
class State:
    """One undoable snapshot."""

    setup: Setup
    dataset: TextDataset
    settings: TrainSettings
    remembered: dict[str, dict[str, Any]] = field(default_factory=dict)  # method -> its last options


class Controller(QObject):
    changed = Signal()  # a new experiment was built (setup, dataset or a reset)
    settings_changed = Signal()  # training settings only
    failed = Signal(str, str)  # title, message: the previous experiment stays
    history_changed = Signal(bool, bool)  # can undo, can redo

    def __init__(self, setup: Setup | None = None, dataset: TextDataset | None = None) -> None:
        super().__init__()
        setup = setup or Setup(base="tiny", method="lora", options={}, seed=0)
        dataset = dataset or load_builtin("intents")
        self.state = State(setup, dataset, default_settings(setup.base, dataset.name))
        self.experiment = Experiment(copy.deepcopy(setup), dataset)
        self.census: Census = self.experiment.census()
        self.frozen_at_build = self.experiment.model.frozen_fingerprint()
        self._undo: list[State] = []
        self._redo: list[State] = []
        self.locked = False  # True while a run is active: model-changing edits are refused

    # ---- reading ---------------------------------------------------------------------------
    @property
    def setup(self) -> Setup:
        return self.state.setup

    @property
    def dataset(self) -> TextDataset:
        return self.state.dataset

    @property
    def settings(self) -> TrainSettings:
        return self.state.settings

    def selected_site_ids(self) -> set[str]:
        exp = self.experiment
        return {s.id for s in exp.method.selected_sites(exp.config, exp.base)}

    # ---- changing ----------------------------------------------------------------------------
    def apply(self, state: State, record: bool = True) -> bool:
        """Build the experiment for `state`; on success it becomes current (undoable)."""
        if self.locked:
            self.failed.emit("Training is running", "Stop or reset the run before changing the model.")
            return False
        try:
            experiment = Experiment(copy.deepcopy(state.setup), state.dataset)
        except Exception as exc:  # noqa: BLE001 - any build failure is shown, the old model stays
            self.failed.emit("This setup cannot be built", _message(exc))
            return False
        if record:
            self._undo.append(self.state)
            self._redo.clear()
        self.state = state
        self._install(experiment)
        return True

    def _install(self, experiment: Experiment) -> None:
        self.experiment = experiment
        self.census = experiment.census()
        self.frozen_at_build = experiment.model.frozen_fingerprint()
        self.history_changed.emit(bool(self._undo), bool(self._redo))
        self.changed.emit()

    def _next(self, **setup_changes: Any) -> State:
        state = copy.deepcopy(self.state)
        state.dataset = self.state.dataset  # immutable; share it
        state.remembered[state.setup.method] = dict(state.setup.options)
        state.setup = replace(state.setup, **setup_changes)
        return state

    def set_base(self, name: str) -> bool:
        if name == self.setup.base:
            return True
        state = self._next(base=name)
        state.setup.options = _drop_layers(state.setup.options)
        state.remembered = {m: _drop_layers(o) for m, o in state.remembered.items()}
        if name == "seed-pooled" and self.dataset.name != "seed-intents":
            state.dataset = load_builtin("seed-intents")
        state.settings = default_settings(name, state.dataset.name)
        return self.apply(state)

    def set_method(self, name: str, options: dict[str, Any] | None = None) -> bool:
        if name == self.setup.method and options is None:
            return True
        state = self._next(method=name)
        state.setup.options = dict(options if options is not None else state.remembered.get(name, {}))
        return self.apply(state)

    def set_option(self, name: str, value: Any) -> bool:
        state = self._next()
        state.setup.options = {**state.setup.options, name: value}
        return self.apply(state)

    def set_seed(self, seed: int) -> bool:
        state = self._next(seed=seed)
        state.settings = replace(state.settings, seed=seed)
        return self.apply(state)

    def set_dataset(self, dataset: TextDataset) -> bool:
        state = self._next()
        state.dataset = dataset
        return self.apply(state)

    def set_everything(self, setup: Setup, dataset: TextDataset, settings: TrainSettings) -> bool:
        """A whole saved setup at once (one undo step); the previous one stays if it cannot be built."""
        state = self._next()
        state.setup, state.dataset, state.settings = copy.deepcopy(setup), dataset, settings
        return self.apply(state)

    def set_training(self, **changes: Any) -> None:
        """Training settings do not change the model: no rebuild, but undoable."""
        self._undo.append(self.state)
        self._redo.clear()
        self.state = copy.copy(self.state)
        self.state.settings = replace(self.state.settings, **changes)
        self.history_changed.emit(True, False)
        self.settings_changed.emit()

    def seed_example(self) -> bool:
        """The seed's Adapter run: seed-pooled base, seed-intents, bottleneck 4, lr 0.05, seed 42, 201 steps."""
        state = self._next(base="seed-pooled", method="adapter", options={"bottleneck": 4}, seed=42)
        state.dataset = load_builtin("seed-intents")
        state.settings = TrainSettings(steps=201, lr=0.05, seed=42, eval_every=50, track_grads=False)
        return self.apply(state)

    def reset_model(self) -> None:
        """Fresh method parts and head from the same seed; the base is rebuilt bit-identical."""
        self.experiment.reset()
        self._install(self.experiment)

    def undo(self) -> bool:
        return self._travel(self._undo, self._redo)

    def redo(self) -> bool:
        return self._travel(self._redo, self._undo)

    def _travel(self, source: list[State], target: list[State]) -> bool:
        if not source or self.locked:
            return False
        state = source.pop()
        current = self.state
        if state.setup == current.setup and state.dataset is current.dataset:  # settings-only step
            target.append(current)
            self.state = state
            self.history_changed.emit(bool(self._undo), bool(self._redo))
            self.settings_changed.emit()
            return True
        if not self.apply(state, record=False):
            source.append(state)
            return False
        target.append(current)
        self.history_changed.emit(bool(self._undo), bool(self._redo))
        self.settings_changed.emit()
        return True

    # ---- diagram clicks ------------------------------------------------------------------------
    def method_for_site(self, site: Site) -> str:
        if site.kind == LINEAR and self.setup.method in LINEAR_METHODS:
            return self.setup.method
        if site.kind == LINEAR and self.setup.method == "ia3":
            return "ia3"
        return KIND_METHOD[site.kind]

    def toggle_site(self, site_id: str) -> bool:
        """Click semantics: choose the site's method; add the site; clicking a chosen one removes it."""
        base = self.experiment.base
        site = base.site(site_id)
        method = self.method_for_site(site)
        if not site.available_for(method):
            self.failed.emit("This point is not available", site.unavailable[method])
            return False
        if method != self.setup.method:
            options = dict(self.state.remembered.get(method, {}))
            options.update(_site_options(method, [site], base.num_layers, self.setup.options))
            return self.set_method(method, options)
        exp = self.experiment
        chosen = exp.method.selected_sites(exp.config, base)
        if site.id not in {s.id for s in chosen}:
            return self.set_method(method, {**self.setup.options,
                                            **_site_options(method, [*chosen, site], base.num_layers,
                                                            self.setup.options)})
        remaining = _remove(chosen, site, method)
        if not remaining:
            return self.set_method("head-only", {})
        return self.set_method(method, {**self.setup.options,
                                        **_site_options(method, remaining, base.num_layers, self.setup.options)})

    def would_add(self, site: Site) -> int | None:
        """Parameters this site alone would add with the current settings (for the tooltip)."""
        method_name = self.method_for_site(site)
        if not site.available_for(method_name):
            return None
        method = get_method(method_name)
        options = dict(self.state.remembered.get(method_name, {}))
        if method_name == self.setup.method:
            options = dict(self.setup.options)
        options.update(_site_options(method_name, [site], self.experiment.base.num_layers, options))
        try:
            from ..core.methods.config import make_config

            return method.parameter_count(make_config(method.config_cls, options), self.experiment.base)
        except Exception:  # noqa: BLE001 - a tooltip never fails
            return None


def _names_layers(sites: list[Site]) -> tuple[list[str], list[int]]:
    names: list[str] = []
    layers: list[int] = []
    for s in sites:
        if s.name not in names:
            names.append(s.name)
        if s.layer is not None and s.layer not in layers:
            layers.append(s.layer)
    return names, sorted(layers)


def _site_options(method: str, sites: list[Site], num_layers: int, current: dict[str, Any]) -> dict[str, Any]:
    """Options that select exactly `sites` (targets x layers for the targeted methods)."""
    names, layers = _names_layers(sites)
    options: dict[str, Any] = {}
    if num_layers and layers:
        options["layers"] = ",".join(map(str, layers))
    if method in TARGETED:
        options["targets"] = ",".join(names)
    elif method == "adapter" and num_layers:
        kinds = {n for n in names if n in ("after-attn", "after-ffn")}
        options["placement"] = "both" if len(kinds) == 2 else (kinds.pop() if kinds else "after-ffn")
    return options


def _remove(chosen: list[Site], site: Site, method: str) -> list[Site]:
    """Remove one 'line' through the clicked site: its layer if it is the only target, else its target."""
    names, layers = _names_layers(chosen)
    if method in ("prompt-tuning",) or (len(names) <= 1 and len(layers) <= 1):
        return []
    if len(names) == 1 or (method == "prefix-tuning"):
        return [s for s in chosen if s.layer != site.layer]
    return [s for s in chosen if s.name != site.name]


def _drop_layers(options: dict[str, Any]) -> dict[str, Any]:
    """Layer indices do not carry over between bases of different depth."""
    return {k: v for k, v in options.items() if k != "layers"}


def _message(exc: BaseException) -> str:
    from ..core.errors import PeftStudioError

    if isinstance(exc, PeftStudioError):
        return str(exc)
    if isinstance(exc, ImportError):
        return f"this base is not available yet: {exc}"
    return f"{type(exc).__name__}: {exc}"
