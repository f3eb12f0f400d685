"""Text generation with a decoder base (and whatever method is attached to it), one token at a time.

The prompt runs once through the model and fills a KV cache (bases/decoder.py `KVCache`); each later step runs
only the newest token against the cached keys and values, as transformers' generate() does. Greedy decoding
(the default) picks the most likely token — the same argmax transformers takes, so the tokens are the same;
sampling divides the logits by the temperature, keeps the top k (transformers' order of warpers) and draws
with its own seeded generator, so a seed gives the same text on every run without touching torch's global
random state. Every step reports the next-token top-5 with probabilities (the window's "Try it" shows them).

Generation stops at max_new_tokens or at an end-of-text id (generation_config.json's eos_token_id, as
transformers stops). Generators are plain Python: the window iterates one in a worker and can stop between
tokens; the CLI prints the text as it grows.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from ..bases.decoder import DecoderBase, KVCache
from ..errors import ConfigError

TOP = 5  # next-token alternatives reported per step


@dataclass(frozen=True)
class GenerationSettings:
    max_new_tokens: int = 20
    temperature: float = 0.0  # 0: greedy
    top_k: int = 0  # 0: every token
    seed: int = 0

    def check(self) -> None:
        if not 1 <= self.max_new_tokens <= 100_000:
            raise ConfigError(f"max new tokens must be in [1, 100000] (got {self.max_new_tokens})")
        if not (math.isfinite(self.temperature) and self.temperature >= 0):
            raise ConfigError(f"temperature must be 0 (greedy) or a positive number (got {self.temperature})")
        if self.top_k < 0:
            raise ConfigError(f"top-k must be 0 (every token) or more (got {self.top_k})")
        if self.top_k and not self.temperature:
            raise ConfigError("top-k chooses among tokens to sample: give a temperature too (greedy takes the "
                              "single most likely token)")

    @property
    def greedy(self) -> bool:
        return self.temperature == 0


@dataclass(frozen=True)
class Step:
    """One generated token and the distribution it was chosen from."""

    token_id: int
    probability: float
    top: tuple[tuple[int, float], ...]  # the TOP most likely (id, probability) before choosing
    finished: bool = False  # an end-of-text id


@dataclass
class Generation:
    prompt_ids: list[int]
    generated_ids: list[int] = field(default_factory=list)
    steps: list[Step] = field(default_factory=list)
    stopped_at_eos: bool = False


def require_decoder(base: Any) -> DecoderBase:
    if not isinstance(base, DecoderBase):
        raise ConfigError(f"base {getattr(base, 'name', 'base')!r} is not a decoder with an LM head: it cannot "
                          "generate text (choose a decoder checkpoint folder or tiny-decoder)")
    if base.on_meta_device:
        raise ConfigError(f"base {base.name!r} is an architecture on the meta device (shapes, no weights): it "
                          "cannot generate; give a checkpoint folder with its weights")
    return base


def _choose(logits: torch.Tensor, settings: GenerationSettings, generator: torch.Generator) -> int:
    if settings.greedy:
        return int(torch.argmax(logits))
    scores = logits / settings.temperature
    if settings.top_k:
        kth = torch.topk(scores, min(settings.top_k, scores.shape[-1])).values[..., -1, None]
        scores = scores.masked_fill(scores < kth, float("-inf"))
    probs = torch.softmax(scores, dim=-1)
    return int(torch.multinomial(probs, 1, generator=generator))


def _check_length(base: DecoderBase, prompt: int, new: int) -> None:
    if not prompt:
        raise ConfigError("the prompt is empty: give some text to continue")
    if base.cfg.fam.position_embedding and prompt + new > base.cfg.max_positions:
        raise ConfigError(f"the prompt ({prompt} tokens) plus {new} new tokens exceed the {base.cfg.max_positions} "
                          f"positions of {base.name}; use fewer new tokens or a shorter text")


@torch.no_grad()
def stream(base: Any, prompt_ids: Sequence[int], settings: GenerationSettings,
           stop_ids: Sequence[int] = ()) -> Iterator[Step]:
    """Generate after `prompt_ids` with the base as it is now (methods attached), yielding each step."""
    base = require_decoder(base)
    settings.check()
    _check_length(base, len(prompt_ids), settings.max_new_tokens)
    device = base.lm_head.weight.device
    was_training = base.training
    base.eval()
    generator = torch.Generator(device="cpu").manual_seed(settings.seed)
    cache = KVCache.empty(base.num_layers)
    try:
        ids = torch.tensor([list(prompt_ids)], dtype=torch.long, device=device)
        hidden, _ = base.encode(ids, torch.ones_like(ids, dtype=torch.bool), cache)
        for number in range(settings.max_new_tokens):
            logits = base.lm_head(hidden[0, -1]).float().cpu()
            probs = torch.softmax(logits, dim=-1)
            top = torch.topk(probs, min(TOP, probs.shape[-1]))
            token = _choose(logits, settings, generator)
            finished = token in stop_ids
            yield Step(token, float(probs[token]), tuple(zip(top.indices.tolist(), top.values.tolist(),
                                                             strict=True)), finished)
            if finished or number == settings.max_new_tokens - 1:  # the last token needs no forward pass
                return
            ids = torch.tensor([[token]], dtype=torch.long, device=device)
            hidden, _ = base.encode(ids, torch.ones_like(ids, dtype=torch.bool), cache)
    finally:
        base.train(was_training)


def generate(base: Any, prompt_ids: Sequence[int], settings: GenerationSettings,
             stop_ids: Sequence[int] = ()) -> Generation:
    """The whole generation: prompt ids, the new ids (an end-of-text id included, as transformers returns it)."""
    result = Generation(list(prompt_ids))
    for step in stream(base, prompt_ids, settings, stop_ids):
        result.steps.append(step)
        result.generated_ids.append(step.token_id)
        result.stopped_at_eos = step.finished
    return result


def next_token_top(base: Any, prompt_ids: Sequence[int], k: int = TOP) -> list[tuple[int, float]]:
    """The k most likely next tokens after the prompt, with probabilities."""
    step = next(stream(base, prompt_ids, GenerationSettings(max_new_tokens=1)))
    return list(step.top[:k])


# ---- what to generate with: a base, a studio adapter file, or a PEFT adapter folder ------------------------
@dataclass
class GenerationModel:
    """A decoder ready to generate: the base alone or with an adapter's method attached."""

    base: DecoderBase
    tokenizer: Any
    label: str  # "base", or the adapter it carries
    experiment: Any = None  # the experiment holding the adapter (None: the bare base)
    notes: list[str] = field(default_factory=list)

    def encode(self, text: str) -> list[int]:
        return encode_prompt(self.tokenizer, text)

    @property
    def stop_ids(self) -> tuple[int, ...]:
        return stop_ids(self.tokenizer)

    def decode(self, ids: Sequence[int]) -> str:
        return decode(self.tokenizer, ids)


def encode_prompt(tokenizer: Any, text: str) -> list[int]:
    """A prompt's ids, uncut (training texts are cut at the tokenizer's max_len; a prompt is not)."""
    special = getattr(tokenizer, "special", None)
    return tokenizer.encode(text, limit=1 << 30) if special is not None else tokenizer.encode(text)


def stop_ids(tokenizer: Any) -> tuple[int, ...]:
    special = getattr(tokenizer, "special", None)
    return special.eos_ids if special is not None else ()


def decode(tokenizer: Any, ids: Sequence[int]) -> str:
    if hasattr(tokenizer, "decode") and getattr(tokenizer, "special", None) is not None:
        return tokenizer.decode(list(ids))
    words = getattr(tokenizer, "vocab", {})
    names = {index: word for word, index in words.items()}
    return " ".join(names.get(int(i), "?") for i in ids)


def token_text(tokenizer: Any, token_id: int) -> str:
    if hasattr(tokenizer, "token_text"):
        return tokenizer.token_text(token_id)
    return decode(tokenizer, [token_id])


def prompt_dataset(text: str, labels: Sequence[str] = ()) -> Any:
    """The smallest dataset an experiment can be built on for generating: the prompt itself as a next-token text
    (or, for a classification adapter, its label names)."""
    from ..data.dataset import NEXT_TOKEN, TextDataset

    if labels:
        return TextDataset("prompt", tuple(labels), tuple(labels), tuple(range(len(labels))), (), (),
                           source="the adapter's labels")
    return TextDataset("prompt", (), (text or " ",), (), (), (), source="the prompt", task=NEXT_TOKEN)


def model_for_generation(base_name: str, text: str = "", adapter: str | None = None, peft: str | None = None,
                         seed: int = 0) -> GenerationModel:
    """The base (a checkpoint folder or a decoder name) with a studio adapter file or a PEFT adapter folder."""
    from ..bases import create_base, uses_dataset_vocabulary
    from .experiment import Experiment, Setup

    if adapter and peft:
        raise ConfigError("give an adapter file or a PEFT adapter folder, not both")
    if uses_dataset_vocabulary(base_name):
        raise ConfigError(f"base {base_name!r} builds its vocabulary from a dataset: it has no tokenizer of its own "
                          "to generate with (give a decoder checkpoint folder)")
    if peft:  # generation reads the LM head: a classifier in the folder (SEQ_CLS) is left out, with a note
        from ..interop.hf_peft import import_peft

        experiment = import_peft(Setup(base_name, seed=seed), peft, prompt_dataset(text))
        label = f"PEFT adapter {experiment.method.title}"
        notes = list(experiment.notes)
    elif adapter:
        from ..files.adapter_file import load_adapter, read_adapter_content

        content = read_adapter_content(adapter)
        name, meta = content.name, content.meta
        experiment = Experiment(Setup(base_name, meta.method, dict(meta.options), seed),
                                prompt_dataset(text, list(meta.labels)))
        load_adapter(experiment, adapter, content)
        label, notes = f"adapter {name} ({experiment.method.title})", []
        if not experiment.next_token:
            notes.append(f"{name} holds a classification head for {', '.join(experiment.dataset.label_names)}; "
                         "generation uses the adapted model's LM head")
    else:
        base = require_decoder(create_base(base_name))
        return GenerationModel(base, base.tokenizer, "base")
    require_decoder(experiment.base)
    experiment.model.eval()
    return GenerationModel(experiment.base, experiment.tokenizer, label, experiment, notes)


# ---- "Try it": the adapted model and the bare base, one after the other -------------------------------------
BASE, ADAPTED = "base", "adapted"


def side_by_side(experiment: Any, text: str, settings: GenerationSettings) -> Iterator[tuple[str, Step]]:
    """("adapted", step) for the experiment's model as it is now, then ("base", step) for the same prompt with the
    method bypassed (StudioModel.bypassed: PEFT's disable_adapter); both greedy unless the settings sample."""
    base = require_decoder(experiment.base)
    prompt = encode_prompt(experiment.tokenizer, text)
    stops = stop_ids(experiment.tokenizer)
    for step in stream(base, prompt, settings, stops):
        yield ADAPTED, step
    with experiment.model.bypassed():
        for step in stream(base, prompt, settings, stops):
            yield BASE, step
