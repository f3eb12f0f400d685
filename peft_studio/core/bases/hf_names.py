"""Hugging Face BERT module names <-> the project's encoder names, in both directions.

One table serves the checkpoint loader (state-dict names) and the PEFT export/import (module
names in adapter keys), so the two can never disagree.

    embeddings.word_embeddings            <-> embeddings.word
    encoder.layer.3.attention.self.query  <-> layers.3.attn.q
    encoder.layer.3.output.dense          <-> layers.3.ffn.down
    pooler.dense                          <-> pooler.dense
"""

from __future__ import annotations

import re

EMBEDDINGS = {  # studio name inside `embeddings.` -> Hugging Face name inside `embeddings.`
    "word": "word_embeddings",
    "position": "position_embeddings",
    "token_type": "token_type_embeddings",
    "norm": "LayerNorm",
}

LAYER = {  # studio name inside `layers.N.` -> Hugging Face name inside `encoder.layer.N.`
    "attn.q": "attention.self.query",
    "attn.k": "attention.self.key",
    "attn.v": "attention.self.value",
    "attn.o": "attention.output.dense",
    "attn_norm": "attention.output.LayerNorm",
    "ffn.up": "intermediate.dense",
    "ffn.down": "output.dense",
    "ffn_norm": "output.LayerNorm",
}

TOP = {"pooler.dense": "pooler.dense"}  # BERT's pooler (BertForSequenceClassification classifies its output)

_EMBEDDINGS_BACK = {hf: studio for studio, hf in EMBEDDINGS.items()}
_LAYER_BACK = {hf: studio for studio, hf in LAYER.items()}
_STUDIO_LAYER = re.compile(r"layers\.(\d+)\.(.+)")
_HF_LAYER = re.compile(r"encoder\.layer\.(\d+)\.(.+)")


def hf_module(studio_path: str) -> str | None:
    """'layers.0.attn.q' -> 'encoder.layer.0.attention.self.query'; None when BERT has no such module."""
    if studio_path in TOP:
        return TOP[studio_path]
    if studio_path.startswith("embeddings."):
        hf = EMBEDDINGS.get(studio_path.removeprefix("embeddings."))
        return None if hf is None else f"embeddings.{hf}"
    match = _STUDIO_LAYER.fullmatch(studio_path)
    if match and match.group(2) in LAYER:
        return f"encoder.layer.{match.group(1)}.{LAYER[match.group(2)]}"
    return None


def studio_module(hf_path: str) -> str | None:
    """'encoder.layer.0.attention.self.query' -> 'layers.0.attn.q'; None when the encoder has no such module."""
    if hf_path in TOP.values():
        return next(studio for studio, hf in TOP.items() if hf == hf_path)
    if hf_path.startswith("embeddings."):
        studio = _EMBEDDINGS_BACK.get(hf_path.removeprefix("embeddings."))
        return None if studio is None else f"embeddings.{studio}"
    match = _HF_LAYER.fullmatch(hf_path)
    if match and match.group(2) in _LAYER_BACK:
        return f"layers.{match.group(1)}.{_LAYER_BACK[match.group(2)]}"
    return None


def hf_parameter(studio_name: str) -> str | None:
    """'layers.0.attn.q.weight' -> 'encoder.layer.0.attention.self.query.weight'."""
    module, _, leaf = studio_name.rpartition(".")
    hf = hf_module(module)
    return None if hf is None else f"{hf}.{leaf}"


def studio_parameter(hf_name: str) -> str | None:
    """'encoder.layer.0.output.LayerNorm.gamma' -> 'layers.0.ffn_norm.weight' (old gamma/beta names too)."""
    module, _, leaf = hf_name.rpartition(".")
    leaf = {"gamma": "weight", "beta": "bias"}.get(leaf, leaf)
    studio = studio_module(module)
    return None if studio is None or leaf not in ("weight", "bias") else f"{studio}.{leaf}"
