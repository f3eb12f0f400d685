"""Collections paused for a build and the heap frozen for a run: nested, counted apart, always given back."""

from __future__ import annotations

import gc

from peft_studio.gui.jobs import heap


def test_pauses_nest_and_the_last_resume_collects_again():
    assert gc.isenabled() and heap._pauses == 0
    heap.pause()
    heap.pause()  # a second build queued behind the first
    assert not gc.isenabled()
    heap.resume()
    assert not gc.isenabled()  # the other build still runs
    heap.resume()
    assert gc.isenabled()
    heap.resume()  # one too many (an abandoned build's late timer) changes nothing
    assert gc.isenabled() and heap._pauses == 0


def test_a_hold_freezes_the_heap_until_the_last_release():
    assert heap._holds == 0
    heap.hold()
    frozen = gc.get_freeze_count()
    assert frozen > 0
    heap.hold()
    heap.release()
    assert gc.get_freeze_count() >= frozen  # still frozen: the other hold
    heap.release()
    assert gc.get_freeze_count() == 0 and heap._holds == 0


def test_a_slow_build_pauses_collections_and_they_resume_once_it_has_ended(window, qtbot):
    controller = window.controller
    assert controller.set_base("llama-3-70b") and controller.building  # built on a worker
    assert not gc.isenabled()
    qtbot.waitUntil(lambda: not controller.building, timeout=60_000)
    assert controller.setup.base == "llama-3-70b"
    qtbot.waitUntil(gc.isenabled, timeout=5_000)  # after the repaint, whatever the build's outcome
    assert heap._pauses == 0
