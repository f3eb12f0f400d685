"""Run records and the run store: one JSON file + one curves CSV per run, in a folder the user can pick."""

from __future__ import annotations

import csv
import io
import json
import math
import os
from collections.abc import Iterator
from dataclasses import MISSING, asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..errors import RunStoreError
from ..files.safe_io import check_writable, read_json_object, read_text, write_atomically
from ..files.user_dirs import user_data_dir
from ..memory.ledger import Ledger

RUN_FORMAT = "peft-studio-run/1"
CURVE_COLUMNS = ("step", "loss", "accuracy", "val_loss", "val_accuracy")
MAX_RUN_BYTES = 2**20  # a run's JSON is a few KB
MAX_CURVES_BYTES = 64 * 2**20  # about a million steps of curves
MAX_CURVE_ROWS = 1_000_000
MAX_RUNS = 2_000  # files read from one folder; the board ticks only the newest few (panels/board.py)


@dataclass
class Curves:
    """Per-step training curves; validation values only where they were computed (None elsewhere)."""

    step: list[int] = field(default_factory=list)
    loss: list[float] = field(default_factory=list)
    accuracy: list[float] = field(default_factory=list)
    val_loss: list[float | None] = field(default_factory=list)
    val_accuracy: list[float | None] = field(default_factory=list)

    def append(self, step: int, loss: float, accuracy: float, val_loss: float | None = None,
               val_accuracy: float | None = None) -> None:
        self.step.append(step)
        self.loss.append(loss)
        self.accuracy.append(accuracy)
        self.val_loss.append(val_loss)
        self.val_accuracy.append(val_accuracy)

    def __len__(self) -> int:
        return len(self.step)

    def validation(self) -> tuple[list[int], list[float], list[float]]:
        """(steps, losses, accuracies) where validation was computed."""
        rows = [(s, vl, va) for s, vl, va in zip(self.step, self.val_loss, self.val_accuracy, strict=True)
                if vl is not None and va is not None]
        return [r[0] for r in rows], [r[1] for r in rows], [r[2] for r in rows]

    def to_csv(self) -> str:
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(CURVE_COLUMNS)
        for row in zip(self.step, self.loss, self.accuracy, self.val_loss, self.val_accuracy, strict=True):
            writer.writerow(["" if v is None else repr(v) for v in row])
        return out.getvalue()

    @classmethod
    def from_csv(cls, text: str, max_rows: int | None = None) -> Curves:
        """Curves from their CSV; every cell typed (ValueError naming the line), at most `max_rows` rows."""
        max_rows = MAX_CURVE_ROWS if max_rows is None else max_rows
        reader = csv.reader(io.StringIO(text))
        if tuple(next(reader, ())) != CURVE_COLUMNS:
            raise ValueError(f"the header must be {','.join(CURVE_COLUMNS)}")
        curves = cls()
        for line, row in enumerate(reader, start=2):
            if len(curves) >= max_rows:
                raise ValueError(f"more than {max_rows:,} rows (the limit)")
            if len(row) != len(CURVE_COLUMNS) or max(map(len, row)) > 40:
                raise ValueError(f"line {line}: expected {len(CURVE_COLUMNS)} short numbers")
            step, loss, acc, val_loss, val_acc = row
            curves.append(int(step), float(loss), float(acc), float(val_loss) if val_loss else None,
                          float(val_acc) if val_acc else None)
        return curves


@dataclass
class RunRecord:
    """Everything one training run leaves behind that a comparison needs (curves kept in their own file)."""

    run_id: str
    created: str  # ISO 8601, UTC
    base: str
    method: str
    options: dict[str, Any]
    dataset: str
    seed: int
    settings: dict[str, Any]  # TrainSettings as a dict
    where: str  # the method card's "where the trainable part sits"
    steps_done: int
    final_train_loss: float
    final_train_accuracy: float
    final_val_loss: float | None
    final_val_accuracy: float | None
    steps_to_95: int | None  # optimizer updates before the batch accuracy first reached 0.95; None: never
    steps_per_second: float
    trainable_params: int
    base_params: int
    head_params: int
    adapter_bytes: int  # the saved adapter file (safetensors: method parts + head + metadata)
    memory: Ledger | None  # measured on one step
    memory_estimate: Ledger | None
    latency_ms: float | None  # one eval forward of the latency batch, best of several
    base_latency_ms: float | None  # the same for the bare base + head
    merged_latency_ms: float | None = None  # LoRA with B A folded into W0
    latency_batch: int = 0
    # the lens (core/lenses/run_summary.py); None in runs saved before it was recorded, which load unchanged
    lens_effective_rank: float | None = None  # mean effective rank of ΔW; None also: the method has no ΔW
    lens_relative_norm: float | None = None  # mean ‖ΔW‖/‖W0‖
    forgetting: float | None = None  # drift from the base on general text (core/lenses/forgetting.py)
    forgetting_measure: str = ""
    lens_note: str = ""  # why the ΔW numbers are missing
    curves: Curves = field(default_factory=Curves)

    @property
    def trainable_percent(self) -> float:
        """Trainable parameters as a percentage of the base's."""
        return 100.0 * self.trainable_params / self.base_params if self.base_params else 0.0

    @property
    def added_latency_ms(self) -> float | None:
        if self.latency_ms is None or self.base_latency_ms is None:
            return None
        return self.latency_ms - self.base_latency_ms

    @property
    def added_latency_merged_ms(self) -> float | None:
        if self.merged_latency_ms is None or self.base_latency_ms is None:
            return None
        return self.merged_latency_ms - self.base_latency_ms

    @property
    def full_copy_bytes(self) -> int:
        """A fully fine-tuned copy of the model: every base and head weight in fp32."""
        return 4 * (self.base_params + self.head_params)

    @property
    def training_memory(self) -> int | None:
        return self.memory.total if self.memory else None

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data.pop("curves")
        data["memory"] = self.memory.to_dict() if self.memory else None
        data["memory_estimate"] = self.memory_estimate.to_dict() if self.memory_estimate else None
        return {"format": RUN_FORMAT, **data}

    @classmethod
    def from_json(cls, data: dict[str, Any], curves: Curves | None = None) -> RunRecord:
        """A record from its JSON object, every field typed (ValueError naming the field): a run file is a
        user's file like any other, and the board shows its text and plots its numbers."""
        if data.get("format") != RUN_FORMAT:
            raise ValueError(f"not a PEFT Studio run (format {str(data.get('format'))[:40]!r})")
        values = {k: data[k] for k in cls.__dataclass_fields__ if k in data and k != "curves"}
        missing = [k for k, f in cls.__dataclass_fields__.items()
                   if k not in values and k != "curves" and f.default is MISSING and f.default_factory is MISSING]
        if missing:
            raise ValueError(f"missing {', '.join(missing[:3])}")
        for key, value in values.items():
            values[key] = _typed(key, value)
        return cls(**values, curves=curves or Curves())


TEXT_FIELDS = ("run_id", "created", "base", "method", "dataset", "where", "forgetting_measure", "lens_note")
COUNT_FIELDS = ("seed", "steps_done", "trainable_params", "base_params", "head_params", "adapter_bytes",
                "latency_batch")
NUMBER_FIELDS = ("final_train_loss", "final_train_accuracy", "steps_per_second")  # NaN is saved as null
OPTIONAL_NUMBER_FIELDS = ("final_val_loss", "final_val_accuracy", "latency_ms", "base_latency_ms",
                          "merged_latency_ms", "lens_effective_rank", "lens_relative_norm", "forgetting")
MAX_FIELD_TEXT = 4096
MAX_COUNT = 2**63 - 1


def _typed(key: str, value: Any) -> Any:
    """One field of a run file, of the type the record declares (bool is not a number, text is bounded)."""
    def number(v: Any) -> bool:
        return type(v) in (int, float)

    if key in TEXT_FIELDS:
        if not isinstance(value, str) or len(value) > MAX_FIELD_TEXT:
            raise ValueError(f"{key} should be text of at most {MAX_FIELD_TEXT} characters")
    elif key in COUNT_FIELDS or key == "steps_to_95":
        if (value is not None or key != "steps_to_95") and (type(value) is not int or not 0 <= value <= MAX_COUNT):
            raise ValueError(f"{key} should be a whole number from 0 to 2**63 - 1")
    elif key in NUMBER_FIELDS or key in OPTIONAL_NUMBER_FIELDS:
        if value is None:
            return math.nan if key in NUMBER_FIELDS else None
        if not number(value):
            raise ValueError(f"{key} should be a number")
        return float(value)
    elif key in ("options", "settings"):
        if not isinstance(value, dict):
            raise ValueError(f"{key} should be an object")
    elif key in ("memory", "memory_estimate"):
        return None if value is None else _ledger(key, value)
    return value


def _ledger(key: str, value: Any) -> Ledger:
    if not isinstance(value, dict):
        raise ValueError(f"{key} should be an object or null")
    fields = Ledger.__dataclass_fields__
    for name, f in fields.items():
        item = value.get(name)
        if name not in value:
            if f.default is MISSING:
                raise ValueError(f"{key}.{name} is missing")
            continue
        if f.type in ("int", "int | None"):
            if not (item is None and f.type == "int | None") and (type(item) is not int or item < 0):
                raise ValueError(f"{key}.{name} should be a whole number of bytes")
        elif not isinstance(item, str) or len(item) > 200:
            raise ValueError(f"{key}.{name} should be short text")
    return Ledger.from_dict(value)


def default_runs_dir() -> Path:
    """runs/ in the user's data directory (core/files/user_dirs.py)."""
    return user_data_dir() / "runs"


class RunStore:
    """Run records in one folder: <run_id>.json (everything but the curves) and <run_id>.curves.csv.

    Files are read as any user's file is (core/files/safe_io.py): regular files only (a FIFO or a device
    is skipped, never opened blocking), bounded in size, JSON bounded in depth and typed field by field;
    what cannot be read is named in `skipped`, never raised from `list`."""

    def __init__(self, folder: str | Path | None = None) -> None:
        self.folder = Path(folder).expanduser() if folder is not None else default_runs_dir()
        self.skipped: list[str] = []  # files the last list() could not read, with why

    def check_folder(self) -> None:
        """RunStoreError now when runs could not be saved here (call it before a long run)."""
        if os.path.lexists(self.folder) and not self.folder.is_dir():
            raise RunStoreError(f"{self.folder}: not a folder (pick a folder for the runs)")
        check_writable(self.folder, RunStoreError, folder=True)

    def _paths(self, run_id: str) -> tuple[Path, Path]:
        if not run_id or any(c in run_id for c in "/\\\0") or run_id.startswith(".") or len(run_id) > 200:
            raise RunStoreError(f"{run_id[:60]!r} is not a run id")
        return self.folder / f"{run_id}.json", self.folder / f"{run_id}.curves.csv"

    def save(self, record: RunRecord) -> Path:
        """Write the curves, then the record (each atomically), so a listed record always has its curves."""
        meta, curves = self._paths(record.run_id)
        if os.path.lexists(self.folder) and not self.folder.is_dir():
            raise RunStoreError(f"{self.folder}: not a folder (pick a folder for the runs)")
        text = json.dumps(_finite(record.to_json()), indent=1)
        try:
            write_atomically(curves, lambda temp: temp.write_text(record.curves.to_csv(), encoding="utf-8"),
                             RunStoreError)
            write_atomically(meta, lambda temp: temp.write_text(text, encoding="utf-8"), RunStoreError)
        except OSError as exc:
            raise RunStoreError(f"{self.folder}: cannot write the run ({exc.strerror or exc})") from None
        return meta

    def load(self, run_id: str) -> RunRecord:
        meta, curves = self._paths(run_id)
        if not os.path.lexists(meta):
            raise RunStoreError(f"{meta.name}: no such run in {self.folder}")
        data = read_json_object(meta, meta.name, RunStoreError, limit=MAX_RUN_BYTES)
        curve_data = Curves()
        if os.path.lexists(curves):
            text = read_text(curves, MAX_CURVES_BYTES, curves.name, RunStoreError)
            try:
                curve_data = Curves.from_csv(text)
            except (ValueError, TypeError) as exc:
                raise RunStoreError(f"{curves.name}: not readable curves ({exc})") from None
        try:
            record = RunRecord.from_json(data, curve_data)
        except (ValueError, TypeError) as exc:
            raise RunStoreError(f"{meta.name}: not a readable run ({exc})") from None
        if record.run_id != run_id:
            raise RunStoreError(f"{meta.name}: its run_id is {record.run_id[:60]!r}, not the file's name")
        return record

    def run_ids(self) -> list[str]:
        """The ids of the run files in the folder, oldest name first (at most MAX_RUNS; the rest skipped)."""
        if not self.folder.is_dir():
            if os.path.lexists(self.folder):
                self.skipped.append(f"{self.folder}: not a folder (pick a folder for the runs)")
            return []
        try:
            names = sorted(entry.name for entry in os.scandir(self.folder) if entry.name.endswith(".json")
                           and not entry.name.startswith("."))
        except OSError as exc:
            self.skipped.append(f"{self.folder}: cannot list it ({exc.strerror or exc})")
            return []
        if len(names) > MAX_RUNS:
            self.skipped.append(f"{self.folder}: {len(names)} runs; only the newest {MAX_RUNS} by name are read")
            names = names[-MAX_RUNS:]
        return [name.removesuffix(".json") for name in names]

    def iter_list(self) -> Iterator[RunRecord | str]:
        """Each readable run, or the reason a file was skipped (text), one at a time: the window reads the
        folder on a worker thread and shows the runs as they come."""
        self.skipped = []
        for run_id in self.run_ids():
            try:
                yield self.load(run_id)
            except RunStoreError as exc:
                self.skipped.append(str(exc))
                yield str(exc)

    def list(self) -> list[RunRecord]:
        """Every readable run, oldest first; unreadable files are named in `skipped`, not raised."""
        records = [item for item in self.iter_list() if isinstance(item, RunRecord)]
        return sorted(records, key=lambda r: (r.created, r.run_id))

    def delete(self, run_id: str) -> None:
        meta, curves = self._paths(run_id)
        if not os.path.lexists(meta):
            raise RunStoreError(f"{meta.name}: no such run in {self.folder}")
        try:
            for path in (meta, curves):
                path.unlink(missing_ok=True)
        except OSError as exc:
            raise RunStoreError(f"{meta.name}: cannot delete it ({exc.strerror or exc})") from None


def _finite(value: Any) -> Any:
    """JSON has no NaN or infinity: write them as null rather than produce a file other tools refuse."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value
