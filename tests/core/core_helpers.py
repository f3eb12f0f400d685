"""Small builders shared by the core tests."""

from __future__ import annotations

import torch

from peft_studio.core.bases import create_base
from peft_studio.core.data import load_builtin
from peft_studio.core.methods import get_method
from peft_studio.core.methods.config import make_config
from peft_studio.core.model.studio_model import StudioModel


def toy_batch(base, texts=("refund my order", "cannot login account today please", "need a refund")):
    return base.tokenizer.batch(list(texts))


def build_base(name: str, seed: int = 0, **options):
    tokenizer = load_builtin("intents").make_tokenizer()
    torch.manual_seed(seed)
    return create_base(name, tokenizer, **options)


def attach(base, method_name: str, options: dict, num_labels: int = 3):
    method = get_method(method_name)
    config = make_config(method.config_cls, options)
    method.validate(config, base)
    model = StudioModel(base)
    method.attach(model, config)
    model.add_head(num_labels, trainable=not config.freeze_head)
    return method, config, model
