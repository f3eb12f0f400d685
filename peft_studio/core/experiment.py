"""One experiment: a dataset, a frozen base, a method with its config, and the model they make."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Any

import torch

from .bases import create_base, uses_dataset_vocabulary
from .bases.frozen import FrozenBase
from .budget import check_memory
from .census import Census, take_census
from .data import TextDataset
from .errors import ConfigError
from .methods import Method, ShapeChange, get_method
from .methods.config import MethodConfig
from .model import StudioModel


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

    def __init__(self, setup: Setup, dataset: TextDataset) -> None:
        self.setup = setup
        self.dataset = dataset
        self.method: Method = get_method(setup.method)
        self.config: MethodConfig = self.method.config(setup.options)
        self.device = torch.device("cpu")
        check_memory(setup, dataset)  # the model, the encoded data and one example must fit before building
        self.model = self._build()
        self.tokenizer = self.model.base.tokenizer
        self.train_ids, self.train_mask = self.tokenizer.batch(list(dataset.train_texts))
        self.train_labels = torch.tensor(dataset.train_labels, dtype=torch.long)
        if dataset.val_texts:
            self.val_ids, self.val_mask = self.tokenizer.batch(list(dataset.val_texts))
        else:
            self.val_ids = self.val_mask = None
        self.val_labels = torch.tensor(dataset.val_labels, dtype=torch.long)

    @property
    def base(self) -> FrozenBase:
        return self.model.base

    def _build(self) -> StudioModel:
        torch.manual_seed(self.setup.seed)
        tokenizer = self.dataset.make_tokenizer() if uses_dataset_vocabulary(self.setup.base) else None
        base = create_base(self.setup.base, tokenizer, **self.setup.base_options)
        self.method.validate(self.config, base)
        model = StudioModel(base)
        # A meta-device base (shapes only): the method's parts and the head go on meta too, so a 70B census
        # costs no memory; such a model is inspected, never run (require_weights).
        with torch.device("meta") if base.on_meta_device else contextlib.nullcontext():
            self.method.attach(model, self.config)
            head_trains = not self.config.freeze_head
            model.add_head(self.dataset.num_labels, trainable=head_trains)
        if not model.trainable_parameters():
            raise ConfigError("nothing to train: the method adds no parameters and the head is frozen")
        return model

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
        return 0 if self.config.freeze_head else self.base.hidden_size * self.dataset.num_labels + \
            self.dataset.num_labels

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

    @torch.no_grad()
    def predict(self, texts: list[str]) -> torch.Tensor:
        """Class probabilities [len(texts), num_labels]."""
        self.require_weights("asked to predict")
        ids, mask = (t.to(self.device) for t in self.tokenizer.batch(texts))
        was_training = self.model.training
        self.model.eval()
        probs = torch.softmax(self.model(ids, mask), dim=-1)
        self.model.train(was_training)
        return probs

    def predict_labels(self, texts: list[str]) -> list[str]:
        names = self.dataset.label_names
        return [names[i] for i in self.predict(texts).argmax(dim=-1).tolist()]
