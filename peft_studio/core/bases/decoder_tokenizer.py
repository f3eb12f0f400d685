"""A decoder checkpoint's own tokenizer (tokenizer.json through the `tokenizers` library) and its special tokens.

Ids come from tokenizer.json exactly as the Rust library makes them (its normalizer, pre-tokenizer, model and
post-processor: a Llama-2-style file adds <s> itself, GPT-2 and Qwen2 add nothing). Special tokens come from
the files transformers reads: tokenizer_config.json (bos/eos/pad tokens, add_bos_token / add_eos_token),
generation_config.json (the ids generation stops at), then config.json. Padding is on the right; the pad id
only fills positions the mask leaves out.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..errors import BaseLoadError
from ..files import safe_io

TOKENIZER_FILE = "tokenizer.json"
MAX_TOKENIZER_BYTES = 64 * 2**20  # Qwen2's tokenizer.json is 7 MB
TRAIN_MAX_TOKENS = 256  # training and classification texts are cut here (or at the model's positions)


@dataclass(frozen=True)
class SpecialTokens:
    """Ids generation and batching need: where text ends (possibly several ids), what starts it, padding."""

    eos_ids: tuple[int, ...] = ()
    bos_id: int | None = None
    pad_id: int | None = None
    add_bos: bool = False  # tokenizer_config.json asks for a BOS the post-processor does not add
    add_eos: bool = False


class DecoderTokenizer:
    """Texts in, ids out (right-padded batches with a mask), ids back to text."""

    def __init__(self, tokenizer: Any, vocab_size: int, special: SpecialTokens, max_len: int, source: str) -> None:
        self._tokenizer = tokenizer  # a tokenizers.Tokenizer with padding and truncation off
        self._vocab_size = vocab_size
        self.special = special
        self.max_len = max_len
        self.source = source
        self.pad_id = special.pad_id if special.pad_id is not None else (special.eos_ids or (0,))[0]

    @property
    def vocab_size(self) -> int:
        """Rows of the model's embedding (config.json's vocab_size; a tokenizer may use fewer ids)."""
        return self._vocab_size

    @property
    def tokenizer_size(self) -> int:
        return self._tokenizer.get_vocab_size(with_added_tokens=True)

    def encode(self, text: str, limit: int | None = None) -> list[int]:
        """The ids of one text (special tokens as the tokenizer files say), cut to `limit` (default max_len)."""
        ids = list(self._tokenizer.encode(text).ids)
        if self.special.add_bos and self.special.bos_id is not None and ids[:1] != [self.special.bos_id]:
            ids.insert(0, self.special.bos_id)
        if self.special.add_eos and self.special.eos_ids and ids[-1:] != [self.special.eos_ids[0]]:
            ids.append(self.special.eos_ids[0])
        limit = self.max_len if limit is None else limit
        return ids[:limit]

    def batch(self, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """Ids [B, L] right-padded to the longest row, and the bool mask of real tokens."""
        rows = [self.encode(text) for text in texts]
        length = max([1, *(len(row) for row in rows)])
        ids = torch.full((len(rows), length), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(rows), length), dtype=torch.bool)
        for i, row in enumerate(rows):
            ids[i, :len(row)] = torch.tensor(row, dtype=torch.long)
            mask[i, :len(row)] = True
        return ids, mask

    def decode(self, ids: list[int], skip_special: bool = True) -> str:
        return self._tokenizer.decode([int(i) for i in ids], skip_special_tokens=skip_special)

    def token_text(self, token_id: int) -> str:
        """How one id reads on its own (a piece of a word, a space and a word, a special token)."""
        text = self._tokenizer.decode([int(token_id)], skip_special_tokens=False)
        return text if text else (self._tokenizer.id_to_token(int(token_id)) or f"<{token_id}>")

    def tokenize(self, text: str) -> list[str]:
        return list(self._tokenizer.encode(text).tokens)

    def __repr__(self) -> str:
        return f"DecoderTokenizer({self.source}, vocab_size={self.vocab_size}, max_len={self.max_len})"


# ---- special tokens -----------------------------------------------------------------------------------
def _token_content(value: Any) -> str | None:
    if isinstance(value, str):
        return value
    if isinstance(value, Mapping) and isinstance(value.get("content"), str):
        return value["content"]
    return None


def _ids(value: Any, key: str, where: str, vocab: int) -> tuple[int, ...]:
    values = value if isinstance(value, list) else [value]
    if value is None:
        return ()
    if not all(type(v) is int and 0 <= v < vocab for v in values):
        raise BaseLoadError(f"{where}: {key} must be token ids below vocab_size {vocab} (got {str(value)[:60]})")
    return tuple(values)


def _read_optional(folder: Path, name: str) -> dict[str, Any]:
    path = folder / name
    if not safe_io.is_regular_file(path):
        return {}
    return safe_io.read_json_object(path, f"{folder.name}/{name}", BaseLoadError)


def special_tokens(folder: Path, config: Mapping[str, Any], tokenizer: Any, vocab: int) -> SpecialTokens:
    """eos/bos/pad as transformers would use them: generation_config.json, tokenizer_config.json, config.json."""
    settings = _read_optional(folder, "tokenizer_config.json")
    generation = _read_optional(folder, "generation_config.json")
    where_gen, where_tok = f"{folder.name}/generation_config.json", f"{folder.name}/tokenizer_config.json"

    def by_token(key: str) -> int | None:
        content = _token_content(settings.get(key))
        return None if content is None else tokenizer.token_to_id(content)

    if "eos_token_id" in generation:  # what generate() stops at, when the folder says it
        eos = _ids(generation["eos_token_id"], "eos_token_id", where_gen, vocab)
    else:
        eos = _ids(config.get("eos_token_id"), "eos_token_id", f"{folder.name}/config.json", vocab)
    if not eos and by_token("eos_token") is not None:
        eos = (by_token("eos_token"),)
    bos = by_token("bos_token")
    if bos is None:
        found = _ids(generation.get("bos_token_id", config.get("bos_token_id")), "bos_token_id", where_gen, vocab)
        bos = found[0] if found else None
    pad = by_token("pad_token")
    if pad is None:
        found = _ids(generation.get("pad_token_id", config.get("pad_token_id")), "pad_token_id", where_gen, vocab)
        pad = found[0] if found else None
    for key in ("add_bos_token", "add_eos_token"):
        if key in settings and not isinstance(settings[key], bool):
            raise BaseLoadError(f"{where_tok}: {key} must be true or false (got {settings[key]!r})")
    add_bos = bool(settings.get("add_bos_token", False)) and not _post_processor_adds(tokenizer, bos)
    add_eos = bool(settings.get("add_eos_token", False)) and not _post_processor_adds(tokenizer, eos[0] if eos
                                                                                         else None, last=True)
    return SpecialTokens(eos, bos, pad, add_bos, add_eos)


def _post_processor_adds(tokenizer: Any, token_id: int | None, last: bool = False) -> bool:
    """Whether tokenizer.json's post-processor already puts this token first (or last)."""
    if token_id is None:
        return True
    ids = tokenizer.encode("a").ids
    return bool(ids) and (ids[-1] if last else ids[0]) == token_id


def load_tokenizer(folder: Path, config: Mapping[str, Any], vocab_size: int,
                   max_positions: int | None) -> DecoderTokenizer:
    """The folder's tokenizer.json with its special tokens; refused with the file named when missing or broken.
    Training texts are cut at TRAIN_MAX_TOKENS, or sooner where learned positions end (`max_positions`)."""
    from tokenizers import Tokenizer

    path = folder / TOKENIZER_FILE
    source = f"{folder.name}/{TOKENIZER_FILE}"
    if not safe_io.is_regular_file(path):
        extra = " (tokenizer.model / vocab.json alone are not read: save the tokenizer with a fast tokenizer)" \
            if any((folder / n).exists() for n in ("tokenizer.model", "vocab.json")) else ""
        raise BaseLoadError(f"{folder.name}: no {TOKENIZER_FILE}{extra}; a decoder checkpoint folder needs "
                            "config.json, model.safetensors (or its shards) and tokenizer.json")
    text = safe_io.read_text(path, MAX_TOKENIZER_BYTES, source, BaseLoadError)
    try:
        tokenizer = Tokenizer.from_str(text)
    except Exception as exc:  # noqa: BLE001 - the Rust library raises plain Exceptions
        raise BaseLoadError(f"{source}: not a tokenizers file ({str(exc)[:200]})") from None
    tokenizer.no_padding()
    tokenizer.no_truncation()
    size = tokenizer.get_vocab_size(with_added_tokens=True)
    if size > vocab_size:
        raise BaseLoadError(f"{source}: the tokenizer has {size} tokens but config.json vocab_size is {vocab_size}: "
                            "they belong to different models")
    special = special_tokens(folder, config, tokenizer, vocab_size)
    return DecoderTokenizer(tokenizer, vocab_size, special, min(TRAIN_MAX_TOKENS, max_positions or TRAIN_MAX_TOKENS),
                            source)
