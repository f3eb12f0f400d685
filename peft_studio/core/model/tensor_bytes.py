"""What each census tensor costs in fp32, bf16 and NF4: the columns a memory plan starts from.

The census itself reports the bytes of the tensors as they are (fp32 in the studio; nothing at all
on the meta device). These columns say what the same tensors take in the dtypes people load models in:

- fp32: 4 bytes per element; bf16: 2 bytes per element.
- nf4: QLoRA's storage (Dettmers et al., 2023, "QLoRA", section 3): the base's Linear weights as 4-bit
  NormalFloat codes (half a byte per weight) plus one fp32 absmax constant per block of 64 weights
  (32/64 = 0.5 extra bits per weight); with double quantization the constants are themselves 8-bit,
  in blocks of 256 with one fp32 constant each (8/64 + 32/(64*256) = 0.127 extra bits per weight).
  This is bitsandbytes' `quantize_4bit` layout (block size 64), which the studio's QLoRA uses. Every
  other tensor (embeddings, norms, biases, the LM head, which transformers keeps unquantized, and the
  trainable tensors) counts in bf16 in this column.
"""

from __future__ import annotations

from ..bases.frozen import FrozenBase
from ..bases.sites import LINEAR
from .census import Census, CensusRow

NF4_BLOCK = 64  # weights per absmax constant (bitsandbytes / QLoRA)
DQ_BLOCK = 256  # absmax constants per second-level fp32 constant (double quantization)
BYTES = {"fp32": 4, "bf16": 2, "fp16": 2}


def nf4_bytes(numel: int, double_quant: bool = False) -> int:
    """Bytes of one weight tensor in NF4: packed codes + block constants (+ second-level constants)."""
    blocks = -(-numel // NF4_BLOCK)
    codes = (numel + 1) // 2
    if not double_quant:
        return codes + 4 * blocks
    return codes + blocks + 4 * -(-blocks // DQ_BLOCK)


def quantizable(row: CensusRow, linear_sites: set[str]) -> bool:
    """A frozen base weight of one of the base's Linear sites: what QLoRA stores in 4 bits."""
    return row.owner == "base" and row.site in linear_sites and len(row.shape) == 2 and \
        row.name.rsplit(".", 1)[-1] in ("weight", "weight_nf4")


def row_bytes(row: CensusRow, nf4: bool, double_quant: bool = False) -> dict[str, int]:
    """{"fp32": ..., "bf16": ..., "nf4": ...} for one row; `nf4` says whether QLoRA would quantize it."""
    return {"fp32": 4 * row.numel, "bf16": 2 * row.numel,
            "nf4": nf4_bytes(row.numel, double_quant) if nf4 else 2 * row.numel}


def dtype_columns(census: Census, base: FrozenBase, double_quant: bool = False) -> list[dict[str, int]]:
    """One {"fp32", "bf16", "nf4"} dict per census row, in row order."""
    linear_sites = {s.id for s in base.sites() if s.kind == LINEAR}
    return [row_bytes(row, quantizable(row, linear_sites), double_quant) for row in census.rows]


def census_json(census: Census, base: FrozenBase) -> dict:
    """The census JSON with, per tensor, bytes_fp32 / bytes_bf16 / bytes_nf4, and their totals (additive keys)."""
    data = census.to_json()
    columns = dtype_columns(census, base)
    for tensor, column in zip(data["tensors"], columns, strict=True):
        for dtype, size in column.items():
            tensor[f"bytes_{dtype}"] = size
    for dtype in ("fp32", "bf16", "nf4"):
        data[f"bytes_{dtype}"] = sum(column[dtype] for column in columns)
    data["on_meta_device"] = base.on_meta_device
    return data
