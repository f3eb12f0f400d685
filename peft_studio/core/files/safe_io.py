"""The one way the core reads and writes a user's files: bounded, typed errors, nothing executed.

- `read_bytes`: a regular file only (a FIFO, device, folder or a symlink to one is refused from
  `os.stat` before opening; the open is O_NONBLOCK and re-checked with `fstat`, so a file swapped
  for a FIFO in between cannot block), size checked before reading, never more than limit+1 bytes.
- `loads_json` / `read_json`: size, nesting depth (counted without recursion), integer digits,
  finite numbers only (NaN/Infinity and 1e999 refused), duplicate keys refused.
- `write_atomically`: a temp file in the same folder + os.replace, created with the user's umask.
- `check_writable`: the same checks before a long run, so its result is never lost.
- `read_safetensors`: the header is parsed and checked (size, dtypes float32/float16/bfloat16 only,
  shapes against offsets) before any tensor is built; NaN and infinities refused.

Every failure is the caller's PeftStudioError subclass, its message starting with the file's label.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import re
import stat
import struct
import tempfile
from collections.abc import Callable, Iterable, Sequence
from itertools import accumulate
from pathlib import Path
from typing import Any

import torch

from ..errors import PeftStudioError

ErrorType = type[PeftStudioError]
MAX_JSON_BYTES = 16 * 2**20  # setup files, adapter_config.json, config.json: a few KB in practice
MAX_JSON_DEPTH = 64
MAX_INT_DIGITS = 100  # far beyond any real count or seed; a 10k-digit int costs quadratic time to convert
MAX_NUMBER_CHARS = 400
MAX_SAFETENSORS_BYTES = 2 * 2**30
MAX_SAFETENSORS_HEADER = 16 * 2**20
MAX_TENSOR_DIMS = 8
SAFE_DTYPES = {"F32": (torch.float32, 4), "F16": (torch.float16, 2), "BF16": (torch.bfloat16, 2)}
INDEX_DTYPES = {"I32": (torch.int32, 4), "I64": (torch.int64, 8)}  # positions (SHiRA's): only where asked for
_KINDS = ((stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a FIFO (named pipe)"), (stat.S_ISCHR, "a character device"),
          (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"))


def _mb(size: int) -> str:
    return f"{size / 2**20:.1f} MB" if size < 2**30 else f"{size / 2**30:.1f} GB"


# ---- reading ------------------------------------------------------------------------------------
def _check_regular(mode: int, label: str, error: ErrorType) -> None:
    if stat.S_ISREG(mode):
        return
    kind = next((name for test, name in _KINDS if test(mode)), "not a regular file")
    raise error(f"{label}: is {kind}, not a regular file")


def check_regular_file(path: str | os.PathLike, label: str, error: ErrorType) -> int:
    """The size of `path` when it is a regular file (symlinks followed); else `error` saying what it is."""
    try:
        info = os.stat(path)
    except FileNotFoundError:
        raise error(f"{label}: no such file ({path})") from None
    except (OSError, ValueError) as exc:  # ValueError: a NUL byte in the path
        raise error(f"{label}: cannot read it ({getattr(exc, 'strerror', None) or exc})") from None
    _check_regular(info.st_mode, label, error)
    return info.st_size


def is_regular_file(path: str | os.PathLike) -> bool:
    """True for an existing regular file (or a symlink to one); never blocks, never raises."""
    try:
        return stat.S_ISREG(os.stat(path).st_mode)
    except (OSError, ValueError):
        return False


def read_bytes(path: str | os.PathLike, limit: int, label: str, error: ErrorType, *, mutable: bool = False) -> bytes:
    """The whole file, at most `limit` bytes, or `error` (not a regular file, too large, unreadable).
    With `mutable`, a bytearray read in place (one buffer the size of the file: no chunks joined)."""
    size = check_regular_file(path, label, error)
    if size > limit:
        raise error(f"{label}: is {_mb(size)}; the limit is {_mb(limit)}")
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
    except OSError as exc:
        raise error(f"{label}: cannot read it ({exc.strerror or exc})") from None
    try:
        _check_regular(os.fstat(fd).st_mode, label, error)  # the path may have been swapped since the stat
        if mutable:
            return _read_into(fd, os.fstat(fd).st_size, limit, label, error)
        chunks: list[bytes] = []
        total = 0
        while total <= limit:
            chunk = os.read(fd, min(2**20, limit + 1 - total))
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
        if total > limit:
            raise error(f"{label}: grew beyond the limit of {_mb(limit)} while being read")
        return b"".join(chunks)
    except OSError as exc:
        raise error(f"{label}: cannot read it ({exc.strerror or exc})") from None
    finally:
        os.close(fd)


def _read_into(fd: int, size: int, limit: int, label: str, error: ErrorType) -> bytearray:
    """Exactly the file's `size` bytes into one preallocated buffer; a file that grows or shrinks meanwhile
    is an error rather than a torn read."""
    if size > limit:
        raise error(f"{label}: is {_mb(size)}; the limit is {_mb(limit)}")
    buffer = bytearray(size)
    view = memoryview(buffer)
    reader = io.FileIO(fd, closefd=False)
    total = 0
    while total < size:
        count = reader.readinto(view[total:total + 2**24])
        if not count:
            raise error(f"{label}: shrank while being read")
        total += count
    if reader.read(1):
        raise error(f"{label}: grew while being read")
    return buffer


def read_head(path: str | os.PathLike, size: int, label: str, error: ErrorType) -> tuple[bytes, bool]:
    """At most the first `size` bytes of a regular file, and whether the file goes on beyond them."""
    check_regular_file(path, label, error)
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
    except OSError as exc:
        raise error(f"{label}: cannot read it ({exc.strerror or exc})") from None
    try:
        _check_regular(os.fstat(fd).st_mode, label, error)
        chunks: list[bytes] = []
        total = 0
        while total <= size and (chunk := os.read(fd, min(2**20, size + 1 - total))):
            chunks.append(chunk)
            total += len(chunk)
    except OSError as exc:
        raise error(f"{label}: cannot read it ({exc.strerror or exc})") from None
    finally:
        os.close(fd)
    data = b"".join(chunks)
    return data[:size], len(data) > size


def read_text(path: str | os.PathLike, limit: int, label: str, error: ErrorType) -> str:
    """`read_bytes` decoded as UTF-8 (a BOM is dropped)."""
    return decode_utf8(read_bytes(path, limit, label, error), label, error)


def decode_utf8(data: bytes, label: str, error: ErrorType) -> str:
    bom = 3 if data.startswith(b"\xef\xbb\xbf") else 0
    try:
        return data[bom:].decode("utf-8")
    except UnicodeDecodeError as exc:
        offset = exc.start + bom
        raise error(f"{label}: is not UTF-8 text (byte 0x{data[offset]:02x} at byte offset {offset}); "
                    "save it as UTF-8") from None


# ---- JSON ---------------------------------------------------------------------------------------
class _Refused(ValueError):
    """Raised from the decoder's hooks; becomes the caller's error."""


_STRINGS = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"', re.S)
_NOT_BRACKET = re.compile(r"[^\[\]{}]+")
_STEP = {"[": 1, "{": 1, "]": -1, "}": -1}


def json_depth(text: str) -> int:
    """The deepest nesting of [] and {} outside strings (regex + accumulate: no recursion, C speed)."""
    brackets = _NOT_BRACKET.sub("", _STRINGS.sub("", text))
    return max(accumulate(map(_STEP.__getitem__, brackets)), default=0)


def json_decoder(max_int_digits: int = MAX_INT_DIGITS) -> json.JSONDecoder:
    """A decoder that refuses huge integers, non-finite numbers and duplicate keys (raises ValueError)."""

    def parse_int(text: str) -> int:
        digits = len(text) - text.startswith("-")
        if digits > max_int_digits:
            raise _Refused(f"an integer with {digits} digits (the limit is {max_int_digits})")
        return int(text)

    def parse_float(text: str) -> float:
        value = float(text[:MAX_NUMBER_CHARS + 1])
        if len(text) > MAX_NUMBER_CHARS or not math.isfinite(value):
            raise _Refused(f"the number {text[:24]}{'...' if len(text) > 24 else ''} is out of range")
        return value

    def parse_constant(text: str) -> Any:
        raise _Refused(f"{text} is not a number JSON allows (no NaN or infinities)")

    def pairs(items: list[tuple[str, Any]]) -> dict[str, Any]:
        result = dict(items)
        if len(result) != len(items):
            seen: set[str] = set()
            duplicate = next(key for key, _ in items if key in seen or seen.add(key))
            raise _Refused(f"the key {duplicate[:60]!r} appears twice in one object")
        return result

    return json.JSONDecoder(parse_int=parse_int, parse_float=parse_float, parse_constant=parse_constant,
                            object_pairs_hook=pairs)


def json_failure(exc: Exception) -> str:
    """A one-line reason for a failure of `json_decoder()` (for loaders that decode piece by piece)."""
    if isinstance(exc, json.JSONDecodeError):
        return f"not readable JSON ({exc.msg} at line {exc.lineno} column {exc.colno})"
    if isinstance(exc, RecursionError):
        return "nested too deeply"
    return " ".join(str(exc).split())[:200] or type(exc).__name__


def loads_json(text: str, label: str, error: ErrorType, *, max_depth: int = MAX_JSON_DEPTH,
               max_int_digits: int = MAX_INT_DIGITS) -> Any:
    """Parse `text` with the limits above; any failure is `error` naming `label`."""
    # counting brackets first skips the scan for the usual small, shallow file
    if text.count("[") + text.count("{") > max_depth and (depth := json_depth(text)) > max_depth:
        raise error(f"{label}: JSON nested {depth} levels deep; the limit is {max_depth}")
    try:
        return json_decoder(max_int_digits).decode(text.removeprefix("\ufeff"))
    except (ValueError, RecursionError) as exc:
        raise error(f"{label}: {json_failure(exc)}") from None


def read_json(path: str | os.PathLike, label: str, error: ErrorType, *, limit: int = MAX_JSON_BYTES,
              max_depth: int = MAX_JSON_DEPTH) -> Any:
    """A JSON file read with `read_bytes` and parsed with `loads_json`."""
    return loads_json(read_text(path, limit, label, error), label, error, max_depth=max_depth)


def read_json_object(path: str | os.PathLike, label: str, error: ErrorType, *,
                     limit: int = MAX_JSON_BYTES) -> dict[str, Any]:
    data = read_json(path, label, error, limit=limit)
    if not isinstance(data, dict):
        raise error(f"{label}: expected a JSON object {{...}}, got {json_kind(data)}")
    return data


def json_kind(value: Any) -> str:
    kinds = {dict: "an object", list: "a list", str: "a string", bool: "true/false", type(None): "null"}
    return kinds.get(type(value), "a number")


# ---- writing ------------------------------------------------------------------------------------
def current_umask() -> int:
    """The process umask, read without changing it (os.umask would change it for every thread)."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def write_atomically(path: str | os.PathLike, write: Callable[[Path], None],
                     error: ErrorType = PeftStudioError) -> Path:
    """Call write(temp) for a temp file beside `path`, then rename it over `path`: a crash or a full disk
    never leaves half a file, and the result has the mode a plain open() would give (0666 & ~umask)."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as exc:
        raise error(f"{path.name}: cannot write into {path.parent} ({exc.strerror or exc})") from None
    os.close(handle)
    try:
        write(Path(temp))
        os.chmod(temp, 0o666 & ~current_umask())  # mkstemp makes 0600; after write(), which may recreate it
        os.replace(temp, path)
    except OSError as exc:
        raise error(f"{path.name}: could not write it ({exc.strerror or exc})") from None
    finally:
        if os.path.lexists(temp):
            os.unlink(temp)
    return path


def write_csv_atomically(path: str | os.PathLike, header: Sequence[object], rows: Iterable[Sequence[object]],
                         error: ErrorType = PeftStudioError) -> Path:
    """A CSV file (the header row, then `rows`) written through write_atomically."""
    def write(temp: Path) -> None:
        with temp.open("w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            writer.writerow(header)
            writer.writerows(rows)

    return write_atomically(path, write, error)


def write_text_atomically(path: str | os.PathLike, text: str, error: ErrorType = PeftStudioError) -> Path:
    return write_atomically(path, lambda temp: temp.write_text(text, encoding="utf-8"), error)


def check_writable(path: str | os.PathLike, error: ErrorType = PeftStudioError, *, folder: bool = False) -> None:
    """Raise `error` now if `write_atomically(path)` (or, with folder=True, files inside the folder `path`)
    would fail for lack of a writable folder, so a long run is never lost at its end."""
    path = Path(path).expanduser()
    label = path.name or str(path)
    target = path if folder else path.parent
    if folder and os.path.lexists(path) and not path.is_dir():
        raise error(f"{label}: exists and is not a folder")
    if not folder and os.path.lexists(path):
        try:
            mode = os.stat(path).st_mode
        except OSError:
            mode = stat.S_IFREG  # a dangling symlink: os.replace replaces the link itself
        if stat.S_ISDIR(mode):
            raise error(f"{label}: is a folder; give a file name")
        _check_regular(mode, label, error)
    above = next((p for p in [target, *target.parents] if os.path.lexists(p)), None)
    if above is not None and not above.is_dir():
        raise error(f"{label}: cannot write into {target}: {above} is a file, not a folder")
    # A real probe, as the writer will do it (os.access says yes to root everywhere, /proc included):
    # make the folder, create and remove a temp file in it.
    try:
        target.mkdir(parents=True, exist_ok=True)
        handle, temp = tempfile.mkstemp(dir=target, prefix=".peft-studio-probe.", suffix=".tmp")
        os.close(handle)
        os.unlink(temp)
    except OSError as exc:
        raise error(f"{label}: cannot write into {target} ({exc.strerror or exc})") from None


def file_inside(folder: str | os.PathLike, relative: str, error: ErrorType = PeftStudioError) -> Path:
    """folder/relative, for writing a file the folder holds: every part of `relative` a plain name (no "..",
    no absolute path) and no part that exists a symlink, so a write never leaves the folder the user chose
    (a link inside it to a file elsewhere is refused, not written through)."""
    folder = Path(folder).expanduser()
    parts = Path(relative).parts
    if not parts or Path(relative).is_absolute() or any(p in ("", ".", "..") or "\0" in p for p in parts):
        raise error(f"{str(relative)[:80]!r}: not a name inside {folder} (no '..' or absolute paths)")
    path = folder
    for part in parts:
        path = path / part
        if os.path.islink(path):
            raise error(f"{path}: is a symbolic link; PEFT Studio does not write through links inside an output "
                        "folder (remove it, or choose another folder)")
    return path


def plain_name(name: str, what: str, error: ErrorType = PeftStudioError) -> str:
    """A name that becomes one folder or file name: no separators, not "." or "..", no NUL."""
    if not name or name in (".", "..") or any(c in name for c in "/\\\0") or len(name) > 255:
        raise error(f"{what} {name[:60]!r} cannot be a folder name (no '/', '\\', '.' or '..'); rename it")
    return name


# ---- safetensors --------------------------------------------------------------------------------
def read_safetensors(path: str | os.PathLike, label: str, error: ErrorType, *, limit: int = MAX_SAFETENSORS_BYTES,
                     integers: bool = False) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Tensors and metadata of a safetensors file, after the header is checked; never runs code. With `integers`,
    int32/int64 tensors (indices) are read too; the caller checks where they may appear.

    The file is read once into one buffer and every tensor is a view of it (no second copy: a 1.8 GB
    adapter costs 1.8 GB, not twice that); NaN and infinities are refused, checked in chunks."""
    dtypes = {**SAFE_DTYPES, **INDEX_DTYPES} if integers else SAFE_DTYPES
    data = read_bytes(path, limit, label, error, mutable=True)
    header = _safetensors_header(data, label, error, dtypes=dtypes)
    start = 8 + struct.unpack("<Q", data[:8])[0]
    tensors: dict[str, torch.Tensor] = {}
    for name, entry in sorted((k, v) for k, v in header.items() if k != "__metadata__"):
        dtype, size = dtypes[entry["dtype"]]
        begin, end = entry["data_offsets"]
        count = (end - begin) // size
        offset = start + begin
        if count == 0:
            tensor = torch.empty(0, dtype=dtype)
        else:
            tensor = torch.frombuffer(data, dtype=dtype, count=count, offset=offset)
            if offset % size:  # a view at an odd address works on x86 only; copy that one tensor
                tensor = tensor.clone()
        tensor = tensor.reshape(entry["shape"])
        if not all_finite(tensor):
            raise error(f"{label}: tensor {name[:80]} holds NaN or infinite values")
        tensors[name] = tensor
    return tensors, header.get("__metadata__") or {}


def all_finite(tensor: torch.Tensor, chunk: int = 2**20) -> bool:
    """isfinite in 4 MB slices: on a whole large tensor its temporaries cost about half its size again."""
    flat = tensor.reshape(-1)
    return all(bool(torch.isfinite(flat[i:i + chunk]).all()) for i in range(0, flat.numel(), chunk))


def read_safetensors_header(path: str | os.PathLike, label: str, error: ErrorType) -> dict[str, Any]:
    """The checked header of a safetensors file of any size (names, dtypes, shapes, offsets against the file's
    length) without reading a tensor: a checkpoint's weights are then read one at a time (memory-mapped)."""
    file_size = check_regular_file(path, label, error)
    head, _ = read_head(path, 8, label, error)
    if len(head) < 8:
        raise error(f"{label}: not a safetensors file (only {len(head)} bytes)")
    (size,) = struct.unpack("<Q", head)
    if size > min(MAX_SAFETENSORS_HEADER, file_size - 8):
        raise error(f"{label}: not a safetensors file (its header claims {size} bytes, the file has "
                    f"{file_size - 8} after the size field)")
    data, _ = read_head(path, 8 + size, label, error)
    return _safetensors_header(data, label, error, file_size)


def _safetensors_header(data: bytes, label: str, error: ErrorType, file_size: int | None = None,
                        dtypes: dict[str, tuple[torch.dtype, int]] = SAFE_DTYPES) -> dict[str, Any]:
    """The parsed header: sizes, dtypes, shapes and offsets checked against the file's length."""
    file_size = len(data) if file_size is None else file_size
    if len(data) < 8:
        raise error(f"{label}: not a safetensors file (only {len(data)} bytes)")
    (size,) = struct.unpack("<Q", data[:8])
    if size > min(MAX_SAFETENSORS_HEADER, file_size - 8, len(data) - 8):
        raise error(f"{label}: not a safetensors file (its header claims {size} bytes, the file has "
                    f"{file_size - 8} after the size field)")
    try:
        text = data[8:8 + size].decode("utf-8")
    except UnicodeDecodeError:
        raise error(f"{label}: not a safetensors file (the header is not UTF-8 JSON)") from None
    try:
        header = loads_json(text, "header", error, max_depth=4)
    except PeftStudioError as exc:
        raise error(f"{label}: not a safetensors file ({exc})") from None
    if not isinstance(header, dict):
        raise error(f"{label}: not a safetensors file (the header is not a JSON object)")
    body = file_size - 8 - size
    spans = []
    for name, entry in header.items():
        if name == "__metadata__":
            if not isinstance(entry, dict) or not all(isinstance(v, str) for v in entry.values()):
                raise error(f"{label}: its metadata must map names to strings")
            continue
        _check_entry(name, entry, body, label, error, dtypes)
        spans.append((*entry["data_offsets"], name))
    end = 0
    for begin, stop, name in sorted(spans):  # as safetensors requires: the tensors tile the body, no overlap
        if begin != end:
            raise error(f"{label}: not a safetensors file (tensor {name[:80]} starts at byte {begin}, not {end})")
        end = stop
    if end != body:
        raise error(f"{label}: not a safetensors file ({body - end} bytes after the last tensor)")
    return header


def _check_entry(name: str, entry: Any, body: int, label: str, error: ErrorType,
                 dtypes: dict[str, tuple[torch.dtype, int]] = SAFE_DTYPES) -> None:
    where = f"{label}: tensor {name[:80]}"
    if not isinstance(entry, dict) or set(entry) != {"dtype", "shape", "data_offsets"}:
        raise error(f"{where}: malformed header entry (needs dtype, shape and data_offsets)")
    dtype, shape, offsets = entry["dtype"], entry["shape"], entry["data_offsets"]
    if dtype not in dtypes:
        raise error(f"{where}: dtype {str(dtype)[:20]} is not supported (float32, float16 or bfloat16 only; "
                    "it is refused rather than converted)")
    if (not isinstance(shape, list) or len(shape) > MAX_TENSOR_DIMS
            or not all(type(d) is int and 0 <= d < 2**40 for d in shape)):
        raise error(f"{where}: malformed shape {str(shape)[:60]}")
    if (not isinstance(offsets, list) or len(offsets) != 2 or not all(type(o) is int for o in offsets)
            or not 0 <= offsets[0] <= offsets[1] <= body):
        raise error(f"{where}: data offsets {str(offsets)[:60]} lie outside the file")
    if math.prod(shape) * dtypes[dtype][1] != offsets[1] - offsets[0]:
        raise error(f"{where}: shape {tuple(shape)} does not match its {offsets[1] - offsets[0]} bytes")


def expect_shape(tensor: torch.Tensor, dims: int, where: str, error: ErrorType, what: str = "") -> None:
    """Refuse a tensor with another number of dimensions (a 0-D or 1-D tensor where 2-D is expected)."""
    if tensor.dim() != dims or 0 in tensor.shape:
        raise error(f"{where} has shape {tuple(tensor.shape)}; expected {what or f'{dims} non-empty dimensions'}")
