"""The next-token task (causal language modelling) on a decoder base: predict word t+1 from words <= t.

The output layer is the base's own LM head (on `tiny-decoder` tied to the token embeddings: one tensor),
frozen like the rest of the base; a method trains only its parts. No classification head is added, so
`head-only` is refused (it would train nothing) and `freeze_head` changes nothing.

Which positions are predicted is the same for every method, so their curves compare:
- the targets are the real tokens 1..L-1 of each text, each predicted from the position before it; padding
  is never a target and never an input that a target depends on (padding is on the right, attention causal);
- prompt tuning: the n soft-prompt positions come first and are neither predicted nor predicting (their
  outputs are dropped; PEFT additionally predicts the first word from the last virtual token);
- prefix tuning: the n prefix keys are visible to every position (the causal mask covers the real tokens
  only), see bases/decoder.py `causal_attention`.
Loss: cross-entropy averaged over every predicted position of the batch; accuracy: the share of them
whose most likely word is the right one.
"""

from __future__ import annotations

import contextlib
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from ..data.dataset import CLASSIFY, NEXT_TOKEN
from ..errors import ConfigError

__all__ = ["CLASSIFY", "NEXT_TOKEN", "NextTokenCrossEntropy", "argmax_hits", "check_next_token", "has_lm_head",
           "next_token_logits", "next_token_loss", "predict_next", "task_loss"]

HEAD_ONLY = "head-only"


def has_lm_head(base: nn.Module) -> bool:
    """A base that can predict the next token: per-token hidden states (`encode`) and an LM head."""
    head = getattr(base, "lm_head", None)
    head = getattr(head, "base_layer", head)  # a method may wrap it (trainable tokens on a tied table)
    return isinstance(head, nn.Linear) and callable(getattr(base, "encode", None))


def check_next_token(base: nn.Module, method: str) -> None:
    """Refuse (ConfigError) a base without an LM head, and head-only (nothing of its own would train)."""
    name = getattr(base, "name", "base")
    if not has_lm_head(base):
        raise ConfigError(f"the next-token task needs a decoder with an LM head (e.g. tiny-decoder); base {name!r} "
                          "gives one vector per text for a classification head: choose a labelled dataset or "
                          "a decoder base")
    from ..methods import METHODS  # here: the registry imports the model package

    refusal = getattr(METHODS.get(method), "next_token_refusal", None)
    if refusal:
        raise ConfigError(f"{method} cannot train on the next-token task: {refusal}. Choose another method, or a "
                          "labelled dataset")
    if method == HEAD_ONLY:
        raise ConfigError("head-only trains a new classification head, but the next-token task predicts with the "
                          "base's own LM head, which stays frozen with the base (on tiny-decoder it is the token "
                          "embeddings, tied): nothing would train. Choose a method that adapts the base (LoRA, "
                          "prefix tuning, ...) or full")


def next_token_logits(base: nn.Module, token_ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """LM-head logits [B, L, V] at each real input position (soft-prompt positions dropped)."""
    hidden, _ = base.encode(token_ids, mask)
    hidden = hidden[:, hidden.shape[1] - token_ids.shape[1]:]  # a soft prompt adds n positions in front
    return base.lm_head(hidden)


IGNORED = -100  # cross_entropy's ignore_index: a position with no real next token


def next_token_loss(logits: torch.Tensor, token_ids: torch.Tensor,
                    mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(mean cross-entropy, next-token accuracy) over the real positions that have a real next token.

    The targets are shifted, not the logits (as transformers' causal-LM loss): position t's target is token t+1,
    or ignored; the [B, L, V] logits are read in place, never copied (they are the step's largest tensor)."""
    valid = torch.zeros_like(mask, dtype=torch.bool)
    valid[:, :-1] = mask[:, 1:].bool() & mask[:, :-1].bool()
    if not bool(valid.any()):
        raise ConfigError("no text in this batch has two words: there is no next token to predict")
    targets = torch.full_like(token_ids, IGNORED)
    targets[:, :-1] = token_ids[:, 1:]
    targets = targets.masked_fill(~valid, IGNORED)
    vocab = logits.shape[-1]
    loss = NextTokenCrossEntropy.apply(logits.reshape(-1, vocab), targets.reshape(-1))
    with torch.no_grad():
        accuracy = argmax_hits(logits, targets)[valid].float().mean()
    return loss, accuracy


class NextTokenCrossEntropy(torch.autograd.Function):
    """F.cross_entropy(logits, targets, ignore_index=IGNORED) (the mean over the other targets) with a one-pass
    backward: (softmax - onehot) * grad / count from the saved log-probabilities. Autograd's nll_loss and
    log_softmax backwards fill a zero [N, V] gradient and read it back: two more passes over the step's largest
    tensor (on a 49k vocabulary, ~10% of the loss's time)."""

    @staticmethod
    def forward(ctx, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:  # noqa: ANN001 - autograd's ctx
        log_probs = torch.log_softmax(logits, dim=-1)
        valid = targets != IGNORED
        count = valid.sum()
        picked = log_probs.gather(1, targets.clamp(min=0).unsqueeze(1)).squeeze(1)
        ctx.save_for_backward(log_probs, targets, valid, count)
        return -picked[valid].sum() / count

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None]:  # noqa: ANN001
        log_probs, targets, valid, count = ctx.saved_tensors
        scale = grad / count
        grad_logits = log_probs.exp()
        grad_logits.mul_((valid * scale).unsqueeze(1))  # ignored rows: 0
        rows = valid.nonzero(as_tuple=True)[0]
        grad_logits[rows, targets[rows]] -= scale
        return grad_logits, None


def argmax_hits(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """logits.argmax(-1) == targets, exactly, from one amax pass over the vocabulary: torch's CPU argmax along a
    long last dimension runs ~4x slower than amax. A position whose target is not a maximum (and whose maximum is
    not NaN) is a miss; argmax itself decides the others (ties go to the first index, NaN wins), so the answer is
    argmax's bit for bit. Negative targets (IGNORED) are misses."""
    top = logits.amax(-1)
    picked = logits.gather(-1, targets.clamp(min=0).unsqueeze(-1)).squeeze(-1)
    hits = picked == top
    unsure = hits | top.isnan()
    if bool(unsure.any()):
        rows = unsure.nonzero(as_tuple=True)
        hits[rows] = logits[rows].argmax(-1) == targets[rows]
    return hits & (targets >= 0)


def task_loss(task: str, logits: torch.Tensor, token_ids: torch.Tensor, mask: torch.Tensor,
              labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(loss, accuracy) of a batch for the dataset's task: the one place the trainer and the ledger ask."""
    if task == NEXT_TOKEN:
        return next_token_loss(logits, token_ids, mask)
    return F.cross_entropy(logits, labels), (logits.argmax(-1) == labels).float().mean()


def last_position_probs(logits: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The next-word distribution after each text's last real token [B, V]."""
    positions = torch.arange(mask.shape[1], device=mask.device)
    last = (mask.long() * positions).argmax(dim=1)
    return torch.softmax(logits[torch.arange(len(logits), device=logits.device), last], dim=-1)


def vocabulary_words(tokenizer: Any) -> list[str]:
    """Id -> word for a word tokenizer, id -> the text of the token for a checkpoint's subword tokenizer (the names
    of the next-token "classes"; computed once per tokenizer)."""
    cached = getattr(tokenizer, "_vocabulary_words", None)
    if cached is not None:
        return cached
    if hasattr(tokenizer, "token_text"):  # a checkpoint's tokenizer: every id, decoded on its own
        words = [tokenizer.token_text(i) for i in range(tokenizer.vocab_size)]
    else:
        words = ["?"] * tokenizer.vocab_size
        for word, index in tokenizer.vocab.items():
            words[index] = word
    with contextlib.suppress(AttributeError):  # a tokenizer with __slots__ just recomputes
        tokenizer._vocabulary_words = words
    return words


def predict_next(experiment: Any, texts: list[str], k: int = 3) -> list[list[tuple[str, float]]]:
    """The k most likely next words (with probabilities) after each text, with the current model."""
    probs = experiment.predict(texts)
    words = vocabulary_words(experiment.tokenizer)
    top = probs.topk(min(k, probs.shape[1]), dim=-1)
    return [[(words[i], p) for i, p in zip(ids, values, strict=True)]
            for ids, values in zip(top.indices.tolist(), top.values.tolist(), strict=True)]


def print_next_words(experiment: Any, texts: list[str], k: int = 3) -> None:
    """For each text, its first half and the words the model expects next (the CLI's closing lines)."""
    prompts = [" ".join(text.split()[:max(1, len(text.split()) // 2)]) for text in texts]
    width = max(len(p) for p in prompts) + 4
    for prompt, top in zip(prompts, predict_next(experiment, prompts, k), strict=True):
        print(f"{prompt + ' ...':{width}s} -> " + ", ".join(f"{word} ({p:.2f})" for word, p in top))
