"""The second hardening pass (issue 27), one test per class of hostile input, through the command line run
in-process: each is refused with one `error:` line and exit 2 within a bound, or runs correctly. The drawn
versions of the same surfaces are in test_hardening_second_properties.py."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from hostile_helpers import (
    LIMIT_S,
    bert_checkpoint,
    cli,
    edit_json,
    one_error_line,
    peft_lora_folder,
    rewrite_metadata,
    rss_peak_mb,
    set_file,
)
from safetensors.torch import load_file, save_file

from peft_studio.core.data import load_builtin
from peft_studio.core.errors import PeftStudioError, RunStoreError
from peft_studio.core.runs.run_store import RunRecord, RunStore

LLAMA = {"model_type": "llama", "vocab_size": 100, "hidden_size": 64, "num_hidden_layers": 2,
         "num_attention_heads": 4, "intermediate_size": 128}


def setup_doc(**changes) -> dict:
    doc = {"format": "peft-studio-setup", "version": 1, "base": "seed-pooled", "base_options": {}, "method": "lora",
           "options": {}, "seed": 0, "dataset": {"builtin": "seed-intents"},
           "training": {"steps": 2, "lr": 0.01, "batch_size": 0, "optimizer": "adam", "weight_decay": 0.0, "seed": 0,
                        "eval_every": 10}}
    doc.update(changes)
    return doc


def write(path: Path, data) -> Path:
    path.write_text(data if isinstance(data, str) else json.dumps(data))
    return path


# ---- numbers at the edge of float32 -----------------------------------------------------------------
@pytest.mark.parametrize("lr", ["3.5e38", "1e39", "1e300", "1e38", "3.5e37", "1e-50"])
def test_a_learning_rate_float32_cannot_hold_is_refused_before_training(lr, tmp_path):
    """Adam's first update applies lr / (1 - 0.9) as a float32 scalar: 3.5e37 is the first that overflows."""
    for argv in (["train", "--base", "seed-pooled", "--steps", "1", "--lr", lr],
                 ["compare", "--base", "seed-pooled", "--dataset", "seed-intents", "--methods", "lora", "--steps", "1",
                  "--lr", lr, "--runs-dir", str(tmp_path)]):
        code, out, err, seconds = cli(*argv)
        line = one_error_line(code, err, "float32")
        assert "lr" in line and out == "" and seconds < LIMIT_S
    setup = write(tmp_path / "s.json", setup_doc(training={**setup_doc()["training"], "lr": float(lr)}))
    one_error_line(*cli("train", "--setup", setup)[::2], "float32")


def test_the_largest_learning_rate_float32_holds_trains_into_divergence_not_an_overflow():
    code, _, err, _ = cli("train", "--base", "seed-pooled", "--steps", "3", "--lr", "3e37")
    one_error_line(code, err, "Try a lower learning rate")


@pytest.mark.parametrize("key", [2**31, 2**63, 2**64 + 5])
def test_a_vera_projection_key_beyond_its_range_is_refused_by_name(key, tmp_path):
    setup = write(tmp_path / "s.json", setup_doc(base="tiny", dataset={"builtin": "intents"}, method="vera",
                                                options={"projection_prng_key": key}))
    one_error_line(*cli("train", "--setup", setup)[::2], "projection_prng_key")
    one_error_line(*cli("inspect", "--method", "vera", "--projection-prng-key", str(key))[::2], "projection-prng-key")


# ---- architecture configs ---------------------------------------------------------------------------
@pytest.mark.parametrize("change,phrase", [
    ({"num_hidden_layers": 10_000}, "num_hidden_layers = 10,000 is out of range [1, 256]"),
    ({"num_hidden_layers": 10**12}, "num_hidden_layers"),
    ({"hidden_size": 10**9}, "hidden_size = 1,000,000,000 is out of range"),
    ({"vocab_size": 10**12}, "vocab_size"),
    ({"intermediate_size": -5}, "intermediate_size = -5 is out of range"),
    ({"num_key_value_heads": 8}, "num_key_value_heads (8) is more than num_attention_heads (4)"),
    ({"rope_theta": -1.0}, "rope_theta must be a number in (0,"),
    ({"rope_parameters": [1, 2]}, "rope_parameters must be an object"),
    ({"rope_parameters": {"rope_type": "llama3", "factor": -8}}, "factor must be a positive number"),
    ({"rope_scaling": {"rope_type": "linear", "factor": 0.5}}, "factor must be at least 1"),
    ({"rope_scaling": {"rope_type": "warp"}}, "rope_type 'warp'"),
    ({"rope_scaling": {"type": "yarn", "factor": 2.0, "original_max_position_embeddings": 10**9}},
     "original_max_position_embeddings"),
    ({"rms_norm_eps": 0}, "rms_norm_eps must be a number in (0, 1)"),
    ({"head_dim": 7}, "even head dimension"),
    ({"hidden_size": 32768, "intermediate_size": 131072, "num_hidden_layers": 256, "vocab_size": 1_000_000,
      "num_attention_heads": 128}, "parameters; the limit is 1e+12"),
])
def test_architecture_configs_are_bounded_by_real_checkpoints_and_refused_at_once(change, phrase, tmp_path):
    config = write(tmp_path / "config.json", {**LLAMA, **change})
    for argv in (["inspect", "--base", config, "--method", "lora"], ["compare", "--base", config],
                 ["screenshot", tmp_path / "shot.png", "--base", config, "--steps", "0"]):
        code, _, err, seconds = cli(*argv)
        one_error_line(code, err, phrase)
        assert seconds < 1.0, (argv[0], seconds)  # refused before anything is built


def test_a_recipe_from_a_huge_config_is_refused_before_any_build(tmp_path):
    config = write(tmp_path / "config.json", {**LLAMA, "num_hidden_layers": 10_000})
    setup = write(tmp_path / "s.json", setup_doc(base="tiny", dataset={"builtin": "intents"}))
    code, _, err, seconds = cli("recipe", "--setup", setup, "--out", tmp_path / "out", "--base", config)
    one_error_line(code, err, "num_hidden_layers")
    assert seconds < 1.0 and not (tmp_path / "out").exists()


def test_real_rope_parameters_still_build(tmp_path):
    rope = {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
            "original_max_position_embeddings": 8192, "rope_theta": 500000.0}
    config = write(tmp_path / "config.json", {**LLAMA, "max_position_embeddings": 131072, "rope_parameters": rope})
    code, out, err, _ = cli("inspect", "--base", config, "--method", "lora", "--json")
    assert code == 0 and json.loads(out)["trainable"] > 0, err


# ---- outputs ----------------------------------------------------------------------------------------
def test_output_paths_are_checked_before_any_work(tmp_path):
    os.mkfifo(tmp_path / "fifo")
    (tmp_path / "folder").mkdir()
    (tmp_path / "file").write_text("x")
    cases = [
        (["train", "--save-adapter", ""], "--save-adapter: the path is empty"),
        (["train", "--save-adapter", tmp_path / "folder"], "is a folder"),
        (["train", "--save-adapter", tmp_path / "fifo"], "FIFO"),
        (["train", "--save-adapter", tmp_path / "file" / "a.safetensors"], "is a file, not a folder"),
        (["train", "--export-peft", ""], "--export-peft: the path is empty"),
        (["train", "--export-peft", tmp_path / "file"], "exists and is not a folder"),
        (["compare", "--csv", ""], "--csv: the path is empty"),
        (["compare", "--csv", tmp_path / "folder"], "is a folder"),
        (["compare", "--runs-dir", tmp_path / "file"], "exists and is not a folder"),
        (["compare", "--runs-dir", ""], "--runs-dir: the path is empty"),
        (["screenshot", tmp_path / "x.txt"], "a screenshot is a PNG"),
        (["screenshot", tmp_path / "folder"], "a screenshot is a PNG"),
        (["screenshot", tmp_path / "file" / "x.png"], "is a file, not a folder"),
        (["screenshot", "/proc/peft-studio.png"], "cannot write"),
        (["screenshot", tmp_path / "x.png", "--base", "no-such-base"], "unknown base"),
        (["screenshot", tmp_path / "x.png", "--method", "no-such-method"], "unknown method"),
        (["screenshot", tmp_path / "x.png", "--base", "llama-3-70b"], "use --steps 0"),
    ]
    for argv, phrase in cases:
        code, out, err, seconds = cli(*[str(a) for a in argv])
        one_error_line(code, err, phrase)
        assert out == "" and seconds < LIMIT_S, argv  # nothing trained, nothing printed first


def test_the_default_runs_folder_being_a_file_is_refused_before_the_family_trains(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path))
    (tmp_path / "peft-studio").mkdir()
    (tmp_path / "peft-studio" / "runs").write_text("not a folder")
    code, out, err, _ = cli("compare", "--base", "seed-pooled", "--dataset", "seed-intents", "--steps", "1")
    one_error_line(code, err, "not a folder")
    assert out == ""


def test_an_export_for_a_base_peft_has_no_model_for_says_so(tmp_path):
    code, _, err, _ = cli("train", "--steps", "1", "--export-peft", tmp_path / "out")
    assert code == 0 and "note: base 'tiny' has no Hugging Face checkpoint" in err
    assert "PeftModel.from_pretrained has no model" in (tmp_path / "out" / "README.md").read_text()


# ---- writes that would leave the chosen folder ------------------------------------------------------
def test_recipe_force_never_writes_through_a_link_in_the_output_folder(tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_text("mine")
    out = tmp_path / "recipe"
    (out / "data").mkdir(parents=True)
    (out / "data" / "train.jsonl").symlink_to(victim)
    setup = write(tmp_path / "s.json", setup_doc(base="tiny", dataset={"builtin": "intents"}))
    one_error_line(*cli("recipe", "--setup", setup, "--out", out, "--base", "bert-base", "--force")[::2],
                   "symbolic link")
    (out / "data" / "train.jsonl").unlink()
    (out / "train.py").symlink_to(victim)
    one_error_line(*cli("recipe", "--setup", setup, "--out", out, "--base", "bert-base", "--force")[::2],
                   "symbolic link")
    assert victim.read_text() == "mine"


def test_a_setup_reads_data_from_its_own_folder_unless_the_user_names_the_file(tmp_path):
    secret = tmp_path / "private" / "secret.csv"
    secret.parent.mkdir()
    secret.write_text("text,label\n" + "".join(f"my secret {i},{i % 2}\n" for i in range(20)))
    shared = tmp_path / "shared"
    shared.mkdir()
    (shared / "link.csv").symlink_to(secret)
    dataset = {"text_column": "text", "label_column": "label"}
    for path in (str(secret), "../private/secret.csv", "link.csv"):
        setup = write(shared / "s.json", setup_doc(dataset={"path": path, **dataset}))
        one_error_line(*cli("train", "--setup", setup)[::2], "lies outside the setup's folder")
        code, _, err, _ = cli("recipe", "--setup", setup, "--out", tmp_path / "r", "--base", "bert-base")
        one_error_line(code, err, "lies outside the setup's folder")
        assert not (tmp_path / "r").exists()
    code, out, err, _ = cli("train", "--setup", setup, "--data", secret)  # named by the user: read
    assert code == 0 and "step=" in out, err


def test_export_peft_keeps_a_readme_it_did_not_write(tmp_path):
    checkpoint = bert_checkpoint(tmp_path / "bert")
    out = tmp_path / "export"
    out.mkdir()
    (out / "README.md").write_text("my notes")
    argv = ["train", "--base", checkpoint, "--steps", "1", "--dataset", "sentiment"]
    code, out_text, err, _ = cli(*argv, "--export-peft", out)
    one_error_line(code, err, "README.md PEFT Studio did not write")
    assert out_text == "" and (out / "README.md").read_text() == "my notes"
    assert cli(*argv, "--export-peft", tmp_path / "mine")[0] == 0  # its own README is rewritten on a new export
    assert cli(*argv, "--export-peft", tmp_path / "mine")[0] == 0


def test_a_multi_adapter_export_never_writes_outside_its_folder(tmp_path):
    from peft_studio.core.adapters.adapter_set import AdapterSet
    from peft_studio.core.interop.peft_multi import export_peft_set

    checkpoint = bert_checkpoint(tmp_path / "bert")
    dataset = load_builtin("sentiment")
    adapters = AdapterSet.build(str(checkpoint), [dataset])
    adapters.add("../escape", "lora", {"r": 2}, dataset)
    with pytest.raises(PeftStudioError, match="cannot be a folder name"):
        export_peft_set(adapters, tmp_path / "out")
    assert not (tmp_path / "escape").exists()


# ---- the run store ----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def one_run(tmp_path_factory) -> RunRecord:
    from peft_studio.core.runs.compare import family_records, run_family
    from peft_studio.core.runs.train import TrainSettings

    store = RunStore(tmp_path_factory.mktemp("runs"))
    return family_records(run_family("seed-pooled", load_builtin("seed-intents"), TrainSettings(steps=2),
                                     methods=["lora"], store=store))[0]


def hostile_run_files(folder: Path, record: RunRecord) -> dict[str, str]:
    """Run files of every hostile kind (file name -> the words its skip reason holds)."""
    good = record.to_json()
    folder.mkdir(exist_ok=True)
    os.mkfifo(folder / "fifo.json")
    (folder / "zero.json").symlink_to("/dev/zero")
    write(folder / "deep.json", '{"format": "peft-studio-run/1", "a": ' + "[" * 50_000 + "]" * 50_000 + "}")
    write(folder / "typed.json", {**good, "run_id": "typed", "steps_done": "many"})
    write(folder / "bool.json", {**good, "run_id": "bool", "seed": True})
    write(folder / "memory.json", {**good, "run_id": "memory", "memory": {"kind": [1]}})
    write(folder / "big.json", {**good, "run_id": "big", "where": "x" * 2_000_000})
    write(folder / "other.json", {**good, "run_id": "someone-else"})
    write(folder / "curves.json", {**good, "run_id": "curves"})
    (folder / "curves.curves.csv").write_text("step,loss,accuracy,val_loss,val_accuracy\n" + "1,x,0,,\n")
    write(folder / "huge.json", {**good, "run_id": "huge"})
    with (folder / "huge.curves.csv").open("w") as handle:
        handle.write("step,loss,accuracy,val_loss,val_accuracy\n")
        handle.write("1,0.5,0.5,,\n" * 6_000_000)  # 66 MB: over the curves' limit
    return {"fifo.json": "FIFO", "zero.json": "character device", "deep.json": "nested", "typed.json": "steps_done",
            "bool.json": "seed", "memory.json": "memory", "big.json": "limit", "other.json": "run_id",
            "curves.json": "curves", "huge.json": "limit"}


def test_the_run_store_reads_with_the_bounded_typed_reader_and_says_what_it_skipped(tmp_path, one_run):
    store = RunStore(tmp_path / "runs")
    store.save(one_run)
    reasons = hostile_run_files(store.folder, one_run)
    records = store.list()
    assert [r.run_id for r in records] == [one_run.run_id]
    assert len(store.skipped) == len(reasons)
    for name, words in reasons.items():
        assert any(name.split(".")[0] in line and words in line for line in store.skipped), (name, store.skipped)
    assert store.load(one_run.run_id).curves.loss == one_run.curves.loss


def test_a_runs_folder_that_is_a_file_is_said_not_raised(tmp_path):
    (tmp_path / "runs").write_text("x")
    store = RunStore(tmp_path / "runs")
    assert store.list() == [] and "not a folder" in store.skipped[0]
    with pytest.raises(RunStoreError, match="not a folder"):
        store.check_folder()


def test_three_hundred_runs_are_listed(tmp_path, one_run):
    store = RunStore(tmp_path / "runs")
    for i in range(300):
        store.save(RunRecord(**{**one_run.__dict__, "run_id": f"run-{i:03d}"}))
    assert len(store.list()) == 300 and store.skipped == []


# ---- adapter files' metadata ------------------------------------------------------------------------
@pytest.mark.parametrize("changes,phrase", [
    ({"base_options": "[" * 100_000 + "]" * 100_000}, "nested 100000 levels deep"),
    ({"seed": str(2**64)}, "seed must be in [0, 9223372036854775807]"),
    ({"base_seed": "-1"}, "base_seed metadata should be a whole number"),
    ({"base_options": "[1, 2]"}, "base_options should be an object, not a list"),
    ({"base_options": json.dumps({"d_model": -5})}, "base_options.d_model must be in [1, 4096]"),
    ({"base_options": json.dumps({"d_model": 4096, "n_layers": 48, "d_ff": 16384})}, "needs about"),
    ({"labels": json.dumps(["a", "b"])}, "names 2 labels but its head has"),
    ({"labels": json.dumps(["a", "a", "b", "c", "d"])}, "label names repeat"),
    ({"labels": json.dumps([1, 2, 3, 4, 5])}, "a label should be non-empty text"),
    ({"config": json.dumps({"r": "2"})}, "options.r should be a whole number"),
    ({"config": json.dumps({"alpha": 1e39})}, "alpha"),
    ({"tokenizer": json.dumps({"vocab": {"a": 5}, "lowercase": True, "max_len": 10})}, "ids are 0..0"),
    ({"tokenizer": None}, "does not record it"),
    ({"adapter_name": "a,b"}, "without commas"),
    ({"method": "nope"}, "unknown method 'nope'"),
])
def test_adapter_metadata_gets_the_setup_files_validation(changes, phrase, tmp_path):
    path = rewrite_metadata(set_file(tmp_path), tmp_path / "hostile.safetensors", changes)
    code, out, err, seconds = cli("predict", "--adapters", path, "--list")
    one_error_line(code, err, phrase)
    assert seconds < LIMIT_S and out == ""


def test_an_adapter_file_is_read_once(tmp_path, monkeypatch):
    from peft_studio.core.adapters.adapter_set import AdapterSet
    from peft_studio.core.files import safe_io

    path = set_file(tmp_path)
    reads: list[str] = []
    original = safe_io.read_bytes
    monkeypatch.setattr(safe_io, "read_bytes", lambda p, *a, **k: (reads.append(str(p)), original(p, *a, **k))[1])
    AdapterSet.from_files([path])
    assert reads == [str(path)]


def test_reading_a_large_adapter_costs_about_its_size_once(tmp_path):
    path, small = tmp_path / "big.safetensors", tmp_path / "small.safetensors"
    save_file({"a": torch.zeros(60_000_000), "b": torch.zeros(4, 5)}, str(path))  # 240 MB
    save_file({"a": torch.zeros(1000)}, str(small))
    code = f"""
import torch
from peft_studio.core.files.safe_io import read_safetensors
from peft_studio.core.errors import PeftStudioError
def kb(key):
    return int(next(l for l in open("/proc/self/status") if l.startswith(key)).split()[1])
read_safetensors({str(small)!r}, "small", PeftStudioError)  # first use of every op and import, before measuring
print("START", kb("VmRSS:"))
tensors, _ = read_safetensors({str(path)!r}, "big", PeftStudioError)
assert tensors["a"].shape == (60_000_000,) and tensors["b"].shape == (4, 5)
print("PEAK", kb("VmHWM:"))
"""
    status, output, growth = rss_peak_mb(code)
    assert status == 0, output
    assert growth < 1.4 * 240, growth  # read twice (bytes, then tensors) it was over 480 MB


# ---- checkpoint folders -----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    return bert_checkpoint(tmp_path_factory.mktemp("bert") / "bert")


def copy_checkpoint(source: Path, target: Path) -> Path:
    import shutil

    shutil.copytree(source, target)
    return target


def test_nan_weights_are_said_by_inspect_and_refused_by_train_and_predict(tmp_path, checkpoint):
    folder = copy_checkpoint(checkpoint, tmp_path / "nan")
    tensors = load_file(str(folder / "model.safetensors"))
    key = next(k for k in tensors if k.endswith("query.weight"))
    tensors[key][0, 0] = float("nan")
    save_file(tensors, str(folder / "model.safetensors"))
    code, out, err, _ = cli("inspect", "--base", folder, "--method", "lora")
    assert code == 0 and "note: 1 tensor(s) hold NaN" in err and key in err
    one_error_line(*cli("train", "--base", folder, "--steps", "1", "--dataset", "sentiment")[::2],
                   "cannot be trained")


@pytest.mark.parametrize("kind,phrase", [
    ("fp8", "has dtype float8_e4m3fn"),
    ("int", "has dtype int64"),
    ("tokenizer fifo", "vocab.txt: is a FIFO"),
    ("tokenizer zero", "vocab.txt: is a character device"),
    ("tokenizer.json zero", "tokenizer.json: is a character device"),
    ("tokenizer config fifo", "tokenizer_config.json: is a FIFO"),
    ("weights fifo", "model.safetensors: is a FIFO"),
    ("pooling mode text", "pooling_mode_mean_tokens should be true or false"),
    ("pooling two modes", "exactly one of mean_tokens or cls_token"),
    ("pooling width", "word_embedding_dimension 99 is not the model's hidden_size 32"),
    ("pooling path", "is not a folder inside the checkpoint"),
    ("modules.json broken", "modules.json"),
])
def test_broken_checkpoint_files_are_refused_by_name_at_once(kind, phrase, tmp_path, checkpoint):
    folder = copy_checkpoint(checkpoint, tmp_path / "ckpt")
    weights = folder / "model.safetensors"
    if kind in ("fp8", "int"):
        tensors = load_file(str(weights))
        key = next(k for k in tensors if k.endswith("query.weight"))
        tensors[key] = tensors[key].to(torch.float8_e4m3fn) if kind == "fp8" else tensors[key].long()
        save_file(tensors, str(weights))
    elif kind.startswith("tokenizer") or kind == "weights fifo":
        name = {"tokenizer config fifo": "tokenizer_config.json", "weights fifo": "model.safetensors",
                "tokenizer.json zero": "tokenizer.json"}.get(kind, "vocab.txt")
        if os.path.lexists(folder / name):
            (folder / name).unlink()
        if kind.endswith("zero"):
            (folder / name).symlink_to("/dev/zero")
        else:
            os.mkfifo(folder / name)
    else:
        (folder / "1_Pooling").mkdir()
        pooling = {"word_embedding_dimension": 32, "pooling_mode_mean_tokens": True, "pooling_mode_cls_token": False}
        if kind == "pooling mode text":
            pooling["pooling_mode_mean_tokens"] = "yes"
        elif kind == "pooling two modes":
            pooling["pooling_mode_cls_token"] = True
        elif kind == "pooling width":
            pooling["word_embedding_dimension"] = 99
        write(folder / "1_Pooling" / "config.json", pooling)
        if kind == "pooling path":
            write(folder / "modules.json", [{"type": "sentence_transformers.models.Pooling", "path": "../../etc"}])
        elif kind == "modules.json broken":
            write(folder / "modules.json", "[{]")
    code, _, err, seconds = cli("inspect", "--base", folder, "--method", "lora")
    one_error_line(code, err, phrase)
    assert seconds < LIMIT_S


# ---- PEFT configs ------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def peft_pair(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("peft")
    checkpoint = bert_checkpoint(root / "bert")
    return checkpoint, peft_lora_folder(checkpoint, root / "lora", layers_to_transform=[0])


@pytest.mark.parametrize("changes,phrase", [
    ({"layers_to_transform": [5]}, "layers_to_transform names layer 5; base 'bert' has layers 0-1"),
    ({"layers_to_transform": [1]}, "holds tensors for layer 0, which its layers_to_transform [1] leaves out"),
    ({"target_modules": ["query"] * 2000}, "at most 1,000 module names"),
    ({"modules_to_save": ["classifier"] * 2000}, "modules_to_save should list at most"),
    ({"lora_alpha": 1e39}, "lora_alpha = 1e+39 does not fit float32"),
    ({"lora_alpha": -4}, "lora_alpha must be a positive number"),
])
def test_peft_config_fields_out_of_range_are_refused_by_name(changes, phrase, tmp_path, peft_pair):
    import shutil

    checkpoint, source = peft_pair
    folder = shutil.copytree(source, tmp_path / "adapter")
    edit_json(folder / "adapter_config.json", **changes)
    code, _, err, seconds = cli("inspect", "--base", checkpoint, "--import-peft", folder, "--dataset", "sentiment")
    one_error_line(code, err, phrase)
    assert seconds < LIMIT_S


def test_duplicated_targets_import_as_peft_reads_them(tmp_path, peft_pair):
    import shutil

    checkpoint, source = peft_pair
    folder = shutil.copytree(source, tmp_path / "adapter")
    code, plain_out, err, _ = cli("inspect", "--base", checkpoint, "--import-peft", folder, "--dataset", "sentiment",
                                  "--json")
    assert code == 0, err
    edit_json(folder / "adapter_config.json", target_modules=["query", "value", "query", "value", "query"])
    code, dup_out, err, _ = cli("inspect", "--base", checkpoint, "--import-peft", folder, "--dataset", "sentiment",
                                "--json")
    assert code == 0, err
    assert json.loads(dup_out)["trainable"] == json.loads(plain_out)["trainable"]  # PEFT makes a set of them


def test_a_hostile_head_is_refused_by_name(tmp_path, peft_pair):
    import shutil

    checkpoint, source = peft_pair
    folder = shutil.copytree(source, tmp_path / "adapter")
    head = {"weight": torch.zeros(2, 32), "bias": torch.zeros(2)}
    for metadata, phrase in [({"labels": json.dumps(["a", "a"])}, "label names repeat"),
                             ({"labels": "[" * 1000 + "]" * 1000}, "nested"),
                             ({"labels": json.dumps(["a", "b"]), "pooling": "max"}, "pooling metadata"),
                             ({"labels": json.dumps(["negative", "positive"]), "pooling": "mean"},
                              "trained on mean pooling, the base pools with cls")]:
        save_file(head, str(folder / "head.safetensors"), metadata=metadata)
        code, _, err, _ = cli("inspect", "--base", checkpoint, "--import-peft", folder, "--dataset", "sentiment")
        one_error_line(code, err, phrase)


# ---- data at the documented limits --------------------------------------------------------------------
def test_a_vocabulary_beyond_the_bound_is_refused_before_any_tokenizer_is_built(tmp_path):
    path = tmp_path / "words.csv"
    with path.open("w") as handle:
        handle.write("text,label\n")
        for row in range(2_800):
            handle.write(" ".join(f"w{row}x{i}" for i in range(500)) + f",{row % 2}\n")  # 80% train: 1.12M words
    code, _, err, seconds = cli("inspect", "--data", path)
    one_error_line(code, err, "more than 1,000,000 distinct words")
    assert seconds < 30  # reading the 14 MB file and counting; a tokenizer of them all took minutes and GBs


# ---- memory: refused under a bound, in a process of its own ------------------------------------------
@pytest.mark.parametrize("argv", [
    ["inspect", "--base", "CONFIG", "--method", "lora"],
    ["predict", "--adapters", "ADAPTER", "--list"],
])
def test_hostile_sizes_are_refused_within_bounded_memory(argv, tmp_path):
    config = write(tmp_path / "config.json", {**LLAMA, "num_hidden_layers": 10**6, "hidden_size": 10**6})
    adapter = rewrite_metadata(set_file(tmp_path), tmp_path / "a.safetensors",
                               {"base_options": json.dumps({"d_model": 4096, "n_layers": 48, "d_ff": 16384})})
    argv = [str(config) if a == "CONFIG" else str(adapter) if a == "ADAPTER" else a for a in argv]
    code = f"""
def kb(key):
    return int(next(l for l in open("/proc/self/status") if l.startswith(key)).split()[1])
from peft_studio.cli import main
print("START", kb("VmRSS:"))
status = main({argv!r})
print("PEAK", kb("VmHWM:"))
raise SystemExit(status)
"""
    status, output, growth = rss_peak_mb(code, rlimit_data_mb=3000)
    assert status == 2 and "error: " in output, output
    assert growth < 300, growth


def test_the_cli_refuses_hostile_input_from_a_fresh_process_too(tmp_path):
    """The in-process runs above share one interpreter; one real subprocess proves the entry point."""
    config = write(tmp_path / "config.json", {**LLAMA, "num_hidden_layers": 10**6})
    result = subprocess.run([sys.executable, "-m", "peft_studio", "inspect", "--base", str(config)],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and result.stderr.count("\n") == 1 and result.stderr.startswith("error: ")
