"""What one decoder layer keeps for backward, op by op, from which of its tensors need a gradient.

Autograd keeps a tensor only when a gradient will be computed through the op that reads it: a matmul keeps its
left operand for the right one's gradient and the other way round, a norm keeps its input only when its input
needs a gradient, a frozen Linear keeps nothing (its input's gradient needs only W). So what a layer keeps depends
on where the trainable parts are: the first trained layer of a LoRA-on-v model keeps the softmax (for V's
gradient) but not q or K. This module follows that rule through a transformers-style Llama layer (RMSNorm ->
q/k/v -> rotary -> attention -> o -> add -> RMSNorm -> SwiGLU -> add) and a GPT-2 block, for three attention
implementations as transformers runs them:

    eager  matmul + softmax: q and K (repeated to every query head for GQA), the softmax output in fp32 and, in
           16-bit runs, its cast copy, and V (repeated); the mask is added, not kept
    sdpa   torch's scaled_dot_product_attention (the default): q, K, V, the output and a logsumexp (fp32 per head
           and query), never the L x L scores; with a padding mask (assumed whenever batch > 1) transformers
           repeats K/V to every query head and the kernel keeps the expanded mask (one element per query and key)
    flash  flash-attention 2: q, K and V at their own head counts, the output and the logsumexp; no mask

and for the PEFT layers on a Linear (PEFT keeps adapter weights in fp32, so a 16-bit run casts each adapted
Linear's input to fp32, one copy per module; in fp32 the cast is a no-op and Linears reading one tensor share it):
LoRA keeps that input and A's output (r); DoRA also the frozen output and the LoRA output (out each); VeRA keeps
lambda_d's input (r) and lambda_b's input (out), not x (its A is frozen); IA3 keeps the scaled tensor; a Linear
whose weight trains keeps its input. Measured against transformers' Llama under each implementation and against
the studio's tiny decoder (tests/core/test_memory_scale_measured.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..bases.sites import ADAPTER, KV_PREFIX, LINEAR, LINEAR_INPUT, NORM

ATTENTIONS = ("sdpa", "eager", "flash")
ADAPTER_DTYPE_BYTES = 4  # PEFT keeps adapter weights (and so the inputs it casts for them) in fp32


@dataclass
class SiteParts:
    """What trains at one site of a layer (from the census)."""

    lora_r: int = 0  # LoRA / QLoRA / DoRA rank
    dora: bool = False
    vera_r: int = 0
    ia3: bool = False  # a scale on this site's tensor (an output, an input or an activation)
    weight: bool = False  # the site's own weight trains (full fine-tuning, LayerNorm tuning)
    adapter_m: int = 0  # a bottleneck adapter of width m
    adapter_keeps_output: bool = False  # its nonlinearity keeps its output (tanh, ReLU), which up reads too

    @property
    def any(self) -> bool:
        return bool(self.lora_r or self.dora or self.vera_r or self.ia3 or self.weight or self.adapter_m)


@dataclass
class LayerParts:
    """Trained parts of one layer by the layer's own site names (q_proj, q_proj-in, ffn-act, attn-norm, kv, ...)."""

    sites: dict[str, SiteParts] = field(default_factory=dict)
    prefix: bool = False  # trained prefix keys/values in this attention

    def at(self, name: str) -> SiteParts:
        return self.sites.get(name, SiteParts())


@dataclass(frozen=True)
class Dims:
    hidden: int
    q: int  # query width (heads x head dim)
    kv: int  # key/value width
    heads: int
    ffn: int


@dataclass
class _Saved:
    """Bytes kept, with tensors that several ops read counted once (by name)."""

    total: int = 0
    shared: set = field(default_factory=set)

    def add(self, size: int, key: str | None = None) -> None:
        if key is not None:
            if key in self.shared:
                return
            self.shared.add(key)
        self.total += size


def _linear(saved: _Saved, parts: SiteParts, input_key: str, fan_in: int, fan_out: int, tokens: int, e: int,
            input_parts: SiteParts | None = None, input_grad: bool = True) -> bool:
    """A Linear site's own savings; returns whether its output needs a gradient because of them."""
    a = ADAPTER_DTYPE_BYTES
    cast = e != a  # a 16-bit run: PEFT casts the input to the adapter's fp32, a new tensor per module
    if parts.lora_r or parts.vera_r:
        if parts.lora_r:
            saved.add(a * fan_in * tokens, None if cast else input_key)  # A's input
            saved.add(a * parts.lora_r * tokens)  # B's input (A x)
            if parts.dora:
                saved.add((e + a) * fan_out * tokens if cast else 2 * e * fan_out * tokens)  # W0 x and B A x
                saved.add(a * fan_out * (3 if input_grad else 2))  # ||W||, m / ||W|| and (m / ||W|| - 1)
        else:  # VeRA: A and B are frozen; lambda_d reads A x (r), lambda_b reads B (lambda_d A x) (out)
            saved.add(a * (parts.vera_r + fan_out) * tokens)
    if parts.weight:
        saved.add(e * fan_in * tokens, input_key)
    if input_parts is not None and input_parts.ia3:  # IA3 on the input: keeps the input it scales
        saved.add(e * fan_in * tokens, input_key)
    if parts.ia3:  # IA3 on the output: keeps the output it scales
        saved.add(e * fan_out * tokens)
    return parts.any or (input_parts is not None and input_parts.any)


def _adapter_bytes(parts: SiteParts, h: int, e: int, tokens: int) -> int:
    """h + up(act(down(h))): down's input h, then the bottleneck once (act keeps its output, up reads it) or twice."""
    if not parts.adapter_m:
        return 0
    return e * (h + (1 if parts.adapter_keeps_output else 2) * parts.adapter_m) * tokens


def llama_layer(parts: LayerParts, dims: Dims, stream_grad: bool, e: int, attention: str, batch: int,
                tokens: int, keys: int, studio_decoder: bool = False) -> tuple[int, bool]:
    """(bytes one Llama-style layer keeps for a batch, whether its output needs a gradient).

    `tokens` is the sequence per example (prompt tokens included), `keys` the keys attention sees (prefix
    included); `stream_grad` says whether the residual stream entering the layer needs a gradient."""
    s, bs = tokens, batch * tokens
    h, q, kv, a, f = dims.hidden, dims.q, dims.kv, dims.heads, dims.ffn
    out = _Saved()
    # input RMSNorm: the fp32 input and 1/rms when the stream needs a gradient; the normed input for its weight
    norm1 = parts.at("attn-norm")
    if stream_grad:
        out.add(4 * (h + 1) * bs)
    if norm1.weight:
        out.add(e * h * bs)
    normed = stream_grad or norm1.any
    grads = {}
    for name, width in (("q_proj", q), ("k_proj", kv), ("v_proj", kv)):
        own = _linear(out, parts.at(name), "attn-in", h, width, bs, e, parts.at(f"{name}-in"), normed)
        grads[name] = normed or own
    q_grad, k_grad, v_grad = grads["q_proj"], grads["k_proj"] or parts.prefix, grads["v_proj"] or parts.prefix
    grouped = kv < q
    k_keys = keys * batch
    any_grad = q_grad or k_grad or v_grad
    if attention == "eager":  # K and V are repeated to every query head (repeat_kv, repeat_interleave): q wide
        scores_grad = q_grad or k_grad
        softmax_bytes = (e if studio_decoder else 4) * a * s * k_keys  # transformers: softmax in fp32
        if k_grad:
            out.add(e * q * bs)  # q, for K's gradient
        if q_grad:
            out.add(e * q * k_keys)  # K, for q's gradient
        if scores_grad:
            out.add(softmax_bytes, "softmax")  # for the scores' gradient
            out.add(e * q * k_keys)  # V, for P's gradient
            if studio_decoder:
                out.add(s * k_keys)  # the boolean mask masked_fill keeps
        if v_grad:  # P as P @ V reads it: the fp32 softmax itself, or its 16-bit cast copy
            if e != 4 and not studio_decoder:
                out.add(e * a * s * k_keys)
            else:
                out.add(softmax_bytes, "softmax")
    elif any_grad:
        padded = attention == "sdpa" and batch > 1
        kv_width = q if padded and grouped else kv  # a mask makes transformers repeat K/V (no enable_gqa)
        out.add(e * q * bs + 2 * e * kv_width * k_keys + 4 * a * bs)  # q, K, V, logsumexp
        out.add(e * q * bs, "ctx")  # the output, laid out [B, L, heads, d]: o_proj reads the same storage
        if padded:
            out.add(e * s * k_keys)  # the expanded mask, once per layer
    context = any_grad
    o_own = _linear(out, parts.at("o_proj"), "ctx", q, h, bs, e, parts.at("o_proj-in"), any_grad)
    attn_out = context or o_own
    adapter = parts.at("after-attn")
    out.add(_adapter_bytes(adapter, h, e, bs))
    stream = stream_grad or attn_out or adapter.any
    norm2 = parts.at("ffn-norm")
    if stream:
        out.add(4 * (h + 1) * bs)
    if norm2.weight:
        out.add(e * h * bs)
    normed2 = stream or norm2.any
    gate_own = _linear(out, parts.at("gate_proj"), "mlp-in", h, f, bs, e, parts.at("gate_proj-in"), normed2)
    up_own = _linear(out, parts.at("up_proj"), "mlp-in", h, f, bs, e, parts.at("up_proj-in"), normed2)
    gate, up = normed2 or gate_own, normed2 or up_own
    if gate:  # act(gate) * up: act's gradient needs SiLU's input and the up output
        out.add(2 * e * f * bs)
    if up:
        out.add(e * f * bs)  # SiLU's output, for up's gradient
    act = parts.at("ffn-act")
    product_grad = gate or up or act.any
    if act.ia3:
        out.add(e * f * bs, "product")
    down = _linear(out, parts.at("down_proj"), "product", f, h, bs, e, parts.at("down_proj-in"), product_grad)
    mlp_out = product_grad or down
    adapter2 = parts.at("after-ffn")
    out.add(_adapter_bytes(adapter2, h, e, bs))
    return out.total, stream or mlp_out or adapter2.any


def gpt2_layer(parts: LayerParts, dims: Dims, stream_grad: bool, e: int, attention: str, batch: int,
               tokens: int, keys: int) -> tuple[int, bool]:
    """The same for a GPT-2 block: LayerNorm keeps its input and fp32 mean and rstd; c_attn is one Linear whose
    output holds q, k and v; GELU keeps its input."""
    s, bs = tokens, batch * tokens
    h, a, f = dims.hidden, dims.heads, dims.ffn
    out = _Saved()
    ln1 = parts.at("attn-norm")
    if stream_grad:
        out.add((e * h + 8) * bs)
    if ln1.weight:
        out.add(e * h * bs, "ln1-normed")
    normed = stream_grad or ln1.any
    qkv = _linear(out, parts.at("c_attn"), "attn-in", h, 3 * h, bs, e, parts.at("c_attn-in"), normed) or normed
    kv_grad = qkv or parts.prefix
    k_keys = keys * batch
    if attention == "eager":
        if qkv or kv_grad:
            out.add(e * h * bs + 2 * e * h * k_keys)  # q, K, V (views of c_attn's output, prefix cat copies)
            out.add((4 if e != 4 else e) * a * s * k_keys)  # the softmax output
    elif qkv or kv_grad:
        out.add(2 * e * h * bs + 2 * e * h * k_keys + 4 * a * bs)  # q, out, K, V, logsumexp
        if attention == "sdpa" and batch > 1:
            out.add(e * s * k_keys)
    proj = _linear(out, parts.at("attn.c_proj"), "ctx", h, h, bs, e, parts.at("attn.c_proj-in"), qkv or kv_grad)
    adapter = parts.at("after-attn")
    out.add(_adapter_bytes(adapter, h, e, bs))
    stream = stream_grad or qkv or kv_grad or proj or adapter.any
    ln2 = parts.at("ffn-norm")
    if stream:
        out.add((e * h + 8) * bs)
    if ln2.weight:
        out.add(e * h * bs)
    normed2 = stream or ln2.any
    fc = _linear(out, parts.at("c_fc"), "mlp-in", h, f, bs, e, parts.at("c_fc-in"), normed2) or normed2
    if fc:
        out.add(e * f * bs)  # GELU's input
    act = parts.at("ffn-act")
    if act.ia3:
        out.add(e * f * bs, "activation")
    down = _linear(out, parts.at("mlp.c_proj"), "activation", f, h, bs, e, parts.at("mlp.c_proj-in"),
                   fc or act.any)
    adapter2 = parts.at("after-ffn")
    out.add(_adapter_bytes(adapter2, h, e, bs))
    return out.total, stream or fc or act.any or down or adapter2.any


# ---- from a census -----------------------------------------------------------------------------------
@dataclass
class StackParts:
    """Trained parts of a decoder by layer, and what trains outside the stack."""

    layers: list[LayerParts]
    before: bool = False  # something before the first layer trains (a soft prompt, an embedding): every layer
    final_norm: bool = False  # the final norm's weight trains
    head: bool = True  # the classification head trains (it reads the final hidden states)


def stack_parts(census: Any, base: Any) -> StackParts:
    """The census's trainable rows by layer and site (head rows apart)."""
    sites = {s.id: s for s in base.sites()}
    stack = StackParts([LayerParts() for _ in range(base.num_layers)])
    stack.head = any(row.trainable and row.owner == "head" for row in census.rows)
    for row in census.rows:
        if not row.trainable or row.owner == "head":
            continue
        site = sites.get(row.site)
        if site is None or site.layer is None:
            if site is not None and site.kind == NORM:
                stack.final_norm = True
            elif not row.name.startswith("extras."):  # a prefix MLP reads no activation of the stack
                stack.before = True
            continue
        layer = stack.layers[site.layer]
        if site.kind == KV_PREFIX:
            layer.prefix = True
            continue
        key = _site_key(site, base)
        parts = layer.sites.setdefault(key, SiteParts())
        leaf = row.name.rsplit(".", 1)[-1]
        if leaf == "lora_A":
            parts.lora_r += row.shape[0]
        elif leaf == "lora_magnitude_vector":
            parts.dora = True
        elif leaf == "vera_lambda_d":
            parts.vera_r = row.numel
        elif leaf == "ia3_scale":
            parts.ia3 = True
        elif site.kind == ADAPTER and len(row.shape) == 2:
            parts.adapter_m = min(row.shape)
            act = getattr(_module_at(base, site.module_path), "act", None)
            parts.adapter_keeps_output = type(act).__name__ in ("Tanh", "ReLU", "Sigmoid")
        elif leaf == "weight" and site.kind in (LINEAR, NORM):
            parts.weight = True
    return stack


def _module_at(base: Any, path: str) -> Any:
    try:
        return base.get_submodule(path)
    except AttributeError:
        return None


def _site_key(site: Any, base: Any) -> str:
    """A layer-local name: q_proj, attn.c_proj / mlp.c_proj (GPT-2 has two c_proj), q_proj-in, ffn-act, ..."""
    if site.kind == LINEAR_INPUT:
        return f"{site.name.removesuffix('-in')}-in"
    if site.kind == LINEAR and site.name == "c_proj":
        return "attn.c_proj" if ".attn." in site.module_path else "mlp.c_proj"
    return site.name


def stack_bytes(base: Any, stack: StackParts, e: int, attention: str, batch: int, tokens: int, keys: int,
                prefix_everywhere: bool = False, studio_decoder: bool = False) -> list[int]:
    """Each layer's bytes (0 for layers the gradient never reaches), then one more entry for what follows the
    stack: the final norm, the head's input (transformers scores every position), the rotary tables."""
    cfg = base.cfg
    dims = Dims(cfg.hidden_size, cfg.q_width if cfg.style == "llama" else cfg.hidden_size,
                cfg.kv_width if cfg.style == "llama" else cfg.hidden_size, cfg.num_heads, cfg.intermediate_size)
    grad = stack.before
    sizes = []
    for parts in stack.layers:
        if prefix_everywhere:  # a projected prefix has its parameters outside the layers: every layer's K/V train
            parts = LayerParts(parts.sites, True)
        if cfg.style == "llama":
            size, out_grad = llama_layer(parts, dims, grad, e, attention, batch, tokens, keys, studio_decoder)
        else:
            size, out_grad = gpt2_layer(parts, dims, grad, e, attention, batch, tokens, keys)
        sizes.append(size)
        grad = grad or out_grad
    bs = batch * tokens
    tail = 0
    if grad:
        tail += (4 * (dims.hidden + 1) if cfg.style == "llama" else e * dims.hidden + 8) * bs  # the final norm
    if stack.final_norm:
        tail += e * dims.hidden * bs
    if stack.head and not studio_decoder:
        tail += e * dims.hidden * bs  # the score Linear reads every position's final hidden state
    if grad and cfg.style == "llama":  # the rotary cos and sin, once per forward (transformers and the studio)
        tail += 2 * tokens * cfg.dim_per_head * e
    sizes.append(tail)
    return sizes
