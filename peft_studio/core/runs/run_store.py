"""Run records and the run store: one JSON file + one curves CSV per run, in a folder the user can pick."""

from __future__ import annotations

import csv
import io
import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..errors import RunStoreError
from ..files.safe_io import write_atomically
from ..files.user_dirs import user_data_dir
from ..memory.ledger import Ledger

RUN_FORMAT = "peft-studio-run/1"
CURVE_COLUMNS = ("step", "loss", "accuracy", "val_loss", "val_accuracy")


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
    def from_csv(cls, text: str) -> Curves:
        reader = csv.reader(io.StringIO(text))
        if tuple(next(reader, ())) != CURVE_COLUMNS:
            raise ValueError(f"the header must be {','.join(CURVE_COLUMNS)}")
        curves = cls()
        for row in reader:
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
        if data.get("format") != RUN_FORMAT:
            raise ValueError(f"not a PEFT Studio run (format {data.get('format')!r})")
        values = {k: data[k] for k in cls.__dataclass_fields__ if k in data and k != "curves"}
        for key in ("memory", "memory_estimate"):
            if values.get(key) is not None:
                values[key] = Ledger.from_dict(values[key])
        return cls(**values, curves=curves or Curves())


def default_runs_dir() -> Path:
    """runs/ in the user's data directory (core/files/user_dirs.py)."""
    return user_data_dir() / "runs"


class RunStore:
    """Run records in one folder: <run_id>.json (everything but the curves) and <run_id>.curves.csv."""

    def __init__(self, folder: str | Path | None = None) -> None:
        self.folder = Path(folder).expanduser() if folder is not None else default_runs_dir()
        if self.folder.exists() and not self.folder.is_dir():
            raise RunStoreError(f"{self.folder}: not a folder (pick a folder for the runs)")
        self.skipped: list[str] = []  # files the last list() could not read, with why

    def _paths(self, run_id: str) -> tuple[Path, Path]:
        if not run_id or any(c in run_id for c in "/\\") or run_id.startswith("."):
            raise RunStoreError(f"{run_id!r} is not a run id")
        return self.folder / f"{run_id}.json", self.folder / f"{run_id}.curves.csv"

    def save(self, record: RunRecord) -> Path:
        """Write the curves, then the record (each atomically), so a listed record always has its curves."""
        meta, curves = self._paths(record.run_id)
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
        try:
            data = json.loads(meta.read_text(encoding="utf-8"))
            curve_data = Curves.from_csv(curves.read_text(encoding="utf-8")) if curves.exists() else Curves()
            return RunRecord.from_json(data, curve_data)
        except FileNotFoundError:
            raise RunStoreError(f"{meta.name}: no such run in {self.folder}") from None
        except (OSError, ValueError, TypeError, KeyError) as exc:
            raise RunStoreError(f"{meta.name}: not a readable run ({exc})") from None

    def list(self) -> list[RunRecord]:
        """Every readable run, oldest first; unreadable files are named in `skipped`, not raised."""
        self.skipped = []
        if not self.folder.is_dir():
            return []
        records = []
        for path in sorted(self.folder.glob("*.json")):
            try:
                records.append(self.load(path.stem))
            except RunStoreError as exc:
                self.skipped.append(str(exc))
        return sorted(records, key=lambda r: (r.created, r.run_id))

    def delete(self, run_id: str) -> None:
        meta, curves = self._paths(run_id)
        if not meta.exists():
            raise RunStoreError(f"{meta.name}: no such run in {self.folder}")
        for path in (meta, curves):
            path.unlink(missing_ok=True)


def _finite(value: Any) -> Any:
    """JSON has no NaN or infinity: write them as null rather than produce a file other tools refuse."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value
