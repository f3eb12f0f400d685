"""Decoder speed against transformers + peft on a real-size small decoder (random weights, SmolLM2-135M's shape with
6 layers: width 576, 9 query / 3 key-value heads, MLP 1536, vocabulary 49,152, tied embeddings).

    python benchmarks/bench_decoders.py          # both figures, best of 3 interleaved rounds

- decoder_lora_vs_peft: seconds per LoRA training step (r 8, alpha 16, q_proj + v_proj, Adam, next-token loss
  over every position of a batch of 4 x 64 tokens) in the studio over the same step in transformers + peft
  (AutoModelForCausalLM with its default SDPA attention, get_peft_model): <= 1.0 means no slower than PEFT.
- decoder_tokens_per_s: greedy generation with a KV cache, 32 new tokens after a 16-token prompt, the studio's
  tokens per second over transformers' generate(): >= 1.0 means no slower.
Both run in float32 on the CPU with the same torch thread count, on the same checkpoint folder.
"""

from __future__ import annotations

import json
import tempfile
import time
import warnings
from pathlib import Path

SHAPE = dict(hidden_size=576, intermediate_size=1536, num_hidden_layers=6, num_attention_heads=9,
             num_key_value_heads=3, vocab_size=49152, max_position_embeddings=2048, rope_theta=100000.0,
             rms_norm_eps=1e-5, tie_word_embeddings=True)
THREADS = 2
BATCH, LENGTH, PROMPT, NEW_TOKENS = 4, 64, 16, 32


def write_checkpoint(folder: Path) -> Path:
    """A random Llama checkpoint saved by transformers, with a minimal tokenizer.json (ids are drawn here)."""
    import torch
    import transformers
    from tokenizers import Tokenizer, models

    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = transformers.AutoModelForCausalLM.from_config(transformers.LlamaConfig(**SHAPE))
        model.save_pretrained(folder)
    Tokenizer(models.WordLevel({"<unk>": 0, "a": 1}, unk_token="<unk>")).save(str(folder / "tokenizer.json"))
    return folder


def lora_step_seconds(folder: Path, rounds: int = 3, steps: int = 5, warm: int = 1) -> tuple[float, float]:
    """(studio, peft) seconds per training step, best of `rounds` interleaved, on the same batches."""
    import peft
    import torch
    import transformers

    from peft_studio.core.bases import create_base
    from peft_studio.core.methods import get_method
    from peft_studio.core.methods.config import make_config
    from peft_studio.core.model.next_token import next_token_logits, next_token_loss
    from peft_studio.core.model.studio_model import StudioModel

    torch.manual_seed(0)
    studio = StudioModel(create_base(str(folder)))
    lora = get_method("lora")
    lora.attach(studio, make_config(lora.config_cls, {"r": 8, "alpha": 16.0, "targets": "q_proj,v_proj"}))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        reference = transformers.AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
        reference = peft.get_peft_model(reference, peft.LoraConfig(r=8, lora_alpha=16, lora_dropout=0.0,
                                                                   target_modules=["q_proj", "v_proj"]))
    generator = torch.Generator().manual_seed(0)
    batches = [torch.randint(0, SHAPE["vocab_size"], (BATCH, LENGTH), generator=generator)
               for _ in range(warm + steps)]
    mask = torch.ones(BATCH, LENGTH, dtype=torch.bool)

    def studio_loss(ids: torch.Tensor) -> torch.Tensor:
        return next_token_loss(next_token_logits(studio.base, ids, mask), ids, mask)[0]

    def peft_loss(ids: torch.Tensor) -> torch.Tensor:
        return reference(input_ids=ids, labels=ids).loss

    def time_steps(loss_of, parameters) -> float:
        optimizer = torch.optim.Adam(parameters, lr=1e-3)
        for number, ids in enumerate(batches):
            if number == warm:
                started = time.perf_counter()
            loss = loss_of(ids)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        return (time.perf_counter() - started) / steps

    studio.train()
    reference.train()
    ours, theirs = [], []
    for _ in range(rounds):
        ours.append(time_steps(studio_loss, studio.trainable_parameters()))
        theirs.append(time_steps(peft_loss, [p for p in reference.parameters() if p.requires_grad]))
    return min(ours), min(theirs)


def generation_tokens_per_s(folder: Path, rounds: int = 3) -> tuple[float, float]:
    """(studio, transformers) greedy tokens per second with a KV cache, best of `rounds` interleaved."""
    import torch
    import transformers

    from peft_studio.core.bases import create_base
    from peft_studio.core.model.generate import GenerationSettings, generate

    base = create_base(str(folder))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = transformers.AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
    prompt = torch.randint(0, SHAPE["vocab_size"], (1, PROMPT), generator=torch.Generator().manual_seed(1))
    settings = GenerationSettings(max_new_tokens=NEW_TOKENS)
    ours, theirs = [], []
    for _ in range(rounds + 1):  # the first round warms both up
        started = time.perf_counter()
        ids = generate(base, prompt[0].tolist(), settings).generated_ids
        ours.append(NEW_TOKENS / (time.perf_counter() - started))
        started = time.perf_counter()
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            out = model.generate(prompt, attention_mask=torch.ones_like(prompt), do_sample=False,
                                 max_new_tokens=NEW_TOKENS, min_new_tokens=NEW_TOKENS, eos_token_id=None,
                                 pad_token_id=0)
        theirs.append(NEW_TOKENS / (time.perf_counter() - started))
        assert out[0, PROMPT:].tolist() == ids  # the same tokens: the same work was timed
    return max(ours[1:]), max(theirs[1:])


def measure(rounds: int = 3, steps: int = 5) -> dict[str, float]:
    """Both figures and the times they come from (one process, THREADS torch threads)."""
    import torch

    torch.set_num_threads(THREADS)
    with tempfile.TemporaryDirectory(prefix="bench-decoder-") as temp:
        folder = write_checkpoint(Path(temp) / "smol-6")
        studio_step, peft_step = lora_step_seconds(folder, rounds, steps)
        studio_tps, hf_tps = generation_tokens_per_s(folder, rounds)
    return {"decoder_lora_vs_peft": studio_step / peft_step, "decoder_tokens_per_s": studio_tps / hf_tps,
            "studio_step_s": studio_step, "peft_step_s": peft_step, "studio_tokens_per_s": studio_tps,
            "transformers_tokens_per_s": hf_tps}


if __name__ == "__main__":
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    print(json.dumps(measure(), indent=1))
