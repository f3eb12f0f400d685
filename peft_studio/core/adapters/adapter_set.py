"""One frozen base, many adapters: each with its own parts, head and label names; exactly one active.

Why swap module sets rather than route inside each module: a method attaches by swapping its modules
in at base paths (StudioModel.swap), and what it replaces are the base's own frozen modules (a LoRA
wraps the original Linear by reference). So each adapter is built once against the clean base and
its modules are kept; activating it puts them at their paths, deactivating puts the originals back:
a few attribute assignments, no copy of any tensor, no rebuild, no routing branch in the forward
pass. The frozen tensors are the same objects throughout (bit-identical), and an inactive adapter is
not reachable from the model the trainer sees, so training one adapter cannot change another.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..bases import create_base, uses_dataset_vocabulary
from ..bases.frozen import FrozenBase, tensors_fingerprint
from ..data import TextDataset
from ..data.dataset import CLASSIFY
from ..data.tokenizer import WordTokenizer
from ..errors import AdapterFileError, ConfigError, PeftStudioError
from ..files.adapter_file import AdapterContent, load_adapter, read_adapter_content, save_adapter
from ..memory.budget import check_rebuild_memory
from ..methods import METHODS
from ..model.experiment import Experiment, Setup
from ..model.seeding import seeded
from ..model.studio_model import StudioModel
from ..runs.train import StepEvent, TrainControl, TrainSettings, train


def tensor_bytes(tensors: Sequence[torch.Tensor]) -> int:
    return sum(t.numel() * t.element_size() for t in tensors)


@dataclass(frozen=True)
class AdapterInfo:
    """What a switcher lists for one adapter."""

    name: str
    method: str
    title: str
    glyph: str
    colour: str
    task: str  # the dataset it was trained on
    labels: tuple[str, ...]
    parameters: int  # trainable tensors saved in its file (method parts + head)
    bytes: int  # their size: what one more task costs on this base
    head_bytes: int
    active: bool


class SetAdapter(Experiment):
    """One adapter of a set: an Experiment (train, predict, census, save as usual) on the set's base.

    Its `model` shares the set's base, so it is only meaningful while this adapter is active: go
    through `AdapterSet.using(name)` (or activate it) before touching `model` directly."""

    def __init__(self, owner: AdapterSet, name: str, setup: Setup, dataset: TextDataset,
                 labels_only: bool = False) -> None:
        self.owner = owner
        self.name = name
        self.labels_only = labels_only  # loaded from a file without its dataset: predicts, cannot train
        self.swaps: list[tuple[str, nn.Module, nn.Module]] = []  # (path, original, this adapter's module)
        super().__init__(setup, dataset)

    def _build(self) -> StudioModel:
        with seeded(self.setup.seed):  # as Experiment: no other build draws between the seed and the weights
            model = self.owner._build_member(self)
        self._frozen = model.frozen_fingerprint()
        return model

    def frozen_fingerprint(self) -> str:
        """Hashed once when built: the set puts back the same frozen objects on every switch (unmerging a
        merged LoRA first), so this adapter's frozen tensors are what they were; each run checks them anew."""
        return self._frozen

    def reset(self) -> None:
        self.owner._check_not_training("reset")
        super().reset()

    def require_weights(self, verb: str) -> None:
        """Trained or predicted with from outside the set (the window shows it): it must be the active
        adapter, and one loaded without its dataset has nothing to train on."""
        super().require_weights(verb)
        if verb == "trained" and self.labels_only:
            raise ConfigError(f"adapter {self.name!r} was loaded without its dataset; load it with the dataset to "
                              "train it further")
        if not self.reactivate():
            raise ConfigError(f"adapter {self.name!r} is no longer in its set")

    def reactivate(self) -> bool:
        """Make this adapter the active one again; False when it has been removed from its set."""
        if self.owner._members.get(self.name) is not self:
            return False
        self.owner.activate(self.name)
        return True


class AdapterSet:
    """Several adapters on ONE frozen base; `activate` switches between them without a rebuild."""

    def __init__(self, base: FrozenBase, base_name: str, *, seed: int = 0,
                 base_options: dict[str, Any] | None = None) -> None:
        self.base = base
        self.base_name = base_name
        self.seed = seed
        self.base_options = dict(base_options or {})
        self.base_fingerprint = base.fingerprint()
        # References to the clean base's tensors: LoRA keeps wrapping these same objects, so hashing
        # them later proves the frozen base never changed, whichever adapter is installed.
        self._base_tensors = list(base.state_dict(keep_vars=True).items())
        self._members: dict[str, SetAdapter] = {}
        self._installed: SetAdapter | None = None
        self._training: str | None = None

    # ---- building --------------------------------------------------------------------------------
    @classmethod
    def build(cls, base_name: str, datasets: Sequence[TextDataset] = (), *, seed: int = 0,
              base_options: dict[str, Any] | None = None) -> AdapterSet:
        """The base built exactly as an Experiment builds it (seed, then base), so that an adapter
        trained alone on the same base, seed and dataset loads into the set. Toy bases take their
        vocabulary from the datasets (the union of their training texts when there are several)."""
        tokenizer = None
        if uses_dataset_vocabulary(base_name):
            if not datasets:
                raise ConfigError(f"base {base_name!r} builds its vocabulary from the data: give the datasets "
                                  "its adapters will use")
            tokenizer = datasets[0].make_tokenizer() if len(datasets) == 1 else union_tokenizer(datasets)
        with seeded(seed):
            base = create_base(base_name, tokenizer, **(base_options or {}))
        return cls(base, base_name, seed=seed, base_options=base_options)

    @classmethod
    def from_files(cls, paths: Sequence[str | Path]) -> AdapterSet:
        """Rebuild the base the first file names and load every file into it (the first is active). Each file
        is read once; its metadata is checked (adapter_metadata.py) and the rebuilt base's memory estimated
        before anything is allocated."""
        if not paths:
            raise ConfigError("no adapter files given")
        first = read_adapter_content(paths[0])
        meta, where = first.meta, first.name
        base_name, base_options = meta.base, meta.base_options or {}
        tokenizer = None
        if uses_dataset_vocabulary(base_name):
            if meta.tokenizer is None:
                raise AdapterFileError(f"{where}: base {base_name!r} takes its vocabulary from the data and this "
                                       "file does not record it (an older file: save it again with train "
                                       "--save-adapter or from the window)")
            tokenizer = _tokenizer_from(meta.tokenizer, where)
        check_rebuild_memory(base_name, base_options, tokenizer.vocab_size if tokenizer else None,
                             len(meta.labels), where)
        with seeded(meta.base_seed):  # the caller's random state is left as it was
            base = create_base(base_name, tokenizer, **base_options)
        adapters = cls(base, base_name, seed=meta.base_seed, base_options=base_options)
        loaded = [adapters.load(path, content=first if i == 0 else None) for i, path in enumerate(paths)]
        adapters.activate(loaded[0].name)
        return adapters

    def add(self, name: str, method: str, options: dict[str, Any] | None, dataset: TextDataset, *,
            seed: int = 0, labels_only: bool = False) -> SetAdapter:
        """Attach a new adapter (fresh parts and head from `seed`); it becomes the active one."""
        self._check_not_training("add an adapter")
        if not name or not name.strip() or "," in name or name != name.strip():
            raise ConfigError(f"adapter name {name!r}: use a non-empty name without commas or outer spaces")
        if name in self._members:
            raise ConfigError(f"an adapter named {name!r} is already in the set")
        if method not in METHODS:
            raise ConfigError(f"unknown method {method!r}; known: {', '.join(METHODS)}")
        if dataset.task != CLASSIFY:  # a set swaps classification heads; next-token has none (core/model/next_token.py)
            raise ConfigError(f"dataset {dataset.name!r} is a {dataset.task} task: an adapter set holds "
                              "classification adapters only (train next-token in the main window)")
        previous = self.active
        setup = Setup(self.base_name, method, dict(options or {}), seed, dict(self.base_options))
        try:
            member = SetAdapter(self, name, setup, dataset, labels_only)
        except BaseException:
            self._uninstall()
            if previous is not None:
                self.activate(previous)
            raise
        self._members[name] = member
        return member

    def _build_member(self, member: SetAdapter) -> StudioModel:
        """Attach `member`'s fresh parts to the clean base and record them (called by Experiment)."""
        method = member.method
        if method.trains_base:
            raise ConfigError(f"{method.name} trains the base itself; the adapters of a set share one frozen "
                              "base, so use a method that adds its own parameters")
        self._uninstall()
        torch.manual_seed(member.setup.seed)  # inside SetAdapter._build's seeded(): the member's own draws
        method.validate(member.config, self.base)
        model = StudioModel(self.base)
        if model.base_fingerprint != self.base_fingerprint:
            raise RuntimeError("the set's base changed: this is a bug in PEFT Studio")
        try:
            method.attach(model, member.config)
            model.add_head(member.dataset.num_labels, trainable=not member.config.freeze_head)
            if not model.trainable_parameters():
                raise ConfigError("nothing to train: the method adds no parameters and the head is frozen")
        except BaseException:
            model.detach_method()
            raise
        member.swaps = [(path, original, self.base.get_submodule(path)) for path, original in model._swapped]
        model._swapped.clear()  # the set installs and removes these modules from now on
        self._installed = member
        return model

    def remove(self, name: str) -> None:
        self._check_not_training("remove an adapter")
        member = self.get(name)
        if self._installed is member:
            self._uninstall()
        del self._members[name]

    # ---- switching -------------------------------------------------------------------------------
    def activate(self, name: str) -> SetAdapter:
        """Make `name` the active adapter: its modules go in, the previous ones come out. No tensor moves."""
        member = self.get(name)
        if self._installed is member:
            return member
        self._check_not_training("switch adapters")
        self._uninstall()
        for path, _, module in member.swaps:
            self.base.set_submodule(path, module)
        self._installed = member
        return member

    def _uninstall(self) -> None:
        member = self._installed
        if member is None:
            return
        for path, original, module in reversed(member.swaps):
            for part in module.modules():  # a merged LoRA lives in W0 itself: unmerge first, as PEFT does
                if callable(getattr(part, "unmerge", None)):
                    part.unmerge()
            self.base.set_submodule(path, original)
        self._installed = None

    @contextmanager
    def using(self, name: str) -> Iterator[SetAdapter]:
        """Activate `name` for a block, then bring back whichever adapter was active."""
        previous = self.active
        member = self.activate(name)
        try:
            yield member
        finally:
            if previous is not None and previous in self._members:
                self.activate(previous)

    def _check_not_training(self, what: str) -> None:
        if self._training is not None:
            raise ConfigError(f"cannot {what} while adapter {self._training!r} trains; stop it first")

    # ---- looking -----------------------------------------------------------------------------------
    @property
    def active(self) -> str | None:
        member = self._installed
        return member.name if member is not None and self._members.get(member.name) is member else None

    def names(self) -> list[str]:
        return list(self._members)

    def get(self, name: str) -> SetAdapter:
        if name not in self._members:
            known = ", ".join(self._members) or "none"
            raise ConfigError(f"no adapter named {name!r} in the set (have: {known})")
        return self._members[name]

    def __len__(self) -> int:
        return len(self._members)

    def __contains__(self, name: object) -> bool:
        return name in self._members

    def info(self, name: str) -> AdapterInfo:
        member = self.get(name)
        saved = self._saved_tensors(member)
        head = member.model.head
        head_tensors = [p for p in head.parameters() if p.requires_grad] if head is not None else []
        method = member.method
        return AdapterInfo(name, method.name, method.title, method.glyph, method.colour, member.dataset.name,
                           tuple(member.dataset.label_names), sum(t.numel() for t in saved), tensor_bytes(saved),
                           tensor_bytes(head_tensors), self.active == name)

    def infos(self) -> list[AdapterInfo]:
        return [self.info(name) for name in self._members]

    def _saved_tensors(self, member: SetAdapter) -> list[torch.Tensor]:
        """The tensors its file holds: its own modules' and head's trainable parameters."""
        modules = [module for _, _, module in member.swaps] + [member.model.extras]
        if member.model.head is not None:
            modules.append(member.model.head)
        seen: dict[int, torch.Tensor] = {}
        for module in modules:
            for parameter in module.parameters():
                if parameter.requires_grad:
                    seen.setdefault(id(parameter), parameter)
        return list(seen.values())

    def base_bytes(self) -> int:
        return tensor_bytes([t for _, t in self._base_tensors])

    def base_parameters(self) -> int:
        return sum(t.numel() for _, t in self._base_tensors if isinstance(t, nn.Parameter))

    def frozen_fingerprint(self) -> str:
        """Hash of the clean base's tensors as they are now: equals `base_fingerprint` unless a LoRA is merged."""
        return tensors_fingerprint(self._base_tensors)

    # ---- using the active adapter -----------------------------------------------------------------
    def _active_member(self) -> SetAdapter:
        if self._installed is None or self.active is None:
            raise ConfigError("no adapter is active (add or activate one first)")
        return self._installed

    def predict(self, texts: list[str]) -> torch.Tensor:
        return self._active_member().predict(texts)

    def predict_labels(self, texts: list[str]) -> list[str]:
        return self._active_member().predict_labels(texts)

    def train(self, name: str, settings: TrainSettings, control: TrainControl | None = None,
              start_step: int = 0) -> Iterator[StepEvent]:
        """Activate `name` and train it; the others stay attached but out of the model, so untouched."""
        member = self.get(name)
        if member.labels_only:
            raise ConfigError(f"adapter {name!r} was loaded without its dataset; load it with the dataset to "
                              "train it further")
        self.activate(name)
        reachable = {id(p) for p in member.model.parameters()}
        for other in self._members.values():  # the trainer trains what it can reach: none of theirs
            if other is not member and any(id(p) in reachable for p in self._saved_tensors(other)):
                raise RuntimeError(f"adapter {other.name!r} shares a tensor with {name!r}: a bug in PEFT Studio")
        self._training = name
        try:
            yield from train(member, settings, control, start_step)
        finally:
            self._training = None

    # ---- files -----------------------------------------------------------------------------------
    def save(self, name: str, path: str | Path) -> Path:
        """The usual adapter file, plus what rebuilds the base (seed, options, a toy base's vocabulary)."""
        member = self.get(name)
        # save_adapter records the vocabulary of the (shared) base; the set's base has its own seed and options
        extra = {"adapter_name": name, "base_seed": str(self.seed), "base_options": json.dumps(self.base_options)}
        with self.using(name):
            return save_adapter(member, path, extra)

    def load(self, path: str | Path, name: str | None = None, dataset: TextDataset | None = None,
             content: AdapterContent | None = None) -> SetAdapter:
        """Add an adapter from a file (the set's own, or one saved by a single experiment on this base).
        `content`: the file already read, so that a large file is read once."""
        content = content or read_adapter_content(path)
        meta, where = content.meta, content.name
        if meta.base_fingerprint != self.base_fingerprint:
            hint = (f"; {self.base_name!r} builds its vocabulary (and so its weights) from the training texts, so "
                    "adapters trained alone on different datasets sit on different bases: train them on one dataset, "
                    "use a pretrained base such as minilm, or build them in one set (the window's Adapters panel)"
                    if uses_dataset_vocabulary(self.base_name) and meta.base == self.base_name else "")
            raise AdapterFileError(f"{where}: made for a different base ({meta.base!r} with other "
                                   f"weights) than this set's {self.base_name!r}{hint}")
        labels = list(meta.labels)
        name = name or meta.adapter_name or Path(path).stem
        labels_only = dataset is None
        if dataset is None:
            task = meta.task or name
            dataset = TextDataset(task, tuple(labels), tuple(labels), tuple(range(len(labels))), (), (),
                                  source=f"labels of {where}")
        elif list(dataset.label_names) != labels:
            raise AdapterFileError(f"{where}: trained for labels {labels}, the dataset has "
                                   f"{list(dataset.label_names)}")
        member = self.add(name, meta.method, dict(meta.options), dataset, seed=meta.seed, labels_only=labels_only)
        try:
            load_adapter(member, path, content)
        except BaseException:
            self.remove(name)
            raise
        return member


def describe_set(adapters: AdapterSet) -> list[str]:
    """The set as text lines: the base's bytes, then each adapter's (the active one starred)."""
    lines = [f"base {adapters.base_name}: {adapters.base_parameters():,} parameters, {adapters.base_bytes():,} bytes"]
    for info in adapters.infos():
        lines.append(f"{'*' if info.active else ' '} {info.name}  [{info.glyph}] {info.method}  task {info.task}  "
                     f"labels {','.join(info.labels)}  {info.parameters:,} parameters, {info.bytes:,} bytes "
                     f"({info.bytes / max(adapters.base_bytes(), 1):.2%} of the base)")
    return lines


def union_tokenizer(datasets: Sequence[TextDataset]) -> WordTokenizer:
    """One word vocabulary over several datasets' training texts (first occurrence, dataset order)."""
    texts = [text for dataset in datasets for text in dataset.train_texts]
    return WordTokenizer.from_texts(texts, unknown_token=any(d.unknown_token for d in datasets),
                                    max_len=max(d.max_len for d in datasets))


def _tokenizer_from(spec: dict[str, Any], where: str) -> WordTokenizer:
    """The vocabulary adapter_metadata.check_tokenizer has checked, as the tokenizer it was."""
    try:
        return WordTokenizer(spec["vocab"], lowercase=spec["lowercase"], max_len=spec["max_len"])
    except PeftStudioError as exc:  # DatasetError from the vocabulary's own check
        raise AdapterFileError(f"{where}: its tokenizer metadata is invalid ({exc})") from None
