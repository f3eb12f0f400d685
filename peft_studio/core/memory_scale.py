"""Memory at scale: what training a method on a (meta-device) base needs on one accelerator, line by line.

Qt-free; every figure comes from the census (exact tensor shapes) and the formulas below, each cited:

- Frozen weights: bytes per element of the chosen dtype (bf16/fp16 2, fp32 4); NF4 per QLoRA (Dettmers et
  al., 2023, section 3): 4-bit codes + one fp32 absmax per 64 weights (0.5 bit/weight), or with double
  quantization 8-bit absmax + one fp32 constant per 256 of them (0.127 bit/weight). Only the base's Linear
  weights are quantized; embeddings, norms and the LM head stay in bf16 (tensor_bytes.py).
- Trainable weights and their gradients: fp32, 4 bytes each (PEFT keeps adapter weights in fp32).
- Optimizer state: AdamW two fp32 moments = 8 bytes/parameter (Loshchilov & Hutter; ZeRO paper's "K = 12"
  counts 4 + 8 with the master copy); 8-bit Adam two 8-bit moments = 2 bytes/parameter (Dettmers et al.,
  2022, "8-bit Optimizers via Block-wise Quantization"; block constants ignored, < 0.1%); SGD without
  momentum 0.
- Activations per layer, 16-bit, without recomputation: s b h (34 + 5 a s / h) bytes (Korthikanti et al.,
  2022, "Reducing Activation Recomputation in Large Transformer Models", eq. 1, GPT-style layer without
  flash attention; an estimate for SwiGLU/GQA layers). With gradient checkpointing each layer keeps only its
  input, 2 s b h bytes, and one layer's full activations are live during its recomputation.
  s counts prompt/prefix tokens too (prompt tuning lengthens the sequence; prefix keys add 2 n b h_kv x 2
  bytes per layer, included as extra sequence here).
- Logits: the classification head's are tiny; a language-model loss would hold b s V in fp32 (not counted
  for the studio's classification task; `lm_logits_bytes` gives it separately).
- Runtime overhead (CUDA context, allocator fragmentation): a fixed 1 GiB, shown on its own line.
"""

from __future__ import annotations

from dataclasses import dataclass

from .bases.frozen import FrozenBase
from .census import Census
from .errors import ConfigError
from .tensor_bytes import BYTES, dtype_columns, nf4_bytes, quantizable

GIB = 1024**3
DEVICES_GB = (8, 16, 24, 40, 80)
WEIGHT_DTYPES = ("fp32", "bf16", "fp16", "nf4", "nf4-dq")
OPTIMIZERS = {"adamw": 8, "adam8bit": 2, "sgd": 0}  # state bytes per trainable parameter
OVERHEAD = GIB


@dataclass(frozen=True)
class MemoryPlan:
    weights: str = "bf16"
    optimizer: str = "adamw"
    batch: int = 1
    seq_len: int = 512
    checkpointing: bool = False
    extra_tokens: int = 0  # prompt / prefix tokens added to the sequence

    def check(self) -> None:
        if self.weights not in WEIGHT_DTYPES:
            raise ConfigError(f"weights must be one of {', '.join(WEIGHT_DTYPES)} (got {self.weights!r})")
        if self.optimizer not in OPTIMIZERS:
            raise ConfigError(f"optimizer must be one of {', '.join(OPTIMIZERS)} (got {self.optimizer!r})")
        if self.batch < 1 or self.seq_len < 1:
            raise ConfigError("batch and sequence length must be at least 1")


@dataclass(frozen=True)
class Ledger:
    lines: tuple[tuple[str, int], ...]  # (what, bytes), overhead last

    @property
    def total(self) -> int:
        return sum(size for _, size in self.lines)

    def fits(self, device_gb: float) -> bool:
        return self.total <= device_gb * GIB

    def fit_line(self, devices: tuple[int, ...] = DEVICES_GB) -> str:
        marks = [f"{gb} GB {'yes' if self.fits(gb) else 'no'}" for gb in devices]
        return f"needs {self.total / GIB:.1f} GiB: " + ", ".join(marks)


def frozen_weight_bytes(census: Census, base: FrozenBase, weights: str) -> int:
    """The frozen tensors in the chosen storage (trainable ones are counted on their own line)."""
    linear_sites = {s.id for s in base.sites() if s.kind == "linear"}
    total = 0
    for row in census.rows:
        if row.trainable:
            continue
        if weights.startswith("nf4") and quantizable(row, linear_sites):
            total += nf4_bytes(row.numel, double_quant=weights == "nf4-dq")
        else:
            total += row.numel * BYTES.get(weights, 2)  # nf4 keeps the rest in bf16
    return total


def activation_bytes(base: FrozenBase, plan: MemoryPlan) -> int:
    """All layers' saved activations (Korthikanti et al., 2022), 16-bit."""
    s, b, h = plan.seq_len + plan.extra_tokens, plan.batch, base.hidden_size
    heads = getattr(getattr(base, "cfg", None), "num_heads", None) or getattr(getattr(base, "cfg", None), "n_heads", 1)
    full_layer = s * b * h * 34 + 5 * heads * s * s * b
    layers = max(base.num_layers, 1)
    if plan.checkpointing:
        return layers * 2 * s * b * h + full_layer
    return layers * full_layer


def ledger(census: Census, base: FrozenBase, plan: MemoryPlan) -> Ledger:
    plan.check()
    trainable = census.trainable
    lines = (
        (f"frozen weights ({plan.weights})", frozen_weight_bytes(census, base, plan.weights)),
        ("trainable weights (fp32)", 4 * trainable),
        ("gradients (fp32)", 4 * trainable),
        (f"optimizer state ({plan.optimizer})", OPTIMIZERS[plan.optimizer] * trainable),
        (f"activations (batch {plan.batch} x {plan.seq_len + plan.extra_tokens} tokens"
         f"{', checkpointed' if plan.checkpointing else ''})", activation_bytes(base, plan)),
        ("runtime overhead (CUDA context, fragmentation)", OVERHEAD),
    )
    return Ledger(lines)


def lm_logits_bytes(base: FrozenBase, plan: MemoryPlan) -> int:
    """What a next-token loss would add: b x s x V logits in fp32 (not part of the classification ledger)."""
    vocab = getattr(getattr(base, "cfg", None), "vocab_size", 0)
    return 4 * plan.batch * (plan.seq_len + plan.extra_tokens) * vocab


def census_dtype_total(census: Census, base: FrozenBase, dtype: str) -> int:
    """Every tensor of the census in one of the columns of tensor_bytes (fp32, bf16, nf4)."""
    return sum(column[dtype] for column in dtype_columns(census, base))
