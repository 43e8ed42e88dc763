"""Fine-tune modes: what trains, that a frozen encoder computes no gradients and builds no graph, and the
two-stage plan and switch."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from mtkit.model.bert import BertModel
from mtkit.model.bert_config import BertConfig
from mtkit.optim import (
    FINETUNE_MODES,
    AdamW,
    Stage,
    TwoStagePlan,
    apply_finetune_mode,
    layerwise_lr_groups,
    start_stage_two,
)


@pytest.fixture(autouse=True)
def _one_thread(_torch_threads):
    """These tensors are tiny: one thread avoids the oversubscription stalls of a busy shared machine."""
    torch.set_num_threads(1)
    yield


class TinyMultitask(nn.Module):
    """Shaped like mtkit.tasks.multitask.MultitaskModel: ``encoder`` plus a ``heads`` ModuleDict."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.encoder = BertModel(BertConfig.tiny(vocab_size=100))
        self.heads = nn.ModuleDict({"sst": nn.Linear(64, 5)})

    def forward(self, input_ids):
        out = self.encoder(input_ids, attention_mask=torch.ones_like(input_ids))
        return self.heads["sst"](out.last_hidden_state.mean(dim=1)), out


def batch():
    gen = torch.Generator().manual_seed(1)
    return torch.randint(1, 100, (4, 7), generator=gen), torch.randint(0, 5, (4,), generator=gen)


def backward_once(model):
    ids, labels = batch()
    logits, out = model(ids)
    nn.functional.cross_entropy(logits, labels).backward()
    return out


def test_full_model_trains_everything():
    model = TinyMultitask()
    text = apply_finetune_mode(model, "full-model")
    assert text.startswith("full-model")
    backward_once(model)
    assert all(p.requires_grad for p in model.parameters())
    # every parameter on the path to the loss gets a gradient (the pooler is not used by mean pooling)
    assert all(p.grad is not None for n, p in model.named_parameters() if not n.startswith("encoder.pooler."))


def test_last_linear_layer_computes_no_encoder_gradients_and_builds_no_graph():
    model = TinyMultitask()
    text = apply_finetune_mode(model, "last-linear-layer")
    assert "encoder frozen" in text
    out = backward_once(model)
    assert all(p.grad is None for p in model.encoder.parameters())
    assert all(p.grad is not None for p in model.heads.parameters())
    # no autograd graph through the encoder: its outputs are plain tensors
    assert not out.last_hidden_state.requires_grad and out.last_hidden_state.grad_fn is None


def test_last_linear_layer_training_leaves_the_encoder_untouched():
    model = TinyMultitask()
    apply_finetune_mode(model, "last-linear-layer")
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    opt = AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2, weight_decay=0.1)
    for _ in range(3):
        opt.zero_grad()
        backward_once(model)
        opt.step()
    for name, p in model.named_parameters():
        if name.startswith("encoder."):
            assert torch.equal(p, before[name]), name
        else:
            assert not torch.equal(p, before[name]), name


def test_two_stage_starts_like_last_linear_layer():
    model = TinyMultitask()
    assert "stage 1" in apply_finetune_mode(model, "two-stage")
    assert not any(p.requires_grad for p in model.encoder.parameters())
    assert all(p.requires_grad for p in model.heads.parameters())


def test_full_model_after_a_frozen_mode_unfreezes():
    model = TinyMultitask()
    apply_finetune_mode(model, "last-linear-layer")
    apply_finetune_mode(model, "full-model")
    assert all(p.requires_grad for p in model.parameters())


def test_unknown_mode_lists_the_valid_ones():
    with pytest.raises(ValueError, match="'full-model', 'last-linear-layer', 'two-stage'"):
        apply_finetune_mode(TinyMultitask(), "frozen")
    assert FINETUNE_MODES == ("full-model", "last-linear-layer", "two-stage")


def test_missing_encoder_attribute_is_explained():
    with pytest.raises(ValueError, match="encoder_attr"):
        apply_finetune_mode(TinyMultitask(), "last-linear-layer", encoder_attr="bert")


def test_freezing_a_model_without_heads_is_an_error():
    class OnlyEncoder(nn.Module):
        def __init__(self):
            super().__init__()
            self.encoder = nn.Linear(2, 2)

    with pytest.raises(ValueError, match="no other parameters"):
        apply_finetune_mode(OnlyEncoder(), "last-linear-layer")


def test_plan_says_which_stage_applies():
    plan = TwoStagePlan(head_epochs=2, head_lr=1e-3, full_lr=1e-5)
    assert [plan.stage_for_epoch(e) for e in range(4)] == [
        Stage(1, "last-linear-layer", 1e-3), Stage(1, "last-linear-layer", 1e-3),
        Stage(2, "full-model", 1e-5), Stage(2, "full-model", 1e-5)]
    assert [plan.switches_at(e) for e in range(4)] == [False, False, True, False]
    with pytest.raises(ValueError, match="epoch"):
        plan.stage_for_epoch(-1)


@pytest.mark.parametrize("kwargs", [dict(head_epochs=0), dict(head_epochs=1.5), dict(head_epochs=1, head_lr=-1.0)])
def test_bad_plans_are_errors(kwargs):
    with pytest.raises(ValueError):
        TwoStagePlan(**kwargs)


def test_two_stage_run_trains_heads_then_everything():
    """A tiny end-to-end run as the trainer drives it: encoder fixed in stage 1, moving in stage 2."""
    model = TinyMultitask()
    plan = TwoStagePlan(head_epochs=2, head_lr=1e-2, full_lr=1e-3)
    apply_finetune_mode(model, "two-stage")
    opt = AdamW([p for p in model.parameters() if p.requires_grad], lr=plan.stage_for_epoch(0).lr)
    encoder_start = [p.detach().clone() for p in model.encoder.parameters()]
    for epoch in range(4):
        if plan.switches_at(epoch):
            assert all(torch.equal(a, b) for a, b in zip(encoder_start, model.encoder.parameters()))
            opt = start_stage_two(model, plan)
        opt.zero_grad()
        backward_once(model)
        opt.step()
    assert all(p.requires_grad for p in model.parameters())
    assert opt.param_groups[0]["lr"] == 1e-3
    assert len(opt.param_groups[0]["params"]) == len(list(model.parameters()))
    assert not torch.equal(encoder_start[0], model.encoder.embeddings.word_embeddings.weight)


def test_stage_two_with_layerwise_groups():
    model = TinyMultitask()
    apply_finetune_mode(model, "two-stage")
    opt = start_stage_two(model, TwoStagePlan(head_epochs=1, full_lr=2e-5),
                          make_optimizer=lambda m, lr: AdamW(layerwise_lr_groups(m, lr, 0.5).groups))
    lrs = {g["name"]: g["lr"] for g in opt.param_groups}
    assert lrs["heads.*"] == 2e-5 and lrs["encoder.embeddings.*"] == pytest.approx(2e-5 * 0.25)
