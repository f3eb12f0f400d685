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
        qtbot.waitUntil(lambda: "unchanged ✓" in lab.fingerprint_label.text(), timeout=10_000)
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


def test_the_window_follows_the_active_adapter_and_leaves_it_on_an_edit(docks, window, qtbot, errors):
    lab = docks.lab
    intents = _train(qtbot, lab, "lora", "intents")
    sentiment = _train(qtbot, lab, "adapter", "sentiment")
    c = window.controller
    fingerprint = window.base_label.text()
    window.inference.entry.setText("need a refund")
    seen = {}
    for name in (intents, sentiment):
        lab.switch(name)
        member = lab.adapters.get(name)
        assert c.experiment is member and window.method_box.currentText() == member.method.name
        assert window.table.model.rowCount() == len(c.census.rows) and c.census.trainable == member.census().trainable
        # the diagram marks the active adapter's sites, the main Try it predicts with it, the base is the same one
        assert c.selected_site_ids() == {s.id for s in member.selected_sites()}
        labels = member.dataset.label_names
        seen[name] = window.inference.result.text()
        assert any(f"→ {label} " in seen[name] for label in labels)
        assert window.base_label.text() == fingerprint
        assert "window redrawn in" in lab.switcher.switch_label.text()
    assert seen[intents] != seen[sentiment]

    # the window's own edit: a new experiment of the window's, the set keeps the adapter as trained
    before = lab.adapters.get(sentiment).predict(TEXTS)
    site = next(s for s in c.experiment.base.sites() if s.kind == "linear")
    window.on_site_clicked(site.id)
    assert c.showing_adapter is None and c.experiment is not lab.adapters.get(sentiment)
    assert "stays in its set" in window.statusBar().currentMessage()
    assert torch.equal(lab.adapters.get(sentiment).predict(TEXTS), before)
    window.act_undo.trigger()
    assert c.experiment is lab.adapters.get(sentiment) and not errors


def test_one_run_at_a_time_between_the_window_and_the_set(docks, window, qtbot, errors):
    lab = docks.lab
    name = lab.add("lora", "intents")
    assert lab.train(name, 100_000)
    qtbot.waitUntil(lambda: lab.last_progress is not None, timeout=30_000)
    # the lab's run holds the window's lock: no Play, no model edits, and the status bar says why
    assert not window.act_play.isEnabled() and not window.method_box.isEnabled()
    assert f"Adapter {name!r} is training" in window.statusBar().currentMessage()
    assert not window.controller.set_method("ia3") and f"{name!r} is training" in errors[-1][1]
    lab.stop_button.click()
    qtbot.waitUntil(lambda: not lab.job.running, timeout=30_000)
    assert window.act_play.isEnabled() and window.method_box.isEnabled() and not window.controller.locked

    # the window trains the shown adapter: the lab refuses to change the set until it stops
    window.act_play.trigger()
    qtbot.waitUntil(lambda: window.runner.step > 0, timeout=30_000)
    assert not lab.add_button.isEnabled() and lab.switch(name) is None and lab.add("ia3", "sentiment") is None
    assert "The window is training" in window.statusBar().currentMessage()
    window.stop()
    qtbot.waitUntil(lambda: not window.runner.active, timeout=30_000)
    assert lab.add_button.isEnabled() and lab.adapters.active == name


def test_merge_test_and_weighted_combination_from_the_panel(docks, window, qtbot, errors):
    from PySide6.QtWidgets import QDialog

    from peft_studio.core.methods.mergeable import weight_updates
    from peft_studio.gui.docks.lora_tools import CombineDialog

    lab = docks.lab
    tools = lab.lora_tools
    first = _train(qtbot, lab, "lora", "intents")
    second = _train(qtbot, lab, "lora", "intents")
    assert tools.merge_button.isEnabled() and tools.combine_button.isEnabled()
    before = lab.adapters.predict(TEXTS)
    with qtbot.waitSignal(tools.measured, timeout=30_000) as measured:
        assert tools.merge_test()
        assert window.controller.locked and not window.act_play.isEnabled()  # W0 is being rewritten
    report = measured.args[0]
    qtbot.waitUntil(lambda: not tools.job.running and not window.controller.locked, timeout=10_000)
    assert report.layers == len(weight_updates(lab.adapters.get(second).model)) > 0
    assert report.equal and "outputs equal" in tools.result.text()
    assert torch.equal(lab.adapters.predict(TEXTS), before)  # unmerged again, bit for bit
    qtbot.waitUntil(lambda: "unchanged ✓" in lab.fingerprint_label.text(), timeout=10_000)

    # the dialog's choice (weights 0.3 / 0.7, concatenation) becomes a new adapter the window then shows
    def ask(names, suggested):
        dialog = CombineDialog(names, suggested)
        dialog.weights[first].setValue(0.3)
        dialog.weights[second].setValue(0.7)
        dialog.combination.setCurrentText("cat")
        dialog.exec = lambda: QDialog.DialogCode.Accepted
        return dialog

    tools.ask_combination = ask
    name = tools.combine_dialog()
    assert name == "combined-lora" and lab.adapters.active == name and lab.switcher.names()[-1] == name
    assert window.controller.experiment is lab.adapters.get(name) and lab.adapters.get(name).config.r == 16
    assert "0.3×" in tools.result.text() and "rank 16" in tools.result.text() and not errors

    # a LoRA-only tool on a non-LoRA adapter, and a combination without adapters: dialogs, nothing changes
    lab.add("ia3", "intents", name="gains")
    assert not tools.merge_button.isEnabled() and not tools.merge_test()
    assert errors[-1][0] == "Cannot merge"
    assert tools.combine([], [], "linear", "empty") is None and errors[-1][0] == "Cannot combine these adapters"
    assert "empty" not in lab.adapters
