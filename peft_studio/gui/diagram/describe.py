"""Texts the window shows: site tooltips with live numbers, the DiagramInfo for the scene, and why a method
or a base is greyed out in the toolbar's lists.

The diagram draws a DiagramSource: the controller (the user's setup), or a family run's preview."""

from __future__ import annotations

from html import escape
from typing import Protocol

from ...core.bases import base_class
from ...core.bases.sites import Site
from ...core.data import TextDataset
from ...core.errors import PeftStudioError
from ...core.methods import METHODS, Method, get_method
from ...core.methods.fitting import fitting_options
from ...core.model.census import Census
from ...core.model.experiment import Experiment, Setup
from ...core.model.next_token import NEXT_TOKEN, check_next_token
from ...core.studio import ClickEffect
from ..window.theme import lock_html
from . import DiagramInfo


class DiagramSource(Protocol):
    """What the diagram reads: the controller, or a preview (diagram/preview.py)."""

    @property
    def experiment(self) -> Experiment: ...

    @property
    def census(self) -> Census: ...

    @property
    def setup(self) -> Setup: ...

    @property
    def locked(self) -> bool: ...

    def selected_site_ids(self) -> set[str]: ...

    def method_for_site(self, site: Site) -> str: ...

    def click_effect(self, site: Site) -> ClickEffect | None: ...


def method_refusal(method: Method, experiment: Experiment) -> str:
    """Why `method` cannot be chosen with this base and dataset (no setting of it fits), or "" when it can."""
    try:
        if fitting_options(method.name, experiment.base) is None:  # no setting of it fits: the defaults say why
            method.validate(method.default_config(), experiment.base)
        if experiment.next_token:
            check_next_token(experiment.base, method.name)
    except PeftStudioError as exc:
        return str(exc)
    return ""


def base_refusal(name: str, dataset: TextDataset) -> str:
    """Why a base cannot take this dataset (the next-token task needs a decoder with an LM head), or ""."""
    if dataset.task != NEXT_TOKEN:
        return ""
    from ...core.bases.decoder import DecoderBase

    try:
        cls = base_class(name)
    except PeftStudioError as exc:
        return str(exc)
    if issubclass(cls, DecoderBase):
        return ""
    return "the next-token task needs a decoder with an LM head (e.g. tiny-decoder); choose a labelled dataset first"


KIND_WORDS = {  # what a site is; which methods can use it comes from the registry (kind_words)
    "prompt": "soft-prompt slot before the embeddings",
    "kv-prefix": "key/value prefix slot in this attention",
    "adapter": "module slot between sublayers, on the residual path",
    "activation": "activation-scaling knob",
    "linear": "insertion point beside this frozen Linear",
    "linear-input": "scaling knob on the input of this frozen Linear",
    "norm": "the gamma and beta of this LayerNorm",
    "token-rows": "chosen rows of this token embedding table",
    "gated-prompt": "gated prompt in this attention (its own softmax; the gate starts at 0)",
}


def kind_words(kind: str) -> str:
    """The site kind in words and the methods that can use it, e.g. 'insertion point beside this frozen Linear
    (LoRA, QLoRA, IA3, DoRA, VeRA)'."""
    titles = [method.title for method in METHODS.values() if kind in method.site_kinds]
    words = KIND_WORDS.get(kind, kind)
    if len(titles) > 6:  # the whole family fits a Linear: name a few, count the rest
        titles = [*titles[:5], f"{len(titles) - 5} more"]
    return f"{words} ({', '.join(titles)})" if titles else words


def _signed(delta: int) -> str:
    return f"+{delta:,}" if delta >= 0 else f"−{-delta:,}"


def site_tooltip(controller: DiagramSource, site: Site, state: str) -> str:
    """What this insertion point is, and exactly what a click on it would do to the trainable count."""
    method_name = controller.method_for_site(site)
    method = get_method(method_name)
    lines = [f"<b>{escape(site.label)}</b>", escape(kind_words(site.kind)),
             f"shapes: in {site.in_features} → out {site.out_features}"]
    if state == "unavailable":
        lines.append(f"<span style='color:#b3261e'>Not available: {escape(site.unavailable.get(method_name, ''))}"
                     "</span>")
        return "<br>".join(lines)
    exp = controller.experiment
    if state == "selected":
        rows = [r for r in controller.census.rows if r.site == site.id and r.owner == "method"]
        params = sum(r.numel for r in rows)
        shapes = ", ".join(f"{r.name.rsplit('.', 1)[-1]} {'×'.join(map(str, r.shape))}" for r in rows)
        lines.append(f"<b style='color:#f07f16'>{method.title} here: {params:,} trainable parameters</b>"
                     + (f" ({escape(shapes)})" if shapes else ""))
        notes = [n for n in exp.shape_notes() if n.startswith(site.id + ":")]
        lines.extend(escape(n) for n in notes[:2])
    effect = controller.click_effect(site)
    if effect is not None:
        total = controller.census.trainable + effect.delta
        if not effect.adds:
            then = "" if effect.method == method_name else f" (nothing left: {effect.method})"
            lines.append(f"Click to remove it{then}: {_signed(effect.delta)} parameters → {total:,} trainable.")
        elif effect.method != controller.setup.method:
            lines.append(f"Click to switch to {get_method(effect.method).title} here: {_signed(effect.delta)} "
                         f"parameters → {total:,} trainable.")
        else:
            lines.append(f"Click to add {method.title} here: {_signed(effect.delta)} parameters → {total:,} "
                         "trainable.")
    config = exp.config if method_name == controller.setup.method else method.default_config()
    lines.append(f"formula: <code>{escape(method.live_formula(config))}</code>")
    lines.append(f"code: <code>{escape(method.code(config))}</code>")
    if controller.locked:
        lines.append(f"<i>{lock_html(12)} Locked while training: stop or reset to change the model.</i>")
    return "<br>".join(lines)


def input_tokens(controller: DiagramSource, sentence: str = "") -> tuple[str, ...]:
    """The tokens the input row shows: the "Try it" sentence, else the first training sentence."""
    exp = controller.experiment
    text = sentence.strip() or (exp.dataset.train_texts[0] if exp.dataset.train_texts else "")
    if not text:
        return ()
    _ids, mask = exp.tokenizer.batch([text])
    length = int(mask.sum())
    tokenize = getattr(exp.tokenizer, "tokenize", None)  # a stand-in tokenizer (meta bases) only counts
    words = list(tokenize(text) if tokenize is not None else text.split())[:length]
    return tuple(words + ["?"] * (length - len(words)))


def diagram_info(controller: DiagramSource, sentence: str = "") -> DiagramInfo:
    exp = controller.experiment
    change = exp.shape_change()
    words = input_tokens(controller, sentence)
    selected = controller.selected_site_ids()
    return DiagramInfo(
        blocks=_task_blocks(exp), sites=list(exp.base.site_index().sites), rows=list(controller.census.rows),
        selected=selected, site_method=controller.method_for_site,
        site_glyph=lambda site: _glyph(controller, site, selected),
        site_tip=lambda site, state: site_tooltip(controller, site, state),
        seq_len=len(words) if words else exp.seq_len(), input_words=words,
        prompt_tokens=change.input_tokens, prefix_tokens=change.key_tokens,
        frozen_prefix_tokens=change.frozen_key_tokens,
        hidden=exp.base.hidden_size, num_labels=exp.dataset.num_labels, label_names=exp.dataset.label_names,
        head_trainable=not exp.config.freeze_head and not exp.next_token, method=controller.setup.method,
        locked=controller.locked, extra=_next_token_head(exp))


def _glyph(controller: DiagramSource, site: Site, selected: set[str]) -> str:
    """The method's glyph; a chosen point of the current method may say more (LoRA: its rank under rank_pattern)."""
    name = controller.method_for_site(site)
    method = get_method(name)
    if name == controller.setup.method and site.id in selected:
        return method.site_glyph(controller.experiment.config, controller.experiment.base, site)
    return method.glyph


def _task_blocks(exp) -> list:
    """The base's blocks; the next-token task reads every position, so the classifier's pooling goes."""
    blocks = exp.base.blocks()
    return [b for b in blocks if b.kind != "pool"] if exp.next_token else blocks


def _next_token_head(exp) -> dict:
    """On the next-token task the output is the base's own frozen LM head, not a classification head."""
    if not exp.next_token:
        return {}
    base = exp.base
    vocab = base.tokenizer.vocab_size
    tied = getattr(getattr(base, "cfg", None), "tie_word_embeddings", False)
    return {"head": (f"LM head {base.hidden_size}→{vocab} (frozen{', tied to the embeddings' if tied else ''})",
                     f"every position t: softmax over {vocab} words → predicts word t+1")}
