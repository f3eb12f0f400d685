"""Random decoder checkpoints written by transformers' own save_pretrained, with a real tokenizer.json.

The tests compare the studio with transformers on these folders: every weight is drawn (biases and norm gains
too, so a transposed or missing one shows), the tokenizer is a byte-level BPE (GPT-2 / Qwen2 style) or a
Metaspace BPE that adds <s> (Llama style) trained on the built-in texts, and the special tokens go in
tokenizer_config.json and generation_config.json as the Hub's folders have them.
"""

from __future__ import annotations

import functools
import json
import warnings
from pathlib import Path

import torch

from peft_studio.core.data import load_builtin

FAMILY_CONFIGS = {"llama": "LlamaConfig", "mistral": "MistralConfig", "qwen2": "Qwen2Config", "gpt2": "GPT2Config"}
SPECIALS = ("<pad>", "<s>", "</s>", "<unk>")


@functools.cache
def _texts() -> tuple[str, ...]:
    return load_builtin("texts").train_texts


@functools.cache
def tokenizer_json(style: str, vocab: int = 180) -> str:
    """A trained BPE tokenizer as tokenizer.json text: 'bytelevel' (no BOS) or 'metaspace' (adds <s>)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    if style == "bytelevel":
        tokenizer = Tokenizer(models.BPE())
        tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tokenizer.decoder = decoders.ByteLevel()
        alphabet = pre_tokenizers.ByteLevel.alphabet()
    else:
        tokenizer = Tokenizer(models.BPE(unk_token="<unk>"))
        tokenizer.pre_tokenizer = pre_tokenizers.Metaspace()
        tokenizer.decoder = decoders.Metaspace()
        alphabet = []
    trainer = trainers.BpeTrainer(vocab_size=vocab, special_tokens=list(SPECIALS), initial_alphabet=alphabet,
                                  show_progress=False)
    tokenizer.train_from_iterator(_texts(), trainer)
    if style == "metaspace":
        bos = tokenizer.token_to_id("<s>")
        tokenizer.post_processor = processors.TemplateProcessing(single="<s> $A", pair="<s> $A <s> $B",
                                                                 special_tokens=[("<s>", bos)])
    return tokenizer.to_str()


def _draw(model: torch.nn.Module, seed: int, std: float) -> None:
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            noise = torch.randn(parameter.shape, generator=generator) * std
            parameter.copy_(1 + noise if name.endswith("norm.weight") or ".ln_" in name and name.endswith("weight")
                            or name.endswith("ln_f.weight") else noise)


def write_checkpoint(folder: Path, family: str, *, seed: int = 0, dtype: torch.dtype = torch.float32,
                     shard_bytes: int | None = None, tokenizer: str | None = None, std: float = 0.08,
                     generation: dict | None = None, **fields) -> Path:
    """A random `family` checkpoint saved by transformers (config fields as given) with a tokenizer."""
    import transformers

    style = tokenizer or ("bytelevel" if family in ("gpt2", "qwen2") else "metaspace")
    from tokenizers import Tokenizer

    tok = Tokenizer.from_str(tokenizer_json(style))
    vocab = tok.get_vocab_size(with_added_tokens=True)
    sizes = {"gpt2": dict(n_embd=32, n_layer=2, n_head=4, n_positions=64)}.get(
        family, dict(hidden_size=32, intermediate_size=48, num_hidden_layers=2, num_attention_heads=4,
                     num_key_value_heads=2, max_position_embeddings=64))
    ids = {"bos_token_id": tok.token_to_id("<s>"), "eos_token_id": tok.token_to_id("</s>"),
           "pad_token_id": tok.token_to_id("<pad>")}
    config = getattr(transformers, FAMILY_CONFIGS[family])(**{"vocab_size": vocab + 3, **sizes, **ids, **fields})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.manual_seed(seed)
        model = transformers.AutoModelForCausalLM.from_config(config)
    _draw(model, seed, std)
    if getattr(config, "tie_word_embeddings", False):
        model.tie_weights()
    model = model.to(dtype)
    folder.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        kwargs = {"max_shard_size": shard_bytes} if shard_bytes else {}
        model.save_pretrained(folder, **kwargs)
    (folder / "tokenizer.json").write_text(tokenizer_json(style))
    (folder / "tokenizer_config.json").write_text(json.dumps({
        "tokenizer_class": "PreTrainedTokenizerFast", "bos_token": "<s>", "eos_token": "</s>", "pad_token": "<pad>",
        "unk_token": "<unk>", "model_max_length": 64}))
    gen = {"bos_token_id": ids["bos_token_id"], "eos_token_id": ids["eos_token_id"], **(generation or {})}
    (folder / "generation_config.json").write_text(json.dumps(gen))
    return folder


def transformers_model(folder: Path):
    """transformers' own model from the folder, float32, eval mode."""
    import transformers

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return transformers.AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
