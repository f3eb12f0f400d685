"""Shared by the dock tests: install the docks on the test window; prove no background job is left running."""

from __future__ import annotations

import pytest


@pytest.fixture(name="docks")
def docks_fixture(window):
    from peft_studio.gui.docks.dock_set import close_docks

    installed = window.docks  # the window installs its docks itself
    yield installed
    assert close_docks(installed)
    from peft_studio.gui.jobs.worker import Worker

    running = [w for w in list(Worker.instances) if _running(w)]
    assert not running, f"background jobs left running: {running}"


def _running(worker) -> bool:
    try:
        return worker.isRunning()
    except RuntimeError:  # the C++ object is gone: not running
        return False
