"""`peft-studio` with no arguments opens the window on a working default, ready for Play."""

from __future__ import annotations

from PySide6.QtWidgets import QApplication


def test_main_opens_the_default_window(qapp, monkeypatch, errors):
    from peft_studio.gui import app as app_module
    from peft_studio.gui.window.main_window import MainWindow

    monkeypatch.setattr(QApplication, "exec", lambda self: 0)  # return at once instead of looping
    assert app_module.main() == 0
    windows = [w for w in QApplication.topLevelWidgets() if isinstance(w, MainWindow) and w.isVisible()]
    assert windows
    window = windows[-1]
    try:
        c = window.controller
        assert (c.setup.base, c.dataset.name, c.setup.method) == ("tiny", "intents", "lora")
        assert (c.settings.steps, c.settings.lr) == (300, 1e-2)
        assert window.act_play.isEnabled() and window.runner.state == "idle"
        assert not errors
    finally:
        window.close()
        window.deleteLater()


def test_cli_without_arguments_starts_the_gui(monkeypatch):
    import peft_studio.gui.app as app_module
    from peft_studio import cli

    calls = []
    monkeypatch.setattr(app_module, "main", lambda: calls.append("gui") or 0)
    assert cli.main([]) == 0
    assert calls == ["gui"]


def test_save_and_load_an_adapter_from_the_window(window, errors, tmp_path):
    import torch

    experiment = window.controller.experiment
    with torch.no_grad():
        for parameter in experiment.model.trainable_parameters():
            parameter.add_(0.05)
    texts = ["my card was charged twice"]
    trained = experiment.predict(texts)
    path = window.files.save_adapter_to(tmp_path / "mine")
    assert path is not None and path.exists()
    window.reset()  # fresh method parts and head
    assert not torch.equal(window.controller.experiment.predict(texts), trained)
    assert window.files.load_adapter_from(path)
    assert torch.equal(window.controller.experiment.predict(texts), trained)
    assert errors == []


def test_a_mismatched_adapter_is_a_dialog_and_changes_nothing(window, errors, tmp_path):
    import torch

    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"not an adapter at all")
    before = [p.detach().clone() for p in window.controller.experiment.model.parameters()]
    assert not window.files.load_adapter_from(bad)
    assert errors and errors[0][0] == "Cannot load this adapter" and "bad.safetensors" in errors[0][1]
    after = list(window.controller.experiment.model.parameters())
    assert all(torch.equal(a, b) for a, b in zip(before, after, strict=True))


def test_a_saved_setup_reopens_whole_and_undo_returns(window, errors, tmp_path):
    controller = window.controller
    controller.set_method("adapter", {"bottleneck": 6})
    window.on_dataset_choice("sentiment")
    controller.set_training(steps=77, lr=0.02)
    saved = window.files.save_setup_to(tmp_path / "lesson.json")
    assert saved is not None and errors == []
    window._choose(controller.set_method, "ia3")
    window.on_dataset_choice("intents")
    controller.set_training(steps=5)
    assert window.files.open_setup(saved)
    assert controller.setup.method == "adapter" and controller.setup.options == {"bottleneck": 6}
    assert controller.dataset.name == "sentiment" and window.data_box.currentText() == "sentiment"
    assert controller.settings.steps == 77 and window.training.steps.value() == 77
    assert window.method_box.currentText() == "adapter" and errors == []
    window.act_undo.trigger()  # the whole setup is one undo step
    assert controller.setup.method == "ia3" and controller.dataset.name == "intents" and controller.settings.steps == 5


def test_a_bad_setup_file_is_a_dialog_and_the_setup_stays(window, errors, tmp_path):
    bad = tmp_path / "lesson.json"
    bad.write_text('{"format": "peft-studio-setup", "version": 1, "base": "tiny", "method": "lora", '
                   '"options": {"r": 0}, "seed": 0, "dataset": {"builtin": "intents"}, "training": {}}')
    before = window.controller.setup
    assert not window.files.open_setup(bad)
    assert errors and errors[0][0] == "Cannot open this setup" and "lesson.json" in errors[0][1]
    assert window.controller.setup == before
