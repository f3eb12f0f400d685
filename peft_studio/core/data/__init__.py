"""Datasets and the word tokenizer (Qt-free: stdlib + torch only)."""

from .builtin import (
    SEED_LABEL_NAMES,
    SEED_SAMPLES,
    builtin_description,
    builtin_names,
    datasets_dir,
    load_builtin,
)
from .dataset import TextDataset
from .files import (
    MAX_FILE_BYTES,
    SUPPORTED_SUFFIXES,
    load_dataset_file,
    preview_file,
    sniff_columns,
)
from .tokenizer import WordTokenizer

__all__ = [
    "MAX_FILE_BYTES",
    "SEED_LABEL_NAMES",
    "SEED_SAMPLES",
    "SUPPORTED_SUFFIXES",
    "TextDataset",
    "WordTokenizer",
    "builtin_description",
    "builtin_names",
    "datasets_dir",
    "load_builtin",
    "load_dataset_file",
    "preview_file",
    "sniff_columns",
]
