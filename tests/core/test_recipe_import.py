"""The adapter a recipe's train.py writes (BertForSequenceClassification + PEFT, task_type SEQ_CLS) comes back into
the studio with its trained classifier, on BERT's pooler, and predicts what PEFT predicts from the same folder."""

from __future__ import annotations

import pytest
import torch
from test_pretrained import write_bert_folder
from test_recipe import _load_train_module, peft, transformers, write_setup

from peft_studio.core.data import load_builtin
from peft_studio.core.interop.hf_peft import import_peft
from peft_studio.core.interop.recipe import recipe_from_setup_file
from peft_studio.core.model.experiment import Setup


@pytest.mark.parametrize("method, options", [("lora", {"r": 4, "targets": "query,value"}), ("ia3", {})])
def test_a_recipe_trained_adapter_imports_with_its_head(tmp_path, capsys, method, options):
    checkpoint = write_bert_folder(tmp_path / "bert")
    folder, plan = recipe_from_setup_file(write_setup(tmp_path, method, options, base=str(checkpoint)),
                                          tmp_path / "recipe")
    train = _load_train_module(folder)
    capsys.readouterr()
    code = train.main(["--model", str(checkpoint), "--cpu", "--max-steps", "2", "--output-dir",
                       str(tmp_path / "adapter")])
    out = capsys.readouterr().out
    assert code == 0, out
    data = load_builtin("intents")
    experiment = import_peft(Setup(str(checkpoint), seed=9), tmp_path / "adapter", data)
    assert experiment.setup.base_options == {"pooling": "pooler"} and experiment.setup.method == method
    reference = transformers.BertForSequenceClassification.from_pretrained(str(checkpoint),
                                                                          num_labels=data.num_labels)
    loaded = peft.PeftModel.from_pretrained(reference, str(tmp_path / "adapter")).eval()
    texts = list(data.val_texts[:8])
    ids, mask = experiment.tokenizer.batch(texts)
    experiment.model.eval()
    with torch.no_grad():
        theirs = loaded(input_ids=ids, attention_mask=mask.long()).logits
        ours = experiment.model(ids, mask)
    assert (theirs - ours).abs().max() <= 1e-4
    assert experiment.method_parameter_count() == plan.expected["studio"]["method_trainable"]
