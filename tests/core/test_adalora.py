"""AdaLoRA beyond the method table: the rank allocator prunes exactly the triplets PEFT's prunes, step for step;
the orthogonality penalty is PEFT's; a trained, pruned adapter goes to PEFT and back with the same outputs; one
pruned by PEFT imports with PEFT's per-module ranks; the live rank grid follows the schedule."""

from __future__ import annotations

import copy
import json

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from peft_reference import PEFT_WARNINGS, peft
from test_hf_peft_family import TEXTS, bert, dataset

from peft_studio.core.errors import ConfigError
from peft_studio.core.interop.hf_peft import export_peft, import_peft
from peft_studio.core.methods.adalora import SvdLinear, orthogonality_penalty
from peft_studio.core.methods.rank_allocation import RankAllocator, RankGrid
from peft_studio.core.model.experiment import Experiment, Setup
from peft_studio.core.runs.train import TrainSettings, train

pytestmark = PEFT_WARNINGS


@pytest.fixture(scope="module")
def folder():
    from peft_studio.core.bases.pretrained import minilm_folder

    return str(minilm_folder())


class Blocks(torch.nn.Module):
    """A small model of named Linears for PEFT to adapt (targets q and v)."""

    def __init__(self) -> None:
        super().__init__()
        self.blocks = torch.nn.ModuleList(
            torch.nn.ModuleDict({"q": torch.nn.Linear(6, 5), "v": torch.nn.Linear(6, 7)}) for _ in range(3))

    def forward(self, x):
        return sum(block[name](x).pow(2).sum() for block in self.blocks for name in ("q", "v"))


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(init_r=st.integers(2, 5), target_r=st.integers(1, 4), tinit=st.integers(0, 3), tfinal=st.integers(0, 3),
       delta_t=st.integers(1, 3), beta1=st.sampled_from([0.5, 0.85]), beta2=st.sampled_from([0.7, 0.85]),
       seed=st.integers(0, 1000))
def test_the_allocator_prunes_what_peft_prunes_step_for_step(init_r, target_r, tinit, tfinal, delta_t, beta1,
                                                              beta2, seed):
    total = tinit + tfinal + 6
    target_r = min(target_r, init_r - 1)
    torch.manual_seed(seed)
    model = Blocks()
    config = peft.AdaLoraConfig(init_r=init_r, target_r=target_r, tinit=tinit, tfinal=tfinal, deltaT=delta_t,
                                beta1=beta1, beta2=beta2, total_step=total, target_modules=["q", "v"])
    theirs = peft.get_peft_model(copy.deepcopy(model), config)
    peft_layers = [block[name] for block in theirs.base_model.model.blocks for name in ("q", "v")]
    ours = [SvdLinear(block[name], init_r, init_r, 8.0, 0.0) for block in model.blocks for name in ("q", "v")]
    allocator = RankAllocator(target_r, tinit, tfinal, delta_t, beta1, beta2, total)
    allocator.start(ours, end_step=total)
    with torch.no_grad():
        for mine, peft_layer in zip(ours, peft_layers, strict=True):
            for leaf in ("lora_A", "lora_B", "lora_E"):
                getattr(peft_layer, leaf)["default"].add_(0.3 * torch.randn(getattr(mine, leaf).shape))
                getattr(mine, leaf).copy_(getattr(peft_layer, leaf)["default"])
    for step in range(total + 2):
        x = torch.randn(4, 6)
        sum(layer(x).pow(2).mean() for layer in peft_layers).backward()
        with torch.no_grad():
            for mine, peft_layer in zip(ours, peft_layers, strict=True):
                for leaf in ("lora_A", "lora_B", "lora_E"):
                    theirs_p, mine_p = getattr(peft_layer, leaf)["default"], getattr(mine, leaf)
                    mine_p.grad = theirs_p.grad.clone()
                    theirs_p.sub_(0.01 * theirs_p.grad)
                    mine_p.sub_(0.01 * mine_p.grad)
        theirs.base_model.update_and_allocate(step)
        allocator.update_and_allocate(ours, step)
        theirs.zero_grad()
        pattern = theirs.peft_config["default"].rank_pattern
        for index, (mine, peft_layer) in enumerate(zip(ours, peft_layers, strict=True)):
            assert torch.equal(mine.lora_E, peft_layer.lora_E["default"]), (step, index)
            if pattern:
                key = f"blocks.{index // 2}.{'qv'[index % 2]}.lora_E.default"
                assert mine.kept.tolist() == pattern[key], (step, key)
            else:
                assert mine.kept is None


def test_the_orthogonality_penalty_is_peft_s():
    torch.manual_seed(0)
    model = Blocks()

    class WithLoss(torch.nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, x):
            from types import SimpleNamespace

            return SimpleNamespace(loss=self.inner(x) * 0.0)  # a zero task loss: PEFT's loss is its penalty

    config = peft.AdaLoraConfig(init_r=3, target_r=2, total_step=10, target_modules=["q", "v"],
                                orth_reg_weight=0.7)
    theirs = peft.get_peft_model(WithLoss(copy.deepcopy(model)), config)
    x = torch.randn(2, 6)
    with torch.no_grad():
        for parameter in theirs.parameters():
            if parameter.requires_grad:
                parameter.add_(torch.randn(parameter.shape))
        penalty = theirs.base_model(x).loss  # AdaLoraModel.forward adds the penalty to the model's loss
    layers = [module for module in theirs.modules() if type(module).__name__ == "SVDLinear"]
    ours = []
    for layer in layers:
        mine = SvdLinear(layer.base_layer, 3, 3, 8.0, 0.0)
        with torch.no_grad():
            for leaf in ("lora_A", "lora_B", "lora_E"):
                getattr(mine, leaf).copy_(getattr(layer, leaf)["default"])
        ours.append(mine)
    assert torch.allclose(0.7 * orthogonality_penalty(ours), penalty, rtol=1e-6)


def _trained(options, steps=6):
    experiment = Experiment(Setup("minilm", "adalora", options, seed=2), dataset())
    events = list(train(experiment, TrainSettings(steps=steps, lr=0.05, batch_size=8, track_grads=False)))
    return experiment, events


def test_training_prunes_to_the_budget_and_reports_the_grid():
    options = {"init_r": 4, "target_r": 2, "tinit": 1, "tfinal": 2, "targets": "q,v,o", "layers": "0,1"}
    experiment, events = _trained(options, steps=8)
    first, last = (RankGrid.from_plain(e.method_state["rank_grid"]) for e in (events[0], events[-1]))
    assert first.total == 4 * 6 and first.budget == 4 * 6  # tinit: every triplet, the whole budget
    assert last.budget == 2 * 6 and last.total <= 2 * 6  # after total_step - tfinal: target_r per Linear
    assert len(last.lines()) == 2 + len(last.layers)
    for module in experiment.base.modules():
        if isinstance(module, SvdLinear):  # held after the final pattern: the pruned triplets stay at zero
            assert torch.equal(module.lora_E.view(-1)[~module.kept], torch.zeros(int((~module.kept).sum())))


def test_a_pruned_adapter_goes_to_peft_and_back_with_the_same_outputs(tmp_path, folder):
    experiment, _ = _trained({"init_r": 4, "target_r": 1, "tfinal": 1, "deltaT": 2, "total_step": 7}, steps=5)
    out = export_peft(experiment, tmp_path / "pruned")
    config = json.loads((out / "adapter_config.json").read_text())
    assert config["rank_pattern"] and any(not all(mask) for mask in config["rank_pattern"].values())
    wrapped = peft.PeftModel.from_pretrained(bert(folder), str(out)).eval()
    ids, mask = experiment.tokenizer.batch(TEXTS)
    experiment.model.eval()
    with torch.no_grad():
        theirs = wrapped(input_ids=ids, attention_mask=mask.long()).last_hidden_state
        ours, _ = experiment.base.encode(ids, mask)
        assert (theirs - ours)[mask.bool()].abs().max() <= 1e-5
        logits = experiment.model(ids, mask)
    again = import_peft(Setup("minilm", seed=9), out, dataset())  # per-site ranks: PEFT's resized layers
    assert again.config.rank_pattern
    assert again.method_parameter_count() == sum(p.numel() for n, p in wrapped.named_parameters() if "lora_" in n)
    again.model.eval()
    with torch.no_grad():
        assert (again.model(ids, mask) - logits).abs().max() <= 1e-5


def test_an_adapter_pruned_by_peft_imports_with_its_ranks(tmp_path, folder):
    config = peft.AdaLoraConfig(init_r=3, target_r=1, total_step=4, tfinal=1, target_modules=["query", "value"],
                                task_type="FEATURE_EXTRACTION")
    wrapped = peft.get_peft_model(bert(folder), config)
    optimizer = torch.optim.Adam([p for p in wrapped.parameters() if p.requires_grad], lr=0.05)
    ids = torch.randint(1000, 2000, (3, 6))
    for step in range(4):
        wrapped(input_ids=ids).last_hidden_state.pow(2).mean().backward()
        optimizer.step()
        wrapped.base_model.update_and_allocate(step)
        optimizer.zero_grad()
    wrapped.save_pretrained(str(tmp_path / "peft"))
    loaded = peft.PeftModel.from_pretrained(bert(folder), str(tmp_path / "peft")).eval()
    experiment = import_peft(Setup("minilm", seed=1), tmp_path / "peft", dataset())
    assert experiment.config.rank_pattern  # some Linear has fewer than init_r triplets, as in PEFT's loaded model
    assert experiment.method_parameter_count() == sum(p.numel() for n, p in loaded.named_parameters()
                                                      if "lora_" in n)
    ids, mask = experiment.tokenizer.batch(TEXTS)
    experiment.model.eval()
    with torch.no_grad():
        theirs = loaded(input_ids=ids, attention_mask=mask.long()).last_hidden_state
        ours, _ = experiment.base.encode(ids, mask)
    assert (theirs - ours)[mask.bool()].abs().max() <= 1e-5


def test_a_schedule_with_no_pruning_phase_is_refused_before_training():
    with pytest.raises(ConfigError, match="tinit"):
        Experiment(Setup("tiny", "adalora", {"tinit": 5, "tfinal": 5, "total_step": 10}), dataset())
    experiment = Experiment(Setup("tiny", "adalora", {"tinit": 5, "tfinal": 5}), dataset())
    before = {n: p.detach().clone() for n, p in experiment.model.named_parameters()}
    with pytest.raises(ConfigError, match="tinit"):
        list(train(experiment, TrainSettings(steps=10)))
    assert all(torch.equal(p, before[n]) for n, p in experiment.model.named_parameters())
    with pytest.raises(ConfigError, match="nothing to prune"):
        list(train(Experiment(Setup("tiny", "adalora", {"init_r": 4, "target_r": 4}), dataset()),
                   TrainSettings(steps=3)))
