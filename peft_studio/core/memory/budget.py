"""Memory estimates before anything big is allocated: a setup and dataset that would not fit are refused
with the estimate, its largest parts and the limit — or told the largest batch that fits.

The estimate is deliberately simple and on the high side: float32 everywhere, every parameter as if
trained with Adam (weight, gradient, two moments), every activation of the forward pass kept for
the backward pass and counted twice for the backward's temporaries. It is meant to stop a run that
would take tens of GB, not to predict a few MB.

The limit is PEFT_STUDIO_MEMORY_LIMIT_MB when set, else half the machine's memory, at most 16 GB.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

from ..errors import ConfigError
from ..files.limits import check_base_options
from ..methods import get_method

FLOAT = 4
# all-MiniLM-L6-v2, so the estimate needs no file for the packaged base
MINILM_DIMS = {"vocab": 30522, "width": 384, "heads": 12, "layers": 6, "ff": 1536, "positions": 512}
PRETRAINED_TOKENS = 128


@dataclass
class Dims:
    """The sizes that decide memory: the base's, and the data's (rows, tokens per row, labels)."""

    kind: str  # "encoder" or "pooled"
    vocab: int
    width: int
    heads: int = 1
    layers: int = 0
    ff: int = 0
    positions: int = 0
    train_rows: int = 0
    val_rows: int = 0
    length: int = 1  # tokens per row after padding, soft prompt included
    labels: int = 2


@dataclass
class MemoryEstimate:
    fixed: int  # bytes that do not depend on the batch: parameters, optimizer state, encoded data
    per_example: int  # bytes each example of a training batch adds
    batch: int  # the batch this estimate is for
    parts: dict[str, int] = field(default_factory=dict)

    @property
    def total(self) -> int:
        return self.fixed + self.per_example * self.batch

    def largest_batch(self, limit: int) -> int:
        return max(0, (limit - self.fixed) // max(1, self.per_example))

    def describe(self) -> str:
        parts = sorted(self.parts.items(), key=lambda item: -item[1])[:3]
        return ", ".join(f"{name} {_size(size)}" for name, size in parts)


def _size(size: int) -> str:
    return f"{size / 2**30:.1f} GB" if size >= 2**30 else f"{size / 2**20:.0f} MB"


def memory_limit() -> int:
    """Bytes a run may take: PEFT_STUDIO_MEMORY_LIMIT_MB, else half of the machine's memory (at most 16 GB)."""
    value = os.environ.get("PEFT_STUDIO_MEMORY_LIMIT_MB", "").strip()
    if value.isdigit() and int(value) > 0:
        return int(value) * 2**20
    try:
        physical = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        physical = 8 * 2**30
    return min(physical // 2, 16 * 2**30)


def _distinct_words(texts: Any) -> tuple[int, int]:
    """(distinct lower-cased words, most words in one text), as the word tokenizer will count them."""
    words: set[str] = set()
    longest = 0
    for text in texts:
        tokens = text.lower().split()
        words.update(tokens)
        longest = max(longest, len(tokens))
    return len(words), longest


def dims_for(setup: Any, dataset: Any) -> Dims:
    """Sizes from a Setup and a TextDataset, before anything is built (a checkpoint folder's config.json
    is read through the bounded reader)."""
    options = check_base_options(setup.base, dict(setup.base_options))  # typed and in range before any sum
    prompt = _tokens(setup)
    rows = {"train_rows": len(dataset.train_texts), "val_rows": len(dataset.val_texts),
            "labels": len(dataset.label_names)}
    if setup.base in ("tiny", "seed-pooled"):
        words, longest = _distinct_words(dataset.train_texts)
        vocab = words + 2
        length = max(1, min(longest, dataset.max_len)) + prompt
        if setup.base == "seed-pooled":
            return Dims("pooled", vocab, options.get("hidden_dim", 16), length=length, **rows)
        width = options.get("d_model", 32)  # TinyBase's defaults
        return Dims("encoder", vocab, width, options.get("n_heads", 4), options.get("n_layers", 2),
                    options.get("d_ff") or 2 * width, options.get("max_positions", 128), length=length, **rows)
    sizes = dict(MINILM_DIMS)
    if setup.base != "minilm":
        sizes = _folder_dims(setup.base) or sizes
    # WordPiece makes about 1.5 pieces per word, plus [CLS] and [SEP]; texts are cut at PRETRAINED_TOKENS
    longest = _distinct_words(dataset.train_texts)[1]
    length = min(PRETRAINED_TOKENS, sizes["positions"], (3 * longest + 1) // 2 + 2) + prompt
    return Dims("encoder", length=length, **sizes, **rows)


def _folder_dims(folder: str) -> dict[str, int] | None:
    from pathlib import Path

    from ..files import safe_io

    path = Path(folder).expanduser() / "config.json"
    if not safe_io.is_regular_file(path):
        return None
    try:
        raw = safe_io.read_json_object(path, f"{Path(folder).name}/config.json", ConfigError)
    except ConfigError:
        return None  # the base loader reports a broken config.json with its own error
    keys = {"vocab": "vocab_size", "width": "hidden_size", "heads": "num_attention_heads",
            "layers": "num_hidden_layers", "ff": "intermediate_size", "positions": "max_position_embeddings"}
    values = {name: raw.get(key) for name, key in keys.items()}
    if not all(type(v) is int and v > 0 for v in values.values()):
        return None  # the base loader gives the precise error
    return values  # type: ignore[return-value]


def dims_of(experiment: Any) -> Dims:
    """Sizes of a built experiment (the tokenizer and encoded data it really has)."""
    base = experiment.base
    cfg = getattr(base, "cfg", None)
    common = {"vocab": base.tokenizer.vocab_size, "width": base.hidden_size,
              "train_rows": len(experiment.train_labels), "val_rows": len(experiment.val_labels),
              "length": int(experiment.train_ids.shape[1]) + _prompt_tokens(experiment),
              "labels": experiment.dataset.num_labels}
    if cfg is None:
        return Dims("pooled", **common)
    # encoder (EncoderConfig) and decoder (DecoderConfig) names differ; the transformer sizes are the same idea
    heads = getattr(cfg, "n_heads", None) or getattr(cfg, "num_heads", 1)
    ff = getattr(cfg, "d_ff", None) or getattr(cfg, "intermediate_size", 4 * base.hidden_size)
    return Dims("encoder", heads=heads, layers=base.num_layers, ff=ff, positions=cfg.max_positions, **common)


def _tokens(setup: Any) -> int:
    """Positions a setup's method adds to the sequence or the attention keys (its ShapeChange: a soft prompt's
    tokens, a prefix's keys); 0 when the options do not make a config (refused later, with its reason)."""
    method = get_method(setup.method)
    try:
        change = method.shape_change(method.config(dict(setup.options)))
    except ConfigError:
        return 0
    return change.input_tokens + change.key_tokens


def _prompt_tokens(experiment: Any) -> int:
    return _tokens(experiment.setup)


def estimate(dims: Dims, batch_size: int = 0) -> MemoryEstimate:
    """The estimate for training at `batch_size` (0: the whole training set in every step)."""
    d, length = dims.width, dims.length
    if dims.kind == "pooled":
        parameters = dims.vocab * d + d * d + d
        per_example_activations = 3 * length * d + 8 * d
    else:
        per_layer = 4 * d * d + 2 * d * dims.ff + 9 * d + dims.ff
        parameters = (dims.vocab + dims.positions + 2) * d + dims.layers * per_layer
        per_layer_activations = 12 * length * d + 3 * length * dims.ff + 3 * dims.heads * length * length
        per_example_activations = 4 * length * d + dims.layers * per_layer_activations
    head = d * dims.labels + dims.labels
    batch = dims.train_rows if batch_size <= 0 else min(batch_size, dims.train_rows)
    parts = {
        "parameters and optimizer state": 4 * (parameters + head) * FLOAT,
        "encoded texts": (dims.train_rows + dims.val_rows) * length * 9,  # int64 ids + bool mask
        # validation runs in one forward pass without a graph: about one layer's activations at a time
        "validation pass": dims.val_rows * (per_example_activations // max(1, dims.layers)
                                           + 3 * dims.labels) * FLOAT,
    }
    per_example = (2 * per_example_activations + 3 * dims.labels) * FLOAT
    parts["activations and logits"] = per_example * batch
    return MemoryEstimate(sum(v for k, v in parts.items() if k != "activations and logits"), per_example, batch,
                          parts)


def _check(result: MemoryEstimate, limit: int, batch_size: int, where: str) -> MemoryEstimate:
    if result.total <= limit:
        return result
    fits = result.largest_batch(limit)
    if batch_size <= 0 and fits >= 1 or 1 <= fits < batch_size:
        advice = f"choose a batch size of at most {fits}"
    else:
        advice = "use a smaller base, fewer words or labels, or shorter texts"
    full = " (the full training set)" if batch_size <= 0 else ""
    raise ConfigError(f"{where}training at batch {result.batch}{full} needs about {_size(result.total)} of memory "
                      f"({result.describe()}); the limit is {_size(limit)}: {advice} "
                      "(PEFT_STUDIO_MEMORY_LIMIT_MB sets the limit)")


def check_memory(setup: Any, dataset: Any, batch_size: int | None = None, limit: int | None = None) -> MemoryEstimate:
    """Refuse (ConfigError) a setup + dataset whose estimate exceeds the limit, before building anything.
    With batch_size None only what every run needs is checked (the model, the data, a batch of 1)."""
    limit = memory_limit() if limit is None else limit
    result = estimate(dims_for(setup, dataset), 1 if batch_size is None else batch_size)
    return _check(result, limit, 1 if batch_size is None else batch_size, "")


def check_training_memory(experiment: Any, batch_size: int, limit: int | None = None) -> MemoryEstimate:
    """The same check for a built experiment, at the batch a run is about to use."""
    limit = memory_limit() if limit is None else limit
    return _check(estimate(dims_of(experiment), batch_size), limit, batch_size, "")
