"""Lenses against direct computations: ΔW by probing the layer with the identity and by torch.linalg, nearest words
by brute force, histograms by numpy, the bottleneck by calling the adapter's own layers, forgetting by detaching."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from method_table import fitting_options, method_names

from peft_studio.cli import main
from peft_studio.core.bases import create_base
from peft_studio.core.data import load_builtin
from peft_studio.core.lenses.activations import nearest_words
from peft_studio.core.lenses.forgetting import GENERAL_TEXT, forgetting
from peft_studio.core.lenses.report import lens_report
from peft_studio.core.lenses.spectra import effective_rank
from peft_studio.core.methods import METHODS
from peft_studio.core.methods.mergeable import weight_updates
from peft_studio.core.model.experiment import Experiment, Setup

TINY = create_base("tiny", load_builtin("intents").make_tokenizer())


def _perturbed(method: str, options: dict | None = None, base: str = "tiny", dataset: str = "intents"):
    if options is None and base == "tiny":  # the method's defaults, or example options that fit the tiny base
        options = fitting_options(method, TINY)
    experiment = Experiment(Setup(base, method, options or {}, seed=0), load_builtin(dataset))
    generator = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for parameter in experiment.model.trainable_parameters():
            parameter.add_(0.2 * torch.randn(parameter.shape, generator=generator))
    experiment.model.eval()
    return experiment


FITTING = method_names(lambda m: fitting_options(m.name, TINY) is not None)
WEIGHT_UPDATE_METHODS = [name for name in FITTING if weight_updates(
    Experiment(Setup("tiny", name, fitting_options(name, TINY)), load_builtin("intents")).model)]


@pytest.mark.parametrize("method", WEIGHT_UPDATE_METHODS)
def test_delta_w_is_what_the_layer_adds_and_its_spectrum_is_torch_linalg(method):
    """Every weight-update method of the registry: the lens's ΔW equals what the layer adds to the identity matrix
    run through it, and its numbers equal the SVD of that ΔW."""
    experiment = _perturbed(method)
    figures = {f.site: f for f in lens_report(experiment, with_forgetting=False) if f.kind == "delta-w"}
    assert figures
    paths = {s.module_path: s.id for s in reversed(experiment.base.sites())}  # a Linear before its input site
    with torch.no_grad():
        for path, layer in weight_updates(experiment.base):
            if isinstance(layer.base_layer, torch.nn.Embedding):  # a table: every row looked up is its ΔW
                rows = torch.arange(layer.base_layer.num_embeddings)
                probed = layer(rows) - layer.base_layer(rows)  # [rows, width], the table's layout
            else:
                eye = torch.eye(layer.base_layer.in_features)
                zero = torch.zeros(1, layer.base_layer.in_features)
                bias_change = layer(zero) - layer.base_layer(zero)  # BEFT, GLoRA, RoAd also move the bias: not ΔW
                probed = (layer(eye) - layer.base_layer(eye) - bias_change).T  # [out, in]: what ΔW adds, by column
            singular = torch.linalg.svdvals(probed)
            figure = figures[paths[path]]
            values = torch.tensor(figure.arrays["singular_values"])
            assert torch.allclose(values, singular[: len(values)], atol=1e-4, rtol=1e-4)
            assert figure.numbers["relative_norm"] == pytest.approx(
                float(probed.norm() / layer.original_weight().norm()), rel=1e-4, abs=1e-6)  # BEFT: ΔW = 0
            if float(probed.norm()) <= 1e-6 * float(layer.original_weight().norm()):  # no ΔW (BEFT moves biases)
                assert figure.numbers["effective_rank"] == 0
                continue
            p = singular.numpy() / singular.numpy().sum()
            p = p[p > 0]
            assert figure.numbers["effective_rank"] == pytest.approx(float(np.exp(-(p * np.log(p)).sum())), rel=1e-3)


def test_lora_delta_w_has_rank_at_most_r_and_full_fine_tuning_shows_its_own():
    lora = {f.site: f for f in lens_report(_perturbed("lora", {"r": 2, "targets": "q"}), with_forgetting=False)}
    assert all(f.numbers["numerical_rank"] <= 2 and f.numbers["r"] == 2 for f in lora.values())
    full = [f for f in lens_report(_perturbed("full"), with_forgetting=False) if f.kind == "delta-w"]
    assert full and max(f.numbers["numerical_rank"] for f in full) > 2  # a dense update: no rank cap


def test_effective_rank_of_known_spectra():
    assert effective_rank(torch.tensor([1.0, 1.0, 1.0, 1.0])) == pytest.approx(4.0)
    assert effective_rank(torch.tensor([5.0, 0.0, 0.0])) == pytest.approx(1.0)
    assert effective_rank(torch.zeros(3)) == 0.0


def test_nearest_words_by_brute_force():
    generator = torch.Generator().manual_seed(0)
    table, queries = torch.randn(40, 8, generator=generator), torch.randn(3, 8, generator=generator)
    words = [f"w{i}" for i in range(40)]
    rows = nearest_words(queries, table, lambda ids: [words[i] for i in ids], k=5, skip=(0,))
    for query, row in zip(queries, rows, strict=True):
        scored = sorted(((float(query @ table[i] / (query.norm() * table[i].norm())), words[i])
                         for i in range(1, 40)), reverse=True)[:5]
        assert [w for w, _ in row] == [w for _, w in scored]
        assert [c for _, c in row] == pytest.approx([c for c, _ in scored], abs=1e-4)


def test_prompt_tuning_lens_names_real_words_of_the_base():
    experiment = _perturbed("prompt-tuning", {"tokens": 3})
    (figure,) = [f for f in lens_report(experiment, with_forgetting=False) if f.kind == "nearest-words"]
    vocabulary = set(experiment.tokenizer.decode(list(range(1, experiment.tokenizer.vocab_size))))
    assert len(figure.table) == 3
    for row in figure.table:
        assert all(cell.split(" (")[0] in vocabulary for cell in row[1:])


def test_ia3_histograms_are_numpys():
    experiment = _perturbed("ia3")
    figures = [f for f in lens_report(experiment, with_forgetting=False) if f.kind == "gains"]
    vectors = [m.ia3_scale.detach().numpy() for m in experiment.base.modules() if hasattr(m, "ia3_scale")]
    assert len(figures) == len(vectors)
    for figure, vector in zip(figures, vectors, strict=True):
        edges = figure.arrays["edges"]
        counts, _ = np.histogram(vector, bins=len(edges) - 1, range=(edges[0], edges[-1]))
        assert figure.arrays["counts"] == counts.tolist() and sum(counts) == vector.size
        assert figure.numbers["damped"] == int((vector < 1).sum())


def test_the_bottleneck_is_the_adapters_own_layers_on_the_sentence():
    experiment = _perturbed("adapter", {"bottleneck": 5})
    sentence = "refund my order"
    figures = [f for f in lens_report(experiment, sentence, with_forgetting=False) if f.kind == "bottleneck"]
    adapters = [m for m in experiment.base.modules() if hasattr(m, "adapter_down")]
    inputs = []
    handles = [a.register_forward_pre_hook(lambda _m, args: inputs.append(args[0].detach())) for a in adapters]
    ids, mask = experiment.tokenizer.batch([sentence])
    with torch.no_grad():
        experiment.model(ids, mask)
    for handle in handles:
        handle.remove()
    assert len(figures) == len(adapters) == len(inputs)
    for figure, adapter, hidden in zip(figures, adapters, inputs, strict=True):
        with torch.no_grad():
            bottleneck = adapter.act(adapter.adapter_down(hidden))
            branch = adapter.adapter_up(bottleneck)
        assert figure.arrays["mean_abs_activation"] == pytest.approx(
            bottleneck.abs().flatten(0, -2).mean(0).tolist(), abs=1e-6)
        assert figure.numbers["branch_to_main"] == pytest.approx(float(branch.norm() / hidden.norm()), rel=1e-5)


def test_forgetting_is_zero_at_the_start_and_the_drift_from_the_detached_base_after():
    fresh = Experiment(Setup("tiny", "lora", {}, seed=0), load_builtin("intents"))
    assert forgetting(fresh).value == pytest.approx(0.0, abs=1e-7)  # B starts at zero: nothing moved
    experiment = _perturbed("lora")
    drift = forgetting(experiment).value
    ids, mask = experiment.tokenizer.batch(list(GENERAL_TEXT))
    with torch.no_grad():
        adapted = experiment.model.base(ids, mask)
        experiment.model.detach_method()
        base = experiment.base(ids, mask)
    expected = 1 - torch.nn.functional.cosine_similarity(base, adapted, dim=-1).mean()
    assert drift == pytest.approx(float(expected), rel=1e-5) and drift > 0


def test_next_token_forgetting_is_a_kl_divergence():
    experiment = _perturbed("lora", base="tiny-decoder", dataset="texts")
    value = forgetting(experiment).value
    ids, mask = experiment.tokenizer.batch(list(GENERAL_TEXT))
    with torch.no_grad():
        q = torch.log_softmax(experiment.model(ids, mask), -1)
        experiment.model.detach_method()
        p = torch.log_softmax(experiment.model(ids, mask), -1)
    kl = (p.exp() * (p - q)).sum(-1)[mask].mean()
    assert value == pytest.approx(float(kl), rel=1e-4) and value > 0


def test_bypassing_gives_the_bare_base_and_puts_every_part_back():
    experiment = _perturbed("full")
    ids, mask = experiment.tokenizer.batch(["cannot login account"])
    with torch.no_grad():
        adapted = experiment.model(ids, mask)
        with experiment.model.bypassed():
            bypassed = experiment.base(ids, mask)
        assert torch.equal(experiment.model(ids, mask), adapted)
        experiment.model.detach_method()
        assert torch.equal(experiment.base(ids, mask), bypassed)


def test_every_registered_method_has_a_lens_that_runs(capsys):
    for name in FITTING:
        figures = lens_report(_perturbed(name), "refund my order")
        assert figures[-1].kind == "forgetting", name
        assert all(isinstance(v, float) for f in figures for v in f.numbers.values()), name
        json.dumps([f.to_dict() for f in figures])  # plain values: they cross threads and files


def test_cli_lens_of_a_peft_adapter(tmp_path, capsys):
    from peft_reference import peft, transformers  # test-only references, skipped when absent

    from peft_studio.core.bases.pretrained import minilm_folder

    model = transformers.BertModel.from_pretrained(str(minilm_folder()))
    wrapped = peft.get_peft_model(model, peft.LoraConfig(r=4, lora_alpha=8, target_modules=["query"]))
    with torch.no_grad():
        for parameter in wrapped.parameters():
            if parameter.requires_grad:
                parameter.add_(0.05 * torch.randn(parameter.shape))
    wrapped.save_pretrained(str(tmp_path / "adapter"))
    assert main(["inspect", "--base", "minilm", "--import-peft", str(tmp_path / "adapter"), "--dataset", "intents",
                 "--lens", "--json"]) == 0
    lens = json.loads(capsys.readouterr().out)["lens"]
    delta = [f for f in lens if f["kind"] == "delta-w"]
    assert len(delta) == 6  # query in each of MiniLM's 6 layers
    layer = wrapped.base_model.model.encoder.layer[0].attention.self.query
    theirs = torch.linalg.svdvals(layer.lora_B["default"].weight @ layer.lora_A["default"].weight * 2.0)
    assert delta[0]["arrays"]["singular_values"][:4] == pytest.approx(theirs[:4].tolist(), rel=1e-4)
    assert delta[0]["numbers"]["numerical_rank"] == 4


def test_meta_bases_have_no_lens(capsys):
    assert main(["inspect", "--base", "llama-3-8b", "--lens"]) == 2
    assert "architecture without weights" in capsys.readouterr().err
    assert METHODS  # the registry is what the lens tests iterate over


def test_prefix_attention_share_is_the_softmax_recomputed_by_hand():
    """The lens's weights are the ones the model used: recompute layer 0's from q, k and the prefix keys."""
    import math

    experiment = _perturbed("prefix-tuning", {"tokens": 2})
    sentence = "cannot login account"
    (figure,) = [f for f in lens_report(experiment, sentence, with_forgetting=False) if f.kind == "prefix-attention"]
    ids, mask = experiment.tokenizer.batch([sentence])
    attention = experiment.base.layers[0].attn
    captured = {}
    handle = attention.register_forward_pre_hook(lambda _m, args: captured.update(x=args[0]))
    with torch.no_grad():
        experiment.model(ids, mask)
        handle.remove()
        x = captured["x"]
        q, k, v = (attention.split_heads(proj(x)) for proj in (attention.q, attention.k, attention.v))
        prefix_k, _ = attention.kv_prefix.prefix()
        heads, head_dim = q.shape[1], q.shape[-1]
        k = torch.cat([prefix_k.view(1, -1, heads, head_dim).transpose(1, 2), k], dim=2)
        probs = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(head_dim), dim=-1)[0]  # one sentence, no padding
    share = probs[:, :, :2].sum(-1).mean(-1)
    assert figure.arrays["share_by_layer_head"][0] == pytest.approx(share.tolist(), rel=1e-5)
    assert len(figure.arrays["key_row_weights"]) == 2 + ids.shape[1]  # the seed's "L -> L + n keys"
    assert sum(figure.arrays["key_row_weights"]) == pytest.approx(1.0, rel=1e-5)


def test_the_boards_lens_numbers_are_the_means_of_torch_linalg_over_the_adapted_matrices():
    from peft_studio.core.lenses.run_summary import run_lens

    experiment = _perturbed("lora", {"r": 2, "targets": "q,v"})
    ranks, sizes = [], []
    with torch.no_grad():
        for _, layer in weight_updates(experiment.base):
            w0 = layer.original_weight().float()
            singular = torch.linalg.svdvals(layer.merged_weight().float() - w0)
            p = singular / singular.sum()
            ranks.append(float(torch.exp(-(p[p > 0] * p[p > 0].log()).sum())))
            sizes.append(float(torch.linalg.matrix_norm(layer.merged_weight().float() - w0)
                               / torch.linalg.matrix_norm(w0)))
    lens = run_lens(experiment)
    assert len(ranks) == 4 and lens.note == ""
    assert lens.effective_rank == pytest.approx(sum(ranks) / len(ranks), rel=1e-4)
    assert lens.relative_norm == pytest.approx(sum(sizes) / len(sizes), rel=1e-4)
    assert lens.forgetting == forgetting(experiment).value > 0
    prompt = run_lens(_perturbed("prompt-tuning", {"tokens": 3}))
    assert prompt.effective_rank is None and prompt.relative_norm is None and prompt.forgetting > 0
    assert "no ΔW" in prompt.note and "nearest-words" in prompt.note
