"""The next-token task in the window: chosen from the dataset list, refused on an encoder, trained live."""

from __future__ import annotations


def _choose(window, name: str) -> None:
    """Pick a dataset in the toolbar list as a user does."""
    index = window.data_box.findText(name)
    assert index >= 0, f"{name} is not in the dataset list"
    window.data_box.setCurrentIndex(index)
    window.data_box.activated.emit(index)


def test_texts_on_an_encoder_is_a_dialog_and_nothing_changes(window, errors):
    c = window.controller
    before = (c.setup.base, c.dataset.name, c.census.trainable)
    _choose(window, "texts")
    assert errors and "LM head" in errors[-1][1]
    assert (c.setup.base, c.dataset.name, c.census.trainable) == before
    assert window.data_box.currentText() == before[1]  # the list shows the working choice again


def test_next_token_trains_live_and_try_it_shows_next_words(window, qtbot, errors):
    c = window.controller
    assert c.set_base("tiny-decoder"), errors
    _choose(window, "texts")
    assert not errors, errors
    assert c.dataset.name == "texts" and c.experiment.next_token
    assert window.plots.acc_plot.getPlotItem().titleLabel.text == "next-token accuracy"
    assert "LMhead" in "".join(window.scene.block_items["head"].title.split())  # the frozen LM head, not a class head
    assert not [r for r in c.census.rows if r.owner == "head"]
    assert c.set_training(lr=0.03, batch_size=64), errors
    window.runner.play_pause()
    qtbot.waitUntil(lambda: window.runner.step >= 8, timeout=30_000)
    window.runner.stop_and_wait()
    assert not errors, errors
    losses = window.plots.current["loss"].view()[1].tolist()
    assert len(losses) >= 8 and losses[-1] < losses[0]
    window.inference.entry.setText("can i still")
    qtbot.waitUntil(lambda: "→" in window.inference.result.text(), timeout=5_000)
    words = set(c.experiment.tokenizer.vocab)
    shown = [bar.format().split()[0] for bar in window.inference._bar_widgets if not bar.isHidden()]
    assert len(shown) == 5 and set(shown) <= words
    assert window.inference.table.horizontalHeaderItem(1).text() == "next word"


def test_the_next_token_lesson_opens_on_try_it_with_the_decoder(window, errors):
    from peft_studio.core.teaching.lesson import load_shipped_lesson
    from peft_studio.gui.window.lessons import open_shipped_lesson

    lesson = load_shipped_lesson("next-token")
    assert open_shipped_lesson(window, "next-token"), errors
    c = window.controller
    assert (c.setup.base, c.setup.method, c.dataset.name) == ("tiny-decoder", "prefix-tuning", "texts")
    assert c.experiment.next_token and window.tabs.currentWidget() is window.inference
    assert window.plots.acc_plot.getPlotItem().titleLabel.text == "next-token accuracy"
    assert window.docks.notes_strip.notes == lesson.notes and not errors
    assert all(b.kind != "pool" for b in window.scene.info.blocks)  # every position predicts: no pooling drawn
