"""Runs inside the AdapterHub reference environment (adapters 1.3 + transformers 4.57, which cannot live
beside the studio's transformers 5): tests/core/test_adapterhub.py starts it as a subprocess.

Reads a JSON job on stdin: the model folder, token ids and mask, and cases (each an AdapterHub bottleneck
config and a seed). For each case it adds the adapter, fills every adapter tensor from the seed (so the
adapter is far from its near-identity initialisation), and writes the adapter tensors (safetensors), the
trainable count `train_adapter` reports and the last hidden state. Prints one JSON line with the paths."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch
from safetensors.torch import save_file


def main() -> None:
    import adapters
    from adapters import BnConfig
    from transformers import BertModel

    job = json.load(sys.stdin)
    out = Path(job["out"])
    ids = torch.tensor(job["input_ids"])
    mask = torch.tensor(job["attention_mask"], dtype=torch.long)
    results = []
    for i, case in enumerate(job["cases"]):
        model = BertModel.from_pretrained(job["model"], add_pooling_layer=False)
        adapters.init(model)
        config = case["config"]  # a named AdapterHub configuration, or BnConfig's fields
        model.add_adapter("studio", config=config if isinstance(config, str) else BnConfig(**config))
        model.train_adapter("studio")
        trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
        generator = torch.Generator().manual_seed(case["seed"])
        tensors = {}
        with torch.no_grad():
            for name, parameter in model.named_parameters():
                if ".adapters.studio." in name:
                    parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.05)
                    tensors[name] = parameter.detach().clone().contiguous()
        model.eval()
        with torch.no_grad():
            hidden = model(input_ids=ids, attention_mask=mask).last_hidden_state
        tensors["__hidden__"] = hidden.contiguous()
        path = out / f"case{i}.safetensors"
        save_file(tensors, str(path))
        results.append({"path": str(path), "trainable": trainable})
    print(json.dumps(results))


if __name__ == "__main__":
    main()
