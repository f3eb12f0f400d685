"""Bad settings raise ConfigError naming the field and its allowed range."""

from __future__ import annotations

import pytest
from core_helpers import attach, build_base
from hypothesis import given
from hypothesis import strategies as st

from peft_studio.core.errors import ConfigError
from peft_studio.core.methods.config import parse_layers


@pytest.mark.parametrize("method, options, pattern", [
    ("lora", {"r": 0}, r"r must be in \[1, 4096\]"),
    ("qlora", {"r": -3}, r"r must be in \[1, 4096\]"),
    ("adapter", {"bottleneck": 0}, r"bottleneck must be in \[1, 4096\]"),
    ("prompt-tuning", {"tokens": 0}, r"tokens must be in \[1, 65536\]"),
    ("prefix-tuning", {"tokens": 0}, r"tokens must be in \[1, 65536\]"),
    ("lora", {"dropout": 1.5}, r"dropout must be in \[0, 0.99\]"),
    ("lora", {"targets": "q,bogus"}, r"targets: unknown site 'bogus'.*allowed: down, k, o, position, q, up, v, word"),
    ("ia3", {"targets": "nowhere"}, r"targets: unknown site 'nowhere'"),
    ("lora", {"layers": "0,2"}, r"layers must be in \[0, 1\] \(got 2\)"),
    ("adapter", {"layers": "-1"}, r"layers must be in \[0, 1\] \(got -1\)"),
    ("prefix-tuning", {"layers": "x"}, r"layers must be integers in \[0, 1\]"),
    ("adapter", {"placement": "sideways"}, r"placement must be one of after-attn, after-ffn, both"),
    ("adapter", {"r": 4}, r"option 'r' does not apply to this method"),
    ("head-only", {"freeze_head": True}, r"nothing to train"),
])
def test_bad_settings_name_the_field_and_range(method, options, pattern):
    base = build_base("tiny", n_layers=2)
    with pytest.raises(ConfigError, match=pattern):
        attach(base, method, options)


def test_prefix_tuning_on_the_seed_base_gives_the_reason():
    base = build_base("seed-pooled")
    with pytest.raises(ConfigError, match="no attention layers"):
        attach(base, "prefix-tuning", {})
    site = next(s for s in base.sites() if s.kind == "kv-prefix")
    assert site.unavailable["prefix-tuning"].startswith("no attention layers")


def test_hugging_face_names_select_the_same_sites():
    base = build_base("tiny", n_layers=2)
    method, config, _ = attach(base, "lora", {"targets": "query,value"})
    short = attach(build_base("tiny", n_layers=2), "lora", {"targets": "q,v"})
    assert [s.id for s in method.selected_sites(config, base)] == \
        [s.id for s in short[0].selected_sites(short[1], short[2].base)]
    # PEFT matches by suffix: "output.dense" is both the attention output and the feed-forward down projection.
    method, config, _ = attach(build_base("tiny", n_layers=1), "lora", {"targets": "output.dense"})
    assert {s.name for s in method.selected_sites(config, build_base("tiny", n_layers=1))} == {"o", "down"}


@given(st.sets(st.integers(0, 79), min_size=1))
def test_layer_ranges_read_back_as_the_same_layers(layers):
    from peft_studio.core.methods.config import layer_ranges

    text = layer_ranges(layers)
    assert parse_layers(text, 80) == sorted(layers)
    assert len(text) <= len(",".join(map(str, sorted(layers))))  # never longer than the plain list


def test_every_layer_of_a_large_model_shows_as_one_range():
    from peft_studio.core.bases import create_base
    from peft_studio.core.methods import get_method

    base = create_base("llama-3-70b")
    lora = get_method("lora")
    assert lora.effective_options(lora.config({}), base)["layers"] == "0-79"
    with pytest.raises(ConfigError, match="runs backwards"):
        parse_layers("9-2", 80)


@pytest.mark.parametrize("name", ["x" * 300, "nul\x00byte"])
def test_a_base_name_the_file_system_cannot_open_is_refused_by_name(name):
    from peft_studio.core.bases import base_class, create_base, is_architecture

    with pytest.raises(ConfigError, match="unknown base"):
        create_base(name)
    with pytest.raises(ConfigError, match="unknown base"):
        base_class(name)  # what an adapter file's metadata is checked with before any build
    assert not is_architecture(name)
