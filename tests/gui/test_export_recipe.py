"""File > Export recipe: the setup checked before any folder is asked for, the folder dialog (monkeypatched; a
new folder may be named), the recipe written, a status-bar line; a refused setup or folder is an error dialog
and writes nothing."""

from __future__ import annotations

import json

import pytest
from PySide6.QtWidgets import QFileDialog


def _menu_action(window, text: str):
    file_menu = next(a.menu() for a in window.menuBar().actions() if a.menu() and "File" in a.text())
    return next(a for a in file_menu.actions() if a.text() == text)


@pytest.mark.parametrize("base", ["gpt2"])
def test_export_recipe_from_the_file_menu(window, errors, tmp_path, monkeypatch, base):
    controller = window.controller
    assert controller.set_base(base) and controller.wait_for_builds()
    assert controller.set_method("lora", {"r": 4}) and controller.wait_for_builds()
    target = tmp_path / "recipe"  # a folder that does not exist yet: the recipe creates it
    asked = []
    monkeypatch.setattr(QFileDialog, "getSaveFileName",
                        lambda parent, caption, *a, **k: asked.append(caption) or (str(target), ""))
    _menu_action(window, "Export recipe…").trigger()
    assert asked and errors == []
    expected = json.loads((target / "expected.json").read_text())
    assert expected["studio"]["method_trainable"] == controller.experiment.method_parameter_count()
    assert expected["studio"]["trainable"] == controller.experiment.census().trainable
    assert (target / "train.py").is_file() and (target / "accelerate_configs" / "fsdp.yaml").is_file()
    message = window.statusBar().currentMessage()
    assert "Saved recipe to" in message and "openai-community/gpt2" in message
    # the same folder again: not empty, so a dialog, and the files stay as they were
    before = (target / "expected.json").read_text()
    _menu_action(window, "Export recipe…").trigger()
    assert errors and errors[0][0] == "Cannot export the recipe" and "not empty" in errors[0][1]
    assert (target / "expected.json").read_text() == before


def test_a_toy_base_is_refused_before_any_folder_is_asked_for(window, errors, tmp_path, monkeypatch):
    asked = []
    monkeypatch.setattr(QFileDialog, "getSaveFileName", lambda *a, **k: asked.append(1) or (str(tmp_path / "r"), ""))
    setup = window.controller.setup
    _menu_action(window, "Export recipe…").trigger()
    assert errors and errors[0][0] == "Cannot export the recipe" and "no Hugging Face model" in errors[0][1]
    assert asked == [] and not (tmp_path / "r").exists() and window.controller.setup == setup
