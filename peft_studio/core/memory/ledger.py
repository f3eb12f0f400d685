"""The memory ledger: what one training step keeps in memory, estimated from shapes and measured from tensors.

Six lines, the order the stacked bar draws them: frozen weights (fp32, or NF4 codes + block scales for QLoRA),
trainable weights, their gradients, optimizer state, activations kept for backward, and the logits.

The estimate needs no training step. Weights, gradients and optimizer state are closed forms of the census
(numel x bytes per element). Activations are a closed form in batch size B and sequence length L,

    activations(B, L) = k + B x (a + b L + c L^2)

(c is attention's L x L scores, k is what does not grow with the batch, such as QLoRA's dequantized weights),
whose four coefficients come from four tiny real forward passes of the current model (B = 1 at three lengths
and B = 2 at one), counting what autograd saves exactly as the measurement does. Sliding B or L then costs
nothing. The measurement runs one real step on the real batch, counts parameters, gradients and optimizer
state from the tensors themselves, and activations from the tensors autograd saves for backward
(torch.autograd.graph.saved_tensors_hooks), each storage counted once; on CUDA it also reports
torch.cuda.max_memory_allocated. The step is undone afterwards: weights, gradients and random state return.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Any

import torch

from ..errors import ConfigError
from ..model.census import take_census
from ..model.experiment import Experiment

CATEGORIES: tuple[tuple[str, str], ...] = (
    ("frozen", "frozen weights"),
    ("trainable", "trainable weights"),
    ("gradients", "gradients"),
    ("optimizer", "optimizer state"),
    ("activations", "activations kept for backward"),
    ("logits", "logits"),
)
PROBE_LENGTHS = (4, 8, 12)  # three lengths pin the quadratic in L; B = 2 at the first pins the batch term
MOMENTS = {"adam": 2, "adamw": 2, "sgd": 0}  # fp32 state tensors per trainable tensor


@dataclass(frozen=True)
class Ledger:
    """Bytes per category for one training step at batch size B and (padded) sequence length L."""

    kind: str  # "estimate" or "measured"
    batch_size: int
    seq_len: int
    frozen: int
    trainable: int
    gradients: int
    optimizer: int
    activations: int
    logits: int
    frozen_format: str = "fp32"  # or "nf4 + fp32 block scales"
    cuda_peak: int | None = None  # torch.cuda.max_memory_allocated during the measured step

    @property
    def total(self) -> int:
        return sum(getattr(self, key) for key, _ in CATEGORIES)

    def items(self) -> list[tuple[str, str, int]]:
        """(key, label, bytes) in drawing order."""
        return [(key, label, getattr(self, key)) for key, label in CATEGORIES]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def at(self, fit: ActivationFit, batch_size: int, seq_len: int) -> Ledger:
        """This estimate at another batch size and sequence length: only activations and logits move."""
        if batch_size < 1 or seq_len < 1:
            raise ConfigError(f"batch size and sequence length must be at least 1 (got {batch_size}, {seq_len})")
        logits_per_example = self.logits / self.batch_size if self.batch_size else 0
        return replace(self, kind="estimate", batch_size=batch_size, seq_len=seq_len,
                       activations=fit.bytes(batch_size, seq_len), logits=round(logits_per_example * batch_size),
                       cuda_peak=None)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Ledger:
        return cls(**{k: data[k] for k in cls.__dataclass_fields__ if k in data})


@dataclass(frozen=True)
class ActivationFit:
    """activations(B, L) = constant + B x (per_example + per_token L + per_token_pair L^2), in bytes."""

    constant: float
    per_example: float
    per_token: float
    per_token_pair: float

    def bytes(self, batch_size: int, seq_len: int) -> int:
        per = self.per_example + self.per_token * seq_len + self.per_token_pair * seq_len ** 2
        return max(0, round(self.constant + batch_size * per))

    def formula(self) -> str:
        return (f"{self.constant:,.0f} + B x ({self.per_example:,.0f} + {self.per_token:,.0f} L"
                f" + {self.per_token_pair:,.0f} L^2) bytes")


class _SavedStorages:
    """saved_tensors_hooks that record each saved storage once, skipping the ones listed as not activations."""

    def __init__(self, skip: set[tuple[str, int]]) -> None:
        self.skip = skip
        self.sizes: dict[tuple[str, int], int] = {}

    def pack(self, tensor: torch.Tensor) -> torch.Tensor:
        key = _storage_key(tensor)
        if key not in self.skip:
            self.sizes[key] = tensor.untyped_storage().nbytes()
        return tensor

    @staticmethod
    def unpack(tensor: torch.Tensor) -> torch.Tensor:
        return tensor

    def hooks(self) -> torch.autograd.graph.saved_tensors_hooks:
        return torch.autograd.graph.saved_tensors_hooks(self.pack, self.unpack)

    @property
    def total(self) -> int:
        return sum(self.sizes.values())


def _storage_key(tensor: torch.Tensor) -> tuple[str, int]:
    return str(tensor.device), tensor.untyped_storage().data_ptr()


def _weight_storages(experiment: Experiment) -> set[tuple[str, int]]:
    """Parameters and buffers: autograd saves them too (a Linear keeps W for the input's gradient), but they
    are already counted as weights."""
    model = experiment.model
    return {_storage_key(t) for t in [*model.parameters(), *model.buffers()]}


def _tensor_bytes(tensors) -> int:
    seen: dict[tuple[str, int], int] = {}
    for tensor in tensors:
        seen[_storage_key(tensor)] = tensor.untyped_storage().nbytes()
    return sum(seen.values())


def _probe(experiment: Experiment, batch: int, length: int, skip: set[tuple[str, int]]) -> int:
    """Activation bytes of one forward pass on a synthetic batch (real token ids, no padding)."""
    row = experiment.train_ids[0]
    tokens = row[experiment.train_mask[0].bool()] if experiment.train_mask[0].any() else row
    ids = tokens.repeat(length // max(1, len(tokens)) + 1)[:length].unsqueeze(0).repeat(batch, 1)
    mask = torch.ones_like(ids, dtype=experiment.train_mask.dtype)
    counter = _SavedStorages(skip | {_storage_key(ids), _storage_key(mask)})
    with counter.hooks():
        experiment.model(ids, mask)
    return counter.total


def fit_activations(experiment: Experiment) -> ActivationFit:
    """The four coefficients of activations(B, L), from four tiny forward passes of the current model.

    Random state and train/eval mode are left as they were; no weight changes (there is no backward).
    """
    model = experiment.model
    skip = _weight_storages(experiment)
    was_training = model.training
    a, b, c = PROBE_LENGTHS
    with torch.random.fork_rng(devices=[]), torch.enable_grad():
        model.train()
        try:
            p1, p2, p3 = (_probe(experiment, 1, length, skip) for length in (a, b, c))
            p4 = _probe(experiment, 2, a, skip)
        finally:
            model.train(was_training)
    constant = 2 * p1 - p4  # f(1, a) = k + g(a), f(2, a) = k + 2 g(a)
    ga, gb, gc = p4 - p1, p2 - constant, p3 - constant
    # the quadratic g(L) = e + t L + s L^2 through three points (divided differences)
    d1, d2 = (gb - ga) / (b - a), (gc - gb) / (c - b)
    s = (d2 - d1) / (c - a)
    t = d1 - s * (a + b)
    e = ga - t * a - s * a * a
    return ActivationFit(float(constant), e, t, s)


def _optimizer_moments(optimizer: str) -> int:
    if optimizer not in MOMENTS:
        raise ConfigError(f"optimizer must be one of {', '.join(MOMENTS)} (got {optimizer!r})")
    return MOMENTS[optimizer]


def training_batch_size(experiment: Experiment, batch_size: int) -> int:
    """The rows one step sees: 0 (or more than the data) means the whole training set, as the trainer does."""
    count = len(experiment.train_labels)
    return count if batch_size <= 0 or batch_size >= count else batch_size


def estimate_ledger(experiment: Experiment, batch_size: int = 0, seq_len: int | None = None,
                    optimizer: str = "adam", fit: ActivationFit | None = None) -> Ledger:
    """The ledger from shapes: census closed forms plus activations(B, L).

    batch_size 0 means the full training set; seq_len None means the padded training length the trainer uses.
    Pass `fit` (from fit_activations) to move the sliders without running the probes again.
    """
    moments = _optimizer_moments(optimizer)
    batch = training_batch_size(experiment, batch_size)
    length = int(experiment.train_ids.shape[1]) if seq_len is None else seq_len
    if batch < 1 or length < 1:
        raise ConfigError(f"batch size and sequence length must be at least 1 (got {batch}, {length})")
    census = take_census(experiment.model)
    frozen = sum(r.bytes for r in census.rows if not r.trainable)
    trainable_rows = [r for r in census.rows if r.trainable]
    trainable = sum(r.bytes for r in trainable_rows)
    optimizer_bytes = moments * trainable + (4 * len(trainable_rows) if moments else 0)  # + Adam's step counter
    fit = fit or fit_activations(experiment)
    logits = _logit_bytes(experiment, batch, length)
    return Ledger("estimate", batch, length, frozen, trainable, trainable, optimizer_bytes,
                  fit.bytes(batch, length), logits, _frozen_format(census))


def _logit_bytes(experiment: Experiment, batch: int, length: int) -> int:
    """fp32 logits and the log-softmax the loss keeps for backward. Classification: one row per text.
    Next-token: B x L x V logits and their log-softmax at every position (the loss shifts the targets, not the
    logits, and ignores the positions without a real next token, as transformers' causal-LM loss does)."""
    if not experiment.next_token:
        return 2 * batch * experiment.dataset.num_labels * 4
    vocab = experiment.base.lm_head.out_features
    return 2 * 4 * vocab * batch * length


def _frozen_format(census) -> str:
    return "nf4 + fp32 block scales" if census.quantization else "fp32"


def measure_ledger(experiment: Experiment, batch_size: int = 0, optimizer: str = "adam",
                   lr: float = 1e-3) -> Ledger:
    """One real training step on the first `batch_size` training rows, counted from the tensors, then undone."""
    moments = _optimizer_moments(optimizer)
    model = experiment.model
    batch = training_batch_size(experiment, batch_size)
    ids, mask = experiment.train_ids[:batch], experiment.train_mask[:batch]
    labels = experiment.train_labels[:batch]
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    params = [p for _, p in named]
    saved_values = [p.detach().clone() for p in params]
    saved_grads = [p.grad for p in params]
    was_training = model.training
    cuda = experiment.device.type == "cuda"
    skip = _weight_storages(experiment) | {_storage_key(t) for t in (ids, mask, labels)}
    if cuda:
        torch.cuda.synchronize(experiment.device)
        torch.cuda.reset_peak_memory_stats(experiment.device)
    with torch.random.fork_rng(devices=[experiment.device] if cuda else []), torch.enable_grad():
        try:
            model.train()
            for p in params:
                p.grad = None
            step_optimizer = (torch.optim.SGD(params, lr=lr) if moments == 0 else
                              torch.optim.AdamW(params, lr=lr) if optimizer == "adamw" else
                              torch.optim.Adam(params, lr=lr))
            activations = _SavedStorages(skip)
            with activations.hooks():
                logits = model(ids, mask)
            loss_saved = _SavedStorages(skip)
            with loss_saved.hooks():
                loss = experiment.loss(logits, ids, mask, labels)[0]  # the task's loss (next-token: over positions)
            logit_bytes = _tensor_bytes([logits]) + sum(
                size for key, size in loss_saved.sizes.items() if key != _storage_key(logits))
            loss.backward()
            gradients = _tensor_bytes([p.grad for p in params if p.grad is not None])
            step_optimizer.step()
            state = [t for s in step_optimizer.state.values() for t in s.values() if torch.is_tensor(t)]
            optimizer_bytes = _tensor_bytes(state) if state else 0
            peak = torch.cuda.max_memory_allocated(experiment.device) if cuda else None
            del logits, loss, step_optimizer, state
        finally:
            with torch.no_grad():
                for p, value, grad in zip(params, saved_values, saved_grads, strict=True):
                    p.copy_(value)
                    p.grad = grad
            model.train(was_training)
    frozen_tensors = [p for p in model.parameters() if not p.requires_grad] + list(model.buffers())
    census = take_census(model)
    return Ledger("measured", batch, int(ids.shape[1]), _tensor_bytes(frozen_tensors), _tensor_bytes(params),
                  gradients, optimizer_bytes, activations.total, logit_bytes, _frozen_format(census), peak)
