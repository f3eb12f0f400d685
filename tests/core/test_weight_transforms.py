"""Methods that transform a frozen Linear's weight (OFT, ...), beyond the method table: merged weights equal PEFT's
merge_and_unload, rotations are data that agree with the merge, Linear types PEFT refuses are refused with the
reason, and each method's own rules (adjusted block sizes, refused fields, import notes)."""

from __future__ import annotations

import copy
import functools
import warnings

import pytest
import torch
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from method_table import applies, draw_options, exchanging, fitting_options, method_names
from peft_reference import PEFT_WARNINGS, peft, transformers
from safetensors.torch import save_file

from peft_studio.core.adapters.lora_merge import merge_all, unmerge_all
from peft_studio.core.bases import create_base
from peft_studio.core.data import load_builtin
from peft_studio.core.errors import AdapterFileError, ConfigError
from peft_studio.core.interop.hf_peft import export_peft, import_peft, read_peft
from peft_studio.core.methods import METHODS, get_method
from peft_studio.core.methods.mergeable import weight_updates
from peft_studio.core.methods.oft import OftLinear, block_layout
from peft_studio.core.methods.peft_format import hf_name
from peft_studio.core.model.experiment import Experiment, Setup

pytestmark = PEFT_WARNINGS
FEW = settings(max_examples=3, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                     HealthCheck.function_scoped_fixture])
TEXTS = ["the food was great", "terrible service and a long slow wait", "ok"]


@functools.cache
def dataset():
    return load_builtin("sentiment")


@functools.cache
def intents():
    return load_builtin("intents")


@functools.cache
def minilm():
    return create_base("minilm")


@functools.cache
def bert():
    from peft_studio.core.bases.pretrained import minilm_folder

    return transformers.BertModel.from_pretrained(str(minilm_folder())).eval()


def nudge(model, scale=0.1, seed=7):
    """Move every trainable method tensor off its start (where a rotation is the identity), as training would."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if parameter.requires_grad and not name.startswith("head."):
                parameter.add_(scale * torch.randn(parameter.shape, generator=generator))


@functools.cache
def merges(method_name: str) -> bool:
    """The method's parts are weight updates (they fold into W0) on the tiny base."""
    experiment = Experiment(Setup("tiny", method_name), intents())
    return bool(weight_updates(experiment.model))


def rotating(method_name: str) -> bool:
    options = fitting_options(method_name, create_base("tiny", intents().make_tokenizer()))
    if options is None:  # no example options fit the tiny base: nothing to rotate there
        return False
    experiment = Experiment(Setup("tiny", method_name, options), intents())
    return bool(experiment.method.rotations(experiment.base))


MERGING = [name for name in method_names(exchanging) if applies(name, create_base("tiny", intents().make_tokenizer()))
           and merges(name)]
ROTATING = [name for name in method_names() if rotating(name)]
LINEAR_ONLY = method_names(lambda m: "Conv1D" in m.refused_layers)


@pytest.mark.parametrize("method", MERGING)
@FEW
@given(data=st.data())
def test_merged_weights_equal_peft_merge_and_unload(tmp_path_factory, data, method):
    """The studio's merge of drawn options, exported to PEFT and merged there, gives the same weights and biases;
    merged outputs equal unmerged ones, and unmerging gives W0 back bit for bit."""
    options = draw_options(data, method, minilm())
    random_field = METHODS[method].peft_merge_draws
    assume(not random_field or not options.get(random_field))  # PEFT's merge draws it: no reference then
    experiment = Experiment(Setup("minilm", method, options, seed=1), dataset())
    nudge(experiment.model)
    try:
        folder = export_peft(experiment, tmp_path_factory.mktemp("merge"))
    except AdapterFileError:
        assume(False)  # a setting with no PEFT form: refused, as the exchange test checks
    merged = peft.PeftModel.from_pretrained(copy.deepcopy(bert()), str(folder)).merge_and_unload()
    theirs = dict(merged.named_parameters())
    ids, mask = experiment.tokenizer.batch(TEXTS)
    experiment.model.eval()
    fingerprint = experiment.model.frozen_fingerprint()  # COFT projects its own (trainable) tensor in forward
    with torch.no_grad():
        before = experiment.model(ids, mask)
        assert merge_all(experiment.model) > 0
        after = experiment.model(ids, mask)
        for path, layer in weight_updates(experiment.base):
            name = hf_name(path, experiment.base)
            assert (layer.base_layer.weight - theirs[f"{name}.weight"]).abs().max() <= 1e-5, name
            if getattr(layer.base_layer, "bias", None) is not None:  # an embedding table (LoRA's) has none
                assert (layer.base_layer.bias - theirs[f"{name}.bias"]).abs().max() <= 1e-5, name
    assert (before - after).abs().max() <= 1e-4
    unmerge_all(experiment.model)
    assert experiment.model.frozen_fingerprint() == fingerprint


@pytest.mark.parametrize("method", ROTATING)
def test_rotations_are_data_that_agree_with_the_merge(method):
    """rotations() gives one square matrix per adapted site: the identity at the start, and after training the
    matrix the merged weight applies on the method's side (W0 R or R W0), up to a scale per output row (BOFT's s)."""
    experiment = Experiment(Setup("tiny", method, seed=3), intents())
    method_ = experiment.method
    start = method_.rotations(experiment.base)
    assert start and all(torch.allclose(r, torch.eye(r.shape[0]), atol=1e-6) for r in start.values())
    nudge(experiment.model, scale=0.05)
    layers = dict(weight_updates(experiment.base))
    for path, rotation in method_.rotations(experiment.base).items():
        layer = layers[path]
        w0 = layer.weight_out_in()
        expected = w0 @ rotation if method_.rotation_side == "input" else rotation @ w0
        assert not torch.allclose(rotation, torch.eye(rotation.shape[0]))
        merged = layer.merged_weight().detach()
        scale = (merged * expected).sum(1, keepdim=True) / (expected * expected).sum(1, keepdim=True)
        assert torch.allclose(merged, scale * expected, atol=1e-5)


@pytest.mark.parametrize("method", LINEAR_ONLY)
def test_conv1d_layers_are_refused_with_the_reason(method):
    """PEFT applies these methods to nn.Linear only: GPT-2's Conv1D sites are greyed out with the method's reason
    and naming them is a ConfigError that says why."""
    gpt2 = create_base("gpt2")
    reason = METHODS[method].refused_layers["Conv1D"]
    linear = [s for s in gpt2.sites() if s.kind == "linear"]
    assert linear and all(not s.available_for(method) and s.unavailable[method] == reason for s in linear)
    assert not applies(method, gpt2)
    with pytest.raises(ConfigError, match="Conv1D"):
        get_method(method).validate(get_method(method).config({"targets": "c_fc"}), gpt2)
    llama = create_base("tiny-decoder", load_builtin("texts").make_tokenizer())
    assert fitting_options(method, llama) is not None  # nn.Linear there (PEFT's default sizes need not fit)


# ---- OFT -------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("in_features", [16, 24, 48, 384, 1536, 14336])
@pytest.mark.parametrize("r, block_size", [(0, 32), (0, 7), (0, 100), (3, 0), (5, 0), (64, 0)])
def test_oft_sizes_blocks_as_peft_does(in_features, r, block_size):
    """Blocks per Linear as PEFT builds them, its adjustment of sizes that do not divide the width included."""
    with torch.device("meta"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        config = peft.OFTConfig(target_modules=["x"], r=r, oft_block_size=block_size)
        layer = peft.tuners.oft.layer.Linear(torch.nn.Linear(in_features, 4), "default", config=config, r=r)
    assert block_layout(in_features, r, block_size) == (layer.r["default"], layer.oft_block_size["default"])


def test_oft_says_an_adjusted_block_size_and_refuses_what_peft_cannot_match():
    tiny = create_base("tiny", intents().make_tokenizer(), d_model=24)
    oft = get_method("oft")
    notes = oft.shape_notes(oft.config({"oft_block_size": 16, "targets": "q"}), tiny, 8)
    assert notes and all("oft_block_size 16 does not divide 24: adjusted to 12 as PEFT does" in n for n in notes)
    with pytest.raises(ConfigError, match="module_dropout 0.1 is refused: PEFT's OFT .* never applies it"):
        oft.validate(oft.config({"module_dropout": 0.1}), tiny)
    with pytest.raises(ConfigError, match="exactly one of r"):
        oft.validate(oft.config({"r": 4}), tiny)  # and oft_block_size 32, as PEFT refuses
    with pytest.raises(ConfigError, match="nothing to rotate"):
        oft.validate(oft.config({"r": 24, "oft_block_size": 0}), tiny)


def test_oft_exact_cayley_is_orthogonal_and_coft_stays_within_eps():
    experiment = Experiment(Setup("tiny", "oft", {"use_cayley_neumann": False, "coft": True, "eps": 0.05,
                                                  "oft_block_size": 8}, seed=2), intents())
    nudge(experiment.model, scale=1.0)
    ids, mask = experiment.tokenizer.batch(TEXTS)
    experiment.model(ids, mask)  # COFT projects its skew matrices in place, as PEFT's forward does
    for _, layer in weight_updates(experiment.base):
        assert isinstance(layer, OftLinear)
        rotation = layer.rotation()
        assert torch.allclose(rotation @ rotation.T, torch.eye(rotation.shape[0]), atol=1e-5)
        skew = layer.oft_R.skew(layer.oft_R.weight)
        radius = 0.05 / layer.num_blocks ** 0.5
        assert torch.linalg.matrix_norm(skew).max() <= radius * (1 + 1e-5)


def peft_made(tmp_path, config):
    """An adapter PEFT makes from `config` on MiniLM, moved off its start, saved with a head."""
    wrapped = peft.get_peft_model(copy.deepcopy(bert()), config)
    nudge(wrapped, scale=0.1, seed=3)
    wrapped.eval()
    folder = tmp_path / "made"
    wrapped.save_pretrained(str(folder))
    torch.manual_seed(0)
    head = torch.nn.Linear(384, 2)
    save_file({"weight": head.weight.detach().contiguous(), "bias": head.bias.detach().contiguous()},
              str(folder / "head.safetensors"))
    return wrapped, head, folder


def assert_predicts_like(experiment, wrapped, head):
    """The imported experiment's logits equal the head on PEFT's mean-pooled hidden states."""
    ids, mask = experiment.tokenizer.batch(TEXTS)
    experiment.model.eval()
    with torch.no_grad():
        hidden = wrapped(input_ids=ids, attention_mask=mask.long()).last_hidden_state
        weights = mask.float()[..., None]
        theirs = head((hidden * weights).sum(1) / weights.sum(1))
        assert (experiment.model(ids, mask) - theirs).abs().max() <= 1e-4


def test_oft_import_says_what_peft_ignored_and_predicts_the_same(tmp_path):
    """PEFT's module_dropout never acts on a Linear: the import says so and predicts what PEFT predicts."""
    config = peft.OFTConfig(target_modules=["query", "output.dense"], oft_block_size=32, module_dropout=0.1)
    wrapped, head, folder = peft_made(tmp_path, config)
    assert any("module_dropout 0.1 is left out" in note for note in read_peft(folder).notes)
    experiment = import_peft(Setup("minilm"), folder, dataset())
    assert_predicts_like(experiment, wrapped, head)


# ---- BOFT ------------------------------------------------------------------------------------------------
def test_boft_block_dropout_draws_what_peft_draws():
    """In training, boft_dropout sets int(p D) blocks of one random factor to I: with the same random state the
    studio's layer gives PEFT's outputs bit for bit (its factor and blocks are drawn in PEFT's order)."""
    from peft.tuners.boft.layer import Linear as PeftBoft

    from peft_studio.core.methods.boft import BoftLinear

    torch.manual_seed(0)
    base = torch.nn.Linear(32, 6)
    config = peft.BOFTConfig(target_modules=["x"], boft_block_size=4, boft_n_butterfly_factor=2, boft_dropout=0.5)
    theirs = PeftBoft(base, "default", config=config)
    ours = BoftLinear(base, 8, 4, 2, 0.5)
    with torch.no_grad():
        theirs.boft_R["default"].normal_(0, 0.3)
        ours.boft_R.copy_(theirs.boft_R["default"])
    x = torch.randn(3, 32)
    outputs = []
    for layer in (theirs.train(), ours.train()):
        torch.manual_seed(11)
        outputs.append(torch.stack([layer(x) for _ in range(4)]))
    assert torch.equal(outputs[0], outputs[1])
    assert not torch.equal(outputs[1][0], ours.eval()(x))  # blocks were dropped


def test_boft_rotation_is_orthogonal():
    experiment = Experiment(Setup("tiny", "boft", {"boft_n_butterfly_factor": 2}, seed=2), intents())
    nudge(experiment.model, scale=1.0)
    for rotation in experiment.method.rotations(experiment.base).values():
        assert torch.allclose(rotation @ rotation.T, torch.eye(rotation.shape[0]), atol=1e-5)


def test_boft_made_without_peft_cuda_extension_imports_with_the_factors_it_holds(tmp_path, monkeypatch):
    """Without its CUDA extension PEFT builds one butterfly factor whatever boft_n_butterfly_factor says: the import
    says so and predicts what that PEFT predicts."""
    from peft.tuners.boft import layer

    monkeypatch.setattr(layer, "_FBD_CUDA", None)
    monkeypatch.setattr(layer, "get_fbd_cuda", lambda: None)
    config = peft.BOFTConfig(target_modules=["query", "value"], boft_block_size=8, boft_n_butterfly_factor=2)
    wrapped, head, folder = peft_made(tmp_path, config)
    adapter = read_peft(folder)
    assert adapter.options["boft_n_butterfly_factor"] == 1
    assert any("boft_n_butterfly_factor 2" in note and "CUDA extension" in note for note in adapter.notes)
    experiment = import_peft(Setup("minilm"), folder, dataset())
    assert_predicts_like(experiment, wrapped, head)
    assert experiment.method_parameter_count() == wrapped.get_nb_trainable_parameters()[0]


# ---- HRA -------------------------------------------------------------------------------------------------
def test_hra_starts_at_w0_for_an_even_r_and_its_reflections_stay_orthogonal():
    """PEFT's rules: an even r starts from equal pairs (H = I), an odd r from random vectors; H is orthogonal
    either way, and Gram-Schmidt on PEFT's equal pairs is refused with the reason."""
    hra = get_method("hra")
    for r, starts_at_w0 in ((4, True), (3, False)):
        experiment = Experiment(Setup("tiny", "hra", {"r": r}, seed=1), intents())
        for rotation in hra.rotations(experiment.base).values():
            assert torch.allclose(rotation, torch.eye(rotation.shape[0]), atol=1e-6) == starts_at_w0
            assert torch.allclose(rotation @ rotation.T, torch.eye(rotation.shape[0]), atol=1e-5)
    with pytest.raises(ConfigError, match="apply_GS with init_weights true and an even r .* set init_weights false"):
        Experiment(Setup("tiny", "hra", {"r": 4, "apply_GS": True}), intents())
    experiment = Experiment(Setup("tiny", "hra", {"r": 4, "apply_GS": True, "init_weights": False}), intents())
    for rotation in hra.rotations(experiment.base).values():
        assert torch.allclose(rotation @ rotation.T, torch.eye(rotation.shape[0]), atol=1e-5)


# ---- MiSS ------------------------------------------------------------------------------------------------
def test_miss_r_in_force_is_peft_default_where_it_fits_and_is_shown():
    """r 0 means PEFT's 64 where every adapted Linear takes it (MiniLM), else the widest r that fits; the form,
    the count and an export all show the number in force."""
    miss = get_method("miss")
    assert miss.effective_options(miss.config({}), minilm())["r"] == 64
    tiny = create_base("tiny", intents().make_tokenizer(), d_model=24)
    assert miss.effective_options(miss.config({"targets": "q,down"}), tiny)["r"] == 24  # q reads 24 channels
    assert miss.effective_options(miss.config({"init_weights": "bat", "targets": "q,up"}), tiny)["r"] == 24
    assert miss.parameter_count(miss.config({"targets": "q"}), tiny) == 2 * 24 * 24
    with pytest.raises(ConfigError, match="r \\(32\\) must be at most its input width \\(24\\)"):
        miss.validate(miss.config({"r": 32}), tiny)
    with pytest.raises(ConfigError, match="miss_dropout is not used with init_weights bat"):
        miss.validate(miss.config({"init_weights": "bat", "miss_dropout": 0.1}), tiny)


def test_miss_bat_import_says_peft_ignored_its_dropout(tmp_path):
    config = peft.MissConfig(target_modules=["query"], r=16, init_weights="bat", miss_dropout=0.2)
    wrapped, head, folder = peft_made(tmp_path, config)
    adapter = read_peft(folder)
    assert adapter.options["miss_dropout"] == 0.0
    said = "miss_dropout 0.2 is left out: PEFT applies no dropout with init_weights bat"
    assert any(said in note for note in adapter.notes)
    experiment = import_peft(Setup("minilm"), folder, dataset())
    assert_predicts_like(experiment, wrapped, head)


# ---- DeLoRA ----------------------------------------------------------------------------------------------
def test_delora_refuses_per_module_patterns_by_name_and_keeps_w0_column_norms_frozen(tmp_path):
    import json

    experiment = Experiment(Setup("minilm", "delora", {"r": 2, "targets": "query"}), dataset())
    layer = dict(weight_updates(experiment.base))["layers.0.attn.q"]
    assert torch.equal(layer.delora_w_norm, torch.norm(layer.weight_out_in(), dim=0))
    assert not layer.delora_w_norm.requires_grad
    folder = export_peft(experiment, tmp_path / "delora")
    config = json.loads((folder / "adapter_config.json").read_text())
    for field in ("lambda_pattern", "rank_pattern"):
        (folder / "adapter_config.json").write_text(json.dumps({**config, field: {"query": 4}}))
        with pytest.raises(AdapterFileError, match=f"{field} \\(per-module ranks or lambdas\\) is not supported"):
            read_peft(folder)


# ---- RoAd ------------------------------------------------------------------------------------------------
def test_road_group_size_in_force_and_its_refusals():
    """group_size 0 is PEFT's 64 where it divides every adapted output (MiniLM), else the largest even width that
    does; a width that does not divide an output is refused as PEFT refuses it."""
    road = get_method("road")
    assert road.effective_options(road.config({}), minilm())["group_size"] == 64
    tiny = create_base("tiny", intents().make_tokenizer(), d_model=24)
    assert road.effective_options(road.config({"targets": "q,up"}), tiny)["group_size"] == 24
    with pytest.raises(ConfigError, match="output width \\(24\\) must be divisible by group_size \\(16\\)"):
        road.validate(road.config({"group_size": 16}), tiny)
    with pytest.raises(ConfigError, match="group_size \\(3\\) must be even"):
        road.validate(road.config({"group_size": 3}), tiny)


# ---- BEFT ------------------------------------------------------------------------------------------------
def test_beft_default_is_peft_default_and_merges_only_into_a_bias():
    from peft_studio.core.methods.mergeable import mergeable_layers

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        wrapped = peft.get_peft_model(copy.deepcopy(bert()), peft.BeftConfig())
    studio = Experiment(Setup("minilm", "beft"), dataset())
    assert studio.method_parameter_count() == wrapped.get_nb_trainable_parameters()[0] == 6 * 384  # the values
    assert mergeable_layers(studio.model)
    llama = Experiment(Setup("tiny-decoder", "beft"), load_builtin("texts"))
    assert weight_updates(llama.model) and not mergeable_layers(llama.model)  # no bias to fold the offset into


# ---- GLoRA -----------------------------------------------------------------------------------------------
def test_glora_bias_paths_exist_only_where_a_linear_has_a_bias_and_all_none_is_refused():
    glora = get_method("glora")
    llama = create_base("tiny-decoder", load_builtin("texts").make_tokenizer())
    config = glora.config({"r": 2, "targets": "v_proj", "config_C": "vector", "config_D_E": "vector"})
    assert glora.parameter_count(config, llama) == 2 * 2 * 2 * (32 + 16)  # A and B only: Llama's Linears have no bias
    assert all("C none (no bias)" in note for note in glora.shape_notes(config, llama, 8))
    with pytest.raises(ConfigError, match="nothing to train"):
        glora.validate(glora.config({"config_A_B": "none", "targets": "v_proj"}), llama)
