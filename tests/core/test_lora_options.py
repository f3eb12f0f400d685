"""LoRA's options that change counts or outputs, against PEFT on MiniLM, on drawn configurations: `bias`, `use_rslora`,
`rank_pattern` / `alpha_pattern`, `init_lora_weights` (PiSSA and OLoRA with the residual base PEFT derives),
Embedding targets and `all-linear` (BERT's pooler included). Each drawn config is exchanged both ways: the studio's
export loads in PeftModel with the same hidden states and count, and PEFT's own adapter imports with the same."""

from __future__ import annotations

import copy
import dataclasses
import json

import pytest
import torch
from hypothesis import HealthCheck, Phase, assume, given, settings
from hypothesis import strategies as st
from peft_reference import PEFT_WARNINGS, peft, transformers  # offline switches, reference skips

from peft_studio.core.data import load_builtin
from peft_studio.core.errors import ConfigError
from peft_studio.core.interop.hf_peft import CONFIG_FIELDS, export_peft, import_peft
from peft_studio.core.methods import lora as lora_module
from peft_studio.core.methods.lora_layers import residual_factors
from peft_studio.core.model.experiment import Experiment, Setup

pytestmark = PEFT_WARNINGS

TEXTS = ["the food was great", "terrible service and a long slow wait", "ok"]
EXAMPLES = settings(max_examples=6, deadline=None, derandomize=True, phases=(Phase.explicit, Phase.generate),
                    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])  # a MiniLM
# round trip per example takes seconds: a failure is reported as drawn, not shrunk
_BERT: dict = {}


@pytest.fixture(scope="module")
def data():
    return load_builtin("sentiment")


@pytest.fixture(scope="module")
def folder():
    from peft_studio.core.bases.pretrained import minilm_folder

    return str(minilm_folder())


def bert(folder):
    if folder not in _BERT:
        _BERT[folder] = transformers.BertModel.from_pretrained(folder).eval()
    return copy.deepcopy(_BERT[folder])


# PEFT module names on BertModel (the studio reads them as targets too) and patterns that match some of them.
NAMES = ["query", "key", "value", "attention.output.dense", "intermediate.dense", "output.dense", "dense",
         "word_embeddings", "position_embeddings", "token_type_embeddings"]
PATTERN_KEYS = ["query", "value", "dense", "layer.1.attention.self.query", r"layer\.[0-2]\.output\.dense",
                "word_embeddings"]


@st.composite
def lora_settings(draw):
    """A PEFT LoraConfig's keyword arguments over the options the studio exchanges."""
    targets = draw(st.one_of(st.just("all-linear"), st.lists(st.sampled_from(NAMES), min_size=1, max_size=4,
                                                             unique=True)))
    r = draw(st.integers(1, 6))
    settings_ = {"r": r, "lora_alpha": draw(st.sampled_from([1, 4, 8, 16.5])), "target_modules": targets,
                 "bias": draw(st.sampled_from(["none", "all", "lora_only"])), "use_rslora": draw(st.booleans()),
                 "init_lora_weights": draw(st.sampled_from([True, "gaussian", "pissa", "olora", False])),
                 "rank_pattern": draw(st.dictionaries(st.sampled_from(PATTERN_KEYS), st.integers(1, 6), max_size=2)),
                 "alpha_pattern": draw(st.dictionaries(st.sampled_from(PATTERN_KEYS), st.sampled_from([2, 12.5]),
                                                       max_size=2))}
    if isinstance(targets, list) and draw(st.booleans()):  # PEFT takes no layers with a str target_modules
        settings_["layers_to_transform"] = sorted(draw(st.sets(st.integers(0, 5), min_size=1, max_size=3)))
    return settings_


def _covers_a_layer(settings_) -> bool:
    """layers_to_transform with only embedding / pooler targets selects nothing (PEFT refuses it too)."""
    layered = settings_["target_modules"] == "all-linear" or any("embeddings" not in t for t in
                                                                 settings_["target_modules"])
    return "layers_to_transform" not in settings_ or layered


def trained_like(parameters, seed=3):
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in parameters:
            parameter.add_(0.05 * torch.randn(parameter.shape, generator=generator))


def studio_hidden(experiment):
    ids, mask = experiment.tokenizer.batch(TEXTS)
    experiment.model.eval()
    with torch.no_grad():
        return experiment.base.encode(ids, mask)[0], ids, mask


@EXAMPLES
@given(settings_=lora_settings())
def test_a_peft_lora_adapter_with_drawn_options_imports_and_computes_the_same(tmp_path_factory, folder, data,
                                                                                settings_):
    assume(_covers_a_layer(settings_))
    wrapped = peft.get_peft_model(bert(folder), peft.LoraConfig(**settings_))
    trainable = [p for p in wrapped.parameters() if p.requires_grad]
    trained_like(trainable)
    out = tmp_path_factory.mktemp("peft")
    wrapped.eval().save_pretrained(str(out))
    experiment = import_peft(Setup("minilm", seed=2), out, data)
    hidden, ids, mask = studio_hidden(experiment)
    with torch.no_grad():
        theirs = wrapped(input_ids=ids, attention_mask=mask.long()).last_hidden_state
    assert (theirs - hidden)[mask].abs().max() <= 1e-4, settings_
    assert experiment.method_parameter_count() == sum(p.numel() for p in trainable) == experiment.census().trainable \
        - experiment.head_parameter_count()


def _studio_options(settings_):
    options = {"r": settings_["r"], "alpha": settings_["lora_alpha"], "bias": settings_["bias"],
               "use_rslora": settings_["use_rslora"], "init_lora_weights": str(settings_["init_lora_weights"]).lower(),
               "targets": settings_["target_modules"] if isinstance(settings_["target_modules"], str) else
               ",".join(settings_["target_modules"]),
               "rank_pattern": json.dumps(settings_["rank_pattern"]) if settings_["rank_pattern"] else None,
               "alpha_pattern": json.dumps(settings_["alpha_pattern"]) if settings_["alpha_pattern"] else None}
    if "layers_to_transform" in settings_:
        options["layers"] = ",".join(map(str, settings_["layers_to_transform"]))
    return options


@EXAMPLES
@given(settings_=lora_settings())
def test_the_studios_lora_with_drawn_options_exports_to_peft_and_counts_as_peft(tmp_path_factory, folder, data,
                                                                               settings_):
    assume(_covers_a_layer(settings_))
    experiment = Experiment(Setup("minilm", "lora", _studio_options(settings_), seed=1), data)
    reference = peft.get_peft_model(bert(folder), peft.LoraConfig(**settings_))  # the same config built by PEFT
    assert experiment.method_parameter_count() == sum(p.numel() for p in reference.parameters() if p.requires_grad)
    trained_like([p for n, p in experiment.model.named_parameters() if p.requires_grad and not n.startswith("head.")])
    out = export_peft(experiment, tmp_path_factory.mktemp("studio") / "adapter")
    loaded = peft.PeftModel.from_pretrained(bert(folder), str(out)).eval()
    hidden, ids, mask = studio_hidden(experiment)
    with torch.no_grad():
        theirs = loaded(input_ids=ids, attention_mask=mask.long()).last_hidden_state
    assert (theirs - hidden)[mask].abs().max() <= 1e-4, settings_


@pytest.mark.parametrize("init", ["pissa", "olora"])
def test_pissa_and_olora_start_from_peft_s_factors_and_keep_the_base_output(folder, data, init):
    options = {"r": 4, "alpha": 8, "targets": "query,intermediate.dense", "init_lora_weights": init}
    experiment = Experiment(Setup("minilm", "lora", options), data)
    reference = peft.get_peft_model(bert(folder), peft.LoraConfig(r=4, lora_alpha=8, init_lora_weights=init,
                                                                  target_modules=["query", "intermediate.dense"]))
    ours = {n: p for n, p in experiment.base.named_parameters() if "lora_" in n}
    theirs = {n: p for n, p in reference.named_parameters() if "lora_" in n}
    assert len(ours) == len(theirs) == 24
    for name, value in theirs.items():  # ...layer.3.attention.self.query.lora_A.default.weight
        layer, module = name.split("layer.")[1].split(".")[0], "q" if "query" in name else "up"
        path = f"layers.{layer}.{'attn' if module == 'q' else 'ffn'}.{module}.{name.split('.')[-3]}"
        assert (ours[path] - value).abs().max() <= 1e-5, name
    hidden, ids, mask = studio_hidden(experiment)  # B0 A0 subtracted again: the function of the bare base
    with torch.no_grad():
        bare = bert(folder)(input_ids=ids, attention_mask=mask.long()).last_hidden_state
    assert (bare - hidden)[mask].abs().max() <= 1e-4
    assert experiment.base.layers[0].attn.q.base_layer.weight.equal(bert(folder).encoder.layer[0].attention.self
                                                                    .query.weight)  # W0 itself untouched


def test_residual_inits_are_refused_where_they_cannot_be_reproduced(data):
    with pytest.raises(ConfigError, match="r = 400 at layers.0.attn.q is larger than the weight's smaller side"):
        Experiment(Setup("minilm", "lora", {"r": 400, "targets": "q", "init_lora_weights": "pissa"}), data)
    with pytest.raises(ConfigError, match="init_lora_weights 'pissa' is not offered with qlora"):
        Experiment(Setup("minilm", "qlora", {"init_lora_weights": "pissa"}), data)
    with pytest.raises(ConfigError, match="init_lora_weights 'olora' is not offered with dora"):
        Experiment(Setup("minilm", "dora", {"init_lora_weights": "olora"}), data)
    with pytest.raises(ConfigError, match="rank_pattern: 'query' is not name=value"):
        Experiment(Setup("minilm", "lora", {"rank_pattern": "query"}), data)
    with pytest.raises(ConfigError, match="a rank must be a whole number"):
        Experiment(Setup("minilm", "lora", {"rank_pattern": "query=2.5"}), data)
    with pytest.raises(ConfigError, match="is refused: it repeats a part that itself repeats"):
        Experiment(Setup("minilm", "lora", {"rank_pattern": '{"(a+)+": 2}'}), data)
    weight = torch.randn(6, 4)
    a0, b0 = residual_factors(weight, 4, 1.0, "pissa")
    assert torch.allclose(b0 @ a0, weight, atol=1e-5)  # all components: the residual is zero


# Fields of peft.LoraConfig that leave a loaded adapter's outputs as the studio computes them, and why.
NO_EFFECT_ON_LOAD = {
    "peft_version": "a version stamp", "auto_mapping": "which model class to build (the studio builds its own)",
    "layers_pattern": "names the layer list for layers_to_transform: the saved tensors already say which layers",
    "exclude_modules": "narrows target_modules when adapting: the saved tensors already say which modules",
    "loftq_config": "settings of init loftq (refused)", "eva_config": "settings of init eva (chose start values)",
    "corda_config": "settings of init corda (refused)", "lora_ga_config": "settings of init lora_ga",
    "runtime_config": "ephemeral GPU offload while running", "megatron_core": "the Megatron module to import",
    "qalora_group_size": "only with use_qalora (refused)",
    "ensure_weight_tying": "ties the adapters of tied modules; BertModel ties none",
}


def test_every_lora_config_field_is_read_refused_or_shown_to_have_no_effect():
    read = set(CONFIG_FIELDS) | {"target_modules", "modules_to_save"}
    known = read | set(lora_module.UNSUPPORTED_FIELDS) | set(NO_EFFECT_ON_LOAD)
    fields = {f.name for f in dataclasses.fields(peft.LoraConfig)}
    assert fields - known == set(), "a LoraConfig field the studio neither reads nor refuses"
