"""FRoD: each adapted Linear is rewritten as U (S + Λ) Vᵀ over a basis V shared by the same role in every layer; the
diagonal Λ and a sparse random off-diagonal S train (peft/tuners/frod).

Follows PEFT's Frod: Linears are grouped by role (PEFT's category: the module name's last two parts, e.g. self_query)
and layer; per role, V (in x in) comes from a joint decomposition of all its layers' W0 (an SVD of the stacked
weights when they are wider than tall, else a QR with a regularised mean of the inverse Gram matrices, then eigh),
computed once at attach in float32. Per Linear, W0 = B Vᵀ is solved in float64; Λ = the column norms of B and
U = B / Λ (frozen). S's positions are a random share sparse_rate of V's off-diagonal entries, drawn per role in
sorted role order from one generator seeded with projection_prng_key; its values start at zero, so

    h = U (S + Λ) Vᵀ x + b         (= W0 x + b at the start, up to the decomposition's rounding)
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from ..bases.frozen import FrozenBase
from ..bases.sites import LINEAR, Site
from ..errors import AdapterFileError
from ..model.studio_model import StudioModel
from .config import MethodConfig, option
from .mergeable import WeightUpdate
from .method import REPARAMETERISED, Method, MethodCard, TargetedMethod, code_line
from .peft_fields import flag, number, whole
from .peft_format import KEY_PREFIX, hf_name, modules_of, split_module_keys, unknown

SHARED = ("base_model.frod_V.", "base_model.frod_s_indices.", "base_model.frod_s_size.")


def category(key: str) -> str:
    """PEFT's _category_from_key: the role of a module by the last parts of its name."""
    parts = key.split(".")
    if len(parts) == 1:
        return parts[0]
    if parts[-2].isdigit():
        return parts[-1]
    role = f"{parts[-2]}_{parts[-1]}"
    return "attention_output" if role == "output_dense" and len(parts) >= 3 and parts[-3] == "attention" else role


def layer_index(key: str, fallback: int) -> int:
    """PEFT's _layer_index_from_key: the number after `layers`, else the first number, else `fallback`."""
    parts = key.split(".")
    if "layers" in parts:
        try:
            return int(parts[parts.index("layers") + 1])
        except (ValueError, IndexError):
            pass
    return next((int(part) for part in parts if part.isdigit()), fallback)


def joint_basis(matrices: list[torch.Tensor], alpha: float) -> torch.Tensor:
    """PEFT's _projection_from_weights: V (in x in) shared by the role's weights."""
    stacked = torch.cat(matrices, dim=0)
    if stacked.shape[0] < stacked.shape[1]:
        return torch.linalg.svd(stacked, full_matrices=True)[2].T
    q, r = torch.linalg.qr(stacked)
    dim = r.shape[1]
    mean_inverse = torch.zeros((dim, dim), dtype=r.dtype)
    start = 0
    for matrix in matrices:
        part = q[start:start + matrix.shape[0], :]
        mean_inverse += torch.linalg.inv(part.T @ part + alpha * torch.eye(dim, dtype=r.dtype))
        start += matrix.shape[0]
    mean_inverse /= len(matrices)
    return r.T @ torch.linalg.eigh(mean_inverse)[1]


def sparse_positions(size: int, rate: float, generator: torch.Generator) -> torch.Tensor:
    """(2, nnz) off-diagonal positions of S, drawn as PEFT draws them."""
    rows, cols = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    every = torch.stack([rows.flatten(), cols.flatten()], dim=1)
    off_diagonal = every[every[:, 0] != every[:, 1]]
    count = nonzeros(size, rate)
    if not count:
        return torch.empty(2, 0, dtype=torch.long)
    return off_diagonal[torch.randperm(off_diagonal.shape[0], generator=generator)[:count]].t().contiguous()


def nonzeros(size: int, rate: float) -> int:
    count = min(int(size * size * rate), size * (size - 1))
    return max(1, count) if rate > 0 and size > 1 else count


def solve_u_and_lambda(basis: torch.Tensor, weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """PEFT's _calculate_frod_u_and_lambda: W0 = B Vᵀ in float64, Λ = |B|'s column norms, U = B / Λ."""
    w, v = weight.detach().to(torch.float64).cpu(), basis.detach().to(torch.float64).cpu()
    try:
        b = torch.linalg.solve(v, w.T).T
    except RuntimeError:  # a singular basis: the pseudo-inverse, as PEFT
        b = w @ torch.linalg.pinv(v, rtol=1e-6).T
    norms = torch.linalg.norm(b, dim=0)
    u = torch.zeros_like(b)
    kept = norms > 1e-12
    u[:, kept] = b[:, kept] / norms[kept]
    return u.float(), norms.float()


class FrodShared(nn.Module):
    """Per role: the basis V and S's positions (frozen; positions as float32, exact below 2^24), in extras."""

    def __init__(self, settings: tuple[float, float, int]) -> None:
        super().__init__()
        self.settings = settings  # (sparse_rate, regularization_alpha, projection_prng_key) that made them
        self.frod_V = nn.ParameterDict()
        self.frod_s_indices = nn.ParameterDict()


class FrodLinear(WeightUpdate):
    """A frozen Linear computed as U (S + Λ) Vᵀ x + b with its role's shared V and S positions."""

    def __init__(self, base_layer: nn.Module, shared: FrodShared, role: str, dropout: float,
                 init_weights: bool) -> None:
        super().__init__(base_layer)
        self.__dict__["shared"] = shared  # a plain reference: registered once, in model.extras
        self.role = role
        self.frod_dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        basis = shared.frod_V[role]
        count = shared.frod_s_indices[role].shape[1]
        if basis.device.type == "meta":  # a shapes-only model: nothing to solve
            u, norms = torch.empty(self.weight_out_in().shape), torch.empty(basis.shape[0])
        else:
            u, norms = solve_u_and_lambda(basis, self.weight_out_in())
        self.frod_U = u  # frozen and derived from W0 and V: a plain attribute, as PEFT keeps it out of the file
        self.frod_lambda_l = nn.Parameter(norms)
        self.frod_lambda_s_values = nn.Parameter(torch.zeros(count))
        if not init_weights:  # PEFT's init_weights=False: both moved off the decomposition at random
            with torch.no_grad():
                self.frod_lambda_s_values.normal_(0, 0.1)
                self.frod_lambda_l.add_(torch.randn_like(self.frod_lambda_l) * 0.1)

    def parts(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """U, V and S's (rows, columns) positions (dense index arithmetic: no sparse tensor enters autograd)."""
        basis = self.shared.frod_V[self.role]
        positions = self.shared.frod_s_indices[self.role].long()
        return self.frod_U.to(basis.device), basis, positions

    def merged_weight(self) -> torch.Tensor:
        u, basis, (rows, cols) = self.parts()
        size = basis.shape[0]
        s = torch.zeros(size, size, dtype=basis.dtype, device=basis.device).index_put(
            (rows, cols), self.frod_lambda_s_values, accumulate=True)
        return u @ (s + torch.diag_embed(self.frod_lambda_l)) @ basis.T  # PEFT's frod_weight

    def delta_weight(self) -> torch.Tensor:
        return self.merged_weight() - self.weight_out_in()

    def rewritten(self, x: torch.Tensor) -> torch.Tensor:
        """U (S + Λ) Vᵀ x: z = Vᵀ x, then S z gathered entry by entry (PEFT's sparse product)."""
        u, basis, (rows, cols) = self.parts()
        z = x @ basis
        z_s = torch.zeros_like(z).index_add(-1, rows, z[..., cols] * self.frod_lambda_s_values)  # S z
        return F.linear(z_s + z * self.frod_lambda_l, u)  # U (S + Λ) Vᵀ x

    def adapted(self, x: torch.Tensor) -> torch.Tensor:
        bias = self.base_layer.bias
        if isinstance(self.frod_dropout, nn.Identity) or not self.training:  # PEFT skips the base layer
            out = self.rewritten(x)
            return out if bias is None else out + bias
        dropped = self.frod_dropout(x)  # W0 x + b + (U (S + Λ) Vᵀ - W0) dropout(x), as PEFT
        return self.base_layer(x) + self.rewritten(dropped) - F.linear(dropped, self.weight_out_in())


@dataclass
class FrodConfig(MethodConfig):
    sparse_rate: float = option(0.01, "share of each basis's off-diagonal entries in S that train", low=0.0,
                                high=1.0)
    regularization_alpha: float = option(1e-3, "ridge added to each layer's Gram matrix in the joint "
                                               "decomposition", low=0.0, high=1e6)
    projection_prng_key: int = option(0, "seed of S's positions (PEFT's projection_prng_key)", low=0,
                                      high=2**31 - 1)
    dropout: float = option(0.0, "dropout on the input during training (PEFT's frod_dropout)", low=0.0, high=0.99)
    init_weights: bool = option(True, "S starts at zero, so the layer starts at W0 (false: S and Λ moved at "
                                      "random)")
    save_projection: bool = option(True, "write V and S's positions into an exported PEFT folder (false: PEFT "
                                         "decomposes W0 again)")
    targets: str | None = option(None, "comma list of Linear sites, e.g. q,v (Hugging Face names and site ids "
                                       "work too; default: the base's LoRA targets)")
    layers: str | None = option(None, "comma list of layer indices or ranges such as 0-3 (default: every layer)")


class FrodMethod(TargetedMethod):
    family_group = REPARAMETERISED
    name = "frod"
    title = "FRoD"
    config_cls = FrodConfig
    site_kinds = (LINEAR,)
    claims_kinds = ()  # a click on a Linear means LoRA unless FRoD is already chosen
    targets_default_from = "lora"
    example_space = {**Method.example_space, "sparse_rate": (0.0, 0.01, 0.05), "projection_prng_key": (0, 3),
                     "save_projection": (True, False)}
    peft_space = {"sparse_rate": (0.0, 0.01), "projection_prng_key": (0, 5), "save_projection": (True, False)}
    peft_type = "FROD"
    exchange_tolerance = 1e-5  # the bar for outputs equal to PEFT's
    peft_on_meta_device = False  # PEFT decomposes real weights (QR, SVD, solve): its count is compared on MiniLM
    peft_config_fields = {"sparse_rate": ((int, float), "a number"), "regularization_alpha": ((int, float), "a number"),
                          "projection_prng_key": ((int,), "a whole number"), "frod_dropout": ((int, float), "a number"),
                          "save_projection": ((bool,), "true or false"), "init_weights": ((bool,), "true or false")}
    glyph = "UΛV"
    colour = "#b9770e"
    card = MethodCard(
        where="a frozen Linear rewritten over a basis shared by its role in every layer: a diagonal and a sparse "
              "random off-diagonal train",
        intuition="layers playing the same role share directions: decompose them jointly, then rescale and mix "
                  "those shared directions per layer",
        advantages="full-rank updates for about in (+ sparse_rate x in²) numbers per Linear; mergeable",
        limitations="a joint QR / SVD and a float64 solve at build time; outputs equal W0's only up to the "
                    "decomposition's rounding",
        formula="h = U (S + Λ) Vᵀ x + b,  V shared per role, Λ diagonal, S sparse (trained)",
    )

    def roles(self, sites: list[Site], base: FrozenBase) -> list[str]:
        return [category(base.hf_module(s.module_path) or s.module_path) for s in sites]

    def attach(self, model: StudioModel, config: FrodConfig) -> None:
        base = model.base
        sites = self.selected_sites(config, base)
        roles = self.roles(sites, base)
        weights: dict[int, dict[str, torch.Tensor]] = defaultdict(dict)
        for fallback, (site, role) in enumerate(zip(sites, roles, strict=True)):
            layer = base.get_submodule(site.module_path)
            weight = layer.weight.T if not isinstance(layer, nn.Linear) else layer.weight  # Conv1D: [in, out]
            weights[layer_index(base.hf_module(site.module_path) or site.module_path, fallback)][role] = weight
        shared = FrodShared((config.sparse_rate, config.regularization_alpha, config.projection_prng_key))
        generator = torch.Generator(device="cpu").manual_seed(config.projection_prng_key)
        for role in sorted(set(roles)):
            matrices = [w[role].detach() for _, w in sorted(weights.items()) if role in w]
            if matrices[0].device.type == "meta" or torch.empty(0).device.type == "meta":  # shapes only
                size = matrices[0].shape[1]
                basis, positions = torch.empty(size, size), torch.zeros(2, nonzeros(size, config.sparse_rate))
            else:
                basis = joint_basis([m.float().cpu() for m in matrices], config.regularization_alpha)
                positions = sparse_positions(basis.shape[0], config.sparse_rate, generator)
            shared.frod_V[role] = nn.Parameter(basis.float(), requires_grad=False)
            shared.frod_s_indices[role] = nn.Parameter(positions.float(), requires_grad=False)
        model.extras["frod"] = shared
        for site, role in zip(sites, roles, strict=True):
            model.swap(site.module_path, FrodLinear(base.get_submodule(site.module_path), shared, role,
                                                    config.dropout, config.init_weights))

    def parameter_count(self, config: FrodConfig, base: FrozenBase) -> int:
        return sum(s.in_features + nonzeros(s.in_features, config.sparse_rate)
                   for s in self.selected_sites(config, base))

    def formula_text(self, config: FrodConfig, base: FrozenBase) -> str:
        sites = self.selected_sites(config, base)
        return (f"sum over {len(sites)} Linear(s) of in (Λ) + nnz(S) = {self.parameter_count(config, base):,} "
                f"(V shared by {len(set(self.roles(sites, base)))} role(s), frozen)")

    def live_formula(self, config: FrodConfig) -> str:
        return f"{self.card.formula}, S: {config.sparse_rate:g} of the off-diagonal"

    def code(self, config: FrodConfig) -> str:
        return code_line(FrodLinear.rewritten, "F.linear")

    def shape_notes(self, config: FrodConfig, base: FrozenBase, seq_len: int) -> list[str]:
        sites = self.selected_sites(config, base)
        return [f"{s.id} ({role}): V {s.in_features}x{s.in_features} shared, U {s.out_features}x{s.in_features} "
                f"frozen; Λ {s.in_features} and S {nonzeros(s.in_features, config.sparse_rate)} values train"
                for s, role in zip(sites, self.roles(sites, base), strict=True)]

    # ---- Hugging Face PEFT exchange --------------------------------------------------------------------
    def peft_export(self, base: FrozenBase, config: FrodConfig) -> tuple[dict, dict[str, torch.Tensor]]:
        layers = modules_of(base, FrodLinear)
        tensors: dict[str, torch.Tensor] = {}
        targets = []
        for path, layer in layers:
            name = hf_name(path, base)
            targets.append(name)
            tensors[f"{KEY_PREFIX}{name}.frod_lambda_l"] = layer.frod_lambda_l
            tensors[f"{KEY_PREFIX}{name}.frod_lambda_s_values"] = layer.frod_lambda_s_values
        if config.save_projection:
            shared = layers[0][1].shared
            for role, basis in shared.frod_V.items():
                tensors[f"{SHARED[0]}{role}"] = basis
                tensors[f"{SHARED[1]}{role}"] = shared.frod_s_indices[role].long()
                tensors[f"{SHARED[2]}{role}"] = torch.tensor([basis.shape[0]] * 2, dtype=torch.long)
        settings = {"sparse_rate": config.sparse_rate, "regularization_alpha": config.regularization_alpha,
                    "projection_prng_key": config.projection_prng_key, "frod_dropout": config.dropout,
                    "save_projection": config.save_projection, "init_weights": config.init_weights,
                    "target_modules": targets, "bias": "none",
                    "fan_in_fan_out": any(layer.fan_in_fan_out for _, layer in layers),
                    "layers_to_transform": None, "layers_pattern": None, "runtime_offload_base_weight": False}
        return settings, tensors

    def peft_translate(self, peft_config: dict[str, Any], tensors: dict, where: str) -> tuple[dict, dict]:
        if peft_config.get("bias", "none") != "none":
            raise AdapterFileError(f"{where}: bias {peft_config.get('bias')!r} trains base biases too; only 'none'")
        flag(peft_config, "fan_in_fan_out", where, False)  # PEFT sets it from the layer type itself
        options: dict[str, Any] = {
            "sparse_rate": number(peft_config, "sparse_rate", where, 0.01, 0.0, 1.0),
            "regularization_alpha": number(peft_config, "regularization_alpha", where, 1e-3, 0.0, 1e6),
            "projection_prng_key": whole(peft_config, "projection_prng_key", where, 0, low=0),
            "dropout": number(peft_config, "frod_dropout", where, 0.0, 0.0, 1.0, high_open=True),
            "init_weights": flag(peft_config, "init_weights", where, True),
            "save_projection": flag(peft_config, "save_projection", where, True)}
        tensors = dict(tensors)
        studio: dict[str, torch.Tensor] = {}
        for key in [k for k in tensors if k.startswith(SHARED)]:
            tensor = tensors.pop(key)
            prefix = next(p for p in SHARED if key.startswith(p))
            role = key.removeprefix(prefix)
            if not role.isidentifier():
                raise unknown(where, key, "does not name a module role")
            if prefix == SHARED[0]:
                studio[f"extras.frod.frod_V.{role}"] = tensor
            elif prefix == SHARED[1]:  # positions below 2^24 are exact in the studio's float32
                if tensor.is_floating_point() or tensor.dim() != 2 or tensor.shape[0] != 2 or \
                        (tensor.numel() and not 0 <= int(tensor.min()) <= int(tensor.max()) < 2**24):
                    raise unknown(where, key, "should hold (2, nnz) whole-number positions")
                studio[f"extras.frod.frod_s_indices.{role}"] = tensor.float()
        for module, parts in split_module_keys(tensors, ("frod_lambda_l", "frod_lambda_s_values"), where,
                                               "a FRoD").items():
            if set(parts) != {"frod_lambda_l", "frod_lambda_s_values"}:
                raise unknown(where, module, "needs both frod_lambda_l and frod_lambda_s_values")
            studio.update({f"{module}.{leaf}": tensor for leaf, tensor in parts.items()})
        if options["save_projection"] != any(k.startswith("extras.") for k in studio):
            raise AdapterFileError(f"{where}: save_projection is {str(options['save_projection']).lower()}, but the "
                                   "file does not hold the projections accordingly")
        return options, studio

    def peft_check_model(self, base: FrozenBase, options: dict[str, Any], where: str) -> None:
        """U comes from the model's own decomposition (PEFT recomputes it too), so the settings that made V and S
        must be the adapter's."""
        layers = modules_of(base, FrodLinear)
        wanted = (options["sparse_rate"], options["regularization_alpha"], options["projection_prng_key"])
        if layers and layers[0][1].shared.settings != wanted:
            raise AdapterFileError(f"{where}: the adapter's sparse_rate, regularization_alpha and "
                                   f"projection_prng_key are {wanted}; the model's {layers[0][1].shared.settings}")
