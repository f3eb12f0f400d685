"""LoRA: h = W0 x + (alpha / r) B A x beside a frozen Linear or Embedding (Hu et al., 2021; PEFT conventions).

PEFT's LoraConfig options that change counts or outputs are options here too, under their PEFT names:
`bias` (none / all / lora_only: which base biases train as well), `use_rslora` (scale alpha / sqrt(r)),
`rank_pattern` / `alpha_pattern` (per-module ranks and alphas, lora_patterns.py), `init_lora_weights`
(true, false, gaussian, pissa, olora: lora_layers.py) and Embedding targets (PEFT's lora.Embedding).
A GPT-2 Conv1D target is handled by the layer itself (methods/mergeable.py reads its [in, out] weight).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ..bases.encoder import Encoder
from ..bases.frozen import FrozenBase
from ..bases.hf_names import hf_module
from ..bases.sites import EMBEDDING, LINEAR, Site
from ..errors import AdapterFileError, ConfigError
from ..files.safe_io import expect_shape
from ..model.studio_model import StudioModel
from .config import MethodConfig, option
from .lora_layers import INITS, RESIDUAL_INITS, LoraEmbedding, LoraLinear, lora_scaling
from .lora_patterns import parse_pattern, pattern_text, pattern_value
from .mergeable import WeightUpdate
from .method import REPARAMETERISED, Method, MethodCard, TargetedMethod, code_line
from .peft_format import KEY_PREFIX, hf_name, module_path, modules_of, split_module_keys, unknown

BIASES = ("none", "all", "lora_only")  # PEFT's LoraConfig.bias

__all__ = ["LoraConfig", "LoraEmbedding", "LoraLinear", "LoraMethod", "SiteRank"]


@dataclass
class LoraConfig(MethodConfig):
    r: int = option(8, "rank of the update B A", low=1, high=4096)
    alpha: float = option(16.0, "scale numerator: the update is multiplied by alpha / r", low=1e-6, high=1e6)
    dropout: float = option(0.0, "dropout on the input of A during training", low=0.0, high=0.99)
    targets: str | None = option(None, "comma list of Linear sites, e.g. q,v (Hugging Face names and site ids "
                                       "such as layers.0.attn.q work too, embedding tables such as word or "
                                       "word_embeddings, and all-linear; default: the base's)")
    layers: str | None = option(None, "comma list of layer indices or ranges such as 0-3 (default: every layer)")
    bias: str = option("none", "PEFT's bias: base biases that train too: none, all (every bias of the base) or "
                               "lora_only (the biases of the adapted layers)", choices=BIASES)
    use_rslora: bool = option(False, "rsLoRA (PEFT's use_rslora): scale the update by alpha / sqrt(r), not alpha / r")
    rank_pattern: str | None = option(None, "PEFT's rank_pattern: per-module ranks, e.g. query=4,layers.0.attn.v=16 "
                                            "or a JSON object (module names or regular expressions, first match "
                                            "wins; default: r everywhere)")
    alpha_pattern: str | None = option(None, "PEFT's alpha_pattern: per-module alphas, written as rank_pattern")
    init_lora_weights: str = option("true", "PEFT's init_lora_weights: true (A Kaiming, B zeros), gaussian (A ~ "
                                            "N(0, 1/r)), false (A and B random: not a no-op), pissa (B A = the top r "
                                            "singular values of W0, trained on the residual) or olora (B A from a "
                                            "QR of W0, likewise)", choices=INITS)


@dataclass(frozen=True)
class SiteRank:
    """One adapted site with the rank and alpha in force there (rank_pattern / alpha_pattern applied)."""

    site: Site
    r: int
    alpha: float
    scaling: float


def site_ranks(sites: list[Site], config: LoraConfig, base: FrozenBase) -> list[SiteRank]:
    """These sites with the rank and alpha in force at each (PEFT's rank_pattern / alpha_pattern applied)."""
    ranks = parse_pattern(config.rank_pattern, "rank_pattern", integer=True)
    alphas = parse_pattern(config.alpha_pattern, "alpha_pattern", integer=False)
    out = []
    for site in sites:
        names = module_names(site, base)
        r = int(pattern_value(ranks, names, config.r))
        alpha = float(pattern_value(alphas, names, config.alpha))
        out.append(SiteRank(site, r, alpha, lora_scaling(r, alpha, config.use_rslora)))
    return out


def module_names(site: Site, base: FrozenBase) -> list[str]:
    """The names a PEFT pattern may match for this site: its Hugging Face name (under `bert.` too, as
    BertForSequenceClassification names a BERT encoder's modules) and the studio's site id."""
    names = [site.id]
    hf = base.hf_module(site.module_path)
    if hf is not None:
        names[:0] = [hf, f"bert.{hf}"] if isinstance(base, Encoder) else [hf]
    return names


class LoraMethod(TargetedMethod):
    name = "lora"
    family_group = REPARAMETERISED
    title = "LoRA"
    config_cls = LoraConfig
    site_kinds = (LINEAR, EMBEDDING)
    claims_kinds = (LINEAR, EMBEDDING)
    example_space = {**Method.example_space, "r": (1, 4, 8), "alpha": (1.0, 8.0, 16.0), "bias": BIASES,
                     "use_rslora": (False, True), "init_lora_weights": INITS,
                     "rank_pattern": (None, '{"v_proj|v|value": 2}'), "alpha_pattern": (None, "q_proj|q|query=4")}
    peft_space = {"r": (2, 4), "lora_alpha": (8, 16), "bias": BIASES, "use_rslora": (False, True),
                  "init_lora_weights": (True, False, "gaussian", "pissa", "olora"),
                  "rank_pattern": ({}, {"value|v_proj": 3}), "alpha_pattern": ({}, {"query|q_proj": 4})}
    peft_type = "LORA"
    # trained biases (bias all / lora_only) and embedding targets, every tensor moved 0.1 off its start, push the
    # hidden states far enough that float32 summation order alone reaches 1.0e-4 (measured); 2e-4 still fails a
    # wrong scale or layout by orders of magnitude
    exchange_tolerance = 2e-4
    glyph = "BA"
    colour = "#f07f16"
    residual_inits = RESIDUAL_INITS  # inits this method reproduces (DoRA and QLoRA do not: see their files)
    card = MethodCard(
        where="beside a frozen Linear: a low-rank update B A added to its output",
        intuition="the change a task needs to a weight matrix is low-rank, so learn it as two thin matrices",
        advantages="no extra inference cost once merged into W0; mature tooling; the usual first choice",
        limitations="rank r caps how different the new weights can be; one more hyper-parameter pair (r, alpha)",
        formula="h = W0 x + (alpha / r) B A x",
    )

    # ---- configuration ------------------------------------------------------------------------
    def validate(self, config: LoraConfig, base: FrozenBase) -> None:
        super().validate(config, base)
        init = config.init_lora_weights
        if init in RESIDUAL_INITS and init not in self.residual_inits:
            raise ConfigError(f"init_lora_weights {init!r} is not offered with {self.name} (PEFT rewrites the base "
                              "weight to the residual; the studio reproduces that for plain LoRA only)")
        for entry in self.site_ranks(config, base):
            if init in RESIDUAL_INITS and entry.site.kind == LINEAR and entry.r > min(entry.site.in_features,
                                                                                      entry.site.out_features):
                raise ConfigError(f"init_lora_weights {init!r}: r = {entry.r} at {entry.site.id} is larger than "
                                  f"the weight's smaller side ({entry.site.in_features} x {entry.site.out_features})")

    def site_ranks(self, config: LoraConfig, base: FrozenBase) -> list[SiteRank]:
        """Every adapted site with its rank and alpha (PEFT's rank_pattern / alpha_pattern applied)."""
        return site_ranks(self.selected_sites(config, base), config, base)

    # ---- what it adds -------------------------------------------------------------------------
    def attach(self, model: StudioModel, config: LoraConfig) -> None:
        self.train_biases(model, config)  # by the base's own names, before any layer is wrapped
        for entry in self.site_ranks(config, model.base):
            original = model.base.get_submodule(entry.site.module_path)
            model.swap(entry.site.module_path, self.make_layer(original, entry, config))

    def make_layer(self, original: nn.Module, entry: SiteRank, config: LoraConfig) -> nn.Module:
        if entry.site.kind == EMBEDDING:
            return LoraEmbedding(original, entry.r, entry.alpha, config.use_rslora, config.init_lora_weights)
        return LoraLinear(original, entry.r, entry.alpha, config.dropout, config.use_rslora, config.init_lora_weights)

    def train_biases(self, model: StudioModel, config: LoraConfig) -> None:
        for name in self.bias_names(config, model.base):
            model.unfreeze_base(name)

    def bias_names(self, config: LoraConfig, base: FrozenBase) -> list[str]:
        """The base biases `bias` trains, by their names in the unadapted base (PEFT: every parameter named
        *bias* for "all"; the adapted layers' biases for "lora_only")."""
        if config.bias == "none":
            return []
        if config.bias == "all":
            return [n for n, _ in base.named_parameters() if n.rsplit(".", 1)[-1] == "bias"]
        return [f"{s.module_path}.bias" for s in self.selected_sites(config, base)
                if isinstance(getattr(_unwrapped(base, s.module_path), "bias", None), nn.Parameter)]

    def bias_count(self, config: LoraConfig, base: FrozenBase) -> int:
        """Trainable bias numbers (whether or not the layers are wrapped yet)."""
        if config.bias == "none":
            return 0
        if config.bias == "all":
            seen = {id(p): p.numel() for n, p in base.named_parameters() if n.rsplit(".", 1)[-1] == "bias"}
            return sum(seen.values())
        biases = [getattr(_unwrapped(base, s.module_path), "bias", None) for s in self.selected_sites(config, base)]
        return sum(b.numel() for b in biases if isinstance(b, nn.Parameter))

    def parameter_count(self, config: LoraConfig, base: FrozenBase) -> int:
        return sum(e.r * (e.site.in_features + e.site.out_features) for e in self.site_ranks(config, base)) + \
            self.bias_count(config, base)

    def site_glyph(self, config: LoraConfig, base: FrozenBase, site: Site) -> str:
        """With per-module ranks (rank_pattern), each chosen point shows its own rank: r4, r16, ..."""
        if not config.rank_pattern:
            return self.glyph
        return f"r{site_ranks([site], config, base)[0].r}"

    def formula_text(self, config: LoraConfig, base: FrozenBase) -> str:
        entries = self.site_ranks(config, base)
        ranks = sorted({e.r for e in entries})
        rank = "r x (in + out)" if len(ranks) == 1 else f"r_i x (in + out) with r_i in {ranks}"
        biases = self.bias_count(config, base)
        extra = f" + {biases:,} biases ({config.bias})" if config.bias != "none" else ""
        return f"sum over {len(entries)} layer(s) of {rank}{extra} = {self.parameter_count(config, base):,}"

    def live_formula(self, config: LoraConfig) -> str:
        scale = lora_scaling(config.r, config.alpha, config.use_rslora)
        root = f"sqrt({config.r})" if config.use_rslora else str(config.r)
        formula = self.card.formula.replace("(alpha / r)", f"({config.alpha:g}/{root} = {scale:g})")
        if config.init_lora_weights in RESIDUAL_INITS:
            formula = formula.replace("W0 x", "(W0 - B0 A0) x") + f"  (B0 A0: {config.init_lora_weights} of W0)"
        return formula

    def code(self, config: LoraConfig) -> str:
        return code_line(LoraLinear.update, "torch.addmm")

    def shape_notes(self, config: LoraConfig, base: FrozenBase, seq_len: int) -> list[str]:
        notes = []
        for e in self.site_ranks(config, base):
            if e.site.kind == EMBEDDING:
                parts = f"A {e.r}x{e.site.in_features} (rows), B {e.site.out_features}x{e.r}"
            else:
                parts = f"A {e.r}x{e.site.in_features}, B {e.site.out_features}x{e.r}"
            residual = ", frozen B0 A0 subtracted" if config.init_lora_weights in RESIDUAL_INITS and \
                e.site.kind == LINEAR else ""
            notes.append(f"{e.site.id}: r = {e.r}, {parts}, scale {e.scaling:g}{residual}")
        return notes

    # ---- Hugging Face PEFT exchange (LoRA and QLoRA) ----------------------------------------------
    def peft_export(self, base: FrozenBase, config: LoraConfig) -> tuple[dict, dict[str, torch.Tensor]]:
        return lora_peft_export(base, config, self)

    def peft_claims(self, peft_config: dict[str, Any]) -> bool:
        return not peft_config.get("use_dora")  # use_dora is DoRA's

    def peft_translate(self, peft_config: dict[str, Any], tensors: dict, where: str) -> tuple[dict, dict]:
        return lora_peft_translate(peft_config, tensors, where)

    def peft_import_notes(self, peft_config: dict[str, Any], where: str) -> list[str]:
        notes: list[str] = []
        lora_init_option(peft_config.get("init_lora_weights", True), where, notes)
        return notes

    def peft_check_model(self, base: FrozenBase, options: dict[str, Any], where: str) -> None:
        lora_check_model(base, (LoraLinear, LoraEmbedding), options, where, self)


def _unwrapped(base: nn.Module, path: str) -> nn.Module:
    """The base's own layer at `path`, under a LoRA layer once wrapped."""
    module = base.get_submodule(path)
    return module.base_layer if isinstance(module, WeightUpdate) else module


# ---- Hugging Face PEFT exchange ------------------------------------------------------------------------
def _peft_init(value: str) -> bool | str:
    return {"true": True, "false": False}.get(value, value)


def lora_peft_export(base: FrozenBase, config: LoraConfig, method: LoraMethod, kind: type = LoraLinear,
                     extra: tuple[str, ...] = ()) -> tuple[dict, dict[str, torch.Tensor]]:
    """LoRA's adapter_config.json settings and tensors by PEFT key: lora_A / lora_B (plus `extra` parameters),
    lora_embedding_A / _B, the trained biases; per-module ranks and alphas as exact-name patterns."""
    tensors: dict[str, torch.Tensor] = {}
    targets: list[str] = []
    conv1d = False
    for path, module in modules_of(base, (kind, LoraEmbedding)):
        name = hf_name(path, base)
        targets.append(name)
        if isinstance(module, LoraEmbedding):
            tensors[f"{KEY_PREFIX}{name}.lora_embedding_A"] = module.lora_embedding_A
            tensors[f"{KEY_PREFIX}{name}.lora_embedding_B"] = module.lora_embedding_B
            continue
        conv1d = conv1d or module.fan_in_fan_out
        tensors[f"{KEY_PREFIX}{name}.lora_A.weight"] = module.lora_A
        tensors[f"{KEY_PREFIX}{name}.lora_B.weight"] = module.lora_B
        for leaf in extra:
            tensors[f"{KEY_PREFIX}{name}.{leaf}"] = getattr(module, leaf)
    for path, parameter in base.named_parameters():
        if parameter.requires_grad and path.rsplit(".", 1)[-1] == "bias":  # bias all / lora_only
            module, _, leaf = path.rpartition(".")
            inner = module.endswith(".base_layer")
            hf = hf_name(module.removesuffix(".base_layer"), base) + (".base_layer" if inner else "")
            tensors[f"{KEY_PREFIX}{hf}.{leaf}"] = parameter
    ranks, alphas = {}, {}
    for entry in method.site_ranks(config, base):  # exact names: PEFT matches (.*\.)?(name)$
        key = re.escape(hf_name(entry.site.module_path, base))
        if entry.r != config.r:
            ranks[key] = entry.r
        if entry.alpha != config.alpha:
            alphas[key] = entry.alpha
    settings = {"r": config.r, "lora_alpha": config.alpha, "lora_dropout": config.dropout, "target_modules": targets,
                "bias": config.bias, "fan_in_fan_out": conv1d,
                "init_lora_weights": _peft_init(config.init_lora_weights), "use_rslora": config.use_rslora,
                "use_dora": bool(extra), "layers_to_transform": None,
                "rank_pattern": ranks, "alpha_pattern": alphas}
    return settings, tensors


# LoraConfig fields (peft 0.21) that change what a loaded adapter computes and that the studio does not
# reproduce: refused by name unless they hold their default (tests/core/test_lora_options.py checks every field
# of peft.LoraConfig is read, listed here, or listed as having no effect on a loaded adapter's outputs).
UNSUPPORTED_FIELDS: dict[str, str] = {
    "lora_bias": "a bias on lora_B",
    "use_qalora": "QALoRA (GPTQ only)",
    "layer_replication": "layers repeated inside the model",
    "alora_invocation_tokens": "Activated LoRA (the update only after the invocation tokens)",
    "target_parameters": "LoRA on bare nn.Parameters",
    "trainable_token_indices": "trainable embedding rows",
    "megatron_config": "Megatron-parallel layers",
    "kasa_config": "KaSA (the base's smallest singular components removed)",
    "velora_config": "VeLoRA",
    "monteclora_config": "MonteCLoRA (sampled updates)",
    "arrow_config": "Arrow routing between adapters",
    "use_bdlora": "BD-LoRA",
}
# init_lora_weights values: what loading such an adapter does in PEFT, and so what the studio does.
PLAIN_ON_LOAD = {"eva": "EVA", "orthogonal": "orthogonal", "lora_ga": "LoRA-GA"}  # only starting values differ
REFUSED_INITS = {
    "corda": "PEFT derives CorDA's residual base from covariance data that preprocess_corda collects, so even "
             "PEFT cannot load it without that data",
    "loftq": "PEFT replaces the base by its LoftQ quantization on load",
    "mica": "MiCA freezes B and trains only A; the studio's LoRA trains both",
}
CONVERT = ("convert it to a plain LoRA adapter with save_pretrained(..., path_initial_model_for_weight_conversion="
           "...) and import that")


def lora_init_option(value: Any, where: str, notes: list[str] | None = None) -> str:
    """The studio's init_lora_weights for an adapter_config.json value, or AdapterFileError with the reason."""
    if value is None or value is True:
        return "true"
    if value is False:
        return "false"
    text = str(value).lower()
    if text in ("gaussian", "pissa", "olora"):
        return text
    if text in PLAIN_ON_LOAD:
        if notes is not None:
            notes.append(f"{where}: init_lora_weights {value!r} chose only the starting values; PEFT loads the "
                         "adapter as plain LoRA, and so does the studio (retraining starts as init_lora_weights true)")
        return "true"
    if text.startswith("pissa_niter_"):
        raise AdapterFileError(f"{where}: init_lora_weights {value!r}: PEFT re-derives the residual base on every load "
                               "with a randomized SVD (torch.svd_lowrank), so its own predictions change from one load "
                               f"to the next; {CONVERT}")
    if text in REFUSED_INITS:
        raise AdapterFileError(f"{where}: init_lora_weights {value!r} is not supported: {REFUSED_INITS[text]}; "
                               f"{CONVERT}")
    raise AdapterFileError(f"{where}: init_lora_weights {value!r} is not supported (supported: true, false, "
                           f"gaussian, pissa, olora, {', '.join(PLAIN_ON_LOAD)})")


def _refuse_unsupported(config: dict, where: str) -> None:
    for name, what in UNSUPPORTED_FIELDS.items():
        value = config.get(name)
        if value not in (None, False, [], {}, ""):
            raise AdapterFileError(f"{where}: {name} ({what}) is not supported; the studio would compute something "
                                   "else")
    if config.get("bias", "none") not in BIASES:
        raise AdapterFileError(f"{where}: bias must be one of {', '.join(BIASES)} (got {config.get('bias')!r})")


def _split_biases(tensors: dict[str, torch.Tensor], where: str) -> tuple[dict[str, torch.Tensor], dict]:
    """Bias tensors (bias all / lora_only) by the studio base's parameter name, and the other tensors."""
    biases, rest = {}, {}
    for key, tensor in tensors.items():
        if not key.endswith(".bias"):
            rest[key] = tensor
            continue
        module = key.removesuffix(".bias").removesuffix(".base_layer")
        studio = module_path(module)
        if studio is None:
            raise unknown(where, key, "a bias of a module the encoder does not have")
        expect_shape(tensor, 1, f"{where}: {key}", AdapterFileError, "(width,)")
        biases[f"{studio}.bias"] = tensor
    return biases, rest


def lora_peft_translate(config: dict, tensors: dict[str, torch.Tensor], where: str,
                        extra: tuple[str, ...] = ()) -> tuple[dict, dict]:
    """Options and studio tensors from a PEFT LoRA adapter (DoRA: extra = its magnitude leaf)."""
    _refuse_unsupported(config, where)
    # fan_in_fan_out only says how PEFT stores a merged Conv1D weight (GPT-2); the unmerged update B A x is the same
    r = config.get("r")
    if type(r) is not int or r < 1:
        raise AdapterFileError(f"{where}: r must be a positive integer (got {r!r})")
    alpha = float(config.get("lora_alpha") or 8)
    init = lora_init_option(config.get("init_lora_weights", True), where)
    ranks = parse_pattern(config.get("rank_pattern") or {}, "rank_pattern", True, AdapterFileError)
    alphas = parse_pattern(config.get("alpha_pattern") or {}, "alpha_pattern", False, AdapterFileError)
    biases, tensors = _split_biases(tensors, where)
    if biases and config.get("bias", "none") == "none":
        raise unknown(where, next(iter(biases)), "a bias tensor, but adapter_config.json says bias 'none'")
    studio: dict[str, torch.Tensor] = dict(biases)
    leaves = ("lora_A.weight", "lora_B.weight", "lora_embedding_A", "lora_embedding_B", *extra)
    shapes = {"lora_A.weight": (2, "(r, in)", 0), "lora_B.weight": (2, "(out, r)", 1),
              "lora_embedding_A": (2, "(r, rows)", 0), "lora_embedding_B": (2, "(width, r)", 1)}
    for module, parts in split_module_keys(tensors, leaves, where, "a LoRA").items():
        name = hf_module(module) or module
        table = module.startswith("embeddings.") and module != "embeddings.norm"
        if any(leaf.startswith("lora_embedding") != table for leaf in parts if leaf.startswith("lora_")):
            raise unknown(where, f"{name}.{next(iter(parts))}", "an embedding table's LoRA is lora_embedding_A and "
                          "lora_embedding_B, a Linear's lora_A.weight and lora_B.weight")
        names = [name, f"bert.{name}", module]
        expected = int(pattern_value(ranks, names, r))
        for leaf, tensor in parts.items():
            key = f"{name}.{leaf}"
            dims, what, rank_dim = shapes.get(leaf, (1, "(out,)", None))
            expect_shape(tensor, dims, f"{where}: {key}", AdapterFileError, what)
            if rank_dim is not None and tensor.shape[rank_dim] != expected:
                source = "rank_pattern" if expected != r else f"r={r}"
                raise unknown(where, key, f"has rank {tensor.shape[rank_dim]}, adapter_config.json says "
                                          f"{source if expected == r else f'{source} {expected}'}")
            studio[f"{module}.{leaf.removesuffix('.weight')}"] = tensor
    options = {"r": r, "alpha": alpha, "dropout": float(config.get("lora_dropout") or 0.0),
               "bias": config.get("bias", "none"), "use_rslora": bool(config.get("use_rslora")),
               "rank_pattern": pattern_text(ranks), "alpha_pattern": pattern_text(alphas), "init_lora_weights": init}
    return options, studio


def lora_check_model(base: FrozenBase, kinds: type | tuple[type, ...], options: dict, where: str,
                     method: LoraMethod) -> None:
    """The model's per-module LoRA scale and init must be the adapter's (a shape check cannot see alpha)."""
    config = method.config({k: v for k, v in options.items() if k not in ("targets", "layers")})
    sites = {s.module_path: s for s in method.usable_sites(base)}
    for path, module in modules_of(base, kinds):
        entry = site_ranks([sites[path]], config, base)[0] if path in sites else None
        scale = entry.scaling if entry is not None else lora_scaling(config.r, config.alpha, config.use_rslora)
        if not math.isclose(module.scaling, scale, rel_tol=1e-6):
            raise AdapterFileError(f"{where}: LoRA scale {scale:g} (alpha / {'sqrt(r)' if config.use_rslora else 'r'}"
                                   f" = {entry.alpha if entry else config.alpha:g}/{entry.r if entry else config.r}), "
                                   f"the model's {path} uses {module.scaling:g}")
        if module.init != config.init_lora_weights and (module.residual or config.init_lora_weights in
                                                        RESIDUAL_INITS):
            raise AdapterFileError(f"{where}: the adapter was initialised with init_lora_weights "
                                   f"{config.init_lora_weights!r}, the model's {path} with {module.init!r} (the "
                                   "residual base differs)")
