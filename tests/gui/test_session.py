"""The last session is remembered between starts; Restore defaults forgets it (issue 13)."""

from __future__ import annotations

from PySide6.QtCore import QSettings

from peft_studio.gui.window.session import SESSION_KEY


def _new_window(qtbot):
    from peft_studio.gui.window.main_window import MainWindow

    window = MainWindow()
    qtbot.addWidget(window)
    return window


def test_the_window_reopens_on_the_setup_it_closed_on(window, qtbot):
    assert window.controller.set_method("adapter", {"bottleneck": 6})
    assert window.controller.set_training(steps=7)
    window.toggle_presentation()
    window.close()
    again = _new_window(qtbot)
    assert again.controller.setup.method == "adapter" and again.controller.setup.options == {"bottleneck": 6}
    assert again.controller.settings.steps == 7 and again.presentation.on
    assert "Restored the last session" in again.statusBar().currentMessage()
    assert not again.controller.can_undo  # a fresh start, not an undoable step
    again.close()


def test_a_stale_session_is_dropped_quietly(qtbot, errors):
    QSettings().setValue(SESSION_KEY, '{"format": "peft-studio-setup", "version": 99}')
    window = _new_window(qtbot)
    assert window.controller.setup.method == "lora" and errors == []
    assert QSettings().value(SESSION_KEY) is None
    window.close()


def test_restore_defaults_forgets_everything(window, qtbot):
    window.controller.set_base("seed-pooled")
    window.toggle_presentation()
    window.docks.compare.show()
    window.actions_.restore_defaults.trigger()
    c = window.controller
    assert (c.setup.base, c.setup.method, c.dataset.name) == ("tiny", "lora", "intents")
    assert not window.presentation.on and not window.docks.compare.isVisible()
    assert QSettings().allKeys() == []
