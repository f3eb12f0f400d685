"""Texts the window shows: site tooltips with live numbers, and the DiagramInfo for the scene."""

from __future__ import annotations

from html import escape

from ..core.bases.sites import Site
from ..core.methods import get_method
from .controller import Controller
from .diagram import DiagramInfo

KIND_WORDS = {
    "prompt": "soft-prompt slot before the embeddings (prompt tuning)",
    "kv-prefix": "key/value prefix slot in this attention (prefix tuning)",
    "adapter": "adapter slot between sublayers, on the residual path",
    "activation": "activation-scaling knob (IA3)",
    "linear": "LoRA slot beside this frozen Linear (IA3: scale its output)",
}


def live_formula(controller: Controller, method_name: str, options: dict) -> str:
    """The card's formula with the current numbers, e.g. h = W0 x + (16/8) B A x."""
    method = get_method(method_name)
    formula = method.card.formula
    if method_name in ("lora", "qlora"):
        r, alpha = options.get("r", 8), options.get("alpha", 16.0)
        formula = formula.replace("(alpha / r)", f"({alpha:g}/{r} = {alpha / r:g})")
    elif method_name in ("prompt-tuning", "prefix-tuning"):
        formula = formula.replace("+ n", f"+ {options.get('tokens', 8)}")
    return formula


def site_tooltip(controller: Controller, site: Site, state: str) -> str:
    method_name = controller.method_for_site(site)
    method = get_method(method_name)
    lines = [f"<b>{escape(site.label)}</b>", escape(KIND_WORDS.get(site.kind, site.kind)),
             f"shapes: in {site.in_features} → out {site.out_features}"]
    if state == "unavailable":
        lines.append(f"<span style='color:#b3261e'>Not available: {escape(site.unavailable.get(method_name, ''))}"
                     "</span>")
        return "<br>".join(lines)
    options = dict(controller.setup.options) if method_name == controller.setup.method else \
        dict(controller.state.remembered.get(method_name, {}))
    added = controller.would_add(site)
    if state == "selected":
        rows = [r for r in controller.census.rows if r.site == site.id and r.owner == "method"]
        params = sum(r.numel for r in rows)
        shapes = ", ".join(f"{r.name.rsplit('.', 1)[-1]} {'×'.join(map(str, r.shape))}" for r in rows)
        lines.append(f"<b style='color:#f07f16'>{method.title} here: {params:,} trainable parameters</b>"
                     + (f" ({escape(shapes)})" if shapes else ""))
        notes = [n for n in controller.experiment.shape_notes() if n.startswith(site.id + ":")]
        lines.extend(escape(n) for n in notes[:2])
        lines.append("Click to remove it.")
    elif added is not None:
        lines.append(f"Click to add {method.title} here: +{added:,} parameters.")
    lines.append(f"formula: <code>{escape(live_formula(controller, method_name, options))}</code>")
    lines.append(f"code: <code>{escape(method.card.code)}</code>")
    if controller.locked:
        lines.append("<i>Locked while training: stop or reset to change the model.</i>")
    return "<br>".join(lines)


def diagram_info(controller: Controller) -> DiagramInfo:
    exp = controller.experiment
    config = exp.config
    method = controller.setup.method
    return DiagramInfo(
        blocks=exp.base.blocks(), sites=exp.base.sites(), rows=list(controller.census.rows),
        selected=controller.selected_site_ids(), site_method=controller.method_for_site,
        site_tip=lambda site, state: site_tooltip(controller, site, state),
        seq_len=exp.seq_len(), prompt_tokens=getattr(config, "tokens", 0) if method == "prompt-tuning" else 0,
        prefix_tokens=getattr(config, "tokens", 0) if method == "prefix-tuning" else 0,
        hidden=exp.base.hidden_size, num_labels=exp.dataset.num_labels, label_names=exp.dataset.label_names,
        head_trainable=not config.freeze_head, method=method, locked=controller.locked)
