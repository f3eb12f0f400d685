"""The Adapters dock: adapters trained in a thread on one shared base; switching changes predictions, never
the base fingerprint; save/load round-trips predictions; bad files are dialogs that change nothing."""

from __future__ import annotations

import torch
from docks_helpers import docks_fixture  # noqa: F401 - the `docks` fixture

TEXTS = ["need a refund", "i cannot log in", "what a great film", "this was awful"]


def _train(qtbot, lab, method: str, task: str, steps: int = 3) -> str:
    lab.method_box.setCurrentText(method)
    lab.data_box.setCurrentText(task)
    lab.steps_box.setValue(steps)
    lab.add_button.click()
    assert lab.job.running and not lab.add_button.isEnabled() and lab.stop_button.isEnabled()
    qtbot.waitUntil(lambda: not lab.job.running, timeout=30_000)
    assert "trained at step" in lab.progress_label.text()
    return lab.adapters.active


def test_two_task_adapters_on_one_base_switch_predictions_not_the_base(docks, window, qtbot, errors):
    lab = docks.lab
    intents = _train(qtbot, lab, "lora", "intents")
    sentiment = _train(qtbot, lab, "adapter", "sentiment")
    adapters = lab.adapters
    assert adapters.base_name == window.controller.setup.base and lab.switcher.names() == [intents, sentiment]
    assert lab.switcher.active == sentiment and "sentiment-adapter: →" in lab.try_label.text()
    by_adapter = {}
    for name in (intents, sentiment, intents):
        ms = lab.switch(name)
        assert ms is not None and f"{ms:.2f} ms" in lab.switcher.switch_label.text()
        assert lab.switcher.active == name and lab.try_label.text().startswith(f"{name}: →")
        assert adapters.frozen_fingerprint() == adapters.base_fingerprint
        assert "unchanged ✓" in lab.fingerprint_label.text()
        by_adapter.setdefault(name, adapters.predict(TEXTS))
        assert torch.equal(adapters.predict(TEXTS), by_adapter[name])
    assert not torch.equal(by_adapter[intents], by_adapter[sentiment])
    assert "base tiny" in lab.switcher.base_label.text() and not errors


def test_save_and_load_round_trip_predictions_and_a_bad_file_changes_nothing(docks, qtbot, errors, tmp_path):
    lab = docks.lab
    name = _train(qtbot, lab, "ia3", "intents")
    path = lab.save_to(tmp_path / "intents.safetensors")
    assert path is not None and path.is_file()
    expected = lab.adapters.predict(TEXTS)
    loaded = lab.load_from(path, "reloaded")
    assert loaded == "reloaded" and lab.switcher.names() == [name, "reloaded"]
    lab.switch("reloaded")
    assert torch.equal(lab.adapters.predict(TEXTS), expected)

    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"not an adapter")
    assert lab.load_from(bad) is None
    assert errors and errors[-1][0] == "Cannot load this adapter" and "bad.safetensors" in errors[-1][1]
    assert lab.switcher.names() == [name, "reloaded"] and lab.adapters.active == "reloaded"

    # A fresh lab (no set yet) rebuilds the base the file names and loads it.
    lab.adapters = None
    assert lab.load_from(path) == name and torch.equal(lab.adapters.predict(TEXTS), expected)


def test_a_refused_adapter_is_a_dialog_and_stop_keeps_the_steps_done(docks, qtbot, errors):
    lab = docks.lab
    first = lab.add("lora", "intents", name="dup")
    assert first == "dup" and lab.add("lora", "intents", name="dup") is None
    assert errors[-1][0] == "Cannot add this adapter" and lab.switcher.names() == ["dup"]
    assert lab.train("dup", 100_000)
    qtbot.waitUntil(lambda: lab.last_progress is not None, timeout=30_000)
    assert lab.add("lora", "sentiment") is None and lab.switch("dup") is None  # refused while it trains
    lab.stop_button.click()
    qtbot.waitUntil(lambda: not lab.job.running, timeout=30_000)
    assert "stopped at step" in lab.progress_label.text() and lab.last_progress.step < 100_000
    assert lab.add_button.isEnabled() and not lab.stop_button.isEnabled()
