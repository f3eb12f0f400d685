"""IA3's learned gains, live: the worker samples each scaling vector at the gradient rate, and the diagram
draws it as a heat strip; a hover shows the seed's picture with real numbers (hidden values, gains, after)."""

from __future__ import annotations

from collections.abc import Iterable
from html import escape

import torch
from torch import nn

GAIN_SUFFIX = "ia3_scale"  # the scaling vector's parameter name (core/methods/ia3.py ChannelScale)
PICTURE_CHANNELS = 6  # the seed's picture shows a handful of channels


def sample_gains(named: Iterable[tuple[str, nn.Parameter]]) -> dict[str, list[float]]:
    """Every scaling vector as plain floats (the worker's throttled hook: plain data crosses threads)."""
    return {name: p.detach().tolist() for name, p in named if name.endswith(GAIN_SUFFIX)}


def gain_colour(gain: float) -> tuple[int, int, int]:
    """1.0 neutral (white), 0 to 1 damped (blue), above 1 amplified (orange), below 0 flipped (purple: the
    channel's sign is reversed, which no amount of damping does); saturates at +-0.5."""
    if gain < 0:
        t = min(1.0, -gain / 0.5)
        return int(255 - t * (255 - 142)), int(255 - t * (255 - 68)), int(255 - t * (255 - 173))  # to #8e44ad
    t = max(-1.0, min(1.0, (gain - 1.0) / 0.5))
    if t >= 0:
        return int(255 - t * (255 - 240)), int(255 - t * (255 - 127)), int(255 - t * (255 - 22))  # to #f07f16
    return int(255 + t * (255 - 47)), int(255 + t * (255 - 127)), 255  # towards #2f7fd8


@torch.no_grad()
def gain_pictures(experiment, sentence: str, channels: int = PICTURE_CHANNELS) -> \
        dict[str, tuple[list[float], list[float], list[float]]]:
    """Per scaling vector: (hidden before, gains, after) for its first `channels` channels, averaged over the
    sentence's tokens, from one real forward pass of the current model (GUI thread, only while idle)."""
    if not sentence.strip():
        return {}
    scaled = {name.removesuffix("." + GAIN_SUFFIX): name for name, _ in experiment.model.named_parameters()
              if name.endswith(GAIN_SUFFIX)}
    captured: dict[str, torch.Tensor] = {}
    handles = []
    for path, name in scaled.items():
        module = experiment.model.get_submodule(path)
        handles.append(module.register_forward_hook(
            lambda _m, _i, output, name=name: captured.__setitem__(name, output.detach())))
    try:
        if handles:
            experiment.predict([sentence])
    finally:
        for handle in handles:
            handle.remove()
    pictures = {}
    parameters = dict(experiment.model.named_parameters())
    for name, output in captured.items():
        after = output.reshape(-1, output.shape[-1]).mean(dim=0)
        gains = parameters[name].detach()
        before = after / torch.where(gains.abs() > 1e-12, gains, torch.ones_like(gains))
        n = min(channels, len(gains))
        pictures[name] = (before[:n].tolist(), gains[:n].tolist(), after[:n].tolist())
    return pictures


def picture_html(picture: tuple[list[float], list[float], list[float]], sentence: str) -> str:
    """The seed's picture: hidden values times gains gives the scaled values, channel by channel."""
    before, gains, after = picture

    def row(label: str, values: list[float], colour: bool = False) -> str:
        cells = []
        for v in values:
            style = ""
            if colour:
                r, g, b = gain_colour(v)
                style = f" style='background: rgb({r},{g},{b})'"
            cells.append(f"<td align=right{style}>&nbsp;{v:+.3f}&nbsp;</td>")
        return f"<tr><td><b>{label}</b></td>{''.join(cells)}</tr>"

    return (f"<br><b>Activation scaling, live</b> (first {len(gains)} channels, averaged over "
            f"“{escape(sentence[:200])}”):"  # the sentence may be a dataset file's text
            f"<table cellspacing=2>{row('hidden h', before)}{row('× gains l', gains, True)}"
            f"{row('= l ⊙ h', after)}</table>"
            "gain 1.0 neutral · 0 to 1 damped (blue) · above 1 amplified (orange) · below 0 flipped: the "
            "channel's sign reversed (purple)")
