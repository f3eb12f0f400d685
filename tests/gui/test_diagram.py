"""The diagram is built from blocks + sites + census, and clicks on insertion points edit the setup."""

from __future__ import annotations

from PySide6.QtCore import Qt


def click_item(qtbot, window, item) -> None:
    """A real mouse click through the view, at the item's centre."""
    view = window.view
    view.centerOn(item)
    pos = view.mapFromScene(item.sceneBoundingRect().center())
    qtbot.mouseClick(view.viewport(), Qt.MouseButton.LeftButton, pos=pos)


def test_every_site_and_block_of_the_base_is_drawn(window):
    base = window.controller.experiment.base
    assert set(window.scene.site_items) == {s.id for s in base.sites()}
    leaf_ids = set()

    def walk(blocks):
        for block in blocks:
            leaf_ids.add(block.id)
            walk(block.children)

    walk(base.blocks())
    assert leaf_ids <= set(window.scene.block_items)
    assert "head" in window.scene.block_items
    # LoRA's default q,v sites are chosen (filled), the others available
    chosen = {k for k, item in window.scene.site_items.items() if item.state == "selected"}
    assert chosen == {f"layers.{i}.attn.{t}" for i in (0, 1) for t in ("q", "v")}


def test_clicking_an_insertion_point_selects_method_site_and_updates_counts(window, qtbot):
    c = window.controller
    before = c.census.trainable
    click_item(qtbot, window, window.scene.site_items["layers.0.ffn_adapter"])
    assert c.setup.method == "adapter"
    assert c.selected_site_ids() == {"layers.0.ffn_adapter"}
    adapter_params = 2 * 32 * 16 + 16 + 32
    assert c.census.trainable_of("method") == adapter_params
    assert c.census.trainable != before
    assert f"trainable {c.census.trainable:,}" in window.params_label.text()
    assert window.method_box.currentText() == "adapter"
    # a further point of the same method adds its layer; clicking again removes it
    click_item(qtbot, window, window.scene.site_items["layers.1.ffn_adapter"])
    assert c.selected_site_ids() == {"layers.0.ffn_adapter", "layers.1.ffn_adapter"}
    assert c.census.trainable_of("method") == 2 * adapter_params
    assert window.form.editors["layers"].text() == "0,1"
    click_item(qtbot, window, window.scene.site_items["layers.1.ffn_adapter"])
    assert c.selected_site_ids() == {"layers.0.ffn_adapter"}
    # undo brings back the two-adapter setup, redo the one-adapter one
    c.undo()
    assert c.selected_site_ids() == {"layers.0.ffn_adapter", "layers.1.ffn_adapter"}
    c.redo()
    assert c.selected_site_ids() == {"layers.0.ffn_adapter"}


def test_lora_clicks_add_and_remove_exactly_the_clicked_site(window, qtbot):
    c = window.controller
    start = c.selected_site_ids()  # LoRA's default: q and v in both layers
    click_item(qtbot, window, window.scene.site_items["layers.0.attn.k"])
    assert c.setup.method == "lora"
    assert c.selected_site_ids() == start | {"layers.0.attn.k"}  # that layer's k only, not layer 1's
    assert c.census.trainable_of("method") == 5 * 8 * 64
    click_item(qtbot, window, window.scene.site_items["layers.0.attn.q"])
    assert c.selected_site_ids() == (start | {"layers.0.attn.k"}) - {"layers.0.attn.q"}
    assert window.form.editors["targets"].text() == "layers.0.attn.k,layers.0.attn.v,layers.1.attn.q,layers.1.attn.v"


def test_unavailable_point_is_greyed_with_reason_and_does_nothing(window, qtbot):
    window.controller.set_base("seed-pooled")
    item = window.scene.site_items["prefix"]
    assert item.state == "unavailable"
    assert "no attention layers" in item.toolTip()
    setup = window.controller.setup
    click_item(qtbot, window, item)
    assert window.controller.setup == setup
    assert "no attention" in window.statusBar().currentMessage()


def test_shape_changes_are_visible(window):
    c = window.controller
    c.set_method("prompt-tuning", {"tokens": 4})
    input_title = next(t.text() for t in window.scene.items() if hasattr(t, "text") and callable(t.text)
                       and "input tokens" in str(t.text()))
    assert "→ L + n" in input_title
    c.set_method("prefix-tuning", {"tokens": 8})
    assert window.scene.block_items["layers.0.attn"].subtitle == "keys L → L+8"


def test_qlora_marks_the_base_linears_4bit(window):
    window.controller.set_method("qlora")
    assert window.scene.block_items["layers.0.attn.q"].quant
    assert window.scene.block_items["layers.0.ffn.up"].quant
    assert not window.scene.block_items["embeddings.word"].quant


def test_table_and_diagram_selection_are_linked(window, qtbot):
    click_item(qtbot, window, window.scene.block_items["layers.0.ffn.up"])
    selected = window.table.view.selectionModel().selectedRows()
    names = {window.table.model.rows[window.table.proxy.mapToSource(i).row()].name for i in selected}
    assert names == {"base.layers.0.ffn.up.weight", "base.layers.0.ffn.up.bias"}
    window.table.select_names([])
    head_row = next(r for r, row in enumerate(window.table.model.rows) if row.name == "head.weight")
    window.table.view.selectRow(window.table.proxy.mapFromSource(window.table.model.index(head_row, 0)).row())
    assert window.scene.block_items["head"].marked


def test_layers_collapse_and_expand(window):
    scene = window.scene
    scene.toggle_layers()
    assert "layers" in scene.block_items and "layers 0–1 (×2)" in scene.block_items["layers"].title
    assert "layers.0.attn.q" not in scene.site_items
    # collapsed, it still says which layers train and where: one line per run of equal layers
    chosen = window.controller.selected_site_ids()
    names = ", ".join(dict.fromkeys(s.name for s in window.controller.experiment.base.sites()
                                    if s.id in chosen and s.layer == 0))
    assert scene.block_items["layers"].title.split("\n")[1:] == [f"layers 0–1: {names}"]
    scene.toggle_layers()
    assert "layers.0.attn.q" in scene.site_items
    window.controller.set_option("layers", "1")
    scene.toggle_layers()
    assert scene.block_items["layers"].title.split("\n")[1:] == ["layer 0: frozen", f"layer 1: {names}"]
    scene.toggle_layers()


def test_layer_runs_stay_a_few_lines_on_a_large_model():
    from peft_studio.core.bases import create_base
    from peft_studio.gui.diagram.scene import MAX_RUN_LINES, layer_runs

    sites = [s for s in create_base("llama-3-70b").sites() if s.name in ("q_proj", "v_proj")]
    every_other = [s for s in sites if s.layer % 2 == 0]
    assert layer_runs(list(range(80)), sites) == ["layers 0–79: q_proj, v_proj"]
    lines = layer_runs(list(range(80)), every_other)
    assert len(lines) == MAX_RUN_LINES and lines[:2] == ["layer 0: q_proj, v_proj", "layer 1: frozen"]
    assert lines[-1] == f"… and {80 - MAX_RUN_LINES + 1} more runs (expand to see)"


def test_presentation_mode_uses_large_fonts(window):
    window.toggle_presentation()
    assert window.scene.st.title_font.pointSizeF() >= 18
    assert window.scene.st.small_font.pointSizeF() >= 18
    assert window.scene.st.pen >= 3
    window.toggle_presentation()
    assert window.scene.st.title_font.pointSizeF() < 18


def test_tooltips_show_formula_with_numbers_and_code(window):
    tip = window.scene.site_items["layers.0.attn.q"].toolTip()
    assert "(16/8 = 2) B A x" in tip
    assert "lora_A" in tip
    assert "512 trainable parameters" in tip
    frozen = window.scene.block_items["layers.0.attn.k"].toolTip()
    assert "frozen" in frozen and "32×32" in frozen


def test_deep_bases_collapse_their_layers_and_expand_on_click(window, qtbot):
    from peft_studio.core.model.experiment import Setup

    c = window.controller
    assert c.set_everything(Setup(base="tiny", method="lora", options={}, seed=0, base_options={"n_layers": 6}),
                            c.dataset, c.settings)
    group = window.scene.block_items["layers"]
    assert group.title.startswith("layers 0–5 (×6)")
    assert "12 trainable insertion points" in group.subtitle  # q and v in six layers
    click_item(qtbot, window, group)
    assert "layers.5.attn.q" in window.scene.site_items
