"""The PEFT family: one module per method, looked up by name."""

from __future__ import annotations

from ..errors import ConfigError
from .adapter import AdapterMethod
from .baselines import BitFitMethod, FullMethod, HeadOnlyMethod
from .ia3 import IA3Method
from .lora import LoraMethod
from .method import Method, MethodCard
from .prefix_tuning import PrefixTuningMethod
from .prompt_tuning import PromptTuningMethod
from .qlora import QLoraMethod

METHODS: dict[str, Method] = {m.name: m for m in (
    PromptTuningMethod(), PrefixTuningMethod(), AdapterMethod(), IA3Method(), LoraMethod(), QLoraMethod(),
    HeadOnlyMethod(), FullMethod(), BitFitMethod(),
)}


def method_names() -> list[str]:
    return list(METHODS)


def get_method(name: str) -> Method:
    try:
        return METHODS[name]
    except KeyError:
        raise ConfigError(f"unknown method {name!r} (choose from {', '.join(METHODS)})") from None


__all__ = ["METHODS", "Method", "MethodCard", "get_method", "method_names"]
