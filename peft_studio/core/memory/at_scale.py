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
  momentum 0. torch's AdamW also keeps one fp32 step counter per trainable tensor (4 bytes each).
- Activations, counted op by op from what autograd saves for backward (the method of Korthikanti et al., 2022,
  "Reducing Activation Recomputation in Large Transformer Models", section 4.1, applied to each layer type of a
  decoder as transformers runs it: layer_flow.py follows, op by op, which tensors need a gradient, so a layer
  before or around the first trained part keeps only what that part's gradient needs). The attention
  implementation is part of the plan and named on the line: `sdpa` (transformers' default: q, K, V, the output
  and a logsumexp, never the L x L scores; with a padding mask, assumed whenever batch > 1, K/V repeated to
  every query head and the mask kept per layer), `eager` (the fp32 softmax output, its 16-bit cast copy, K and V
  repeated) or `flash` (flash-attention 2: q, K, V at their own head counts, output, logsumexp). RMSNorms keep
  their fp32 input and 1/rms, the SwiGLU MLP its SiLU input and output and the up output; PEFT's adapters keep
  fp32 copies of their inputs in a 16-bit run. Measured against transformers' Llama (sdpa and eager, fp32 and
  bf16, LoRA through PEFT) and the studio's tiny decoder (tests/core/test_memory_scale_measured.py). Encoder
  bases keep Korthikanti's eq. 1, s b h (34 + 5 a s / h) bytes at 16 bits. With gradient checkpointing each
  layer keeps only its input, h e per token, and one layer's full activations are live during its
  recomputation. Prompt tuning's tokens lengthen the sequence (s); prefix tuning's lengthen only the keys (k).
- Logits: the classification head's are tiny; a language-model loss would hold b s V in fp32 (not counted
  for the studio's classification task; `lm_logits_bytes` gives it separately).
- Runtime overhead (CUDA context, allocator fragmentation): a fixed 1 GiB, shown on its own line.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..bases.frozen import FrozenBase
from ..errors import ConfigError
from ..model.census import Census
from ..model.tensor_bytes import BYTES, nf4_bytes, quantizable
from .layer_flow import ATTENTIONS, stack_bytes, stack_parts

GIB = 1024**3
DEVICES_GB = (8, 16, 24, 40, 80)
WEIGHT_DTYPES = ("fp32", "bf16", "fp16", "nf4", "nf4-dq")
OPTIMIZERS = {"adamw": 8, "adam8bit": 2, "sgd": 0}  # state bytes per trainable parameter
STEP_COUNTER = {"adamw": 4, "adam8bit": 0, "sgd": 0}  # bytes per trainable tensor (torch AdamW's fp32 `step`)
OVERHEAD = GIB
MAX_TOKENS = 10_000_000  # batch x sequence beyond this is a typo, not a plan
# What each line's bytes are made of, for tooltips and --memory's text (the module docstring cites them).
FORMULAS = {
    "frozen": "frozen numel x bytes (fp32 4, bf16/fp16 2); NF4: numel/2 + 4 x numel/64 (QLoRA sec. 3); "
              "NF4-DQ: numel/2 + numel/64 + 4 x numel/(64 x 256); embeddings, norms, LM head stay bf16",
    "trainable": "trainable numel x 4 bytes (PEFT keeps adapter weights in fp32)",
    "gradients": "trainable numel x 4 bytes (one fp32 gradient per trainable weight)",
    "optimizer": "AdamW: 8 bytes/param (exp_avg + exp_avg_sq, fp32) + 4 per tensor (step); "
                 "8-bit Adam: 2 bytes/param (Dettmers et al., 2022); SGD: 0",
    "activations": "per layer, op by op, what the trained parts' gradients need: norms 4(h+1), attention (sdpa: "
                   "e(2q + 2 kv k/s) + 4a; eager: 4 a k + e(q + 2q k/s + a k); flash: as sdpa without masks), "
                   "MLP 3 e f, adapter inputs (fp32 under PEFT); checkpointed: L x h e + one layer "
                   "(Korthikanti et al., 2022; layer_flow.py)",
    "overhead": "fixed 1 GiB: CUDA context and allocator fragmentation",
}


@dataclass(frozen=True)
class MemoryPlan:
    weights: str = "bf16"
    optimizer: str = "adamw"
    batch: int = 1
    seq_len: int = 512
    checkpointing: bool = False
    extra_tokens: int = 0  # prompt tuning's tokens: the sequence grows
    extra_keys: int = 0  # prefix tuning's tokens: only the attention keys grow
    attention: str = "sdpa"  # transformers' attn_implementation: sdpa (its default), eager or flash

    def check(self) -> None:
        if self.attention not in ATTENTIONS:
            raise ConfigError(f"attention must be one of {', '.join(ATTENTIONS)} (got {self.attention!r})")
        if self.weights not in WEIGHT_DTYPES:
            raise ConfigError(f"weights must be one of {', '.join(WEIGHT_DTYPES)} (got {self.weights!r})")
        if self.optimizer not in OPTIMIZERS:
            raise ConfigError(f"optimizer must be one of {', '.join(OPTIMIZERS)} (got {self.optimizer!r})")
        if self.batch < 1 or self.seq_len < 1:
            raise ConfigError("batch and sequence length must be at least 1")
        if self.batch * (self.seq_len + self.extra_tokens) > MAX_TOKENS:
            raise ConfigError(f"batch x sequence length must be at most {MAX_TOKENS:,} tokens "
                              f"(got {self.batch} x {self.seq_len})")
        if self.extra_tokens < 0 or self.extra_keys < 0:
            raise ConfigError("prompt and prefix tokens cannot be negative")

    @property
    def tokens(self) -> int:
        """The sequence one layer sees: the text plus any prompt tokens."""
        return self.seq_len + self.extra_tokens

    @property
    def keys(self) -> int:
        """The keys attention sees: the sequence plus any prefix tokens."""
        return self.tokens + self.extra_keys


@dataclass(frozen=True)
class Ledger:
    lines: tuple[tuple[str, int], ...]  # (what, bytes), overhead last
    keys: tuple[str, ...] = ()  # the FORMULAS key of each line

    @property
    def total(self) -> int:
        return sum(size for _, size in self.lines)

    def fits(self, device_gb: float) -> bool:
        return self.total <= device_gb * GIB

    def fit_line(self, devices: tuple[int, ...] = DEVICES_GB) -> str:
        marks = [f"{gb} GB {'yes' if self.fits(gb) else 'no'}" for gb in devices]
        return f"needs {self.total / GIB:.1f} GiB: " + ", ".join(marks)

    def verdict(self, device_gb: float) -> str:
        """One line for the chosen device: "fits in 24 GB (19.3 of 24 GiB)" or "does not fit in 24 GB (...)"."""
        word = "fits" if self.fits(device_gb) else "does not fit"
        return f"{word} in {device_gb:g} GB ({self.total / GIB:.1f} of {device_gb:g} GiB)"

    def formula(self, index: int) -> str:
        return FORMULAS.get(self.keys[index], "") if index < len(self.keys) else ""


def frozen_storage(census: Census, chosen: str) -> str:
    """The frozen weights' storage to count: NF4 when the method itself quantized the base (QLoRA builds
    NF4 with one fp32 scale per 64 weights, no double quantization), else the chosen dtype."""
    return "nf4" if census.quantization is not None else chosen


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


def element_bytes(weights: str) -> int:
    """Bytes per activation element: fp32 runs in fp32; bf16, fp16 and NF4 (bf16 compute) in 16 bits."""
    return 4 if weights == "fp32" else 2


def activation_bytes(base: FrozenBase, plan: MemoryPlan, census: Census | None = None,
                     studio_decoder: bool = False) -> int:
    """All layers' saved activations for one step (see the module docstring). `studio_decoder` models the studio's
    own decoder code instead of transformers' (a boolean mask kept, softmax in the run's dtype), for tests."""
    e = element_bytes(plan.weights)
    style = getattr(getattr(base, "cfg", None), "style", None)
    if style in ("llama", "gpt2") and census is not None:
        stack = stack_parts(census, base)
        sizes = stack_bytes(base, stack, e, plan.attention, plan.batch, plan.tokens, plan.keys,
                            prefix_everywhere=plan.extra_keys > 0 and not any(p.prefix for p in stack.layers),
                            studio_decoder=studio_decoder)
        layers, tail = sizes[:-1], sizes[-1]
        if plan.checkpointing:  # each layer the gradient reaches keeps its input; one is recomputed at a time
            reached = sum(1 for size in layers if size)
            return reached * plan.batch * plan.tokens * base.hidden_size * e + max(layers, default=0) + tail
        return sum(layers) + tail
    layer, layer_input = _encoder_layer_bytes(base, plan, e)
    layers = backward_layers(base, census) if census is not None else max(base.num_layers, 1)
    if layers == 0:  # only the head trains: nothing inside the stack needs a gradient
        return 0
    if plan.checkpointing:  # layer inputs only, plus one layer recomputed at a time
        return layers * layer_input + layer
    return layers * layer


def _encoder_layer_bytes(base: FrozenBase, plan: MemoryPlan, e: int) -> tuple[int, int]:
    """(one encoder layer's activation bytes, its checkpointed input), batch included: Korthikanti et al. eq. 1
    (16-bit; scaled to e), no per-linear split."""
    cfg = getattr(base, "cfg", None)
    s, k, b, h = plan.tokens, plan.keys, plan.batch, base.hidden_size
    heads = getattr(cfg, "num_heads", None) or getattr(cfg, "n_heads", 1)
    return b * (s * h * 34 + 5 * heads * s * k) * e // 2, b * s * h * e


def backward_layers(base: FrozenBase, census: Census) -> int:
    """Layers the gradient runs through: from the first layer holding a trainable tensor to the last (a trainable
    part outside the stack before it, such as a soft prompt, means all). Earlier layers keep nothing for backward;
    the first one is counted whole, an upper bound of at most one layer."""
    layer_of = {s.id: s.layer for s in base.sites()}
    layer_of.update({s.module_path: s.layer for s in base.sites()})
    first = base.num_layers
    for row in census.rows:
        if not row.trainable or row.owner == "head":
            continue
        layer = layer_of.get(row.site, _layer_in_name(row.name))
        first = 0 if layer is None else min(first, layer)
    return max(base.num_layers - first, 0)


def _layer_in_name(name: str) -> int | None:
    """`...layers.3.` / `...h.3.`: the layer of a tensor whose site the base does not list (full fine-tuning)."""
    parts = name.split(".")
    for before, part in zip(parts, parts[1:], strict=False):
        if before in ("layers", "h", "layer") and part.isdigit():
            return int(part)
    return None


def optimizer_bytes(census: Census, optimizer: str) -> int:
    tensors = sum(1 for row in census.rows if row.trainable)
    return OPTIMIZERS[optimizer] * census.trainable + STEP_COUNTER[optimizer] * tensors


def ledger(census: Census, base: FrozenBase, plan: MemoryPlan) -> Ledger:
    plan.check()
    trainable = census.trainable
    extra = (f", +{plan.extra_tokens} prompt tokens" if plan.extra_tokens else "") + \
        (f", +{plan.extra_keys} prefix keys" if plan.extra_keys else "")
    lines = (
        (f"frozen weights ({plan.weights})", frozen_weight_bytes(census, base, plan.weights)),
        ("trainable weights (fp32)", 4 * trainable),
        ("gradients (fp32)", 4 * trainable),
        (f"optimizer state ({plan.optimizer})", optimizer_bytes(census, plan.optimizer)),
        (f"activations (batch {plan.batch} x {plan.seq_len} tokens{extra}, {_attention_words(base, plan)}"
         f"{', checkpointed' if plan.checkpointing else ''})", activation_bytes(base, plan, census)),
        ("runtime overhead (CUDA context, fragmentation)", OVERHEAD),
    )
    return Ledger(lines, ("frozen", "trainable", "gradients", "optimizer", "activations", "overhead"))


def _attention_words(base: FrozenBase, plan: MemoryPlan) -> str:
    """Which attention the activations assume (decoders), or the encoder formula's."""
    if getattr(getattr(base, "cfg", None), "style", None) not in ("llama", "gpt2"):
        return "eager attention (Korthikanti eq. 1)"
    padded = ", padded batches" if plan.attention == "sdpa" and plan.batch > 1 else ""
    return f"{plan.attention} attention{padded}"


def lm_logits_bytes(base: FrozenBase, plan: MemoryPlan) -> int:
    """What a next-token loss would add: b x s x V logits in fp32 (not part of the classification ledger)."""
    vocab = getattr(getattr(base, "cfg", None), "vocab_size", 0)
    return 4 * plan.batch * (plan.seq_len + plan.extra_tokens) * vocab


def plan_for(shape_change: Any, **choices: Any) -> MemoryPlan:
    """A plan for an experiment: its method's prompt/prefix tokens (ShapeChange) plus the user's choices."""
    return MemoryPlan(extra_tokens=getattr(shape_change, "input_tokens", 0),
                      extra_keys=getattr(shape_change, "key_tokens", 0), **choices)


def ledger_text(book: Ledger, device_gb: float) -> list[str]:
    """The ledger as aligned text lines: each line's bytes and GiB, the total, the verdict and the fit line."""
    width = max(len(what) for what, _ in book.lines)
    rows = [f"{what:{width}}  {size:>18,} B  {size / GIB:8.2f} GiB" for what, size in book.lines]
    rows.append(f"{'total':{width}}  {book.total:>18,} B  {book.total / GIB:8.2f} GiB")
    rows.append(book.verdict(device_gb))
    rows.append(book.fit_line())
    return rows


def ledger_json(book: Ledger, plan: MemoryPlan, device_gb: float) -> dict[str, Any]:
    """The same for `inspect --json` (an additive "memory" key)."""
    return {"plan": {"weights": plan.weights, "optimizer": plan.optimizer, "batch": plan.batch,
                     "seq_len": plan.seq_len, "checkpointing": plan.checkpointing,
                     "prompt_tokens": plan.extra_tokens, "prefix_keys": plan.extra_keys,
                     "attention": plan.attention},
            "lines": [{"key": key, "what": what, "bytes": size, "formula": FORMULAS[key]}
                      for key, (what, size) in zip(book.keys, book.lines, strict=True)],
            "total_bytes": book.total, "device_gb": device_gb, "fits": book.fits(device_gb),
            "verdict": book.verdict(device_gb),
            "fit": {str(gb): book.fits(gb) for gb in DEVICES_GB}, "fit_line": book.fit_line()}
