"""Forgetting: how far the adapted model's outputs on other text moved away from the base's.

The same sentences go through the base alone (the method bypassed, as PEFT's `disable_adapter`) and through the
adapted model. An encoder compares sentence embeddings (the pooled vectors) by cosine similarity: drift =
1 - mean cosine. A decoder compares next-token distributions: the mean KL(base || adapted) over the real
positions, in nats. 0 means nothing moved; one number per run, beside the task accuracy.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.nn import functional as F

from . import LensFigure

# Sentences unlike every built-in task (no refunds, logins, moods or buyers and sellers): what a model should
# still treat as it did before it was adapted.
GENERAL_TEXT = (
    "the river flows north through the old town before it reaches the sea",
    "she planted tomatoes and basil in the garden behind the house",
    "the committee will meet again on tuesday to discuss the budget",
    "light travels faster than sound through the air",
    "the museum opened a new wing for modern sculpture last spring",
    "he learned to play the violin when he was seven years old",
    "heavy rain is expected across the mountains this weekend",
    "the library lends books, maps and recordings to anyone with a card",
    "a small boat drifted slowly past the lighthouse at dawn",
    "the recipe calls for two eggs, flour and a pinch of salt",
    "engineers tested the bridge with trucks full of sand",
    "the orchestra rehearsed the symphony for three hours",
    "penguins live in large colonies along the cold southern coasts",
    "the train to the capital leaves every hour from platform four",
    "children built a snowman in the park after school",
    "the village holds a market in the square every saturday morning",
)


@dataclass(frozen=True)
class Forgetting:
    value: float  # drift (encoders) or mean KL in nats (decoders)
    measure: str  # "embedding drift (1 - cosine)" or "next-token KL(base || adapted)"
    sentences: int

    def figure(self) -> LensFigure:
        return LensFigure("forgetting", "forgetting on general text", "", {"forgetting": self.value},
                          note=f"{self.measure} over {self.sentences} sentences unlike the task")


@torch.no_grad()
def forgetting(experiment, texts: tuple[str, ...] = GENERAL_TEXT) -> Forgetting:
    """Drift of the adapted model from its base on `texts` (see the module docstring)."""
    model = experiment.model
    ids, mask = (t.to(experiment.device) for t in experiment.tokenizer.batch(list(texts)))
    was_training = model.training
    model.eval()
    try:
        if experiment.next_token:
            adapted = model(ids, mask)
            with model.bypassed():
                base = model(ids, mask)
            log_p, log_q = F.log_softmax(base.float(), -1), F.log_softmax(adapted.float(), -1)
            kl = (log_p.exp() * (log_p - log_q)).sum(-1)  # [B, L]
            value = float(kl[mask].mean()) if mask.any() else 0.0
            return Forgetting(value, "next-token KL(base || adapted)", len(texts))
        adapted = model.base(ids, mask)
        with model.bypassed():
            base = model.base(ids, mask)
        cosine = F.cosine_similarity(base.float(), adapted.float(), dim=-1)
        return Forgetting(float(1.0 - cosine.mean()), "embedding drift (1 - cosine)", len(texts))
    finally:
        model.train(was_training)
