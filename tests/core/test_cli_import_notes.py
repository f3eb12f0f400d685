"""`--import-peft` on the command line: its help lists every format the import accepts (from the registry), and
every tensor or setting an import leaves out or reads differently is a `note:` line on stderr."""

from __future__ import annotations

import pytest
import torch
from peft_reference import PEFT_WARNINGS, peft, transformers  # offline switches, reference skips
from safetensors.torch import load_file, save_file

from peft_studio.cli import build_parser, main
from peft_studio.core.methods import METHODS

pytestmark = PEFT_WARNINGS


def test_import_peft_help_lists_every_accepted_format():
    inspect = build_parser()._subparsers._group_actions[0].choices["inspect"]
    text = next(a.help for a in inspect._actions if "--import-peft" in a.option_strings)
    for method in METHODS.values():
        if method.peft_type and method.peft_claims_any():
            assert method.peft_type in text and method.title in text
    assert "FEATURE_EXTRACTION" in text and "SEQ_CLS" in text


def test_what_an_import_leaves_out_is_a_note_on_stderr(tmp_path, capsys):
    from peft_studio.core.bases.pretrained import minilm_folder

    model = transformers.BertForSequenceClassification.from_pretrained(str(minilm_folder()), num_labels=2)
    wrapped = peft.get_peft_model(model, peft.LoraConfig(task_type="SEQ_CLS", r=2, target_modules=["query"],
                                                         init_lora_weights="eva"))
    wrapped.save_pretrained(str(tmp_path / "a"))
    weights = tmp_path / "a" / "adapter_model.safetensors"
    tensors = load_file(str(weights))
    tensors["base_model.model.cls.predictions.bias"] = torch.zeros(4)  # a masked-LM head: no place here
    save_file(tensors, str(weights))
    capsys.readouterr()  # transformers' own loading output
    code = main(["inspect", "--base", "minilm", "--dataset", "sentiment", "--import-peft", str(tmp_path / "a")])
    out, err = capsys.readouterr()
    assert code == 0, err
    notes = [line for line in err.splitlines() if line.startswith("note: ")]
    assert any("left out cls" in n for n in notes)
    assert any("init_lora_weights 'eva' chose only the starting values" in n for n in notes)
    assert any("task_type SEQ_CLS" in n and "pooler" in n for n in notes)
    assert "trainable params" in out


@pytest.mark.parametrize("field, value, said", [("lora_bias", True, "lora_bias"),
                                                 ("init_lora_weights", "loftq", "init_lora_weights 'loftq'")])
def test_a_setting_the_studio_cannot_reproduce_is_one_error_line_naming_it(tmp_path, capsys, field, value, said):
    import json

    from peft_studio.core.bases.pretrained import minilm_folder

    wrapped = peft.get_peft_model(transformers.BertModel.from_pretrained(str(minilm_folder())),
                                  peft.LoraConfig(r=2, target_modules=["query"]))
    wrapped.save_pretrained(str(tmp_path / "a"))
    path = tmp_path / "a" / "adapter_config.json"
    config = json.loads(path.read_text())
    config[field] = value
    path.write_text(json.dumps(config))
    capsys.readouterr()  # transformers' own loading output
    code = main(["inspect", "--base", "minilm", "--import-peft", str(tmp_path / "a")])
    _, err = capsys.readouterr()
    assert code == 2 and err.startswith("error: ") and said in err and len(err.strip().splitlines()) == 1
