"""Load a labelled text dataset from a CSV, TSV, JSONL or JSON file.

Rules (all errors are ``DatasetError`` messages starting with the file name):

- Files are read as bytes (at most ``MAX_FILE_BYTES``), must contain no NUL bytes and
  must be UTF-8 (a BOM is fine). CRLF line ends and quoted CSV fields are fine.
- ``.csv``/``.tsv``: a header row, then one row per example (``csv`` module, strict).
  Lines that are completely empty are skipped. ``.jsonl``: one JSON object per line
  (blank lines skipped). ``.json``: a list of objects.
- Texts and labels are stripped of surrounding whitespace. Labels may be strings or
  integers. When every label looks like an integer the label names are sorted
  numerically ("0", "1", "2", ...); otherwise they keep their order of first
  appearance in the file.
- Rows are numbered from 1, not counting the header: "row 3 (line 4)".
- Limits, the same for every format: a field (text, label) of at most ``MAX_FIELD_CHARS``
  characters, at most ``MAX_COLUMNS`` columns (keys), a JSONL line of at most ``MAX_LINE_CHARS``,
  at most ``MAX_LABELS`` distinct labels, and ``max_rows`` rows — a ``.json`` list is decoded
  item by item, so the row limit stops it before the whole file is parsed. JSON values follow
  ``safe_io``'s rules (no NaN/Infinity, no duplicate keys, no 100-digit integers).
- Without ``split_column`` the validation split is drawn per class with
  ``random.Random(seed)`` (about ``val_fraction`` of each class; a class with a single
  example stays in train). With ``split_column`` its values decide: ``train``/``training``
  or ``validation``/``val``/``valid``/``dev``/``test``; ``val_fraction`` is then ignored.
"""

from __future__ import annotations

import csv
import io
import json
import os
import random
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from ..errors import DatasetError
from ..files import safe_io
from .dataset import CLASSIFY, NEXT_TOKEN, TASKS, TextDataset

SUPPORTED_SUFFIXES = (".csv", ".tsv", ".jsonl", ".json")
TEXT_SUFFIXES = (".txt",)  # next-token only: one text per non-empty line
MAX_FILE_BYTES = 200 * 1024 * 1024
TRAIN_SPLITS = frozenset({"train", "training"})
VAL_SPLITS = frozenset({"validation", "val", "valid", "dev", "test"})
_INT = re.compile(r"[+-]?[0-9]+")
_JSON_SCAN_LIMIT = 50_000
MAX_FIELD_CHARS = 131_072  # the csv module's default field limit, applied to JSON and JSONL too
MAX_COLUMNS = 10_000
MAX_LINE_CHARS = 8 * MAX_FIELD_CHARS
MAX_LABELS = 10_000
_DECODER = safe_io.json_decoder()
PREVIEW_BYTES = 2 * 2**20  # a preview reads the file's start only, so it stays instant on the GUI thread

T = TypeVar("T")
PathLike = str | os.PathLike[str]


@dataclass(frozen=True)
class _Row:
    where: str  # "row 3 (line 4)", used in messages
    values: dict[str, Any]


# ---------------------------------------------------------------- public API


def load_dataset_file(
    path: PathLike,
    text_column: str,
    label_column: str,
    *,
    val_fraction: float = 0.2,
    seed: int = 0,
    max_rows: int = 50_000,
    max_len: int = 64,
    split_column: str | None = None,
    task: str = CLASSIFY,
) -> TextDataset:
    """Read ``path`` into a ``TextDataset`` (see the module docstring for the rules).

    With ``task="next-token"`` the texts are their own targets: ``label_column`` is not read, a ``.txt`` file
    gives one text per non-empty line, and the validation rows are drawn at random (``val_fraction``)."""
    path = Path(path)
    if task not in TASKS:
        raise DatasetError(f"{path.name}: unknown task {task!r} (choose from {', '.join(TASKS)})")
    if task == NEXT_TOKEN:
        return _guard(path, lambda: _load_texts(path, text_column, split_column, val_fraction, seed, max_rows,
                                                max_len))
    return _guard(path, lambda: _load(path, text_column, label_column, split_column,
                                      val_fraction, seed, max_rows, max_len))


def preview_file(path: PathLike, n: int = 20) -> tuple[list[str], list[list[str]]]:
    """Column names and the first ``n`` rows as strings (ragged CSV rows are padded)."""
    path = Path(path)
    return _guard(path, lambda: _preview(path, max(0, n)))


def sniff_columns(path: PathLike) -> list[str]:
    """The column names of ``path``: the CSV header, or the keys of the JSON objects."""
    path = Path(path)
    return _guard(path, lambda: _columns(path))


# ---------------------------------------------------------------- reading


def _guard(path: Path, action: Callable[[], T]) -> T:
    """Run ``action``; turn any stray I/O or parsing error into a ``DatasetError``."""
    try:
        return action()
    except DatasetError:
        raise
    except MemoryError as exc:
        raise DatasetError(f"{path.name}: too large to load into memory") from exc
    except RecursionError as exc:
        raise DatasetError(f"{path.name}: nested too deeply to read") from exc
    except (OSError, UnicodeError, ValueError, csv.Error) as exc:
        detail = " ".join(str(exc).split()) or type(exc).__name__
        raise DatasetError(f"{path.name}: cannot read the file: {detail}") from exc


def _fail(path: Path, message: str) -> DatasetError:
    return DatasetError(f"{path.name}: {message}")


def _read_text(path: Path, head: int | None = None) -> str:
    """The file's text, after the existence, type, size, binary and UTF-8 checks; with `head`, only about
    its first `head` bytes (cut after the last whole line)."""
    if not os.path.lexists(path):
        raise _fail(path, f"file not found ({path}); check the path")
    if os.path.isdir(path):
        raise _fail(path, "is a folder, not a file; choose a .csv, .tsv, .jsonl or .json file")
    safe_io.check_regular_file(path, path.name, DatasetError)
    if path.suffix.lower() not in (*SUPPORTED_SUFFIXES, *TEXT_SUFFIXES):
        kind = f"'{path.suffix}'" if path.suffix else "without an extension"
        raise _fail(path, f"unsupported file type {kind}; supported: {', '.join(SUPPORTED_SUFFIXES)} (and .txt for "
                          "next-token texts)")
    if head is None:
        data = safe_io.read_bytes(path, MAX_FILE_BYTES, path.name, DatasetError)
    else:
        data, more = safe_io.read_head(path, head, path.name, DatasetError)
        if more:  # cut after the last newline, else before a split UTF-8 character
            cut = data.rfind(b"\n")
            data = data[:cut + 1] if cut > 0 else _whole_characters(data)
    nul = data.find(b"\x00")
    if nul >= 0:
        raise _fail(path, f"contains NUL bytes (first at byte offset {nul}): it is binary "
                          "or UTF-16, not UTF-8 text; save it as UTF-8 text")
    text = _decode(path, data)
    if not text.strip():
        raise _fail(path, "is empty")
    return text


def _whole_characters(data: bytes) -> bytes:
    """`data` without a UTF-8 character cut in two at its end."""
    for cut in range(1, 4):
        if len(data) >= cut and data[-cut] >= 0xC0:  # a lead byte: is its character complete?
            need = 2 if data[-cut] < 0xE0 else 3 if data[-cut] < 0xF0 else 4
            return data if cut >= need else data[:-cut]
        if len(data) < cut or data[-cut] < 0x80:
            return data
    return data


def _decode(path: Path, data: bytes) -> str:
    return safe_io.decode_utf8(data, path.name, DatasetError)


def _records(path: Path, text: str, lenient: bool = False) -> tuple[list[str] | None, Iterator[_Row]]:
    """Header (CSV/TSV only, else None) and a lazy iterator over the data rows."""
    suffix = path.suffix.lower()
    if suffix in (".csv", ".tsv"):
        return _csv_records(path, text, "," if suffix == ".csv" else "\t", lenient)
    if suffix == ".jsonl":
        return None, _jsonl_records(path, text)
    if suffix in TEXT_SUFFIXES:  # one text per non-empty line, shown as a "text" column
        return ["text"], (_Row(f"line {number}", {"text": line.strip()})
                          for number, line in enumerate(text.splitlines(), start=1) if line.strip())
    return None, _json_records(path, text)


def _csv_records(path: Path, text: str, delimiter: str, lenient: bool) -> tuple[list[str], Iterator[_Row]]:
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, strict=True)
    header = _csv_header(path, reader)
    return header, _csv_rows(path, reader, header, lenient)


def _csv_step(path: Path, reader: Any) -> list[str] | None:
    """The next record, or None at the end; csv errors name the line."""
    start = reader.line_num + 1
    try:
        return next(reader)
    except StopIteration:
        return None
    except csv.Error as exc:
        if "field limit" in str(exc):
            raise _fail(path, f"line {reader.line_num}: {_too_long()}") from exc
        if "end of data" in str(exc):
            raise _fail(path, f"line {start}: a quoted field is never closed (unexpected end of data); "
                              "check the double quotes") from exc
        raise _fail(path, f"line {reader.line_num}: {exc}") from exc


def _csv_header(path: Path, reader: Any) -> list[str]:
    while (row := _csv_step(path, reader)) is not None:
        if any(cell.strip() for cell in row):
            header = [cell.strip() for cell in row]
            _check_column_count(path, len(header))
            seen: set[str] = set()
            for name in header:  # a set, not header.count(): linear in the number of columns
                if name in seen:
                    raise _fail(path, f"line {reader.line_num}: column '{_short(name)}' appears twice in the header")
                seen.add(name)
            return header
    raise _fail(path, "is empty")


def _csv_rows(path: Path, reader: Any, header: list[str], lenient: bool) -> Iterator[_Row]:
    count = 0
    sep = "commas" if reader.dialect.delimiter == "," else "tabs"
    while True:
        start = reader.line_num + 1
        row = _csv_step(path, reader)
        if row is None:
            return
        if not any(cell.strip() for cell in row):
            continue
        count += 1
        where = f"row {count} (line {start})"
        if len(row) != len(header):
            if not lenient:
                raise _fail(path, f"{where} has {len(row)} fields, the header has {len(header)}; "
                                  f"put text that contains {sep} in double quotes")
            row = (row + [""] * len(header))[: len(header)]
        yield _Row(where, dict(zip(header, row, strict=True)))


def _too_long() -> str:
    return f"a field is longer than {MAX_FIELD_CHARS} characters (the limit for every format)"


def _check_column_count(path: Path, count: int, where: str = "the header") -> None:
    if count > MAX_COLUMNS:
        raise _fail(path, f"{where} has {count} columns; the limit is {MAX_COLUMNS}")


def _jsonl_records(path: Path, text: str) -> Iterator[_Row]:
    count = 0
    for lineno, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        if len(line) > MAX_LINE_CHARS:
            raise _fail(path, f"line {lineno} has {len(line)} characters; the limit is {MAX_LINE_CHARS}")
        try:
            value = _DECODER.decode(line)
        except json.JSONDecodeError as exc:
            raise _fail(path, f"line {lineno}: malformed JSON: {exc.msg} (column {exc.colno})") from exc
        except (ValueError, RecursionError) as exc:
            raise _fail(path, f"line {lineno}: {safe_io.json_failure(exc)}") from exc
        if not isinstance(value, dict):
            raise _fail(path, f"line {lineno}: expected a JSON object such as "
                              f'{{"text": "...", "label": "..."}}, got {_json_kind(value)}')
        count += 1
        _check_column_count(path, len(value), f"line {lineno}")
        yield _Row(f"row {count} (line {lineno})", value)


_SPACE = re.compile(r"[ \t\n\r]*")


def _json_records(path: Path, text: str) -> Iterator[_Row]:
    """The items of a top-level list, decoded one at a time (the row limit stops before the end)."""
    text = text.removeprefix("\ufeff")
    pos = _SPACE.match(text).end()
    if not text.startswith("[", pos):
        value = _json_value(path, text, pos)[0]
        keys = f" (its keys: {', '.join(map(str, list(value)[:8]))})" if isinstance(value, dict) else ""
        raise _fail(path, f"expected a list of objects, got {_json_kind(value)}{keys}; "
                          "use [{\"text\": ..., \"label\": ...}, ...]")
    pos = _SPACE.match(text, pos + 1).end()
    i = 0
    while not text.startswith("]", pos):
        if i:
            if not text.startswith(",", pos):
                raise _fail(path, f"malformed JSON after row {i}: expected ',' or ']' at {_line_col(text, pos)}")
            pos = _SPACE.match(text, pos + 1).end()
        item, pos = _json_value(path, text, pos)
        i += 1
        if not isinstance(item, dict):
            raise _fail(path, f"row {i}: expected an object, got {_json_kind(item)}")
        _check_column_count(path, len(item), f"row {i}")
        yield _Row(f"row {i}", item)
        pos = _SPACE.match(text, pos).end()
    if text[_SPACE.match(text, pos + 1).end():]:
        raise _fail(path, f"malformed JSON: extra data after the list at {_line_col(text, pos + 1)}")


def _json_value(path: Path, text: str, pos: int) -> tuple[Any, int]:
    try:
        return _DECODER.raw_decode(text, pos)
    except json.JSONDecodeError as exc:
        raise _fail(path, f"malformed JSON at line {exc.lineno} column {exc.colno}: {exc.msg}") from exc
    except (ValueError, RecursionError) as exc:
        raise _fail(path, f"{safe_io.json_failure(exc)} (at {_line_col(text, pos)})") from exc


def _line_col(text: str, pos: int) -> str:
    line = text.count("\n", 0, pos) + 1
    return f"line {line} column {pos - text.rfind(chr(10), 0, pos)}"


_json_kind = safe_io.json_kind


def _collect(path: Path, rows: Iterator[_Row], max_rows: int) -> list[_Row]:
    collected: list[_Row] = []
    for row in rows:
        if len(collected) == max_rows:
            raise _fail(path, f"has more than {max_rows} rows; the limit is {max_rows}")
        collected.append(row)
    if not collected:
        raise _fail(path, "has no data rows (only a header or an empty list)")
    return collected


def _only(rows: Iterator[_Row], keep: tuple[str | None, ...], seen: dict[str, None]) -> Iterator[_Row]:
    """Each row cut to the columns in use, so memory follows the rows kept, not the file's width;
    `seen` collects the column names met (at most MAX_COLUMNS of them) for messages."""
    for row in rows:
        if len(seen) < MAX_COLUMNS:
            seen.update(dict.fromkeys(row.values))
        yield _Row(row.where, {key: row.values[key] for key in keep if key is not None and key in row.values})


def _keys(rows: list[_Row]) -> list[str]:
    return list(dict.fromkeys(key for row in rows for key in row.values))


def _columns(path: Path) -> list[str]:
    header, rows = _records(path, _read_text(path), lenient=True)
    if header is not None:
        return header
    return _keys(_collect(path, rows, _JSON_SCAN_LIMIT))


def _preview(path: Path, n: int) -> tuple[list[str], list[list[str]]]:
    header, rows = _records(path, _read_text(path, PREVIEW_BYTES), lenient=True)
    shown: list[_Row] = []
    try:
        for row in rows:
            if len(shown) >= max(n, 1):
                break
            shown.append(row)
    except DatasetError:
        if not shown or safe_io.check_regular_file(path, path.name, DatasetError) <= PREVIEW_BYTES:
            raise  # a real error, not the cut at the end of the preview bytes
    if not shown:
        raise _fail(path, "has no data rows (only a header or an empty list)")
    columns = header if header is not None else _keys(shown)
    table = [[_cell(row.values.get(c)) for c in columns] for row in shown[:n]]
    return columns, table


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (dict, list)):
        return json.dumps(value, ensure_ascii=False)
    return str(value)


# ---------------------------------------------------------------- building


def _separator_hint(path: Path, columns: list[str]) -> str:
    """A one-column header that contains another separator usually means the wrong file type."""
    if len(columns) != 1:
        return ""
    for separator, name, suffix in (("\t", "tabs", ".tsv"), (";", "semicolons", None), ("|", "bars", None)):
        if separator in columns[0]:
            fix = f"rename it to {path.stem}{suffix}" if suffix else "save it with commas as the separator"
            return f" (the header looks separated by {name}: {fix})"
    return ""


def _load(path: Path, text_column: str, label_column: str, split_column: str | None,
          val_fraction: float, seed: int, max_rows: int, max_len: int) -> TextDataset:
    _check_arguments(path, text_column, label_column, split_column, val_fraction, max_rows)
    header, row_iter = _records(path, _read_text(path))
    seen_keys: dict[str, None] = {}
    rows = _collect(path, _only(row_iter, (text_column, label_column, split_column), seen_keys), max_rows)
    columns = header if header is not None else list(seen_keys)
    for column in (text_column, label_column, split_column):
        if column is not None and column not in columns:
            raise _fail(path, f"no column '{column}'; the columns are: {', '.join(columns)}"
                              f"{_separator_hint(path, columns)}")
    texts = [_text_value(path, row, text_column) for row in rows]
    raw_labels = [_label_value(path, row, label_column) for row in rows]
    names = _label_names(raw_labels)
    if len(names) > MAX_LABELS:
        raise _fail(path, f"column '{label_column}' has {len(names)} distinct labels; the limit is {MAX_LABELS} "
                          "(is it the text column?)")
    if len(names) < 2:
        raise _fail(path, f"only one class ('{_short(names[0])}') in column '{label_column}'; "
                          "a classifier needs at least 2")
    index = {name: i for i, name in enumerate(names)}
    labels = [index[name] for name in raw_labels]
    if split_column is None:
        train, val = _random_split(labels, val_fraction, seed)
    else:
        train, val = _column_split(path, rows, split_column)
        _check_val_labels(path, rows, raw_labels, train, val)
    return TextDataset(
        name=path.name,
        label_names=tuple(names),
        train_texts=tuple(texts[i] for i in train),
        train_labels=tuple(labels[i] for i in train),
        val_texts=tuple(texts[i] for i in val),
        val_labels=tuple(labels[i] for i in val),
        source=str(path),
        unknown_token=True,
        description=f"Loaded from {path.name}: column '{text_column}' labelled by '{label_column}'.",
        max_len=max_len,
        recipe=(("path", str(path.resolve())), ("text_column", text_column), ("label_column", label_column),
                ("split_column", split_column), ("val_fraction", val_fraction), ("seed", seed),
                ("max_rows", max_rows), ("max_len", max_len)),
    )


def _load_texts(path: Path, text_column: str, split_column: str | None, val_fraction: float, seed: int,
                max_rows: int, max_len: int) -> TextDataset:
    """A next-token dataset: texts only (a .txt file's lines, or one column of a table / JSON file)."""
    _check_arguments(path, text_column, None, split_column, val_fraction, max_rows)
    text = _read_text(path)
    if path.suffix.lower() in TEXT_SUFFIXES:
        lines = [(number, line.strip()) for number, line in enumerate(text.splitlines(), start=1) if line.strip()]
        if len(lines) > max_rows:
            raise _fail(path, f"has more than {max_rows} non-empty lines (the row limit)")
        for number, line in lines:
            if len(line) > MAX_FIELD_CHARS:
                raise _fail(path, f"line {number} has {len(line)} characters; the limit is {MAX_FIELD_CHARS}")
        texts = [line for _, line in lines]
        rows = None
    else:
        header, row_iter = _records(path, text)
        seen_keys: dict[str, None] = {}
        rows = _collect(path, _only(row_iter, (text_column, split_column), seen_keys), max_rows)
        columns = header if header is not None else list(seen_keys)
        for column in (text_column, split_column):
            if column is not None and column not in columns:
                raise _fail(path, f"no column '{column}'; the columns are: {', '.join(columns)}"
                                  f"{_separator_hint(path, columns)}")
        texts = [_text_value(path, row, text_column) for row in rows]
    if split_column is not None and rows is not None:
        train, val = _column_split(path, rows, split_column)
    else:
        train, val = _random_split([0] * len(texts), val_fraction, seed)
    return TextDataset(
        name=path.name, label_names=(), train_texts=tuple(texts[i] for i in train), train_labels=(),
        val_texts=tuple(texts[i] for i in val), val_labels=(), source=str(path), unknown_token=True,
        description=f"Loaded from {path.name}: next-token texts" + ("" if rows is None else f" (column "
                                                                     f"'{text_column}')") + ".",
        max_len=max_len, task=NEXT_TOKEN,
        recipe=(("path", str(path.resolve())), ("text_column", text_column), ("split_column", split_column),
                ("val_fraction", val_fraction), ("seed", seed),
                ("max_rows", max_rows), ("max_len", max_len), ("task", NEXT_TOKEN)))


def _check_arguments(path: Path, text_column: str, label_column: str | None, split_column: str | None,
                     val_fraction: float, max_rows: int) -> None:
    if text_column == label_column:
        raise _fail(path, f"the text and label columns are both '{text_column}'; choose two different columns")
    if path.suffix.lower() in TEXT_SUFFIXES and label_column is not None:
        raise _fail(path, f"a .txt file holds texts without labels (a next-token dataset: task next-token); a "
                          f"labelled dataset is one of {', '.join(SUPPORTED_SUFFIXES)}")
    if split_column is not None and split_column in (text_column, label_column):
        raise _fail(path, f"the split column '{split_column}' must differ from the text and label columns")
    if not 0.0 <= val_fraction < 1.0:
        raise _fail(path, f"validation fraction {val_fraction} must be at least 0 and below 1")
    if max_rows < 1:
        raise _fail(path, f"max_rows must be at least 1, got {max_rows}")


def _short(value: str, limit: int = 40) -> str:
    flat = " ".join(value.split())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


def _text_value(path: Path, row: _Row, column: str) -> str:
    if column not in row.values:
        raise _fail(path, f"{row.where}: missing text (no '{column}' field)")
    value = row.values[column]
    if isinstance(value, (dict, list)):
        raise _fail(path, f"{row.where}: column '{column}' holds {_json_kind(value)}, not text")
    text = _cell(value).strip()
    if len(text) > MAX_FIELD_CHARS:
        raise _fail(path, f"{row.where}: column '{column}': {_too_long()}")
    if not text:
        raise _fail(path, f"{row.where}: blank text in column '{column}'; fill it in or delete the row")
    return text


def _label_value(path: Path, row: _Row, column: str) -> str:
    if column not in row.values or row.values[column] is None:
        raise _fail(path, f"{row.where}: missing label (no value in column '{column}')")
    value = row.values[column]
    if isinstance(value, (dict, list)):
        raise _fail(path, f"{row.where}: label in column '{column}' is {_json_kind(value)}; "
                          "use a string or an integer")
    if isinstance(value, float):
        if not value.is_integer():
            raise _fail(path, f"{row.where}: label {value} in column '{column}' is not a whole number; "
                              "use a string or an integer")
        value = int(value)
    label = _cell(value).strip()
    if len(label) > MAX_FIELD_CHARS:
        raise _fail(path, f"{row.where}: column '{column}': {_too_long()}")
    if not label:
        raise _fail(path, f"{row.where}: blank label in column '{column}'; fill it in or delete the row")
    return label


def _label_names(labels: list[str]) -> list[str]:
    """Distinct labels: numeric order when all are integers, else first appearance."""
    names = list(dict.fromkeys(labels))
    if all(_INT.fullmatch(name) for name in names):
        names.sort(key=lambda name: (int(name), name))
    return names


def _val_count(n: int, val_fraction: float) -> int:
    if val_fraction <= 0 or n < 2:
        return 0
    return min(max(round(n * val_fraction), 1), n - 1)


def _random_split(labels: list[int], val_fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """Row indices (train, validation), stratified per class, each in file order."""
    rng = random.Random(seed)
    by_label: dict[int, list[int]] = {}
    for i, label in enumerate(labels):
        by_label.setdefault(label, []).append(i)
    chosen: set[int] = set()
    for label in sorted(by_label):
        indices = by_label[label]
        rng.shuffle(indices)
        chosen.update(indices[: _val_count(len(indices), val_fraction)])
    train = [i for i in range(len(labels)) if i not in chosen]
    return train, sorted(chosen)


def _column_split(path: Path, rows: list[_Row], column: str) -> tuple[list[int], list[int]]:
    train: list[int] = []
    val: list[int] = []
    for i, row in enumerate(rows):
        value = _cell(row.values.get(column)).strip().lower()
        if value in TRAIN_SPLITS:
            train.append(i)
        elif value in VAL_SPLITS:
            val.append(i)
        else:
            shown = f"unknown split '{_short(value)}'" if value else "blank split"
            raise _fail(path, f"{row.where}: {shown} in column '{column}'; "
                              "use train or validation (also val, valid, dev, test)")
    if not train:
        raise _fail(path, f"no rows have split 'train' in column '{column}'")
    return train, val


def _check_val_labels(path: Path, rows: list[_Row], labels: list[str], train: list[int], val: list[int]) -> None:
    seen = {labels[i] for i in train}
    for i in val:
        if labels[i] not in seen:
            raise _fail(path, f"label '{_short(labels[i])}' appears in validation ({rows[i].where}) "
                              "but never in training; move some of its rows to train")
