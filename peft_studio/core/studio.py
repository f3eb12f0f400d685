"""The studio's state, Qt-free: setup, dataset, training settings, the built experiment, undo/redo,
the run lock, and the click model. The window's controller and views observe it.

Every model change is an `Edit`: the snapshots to try, best first. `prepare` builds one (it reads the
state and writes nothing, so a window may run it on a worker thread: a 70B architecture or a checkpoint
takes a while) and `commit` makes it current, so a bad choice leaves the previous working experiment in
place (and says why through a "failed" event). `submit` does both at once, unless a `background`
executor is installed for slow builds (the window's controller: it commits when the worker is done).
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, replace
from typing import Any

from .adapters.adapter_set import SetAdapter
from .bases import train_defaults, uses_dataset_vocabulary
from .bases.sites import Site
from .data import TextDataset, load_builtin
from .errors import PeftStudioError
from .files.limits import check_base_options
from .logs import log, report_unexpected
from .memory.budget import check_memory
from .methods import METHODS, get_method, method_for_click
from .methods.fitting import fitting_options
from .model.base_pool import BasePool, base_key, build_base
from .model.census import Census
from .model.experiment import Experiment, Setup
from .runs.train import TrainSettings
from .teaching.examples import load_example

FALLBACK_METHOD = "head-only"  # what remains when the last insertion point is clicked away
SITE_OPTIONS = ("targets", "layers", "placement")  # options that name sites: they do not carry across bases

Listener = Callable[..., None]


def default_settings(base: str, seed: int = 0) -> TrainSettings:
    """The base family's training defaults (the command line uses the same)."""
    defaults = train_defaults(base)
    return TrainSettings(steps=defaults.steps, lr=defaults.lr, batch_size=defaults.batch_size, seed=seed,
                         eval_every=10, track_grads=False)


@dataclass
class Snapshot:
    """One undoable state."""

    setup: Setup
    dataset: TextDataset
    settings: TrainSettings
    remembered: dict[str, dict[str, Any]] = field(default_factory=dict)  # method -> its last options
    # An adapter of a set shown as the window's experiment (already built and trained on the set's
    # base): undo and redo bring it back as it is, never rebuilt. None: the window's own experiment.
    adapter: SetAdapter | None = field(default=None, compare=False)


@dataclass(frozen=True)
class ClickEffect:
    """What a click on an insertion point would do: the method it means and the change in trainable count."""

    method: str
    adds: bool  # True: the site is added; False: it is removed
    delta: int  # trainable parameters after the click minus before (head included)


@dataclass
class Edit:
    """One change, as the snapshots to try (best first), each with the notice to give when it is the one built.

    `attempts` is called by `prepare`, possibly on a worker thread: it may read the state and build bases,
    never change the state. It may raise EditRefused to refuse with its own title."""

    attempts: Callable[[], Iterable[tuple[Snapshot, str]]]
    record: bool = True  # an undo step
    quiet: bool = False  # no "failed" event when nothing builds (a stale session)
    title: str = "This setup cannot be built"
    slow: bool = False  # a checkpoint or a large architecture: worth building off the GUI thread
    label: str = ""  # what is built, for a "building…" line
    after: Callable[[bool], None] | None = None  # told whether it became current (undo/redo move their stacks)


class EditRefused(Exception):  # noqa: N818 - a refusal with its own dialog title, not a bug
    def __init__(self, title: str, message: str) -> None:
        super().__init__(message)
        self.title, self.message = title, message


@dataclass
class Built:
    """What `prepare` made: the experiment for a snapshot with its census and frozen fingerprint."""

    snapshot: Snapshot
    experiment: Experiment
    census: Census
    fingerprint: str
    note: str = ""


@dataclass(frozen=True)
class BuildFailure:
    title: str
    message: str


def builds_slowly(base: str) -> bool:
    """A checkpoint (weights to read) or a shipped architecture (hundreds of modules, 70B on the meta device);
    the toy bases that build their vocabulary from the dataset take milliseconds."""
    return not uses_dataset_vocabulary(base)


class StudioState:
    """One owner for everything the window shows; observers subscribe with `on(event, callback)`.

    Events: changed (a new experiment), settings_changed, failed(title, message),
    history_changed(can_undo, can_redo), notice(message), lock_changed(locked).

    The experiment is the window's own, or one adapter of an AdapterSet (`show_adapter`): the set's
    switcher activates an adapter and the window follows it, with no rebuild. Any edit of the setup
    builds the window's own experiment again; the set keeps its adapters."""

    def __init__(self, setup: Setup | None = None, dataset: TextDataset | None = None,
                 settings: TrainSettings | None = None) -> None:
        # Runs slow edits elsewhere (the window: on a worker thread) and returns whether it took the edit;
        # it must call commit(edit, prepare(edit)) on the owner's thread when done. None: build at once.
        self.background: Callable[[Edit], bool] | None = None
        # Free bases for the next build of the same base: a method edit on a 70B architecture attaches to the
        # base the replaced model had instead of building 80 layers again (base_pool.py).
        self._pool = BasePool()
        setup = setup or Setup(base="tiny", method="lora", options={}, seed=0)
        dataset = dataset or load_builtin("intents")
        self.snapshot = Snapshot(setup, dataset, settings or default_settings(setup.base, setup.seed))
        self.experiment = Experiment(copy.deepcopy(setup), dataset)
        self.census: Census = self.experiment.census()
        self.frozen_at_build = self.experiment.frozen_fingerprint()
        self._undo: list[Snapshot] = []
        self._redo: list[Snapshot] = []
        self._locked = False
        self.lock_reason = ""
        self._listeners: dict[str, list[Listener]] = {}

    # ---- observing ---------------------------------------------------------------------------
    def on(self, event: str, callback: Listener) -> None:
        self._listeners.setdefault(event, []).append(callback)

    def _emit(self, event: str, *args: Any) -> None:
        for callback in list(self._listeners.get(event, ())):
            callback(*args)

    # ---- reading -----------------------------------------------------------------------------
    @property
    def setup(self) -> Setup:
        return self.snapshot.setup

    @property
    def dataset(self) -> TextDataset:
        return self.snapshot.dataset

    @property
    def settings(self) -> TrainSettings:
        return self.snapshot.settings

    @property
    def remembered(self) -> dict[str, dict[str, Any]]:
        return self.snapshot.remembered

    @property
    def can_undo(self) -> bool:
        return bool(self._undo) and not self._locked

    @property
    def can_redo(self) -> bool:
        return bool(self._redo) and not self._locked

    @property
    def locked(self) -> bool:
        """True while a run is active: model-changing edits are refused."""
        return self._locked

    def selected_site_ids(self) -> set[str]:
        return {s.id for s in self.experiment.selected_sites()}

    # ---- the run lock --------------------------------------------------------------------------
    def lock(self, reason: str = "") -> None:
        """A run is active (the window's own, or an adapter set's): model edits are refused until unlock."""
        self.lock_reason = reason
        self._set_lock(True)

    def unlock(self) -> None:
        self.lock_reason = ""
        self._set_lock(False)

    def _set_lock(self, locked: bool) -> None:
        if locked != self._locked:
            self._locked = locked
            self._emit("lock_changed", locked)
            self._history()

    # ---- changing ----------------------------------------------------------------------------
    def apply(self, snapshot: Snapshot, record: bool = True, quiet: bool = False) -> bool:
        """Build the experiment for `snapshot`; on success it becomes current (undoable)."""
        return self.submit(Edit(lambda: [(snapshot, "")], record, quiet, slow=self._slow(snapshot)))

    def submit(self, edit: Edit) -> bool:
        """Prepare and commit `edit` (or hand a slow one to the background executor). False when refused or
        when it did not build; True when it became current or was taken to be built in the background."""
        if self._locked:
            self._emit("failed", "Training is running",
                       self.lock_reason or "Stop or reset the run before changing the model.")
            return False
        if edit.slow and self.background is not None:
            return self.background(edit)
        return self.commit(edit, self.prepare(edit))

    def prepare(self, edit: Edit) -> Built | BuildFailure:
        """Build the first attempt that builds, with its census and fingerprint. Writes nothing to the state."""
        error: BaseException | None = None
        try:
            for snapshot, note in edit.attempts():
                try:
                    experiment = self._experiment_for(snapshot)
                    return Built(snapshot, experiment, experiment.census(), experiment.frozen_fingerprint(), note)
                except Exception as exc:  # noqa: BLE001 - any build failure is reported, the old model stays
                    error = exc
        except EditRefused as refused:
            return BuildFailure(refused.title, refused.message)
        return BuildFailure(edit.title, error_message(error) if error is not None else "nothing to build")

    def commit(self, edit: Edit, result: Built | BuildFailure) -> bool:
        """Make a prepared build current (one undo step when `edit.record`), or report why it failed."""
        if isinstance(result, BuildFailure):
            if not edit.quiet:
                self._emit("failed", result.title, result.message)
            if edit.after is not None:
                edit.after(False)
            return False
        leaving = self.snapshot.adapter
        replaced = self.experiment
        if edit.record:
            self._undo.append(self.snapshot)
            self._redo.clear()
        self.snapshot = result.snapshot
        self._install(result.experiment, result.census, result.fingerprint)
        if leaving is None and replaced is not result.experiment:
            self._keep_base(replaced)
        if edit.after is not None:
            edit.after(True)
        if leaving is not None and result.snapshot.adapter is None:
            self._emit("notice", f"The window now has its own {result.snapshot.setup.method} experiment; adapter "
                                 f"{leaving.name!r} stays in its set unchanged (Adapters panel)")
        if result.note:
            self._emit("notice", result.note)
        return True

    def _keep_base(self, replaced: Experiment) -> None:
        """The replaced model's base for the next build of the same base, which detaches its method. Only a
        meta-device base (shapes, no values): nothing runs it, so nothing can still be reading the replaced
        model's values, and a 70B architecture is what takes long to build again."""
        if replaced.base.on_meta_device and not isinstance(replaced, SetAdapter):
            self._pool.keep_later(replaced.base_key(), replaced.release_base)

    @staticmethod
    def _slow(snapshot: Snapshot) -> bool:
        return snapshot.adapter is None and builds_slowly(snapshot.setup.base)

    def _experiment_for(self, snapshot: Snapshot) -> Experiment:
        """The snapshot's set adapter, made active again when it is still in its set; else a new build."""
        member = snapshot.adapter
        if member is not None:
            if member.reactivate():
                return member
            snapshot.adapter = None  # removed from its set since: build what it described instead
        setup = snapshot.setup
        prebuilt = self._pool.take(base_key(setup.base, setup.base_options, setup.seed, snapshot.dataset))
        try:
            return Experiment(copy.deepcopy(setup), snapshot.dataset, prebuilt=prebuilt)
        except BaseException:
            if prebuilt is not None:  # a refused build leaves the base as it came: the next attempt may take it
                self._pool.keep(prebuilt)
            raise

    def show_adapter(self, member: SetAdapter) -> bool:
        """Show `member` (an adapter of a set, built and maybe trained) as the window's experiment, one
        undo step; no rebuild. Showing the one already shown refreshes the views (it trained or reset)."""
        if self.experiment is member and not self._locked:
            member.reactivate()
            self._install(member)
            return True
        settings = self.settings if member.setup.base == self.setup.base else \
            replace(default_settings(member.setup.base, member.setup.seed), eval_every=self.settings.eval_every)
        snapshot = Snapshot(copy.deepcopy(member.setup), member.dataset, settings,
                            copy.deepcopy(self.remembered), adapter=member)
        if not self.apply(snapshot):
            return False
        self._emit("notice", f"Showing set adapter {member.name!r} (switched, not rebuilt)")
        return True

    @property
    def showing_adapter(self) -> SetAdapter | None:
        """The set adapter the window shows, or None for the window's own experiment."""
        return self.snapshot.adapter

    def _install(self, experiment: Experiment, census: Census | None = None, fingerprint: str | None = None) -> None:
        self.experiment = experiment
        self.census = census if census is not None else experiment.census()
        self.frozen_at_build = fingerprint if fingerprint is not None else experiment.frozen_fingerprint()
        self._history()
        self._emit("changed")

    def _history(self) -> None:
        self._emit("history_changed", self.can_undo, self.can_redo)

    def _next(self, **setup_changes: Any) -> Snapshot:
        # The dataset is immutable: share it. A set adapter is not copied: an edit builds the window's own.
        snapshot = copy.deepcopy(replace(self.snapshot, dataset=None, adapter=None))
        snapshot.dataset = self.snapshot.dataset
        snapshot.remembered[snapshot.setup.method] = dict(snapshot.setup.options)
        snapshot.setup = replace(snapshot.setup, **setup_changes)
        return snapshot

    def set_base(self, name: str) -> bool:
        """Another base: the method keeps the sites that exist there (the notice names those dropped),
        else falls back to its defaults for that base, else to the base's default method."""
        if name == self.setup.base:
            return True
        if self._locked:
            return self.apply(self.snapshot)  # reports the lock
        old_sites = self.experiment.selected_sites()
        method = self.setup.method
        # Base options belong to a base (tiny's norm_placement): they follow only to a base that takes them,
        # else every other base would refuse them, and the session would keep them.
        base_options, dropped_options = _options_for_base(name, dict(self.setup.base_options))
        snapshot = self._next(base=name, base_options=base_options)
        snapshot.remembered = {m: _without_sites(o) for m, o in snapshot.remembered.items()}
        snapshot.settings = replace(default_settings(name, self.setup.seed), eval_every=self.settings.eval_every)
        scalars = _without_sites(self.setup.options)
        dataset = self.dataset

        def attempts() -> Iterator[tuple[Snapshot, str]]:
            try:  # the new base alone (its sites) first; the experiment chosen below attaches to this same base
                check_memory(snapshot.setup, dataset)
                prebuilt = build_base(name, snapshot.setup.base_options, snapshot.setup.seed, dataset)
            except Exception as exc:  # noqa: BLE001 - the base itself cannot be built: say why, keep the old one
                raise EditRefused("This base cannot be used", error_message(exc)) from None
            new_base = prebuilt.base
            new_ids = {s.id for s in get_method(method).usable_sites(new_base)} if method in METHODS else set()
            kept = [s for s in old_sites if s.id in new_ids]
            dropped = [s.id for s in old_sites if s.id not in new_ids]
            tries: list[tuple[str, dict[str, Any], str]] = []
            if kept and dropped:
                options = get_method(method).options_for_sites([new_base.site(s.id) for s in kept], new_base,
                                                               scalars)
                tries.append((method, options, f"dropped {', '.join(dropped)}: not on {name}"))
            elif kept or not old_sites:
                options = get_method(method).options_for_sites([new_base.site(s.id) for s in kept], new_base,
                                                               scalars) if kept else scalars
                tries.append((method, options, ""))
            tries.append((method, scalars, f"{method}: its sites are not on {name}; using its defaults there"
                          if old_sites else ""))
            default = new_base.default_method
            tries.append((default, {}, f"{method} cannot be used on {name}; switched to {default}"))
            if dropped_options:
                tries = [(m, o, "; ".join(filter(None, [note, f"base options {', '.join(dropped_options)} do not "
                                                          f"apply to {name}: dropped"])))
                         for m, o, note in tries]
            self._pool.keep(prebuilt)  # built once: prepare's build takes it (a refused attempt puts it back)
            for method_name, options, note in tries:
                yield replace(snapshot, setup=replace(snapshot.setup, method=method_name, options=dict(options))), note
            self._pool.take(prebuilt.key)  # none of them built: do not hold the base

        return self.submit(Edit(attempts, slow=builds_slowly(name), label=f"{name} · {method}"))

    def set_method(self, name: str, options: dict[str, Any] | None = None) -> bool:
        if name == self.setup.method and options is None:
            return True
        snapshot = self._next(method=name)
        if options is not None:
            snapshot.setup.options = dict(options)
            return self.apply(snapshot)
        remembered = dict(snapshot.remembered.get(name, {}))
        fresh = replace(snapshot, setup=replace(snapshot.setup, options={}))
        base = self.experiment.base

        def attempts() -> Iterator[tuple[Snapshot, str]]:
            if remembered:
                yield replace(snapshot, setup=replace(snapshot.setup, options=remembered)), ""
            yield fresh, ""  # the method's defaults when its remembered options do not build here
            # reached only when those failed: PEFT sizes some defaults for real models (FourierFT's 1000
            # coefficients), so start from settings that fit this base, saying so
            fitted = fitting_options(name, base) if name in METHODS else None
            if fitted:
                yield (replace(snapshot, setup=replace(snapshot.setup, options=fitted)),
                       f"{name}: its defaults do not fit {snapshot.setup.base}; starting from "
                       f"{', '.join(f'{k}={v}' for k, v in fitted.items())}")

        return self.submit(Edit(attempts, slow=self._slow(fresh), label=f"{snapshot.setup.base} · {name}"))

    def set_option(self, name: str, value: Any) -> bool:
        snapshot = self._next()
        snapshot.setup.options = {**snapshot.setup.options, name: value}
        if name == "placement":  # a placement replaces any per-site adapter selection
            snapshot.setup.options["targets"] = None
        return self.apply(snapshot)

    def set_seed(self, seed: int) -> bool:
        snapshot = self._next(seed=seed)
        snapshot.settings = replace(snapshot.settings, seed=seed)
        return self.apply(snapshot)

    def set_dataset(self, dataset: TextDataset) -> bool:
        snapshot = self._next()
        snapshot.dataset = dataset
        return self.apply(snapshot)

    def set_everything(self, setup: Setup, dataset: TextDataset, settings: TrainSettings) -> bool:
        """A whole saved setup at once (one undo step); the previous one stays if it cannot be built."""
        snapshot = self._next()
        snapshot.setup, snapshot.dataset, snapshot.settings = copy.deepcopy(setup), dataset, settings
        return self.apply(snapshot)

    def adopt(self, experiment: Experiment, settings: TrainSettings) -> bool:
        """An experiment already built and checked on its own (an imported PEFT adapter, its weights loaded)
        becomes current as one undo step, without a second build: nothing can differ from what was checked."""
        if self._locked:
            self._emit("failed", "Training is running",
                       self.lock_reason or "Stop or reset the run before changing the model.")
            return False
        snapshot = self._next()
        snapshot.setup, snapshot.dataset, snapshot.settings = copy.deepcopy(experiment.setup), experiment.dataset, \
            settings
        built = Built(snapshot, experiment, experiment.census(), experiment.frozen_fingerprint())
        return self.commit(Edit(lambda: [(snapshot, "")]), built)

    def start_from(self, setup: Setup, dataset: TextDataset, settings: TrainSettings) -> bool:
        """Start from this setup (the last session) as if it were the first: no undo step, and no error
        reported when it can no longer be built (the current one stays)."""
        return self.apply(Snapshot(copy.deepcopy(setup), dataset, settings), record=False, quiet=True)

    def set_training(self, **changes: Any) -> bool:
        """Training settings do not change the model: no rebuild, but undoable."""
        if self._locked:
            self._emit("failed", "Training is running", "Stop or reset the run before changing its settings.")
            return False
        try:
            settings = replace(self.settings, **changes)
            settings.check()
        except (PeftStudioError, TypeError) as exc:
            self._emit("failed", "Training setting refused", error_message(exc))
            return False
        self._undo.append(self.snapshot)
        self._redo.clear()
        self.snapshot = replace(self.snapshot, settings=settings)
        self._history()
        self._emit("settings_changed")
        return True

    def load_example(self, name: str) -> bool:
        """A setup shipped with the app (the seed's Adapter run is `seed-example`), as one undo step."""
        try:
            setup, dataset, settings = load_example(name)
        except PeftStudioError as exc:
            self._emit("failed", "Cannot open this example", str(exc))
            return False
        return self.set_everything(setup, dataset, settings)

    def reset_model(self) -> None:
        """Fresh method parts and head from the same seed; the base is rebuilt bit-identical. A slow base (a
        checkpoint to read again) is rebuilt as an edit without an undo step, so a window can do it off its
        GUI thread; the same seed gives the same weights either way."""
        if self._slow(self.snapshot):
            snapshot = self.snapshot
            self.submit(Edit(lambda: [(snapshot, "")], record=False, slow=True,
                             label=f"{snapshot.setup.base} · {snapshot.setup.method} (reset)"))
            return
        self.experiment.reset()
        self._install(self.experiment)

    def undo(self) -> bool:
        return self._travel(self._undo, self._redo)

    def redo(self) -> bool:
        return self._travel(self._redo, self._undo)

    def _travel(self, source: list[Snapshot], target: list[Snapshot]) -> bool:
        if not source or self._locked:
            return False
        snapshot = source.pop()
        current = self.snapshot
        if snapshot.setup == current.setup and snapshot.dataset is current.dataset \
                and snapshot.adapter is current.adapter:  # settings-only step
            target.append(current)
            self.snapshot = snapshot
            self._history()
            self._emit("settings_changed")
            return True

        def moved(built: bool) -> None:  # the stacks move once the outcome is known (a slow build is later)
            if built:
                target.append(current)
                self._history()
                self._emit("settings_changed")
            else:
                source.append(snapshot)
                self._history()

        return self.submit(Edit(lambda: [(snapshot, "")], record=False, slow=self._slow(snapshot),
                                label=f"{snapshot.setup.base} · {snapshot.setup.method}", after=moved))

    # ---- the click model ---------------------------------------------------------------------
    def method_for_site(self, site: Site) -> str:
        return method_for_click(site, self.setup.method)

    def _options_after_click(self, site: Site) -> tuple[str, dict[str, Any], bool]:
        """(method, options, adds) that one click on `site` means: exactly that site added or removed."""
        base = self.experiment.base
        name = self.method_for_site(site)
        method = get_method(name)
        if name != self.setup.method:
            return name, method.options_for_sites([site], base, dict(self.remembered.get(name, {}))), True
        chosen = self.experiment.selected_sites()
        if site.id in {s.id for s in chosen}:
            remaining = [s for s in chosen if s.id != site.id]
            if not remaining:
                return FALLBACK_METHOD, {}, False
            return name, method.options_for_sites(remaining, base, dict(self.setup.options)), False
        return name, method.options_for_sites([*chosen, site], base, dict(self.setup.options)), True

    def toggle_site(self, site_id: str) -> bool:
        """One click: add exactly this site (choosing its method if needed), or remove exactly it."""
        site = self.experiment.base.site(site_id)
        name = self.method_for_site(site)
        if not site.available_for(name):
            self._emit("failed", "This point is not available", site.unavailable[name])
            return False
        method, options, _ = self._options_after_click(site)
        return self.set_method(method, options)

    def click_effect(self, site: Site) -> ClickEffect | None:
        """What clicking this site would do, with the exact change in the trainable count (tooltips)."""
        name = self.method_for_site(site)
        if not site.available_for(name):
            return None
        method_name, options, adds = self._options_after_click(site)
        try:
            after = trainable_count(method_name, options, self.experiment)
        except PeftStudioError:
            return None
        return ClickEffect(method_name, adds, after - self.census.trainable)


def trainable_count(method_name: str, options: dict[str, Any], experiment: Experiment) -> int:
    """Trainable parameters (method + head) that `method_name` with `options` would have, without building."""
    method = get_method(method_name)
    config = method.config(options)
    method.validate(config, experiment.base)
    labels = experiment.dataset.num_labels
    head = 0 if config.freeze_head else experiment.base.hidden_size * labels + labels
    return method.parameter_count(config, experiment.base) + head


def _without_sites(options: dict[str, Any]) -> dict[str, Any]:
    """Options that name sites (targets, layers, placement) do not carry over to another base."""
    return {k: v for k, v in options.items() if k not in SITE_OPTIONS}


def error_message(exc: BaseException) -> str:
    """The line to show: a user mistake's own message; anything else is logged with its traceback (the window's
    Details… shows it) and shown by its type and message."""
    if isinstance(exc, PeftStudioError):
        return str(exc)
    if isinstance(exc, ImportError):
        log.info("a base needs a package that is missing: %s", exc)
        return f"this base is not available yet: {exc}"
    return report_unexpected(exc, "building the experiment")


def _options_for_base(name: str, options: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """(the options `name` takes, the names of those it does not); a base that takes none gets none."""
    if not options:
        return {}, []
    try:
        return check_base_options(name, options), []
    except PeftStudioError:
        return {}, sorted(options)
