"""The built-in datasets: the seed's six sentences and three small CSV files."""

from __future__ import annotations

from dataclasses import replace
from functools import cache
from pathlib import Path

from ..errors import DatasetError
from ..files.resources import ResourceMissingError, resource_file, resource_path
from .dataset import NEXT_TOKEN, TextDataset
from .files import load_dataset_file

# The seed's Adapter example, verbatim: its texts, labels and label names.
SEED_SAMPLES: tuple[tuple[str, int], ...] = (
    ("refund my order", 0),
    ("need a refund", 0),
    ("cancel and refund", 0),
    ("login failed again", 1),
    ("cannot login account", 1),
    ("password login problem", 1),
)
SEED_LABEL_NAMES: tuple[str, ...] = ("refund", "login")

# name -> (CSV file in resources/datasets, or None for the seed; one-sentence description)
_BUILTINS: dict[str, tuple[str | None, str]] = {
    "seed-intents": (None, "The seed's six support messages (refund or login), no validation split."),
    "intents": ("intents.csv", "320 customer-support messages in 5 intents with overlapping words."),
    "word-order": ("word-order.csv", "Who acts on whom: each sentence has a same-words mirror with the other label."),
    "sentiment": ("sentiment.csv", "320 short English reviews, positive or negative, in everyday words."),
    "texts": (None, "Next-token task (decoders only): the texts of intents, word-order and sentiment, each word "
                    "predicted from the words before it."),
}
TEXT_SOURCES = ("intents", "word-order", "sentiment")  # the built-ins whose texts make `texts`


def datasets_dir() -> Path:
    """The folder holding the built-in CSV files (shipped as package data)."""
    return resource_path("datasets")


def builtin_names() -> list[str]:
    """Names accepted by ``load_builtin``, in display order."""
    return list(_BUILTINS)


def labelled_builtin_names() -> list[str]:
    """The built-ins a classifier can learn (all but the next-token texts), in display order."""
    return [name for name in _BUILTINS if name != "texts"]


def builtin_description(name: str) -> str:
    """The one-sentence description of a built-in dataset."""
    return _entry(name)[1]


def load_builtin(name: str) -> TextDataset:
    """A built-in dataset by name; an unknown name raises ``DatasetError`` listing the known ones."""
    _entry(name)
    return _load_cached(name)


def _entry(name: str) -> tuple[str | None, str]:
    if name not in _BUILTINS:
        raise DatasetError(f"unknown built-in dataset '{name}'; known: {', '.join(_BUILTINS)}")
    return _BUILTINS[name]


@cache
def _load_cached(name: str) -> TextDataset:
    file_name, description = _BUILTINS[name]
    if name == "texts":
        return _texts(description)
    if file_name is None:
        return _seed_intents(description)
    try:
        path = resource_file("datasets", file_name)
    except ResourceMissingError as exc:  # keep the dataset error type the GUI and setup files catch
        raise DatasetError(f"built-in dataset '{name}': {exc}") from None
    loaded = load_dataset_file(path, "text", "label", split_column="split")
    return replace(loaded, name=name, source="built-in", description=description, recipe=(("builtin", name),))


def _seed_intents(description: str) -> TextDataset:
    return TextDataset(
        name="seed-intents",
        label_names=SEED_LABEL_NAMES,
        train_texts=tuple(text for text, _ in SEED_SAMPLES),
        train_labels=tuple(label for _, label in SEED_SAMPLES),
        val_texts=(),
        val_labels=(),
        source="built-in",
        unknown_token=False,
        description=description,
        recipe=(("builtin", "seed-intents"),),
    )


def _texts(description: str) -> TextDataset:
    """The labelled built-ins' texts without their labels, splits kept (a text seen once), for next-token."""
    train: dict[str, None] = {}
    val: dict[str, None] = {}
    for source in TEXT_SOURCES:
        dataset = _load_cached(source)
        train.update(dict.fromkeys(t for t in dataset.train_texts if len(t.split()) > 1))
        val.update(dict.fromkeys(t for t in dataset.val_texts if len(t.split()) > 1 and t not in train))
    return TextDataset(name="texts", label_names=(), train_texts=tuple(train), train_labels=(),
                       val_texts=tuple(val), val_labels=(), source="built-in", description=description,
                       recipe=(("builtin", "texts"),), task=NEXT_TOKEN)
