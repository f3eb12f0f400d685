"""Setup files: a whole setup round-trips, and every bad file is a clear error naming the file."""

from __future__ import annotations

import json
import shutil

import pytest

from peft_studio.core.data import load_builtin, load_dataset_file
from peft_studio.core.errors import PeftStudioError
from peft_studio.core.files.setup_file import load_setup, save_setup
from peft_studio.core.model.experiment import Experiment, Setup
from peft_studio.core.runs.train import TrainSettings


def test_a_builtin_setup_round_trips_and_builds_the_same_model(tmp_path):
    setup = Setup("tiny", "lora", {"r": 4, "alpha": 8.0, "targets": "q,k,v", "layers": "1"}, seed=7)
    settings = TrainSettings(steps=123, lr=0.003, batch_size=16, optimizer="adamw", weight_decay=0.01, seed=5,
                             eval_every=7, track_grads=False)
    dataset = load_builtin("word-order")
    path = save_setup(tmp_path / "demo.json", setup, dataset, settings)
    loaded_setup, loaded_dataset, loaded_settings = load_setup(path)
    assert loaded_setup == setup and loaded_settings == settings and loaded_dataset == dataset
    original, again = Experiment(setup, dataset), Experiment(loaded_setup, loaded_dataset)
    assert original.census().trainable == again.census().trainable
    assert original.model.frozen_fingerprint() == again.model.frozen_fingerprint()


def test_a_file_dataset_is_named_not_copied_and_moves_with_its_folder(tmp_path):
    folder = tmp_path / "lesson"
    folder.mkdir()
    data = folder / "reviews.csv"
    data.write_text("review,mood\n" + "".join(f"good film {i},pos\nbad film {i},neg\n" for i in range(10)))
    dataset = load_dataset_file(data, "review", "mood", val_fraction=0.3, seed=3)
    save_setup(folder / "setup.json", Setup("tiny", "ia3", {}), dataset, TrainSettings(track_grads=False))
    saved = json.loads((folder / "setup.json").read_text())["dataset"]
    assert saved["path"] == "reviews.csv" and saved["text_column"] == "review" and "train_texts" not in saved
    moved = shutil.move(folder, tmp_path / "elsewhere")
    _, loaded, _ = load_setup(f"{moved}/setup.json")
    assert loaded.train_texts == dataset.train_texts and loaded.val_labels == dataset.val_labels


def test_a_dataset_built_in_code_cannot_be_named(tmp_path):
    from dataclasses import replace

    dataset = replace(load_builtin("intents"), recipe=())
    with pytest.raises(PeftStudioError, match="cannot name it"):
        save_setup(tmp_path / "x.json", Setup(), dataset, TrainSettings())


GOOD = {"format": "peft-studio-setup", "version": 1, "base": "tiny", "method": "lora", "options": {"r": 4},
        "seed": 0, "dataset": {"builtin": "intents"}, "training": {"steps": 10, "lr": 0.01}}


@pytest.mark.parametrize(("change", "message"), [
    ({"format": "something-else"}, "not a PEFT Studio setup"),
    ({"version": 99}, "version 99 is not supported"),
    ({"method": "no-such-method"}, "unknown method 'no-such-method'"),
    ({"options": {"r": -1}}, "r"),
    ({"options": {"rank": 4}}, "option 'rank' does not apply"),
    ({"options": {"r": "four"}}, "r"),
    ({"options": [1, 2]}, "\"options\" should be an object"),
    ({"seed": True}, "\"seed\" should be a whole number"),
    ({"seed": 1.5}, "\"seed\" should be a whole number"),
    ({"training": {"steps": "ten"}}, "training: \"steps\" should be a whole number"),
    ({"training": {"steps": 0}}, "steps must be at least 1"),
    ({"training": {"lr": -1}}, "lr must be a positive number"),
    ({"training": {"optimizer": "sgd"}}, "optimizer must be one of"),
    ({"training": {"epochs": 3}}, "unknown training setting 'epochs'"),
    ({"dataset": {"builtin": "imdb"}}, "unknown built-in dataset 'imdb'"),
    ({"dataset": {}}, "needs \"builtin\""),
    ({"dataset": {"path": "nowhere.csv", "text_column": "t", "label_column": "l"}}, "does not exist"),
    ({"dataset": {"path": "data.csv", "text_column": "t"}}, "needs \"label_column\""),
    ({"dataset": {"path": "data.csv", "text_column": "nope", "label_column": "label"}}, "no column 'nope'"),
    ({"dataset": {"path": "data.csv", "text_column": "text", "label_column": "label", "colour": 1}},
     "unknown dataset field 'colour'"),
    ({"base": None}, "\"base\" should be text"),
    ({"method": None}, "\"method\" should be text"),
])
def test_bad_setup_files_are_clear_errors(tmp_path, change, message):
    (tmp_path / "data.csv").write_text("text,label\na b,x\nc d,y\ne f,x\ng h,y\n")
    document = {**GOOD, **change}
    path = tmp_path / "bad-setup.json"
    path.write_text(json.dumps(document))
    with pytest.raises(PeftStudioError) as caught:
        load_setup(path)
    assert "bad-setup.json" in str(caught.value) and message in str(caught.value)


@pytest.mark.parametrize("content", [b"", b"not json", b"[1, 2]", b"\xff\xfe\x00{", b'{"format": "peft-studio-setup"}'])
def test_unreadable_or_incomplete_files_are_clear_errors(tmp_path, content):
    path = tmp_path / "broken.json"
    path.write_bytes(content)
    with pytest.raises(PeftStudioError, match="broken.json"):
        load_setup(path)


def test_a_folder_is_not_a_setup(tmp_path):
    with pytest.raises(PeftStudioError, match="is a folder"):
        load_setup(tmp_path)
