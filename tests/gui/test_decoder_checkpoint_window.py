"""A decoder checkpoint in the window: File > Open base loads it in a worker (progress, Cancel) and the diagram of a
24-layer decoder opens collapsed with transformers' tensor names; "Try it" generates in a worker, streamed and
stoppable, with the next-token top-5 and the adapted continuation beside the base's, while Play waits."""

from __future__ import annotations

import time

import pytest

pytest.importorskip("transformers")
from decoder_checkpoints import write_checkpoint  # noqa: E402

from peft_studio.core.bases import create_base  # noqa: E402
from peft_studio.core.bases.decoder_checkpoint import DecoderCheckpointBase  # noqa: E402
from peft_studio.core.model.generate import GenerationSettings, encode_prompt, generate  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning", "ignore::FutureWarning")


@pytest.fixture(scope="module")
def deep(tmp_path_factory):
    """A 24-layer Qwen2 checkpoint (tiny widths): the depth of Qwen2.5-0.5B."""
    return str(write_checkpoint(tmp_path_factory.mktemp("ckpt") / "deep", "qwen2", num_hidden_layers=24, std=0.2))


def _open(window, qtbot, folder):
    assert window.files.open_base(folder)
    qtbot.waitUntil(lambda: not window.base_loader.running, timeout=60_000)
    qtbot.waitUntil(lambda: window.controller.setup.base == folder, timeout=60_000)


def test_open_base_loads_in_a_worker_and_draws_a_deep_decoder_collapsed(window, qtbot, errors, deep):
    _open(window, qtbot, deep)
    assert not errors
    base = window.controller.experiment.base
    assert isinstance(base, DecoderCheckpointBase) and base.num_layers == 24
    assert window.scene.layers_collapsed()
    rows = {row.name for row in window.controller.census.rows}
    assert {"base.model.layers.23.self_attn.k_proj.weight", "base.model.layers.23.self_attn.q_proj.base_layer.weight",
            "base.model.layers.0.mlp.down_proj.weight"} <= rows  # transformers' names (LoRA wraps q_proj)
    assert window.base_box.currentText() == deep
    assert window.act_play.isEnabled()


def test_a_cancelled_load_leaves_the_base_as_it_was(window, qtbot, errors, deep, monkeypatch):
    from peft_studio.gui.jobs import base_loader

    real = base_loader.load_folder

    def slow(path, progress=None, cancelled=None):  # each tensor takes a while: the user has time to cancel
        return real(path, progress, lambda: time.sleep(0.02) or cancelled())

    monkeypatch.setattr(base_loader, "load_folder", slow)
    before = window.controller.setup.base
    assert window.files.open_base(deep)
    qtbot.waitUntil(lambda: window.base_loader.dialog is not None and window.base_loader.dialog.value() > 0,
                    timeout=30_000)
    from PySide6.QtWidgets import QPushButton

    window.base_loader.dialog.findChild(QPushButton).click()  # the dialog's Cancel button
    qtbot.waitUntil(lambda: not window.base_loader.running, timeout=30_000)
    assert window.controller.setup.base == before and not errors
    assert "cancelled" in window.statusBar().currentMessage()


def test_try_it_generates_streamed_beside_the_base_and_holds_play(window, qtbot, errors, tmp_path):
    folder = str(write_checkpoint(tmp_path / "llama", "llama", std=0.3))
    _open(window, qtbot, folder)
    c = window.controller
    assert c.set_option("targets", "q_proj,v_proj"), errors
    generation = window.inference.generation
    assert generation.isVisibleTo(window.inference)
    window.inference.entry.setText("refund my order")
    generation.new_tokens.setValue(8)
    started = []
    generation.busy_changed.connect(started.append)
    generation.generate_button.click()
    assert started == [True] and not window.act_play.isEnabled()  # one thread uses the model at a time
    qtbot.waitUntil(lambda: not generation.running, timeout=60_000)
    assert started == [True, False] and window.act_play.isEnabled() and not errors
    # an untrained LoRA (B = 0) is the base: both continuations are the base's greedy tokens
    base = create_base(folder)
    prompt = encode_prompt(base.tokenizer, "refund my order")
    expected = generate(base, prompt, GenerationSettings(max_new_tokens=8), base.tokenizer.special.eos_ids)
    text = "refund my order" + base.tokenizer.decode(expected.generated_ids)
    assert generation.outputs["adapted"].toPlainText() == text == generation.outputs["base"].toPlainText()
    shown = [bar.format() for bar in window.inference._bar_widgets if not bar.isHidden()]
    assert len(shown) == 5 and all("%" in label for label in shown)  # the last step's top-5 with probabilities


def test_generation_stops_when_asked(window, qtbot, errors, tmp_path, monkeypatch):
    import threading

    from peft_studio.gui.panels import generation as panel

    # The stream waits after its fourth token until Stop is clicked: a fast machine cannot finish all 400 first.
    clicked, unmade = threading.Event(), panel.side_by_side

    def gated(*args):
        for count, item in enumerate(unmade(*args)):
            yield item
            if count >= 3:
                clicked.wait(30)

    monkeypatch.setattr(panel, "side_by_side", gated)
    folder = str(write_checkpoint(tmp_path / "gpt2", "gpt2", n_positions=512, std=0.3))
    _open(window, qtbot, folder)
    generation = window.inference.generation
    window.inference.entry.setText("cannot login")
    generation.new_tokens.setValue(400)
    generation.generate_button.click()
    qtbot.waitUntil(lambda: len(generation._ids["adapted"]) > 2, timeout=30_000)
    generation.stop_button.click()
    clicked.set()
    qtbot.waitUntil(lambda: not generation.running, timeout=30_000)
    assert len(generation._ids["adapted"]) < 400 and not generation._ids["base"] and not errors
