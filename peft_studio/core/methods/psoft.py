"""PSOFT: an r x r orthogonal transformation R trained between W0's frozen principal singular factors (Wu et al.,
2026, "Efficient Orthogonal Fine-Tuning with Principal Subspace Adaptation").

Follows PEFT's PSOFT (peft/tuners/psoft/layer.py): per Linear, W0 = U S V (SVD in float32; or torch.svd_lowrank
from a seeded generator), A = V_r (r x in) and B = U_r diag(S_r) / scaling (out x r) with scaling = psoft_alpha / r
(pissa_init: sqrt(S_r / scaling) on both sides), both frozen, and

    h = W0 x + b + scaling · B (R - I) A x,   R = diag(vector_b) · (I + Q)(I - Q)⁻¹ · diag(vector_a)

with Q skew-symmetric from r (r - 1) / 2 trained numbers (psoft_orth; else R is a free r x r matrix). R starts at I
(Q = 0, the vectors at 1), so the model starts at W0. Only R's numbers are saved: PEFT (and the studio) decomposes
W0 again when an adapter is loaded.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ..bases.frozen import FrozenBase
from ..bases.sites import LINEAR
from ..errors import AdapterFileError, ConfigError
from ..files.safe_io import expect_shape
from ..model.studio_model import StudioModel
from .config import MethodConfig, option
from .mergeable import WeightUpdate
from .method import REPARAMETERISED, Method, MethodCard, TargetedMethod, code_line
from .oft import LINEAR_ONLY
from .peft_fields import flag, number, whole
from .peft_format import KEY_PREFIX, hf_name, modules_of, split_module_keys, unknown

INITS = ("psoft_init", "pissa_init")
SVDS = ("full", "lowrank")


@dataclass(frozen=True)
class RShape:
    """How R is built: orthogonal (Cayley, exact or a Neumann series) or free, with or without its two vectors."""

    size: int
    orth: bool
    mag_b: bool
    mag_a: bool
    cayley_neumann: bool
    neumann_terms: int
    neumann_eps: float  # 0: no rescaling of Q

    def count(self) -> int:
        return (self.size * (self.size - 1) // 2 if self.orth else self.size**2) + self.size * (self.mag_a +
                                                                                                self.mag_b)


class PsoftRotation(nn.Module):
    """PEFT's OrthLayer: R from trained numbers (its parameter names are PEFT's, under psoft_R)."""

    def __init__(self, shape: RShape, init_weights: bool) -> None:
        super().__init__()
        self.shape = shape
        size = shape.size
        if shape.orth:
            self.weight = nn.Parameter(torch.zeros(size * (size - 1) // 2))
            if not init_weights:
                nn.init.normal_(self.weight, mean=0.0, std=0.1)
        else:
            self.weight = nn.Parameter(torch.eye(size))
            if not init_weights:
                with torch.no_grad():
                    self.weight.add_(torch.randn_like(self.weight) * 0.1)
        self.vector_b = nn.Parameter(torch.ones(size)) if shape.mag_b else None
        self.vector_a = nn.Parameter(torch.ones(size)) if shape.mag_a else None

    def _skew(self) -> torch.Tensor:
        size = self.shape.size
        rows, cols = torch.triu_indices(size, size, 1, device=self.weight.device)
        q = torch.zeros((size, size), device=self.weight.device, dtype=self.weight.dtype)
        q = q.index_put((rows, cols), self.weight)
        return q - q.transpose(0, 1)

    def _neumann(self, q: torch.Tensor, identity: torch.Tensor) -> torch.Tensor:
        """PEFT's truncated series for the Cayley transform: I + 2Q + 2Q² + ... + Q^(t-1)."""
        if self.shape.neumann_eps > 0:
            norm = torch.linalg.norm(q, ord="fro")
            if torch.isfinite(norm) and norm > self.shape.neumann_eps:
                q = q * (self.shape.neumann_eps / (norm + 1e-12))
        terms = self.shape.neumann_terms
        r = identity.clone()
        if terms > 1:
            r.add_(q, alpha=2.0)
            if terms > 2:
                power = q @ q
                r.add_(power, alpha=2.0)
                for _ in range(3, terms - 1):
                    power = power @ q
                    r.add_(power, alpha=2.0)
                power = power @ q
                r.add_(power)
        return r

    def matrix(self) -> torch.Tensor:
        if not self.shape.orth:
            r = self.weight
        else:
            q = self._skew()
            identity = torch.eye(self.shape.size, device=q.device, dtype=q.dtype)
            r = self._neumann(q, identity) if self.shape.cayley_neumann else \
                torch.linalg.solve(identity - q, identity + q, left=False)  # (I + Q)(I - Q)⁻¹
        if self.vector_b is not None:
            r = self.vector_b[:, None] * r
        if self.vector_a is not None:
            r = r * self.vector_a[None, :]
        return r


def principal_factors(weight: torch.Tensor, r: int, scaling: float, init: str, svd: str, niter: int,
                      seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """PEFT's frozen (A [r, in], B [out, r]) from W0's top r singular triplets."""
    weight = weight.detach().to(torch.float32)
    if svd == "full":
        u, s, vh = torch.linalg.svd(weight, full_matrices=False)
        u, s, vh = u[:, :r], s[:r], vh[:r, :]
    else:  # a random projection: seeded inside a forked generator, so the global one is untouched
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            u, s, v = torch.svd_lowrank(weight, q=r, niter=niter)
        u, s, vh = u[:, :r], s[:r], v[:, :r].t()
    scaled = s / scaling
    if init == "psoft_init":
        return vh.contiguous(), (u @ torch.diag(scaled)).contiguous()
    root = torch.sqrt(scaled)
    return (torch.diag(root) @ vh).contiguous(), (u @ torch.diag(root)).contiguous()


class PsoftLinear(WeightUpdate):
    """A frozen Linear plus scaling · B (R - I) A, A and B W0's frozen principal factors."""

    def __init__(self, base_layer: nn.Module, config: PsoftConfig) -> None:
        super().__init__(base_layer)
        r = config.r
        self.r, self.scaling = r, config.psoft_alpha / r
        self.settings = {name: getattr(config, name) for name in OUTPUT_SETTINGS}
        weight = self.weight_out_in()
        if weight.is_meta:  # shapes only: nothing to decompose
            a, b = torch.empty(r, weight.shape[1]), torch.empty(weight.shape[0], r)
        else:  # costs one SVD of W0 (full: min(out, in)² x max(out, in) work)
            a, b = principal_factors(weight, r, self.scaling, config.ab_svd_init, config.psoft_svd,
                                     config.psoft_svd_lowrank_niter, config.random_seed)
        self.psoft_A = nn.Parameter(a, requires_grad=False)  # frozen, as PEFT's cache buffers
        self.psoft_B = nn.Parameter(b, requires_grad=False)
        self.psoft_R = PsoftRotation(rotation_shape(config), config.init_weights)
        self.psoft_dropout = nn.Dropout(config.psoft_dropout) if config.psoft_dropout > 0 else nn.Identity()

    def delta_weight(self) -> torch.Tensor:
        identity = torch.eye(self.r, device=self.psoft_A.device, dtype=self.psoft_A.dtype)
        return self.psoft_B @ (self.psoft_R.matrix() - identity) @ self.psoft_A * self.scaling

    def update(self, x: torch.Tensor, result: torch.Tensor) -> torch.Tensor:
        xa = self.psoft_dropout(x.to(self.psoft_A.dtype)) @ self.psoft_A.t()
        xr = xa @ self.psoft_R.matrix().to(xa.dtype).t()
        return result + ((xr - xa) @ self.psoft_B.t()) * self.scaling  # B (R - I) A x, scaled


@dataclass
class PsoftConfig(MethodConfig):
    r: int = option(32, "size of R, and how many of W0's top singular directions it turns (at most min(out, in))",
                    low=1, high=4096)
    psoft_alpha: float = option(32.0, "scaling = psoft_alpha / r (B is divided by it, the update multiplied: the "
                                      "start is the same, the step size is not)", low=1e-6, high=1e6)
    psoft_dropout: float = option(0.0, "dropout on the input during training", low=0.0, high=0.99)
    ab_svd_init: str = option("psoft_init", "how W0's singular values are split between the frozen factors: "
                                            "psoft_init (all in B, A's rows orthonormal) or pissa_init (square "
                                            "roots on both)", choices=INITS)
    psoft_svd: str = option("full", "the SVD that finds the factors: full (exact) or lowrank (randomized, seeded "
                                    "by random_seed)", choices=SVDS)
    psoft_svd_lowrank_niter: int = option(10, "power iterations of the lowrank SVD", low=0, high=1000)
    random_seed: int = option(0, "seed of the lowrank SVD's random projection", low=0, high=2**31 - 1)
    psoft_orth: bool = option(True, "R is orthogonal (a Cayley transform of a skew-symmetric Q); false: a free "
                                    "r x r matrix")
    psoft_mag_b: bool = option(True, "a trained scale on R's output side")
    psoft_mag_a: bool = option(True, "a trained scale on R's input side")
    use_cayley_neumann: bool = option(False, "approximate (I - Q)⁻¹ by a Neumann series (faster, not exactly "
                                             "orthogonal)")
    num_cayley_neumann_terms: int = option(5, "terms of the Neumann series", low=1, high=100)
    cayley_neumann_eps: float = option(0.0, "rescale Q to this Frobenius norm when it is larger (0: never)",
                                       low=0.0, high=0.999999)
    init_weights: bool = option(True, "R starts at I (the model starts at W0); false: a random start")
    targets: str | None = option(None, "comma list of Linear sites, e.g. q,v (Hugging Face names and site ids "
                                       "work too; default: the base's LoRA targets)")
    layers: str | None = option(None, "comma list of layer indices or ranges such as 0-3 (default: every layer)")


# the config fields PEFT writes as they are (its names are the studio's)
PEFT_SETTINGS = ("r", "psoft_alpha", "psoft_dropout", "ab_svd_init", "psoft_svd", "psoft_svd_lowrank_niter",
                 "random_seed", "psoft_orth", "psoft_mag_b", "psoft_mag_a", "use_cayley_neumann",
                 "num_cayley_neumann_terms", "init_weights")
# those that decide the outputs of given trained numbers (a model must match an adapter's in each)
OUTPUT_SETTINGS = ("r", "psoft_alpha", "ab_svd_init", "psoft_svd", "psoft_svd_lowrank_niter", "random_seed",
                   "psoft_orth", "psoft_mag_b", "psoft_mag_a", "use_cayley_neumann", "num_cayley_neumann_terms",
                   "cayley_neumann_eps")


def rotation_shape(config: PsoftConfig) -> RShape:
    return RShape(config.r, config.psoft_orth, config.psoft_mag_b, config.psoft_mag_a, config.use_cayley_neumann,
                  config.num_cayley_neumann_terms, config.cayley_neumann_eps)


class PsoftMethod(TargetedMethod):
    family_group = REPARAMETERISED
    name = "psoft"
    title = "PSOFT"
    config_cls = PsoftConfig
    site_kinds = (LINEAR,)
    claims_kinds = ()  # a click on a Linear means LoRA unless PSOFT is already chosen
    targets_default_from = "lora"
    refused_layers = {"Conv1D": LINEAR_ONLY.format("PSOFT")}
    example_space = {**Method.example_space, "r": (2, 4, 8), "psoft_alpha": (4.0, 32.0),
                     "ab_svd_init": INITS, "psoft_svd": SVDS, "psoft_orth": (True, False),
                     "psoft_mag_a": (True, False), "psoft_mag_b": (True, False),
                     ("use_cayley_neumann", "num_cayley_neumann_terms", "cayley_neumann_eps"):
                         ((False, 5, 0.0), (True, 5, 0.0), (True, 3, 0.5)),
                     "init_weights": (True, False)}
    peft_space = {"r": (4, 16), "psoft_alpha": (8, 32), "ab_svd_init": INITS, "psoft_svd": SVDS,
                  "psoft_orth": (True, False), "psoft_mag_a": (True, False), "use_cayley_neumann": (False, True)}
    peft_type = "PSOFT"
    exchange_tolerance = 1e-5  # the bar for outputs equal to PEFT's
    peft_config_fields = {"psoft_alpha": ((int, float), "a number"), "psoft_dropout": ((int, float), "a number"),
                          "ab_svd_init": ((str,), "psoft_init or pissa_init"), "psoft_svd": ((str,), "full or lowrank"),
                          "psoft_svd_lowrank_niter": ((int,), "a whole number"),
                          "random_seed": ((int,), "a whole number"), "psoft_orth": ((bool,), "true or false"),
                          "psoft_mag_b": ((bool,), "true or false"), "psoft_mag_a": ((bool,), "true or false"),
                          "use_cayley_neumann": ((bool,), "true or false"),
                          "num_cayley_neumann_terms": ((int,), "a whole number"),
                          "cayley_neumann_eps": ((int, float, type(None)), "a number or null"),
                          "init_weights": ((bool,), "true or false")}
    glyph = "⟲"
    colour = "#dc7633"
    card = MethodCard(
        where="beside a frozen Linear: an r x r rotation between W0's frozen top singular factors",
        intuition="turn W0's principal subspace inside itself: an orthogonal R keeps the angles between its "
                  "directions, so the pretrained geometry bends without breaking",
        advantages="r (r - 1) / 2 + 2r numbers per Linear, independent of its size; mergeable into W0",
        limitations="an SVD of every adapted W0 when attaching and again when loading; changes only what W0's "
                    "top r directions span; an r x r solve each step",
        formula="h = W0 x + (α/r) · B (R - I) A x,  R = diag(b) (I + Q)(I - Q)⁻¹ diag(a)",
    )

    def validate(self, config: PsoftConfig, base: FrozenBase) -> None:
        super().validate(config, base)
        for site in self.selected_sites(config, base):
            if config.r > min(site.in_features, site.out_features):
                raise ConfigError(f"r ({config.r}) must be at most min(in, out) of every adapted Linear; {site.id} "
                                  f"is {site.out_features} x {site.in_features}")

    def attach(self, model: StudioModel, config: PsoftConfig) -> None:
        for site in self.selected_sites(config, model.base):
            original = model.base.get_submodule(site.module_path)
            model.swap(site.module_path, PsoftLinear(original, config))

    def parameter_count(self, config: PsoftConfig, base: FrozenBase) -> int:
        return rotation_shape(config).count() * len(self.selected_sites(config, base))

    def formula_text(self, config: PsoftConfig, base: FrozenBase) -> str:
        sites = self.selected_sites(config, base)
        r = config.r
        parts = [f"{r}x{r - 1}/2" if config.psoft_orth else f"{r}x{r}"]
        parts += [str(r)] * (config.psoft_mag_a + config.psoft_mag_b)
        return f"{len(sites)} Linear(s) x ({' + '.join(parts)}) = {self.parameter_count(config, base):,}"

    def live_formula(self, config: PsoftConfig) -> str:
        formula = self.card.formula.replace("α/r", f"{config.psoft_alpha:g}/{config.r}")
        if not config.psoft_orth:
            formula = formula.replace("(I + Q)(I - Q)⁻¹", "M")
        elif config.use_cayley_neumann:
            formula = formula.replace("(I - Q)⁻¹", f"(I - Q)⁻¹ ≈ {config.num_cayley_neumann_terms} Neumann terms")
        return formula.replace("diag(b) ", "" if config.psoft_mag_b else "").replace(
            " diag(a)", "" if config.psoft_mag_a else "")

    def code(self, config: PsoftConfig) -> str:
        return code_line(PsoftLinear.update, "B (R - I) A x")

    def shape_notes(self, config: PsoftConfig, base: FrozenBase, seq_len: int) -> list[str]:
        return [f"{s.id}: A {config.r}x{s.in_features} and B {s.out_features}x{config.r} frozen (from W0's SVD); "
                f"R {config.r}x{config.r} from {rotation_shape(config).count()} trained numbers"
                for s in self.selected_sites(config, base)]

    # ---- Hugging Face PEFT exchange --------------------------------------------------------------------
    def peft_export(self, base: FrozenBase, config: PsoftConfig) -> tuple[dict, dict[str, torch.Tensor]]:
        targets, tensors = [], {}
        for path, layer in modules_of(base, PsoftLinear):
            name = hf_name(path, base)
            targets.append(name)
            for leaf, parameter in layer.psoft_R.named_parameters():
                tensors[f"{KEY_PREFIX}{name}.psoft_R.{leaf}"] = parameter
        settings = {name: getattr(config, name) for name in PEFT_SETTINGS}
        settings.update({"cayley_neumann_eps": config.cayley_neumann_eps or None, "target_modules": targets,
                         "exclude_modules": None, "fan_in_fan_out": False, "layers_to_transform": None,
                         "layers_pattern": None})
        return settings, tensors

    def peft_translate(self, peft_config: dict[str, Any], tensors: dict, where: str) -> tuple[dict, dict]:
        flag(peft_config, "fan_in_fan_out", where, False)  # PEFT resets it on a Linear, the only layer it takes
        choices = {"ab_svd_init": INITS, "psoft_svd": SVDS}
        options: dict[str, Any] = {}
        for name, allowed in choices.items():
            value = peft_config.get(name, allowed[0])
            if value not in allowed:
                raise AdapterFileError(f"{where}: {name} must be one of {', '.join(allowed)} (got {str(value)[:40]!r})")
            options[name] = value
        neumann = flag(peft_config, "use_cayley_neumann", where, False)
        options.update({
            "r": whole(peft_config, "r", where, 32, high=4096),
            "psoft_alpha": number(peft_config, "psoft_alpha", where, 32.0, 1e-6, 1e6),
            "psoft_dropout": number(peft_config, "psoft_dropout", where, 0.0, 0.0, 1.0, high_open=True),
            "psoft_svd_lowrank_niter": whole(peft_config, "psoft_svd_lowrank_niter", where, 10, low=0, high=1000),
            "random_seed": whole(peft_config, "random_seed", where, 0, low=0, high=2**31 - 1),
            "psoft_orth": flag(peft_config, "psoft_orth", where, True),
            "psoft_mag_b": flag(peft_config, "psoft_mag_b", where, True),
            "psoft_mag_a": flag(peft_config, "psoft_mag_a", where, True),
            "use_cayley_neumann": neumann,
            # the series' settings only count with it on (PEFT ignores them otherwise)
            "num_cayley_neumann_terms": whole(peft_config, "num_cayley_neumann_terms", where, 5, high=100)
            if neumann else 5,
            "cayley_neumann_eps": number(peft_config, "cayley_neumann_eps", where, 0.0, 0.0, 1.0, high_open=True)
            if neumann else 0.0,
            "init_weights": flag(peft_config, "init_weights", where, True)})
        shape = RShape(options["r"], options["psoft_orth"], options["psoft_mag_b"], options["psoft_mag_a"], neumann,
                       options["num_cayley_neumann_terms"], options["cayley_neumann_eps"])
        expected = {"psoft_R.weight": (shape.size * (shape.size - 1) // 2,) if shape.orth else
                    (shape.size, shape.size)}
        expected.update({f"psoft_R.vector_{side}": (shape.size,) for side, on in (("a", shape.mag_a),
                                                                                  ("b", shape.mag_b)) if on})
        studio: dict[str, torch.Tensor] = {}
        leaves = ("psoft_R.weight", "psoft_R.vector_a", "psoft_R.vector_b")
        for module, parts in split_module_keys(tensors, leaves, where, "a PSOFT").items():
            if set(parts) != set(expected):
                raise unknown(where, module, f"holds {', '.join(sorted(parts))}; these settings need "
                                             f"{', '.join(sorted(expected))}")
            for leaf, tensor in parts.items():
                expect_shape(tensor, len(expected[leaf]), f"{where}: {module}.{leaf}", AdapterFileError,
                             "x".join(map(str, expected[leaf])))
                if tuple(tensor.shape) != expected[leaf]:
                    raise unknown(where, f"{module}.{leaf}", f"has shape {tuple(tensor.shape)}, r = {shape.size} "
                                                             f"needs {expected[leaf]}")
                studio[f"{module}.{leaf}"] = tensor
        return options, studio

    def peft_check_model(self, base: FrozenBase, options: dict[str, Any], where: str) -> None:
        for path, layer in modules_of(base, PsoftLinear):
            differ = [name for name in OUTPUT_SETTINGS if layer.settings[name] != options[name]]
            if differ:
                raise AdapterFileError(f"{where}: the model's {path} differs from the adapter in {', '.join(differ)}")
