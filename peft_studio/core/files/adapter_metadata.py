"""The JSON an adapter file carries (base, base options, seeds, method options, labels, tokenizer),
checked by the same validators as a setup file before anything is built from it.

The metadata of a `.safetensors` file is a map of strings; several values are JSON inside those
strings. Each is parsed with the bounded reader (size, depth: a 100,000-deep array is refused, not a
RecursionError) and typed: seeds in the range torch's generator takes, base options through
`limits.check_base_options` (types, ranges, heads dividing the width), method options through
`setup_file.check_options` (JSON types, then the method's ranges), labels as distinct non-empty
strings within the dataset limits, the vocabulary within its own bound. One validator, two file kinds.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..data.files import MAX_FIELD_CHARS, MAX_LABELS
from ..errors import AdapterFileError, PeftStudioError
from . import limits, safe_io

MAX_METADATA_CHARS = 2**20  # one value; a file's whole header is bounded by safe_io too
MAX_NAME_CHARS = 200  # an adapter's name: shown in lists and menus
MAX_TASK_CHARS = 4096  # a dataset's name (a file's stem)
MAX_VOCAB = 1_000_000  # distinct words of a toy base's vocabulary (data/files.py bounds datasets the same)
MAX_TOKEN_CHARS = 1_000
METADATA_DEPTH = 8  # the deepest value written is a list inside an object


@dataclass(frozen=True)
class AdapterMetadata:
    """What an adapter file says about itself, every field checked."""

    base: str
    method: str
    options: dict[str, Any]
    labels: tuple[str, ...]
    base_fingerprint: str
    adapter_name: str | None = None
    task: str | None = None
    seed: int = 0
    base_seed: int = 0
    base_options: dict[str, Any] | None = None
    tokenizer: dict[str, Any] | None = None  # {"vocab": {word: id}, "lowercase": bool, "max_len": int}


def _text(metadata: dict[str, str], key: str, where: str, limit: int = MAX_METADATA_CHARS) -> str | None:
    value = metadata.get(key)
    if value is None:
        return None
    if len(value) > limit:
        raise AdapterFileError(f"{where}: its {key} metadata is {len(value):,} characters long; the limit is "
                               f"{limit:,}")
    return value


def _json(metadata: dict[str, str], key: str, where: str) -> Any:
    text = _text(metadata, key, where)
    if text is None:
        return None
    return safe_io.loads_json(text, f"{where}: its {key} metadata", AdapterFileError, max_depth=METADATA_DEPTH)


def _whole(metadata: dict[str, str], key: str, where: str) -> int:
    """A seed stored as decimal text, in the range torch.manual_seed and random.Random accept."""
    text = _text(metadata, key, where, 40)
    if text is None:
        return 0
    if not text.strip().isdigit():
        raise AdapterFileError(f"{where}: its {key} metadata should be a whole number (got {text[:40]!r})")
    try:
        return limits.check_seed(int(text), key)
    except PeftStudioError as exc:
        raise AdapterFileError(f"{where}: {exc}") from None


def _name(metadata: dict[str, str], key: str, where: str) -> str | None:
    """An adapter's name, as AdapterSet.add takes it (no commas: a command line lists names with them)."""
    value = _text(metadata, key, where, MAX_NAME_CHARS)
    if value is None:
        return None
    if not value.strip() or value != value.strip() or "," in value or not value.isprintable():
        raise AdapterFileError(f"{where}: its {key} {value[:40]!r} should be a printable name without commas or "
                               "outer spaces")
    return value


def check_labels(labels: Any, where: str) -> tuple[str, ...]:
    """Label names: distinct, non-empty strings, at most MAX_LABELS of at most MAX_FIELD_CHARS each."""
    if not isinstance(labels, list) or not labels:
        raise AdapterFileError(f"{where}: its metadata has no list of label names")
    if len(labels) > MAX_LABELS:
        raise AdapterFileError(f"{where}: {len(labels):,} labels; the limit is {MAX_LABELS:,}")
    for label in labels:
        if not isinstance(label, str) or not label or len(label) > MAX_FIELD_CHARS:
            raise AdapterFileError(f"{where}: a label should be non-empty text of at most {MAX_FIELD_CHARS:,} "
                                   f"characters (got {safe_io.json_kind(label)})")
    if len(set(labels)) != len(labels):
        raise AdapterFileError(f"{where}: its label names repeat")
    return tuple(labels)


def check_tokenizer(spec: Any, where: str) -> dict[str, Any]:
    """A toy base's vocabulary as an adapter set stores it: {vocab, lowercase, max_len}, bounded."""
    from .setup_file import MAX_LEN

    if not isinstance(spec, dict) or set(spec) != {"vocab", "lowercase", "max_len"}:
        raise AdapterFileError(f"{where}: its tokenizer metadata should be an object with vocab, lowercase and "
                               "max_len")
    vocab, lowercase, max_len = spec["vocab"], spec["lowercase"], spec["max_len"]
    if not isinstance(vocab, dict) or not 1 <= len(vocab) <= MAX_VOCAB:
        raise AdapterFileError(f"{where}: its tokenizer vocabulary should map 1 to {MAX_VOCAB:,} words to ids")
    ids = set()
    for word, index in vocab.items():
        if len(word) > MAX_TOKEN_CHARS or type(index) is not int or not 0 <= index < len(vocab):
            raise AdapterFileError(f"{where}: its tokenizer vocabulary maps {word[:30]!r} to {str(index)[:20]}; ids "
                                   f"are 0..{len(vocab) - 1}, words at most {MAX_TOKEN_CHARS} characters")
        ids.add(index)
    if len(ids) != len(vocab):
        raise AdapterFileError(f"{where}: its tokenizer vocabulary gives two words the same id")
    if type(lowercase) is not bool:
        raise AdapterFileError(f"{where}: its tokenizer's lowercase should be true or false")
    try:
        limits.whole_number(max_len, "tokenizer max_len", 1, MAX_LEN)
    except PeftStudioError as exc:
        raise AdapterFileError(f"{where}: {exc}") from None
    return spec


def check_head(meta: AdapterMetadata, tensors: dict[str, Any], where: str) -> None:
    """The labels must be the head's outputs: a file whose label list was edited would predict wrong names."""
    head = tensors.get("head.weight")
    if head is not None and (head.dim() != 2 or head.shape[0] != len(meta.labels)):
        raise AdapterFileError(f"{where}: its metadata names {len(meta.labels)} labels but its head has "
                               f"{head.shape[0] if head.dim() else 0} outputs")


def parse_metadata(metadata: dict[str, str], where: str) -> AdapterMetadata:
    """Every field of an adapter file's metadata, checked as a setup file's are (AdapterFileError naming it)."""
    from .adapter_file import FORMAT
    from .setup_file import check_base_name, check_options

    if metadata.get("format") != FORMAT:
        raise AdapterFileError(f"{where}: not a PEFT Studio adapter (format {str(metadata.get('format', ''))[:40]!r})")
    try:
        base = check_base_name(_text(metadata, "base", where, 4096) or "", where, must_exist=False)
        method = _text(metadata, "method", where, 100) or ""
        options = _json(metadata, "config", where)
        if not isinstance(options, dict):
            raise AdapterFileError(f"{where}: its config metadata should be an object of method options")
        options = check_options(method, {k: v for k, v in options.items()})
        labels = check_labels(_json(metadata, "labels", where), where)
        fingerprint = _text(metadata, "base_fingerprint", where, 64) or ""
        if not fingerprint or not all(c in "0123456789abcdef" for c in fingerprint):
            raise AdapterFileError(f"{where}: its base_fingerprint metadata should be a hex digest")
        base_options = _json(metadata, "base_options", where)
        if base_options:  # a checkpoint folder's base has none (and may not exist on this machine)
            base_options = limits.check_base_options(base, base_options, "base_options")
        tokenizer = _json(metadata, "tokenizer", where)
        if tokenizer is not None:
            tokenizer = check_tokenizer(tokenizer, where)
        return AdapterMetadata(base, method, options, labels, fingerprint, _name(metadata, "adapter_name", where),
                               _text(metadata, "task", where, MAX_TASK_CHARS), _whole(metadata, "seed", where),
                               _whole(metadata, "base_seed", where), base_options, tokenizer)
    except AdapterFileError:
        raise
    except PeftStudioError as exc:  # the setup validators' ConfigError, named for this file
        message = str(exc)
        raise AdapterFileError(message if message.startswith(f"{where}: ") else f"{where}: {message}") from None
