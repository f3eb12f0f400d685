"""The Qt face of the studio's state: re-emits StudioState's events as signals; owns no state itself."""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import QObject, Signal

from ...core.adapters.adapter_set import SetAdapter
from ...core.bases.sites import Site
from ...core.data import TextDataset
from ...core.model.census import Census
from ...core.model.experiment import Experiment, Setup
from ...core.runs.train import TrainSettings
from ...core.studio import ClickEffect, Snapshot, StudioState
from ...core.teaching.examples import SEED_EXAMPLE


class Controller(QObject):
    changed = Signal()  # a new experiment was built (setup, dataset or a reset)
    settings_changed = Signal()  # training settings only
    failed = Signal(str, str)  # title, message: the previous experiment stays
    history_changed = Signal(bool, bool)  # can undo, can redo
    notice = Signal(str)  # something the status bar should say (e.g. sites dropped on a base change)
    lock_changed = Signal(bool)

    def __init__(self, setup: Setup | None = None, dataset: TextDataset | None = None,
                 state: StudioState | None = None) -> None:
        super().__init__()
        self.studio = state or StudioState(setup, dataset)
        for event in ("changed", "settings_changed", "failed", "history_changed", "notice", "lock_changed"):
            self.studio.on(event, getattr(self, event).emit)

    # ---- reading (delegated) ------------------------------------------------------------------
    @property
    def experiment(self) -> Experiment:
        return self.studio.experiment

    @property
    def census(self) -> Census:
        return self.studio.census

    @property
    def frozen_at_build(self) -> str:
        return self.studio.frozen_at_build

    @property
    def setup(self) -> Setup:
        return self.studio.setup

    @property
    def dataset(self) -> TextDataset:
        return self.studio.dataset

    @property
    def settings(self) -> TrainSettings:
        return self.studio.settings

    @property
    def state(self) -> Snapshot:
        return self.studio.snapshot

    @property
    def locked(self) -> bool:
        return self.studio.locked

    def selected_site_ids(self) -> set[str]:
        return self.studio.selected_site_ids()

    def method_for_site(self, site: Site) -> str:
        return self.studio.method_for_site(site)

    def click_effect(self, site: Site) -> ClickEffect | None:
        return self.studio.click_effect(site)

    # ---- changing (delegated) -----------------------------------------------------------------
    def apply(self, snapshot: Snapshot, record: bool = True) -> bool:
        return self.studio.apply(snapshot, record)

    def set_base(self, name: str) -> bool:
        return self.studio.set_base(name)

    def set_method(self, name: str, options: dict[str, Any] | None = None) -> bool:
        return self.studio.set_method(name, options)

    def set_option(self, name: str, value: Any) -> bool:
        return self.studio.set_option(name, value)

    def set_seed(self, seed: int) -> bool:
        return self.studio.set_seed(seed)

    def set_dataset(self, dataset: TextDataset) -> bool:
        return self.studio.set_dataset(dataset)

    def set_everything(self, setup: Setup, dataset: TextDataset, settings: TrainSettings) -> bool:
        return self.studio.set_everything(setup, dataset, settings)

    def set_training(self, **changes: Any) -> bool:
        return self.studio.set_training(**changes)

    def seed_example(self) -> bool:
        return self.studio.load_example(SEED_EXAMPLE)

    def show_adapter(self, member: SetAdapter) -> bool:
        return self.studio.show_adapter(member)

    def reset_model(self) -> None:
        self.studio.reset_model()

    def toggle_site(self, site_id: str) -> bool:
        return self.studio.toggle_site(site_id)

    def undo(self) -> bool:
        return self.studio.undo()

    def redo(self) -> bool:
        return self.studio.redo()
