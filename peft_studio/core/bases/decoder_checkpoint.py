"""Local Hugging Face decoder checkpoints (Llama, Mistral, Qwen2, GPT-2 folders) as frozen bases.

A folder holds config.json, model.safetensors (or shards listed by model.safetensors.index.json) and
tokenizer.json (with tokenizer_config.json / generation_config.json for the special tokens). `inspect_folder`
reads and checks everything but the weights: the config (decoder_config.py), every tensor's name, dtype and
shape from the safetensors headers against the model the config describes, the shards, the tokenizer, and
the memory the weights will take (refused before anything is allocated). `load_decoder` then builds the
model on the meta device and fills it one tensor at a time from the memory-mapped files, reporting progress
and honouring a cancel flag between tensors (the window runs it in a worker; the CLI prints a bar).

Weights are kept in float32 (fp16 and bf16 files are widened exactly), as transformers' CPU default, so
the studio's logits are transformers' in float32. Nothing here needs transformers; nothing in the files is
executed (safetensors and JSON only; pytorch_model.bin is pickle and refused).
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..errors import BaseLoadError
from ..files import safe_io
from .decoder import DecoderBase
from .decoder_config import DecoderConfig, model_family, read_decoder_config
from .decoder_tokenizer import DecoderTokenizer, load_tokenizer
from .frozen import TrainDefaults
from .meta_device import on_meta

WEIGHTS = "model.safetensors"
INDEX = "model.safetensors.index.json"
PICKLE_WEIGHTS = ("pytorch_model.bin", "pytorch_model.bin.index.json")
ENCODER_TYPES = ("bert",)  # read by pretrained.py
DTYPE_NAMES = {"F32": "float32", "F16": "float16", "BF16": "bfloat16"}
HEAD_HINTS = {"score.": "a classification head (the studio loads *ForCausalLM checkpoints)",
              "classifier.": "a classification head (the studio loads *ForCausalLM checkpoints)",
              "v_head.": "a value head"}
Progress = Callable[[float, str], None]  # (fraction done 0..1, what is being read)


class LoadCancelled(BaseLoadError):
    """The user stopped a checkpoint load; nothing was kept."""


_REPORTER: contextvars.ContextVar[Progress | None] = contextvars.ContextVar("load_progress", default=None)


@contextlib.contextmanager
def loading_progress(progress: Progress) -> Iterator[None]:
    """Report the weights of any checkpoint loaded inside this block (however deep the call that loads it)."""
    token = _REPORTER.set(progress)
    try:
        yield
    finally:
        _REPORTER.reset(token)


@dataclass(frozen=True)
class TensorEntry:
    """Where one weight lives: its file, its name there, its stored dtype and shape."""

    file: Path
    key: str
    dtype: str
    shape: tuple[int, ...]

    @property
    def numel(self) -> int:
        count = 1
        for size in self.shape:
            count *= size
        return count


@dataclass(frozen=True)
class DecoderCheckpoint:
    """A checked checkpoint folder, weights not yet read (shared by every base built from it)."""

    folder: Path
    cfg: DecoderConfig
    config: dict[str, Any]
    entries: dict[str, TensorEntry]  # studio parameter name -> where it is stored
    tokenizer: DecoderTokenizer
    notes: tuple[str, ...]
    stamp: tuple

    @property
    def weight_bytes(self) -> int:
        """Bytes of the model's weights in float32 (how the studio holds them)."""
        return 4 * sum(entry.numel for entry in self.entries.values())

    @property
    def file_dtypes(self) -> list[str]:
        return sorted({DTYPE_NAMES[e.dtype] for e in self.entries.values()})


# ---- which folders are decoder checkpoints ---------------------------------------------------------------
def read_config(folder: Path) -> dict[str, Any]:
    return safe_io.read_json_object(folder / "config.json", f"{folder.name}/config.json", BaseLoadError)


def has_weights(folder: Path) -> bool:
    return any(os.path.lexists(folder / name) for name in (WEIGHTS, INDEX, *PICKLE_WEIGHTS))


def is_decoder_folder(folder: Path) -> bool:
    """A folder whose config.json names a model_type other than BERT's: a decoder family, or one the decoder loader
    refuses naming the supported ones (False when it cannot tell: the BERT loader then says why)."""
    try:
        model_type = read_config(folder).get("model_type")
    except BaseLoadError:
        return False
    return isinstance(model_type, str) and model_type not in ENCODER_TYPES


def _stamp(folder: Path) -> tuple:
    """Size and modification time of every file read, so an edited folder is read again."""
    names = sorted(n for n in os.listdir(folder) if n.endswith((".json", ".safetensors")))
    return tuple((n, p.stat().st_size, p.stat().st_mtime_ns) for n in names if (p := folder / n).is_file())


# ---- the weight files ------------------------------------------------------------------------------------------
def _weight_files(folder: Path) -> list[Path]:
    """model.safetensors, or the shards model.safetensors.index.json lists (each checked to exist)."""
    if safe_io.is_regular_file(folder / INDEX):
        where = f"{folder.name}/{INDEX}"
        index = safe_io.read_json_object(folder / INDEX, where, BaseLoadError)
        weight_map = index.get("weight_map")
        if not isinstance(weight_map, dict) or not weight_map:
            raise BaseLoadError(f"{where}: no weight_map (it should map each tensor to its shard file)")
        shards: list[str] = []
        for tensor, shard in weight_map.items():
            if not isinstance(shard, str) or not shard.endswith(".safetensors") or Path(shard).name != shard:
                raise BaseLoadError(f"{where}: tensor {str(tensor)[:80]} maps to {str(shard)[:80]!r}, not a "
                                    ".safetensors file in this folder")
            if shard not in shards:
                shards.append(shard)
        missing = [shard for shard in shards if not safe_io.is_regular_file(folder / shard)]
        if missing:
            raise BaseLoadError(f"{folder.name}: shard {missing[0]} is missing ({len(missing)} of {len(shards)} "
                                f"shards listed by {INDEX} are not in the folder)")
        return [folder / shard for shard in shards]
    if safe_io.is_regular_file(folder / WEIGHTS):
        return [folder / WEIGHTS]
    if any(safe_io.is_regular_file(folder / name) for name in PICKLE_WEIGHTS):
        raise BaseLoadError(f"{folder.name}: only pytorch_model.bin, which is pickle (loading it can run code); "
                            "save the model as model.safetensors (save_pretrained does by default)")
    raise BaseLoadError(f"{folder.name}: no {WEIGHTS} or {INDEX}")


def _index_map(folder: Path) -> dict[str, str] | None:
    if not safe_io.is_regular_file(folder / INDEX):
        return None
    return safe_io.read_json_object(folder / INDEX, f"{folder.name}/{INDEX}", BaseLoadError)["weight_map"]


def expected_shapes(cfg: DecoderConfig) -> dict[str, tuple[int, ...]]:
    """Every weight the config implies, by name, with its shape (a tied LM head is the embedding)."""
    with on_meta():
        base = DecoderBase(cfg, None)  # type: ignore[arg-type]  # shapes only
    return {name: tuple(t.shape) for name, t in base.state_dict().items()
            if not (cfg.tie_word_embeddings and name == "lm_head.weight")}


def _map_entries(folder: Path, cfg: DecoderConfig, files: list[Path]) -> tuple[dict[str, TensorEntry], list[str]]:
    """Each stored tensor under the studio's name, checked against the config; returns (entries, notes)."""
    fam = cfg.fam
    headers = {path: safe_io.read_safetensors_header(path, f"{folder.name}/{path.name}", BaseLoadError)
               for path in files}
    keys = [(path, key) for path, header in headers.items() for key in header if key != "__metadata__"]
    prefixed = any(key.startswith(f"{fam.stack}.") for _, key in keys)
    expected = expected_shapes(cfg)
    entries: dict[str, TensorEntry] = {}
    ignored: list[str] = []
    for path, key in keys:
        where = f"{folder.name}/{path.name}"
        name = key if prefixed or key.startswith("lm_head.") else f"{fam.stack}.{key}"
        if any(name.endswith(f".{legacy}") for legacy in fam.legacy_buffers):
            ignored.append(key)  # old checkpoints' causal-mask / rotary buffers: no weights, transformers skips them
            continue
        if name == "lm_head.weight" and cfg.tie_word_embeddings:
            ignored.append(key)  # tied: transformers uses the token embeddings as the LM head
            continue
        if name not in expected:
            hint = next((text for prefix, text in HEAD_HINTS.items() if key.startswith(prefix)), "")
            layer = f" (config.json says {cfg.num_layers} layers)" if f".{fam.layer_list}." in name else ""
            raise BaseLoadError(f"{where}: unexpected tensor {key}{layer}: not part of a {fam.title} model with "
                                f"this config.json" + (f"; {hint}" if hint else ""))
        entry = headers[path][key]
        shape = tuple(entry["shape"])
        if shape != expected[name]:
            raise BaseLoadError(f"{where}: {key} has shape {shape}, config.json implies {expected[name]}")
        if name in entries:
            raise BaseLoadError(f"{where}: {key} is stored twice ({entries[name].file.name} has it too)")
        entries[name] = TensorEntry(path, key, entry["dtype"], shape)
    listed = _index_map(folder)
    if listed is not None:
        stored = {(path.name, key) for path, key in keys}
        absent = [(shard, key) for key, shard in listed.items() if (shard, key) not in stored]
        if absent:
            shard, key = absent[0]
            raise BaseLoadError(f"{folder.name}/{shard}: lacks tensor {key}, which {INDEX} says it holds")
    missing = [name for name in expected if name not in entries]
    if missing:
        shown = ", ".join(missing[:4]) + (" ..." if len(missing) > 4 else "")
        files_named = ", ".join(path.name for path in files)
        raise BaseLoadError(f"{folder.name}/{files_named}: missing {len(missing)} tensor(s): {shown} (config.json "
                            f"says {cfg.num_layers} layers, tie_word_embeddings "
                            f"{str(cfg.tie_word_embeddings).lower()})")
    notes = []
    if ignored:
        notes.append(f"ignored tensors that hold no weights here: {', '.join(sorted(set(ignored))[:4])}"
                     + (" ..." if len(set(ignored)) > 4 else ""))
    return {name: entries[name] for name in expected}, notes


def _check_memory(folder: Path, weight_bytes: int) -> None:
    """Refuse, before anything is allocated, weights that cannot fit (the limit rules of memory/budget.py)."""
    from ..memory.budget import memory_limit

    limit = memory_limit()
    if weight_bytes > limit:
        raise BaseLoadError(f"{folder.name}: its weights take {weight_bytes / 2**30:.1f} GB in float32 (how the "
                            f"studio holds them on the CPU); the limit is {limit / 2**30:.1f} GB "
                            "(PEFT_STUDIO_MEMORY_LIMIT_MB sets it). A folder with only its config.json opens the "
                            "same architecture on the meta device (shapes, counts, memory) instead")


def inspect_folder(folder: Path) -> DecoderCheckpoint:
    """Everything but the weights, checked (cached per folder until a file changes)."""
    return _inspect_cached(str(folder), _stamp(folder))


@functools.lru_cache(maxsize=4)
def _inspect_cached(folder_text: str, stamp: tuple) -> DecoderCheckpoint:
    folder = Path(folder_text)
    if not safe_io.is_regular_file(folder / "config.json"):
        raise BaseLoadError(f"{folder.name}: no config.json (a decoder checkpoint folder needs config.json, "
                            f"{WEIGHTS} and tokenizer.json)")
    raw = read_config(folder)
    where = f"{folder.name}/config.json"
    model_family(raw, where)
    cfg = read_decoder_config(raw, where)
    entries, notes = _map_entries(folder, cfg, _weight_files(folder))
    checkpoint_bytes = 4 * sum(e.numel for e in entries.values())
    _check_memory(folder, checkpoint_bytes)
    learned = cfg.fam.position_embedding is not None  # rotary positions have no hard end
    tokenizer = load_tokenizer(folder, raw, cfg.vocab_size, cfg.max_positions if learned else None)
    return DecoderCheckpoint(folder, cfg, dict(raw), entries, tokenizer, tuple(notes), stamp)


# ---- the base ----------------------------------------------------------------------------------------------
_FINGERPRINTS: dict[tuple[str, tuple], str] = {}  # (folder, stamp) -> hash of the weights as loaded


class DecoderCheckpointBase(DecoderBase):
    """A decoder holding a checkpoint's weights (its own copy, read from the files)."""

    train_defaults = TrainDefaults(steps=60, lr=2e-3, batch_size=8)  # a pretrained LM: gentle, small batches
    default_dataset = "texts"

    def __init__(self, checkpoint: DecoderCheckpoint, name: str) -> None:
        cfg = checkpoint.cfg
        with on_meta():  # no random init: the weights come from the files
            super().__init__(cfg, checkpoint.tokenizer, name, "")
        self.folder = checkpoint.folder
        self.checkpoint = checkpoint
        self.load_notes = checkpoint.notes
        heads = f"{cfg.num_heads} heads" + (f" / {cfg.num_kv_heads} K/V" if cfg.grouped else "")
        self.title = (f"{checkpoint.folder.name} ({cfg.fam.title}: {cfg.num_layers} layers, {cfg.hidden_size} wide, "
                      f"{heads}; {'/'.join(checkpoint.file_dtypes)} weights held in float32)")
        self._pristine: tuple = ()

    def _versions(self) -> tuple:
        return tuple((n, id(t), t.data_ptr(), t._version) for n, t in self.state_dict(keep_vars=True).items())

    def fingerprint(self) -> str:
        """The weights' hash: computed once per checkpoint, reused while no tensor has been touched."""
        key = (str(self.folder), self.checkpoint.stamp)
        if self._pristine and self._versions() == self._pristine and key in _FINGERPRINTS:
            return _FINGERPRINTS[key]
        value = super().fingerprint()
        if not self._pristine:
            self._pristine = self._versions()
            _FINGERPRINTS[key] = value
        return value


def _assign(base: nn.Module, name: str, tensor: torch.Tensor) -> None:
    module_path, _, leaf = name.rpartition(".")
    module = base.get_submodule(module_path)
    module._parameters[leaf] = nn.Parameter(tensor, requires_grad=False)


# The weights of the last checkpoint read, in float32, when two copies fit the memory limit: every base built
# from the folder afterwards (the window rebuilds its experiment on each edit) copies them instead of reading the
# files again. A base never shares their storage: methods may write a base's own tensors (full fine-tuning, a
# merged LoRA) and restore them later.
_WEIGHTS: dict[tuple[str, tuple], dict[str, torch.Tensor]] = {}


def _read_weights(checkpoint: DecoderCheckpoint, progress: Progress | None,
                  cancelled: Callable[[], bool] | None) -> Iterator[tuple[str, torch.Tensor, int]]:
    """(name, float32 tensor, its numel) for every weight, read one at a time from the memory-mapped files."""
    from safetensors import SafetensorError, safe_open

    folder = checkpoint.folder
    by_file: dict[Path, list[tuple[str, TensorEntry]]] = {}
    for name, entry in checkpoint.entries.items():
        by_file.setdefault(entry.file, []).append((name, entry))
    for path, items in by_file.items():
        try:
            with safe_open(str(path), framework="pt") as handle:
                for name, entry in items:
                    if cancelled is not None and cancelled():
                        raise LoadCancelled(f"{folder.name}: loading was cancelled")
                    tensor = handle.get_tensor(entry.key).to(torch.float32)
                    if tensor.numel() and not bool(torch.isfinite(tensor).all()):
                        raise BaseLoadError(f"{folder.name}/{path.name}: tensor {entry.key} holds NaN or infinite "
                                            "values")
                    yield name, tensor, entry.numel
        except (SafetensorError, OSError, RuntimeError) as exc:
            raise BaseLoadError(f"{folder.name}/{path.name}: not a readable safetensors file ({exc})") from None


def _cached_weights(checkpoint: DecoderCheckpoint, progress: Progress | None,
                    cancelled: Callable[[], bool] | None) -> Iterator[tuple[str, torch.Tensor, int]]:
    key = (str(checkpoint.folder), checkpoint.stamp)
    cached = _WEIGHTS.get(key)
    if cached is not None:  # a copy each: the base may write its own tensors
        for name, tensor in cached.items():
            if cancelled is not None and cancelled():
                raise LoadCancelled(f"{checkpoint.folder.name}: loading was cancelled")
            yield name, tensor.clone(), tensor.numel()
        return
    from ..memory.budget import memory_limit

    keep = 2 * checkpoint.weight_bytes <= memory_limit()
    kept: dict[str, torch.Tensor] = {}
    for name, tensor, numel in _read_weights(checkpoint, progress, cancelled):
        if keep:
            kept[name] = tensor
            tensor = tensor.clone()
        yield name, tensor, numel
    if keep:
        _WEIGHTS.clear()  # one checkpoint at a time
        _WEIGHTS[key] = kept


_PRELOADED: dict[tuple[str, str, tuple], DecoderCheckpointBase] = {}  # loaded in a worker, not used yet


def preload(base: DecoderCheckpointBase) -> None:
    """Keep a base loaded off the GUI thread for the next `load_decoder` of the same folder (used once)."""
    _PRELOADED.clear()
    _PRELOADED[(base.name, str(base.folder), base.checkpoint.stamp)] = base


def load_decoder(spec: str | Path, progress: Progress | None = None,
                 cancelled: Callable[[], bool] | None = None) -> DecoderCheckpointBase:
    """A decoder checkpoint folder as a fresh frozen base; `progress(fraction, text)` after each tensor and
    `cancelled()` checked between tensors (LoadCancelled: nothing is kept)."""
    folder = Path(spec).expanduser()
    if not folder.is_dir():
        raise BaseLoadError(f"{spec}: no such folder (a decoder checkpoint folder needs config.json, {WEIGHTS} "
                            "and tokenizer.json)")
    folder = folder.resolve()
    checkpoint = inspect_folder(folder)
    ready = _PRELOADED.pop((str(spec), str(folder), checkpoint.stamp), None)
    if ready is not None:
        return ready
    progress = progress or _REPORTER.get()
    base = DecoderCheckpointBase(checkpoint, str(spec))
    total = sum(entry.numel for entry in checkpoint.entries.values()) or 1
    done = 0
    last_report = 0.0
    if progress is not None:
        progress(0.0, "")
    for name, tensor, numel in _cached_weights(checkpoint, progress, cancelled):
        _assign(base, name, tensor)
        done += numel
        now = time.monotonic()
        if progress is not None and (now - last_report > 0.05 or done == total):
            progress(done / total, name)
            last_report = now
    if checkpoint.cfg.tie_word_embeddings:  # one tensor, two uses
        base.lm_head.weight = base.stack.get_submodule(checkpoint.cfg.fam.token_embedding).weight
    base.on_meta_device = False
    base.freeze()
    return base
