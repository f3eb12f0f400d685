"""One row per tensor of a model: who owns it, where it sits, what it costs, whether it trains."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from ..bases.sites import SiteIndex
from .quant import NF4Linear
from .studio_model import StudioModel


@dataclass(frozen=True)
class CensusRow:
    name: str  # qualified name in the model
    site: str  # the site or module it belongs to
    owner: str  # "base", "method" or "head"
    shape: tuple[int, ...]
    numel: int
    dtype: str
    bytes: int
    trainable: bool

    def to_json(self) -> dict:
        row = asdict(self)
        row["shape"] = list(self.shape)
        return row


@dataclass(frozen=True)
class QuantizationReport:
    """What 4-bit storage of the base's Linears costs and saves."""

    tensors: int
    stored_bytes: int  # NF4 codes + block scales
    fp32_bytes: int  # the same weights in fp32
    max_abs_error: float  # max |W - dequant(W)| over all quantized weights
    relative_rms: float  # ||W - dequant(W)|| / ||W||, worst tensor

    @property
    def ratio(self) -> float:
        return self.stored_bytes / self.fp32_bytes


@dataclass(frozen=True)
class Census:
    rows: tuple[CensusRow, ...]
    quantization: QuantizationReport | None = None

    @property
    def total(self) -> int:
        return sum(r.numel for r in self.rows)

    @property
    def trainable(self) -> int:
        return sum(r.numel for r in self.rows if r.trainable)

    @property
    def trainable_percent(self) -> float:
        return 100.0 * self.trainable / self.total if self.total else 0.0

    @property
    def trainable_bytes(self) -> int:
        """What an adapter file stores (fp32 trainable tensors)."""
        return sum(r.bytes for r in self.rows if r.trainable)

    @property
    def stored_bytes(self) -> int:
        return sum(r.bytes for r in self.rows)

    def by_owner(self, owner: str) -> int:
        return sum(r.numel for r in self.rows if r.owner == owner)

    def trainable_of(self, owner: str) -> int:
        return sum(r.numel for r in self.rows if r.owner == owner and r.trainable)

    def to_json(self) -> dict:
        return {"total": self.total, "trainable": self.trainable, "tensors": [r.to_json() for r in self.rows]}


def _site_of(name: str, sites: SiteIndex, kind: str | None = None) -> str:
    """The site whose module holds this tensor, else the tensor's own module path. A method module on one
    of two sites sharing a module path (IA3 on a Linear's input or output) names its own kind's site."""
    path = name.removeprefix("base.").rsplit(".", 1)[0]
    site = sites.owner(path, kind)
    return site.id if site is not None else path


def take_census(model: StudioModel) -> Census:
    sites = model.base.site_index()
    rows: list[CensusRow] = []
    quantized: list[NF4Linear] = []
    seen: set[int] = set()
    for module_name, module in model.named_modules():  # module order keeps a 4-bit weight beside its bias
        kind = getattr(module, "site_kind", None)
        prefix = f"{module_name}." if module_name else ""
        if isinstance(module, NF4Linear):
            quantized.append(module)
            rows.append(_quantized_row(f"{prefix}weight_nf4", module, sites))
        for local, parameter in module.named_parameters(recurse=False):
            if id(parameter) in seen:
                continue
            seen.add(id(parameter))
            name = prefix + local
            dtype = str(parameter.dtype).removeprefix("torch.")
            rows.append(CensusRow(name, _site_of(name, sites, kind), model.owner_of(parameter), tuple(parameter.shape),
                                  parameter.numel(), dtype, parameter.numel() * parameter.element_size(),
                                  parameter.requires_grad))
    return Census(tuple(rows), _quantization_report(quantized))


def _quantization_report(modules: list[NF4Linear]) -> QuantizationReport | None:
    if not modules:
        return None
    return QuantizationReport(len(modules), sum(m.stored_bytes for m in modules),
                              sum(4 * m.in_features * m.out_features for m in modules),
                              max(m.error.max_abs for m in modules), max(m.error.relative_rms for m in modules))


def _quantized_row(name: str, module: NF4Linear, sites: SiteIndex) -> CensusRow:
    shape = (module.out_features, module.in_features)  # the logical weight, stored in 4 bits
    return CensusRow(name, _site_of(name, sites), "base", shape, shape[0] * shape[1], "nf4",
                     module.stored_bytes, False)
