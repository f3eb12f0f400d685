"""A whitespace word tokenizer with a first-occurrence vocabulary, as in the seed."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import torch

from ..errors import DatasetError


class WordTokenizer:
    """Lower-case (optional) + whitespace split; ids by first occurrence; 0 is padding.

    With ``unknown_token=True`` id 1 is ``<unk>`` and unseen words map to it; without it
    (the seed's vocabulary) unseen words are dropped.
    """

    PAD = "<pad>"
    UNK = "<unk>"
    pad_id = 0

    def __init__(self, vocab: Mapping[str, int], *, lowercase: bool = True, max_len: int = 64) -> None:
        _check_vocab(vocab)
        if not isinstance(max_len, int) or isinstance(max_len, bool) or max_len < 1:
            raise DatasetError(f"tokenizer: max_len must be a positive integer, got {max_len!r}")
        self.vocab: dict[str, int] = dict(vocab)
        self.lowercase = bool(lowercase)
        self.max_len = max_len
        self.unk_id: int | None = self.vocab.get(self.UNK)

    @classmethod
    def from_texts(
        cls, texts: Iterable[str], unknown_token: bool = True, lowercase: bool = True, max_len: int = 64
    ) -> WordTokenizer:
        """Build the vocabulary from ``texts`` in first-occurrence order (never sorted)."""
        vocab = {cls.PAD: 0}
        if unknown_token:
            vocab[cls.UNK] = 1
        for text in texts:
            for token in _split(text, lowercase):
                if token not in vocab:
                    vocab[token] = len(vocab)
        return cls(vocab, lowercase=lowercase, max_len=max_len)

    @property
    def vocab_size(self) -> int:
        return len(self.vocab)

    def tokenize(self, text: str) -> list[str]:
        """Words of ``text``: lower-cased when ``lowercase``, split on whitespace."""
        return _split(text, self.lowercase)

    def encode(self, text: str) -> list[int]:
        """Token ids, unknown words as ``unk_id`` (or dropped without one), cut to ``max_len``."""
        ids: list[int] = []
        for token in self.tokenize(text):
            token_id = self.vocab.get(token, self.unk_id)
            if token_id is not None:
                ids.append(token_id)
                if len(ids) == self.max_len:
                    break
        return ids

    def batch(self, texts: Iterable[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """Ids ``[B, L]`` right-padded with 0 to the longest row (L >= 1) and a bool mask."""
        rows = [self.encode(text) for text in texts]
        length = max([1, *(len(row) for row in rows)])
        ids = torch.full((len(rows), length), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(rows), length), dtype=torch.bool)
        for i, row in enumerate(rows):
            if row:
                ids[i, : len(row)] = torch.tensor(row, dtype=torch.long)
                mask[i, : len(row)] = True
        return ids, mask

    def decode(self, ids: Iterable[int]) -> list[str]:
        """Words for ``ids``, padding skipped (for display)."""
        words = {i: w for w, i in self.vocab.items()}
        return [words.get(int(i), self.UNK) for i in ids if int(i) != self.pad_id]

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable description; ``from_dict`` rebuilds an equal tokenizer."""
        return {
            "kind": "word",
            "vocab": dict(self.vocab),
            "lowercase": self.lowercase,
            "max_len": self.max_len,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> WordTokenizer:
        """Inverse of ``to_dict``; malformed input raises ``DatasetError``."""
        if not isinstance(d, Mapping) or not isinstance(d.get("vocab"), Mapping):
            raise DatasetError("tokenizer: expected a mapping with a 'vocab' mapping")
        return cls(d["vocab"], lowercase=bool(d.get("lowercase", True)), max_len=d.get("max_len", 64))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, WordTokenizer):
            return NotImplemented
        return self.to_dict() == other.to_dict()

    def __repr__(self) -> str:
        return (f"WordTokenizer(vocab_size={self.vocab_size}, unk={self.unk_id is not None}, "
                f"lowercase={self.lowercase}, max_len={self.max_len})")


def _split(text: str, lowercase: bool) -> list[str]:
    return (text.lower() if lowercase else text).split()


def _check_vocab(vocab: Mapping[str, int]) -> None:
    """Ids must be exactly 0..n-1, ``<pad>`` at 0, ``<unk>`` (if present) at 1."""
    if not all(isinstance(w, str) and isinstance(i, int) and not isinstance(i, bool) for w, i in vocab.items()):
        raise DatasetError("tokenizer: vocab must map words (str) to ids (int)")
    if vocab.get(WordTokenizer.PAD) != 0:
        raise DatasetError("tokenizer: vocab must have '<pad>' at id 0")
    if WordTokenizer.UNK in vocab and vocab[WordTokenizer.UNK] != 1:
        raise DatasetError("tokenizer: '<unk>' must have id 1")
    if sorted(vocab.values()) != list(range(len(vocab))):
        raise DatasetError("tokenizer: vocab ids must be exactly 0..n-1 without gaps or repeats")
