"""P-tuning: the soft prompt is the output of a small trainable encoder (Liu et al., 2021, "GPT Understands, Too").

Follows PEFT's PromptEncoder (peft/tuners/p_tuning): an Embedding(n, d) of the n virtual tokens, then either an
MLP head (Linear d->h, ReLU, Linear h->h, ReLU, Linear h->d: always two hidden layers) or a bidirectional LSTM of
encoder_num_layers layers (hidden h per direction, dropout between layers) followed by Linear 2h->2h, ReLU,
Linear 2h->d. h is encoder_hidden_size, by default the model's width d. The encoder runs once per step on the n
token indices and its [n, d] output is the soft prompt, which then goes where prompt tuning's goes (the same slot,
pooling choice and position handling: prompt_tuning.py).

PEFT saves the *evaluated* prompt (`prompt_embeddings`, the encoder's output), not the encoder, and loads it for
inference as a plain table of n vectors (its inference_mode). The studio does the same: export evaluates the
encoder; an imported P-tuning adapter is the n vectors with no encoder (inference_mode), and says so.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ..bases.frozen import FrozenBase
from ..errors import AdapterFileError, ConfigError
from ..model.studio_model import StudioModel
from .config import option
from .method import PROMPT_SIDE, Method, MethodCard, code_line
from .peft_format import modules_of
from .prompt_tuning import POOL_CHOICES, PromptTuningConfig, PromptTuningMethod, PromptVectors, prompt_settings

MLP, LSTM = "MLP", "LSTM"  # PEFT's PromptEncoderReparameterizationType values
MLP_LAYERS = 2  # PEFT's MLP always has two hidden layers (it warns and ignores any other encoder_num_layers)


class EncodedPrompt(PromptVectors):
    """PEFT's PromptEncoder in the prompt slot: the n prompt vectors are encoder(embedding) (or, in inference mode,
    the embedding itself: an evaluated prompt loaded from a file)."""

    def __init__(self, tokens: int, width: int, kind: str, hidden: int, num_layers: int, dropout: float,
                 inference_mode: bool, pool_over: str = POOL_CHOICES[0]) -> None:
        super().__init__(tokens, pool_over)
        self.kind = kind
        self.inference_mode = inference_mode
        self.embedding = nn.Embedding(tokens, width)  # created first, as PEFT's (N(0, 1))
        if inference_mode:
            return
        if kind == LSTM:
            self.lstm_head = nn.LSTM(input_size=width, hidden_size=hidden, num_layers=num_layers, dropout=dropout,
                                     bidirectional=True, batch_first=True)
            self.mlp_head = nn.Sequential(nn.Linear(2 * hidden, 2 * hidden), nn.ReLU(), nn.Linear(2 * hidden, width))
        else:
            self.mlp_head = nn.Sequential(nn.Linear(width, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(),
                                          nn.Linear(hidden, width))

    def vectors(self) -> torch.Tensor:
        embeds = self.embedding.weight.unsqueeze(0)  # PEFT's embedding(arange(n)) for one sample: [1, n, d]
        if self.inference_mode:
            return self.embedding.weight
        if self.kind == LSTM:
            return self.mlp_head(self.lstm_head(embeds)[0])[0]  # the LSTM reads the n tokens both ways
        return self.mlp_head(embeds)[0]


@dataclass
class PTuningConfig(PromptTuningConfig):
    encoder_reparameterization_type: str = option(MLP, "the prompt encoder: MLP (two hidden layers) or LSTM "
                                                       "(bidirectional, then a two-layer MLP)", choices=(MLP, LSTM))
    encoder_hidden_size: int = option(0, "hidden size h of the prompt encoder (0: the model's width d, PEFT's "
                                         "default)", low=0, high=8192)
    encoder_num_layers: int = option(MLP_LAYERS, "LSTM layers (PEFT's MLP always has 2 hidden layers)",
                                     low=1, high=8)
    encoder_dropout: float = option(0.0, "dropout between the LSTM's layers during training", low=0.0, high=0.99)
    inference_mode: bool = option(False, "no encoder: the prompt is n plain vectors, as PEFT loads a saved P-tuning "
                                         "adapter (its file holds the encoder's output; an import is in this mode)")


class PTuningMethod(PromptTuningMethod):
    """Prompt tuning's slot, pooling and position handling (inherited), with the prompt produced by an encoder."""
    family_group = PROMPT_SIDE

    name = "p-tuning"
    title = "P-tuning"
    config_cls = PTuningConfig
    claims_kinds = ()  # a click on the prompt site means prompt tuning unless P-tuning is already chosen
    # the encoder's kind, depth and dropout are drawn together: the MLP takes only PEFT's depth and no dropout
    example_space = {**Method.example_space, "tokens": (1, 3, 6), "pool_over": POOL_CHOICES,
                     ("encoder_reparameterization_type", "encoder_num_layers", "encoder_dropout"): (
                         (MLP, MLP_LAYERS, 0.0), (LSTM, 1, 0.0), (LSTM, 2, 0.1), (LSTM, 3, 0.0)),
                     "encoder_hidden_size": (0, 5, 16)}
    # encoder_num_layers stays PEFT's 2 here: PEFT 0.21 cannot build an MLP encoder from a JSON config with another
    # value (its warning reads .value of the plain string); tests/core/test_p_tuning.py draws LSTM depths itself
    peft_space = {"num_virtual_tokens": (2, 5), "encoder_reparameterization_type": (MLP, LSTM),
                  "encoder_hidden_size": (16, 64)}
    peft_type = "P_TUNING"
    peft_config_fields = {"encoder_reparameterization_type": ((str,), "MLP or LSTM"),
                          "encoder_hidden_size": ((int, type(None)), "a whole number or null"),
                          "encoder_num_layers": ((int,), "a whole number"),
                          "encoder_dropout": ((int, float), "a number")}
    glyph = "Pφ"
    colour = "#a8326e"
    card = MethodCard(
        where="before the input embedding: n soft-prompt vectors made by a small trainable encoder (MLP or LSTM)",
        intuition="reparameterise the soft prompt: an encoder ties the n vectors together, so they train more "
                  "steadily than n free vectors",
        advantages="trains more stably than plain prompt tuning; only the encoder's n x d output is saved and "
                   "served, so inference costs what prompt tuning costs",
        limitations="the encoder trains far more parameters than the n x d it produces; still only the input side",
        formula="x' = [MLP(P) ; E(tokens)],  P: n x d embedding,  L -> L + n",
    )

    def hidden_size(self, config: PTuningConfig, base: FrozenBase) -> int:
        return config.encoder_hidden_size or base.hidden_size  # PEFT: encoder_hidden_size None -> token_dim

    def validate(self, config: PTuningConfig, base: FrozenBase) -> None:
        super().validate(config, base)
        # settings PEFT accepts and then ignores would silently mean nothing here: refuse them by name
        lstm = config.encoder_reparameterization_type == LSTM
        encoder = (config.encoder_reparameterization_type != MLP or config.encoder_hidden_size
                   or config.encoder_num_layers != MLP_LAYERS or config.encoder_dropout)
        if config.inference_mode and encoder:
            raise ConfigError("inference_mode has no encoder (the prompt is n plain vectors): leave "
                              "encoder_reparameterization_type, encoder_hidden_size, encoder_num_layers and "
                              "encoder_dropout at their defaults")
        if not lstm and config.encoder_num_layers != MLP_LAYERS:
            raise ConfigError(f"encoder_num_layers: PEFT's MLP prompt encoder always has {MLP_LAYERS} hidden layers "
                              f"(got {config.encoder_num_layers}); choose encoder_reparameterization_type LSTM for "
                              "another depth")
        if not lstm and config.encoder_dropout:
            raise ConfigError("encoder_dropout: PEFT's MLP prompt encoder has no dropout (it acts between the "
                              "LSTM's layers)")
        if lstm and config.encoder_dropout and config.encoder_num_layers == 1:
            raise ConfigError("encoder_dropout: a one-layer LSTM has no layer to drop out between (use "
                              "encoder_num_layers 2 or more)")

    def effective_options(self, config: PTuningConfig, base: FrozenBase) -> dict[str, Any]:
        values = super().effective_options(config, base)
        if not config.inference_mode:
            values["encoder_hidden_size"] = self.hidden_size(config, base)
        return values

    def attach(self, model: StudioModel, config: PTuningConfig) -> None:
        site = self.selected_sites(config, model.base)[0]
        model.swap(site.module_path, EncodedPrompt(
            config.tokens, site.in_features, config.encoder_reparameterization_type,
            self.hidden_size(config, model.base), config.encoder_num_layers, config.encoder_dropout,
            config.inference_mode, config.pool_over))

    def encoder_count(self, config: PTuningConfig, base: FrozenBase) -> int:
        """Parameters of the encoder behind the n x d embedding (0 in inference mode)."""
        if config.inference_mode:
            return 0
        d, h = base.hidden_size, self.hidden_size(config, base)
        if config.encoder_reparameterization_type == MLP:
            return (d * h + h) + (h * h + h) + (h * d + d)
        # per direction and layer: 4 gates x (input + recurrent weights) + two 4h biases; layer 0 reads d, the
        # others read both directions (2h)
        lstm = sum(2 * (4 * h * ((d if layer == 0 else 2 * h) + h) + 8 * h)
                   for layer in range(config.encoder_num_layers))
        return lstm + (2 * h * 2 * h + 2 * h) + (2 * h * d + d)

    def parameter_count(self, config: PTuningConfig, base: FrozenBase) -> int:
        return config.tokens * self.selected_sites(config, base)[0].in_features + self.encoder_count(config, base)

    def formula_text(self, config: PTuningConfig, base: FrozenBase) -> str:
        n, d, total = config.tokens, base.hidden_size, self.parameter_count(config, base)
        if config.inference_mode:
            return f"n x d = {n} x {d} = {total:,} (no encoder: inference mode)"
        h = self.hidden_size(config, base)
        if config.encoder_reparameterization_type == MLP:
            return (f"n d + (d h + h) + (h h + h) + (h d + d) = {n}x{d} + ({d}x{h}+{h}) + ({h}x{h}+{h}) + "
                    f"({h}x{d}+{d}) = {total:,}")
        layers = config.encoder_num_layers
        return (f"n d + biLSTM({layers} layer{'s' if layers > 1 else ''}, h = {h}) + (2h 2h + 2h) + (2h d + d) = "
                f"{n}x{d} + {self.encoder_count(config, base) - (4 * h * h + 2 * h) - (2 * h * d + d):,} + "
                f"{4 * h * h + 2 * h:,} + {2 * h * d + d:,} = {total:,}")

    def live_formula(self, config: PTuningConfig) -> str:
        encoder = {MLP: "MLP(P)", LSTM: "MLP(biLSTM(P))"}[config.encoder_reparameterization_type]
        formula = self.card.formula.replace("MLP(P)", "P" if config.inference_mode else encoder)
        return formula.replace("+ n", f"+ {config.tokens}")

    def code(self, config: PTuningConfig) -> str:
        if config.inference_mode:
            return code_line(EncodedPrompt.vectors, "return self.embedding.weight")
        if config.encoder_reparameterization_type == LSTM:
            return code_line(EncodedPrompt.vectors, "self.lstm_head(embeds)")
        return code_line(EncodedPrompt.vectors, "self.mlp_head(embeds)[0]")

    def shape_notes(self, config: PTuningConfig, base: FrozenBase, seq_len: int) -> list[str]:
        notes = super().shape_notes(config, base, seq_len)
        if not config.inference_mode:
            h = self.hidden_size(config, base)
            encoder = f"MLP {base.hidden_size}->{h}->{h}->{base.hidden_size}" \
                if config.encoder_reparameterization_type == MLP else \
                f"bidirectional LSTM ({config.encoder_num_layers} layers, {h} per direction), MLP {2 * h}->{2 * h}->" \
                f"{base.hidden_size}"
            notes.insert(1, f"the {config.tokens} prompt vectors are {encoder} of a {config.tokens}x"
                            f"{base.hidden_size} embedding, run once per step")
        return notes

    # ---- Hugging Face PEFT exchange: the evaluated prompt, as PEFT saves it ------------------------------
    def peft_evaluated(self, config: PTuningConfig) -> bool:
        return not config.inference_mode

    def peft_export(self, base: FrozenBase, config: PTuningConfig) -> tuple[dict, dict[str, torch.Tensor]]:
        modules = modules_of(base, EncodedPrompt)
        if not modules:
            raise AdapterFileError("export to PEFT format: the model has no P-tuning prompt encoder")
        module = modules[0][1]
        was_training = module.training
        module.eval()  # PEFT saves the encoder's output without dropout (save_pretrained on an eval model)
        try:
            with torch.no_grad():  # on the meta device (settings only) the shapes, not an LSTM run
                prompt = torch.empty_like(module.embedding.weight) if module.embedding.weight.is_meta else \
                    module.vectors().detach().clone()
        finally:
            module.train(was_training)
        settings = {**prompt_settings(base, config.tokens),
                    "encoder_reparameterization_type": config.encoder_reparameterization_type,
                    "encoder_hidden_size": self.hidden_size(config, base),
                    "encoder_num_layers": config.encoder_num_layers, "encoder_dropout": config.encoder_dropout}
        return settings, {"prompt_embeddings": prompt}

    def peft_translate(self, peft_config: dict[str, Any], tensors: dict, where: str) -> tuple[dict, dict]:
        kind = peft_config.get("encoder_reparameterization_type", MLP)
        if kind not in (MLP, LSTM):
            raise AdapterFileError(f"{where}: encoder_reparameterization_type must be MLP or LSTM (got {kind!r})")
        options, studio = super().peft_translate(peft_config, tensors, where)
        # the file holds the encoder's output only: the n vectors themselves, with no encoder (PEFT's inference mode;
        # the encoder settings are named here so that none is taken from a studio head's metadata)
        encoder = {"encoder_reparameterization_type": MLP, "encoder_hidden_size": 0, "encoder_num_layers": MLP_LAYERS,
                   "encoder_dropout": 0.0}
        return {**options, **encoder, "inference_mode": True}, {"embeddings.prompt.embedding.weight":
                                                     studio.pop("embeddings.prompt.prompt")}

    def peft_import_notes(self, peft_config: dict[str, Any], where: str) -> list[str]:
        kind = peft_config.get("encoder_reparameterization_type", MLP)
        hidden = peft_config.get("encoder_hidden_size") or peft_config.get("token_dim")
        return [f"{where}: a P-tuning file holds the prompt encoder's output (prompt_embeddings), not the encoder "
                f"({kind}, hidden size {hidden}): the imported prompt is those {peft_config.get('num_virtual_tokens')} "
                "vectors as they are (inference_mode), so it predicts what PEFT predicts; training it further trains "
                "the vectors themselves"]

