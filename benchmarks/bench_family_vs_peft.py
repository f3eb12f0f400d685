"""Each PEFT method's training step on MiniLM, the studio's against PEFT's for the same config (issue 24: within
1.1x). One figure per line:

    python benchmarks/bench_family_vs_peft.py                 # every registered method with a PEFT form
    python benchmarks/bench_family_vs_peft.py loha lokr      # some of them

    family_vs_peft loha: 1.02 (studio 61.3 ms, peft 60.1 ms)

For each method: its default options on MiniLM's query and value (AdaLoRA with total_step set to the run's steps
and no orthogonality penalty, which PEFT adds only to a model output's own loss), the studio's model and PEFT's
model built from the config the studio exports, with the studio's tensors copied in; then the same batches (16
sentences), Adam, forward + loss + backward + step, and the method's per-step hook on each side (AdaLoRA's
rank allocation: the studio's after_step, PEFT's update_and_allocate). Best of 3 interleaved rounds of 20 steps
after 3 warm-up steps, 2 torch threads; BertModel's dropout is off (the studio's encoder has none). A ratio above
1 means the studio is slower.
"""

from __future__ import annotations

import dataclasses
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import peft_studio  # noqa: E402, F401 - first, as in the app: its OpenMP wait policy precedes torch (imported below)

THREADS, BATCH, WARM, STEPS, ROUNDS = 2, 16, 3, 20, 3
EXTRA = {"adalora": {"total_step": WARM + STEPS, "orth_reg_weight": 0.0}}


def _sides(name: str):
    import peft
    import torch
    import transformers
    from torch.nn import functional as F

    from peft_studio.core.bases.pretrained import minilm_folder
    from peft_studio.core.data import load_builtin
    from peft_studio.core.interop.hf_peft import export_peft
    from peft_studio.core.methods import METHODS
    from peft_studio.core.model.experiment import Experiment, Setup

    data = load_builtin("sentiment")
    fields = {f.name for f in dataclasses.fields(METHODS[name].config_cls)}
    targets = {"targets": "q,v"} if "targets" in fields else {}  # trainable tokens: its token rows instead
    studio = Experiment(Setup("minilm", name, {**targets, **EXTRA.get(name, {})}, seed=0), data)
    folder = export_peft(studio, tempfile.mkdtemp(prefix="bench-family-"))
    bert = transformers.BertModel.from_pretrained(str(minilm_folder()), hidden_dropout_prob=0.0,
                                                  attention_probs_dropout_prob=0.0)
    wrapped = peft.PeftModel.from_pretrained(bert, str(folder), is_trainable=True)
    head = torch.nn.Linear(384, data.num_labels)
    generator = torch.Generator().manual_seed(0)
    count = len(studio.train_labels)
    batches = [torch.randperm(count, generator=generator)[:BATCH] for _ in range(WARM + STEPS)]
    method, config, model = studio.method, studio.config, studio.model

    def studio_step(index: torch.Tensor, step: int, optimizer) -> None:
        loss = F.cross_entropy(model(studio.train_ids[index], studio.train_mask[index]), studio.train_labels[index])
        extra = method.training_loss(model, config)
        optimizer.zero_grad()
        (loss if extra is None else loss + extra).backward()
        optimizer.step()
        method.after_step(model, config, step)

    def peft_step(index: torch.Tensor, step: int, optimizer) -> None:
        mask = studio.train_mask[index]
        hidden = wrapped(input_ids=studio.train_ids[index], attention_mask=mask.long()).last_hidden_state
        weights = mask.unsqueeze(-1).to(hidden.dtype)
        loss = F.cross_entropy(head((hidden * weights).sum(1) / weights.sum(1)), studio.train_labels[index])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if hasattr(wrapped.base_model, "update_and_allocate"):  # PEFT's per-step hook (AdaLoRA)
            wrapped.base_model.update_and_allocate(step)

    def timed(step_fn, parameters, start) -> float:
        optimizer = torch.optim.Adam(parameters, lr=1e-3)
        for number, index in enumerate(batches):
            if number == WARM:
                started = time.perf_counter()
            step_fn(index, number, optimizer)
        return (time.perf_counter() - started) / STEPS

    model.train()
    wrapped.train()
    method.start_training(model, config, 0, WARM + STEPS)
    ours = [p for p in model.parameters() if p.requires_grad]
    theirs = [p for p in wrapped.parameters() if p.requires_grad] + list(head.parameters())
    return (lambda: timed(studio_step, ours, 0)), (lambda: timed(peft_step, theirs, 0))


def main(names: list[str]) -> None:
    import torch

    from peft_studio.core.methods import METHODS

    torch.set_num_threads(THREADS)
    chosen = names or [n for n, m in METHODS.items() if m.peft_type and m.exchange_tolerance is not None
                       and m.peft_type not in ("PROMPT_TUNING", "P_TUNING", "PREFIX_TUNING", "ADAPTION_PROMPT")]
    for name in chosen:
        studio, theirs = _sides(name)
        ours_s, peft_s = [], []
        for _ in range(ROUNDS):  # interleaved: a busy moment hits both sides
            ours_s.append(studio())
            peft_s.append(theirs())
        ratio = min(ours_s) / min(peft_s)
        print(f"family_vs_peft {name}: {ratio:.2f} (studio {min(ours_s) * 1000:.1f} ms, peft "
              f"{min(peft_s) * 1000:.1f} ms)", flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
