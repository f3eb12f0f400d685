"""A set's adapters as one PEFT multi-adapter folder: PEFT loads ours, we load PEFT's."""

from __future__ import annotations

import pytest
import torch
from peft_reference import PEFT_WARNINGS, peft, transformers  # offline switches, reference skips

from peft_studio.core.adapters.adapter_set import AdapterSet
from peft_studio.core.data import load_builtin
from peft_studio.core.errors import AdapterFileError
from peft_studio.core.interop.peft_multi import export_peft_set, import_peft_set, peft_adapter_folders

pytestmark = PEFT_WARNINGS

TEXTS = ["refund my order please", "the food was great", "terrible slow service"]


def _nudge(adapters: AdapterSet, name: str, seed: int) -> None:
    generator = torch.Generator().manual_seed(seed)
    with adapters.using(name) as member, torch.no_grad():
        for key, parameter in member.model.named_parameters():
            if parameter.requires_grad and "lora_A" not in key:
                parameter.add_(0.05 * torch.randn(parameter.shape, generator=generator))


def test_a_set_exports_in_peft_layout_and_comes_back(tmp_path):
    from peft_studio.core.bases.pretrained import minilm_folder

    intents, sentiment = load_builtin("intents"), load_builtin("sentiment")
    adapters = AdapterSet.build("minilm")
    adapters.add("default", "lora", {"r": 4, "targets": "q,v"}, intents, seed=1)
    adapters.add("mood", "lora", {"r": 2, "alpha": 4.0, "targets": "k,o,up", "layers": "0,5"}, sentiment, seed=2)
    adapters.add("scales", "ia3", {}, sentiment, seed=3)  # PEFT cannot hold it beside LoRA in one model
    for seed, name in enumerate(adapters.names()):
        _nudge(adapters, name, seed)
    out = export_peft_set(adapters, tmp_path / "multi")
    assert set(peft_adapter_folders(out)) == {"default", "mood", "scales"}
    assert (out / "adapter_config.json").is_file() and (out / "mood" / "adapter_config.json").is_file()

    # PEFT itself reads the layout: from_pretrained for "default", load_adapter for the subfolder.
    bert = transformers.BertModel.from_pretrained(str(minilm_folder())).eval()
    wrapped = peft.PeftModel.from_pretrained(bert, str(out)).eval()
    wrapped.load_adapter(str(out / "mood"), adapter_name="mood")
    for name in ("default", "mood"):
        wrapped.set_adapter(name)
        with adapters.using(name) as member:
            ids, mask = member.tokenizer.batch(TEXTS)
            with torch.no_grad():
                theirs = wrapped(input_ids=ids, attention_mask=mask.long()).last_hidden_state
                ours, _ = member.base.encode(ids, mask)
            assert (theirs - ours)[mask].abs().max() <= 1e-4

    # And back: a fresh set on the same base gets both, with identical predictions.
    again = AdapterSet.build("minilm")
    imported = import_peft_set(again, out)
    assert [m.name for m in imported] == ["default", "mood", "scales"]
    for name in ("default", "mood", "scales"):
        with adapters.using(name):
            expected = adapters.predict(TEXTS)
        again.activate(name)
        torch.testing.assert_close(again.predict(TEXTS), expected, rtol=0, atol=1e-6)
    assert again.get("mood").dataset.label_names == sentiment.label_names
    with pytest.raises(Exception, match="already in the set"):
        import_peft_set(again, out)
    assert again.names() == ["default", "mood", "scales"]  # a refused import adds nothing


def test_a_folder_without_adapters_is_refused(tmp_path):
    (tmp_path / "empty" / "sub").mkdir(parents=True)
    with pytest.raises(AdapterFileError, match="no adapter_config.json"):
        peft_adapter_folders(tmp_path / "empty")
