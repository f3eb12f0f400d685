"""One experiment: a dataset, a frozen base, a method with its config, and the model they make."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Any

import torch

from ..bases import create_base, uses_dataset_vocabulary
from ..bases.frozen import FrozenBase
from ..bases.meta_device import on_meta
from ..data import TextDataset
from ..errors import ConfigError
from ..memory.budget import check_memory
from ..methods import Method, ShapeChange, get_method
from ..methods.config import MethodConfig
from .base_pool import BaseKey, PrebuiltBase, base_key
from .census import Census, take_census
from .next_token import NEXT_TOKEN, check_next_token, last_position_probs, task_loss, vocabulary_words
from .seeding import seeded
from .studio_model import StudioModel


@dataclass
class Setup:
    """Everything that defines a model; the GUI saves and restores it, the CLI builds it from flags."""

    base: str = "tiny"
    method: str = "lora"
    options: dict[str, Any] = field(default_factory=dict)
    seed: int = 0
    base_options: dict[str, Any] = field(default_factory=dict)


class Experiment:
    """Builds the model in a fixed random order: base, then the method's parts, then the head."""

    def __init__(self, setup: Setup, dataset: TextDataset, prebuilt: PrebuiltBase | None = None) -> None:
        """`prebuilt`: a free base built for this setup's base, seed and dataset (base_pool.py), used instead of
        building one; a base built for another key is not used."""
        self.setup = setup
        self.dataset = dataset
        self.method: Method = get_method(setup.method)
        self.config: MethodConfig = self.method.config(setup.options)
        self.device = torch.device("cpu")
        self.notes: list[str] = []  # what building it left out or reads differently (e.g. an import): shown, not kept
        check_memory(setup, dataset)  # the model, the encoded data and one example must fit before building
        self._prebuilt = prebuilt if prebuilt is not None and prebuilt.key == self.base_key() else None
        self._rng_after_base: torch.Tensor | None = None
        self.model = self._build()
        try:
            self._encode(dataset)
        except BaseException:
            self.model.detach_method()  # the base goes back as it came (a prebuilt one may be built on again)
            raise

    def _encode(self, dataset: TextDataset) -> None:
        self.tokenizer = self.model.base.tokenizer
        self.train_ids, self.train_mask = self.tokenizer.batch(list(dataset.train_texts))
        self.train_labels = torch.tensor(dataset.train_labels, dtype=torch.long)
        if dataset.val_texts:
            self.val_ids, self.val_mask = self.tokenizer.batch(list(dataset.val_texts))
        else:
            self.val_ids = self.val_mask = None
        self.val_labels = torch.tensor(dataset.val_labels, dtype=torch.long)
        if self.next_token:  # the targets are the texts themselves (shifted by one inside the loss)
            self.train_labels = self.train_ids
            self.val_labels = self.val_ids if self.val_ids is not None else self.val_labels

    @property
    def next_token(self) -> bool:
        """The dataset's task is next-token prediction (core/model/next_token.py), not classification."""
        return self.dataset.task == NEXT_TOKEN

    def loss(self, logits: torch.Tensor, ids: torch.Tensor, mask: torch.Tensor,
             labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(loss, accuracy) of the model's `logits` for this task's targets."""
        return task_loss(self.dataset.task, logits, ids, mask, labels)

    @property
    def base(self) -> FrozenBase:
        return self.model.base

    def base_key(self) -> BaseKey:
        return base_key(self.setup.base, self.setup.base_options, self.setup.seed, self.dataset)

    def _build(self) -> StudioModel:
        with seeded(self.setup.seed):  # the seed, then every initial weight: no other build draws in between
            return self._build_seeded()

    def _build_seeded(self) -> StudioModel:
        prebuilt, self._prebuilt = self._prebuilt, None  # used once: reset() builds afresh
        known_fingerprint = None
        if prebuilt is not None:  # the generator as the base's own build left it: the parts draw the same
            torch.set_rng_state(prebuilt.rng_after)
            base, known_fingerprint = prebuilt.base, prebuilt.fingerprint
        else:
            tokenizer = self.dataset.make_tokenizer() if uses_dataset_vocabulary(self.setup.base) else None
            base = create_base(self.setup.base, tokenizer, **self.setup.base_options)
        self._rng_after_base = torch.get_rng_state()
        return attach_method(base, self.method, self.config, self.dataset, known_fingerprint)

    def release_base(self) -> PrebuiltBase:
        """Detach the method (the base is restored exactly) and hand the base over for another build of the same
        key. This experiment's model is bare afterwards: only for one that nothing shows or runs any more."""
        assert self._rng_after_base is not None
        self.model.detach_method()
        return PrebuiltBase(self.base_key(), self.base, self._rng_after_base, self.model.base_fingerprint)

    def reset(self) -> None:
        """Fresh method parts and head from the same seed, on the same device; the base is rebuilt bit-identical."""
        self.model = self._build().to(self.device)

    def to(self, device: str) -> None:
        """Move the model and the encoded data; an unknown or absent device is a ConfigError."""
        if device != "cpu" and not (device.startswith("cuda") and torch.cuda.is_available()):
            raise ConfigError(f"device {device!r} is not available here (use cpu"
                              f"{', cuda' if torch.cuda.is_available() else ''})")
        self.device = torch.device(device)
        if self.base.on_meta_device:  # nothing to move: shapes only
            return
        self.model.to(self.device)
        for name in ("train_ids", "train_mask", "train_labels", "val_ids", "val_mask", "val_labels"):
            value = getattr(self, name)
            if value is not None:
                setattr(self, name, value.to(self.device))

    def census(self) -> Census:
        return take_census(self.model)

    def method_parameter_count(self) -> int:
        return self.method.parameter_count(self.config, self.base)

    def head_parameter_count(self) -> int:
        labels = self.dataset.num_labels
        return 0 if self.config.freeze_head else (self.base.hidden_size + self.base.head_bias) * labels

    def seq_len(self) -> int:
        """The longest training sequence, in tokens: the L of 'sequence length L -> L+n'."""
        return int(self.train_mask.sum(dim=1).max()) if len(self.train_mask) else 0

    def shape_notes(self) -> list[str]:
        return self.method.shape_notes(self.config, self.base, self.seq_len())

    def shape_change(self) -> ShapeChange:
        return self.method.shape_change(self.config)

    def selected_sites(self) -> list:
        return self.method.selected_sites(self.config, self.base)

    def frozen_fingerprint(self) -> str:
        """Hash of the model's frozen tensors now (what a run must leave bit-identical)."""
        return self.model.frozen_fingerprint()

    def require_weights(self, verb: str) -> None:
        """A meta-device base has shapes and no weights: it cannot be run."""
        if self.base.on_meta_device:
            raise ConfigError(f"base {self.base.name!r} is an architecture on the meta device (shapes, no weights): "
                              f"it can be inspected but not {verb}; use tiny-decoder or a checkpoint to train")
        unusable = getattr(self.base, "unusable", None)
        if unusable:  # a checkpoint whose weights hold NaN: inspected, never trained or run
            raise ConfigError(f"base {self.base.name!r} cannot be {verb}: {unusable}")

    @torch.no_grad()
    def predict(self, texts: list[str]) -> torch.Tensor:
        """Class probabilities [len(texts), num_labels]; next-token: the next word's [len(texts), vocab]."""
        self.require_weights("asked to predict")
        ids, mask = (t.to(self.device) for t in self.tokenizer.batch(texts))
        was_training = self.model.training
        self.model.eval()
        logits = self.model(ids, mask)
        probs = last_position_probs(logits, mask) if self.next_token else torch.softmax(logits, dim=-1)
        self.model.train(was_training)
        return probs

    def output_names(self) -> list[str]:
        """What each predicted probability is for: the label names, or (next-token) the vocabulary's words."""
        return vocabulary_words(self.tokenizer) if self.next_token else list(self.dataset.label_names)

    def predict_labels(self, texts: list[str]) -> list[str]:
        names = self.output_names()
        return [names[i] for i in self.predict(texts).argmax(dim=-1).tolist()]


def attach_method(base: FrozenBase, method: Method, config: MethodConfig, dataset: TextDataset,
                  base_fingerprint: str | None = None) -> StudioModel:
    """The method's parts on `base` and the dataset's head (none for next-token): what an Experiment builds on its
    base, and what the family map builds on one shared base per method. A refusal part-way leaves the base as
    it was (the parts attached so far are detached)."""
    method.validate(config, base)
    next_token = dataset.task == NEXT_TOKEN
    if next_token:
        check_next_token(base, method.name)
    model = StudioModel(base, base_fingerprint)
    try:
        # A meta-device base (shapes only): the method's parts and the head go on meta too, so a 70B census
        # costs no memory; such a model is inspected, never run (require_weights).
        with on_meta() if base.on_meta_device else contextlib.nullcontext():
            method.attach(model, config)
            if next_token:  # the base's own LM head predicts; it stays frozen (no head to add)
                model.next_token = True
            else:
                model.add_head(dataset.num_labels, trainable=not config.freeze_head)
        if not model.trainable_parameters():
            raise ConfigError("nothing to train: the method adds no parameters and the head is frozen")
    except BaseException:
        model.detach_method()
        raise
    return model
