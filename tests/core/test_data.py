"""Tests for peft_studio.core.data: built-ins, tokenizer, file loading and its errors."""

from __future__ import annotations

import csv
import io
import json
import os
from collections import Counter
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from peft_studio.core.data import (
    SEED_SAMPLES,
    TextDataset,
    WordTokenizer,
    builtin_names,
    load_builtin,
    load_dataset_file,
    preview_file,
    sniff_columns,
)
from peft_studio.core.data import files as files_module
from peft_studio.core.errors import DatasetError, PeftStudioError

SEED_SAMPLES_VERBATIM = [
    ("refund my order", 0),
    ("need a refund", 0),
    ("cancel and refund", 0),
    ("login failed again", 1),
    ("cannot login account", 1),
    ("password login problem", 1),
]

MIN_SIZES = {"intents": 240, "word-order": 200, "sentiment": 200}


def write(tmp_path: Path, name: str, content: str | bytes) -> Path:
    path = tmp_path / name
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_bytes(content.encode("utf-8"))
    return path


def csv_text(rows: list[tuple[str, str]], header: tuple[str, str] = ("text", "label")) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return buffer.getvalue()


ROWS = [(f"sample text number {i}", "pos" if i % 2 else "neg") for i in range(20)]


# ---------------------------------------------------------------- built-ins


def test_seed_intents_vocab_is_the_seeds():
    samples = SEED_SAMPLES_VERBATIM
    vocab = {"<pad>": 0}
    for text, _ in samples:
        for token in text.split():
            if token not in vocab:
                vocab[token] = len(vocab)
    dataset = load_builtin("seed-intents")
    tokenizer = dataset.make_tokenizer()
    assert tokenizer.vocab == vocab
    assert list(tokenizer.vocab) == list(vocab)
    assert tokenizer.vocab_size == 15
    assert tokenizer.unk_id is None
    assert WordTokenizer.from_texts(dataset.train_texts, unknown_token=False, lowercase=False).vocab == vocab


def test_seed_intents_matches_seed_samples():
    dataset = load_builtin("seed-intents")
    assert list(zip(dataset.train_texts, dataset.train_labels, strict=True)) == SEED_SAMPLES_VERBATIM
    assert list(SEED_SAMPLES) == SEED_SAMPLES_VERBATIM
    assert dataset.label_names == ("refund", "login")
    assert dataset.val_texts == () and dataset.val_labels == ()
    assert dataset.unknown_token is False
    assert dataset.source == "built-in"
    assert dataset.summary() == "seed-intents: 2 classes, 6 train / 0 validation"


def test_seed_intents_batch_matches_seed_encoding():
    tokenizer = load_builtin("seed-intents").make_tokenizer()
    ids, mask = tokenizer.batch([text for text, _ in SEED_SAMPLES_VERBATIM])
    vocab = tokenizer.vocab
    expected = [[vocab[token] for token in text.split()] for text, _ in SEED_SAMPLES_VERBATIM]
    assert ids.tolist() == expected
    assert bool(mask.all())


def test_builtin_names():
    names = builtin_names()
    assert names[:3] == ["seed-intents", "intents", "word-order"]
    assert "sentiment" in names


@pytest.mark.parametrize("name", ["intents", "word-order", "sentiment"])
def test_builtin_file_datasets(name: str):
    dataset = load_builtin(name)
    assert dataset.name == name and dataset.source == "built-in"
    assert dataset.description and dataset.description.endswith(".")
    total = len(dataset.train_texts) + len(dataset.val_texts)
    assert total >= MIN_SIZES[name]
    assert 0.15 <= len(dataset.val_texts) / total <= 0.25
    assert set(dataset.train_labels) == set(range(dataset.num_labels))
    assert set(dataset.val_labels) == set(range(dataset.num_labels))
    all_texts = dataset.train_texts + dataset.val_texts
    assert len(set(all_texts)) == len(all_texts), "duplicate texts"
    assert not set(dataset.train_texts) & set(dataset.val_texts)
    for text in all_texts:
        assert text == text.lower() and 3 <= len(text.split()) <= 10, text


def test_intents_has_at_least_four_classes_and_overlapping_words():
    dataset = load_builtin("intents")
    assert dataset.num_labels >= 4
    assert dataset.summary() == "intents: 5 classes, 255 train / 65 validation"
    words_by_class: dict[int, set[str]] = {}
    for text, label in zip(dataset.train_texts, dataset.train_labels, strict=True):
        words_by_class.setdefault(label, set()).update(text.split())
    for word in ("order", "card", "account"):  # content words shared by several intents
        assert sum(word in words for words in words_by_class.values()) >= 2, word


def test_word_order_bag_of_words_cannot_separate():
    dataset = load_builtin("word-order")
    assert dataset.num_labels == 2
    for texts, labels in ((dataset.train_texts, dataset.train_labels), (dataset.val_texts, dataset.val_labels)):
        bags: dict[tuple[str, ...], list[int]] = {}
        for text, label in zip(texts, labels, strict=True):
            bags.setdefault(tuple(sorted(text.split())), []).append(label)
        # Every multiset of words occurs exactly once per class, within the same split.
        for bag, bag_labels in bags.items():
            assert sorted(bag_labels) == [0, 1], bag
    assert Counter(dataset.train_labels)[0] == Counter(dataset.train_labels)[1]


def test_builtin_tokenizers_have_unk_and_cover_validation_mostly():
    dataset = load_builtin("intents")
    tokenizer = dataset.make_tokenizer()
    assert tokenizer.unk_id == 1
    val_tokens = [t for text in dataset.val_texts for t in tokenizer.encode(text)]
    assert val_tokens.count(1) / len(val_tokens) < 0.05


def test_unknown_builtin_lists_known_names():
    with pytest.raises(DatasetError, match="known: seed-intents, intents, word-order"):
        load_builtin("nope")


# ---------------------------------------------------------------- tokenizer


def test_from_texts_first_occurrence_not_sorted():
    tokenizer = WordTokenizer.from_texts(["zebra apple", "Mango zebra"])
    assert tokenizer.vocab == {"<pad>": 0, "<unk>": 1, "zebra": 2, "apple": 3, "mango": 4}
    assert tokenizer.unk_id == 1 and tokenizer.pad_id == 0 and tokenizer.vocab_size == 5


def test_tokenize_lowercase_option():
    assert WordTokenizer.from_texts([]).tokenize("Hello  World\tx") == ["hello", "world", "x"]
    cased = WordTokenizer.from_texts(["Hello"], lowercase=False)
    assert cased.tokenize("Hello hello") == ["Hello", "hello"]
    assert cased.encode("Hello hello") == [2, 1]


def test_encode_unknown_and_dropped():
    with_unk = WordTokenizer.from_texts(["a b c"])
    assert with_unk.encode("a x c") == [2, 1, 4]
    without = WordTokenizer.from_texts(["a b c"], unknown_token=False)
    assert without.vocab == {"<pad>": 0, "a": 1, "b": 2, "c": 3}
    assert without.encode("a x c") == [1, 3]
    assert without.encode("x y") == []


def test_encode_truncates_to_max_len():
    tokenizer = WordTokenizer.from_texts(["a b c d e"], max_len=3)
    assert tokenizer.encode("a b c d e") == [2, 3, 4]
    dropping = WordTokenizer.from_texts(["a b c d e"], unknown_token=False, max_len=2)
    assert dropping.encode("x a y b c") == [1, 2]


def test_batch_shapes_padding_and_mask():
    tokenizer = WordTokenizer.from_texts(["a b c"])
    ids, mask = tokenizer.batch(["a", "a b c", "b q"])
    assert ids.dtype == torch.long and mask.dtype == torch.bool
    assert ids.tolist() == [[2, 0, 0], [2, 3, 4], [3, 1, 0]]
    assert mask.tolist() == [[True, False, False], [True, True, True], [True, True, False]]


def test_batch_empty_rows_have_length_one():
    tokenizer = WordTokenizer.from_texts(["a"], unknown_token=False)
    ids, mask = tokenizer.batch(["", "zzz"])
    assert ids.shape == (2, 1) and not bool(mask.any())
    ids, mask = tokenizer.batch([])
    assert ids.shape == (0, 1)


def test_to_dict_round_trip_through_json():
    for unk in (True, False):
        tokenizer = WordTokenizer.from_texts(["Some words here", "more words"], unknown_token=unk,
                                             lowercase=False, max_len=7)
        restored = WordTokenizer.from_dict(json.loads(json.dumps(tokenizer.to_dict())))
        assert restored == tokenizer
        assert restored.vocab == tokenizer.vocab and list(restored.vocab) == list(tokenizer.vocab)
        assert (restored.unk_id, restored.lowercase, restored.max_len) == (tokenizer.unk_id, False, 7)
        assert restored.encode("Some unknown words") == tokenizer.encode("Some unknown words")


@pytest.mark.parametrize("bad", [
    {},
    {"vocab": {"a": 0}},
    {"vocab": {"<pad>": 0, "a": 2}},
    {"vocab": {"<pad>": 0, "a": 1, "<unk>": 2}},
    {"vocab": {"<pad>": 0}, "max_len": 0},
])
def test_from_dict_rejects_malformed(bad: dict):
    with pytest.raises(DatasetError):
        WordTokenizer.from_dict(bad)


@given(texts=st.lists(st.text(alphabet="abcXYZ \t", max_size=20), max_size=8),
       probe=st.lists(st.text(alphabet="abcdXYZ \n", max_size=30), min_size=1, max_size=5),
       max_len=st.integers(1, 6), unk=st.booleans())
def test_batch_invariants(texts: list[str], probe: list[str], max_len: int, unk: bool):
    tokenizer = WordTokenizer.from_texts(texts, unknown_token=unk, max_len=max_len)
    assert sorted(tokenizer.vocab.values()) == list(range(tokenizer.vocab_size))
    ids, mask = tokenizer.batch(probe)
    encoded = [tokenizer.encode(text) for text in probe]
    assert ids.shape == (len(probe), max(1, *(len(e) for e in encoded)))
    assert ids.shape[1] <= max_len
    assert torch.equal(mask, ids != 0)
    for row, expected in zip(ids.tolist(), encoded, strict=True):
        assert row[: len(expected)] == expected
        assert all(value == 0 for value in row[len(expected):])


# ---------------------------------------------------------------- files: happy paths


def test_load_csv_string_labels_first_occurrence(tmp_path: Path):
    path = write(tmp_path, "data.csv", csv_text([("b text", "zeta"), ("a text", "alpha"), ("c text", "zeta")]))
    dataset = load_dataset_file(path, "text", "label", val_fraction=0.0)
    assert isinstance(dataset, TextDataset)
    assert dataset.label_names == ("zeta", "alpha")
    assert dataset.train_texts == ("b text", "a text", "c text")
    assert dataset.train_labels == (0, 1, 0)
    assert dataset.val_texts == ()
    assert dataset.name == "data.csv" and dataset.source == str(path)
    assert dataset.unknown_token is True


def test_load_csv_integer_labels_sorted_numerically(tmp_path: Path):
    rows = [("x one", "10"), ("x two", "2"), ("x three", "0"), ("x four", "2")]
    dataset = load_dataset_file(write(tmp_path, "d.csv", csv_text(rows)), "text", "label", val_fraction=0)
    assert dataset.label_names == ("0", "2", "10")
    assert dataset.train_labels == (2, 1, 0, 1)


def test_load_tsv_bom_crlf_and_quotes(tmp_path: Path):
    csv_content = '\ufefftext,label\r\n"hello, world",a\r\n"she said ""hi""",b\r\n"two\r\nlines",a\r\n'
    dataset = load_dataset_file(write(tmp_path, "q.csv", csv_content), "text", "label", val_fraction=0)
    assert dataset.train_texts == ("hello, world", 'she said "hi"', "two\r\nlines")
    tsv_content = "id\tsentence\tlabel\r\n1\tgood stuff, really\tpos\r\n2\tbad stuff\tneg\r\n"
    dataset = load_dataset_file(write(tmp_path, "t.tsv", tsv_content), "sentence", "label", val_fraction=0)
    assert dataset.train_texts == ("good stuff, really", "bad stuff")
    assert dataset.label_names == ("pos", "neg")


def test_load_jsonl_and_json(tmp_path: Path):
    records = [{"text": f"line {i}", "label": i % 3, "extra": [1]} for i in range(9)]
    jsonl = "\n".join(json.dumps(r) for r in records) + "\n\n"
    from_jsonl = load_dataset_file(write(tmp_path, "d.jsonl", jsonl), "text", "label", val_fraction=0)
    from_json = load_dataset_file(write(tmp_path, "d.json", json.dumps(records)), "text", "label", val_fraction=0)
    for dataset in (from_jsonl, from_json):
        assert dataset.label_names == ("0", "1", "2")
        assert dataset.train_texts == tuple(r["text"] for r in records)
        assert dataset.train_labels == tuple(r["label"] for r in records)


def test_json_labels_strings_bools_and_whole_floats(tmp_path: Path):
    records = [{"t": "a a", "y": True}, {"t": "b b", "y": False}, {"t": "c c", "y": 1.0}, {"t": 7, "y": "x"}]
    dataset = load_dataset_file(write(tmp_path, "m.json", json.dumps(records)), "t", "y", val_fraction=0)
    assert dataset.label_names == ("true", "false", "1", "x")
    assert dataset.train_texts == ("a a", "b b", "c c", "7")


def test_random_split_stratified_and_reproducible(tmp_path: Path):
    rows = [(f"text {i}", "a" if i < 30 else "b") for i in range(40)] + [("lonely one", "c")]
    path = write(tmp_path, "s.csv", csv_text(rows))
    first = load_dataset_file(path, "text", "label", seed=1)
    again = load_dataset_file(path, "text", "label", seed=1)
    other = load_dataset_file(path, "text", "label", seed=2)
    assert first == again
    assert set(first.val_texts) != set(other.val_texts)
    assert Counter(first.val_labels) == {0: 6, 1: 2}
    assert "lonely one" in first.train_texts
    assert sorted(first.train_texts + first.val_texts) == sorted(text for text, _ in rows)
    assert first.summary() == "s.csv: 3 classes, 33 train / 8 validation"


def test_split_column(tmp_path: Path):
    rows = [("a1 x", "a", "train"), ("b1 x", "b", "TRAIN"), ("a2 x", "a", "val"), ("b2 x", "b", "dev"),
            ("a3 x", "a", "Validation"), ("b3 x", "b", "test"), ("a4 x", "a", "valid")]
    buffer = io.StringIO()
    csv.writer(buffer).writerows([("text", "label", "split"), *rows])
    dataset = load_dataset_file(write(tmp_path, "sp.csv", buffer.getvalue()), "text", "label", split_column="split")
    assert dataset.train_texts == ("a1 x", "b1 x")
    assert dataset.val_texts == ("a2 x", "b2 x", "a3 x", "b3 x", "a4 x")


def test_max_len_is_kept_for_the_tokenizer(tmp_path: Path):
    path = write(tmp_path, "m.csv", csv_text(ROWS))
    dataset = load_dataset_file(path, "text", "label", max_len=2)
    assert dataset.make_tokenizer().max_len == 2
    assert dataset.make_tokenizer(max_len=5).max_len == 5


def test_preview_and_sniff(tmp_path: Path):
    path = write(tmp_path, "p.csv", csv_text(ROWS))
    columns, rows = preview_file(path, n=3)
    assert columns == ["text", "label"]
    assert rows == [list(r) for r in ROWS[:3]]
    assert sniff_columns(path) == ["text", "label"]
    records = [{"a": 1, "b": {"x": 1}}, {"c": None, "a": True}]
    json_path = write(tmp_path, "p.json", json.dumps(records))
    assert sniff_columns(json_path) == ["a", "b", "c"]
    assert preview_file(json_path) == (["a", "b", "c"], [["1", '{"x": 1}', ""], ["true", "", ""]])
    ragged = write(tmp_path, "r.csv", "text,label\none\nthree,b,extra\n")
    assert preview_file(ragged)[1] == [["one", ""], ["three", "b"]]


@settings(max_examples=60, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_csv_round_trip_property(tmp_path: Path, data: st.DataObject):
    cell = st.text(alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"),
                   min_size=1, max_size=30).filter(lambda s: s.strip() == s and s != "")
    labels = data.draw(st.lists(cell, min_size=2, max_size=4, unique=True))
    rows = data.draw(st.lists(st.tuples(cell, st.sampled_from(labels)), min_size=2, max_size=25))
    rows += [("first", labels[0]), ("second", labels[1])]
    suffix = data.draw(st.sampled_from([".csv", ".tsv"]))
    buffer = io.StringIO()
    csv.writer(buffer, delimiter="," if suffix == ".csv" else "\t").writerows([("text", "label"), *rows])
    path = write(tmp_path, "prop" + suffix, buffer.getvalue())
    dataset = load_dataset_file(path, "text", "label", val_fraction=0)
    assert [(t, dataset.label_names[y]) for t, y in zip(dataset.train_texts, dataset.train_labels, strict=True)] \
        == rows
    split = load_dataset_file(path, "text", "label", val_fraction=0.3, seed=data.draw(st.integers(0, 9)))
    pairs = Counter(zip(split.train_texts + split.val_texts, split.train_labels + split.val_labels, strict=True))
    assert pairs == Counter(zip(dataset.train_texts, dataset.train_labels, strict=True))
    assert set(split.train_labels) == set(range(split.num_labels))


# ---------------------------------------------------------------- files: errors


def header_only(tmp_path: Path) -> Path:
    return write(tmp_path, "bad.csv", "text,label\n")


BAD_CASES = {
    "missing": (lambda p: p / "bad.csv", "not found"),
    "directory": (lambda p: (p / "bad.csv").mkdir() or p / "bad.csv", "is a folder"),
    "zero bytes": (lambda p: write(p, "bad.csv", b""), "is empty"),
    "whitespace only": (lambda p: write(p, "bad.jsonl", " \n\t\n"), "is empty"),
    "header only": (header_only, "no data rows"),
    "empty json list": (lambda p: write(p, "bad.json", "[]"), "no data rows"),
    "not utf-8": (lambda p: write(p, "bad.csv", b"text,label\ncaf\xe9,a\n"), "byte offset 14"),
    "binary": (lambda p: write(p, "bad.csv", b"text,label\n\x00\x01\x02,a\n"), "NUL bytes"),
    "utf-16": (lambda p: write(p, "bad.csv", "text,label\nx,a\n".encode("utf-16")), "NUL bytes"),
    "extension": (lambda p: write(p, "bad.xml", "text,label\n"), ".csv, .tsv, .jsonl, .json"),
    "no such text column": (lambda p: write(p, "bad.csv", csv_text(ROWS, ("sentence", "label"))),
                            "no column 'text'; the columns are: sentence, label"),
    "no such label column": (lambda p: write(p, "bad.csv", csv_text(ROWS, ("text", "y"))),
                             "no column 'label'; the columns are: text, y"),
    "blank text": (lambda p: write(p, "bad.csv", "text,label\nok here,a\n   ,b\n"), "row 2 (line 3): blank text"),
    "blank label": (lambda p: write(p, "bad.csv", "text,label\nok here,a\nfine,\n"), "row 2 (line 3): blank label"),
    "missing label jsonl": (lambda p: write(p, "bad.jsonl", '{"text": "a", "label": 1}\n{"text": "b"}\n'),
                            "row 2 (line 2): missing label"),
    "null label json": (lambda p: write(p, "bad.json", '[{"text": "a", "label": null}]'), "row 1: missing label"),
    "one class": (lambda p: write(p, "bad.csv", "text,label\na,x\nb,x\n"), "only one class ('x')"),
    "ragged": (lambda p: write(p, "bad.csv", "text,label\nok,a\nhello, world,b\n"),
               "row 2 (line 3) has 3 fields, the header has 2"),
    "unclosed quote": (lambda p: write(p, "bad.csv", 'text,label\nok,a\n"never closed,a\nb,b\nc,c\n'),
                       "line 3: a quoted field is never closed"),
    "bad quoting": (lambda p: write(p, "bad.csv", 'text,label\nok,a\n"quoted" tail,b\n'), "line 3: ','"),
    "malformed jsonl": (lambda p: write(p, "bad.jsonl", '{"text": "a", "label": 1}\n{"text": "b", \n'),
                        "line 2: malformed JSON"),
    "malformed json": (lambda p: write(p, "bad.json", '[{"text": "a"},\n {"text": }]'),
                       "malformed JSON at line 2"),
    "json not a list": (lambda p: write(p, "bad.json", '{"data": []}'), "expected a list of objects, got an object"),
    "json item not object": (lambda p: write(p, "bad.json", '[{"text": "a", "label": 1}, 5]'),
                             "row 2: expected an object, got a number"),
    "jsonl line not object": (lambda p: write(p, "bad.jsonl", '{"text": "a", "label": 1}\n\n["b", 2]\n'),
                              "line 3: expected a JSON object"),
    "nested text": (lambda p: write(p, "bad.jsonl", '{"text": "a", "label": 1}\n{"text": {"x": 1}, "label": 2}\n'),
                    "row 2 (line 2): column 'text' holds an object"),
    "list text": (lambda p: write(p, "bad.json", '[{"text": ["a"], "label": 1}]'), "row 1: column 'text' holds a list"),
    "fractional label": (lambda p: write(p, "bad.json", '[{"text": "a", "label": 1.5}]'), "not a whole number"),
    "duplicate header": (lambda p: write(p, "bad.csv", "text,text\na,b\n"), "appears twice"),
}


@pytest.mark.parametrize("case", list(BAD_CASES))
def test_bad_input(tmp_path: Path, case: str):
    make, phrase = BAD_CASES[case]
    path = make(tmp_path)
    with pytest.raises(DatasetError) as info:
        load_dataset_file(path, "text", "label")
    message = str(info.value)
    assert message.startswith(f"{path.name}: "), message
    assert phrase in message, message
    assert "\n" not in message
    assert isinstance(info.value, PeftStudioError)


@pytest.mark.parametrize("case", ["missing", "directory", "zero bytes", "not utf-8", "binary", "extension",
                                  "malformed json", "malformed jsonl", "json not a list"])
def test_bad_input_preview_and_sniff(tmp_path: Path, case: str):
    make, phrase = BAD_CASES[case]
    path = make(tmp_path)
    for reader in (preview_file, sniff_columns):
        with pytest.raises(DatasetError) as info:
            reader(path)
        assert str(info.value).startswith(f"{path.name}: ") and phrase in str(info.value)


def test_header_only_csv_has_columns_but_no_preview(tmp_path: Path):
    path = header_only(tmp_path)
    assert sniff_columns(path) == ["text", "label"]
    with pytest.raises(DatasetError, match="^bad.csv: has no data rows"):
        preview_file(path)


SPLIT_ROWS = "text,label,split\na one,a,train\nb one,b,train\n"


@pytest.mark.parametrize(("body", "phrase"), [
    ("a two,a,holdout\n", "row 3 (line 4): unknown split 'holdout' in column 'split'"),
    ("a two,a,\n", "row 3 (line 4): blank split"),
    ("c one,c,validation\n", "label 'c' appears in validation (row 3 (line 4)) but never in training"),
])
def test_bad_split_column(tmp_path: Path, body: str, phrase: str):
    path = write(tmp_path, "split.csv", SPLIT_ROWS + body)
    with pytest.raises(DatasetError) as info:
        load_dataset_file(path, "text", "label", split_column="split")
    assert str(info.value).startswith("split.csv: ") and phrase in str(info.value)


def test_no_train_rows_in_split_column(tmp_path: Path):
    path = write(tmp_path, "split.csv", "text,label,split\na,a,val\nb,b,val\n")
    with pytest.raises(DatasetError, match="^split.csv: no rows have split 'train'"):
        load_dataset_file(path, "text", "label", split_column="split")


def test_missing_split_column(tmp_path: Path):
    path = write(tmp_path, "split.csv", SPLIT_ROWS)
    with pytest.raises(DatasetError, match="^split.csv: no column 'fold'; the columns are: text, label, split"):
        load_dataset_file(path, "text", "label", split_column="fold")


def test_too_many_rows(tmp_path: Path):
    path = write(tmp_path, "big.jsonl", "".join(json.dumps({"text": f"t{i}", "label": i % 2}) + "\n"
                                                for i in range(11)))
    with pytest.raises(DatasetError, match="^big.jsonl: has more than 10 rows; the limit is 10$"):
        load_dataset_file(path, "text", "label", max_rows=10)
    assert len(load_dataset_file(path, "text", "label", max_rows=11, val_fraction=0).train_texts) == 11


def test_too_many_rows_default_limit_message(tmp_path: Path):
    path = write(tmp_path, "big.csv", "text,label\n" + "".join(f"t{i},{i % 2}\n" for i in range(50_001)))
    with pytest.raises(DatasetError, match="has more than 50000 rows; the limit is 50000"):
        load_dataset_file(path, "text", "label")


def test_file_too_large_is_refused_before_reading(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    path = write(tmp_path, "huge.csv", csv_text(ROWS))
    monkeypatch.setattr(files_module, "MAX_FILE_BYTES", 10)
    monkeypatch.setattr(Path, "read_bytes", lambda self: pytest.fail("read a file over the limit"))
    with pytest.raises(DatasetError, match="^huge.csv: is .* MB; the limit is"):
        load_dataset_file(path, "text", "label")


@pytest.mark.parametrize(("kwargs", "phrase"), [
    ({"val_fraction": 1.0}, "must be at least 0 and below 1"),
    ({"val_fraction": -0.1}, "must be at least 0 and below 1"),
    ({"max_rows": 0}, "max_rows must be at least 1"),
])
def test_bad_arguments(tmp_path: Path, kwargs: dict, phrase: str):
    path = write(tmp_path, "args.csv", csv_text(ROWS))
    with pytest.raises(DatasetError, match=f"^args.csv: .*{phrase}"):
        load_dataset_file(path, "text", "label", **kwargs)


def test_same_text_and_label_column(tmp_path: Path):
    path = write(tmp_path, "same.csv", csv_text(ROWS))
    with pytest.raises(DatasetError, match="^same.csv: .*both 'text'"):
        load_dataset_file(path, "text", "text")


def test_unexpected_os_error_is_wrapped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    path = write(tmp_path, "locked.csv", csv_text(ROWS))

    def denied(fd: int, size: int) -> bytes:
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(os, "read", denied)  # the one bounded reader (core/safe_io) reads with os.read
    with pytest.raises(DatasetError, match="^locked.csv: cannot read it .*Permission denied"):
        load_dataset_file(path, "text", "label")


def test_a_header_with_another_separator_gets_a_hint(tmp_path):
    semicolons = tmp_path / "semi.csv"
    semicolons.write_text("text;label\nhello;a\nbye;b\n", encoding="utf-8")
    with pytest.raises(DatasetError, match=r"semi.csv: no column 'text'.*separated by semicolons"):
        load_dataset_file(semicolons, "text", "label")
    tabs = tmp_path / "tabs.csv"
    tabs.write_text("text\tlabel\nhello\ta\nbye\tb\n", encoding="utf-8")
    with pytest.raises(DatasetError, match=r"separated by tabs: rename it to tabs.tsv"):
        load_dataset_file(tabs, "text", "label")
