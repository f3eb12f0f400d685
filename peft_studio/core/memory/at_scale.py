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
  "Reducing Activation Recomputation in Large Transformer Models", section 4.1, applied to each layer type
  instead of their GPT layer). Per token and layer of a Llama-style decoder, with e bytes per element (2 in
  bf16/fp16/NF4-compute, 4 in fp32), q = query width, f = MLP width, a = query heads, s query tokens and k keys:
    two RMSNorms: each keeps its input upcast to fp32 and 1/rms: 2 x 4 (h + 1)      (transformers' LlamaRMSNorm)
    attention: e (q + k/s 2 q) + a k e + k (bool mask)   q, K and V (K/V repeated to every query head before
               the matmuls, as transformers' eager attention's repeat_kv does, so GQA saves nothing here), the
               softmax output, the causal mask
    MLP: 3 f e                                          SiLU's input, its output and up's output (the product)
    plus the input of each linear that trains (the LoRA A input or the full weight's gradient needs it):
               h e for q/k/v, q e for o, h e for gate/up, f e for down, and r e per LoRA module (A's output).
  Linears that do not train keep nothing (autograd saves only what the wanted gradients need). The first layer's
  input norm keeps nothing (the frozen embeddings' output needs no gradient) and the final norm keeps the same,
  so L layers count 2 norms each. Checked exactly against the saved tensors of one step on `tiny-decoder`
  (tests/core/test_memory_scale_measured.py). GPT-2 style: LayerNorm keeps its input (e) and fp32 mean and
  rstd, q/k/v are one c_attn output (3 h e), GELU keeps its input (f e). Encoder bases keep Korthikanti's
  eq. 1, s b h (34 + 5 a s / h) bytes at 16 bits. With gradient checkpointing each layer keeps only its input,
  h e per token, and one layer's full activations are live during its recomputation. Prompt tuning's tokens
  lengthen the sequence (s); prefix tuning's lengthen only the keys (k).
- Logits: the classification head's are tiny; a language-model loss would hold b s V in fp32 (not counted
  for the studio's classification task; `lm_logits_bytes` gives it separately).
- Runtime overhead (CUDA context, allocator fragmentation): a fixed 1 GiB, shown on its own line.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..bases.frozen import FrozenBase
from ..bases.sites import LINEAR, NORM
from ..errors import ConfigError
from ..model.census import Census
from ..model.tensor_bytes import BYTES, nf4_bytes, quantizable

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
    "activations": "per layer, per token: 2 norms x 4(h+1) + e(q + 2q k/s + a k + 3f) + k + e x inputs of the "
                   "trained linears (+ r per LoRA); checkpointed: L x h e + one layer (Korthikanti et al., 2022)",
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

    def check(self) -> None:
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


_SHARED_INPUT = {"q_proj": "attn-in", "k_proj": "attn-in", "v_proj": "attn-in",
                 "gate_proj": "mlp-in", "up_proj": "mlp-in"}  # linears that read one saved tensor


def trained_inputs_per_token(census: Census, base: FrozenBase) -> int:
    """Elements per token the trained parts keep: each trained linear's input (once per shared input), each LoRA
    module's rank-r intermediate (A x) and each trained norm weight's normed input."""
    sites = {s.id: s for s in base.sites() if s.kind == LINEAR}
    trained = {row.site for row in census.rows if row.trainable and row.site in sites}
    norms = {s.id: s for s in base.sites() if s.kind == NORM}  # a trained norm weight keeps its normed input
    trained_norms = sum(norms[site].in_features for site in {row.site for row in census.rows
                                                               if row.trainable and row.site in norms})
    inputs: dict[tuple[Any, str], int] = {}
    for site_id in trained:
        site = sites[site_id]
        inputs[(site.layer, _SHARED_INPUT.get(site.name, site.id))] = site.in_features
    ranks = sum(row.shape[0] for row in census.rows
                if row.trainable and row.site in sites and row.name.endswith(".lora_A") and row.shape)
    return sum(inputs.values()) + ranks + trained_norms


def _layer_bytes(base: FrozenBase, plan: MemoryPlan, e: int) -> tuple[int, int]:
    """(one layer's fixed activation bytes, what the checkpointed layer input costs), batch included."""
    cfg = getattr(base, "cfg", None)
    s, k, b, h = plan.tokens, plan.keys, plan.batch, base.hidden_size
    style = getattr(cfg, "style", None)
    if style == "llama":
        q, f, a = cfg.q_width, cfg.intermediate_size, cfg.num_heads
        per_layer = (2 * 4 * (h + 1) * s  # RMSNorm: fp32 input + 1/rms, twice
                     + e * (q * s + 2 * q * k)  # q, and K/V repeated to every query head
                     + e * a * s * k + s * k  # softmax output + boolean causal mask
                     + 3 * f * e * s)  # SiLU in, SiLU out, up out
        return b * per_layer, b * s * h * e
    if style == "gpt2":
        a, f = cfg.num_heads, cfg.intermediate_size
        per_layer = (2 * (h * e + 8) * s  # LayerNorm: input + fp32 mean and rstd, twice
                     + 3 * h * e * s + 2 * h * e * (k - s)  # c_attn's output (q, k, v); prefix keys appended
                     + e * a * s * k + s * k  # softmax output + mask
                     + f * e * s)  # GELU's input
        return b * per_layer, b * s * h * e
    # an encoder: Korthikanti et al. eq. 1 (16-bit; scaled to e), no per-linear split
    heads = getattr(cfg, "num_heads", None) or getattr(cfg, "n_heads", 1)
    return b * (s * h * 34 + 5 * heads * s * k) * e // 2, b * s * h * e


def activation_bytes(base: FrozenBase, plan: MemoryPlan, census: Census | None = None) -> int:
    """All layers' saved activations for one step (see the module docstring)."""
    e = element_bytes(plan.weights)
    layer, layer_input = _layer_bytes(base, plan, e)
    layers = backward_layers(base, census) if census is not None else max(base.num_layers, 1)
    if layers == 0:  # only the head trains: nothing inside the stack needs a gradient
        return 0
    decoder = getattr(getattr(base, "cfg", None), "style", None) in ("llama", "gpt2")
    trained = (trained_inputs_per_token(census, base) * e * plan.tokens * plan.batch
               if census is not None and decoder else 0)
    full = layers * layer + trained
    if plan.checkpointing:  # layer inputs only, plus one layer recomputed at a time
        return layers * layer_input + layer + trained // layers
    return full


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
        (f"activations (batch {plan.batch} x {plan.seq_len} tokens{extra}"
         f"{', checkpointed' if plan.checkpointing else ''})", activation_bytes(base, plan, census)),
        ("runtime overhead (CUDA context, fragmentation)", OVERHEAD),
    )
    return Ledger(lines, ("frozen", "trainable", "gradients", "optimizer", "activations", "overhead"))


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
                     "prompt_tokens": plan.extra_tokens, "prefix_keys": plan.extra_keys},
            "lines": [{"key": key, "what": what, "bytes": size, "formula": FORMULAS[key]}
                      for key, (what, size) in zip(book.keys, book.lines, strict=True)],
            "total_bytes": book.total, "device_gb": device_gb, "fits": book.fits(device_gb),
            "verdict": book.verdict(device_gb),
            "fit": {str(gb): book.fits(gb) for gb in DEVICES_GB}, "fit_line": book.fit_line()}
