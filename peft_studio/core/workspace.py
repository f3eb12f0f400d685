"""Everything the window shows, Qt-free, in one place: the studio (setup, experiment, undo, run lock), the
view (core/view.py), the jobs the user started (core/jobs.py), the adapter set of the Adapters panel and the
comparison runs of the board. The window's Controller wraps one Workspace; its panels observe the parts
they show and change them through the Controller.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .adapters.adapter_set import AdapterSet
from .jobs import JobBoard
from .runs.comparison import Comparison
from .studio import StudioState
from .view import ViewState


@dataclass
class Workspace:
    studio: StudioState = field(default_factory=StudioState)
    view: ViewState = field(default_factory=ViewState)
    jobs: JobBoard = field(default_factory=JobBoard)
    adapters: AdapterSet | None = None  # the Adapters panel's set (one frozen base, many adapters)
    comparison: Comparison = field(default_factory=Comparison)
