"""The PEFT family: the registry is the one list of methods.

The CLI (flags and `methods`), the window (method list, form, card, diagram glyphs, click model),
the census and the test matrices all iterate over METHODS; adding a method is one module plus
one `register_method` call (from any module, a test included).
"""

from __future__ import annotations

from ..bases.sites import LAYER_REFUSALS, Site
from ..errors import ConfigError
from .adalora import AdaLoraMethod
from .adamss import AdamssMethod
from .adapter import AdapterMethod
from .adaption_prompt import AdaptionPromptMethod
from .baselines import BitFitMethod, FullMethod, HeadOnlyMethod
from .beft import BeftMethod
from .boft import BoftMethod
from .c3a import C3AMethod
from .cartridge import CartridgeMethod
from .deft import DeftMethod
from .delora import DeloraMethod
from .dora import DoraMethod
from .fourierft import FourierFTMethod
from .frod import FrodMethod
from .glora import GloraMethod
from .gralora import GraLoraMethod
from .hira import HiraMethod
from .hra import HraMethod
from .ia3 import IA3Method
from .lily import LilyMethod
from .ln_tuning import LNTuningMethod
from .loha import LohaMethod
from .lokr import LokrMethod
from .lora import LoraMethod
from .method import Method, MethodCard, ShapeChange
from .miss import MissMethod
from .oft import OftMethod
from .osf import OsfMethod
from .p_tuning import PTuningMethod
from .peanut import PeanutMethod
from .prefix_tuning import PrefixTuningMethod
from .prompt_tuning import PromptTuningMethod
from .psoft import PsoftMethod
from .pvera import PveraMethod
from .qlora import QLoraMethod
from .randlora import RandLoraMethod
from .road import RoadMethod
from .shira import ShiraMethod
from .supertuning import SupertuningMethod
from .tinylora import TinyLoraMethod
from .trainable_tokens import TrainableTokensMethod
from .unilora import UniLoraMethod
from .vblora import VBLoraMethod
from .vera import VeraMethod
from .waveft import WaveFTMethod

METHODS: dict[str, Method] = {}


def register_method(method: Method) -> Method:
    """Add a method to the registry (replacing one of the same name); returns it."""
    if not method.name:
        raise ValueError("a method needs a name")
    unregister_method(method.name)
    METHODS[method.name] = method
    for layer_type, reason in method.refused_layers.items():  # the bases grey those sites out with the reason
        LAYER_REFUSALS.setdefault(layer_type, {})[method.name] = reason
    return method


def unregister_method(name: str) -> None:
    METHODS.pop(name, None)
    for refusals in LAYER_REFUSALS.values():
        refusals.pop(name, None)


for _method in (PromptTuningMethod(), PrefixTuningMethod(), AdapterMethod(), IA3Method(), LoraMethod(),
                QLoraMethod(), HeadOnlyMethod(), FullMethod(), BitFitMethod()):
    register_method(_method)
register_method(DoraMethod())
register_method(VeraMethod())
register_method(LNTuningMethod())
register_method(OftMethod())
register_method(BoftMethod())
register_method(HraMethod())
register_method(MissMethod())
register_method(DeloraMethod())
register_method(RoadMethod())
register_method(BeftMethod())
register_method(GloraMethod())
register_method(PeanutMethod())
register_method(LohaMethod())
register_method(LokrMethod())
register_method(AdaLoraMethod())
register_method(VBLoraMethod())
register_method(RandLoraMethod())
register_method(FourierFTMethod())
register_method(C3AMethod())
register_method(ShiraMethod())
register_method(HiraMethod())
register_method(GraLoraMethod())
register_method(PTuningMethod())
register_method(TrainableTokensMethod())
register_method(AdaptionPromptMethod())
register_method(WaveFTMethod())
register_method(OsfMethod())
register_method(PsoftMethod())
register_method(AdamssMethod())
register_method(DeftMethod())
register_method(UniLoraMethod())
register_method(PveraMethod())
register_method(TinyLoraMethod())
register_method(LilyMethod())
register_method(FrodMethod())
register_method(SupertuningMethod())
register_method(CartridgeMethod())


def method_names() -> list[str]:
    return list(METHODS)


def get_method(name: str) -> Method:
    try:
        return METHODS[name]
    except KeyError:
        raise ConfigError(f"unknown method {name!r} (choose from {', '.join(METHODS)})") from None


def method_for_click(site: Site, current: str) -> str:
    """The method a click on this site means: the current one if it can sit there, else the method
    that claims the site's kind (LoRA for a Linear, IA3 for an activation, ...)."""
    method = METHODS.get(current)
    if method is not None and site.kind in method.site_kinds:
        return current
    for name, candidate in METHODS.items():
        if site.kind in candidate.claims_kinds:
            return name
    raise ConfigError(f"no method takes a {site.kind} site")


__all__ = ["METHODS", "Method", "MethodCard", "ShapeChange", "get_method", "method_for_click", "method_names",
           "register_method", "unregister_method"]
