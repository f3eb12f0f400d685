"""`peft-studio` with no arguments opens the window on a working default, ready for Play."""

from __future__ import annotations

from PySide6.QtWidgets import QApplication


def test_main_opens_the_default_window(qapp, monkeypatch, errors):
    from peft_studio.gui import app as app_module
    from peft_studio.gui.window import MainWindow

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
