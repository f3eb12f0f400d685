"""The "Memory at scale" dock: its bars and verdict are core's ledger; it follows the experiment only while seen."""

from __future__ import annotations

from PySide6.QtCore import Qt

from peft_studio.core.data import load_builtin
from peft_studio.core.memory.at_scale import GIB, ledger, plan_for
from peft_studio.core.model.experiment import Setup
from peft_studio.gui.docks.memory import SEQ_LENGTHS, MemoryScalePanel, size_text
from peft_studio.gui.window.controller import Controller


def _panel(qtbot, controller: Controller) -> MemoryScalePanel:
    panel = MemoryScalePanel(controller)
    qtbot.addWidget(panel)
    panel.resize(900, 600)
    panel.show()
    return panel


def _core(controller: Controller, panel: MemoryScalePanel):
    experiment = controller.experiment
    return ledger(controller.census, experiment.base, plan_for(experiment.shape_change(), **panel.choices()))


def _shown(panel: MemoryScalePanel) -> list[tuple[str, str]]:
    return [(name.text(), bar.format()) for name, bar in zip(panel.names, panel.bars, strict=True)]


def test_changing_controls_shows_cores_ledger(qtbot):
    controller = Controller(Setup("tiny-decoder", "prompt-tuning", {}), load_builtin("intents"))
    panel = _panel(qtbot, controller)
    panel.weights.setCurrentIndex(panel.weights.findData("fp32"))
    panel.optimizer.setCurrentIndex(panel.optimizer.findData("sgd"))
    panel.batch.setValue(7)
    panel.seq_len.setValue(SEQ_LENGTHS.index(2048))
    qtbot.keyClick(panel.checkpointing, Qt.Key.Key_Space)  # keyboard: space toggles the focused box
    assert panel.checkpointing.isChecked()
    assert panel.batch_value.text() == "7" and panel.seq_value.text() == "2,048"
    book = _core(controller, panel)
    assert panel.book == book
    assert _shown(panel) == [(what, size_text(size)) for what, size in book.lines]
    tokens = controller.experiment.shape_change().input_tokens
    assert tokens > 0 and f"+{tokens} prompt tokens" in panel.names[4].text()  # prompt tuning lengthens the input
    assert panel.bars[4].toolTip().startswith(f"{book.lines[4][1]:,} bytes")
    assert "Korthikanti" in panel.bars[4].toolTip()
    assert panel.verdict.text().endswith(book.verdict(24)) and "fits" in panel.verdict.text()


def test_it_follows_the_experiment_only_while_visible(qtbot):
    controller = Controller(Setup("tiny-decoder", "lora", {"r": 4}), load_builtin("intents"))
    panel = _panel(qtbot, controller)
    before = panel.book
    panel.hide()
    assert controller.set_option("r", 8)
    assert panel.book == before and panel._stale  # hidden: nothing recomputed
    panel.show()
    assert panel.book == _core(controller, panel) and panel.book != before


def test_llama_3_70b_qlora_r16_fits_the_way_core_computes(qtbot):
    controller = Controller(Setup("llama-3-70b", "qlora", {"targets": "all-linear", "r": 16}), load_builtin("intents"))
    panel = _panel(qtbot, controller)
    panel.weights.setCurrentIndex(panel.weights.findData("nf4-dq"))
    panel.checkpointing.setChecked(True)
    panel.batch.setValue(1)
    panel.seq_len.setValue(SEQ_LENGTHS.index(512))
    book = _core(controller, panel)
    assert 24 * GIB < book.total < 80 * GIB  # 4-bit 70B: ~37 GiB of weights alone
    for gb, fits in ((24, False), (40, False), (80, True)):
        panel.device.setCurrentIndex(panel.device.findData(gb))
        assert panel.verdict.text() == ("✓ " if fits else "✗ ") + book.verdict(gb)
        assert ("does not fit" not in panel.verdict.text()) == fits == book.fits(gb)
    assert panel.fit_line.accessibleDescription() == book.fit_line()
    assert "meta device" in panel.summary.text()


def test_the_dock_has_a_view_toggle_and_shortcut(window, errors):
    docks = window.docks
    toggle = docks.toggles["memory"]
    assert toggle.shortcut().toString() == "Ctrl+Alt+M" and toggle in window.actions()
    assert not docks.memory.isVisible() and docks.memory_panel._stale
    toggle.trigger()
    assert docks.memory.isVisible() and docks.memory_panel.book is not None
    assert window.controller.set_base("tiny-decoder"), errors
    assert docks.memory_panel.book == _core(window.controller, docks.memory_panel)


def test_as_built_storage_follows_the_method_that_quantizes_the_base(qtbot):
    controller = Controller(Setup("qwen2.5-0.5b", "qlora", {}), load_builtin("intents"))
    panel = _panel(qtbot, controller)
    assert panel.weights.currentData() == "as built" and panel.choices()["weights"] == "nf4"
    assert "frozen weights (nf4)" in [name.text() for name in panel.names]
    quantized = panel.book.total
    controller.set_method("lora")
    assert controller.wait_for_builds()
    assert panel.choices()["weights"] == "bf16" and panel.book.total > quantized
    assert panel.book.total == _core(controller, panel).total
