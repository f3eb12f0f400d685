"""Decoders in the window: the diagram draws them from their description; a meta-device base offers no Play."""

from __future__ import annotations

import time


def _labels(scene) -> dict[str, str]:
    """Each drawn block's title, without the line breaks the scene wraps it with (spaces dropped too)."""
    return {key: "".join(item.title.split()) for key, item in scene.block_items.items()}


def _text(text: str) -> str:
    return "".join(text.split())


def test_tiny_decoder_is_drawn_and_trainable(window, errors):
    c = window.controller
    assert c.set_base("tiny-decoder"), errors
    base = c.experiment.base
    assert set(window.scene.site_items) == {s.id for s in base.sites()}
    assert window.act_play.isEnabled() and window.act_step.isEnabled()
    labels = _labels(window.scene)
    # grouped-query attention: fewer K/V heads than query heads, in the block labels
    assert _text("4 Q heads, 2 K/V heads") in labels["model.layers.0.self_attn"]
    assert _text("(2 K/V heads)") in labels["model.layers.0.self_attn.k_proj"]
    assert _text("(4 heads)") in labels["model.layers.0.self_attn.q_proj"]
    # tied embeddings: one tensor, one block, no separate LM head
    assert "tied" in labels["model.embed_tokens"] and "lm_head" not in window.scene.block_items


def test_meta_base_is_inspected_not_played(window, errors):
    c = window.controller
    started = time.perf_counter()
    assert c.set_base("llama-3-70b"), errors
    assert c.building and not window.act_play.isEnabled()  # built off the GUI thread; no Play meanwhile
    assert c.wait_for_builds()
    assert time.perf_counter() - started < 60  # generous: the benchmark is the place for speed
    assert c.experiment.base.on_meta_device
    assert not window.act_play.isEnabled() and not window.act_step.isEnabled()
    assert "meta device" in window.act_play.toolTip()
    assert "meta device" in window.statusBar().currentMessage()
    assert c.census.total > 70_000_000_000
    assert c.set_base("tiny-decoder"), errors  # back to a runnable base: Play returns
    assert window.act_play.isEnabled()
