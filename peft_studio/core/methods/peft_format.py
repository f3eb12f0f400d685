"""What a method's PEFT hooks share: PEFT's key prefix, BERT module names both ways, and error wording.

A method that exchanges adapters with Hugging Face PEFT sets `peft_type` and implements
`peft_export` (studio -> adapter_config.json settings + tensors by PEFT key) and `peft_translate`
(PEFT config + tensors -> studio options + tensors by studio parameter name); core/interop/hf_peft.py
reads and writes the folders and calls them, knowing no method by name.
"""

from __future__ import annotations

import re
from typing import Any

import torch
from torch import nn

from ..bases.decoder_families import decoder_module
from ..bases.hf_names import hf_module, studio_module
from ..errors import AdapterFileError

KEY_PREFIX = "base_model.model."  # PEFT's prefix for tensors inside the wrapped model
PEFT_VERSION = "0.21.2"  # the PEFT release whose layer maths the methods follow (written where PEFT checks it)


def modules_of(base: nn.Module, kind: type) -> list[tuple[str, Any]]:
    """The attached method modules of one class, with their paths inside the base."""
    return [(path, module) for path, module in base.named_modules() if isinstance(module, kind)]


def hf_name(path: str, base: nn.Module | None = None) -> str:
    """The Hugging Face module name of a studio module (the base's own names when given, e.g. a decoder's
    `model.layers.0.self_attn.q_proj`; BERT's table otherwise), or AdapterFileError."""
    name = base.hf_module(path) if base is not None else hf_module(path)
    if name is None:
        raise AdapterFileError(f"export to PEFT format: {path} has no Hugging Face module name")
    return name


def unknown(where: str, key: str, what: str) -> AdapterFileError:
    return AdapterFileError(f"{where}: {key}: {what}")


def module_path(hf_path: str) -> str | None:
    """A PEFT key's module as the studio names it: a BERT module translated, a decoder module as it is."""
    return studio_module(hf_path) or decoder_module(hf_path)


def split_module_keys(tensors: dict[str, torch.Tensor], leaves: tuple[str, ...], where: str,
                      what: str) -> dict[str, dict[str, torch.Tensor]]:
    """{'encoder.layer.0.attention.self.query.lora_A.weight': t} -> {'layers.0.attn.q': {'lora_A.weight': t}}:
    every key must be <BERT module>.<one of leaves>."""
    pattern = re.compile(rf"(.+)\.({'|'.join(re.escape(leaf) for leaf in leaves)})")
    out: dict[str, dict[str, torch.Tensor]] = {}
    for key, tensor in tensors.items():
        match = pattern.fullmatch(key)
        if not match:
            raise unknown(where, key, f"not {what} tensor (expected <module>.{' / '.join(leaves)})")
        module = module_path(match.group(1))
        if module is None:
            raise unknown(where, key, "unknown target module: not a module of a BERT encoder or a decoder")
        out.setdefault(module, {})[match.group(2)] = tensor
    return out

