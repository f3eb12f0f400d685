"""Hostile inputs, one test per class: each is refused with a PeftStudioError naming the file, quickly,
without blocking and before memory grows (issue 10)."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import stat
import struct
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from peft_studio.core.data import TextDataset, load_builtin, load_dataset_file
from peft_studio.core.data.files import MAX_FIELD_CHARS
from peft_studio.core.errors import AdapterFileError, ConfigError, DatasetError, PeftStudioError, TrainingDiverged
from peft_studio.core.files import safe_io
from peft_studio.core.files.adapter_file import check_adapter_writable, load_adapter, save_adapter
from peft_studio.core.files.setup_file import load_setup, save_setup
from peft_studio.core.interop.hf_peft import read_peft
from peft_studio.core.memory.budget import check_memory
from peft_studio.core.methods.module_patterns import compile_pattern
from peft_studio.core.model.experiment import Experiment, Setup
from peft_studio.core.runs.train import TrainSettings, train

LORA_KEY = "base_model.model.encoder.layer.0.attention.self.query"
IA3_FF_KEY = "base_model.model.encoder.layer.0.output.dense.ia3_l"


@contextlib.contextmanager
def within(seconds: int):
    """Fail (instead of hanging the suite) when the block blocks, e.g. on a FIFO."""
    def expired(signum, frame):
        raise TimeoutError(f"blocked for more than {seconds} s")

    previous = signal.signal(signal.SIGALRM, expired)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def setup_doc(**changes) -> dict:
    doc = {"format": "peft-studio-setup", "version": 1, "base": "tiny", "base_options": {}, "method": "lora",
           "options": {"r": 4}, "seed": 0, "dataset": {"builtin": "intents"},
           "training": {"steps": 10, "lr": 0.01, "batch_size": 0, "optimizer": "adam", "weight_decay": 0.0,
                        "seed": 0, "eval_every": 10}}
    doc.update(changes)
    return doc


def write_setup(path: Path, doc: dict | str) -> Path:
    path.write_text(doc if isinstance(doc, str) else json.dumps(doc))
    return path


def peft_folder(path: Path, config: dict | None = None, tensors: dict | None = None) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    config = config if config is not None else {"peft_type": "LORA", "r": 2, "lora_alpha": 4, "lora_dropout": 0.0,
                                                  "target_modules": ["query"], "bias": "none"}
    (path / "adapter_config.json").write_text(json.dumps(config))
    tensors = tensors if tensors is not None else {f"{LORA_KEY}.lora_A.weight": torch.zeros(2, 8),
                                                  f"{LORA_KEY}.lora_B.weight": torch.zeros(8, 2)}
    save_file(tensors, str(path / "adapter_model.safetensors"))
    return path


@pytest.fixture(scope="module")
def experiment():
    return Experiment(Setup("tiny", "lora", {"r": 2}), load_builtin("intents"))


# ---- not a regular file ---------------------------------------------------------------------------
def _specials(folder: Path) -> dict[str, Path]:
    fifo = folder / "fifo"
    os.mkfifo(fifo)
    links = {}
    for name, target in (("fifo-link", fifo), ("zero-link", Path("/dev/zero")), ("dir", folder / "sub")):
        if name == "dir":
            target.mkdir()
            links[name] = target
        else:
            links[name] = folder / name
            links[name].symlink_to(target)
    return {"fifo": fifo, "dev-zero": Path("/dev/zero"), **links}


def test_fifos_devices_folders_and_links_to_them_are_refused_everywhere_without_blocking(tmp_path, experiment):
    specials = _specials(tmp_path)
    for kind, path in specials.items():
        with within(5):
            with pytest.raises(ConfigError, match="folder|FIFO|device|regular"):
                load_setup(path)
            with pytest.raises(AdapterFileError, match="folder|FIFO|device|regular"):
                load_adapter(experiment, path)
            data = tmp_path / f"{kind}.csv"  # the dataset loader wants a known suffix
            data.symlink_to(path)
            with pytest.raises(DatasetError, match="folder|FIFO|device|regular"):
                load_dataset_file(data, "text", "label")
        for member in ("adapter_config.json", "adapter_model.safetensors"):
            folder = peft_folder(tmp_path / f"peft-{kind}-{member}")
            (folder / member).unlink()
            (folder / member).symlink_to(path)
            with within(5), pytest.raises(AdapterFileError, match="folder|FIFO|device|regular"):
                read_peft(folder)


def test_a_fifo_swapped_in_after_the_check_cannot_block(tmp_path, monkeypatch):
    fifo = tmp_path / "late.json"
    os.mkfifo(fifo)
    real_stat = os.stat

    def looks_regular(path, *args, **kwargs):  # the race: stat said "file", then the path became a FIFO
        result = real_stat(path, *args, **kwargs)
        if str(path) == str(fifo):
            return os.stat_result((stat.S_IFREG | 0o644, *result[1:6], 10, *result[7:]))
        return result

    monkeypatch.setattr(os, "stat", looks_regular)
    with within(5), pytest.raises(ConfigError, match="FIFO"):
        safe_io.read_json(fifo, "late.json", ConfigError)


# ---- unbounded reads and untrusted JSON -------------------------------------------------------------
DEEP = "[" * 100_000 + "]" * 100_000


@pytest.mark.parametrize("value, phrase", [
    (DEEP, "nested 100001 levels deep; the limit is 64"),
    ("9" * 10_000, "10000 digits"),
    ("NaN", "NaN"),
    ("-Infinity", "Infinity"),
    ("1e999", "out of range"),
])
def test_setup_files_with_hostile_json_are_refused(tmp_path, value, phrase):
    path = write_setup(tmp_path / "s.json", json.dumps(setup_doc()).replace('"seed": 0,', f'"seed": {value},', 1))
    with within(5), pytest.raises(ConfigError, match=phrase) as error:
        load_setup(path)
    assert str(error.value).startswith("s.json: ")


def test_duplicate_keys_and_strings_for_booleans_are_refused(tmp_path):
    text = json.dumps(setup_doc()).replace('"seed": 0,', '"seed": 0, "seed": 1,', 1)
    with pytest.raises(ConfigError, match="'seed' appears twice"):
        load_setup(write_setup(tmp_path / "dup.json", text))
    with pytest.raises(ConfigError, match="freeze_head should be true or false"):
        load_setup(write_setup(tmp_path / "b.json", setup_doc(options={"freeze_head": "false"})))
    with pytest.raises(ConfigError, match="\"lr\" should be a number"):
        load_setup(write_setup(tmp_path / "t.json", setup_doc(training={"lr": True})))
    with pytest.raises(ConfigError, match="r should be a whole number"):
        load_setup(write_setup(tmp_path / "f.json", setup_doc(options={"r": 2.5})))
    with pytest.raises(ConfigError, match="version"):
        load_setup(write_setup(tmp_path / "v.json", setup_doc(version=True)))


@pytest.mark.parametrize("changes, phrase", [
    ({"base_options": {"n_heads": 0}}, r"n_heads must be in \[1, 256\]"),
    ({"base_options": {"n_heads": 3}}, "n_heads 3 must divide d_model 32"),
    ({"base_options": {"d_model": 10**9}}, "d_model must be in"),
    ({"base_options": {"max_positions": 16}}, "64 tokens do not fit base 'tiny''s 16 positions"),
    ({"base_options": {"hidden_dim": 8}}, "unknown option 'hidden_dim'"),
    ({"base": "minilm", "base_options": {"d_model": 8}}, "unknown option .d_model. for base .minilm.; known: pooling"),
    ({"training": {"weight_decay": -1}}, "weight decay must be"),
    ({"training": {"steps": 10**12}}, "steps must be in"),
    ({"seed": -1}, r"seed must be in \[0, "),
    ({"method": "prompt-tuning", "options": {"tokens": 64}, "base_options": {"max_positions": 100}},
     "plus 64 prompt tokens"),
    ({"dataset": {"builtin": "intents", "max_len": 10}}, "takes no other fields"),
    ({"base": "no-such-base"}, "unknown base"),
])
def test_setups_that_build_but_cannot_train_are_refused_when_opened(tmp_path, changes, phrase):
    with pytest.raises(ConfigError, match=phrase):
        load_setup(write_setup(tmp_path / "s.json", setup_doc(**changes)))


def test_a_large_json_dataset_stops_at_the_row_limit_without_parsing_the_rest(tmp_path):
    rows = [{"text": f"row {i} words", "label": "ab"[i % 2]} for i in range(200)]
    path = tmp_path / "d.json"
    path.write_text(json.dumps(rows)[:-1] + ", " + "[" * 100_000)  # broken after the limit: never reached
    with pytest.raises(DatasetError, match="more than 100 rows"):
        load_dataset_file(path, "text", "label", max_rows=100)
    path.write_text(json.dumps(rows[:50])[:-1] + ", " + "[" * 100_000)
    with pytest.raises(DatasetError, match="nested too deeply|malformed"):
        load_dataset_file(path, "text", "label")


def test_csv_and_jsonl_agree_on_the_largest_field(tmp_path):
    for size, ok in ((MAX_FIELD_CHARS, True), (MAX_FIELD_CHARS + 1, False)):
        text = "w" * size
        csv_path, jsonl_path = tmp_path / f"{size}.csv", tmp_path / f"{size}.jsonl"
        csv_path.write_text(f"text,label\n{text},a\nshort,b\n")
        jsonl_path.write_text(json.dumps({"text": text, "label": "a"}) + "\n" + '{"text": "short", "label": "b"}\n')
        for path in (csv_path, jsonl_path):
            if ok:
                assert load_dataset_file(path, "text", "label").num_labels == 2
            else:
                with pytest.raises(DatasetError, match=f"longer than {MAX_FIELD_CHARS} characters"):
                    load_dataset_file(path, "text", "label")


def test_hundreds_of_thousands_of_columns_are_refused_quickly(tmp_path):
    wide = tmp_path / "wide.csv"
    wide.write_text(",".join(["text", "label", *(f"c{i}" for i in range(300_000))]) + "\nhi,a\n")
    started = time.perf_counter()
    with pytest.raises(DatasetError, match="300002 columns; the limit is 10000"):
        load_dataset_file(wide, "text", "label")
    many = tmp_path / "many.csv"  # below the limit: loads, duplicate check linear
    header = ["text", "label", *(f"c{i}" for i in range(9_000))]
    many.write_text(",".join(header) + "\n" + "".join(f"t{i},{'ab'[i % 2]}" + "," * 9_000 + "\n" for i in range(40)))
    assert load_dataset_file(many, "text", "label").num_labels == 2
    assert time.perf_counter() - started < 10


def test_thousands_of_labels_load_and_too_many_are_refused(tmp_path):
    path = tmp_path / "labels.jsonl"
    path.write_text("".join(json.dumps({"text": f"text {i}", "label": f"L{i % 3000}"}) + "\n" for i in range(6000)))
    assert load_dataset_file(path, "text", "label").num_labels == 3000
    path.write_text("".join(json.dumps({"text": f"text {i}", "label": f"L{i}"}) + "\n" for i in range(10_001)))
    with pytest.raises(DatasetError, match="10001 distinct labels; the limit is 10000"):
        load_dataset_file(path, "text", "label")


# ---- memory is estimated before it is allocated ----------------------------------------------------
def _wide_dataset(rows: int, words: int) -> TextDataset:
    texts = tuple(" ".join(f"w{i}_{j}" for j in range(words)) for i in range(rows))
    return TextDataset("wide", ("a", "b"), texts, tuple(i % 2 for i in range(rows)), (), (), "test")


def test_memory_estimates_refuse_before_allocating_and_name_the_limit():
    dataset = _wide_dataset(2_000, 60)  # 120k distinct words, 2000 rows of 60 tokens at full batch
    setup = Setup("tiny", "full", {}, base_options={"d_model": 512, "n_heads": 8})
    with pytest.raises(ConfigError, match=r"needs about .* GB of memory .*the limit is 2.0 GB: choose a batch size"):
        check_memory(setup, dataset, 0, limit=2 * 2**30)
    small = check_memory(setup, dataset, 8, limit=2 * 2**30)
    assert small.total < 2 * 2**30
    with pytest.raises(ConfigError, match="use a smaller base"):
        check_memory(setup, dataset, None, limit=2**20)


def test_refusals_happen_before_memory_grows(tmp_path, monkeypatch, experiment):
    before = rss_mb()
    zero = tmp_path / "zero.csv"
    zero.symlink_to("/dev/zero")
    with pytest.raises(DatasetError):
        load_dataset_file(zero, "text", "label")
    with pytest.raises(ConfigError):
        load_setup("/dev/zero")
    claims = tmp_path / "claims.safetensors"  # a header that claims 2**60 bytes
    claims.write_bytes(struct.pack("<Q", 2**60) + b"{}")
    with pytest.raises(AdapterFileError, match="not a safetensors"):
        load_adapter(experiment, claims)
    huge_shape = tmp_path / "shape.safetensors"  # a tensor that claims 2**38 floats
    header = json.dumps({"x": {"dtype": "F32", "shape": [2**19, 2**19], "data_offsets": [0, 4]}}).encode()
    huge_shape.write_bytes(struct.pack("<Q", len(header)) + header + b"\0" * 4)
    with pytest.raises(AdapterFileError, match="does not match"):
        load_adapter(experiment, huge_shape)
    monkeypatch.setenv("PEFT_STUDIO_MEMORY_LIMIT_MB", "512")
    with pytest.raises(ConfigError, match="the limit is 512 MB"):  # would be tens of GB at full batch
        Experiment(Setup("tiny", "full", {}, base_options={"d_model": 4096, "n_heads": 8, "n_layers": 8}),
                   _wide_dataset(300, 60))
    assert rss_mb() - before < 200


# ---- tensor files -----------------------------------------------------------------------------------
@pytest.mark.parametrize("tensor, phrase", [
    (torch.zeros(2, 8, dtype=torch.int32), "holds integers where a lora weight must hold numbers"),
    (torch.zeros(2, 8, dtype=torch.bool), "dtype BOOL"),
    (torch.zeros(2, 8, dtype=torch.float64), "dtype F64"),
    (torch.zeros(2, 8, dtype=torch.complex64), "dtype C64"),
    (torch.zeros(2, 8, dtype=torch.float8_e4m3fn), "dtype F8_E4M3"),
    (torch.full((2, 8), float("nan")), "NaN or infinite"),
    (torch.full((2, 8), float("inf")), "NaN or infinite"),
    (torch.zeros(()), "shape ()"),
    (torch.zeros(8), r"shape \(8,\)"),
])
def test_peft_tensors_of_other_dtypes_shapes_or_values_are_refused(tmp_path, tensor, phrase):
    folder = peft_folder(tmp_path / "a", tensors={f"{LORA_KEY}.lora_A.weight": tensor,
                                                  f"{LORA_KEY}.lora_B.weight": torch.zeros(8, 2)})
    with pytest.raises(AdapterFileError, match=phrase):
        read_peft(folder)


def test_adapters_for_other_labels_or_shapes_are_refused_and_change_nothing(tmp_path):
    intents = load_builtin("intents")
    source = Experiment(Setup("tiny", "lora", {"r": 2}), intents)
    path = save_adapter(source, tmp_path / "a")
    relabelled = TextDataset("other", tuple(f"x{name}" for name in intents.label_names), intents.train_texts,
                             intents.train_labels, intents.val_texts, intents.val_labels, "test")
    target = Experiment(Setup("tiny", "lora", {"r": 2}), relabelled)
    before = [p.detach().clone() for p in target.model.parameters()]
    with pytest.raises(AdapterFileError, match=r"trained for the labels \['.*'\].*the dataset has \['x"):
        load_adapter(target, path)
    tensors, metadata = safe_io.read_safetensors(path, "a", AdapterFileError)
    tensors["head.weight"] = tensors["head.weight"][:, :3].contiguous()  # a wrong head shape, last in order
    save_file(tensors, str(path), metadata=metadata)
    same_labels = Experiment(Setup("tiny", "lora", {"r": 2}), intents)
    before = [p.detach().clone() for p in same_labels.model.parameters()]
    with pytest.raises(AdapterFileError, match="head.weight has shape"):
        load_adapter(same_labels, path)
    assert all(torch.equal(a, b) for a, b in zip(before, same_labels.model.parameters(), strict=True))


# ---- adapter_config.json --------------------------------------------------------------------------
@pytest.mark.parametrize("changes, phrase", [
    ({"use_rslora": "false"}, "use_rslora should be true or false"),
    ({"use_dora": "false"}, "use_dora should be true or false"),
    ({"r": "8"}, "r should be a whole number"),
    ({"r": True}, "r should be a whole number"),
    ({"r": 10**6}, r"r must be in \[1, 4096\]"),
    ({"lora_alpha": -1}, "lora_alpha must be a positive number"),
    ({"lora_alpha": "16"}, "lora_alpha should be a number"),
    ({"lora_dropout": 1.5}, r"lora_dropout must be in \[0, 1\)"),
    ({"target_modules": [1, 2]}, "target_modules should be a list of at most"),
    ({"target_modules": "(a+)+$"}, "exponential time"),
    ({"target_modules": "["}, "does not compile"),
    ({"target_modules": "x" * 1000}, "1000 characters long"),
    ({"feedforward_modules": "(.*)*"}, "exponential time"),
    ({"feedforward_modules": ".*" * 8}, "open-ended repeats"),
    ({"layers_to_transform": ["0"]}, "layers_to_transform should list layer indices"),
])
def test_every_adapter_config_field_is_checked(tmp_path, changes, phrase):
    config = {"peft_type": "LORA", "r": 2, "lora_alpha": 4, "lora_dropout": 0.0, "target_modules": ["query"],
              "bias": "none", **changes}
    with within(5), pytest.raises(AdapterFileError, match=phrase):
        read_peft(peft_folder(tmp_path / "a", config))


def test_a_regex_bomb_is_refused_before_it_is_matched(tmp_path):
    started = time.perf_counter()
    for pattern in ("(a+)+b", "(a|aa)*c", "(x*)*y", "(?:(?:a*)*)*", ".*.*.*.*.*.*.*z", r"(\w+\s?)+$", "(a)\\1"):
        with pytest.raises(AdapterFileError):
            compile_pattern(pattern, "adapter_config.json: feedforward_modules", AdapterFileError)
    config = {"peft_type": "IA3", "target_modules": ["output.dense"], "feedforward_modules": "(e+)+x"}
    with pytest.raises(AdapterFileError, match="exponential"):
        read_peft(peft_folder(tmp_path / "a", config, {IA3_FF_KEY: torch.ones(1, 16)}))
    config["feedforward_modules"] = r".*encoder\.layer\.\d+\.output\.dense"  # an ordinary regex works
    assert read_peft(peft_folder(tmp_path / "b", config, {IA3_FF_KEY: torch.ones(1, 16)})).tensors
    assert time.perf_counter() - started < 5


# ---- output that cannot be written, umask --------------------------------------------------------------
def test_files_are_written_atomically_with_the_users_umask(tmp_path, experiment):
    old = os.umask(0o027)
    try:
        path = save_adapter(experiment, tmp_path / "adapter")
        setup = save_setup(tmp_path / "setup.json", Setup("tiny", "lora", {"r": 2}), load_builtin("intents"),
                           TrainSettings())
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o640 and stat.S_IMODE(setup.stat().st_mode) == 0o640
    assert sorted(p.name for p in tmp_path.iterdir()) == ["adapter.safetensors", "setup.json"]


def test_unwritable_targets_are_refused_before_a_run(tmp_path):
    (tmp_path / "folder.safetensors").mkdir()
    (tmp_path / "file").write_text("x")
    os.mkfifo(tmp_path / "pipe.safetensors")
    for target, phrase in (("folder.safetensors", "is a folder"), ("file/inside", "cannot write into .*file"),
                           ("pipe.safetensors", "FIFO")):
        with pytest.raises(AdapterFileError, match=phrase):
            check_adapter_writable(tmp_path / target)
    assert check_adapter_writable(tmp_path / "new" / "deeper" / "a").name == "a.safetensors"
    with pytest.raises(AdapterFileError, match="cannot write into /proc"):  # root passes os.access there
        check_adapter_writable("/proc/no-such-folder/a")
    with pytest.raises(PeftStudioError, match="could not write|cannot write"):
        safe_io.write_text_atomically(tmp_path / "file" / "inside.json", "{}")


# ---- divergence -------------------------------------------------------------------------------------
def test_a_loss_that_explodes_without_reaching_inf_is_divergence():
    experiment = Experiment(Setup("tiny", "lora", {"r": 2}), load_builtin("intents"))
    with pytest.raises(TrainingDiverged, match="grew from .* training diverged"):
        for _ in train(experiment, TrainSettings(steps=20, lr=1e6, track_grads=False)):
            pass
    assert all(bool(torch.isfinite(p).all()) for p in experiment.model.trainable_parameters())


def test_a_preview_reads_only_the_start_of_a_large_file(tmp_path):
    from peft_studio.core.data import preview_file
    from peft_studio.core.data.files import PREVIEW_BYTES

    rows = [{"text": f"héllo {i} " * 10, "label": "ab"[i % 2]} for i in range(PREVIEW_BYTES // 60)]
    path = tmp_path / "big.json"
    path.write_text(json.dumps(rows, ensure_ascii=False)[:-1] + ", {broken")  # the end is never read
    columns, shown = preview_file(path, 20)
    assert columns == ["text", "label"] and len(shown) == 20
    with pytest.raises(DatasetError, match="malformed JSON"):
        load_dataset_file(path, "text", "label")


def test_command_line_numbers_and_seeds_are_checked_when_parsed():
    from peft_studio.core.files.limits import check_seed, parse_number

    for text in ("nan", "inf", "-Infinity", "ten"):
        with pytest.raises(ConfigError, match="--dropout"):
            parse_number(text, "--dropout")
    assert parse_number("0.5", "--dropout") == 0.5
    for seed in (-1, 2**64, True, "3"):
        with pytest.raises(ConfigError, match="--seed"):
            check_seed(seed, "--seed")
    assert check_seed(2**63 - 1) == 2**63 - 1


def test_null_options_mean_the_default(tmp_path):
    doc = setup_doc(method="prompt-tuning", options={"tokens": None, "freeze_head": None})
    setup, dataset, _ = load_setup(write_setup(tmp_path / "s.json", doc))
    assert setup.method == "prompt-tuning" and Experiment(setup, dataset).config.tokens == 8
