"""A method registered at run time (tests/plugin_shift.py) gets a list entry, a form, a card, insertion points
and census rows in the window, with no window code naming it."""

from __future__ import annotations

from test_diagram import click_item


def test_a_registered_method_appears_everywhere_in_the_window(shift_method, window, qtbot):
    assert window.method_box.findText("shift-test") >= 0
    c = window.controller
    assert c.set_method("shift-test", {"start": 0.25})
    assert set(window.form.editors) == {"freeze_head", "start", "targets", "layers"}
    assert window.form.editors["start"].value() == 0.25
    card = window.card.browser.toPlainText()
    assert "Output shift (test plugin)" in card and "self.inner(x) + self.shift" in card
    glyphs = {item.glyph for sid, item in window.scene.site_items.items()
              if ".attn." in sid and "kv" not in sid and not sid.endswith(".input")}  # inputs: IA3 only
    assert glyphs == {"S"}
    assert c.selected_site_ids() == {"layers.0.attn.q", "layers.1.attn.q"}
    click_item(qtbot, window, window.scene.site_items["layers.1.attn.v"])
    assert c.setup.method == "shift-test"
    assert c.selected_site_ids() == {"layers.0.attn.q", "layers.1.attn.q", "layers.1.attn.v"}
    names = [row.name for row in window.table.model.rows if row.name.endswith(".shift")]
    assert names == ["base.layers.0.attn.q.shift", "base.layers.1.attn.q.shift", "base.layers.1.attn.v.shift"]
    assert c.census.trainable_of("method") == 3 * 32
