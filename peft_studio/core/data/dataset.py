"""An immutable labelled text dataset with a train and an optional validation split."""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import DatasetError
from .tokenizer import WordTokenizer

CLASSIFY, NEXT_TOKEN = "classify", "next-token"
TASKS = (CLASSIFY, NEXT_TOKEN)


@dataclass(frozen=True)
class TextDataset:
    """Texts with integer labels indexing ``label_names``; validation may be empty.

    ``task`` says what is learned from the texts: ``classify`` (the labels) or ``next-token`` (each word from
    the words before it; no labels: the texts are their own targets, see core/model/next_token.py)."""

    name: str
    label_names: tuple[str, ...]
    train_texts: tuple[str, ...]
    train_labels: tuple[int, ...]
    val_texts: tuple[str, ...]
    val_labels: tuple[int, ...]
    source: str
    unknown_token: bool = True
    description: str = ""
    max_len: int = 64
    # How to load it again (a setup file stores this): (("builtin", name),) or the file loader's
    # arguments as (key, value) pairs; empty for a dataset built in code.
    recipe: tuple[tuple[str, object], ...] = ()
    task: str = CLASSIFY

    def __post_init__(self) -> None:
        for field in ("label_names", "train_texts", "train_labels", "val_texts", "val_labels"):
            object.__setattr__(self, field, tuple(getattr(self, field)))
        self._check()

    def _check(self) -> None:
        where = self.name or "dataset"
        if self.task not in TASKS:
            raise DatasetError(f"{where}: unknown task {self.task!r} (choose from {', '.join(TASKS)})")
        if self.task == NEXT_TOKEN and (self.label_names or self.train_labels or self.val_labels):
            raise DatasetError(f"{where}: a next-token dataset has no labels (the texts are their own targets)")
        if self.task == NEXT_TOKEN and not self.train_texts:
            raise DatasetError(f"{where}: no training examples")
        if self.task == NEXT_TOKEN:
            return
        if len(self.train_texts) != len(self.train_labels):
            raise DatasetError(f"{where}: {len(self.train_texts)} train texts but {len(self.train_labels)} labels")
        if len(self.val_texts) != len(self.val_labels):
            raise DatasetError(f"{where}: {len(self.val_texts)} validation texts but {len(self.val_labels)} labels")
        if len(set(self.label_names)) != len(self.label_names):
            raise DatasetError(f"{where}: label names repeat: {list(self.label_names)}")
        if not self.train_texts:
            raise DatasetError(f"{where}: no training examples")
        bad = [y for y in (*self.train_labels, *self.val_labels) if not 0 <= y < len(self.label_names)]
        if bad:
            raise DatasetError(f"{where}: label id {bad[0]} outside 0..{len(self.label_names) - 1}")

    @property
    def num_labels(self) -> int:
        return len(self.label_names)

    def make_tokenizer(self, max_len: int | None = None) -> WordTokenizer:
        """A word tokenizer over the training texts only (first-occurrence order).

        ``max_len`` defaults to the dataset's ``max_len`` (64 unless the loader set it).
        """
        return WordTokenizer.from_texts(
            self.train_texts, unknown_token=self.unknown_token, max_len=self.max_len if max_len is None else max_len
        )

    def summary(self) -> str:
        """One line such as ``intents: 5 classes, 240 train / 60 validation``."""
        if self.task == NEXT_TOKEN:
            return f"{self.name}: next-token texts, {len(self.train_texts)} train / {len(self.val_texts)} validation"
        return (f"{self.name}: {self.num_labels} classes, "
                f"{len(self.train_texts)} train / {len(self.val_texts)} validation")
