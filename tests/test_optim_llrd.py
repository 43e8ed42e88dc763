"""Layer-wise lr decay groups on the tiny config and on the default encoder: exact lr per parameter (from the
papers' rule written out here: Sun et al. 2019 and report D put the top layer at the base lr), every trainable
parameter exactly once, the no-decay set, and errors on unknown names."""
from __future__ import annotations

import re

import pandas as pd
import pytest
import torch
from torch import nn

from mtkit.model.bert import BertModel
from mtkit.model.bert_config import BertConfig
from mtkit.optim import AdamW, layerwise_lr_groups, make_scheduler
from mtkit.optim.llrd import uses_weight_decay


class TwoHeads(nn.Module):
    """Shaped like mtkit.tasks.multitask.MultitaskModel: one ``encoder`` and a ``heads`` ModuleDict."""

    def __init__(self, encoder: BertModel):
        super().__init__()
        hidden = encoder.config.hidden_size
        self.encoder = encoder
        self.heads = nn.ModuleDict({"sst": nn.Sequential(nn.Dropout(0.1), nn.Linear(hidden, 5)),
                                    "para": nn.Linear(3 * hidden, 1)})


@pytest.fixture(scope="module")
def default_encoder() -> BertModel:
    return BertModel.from_pretrained()


def expected_depth(name: str, num_layers: int) -> int:
    """Sun et al. 2019 (eta^(k-1) = xi * eta^k, the top layer k = L at the base lr) and report D (the i-th layer
    from the top at lr * xi^(i-1)), written plainly: heads and the top layer at the base lr (exponent 0), the
    pooler with the top layer, layer i (0-based from the bottom) at L - 1 - i, the embeddings one below: L."""
    if name.startswith("heads."):
        return 0
    bare = name.removeprefix("encoder.")
    if bare.startswith("pooler."):
        return 0
    if bare.startswith("embeddings."):
        return num_layers
    i = int(re.match(r"layers\.(\d+)\.", bare).group(1))  # 0 = bottom
    from_the_top = num_layers - i  # report D's i: 1 for the top layer
    return from_the_top - 1


def expected_no_decay(name: str) -> bool:
    """Biases and the three kinds of LayerNorm in minBERT, listed by hand."""
    return name.endswith(".bias") or name.endswith(("embeddings.layer_norm.weight", "attention_norm.weight",
                                                    "ffn_norm.weight"))


def group_of_each_parameter(result, model):
    names = {id(p): n for n, p in model.named_parameters()}
    placed = {}
    for group in result.groups:
        for p in group["params"]:
            assert names[id(p)] not in placed, f"{names[id(p)]} is in two groups"
            placed[names[id(p)]] = group
    return placed


def check_groups(model, result, lr, decay, weight_decay, num_layers):
    placed = group_of_each_parameter(result, model)
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert sorted(placed) == sorted(trainable)  # every trainable parameter, once
    for name in trainable:
        group = placed[name]
        depth = expected_depth(name, num_layers)
        assert group["depth"] == depth, name
        assert group["lr"] == pytest.approx(lr * decay ** depth, rel=1e-12), name
        assert group["weight_decay"] == (0.0 if expected_no_decay(name) else weight_decay), name
        assert name in result.members[group["name"]]


def test_tiny_config_lr_per_parameter():
    torch.manual_seed(0)
    model = TwoHeads(BertModel(BertConfig.tiny()))
    result = layerwise_lr_groups(model, lr=1e-3, decay=0.9, weight_decay=0.01)
    check_groups(model, result, 1e-3, 0.9, 0.01, num_layers=2)
    lrs = {g["name"]: g["lr"] for g in result.groups}
    assert lrs["heads.*"] == 1e-3
    # the top layer (and the pooler) at the base lr, as in Sun et al. 2019 and report D; then one factor per layer
    assert lrs["encoder.layers.1.*"] == 1e-3 and lrs["encoder.pooler.*"] == 1e-3
    assert lrs["encoder.layers.0.*"] == pytest.approx(9e-4) and lrs["encoder.embeddings.*"] == pytest.approx(8.1e-4)


def test_default_encoder_lr_per_parameter(default_encoder):
    model = TwoHeads(default_encoder)
    result = layerwise_lr_groups(model, lr=2e-5, decay=0.95, weight_decay=1e-4)
    check_groups(model, result, 2e-5, 0.95, 1e-4, num_layers=6)
    lrs = {g["name"]: g["lr"] for g in result.groups}
    assert lrs["encoder.layers.5.*"] == 2e-5  # the top layer: report D's i = 1, lr * 0.95^0
    assert lrs["encoder.layers.4.*"] == pytest.approx(2e-5 * 0.95)
    assert lrs["encoder.layers.0.*"] == pytest.approx(2e-5 * 0.95 ** 5)
    assert lrs["encoder.embeddings.*"] == pytest.approx(2e-5 * 0.95 ** 6)
    # heads first, then from the top of the encoder down
    assert [g["depth"] for g in result.groups] == sorted(g["depth"] for g in result.groups)


def test_bare_bert_model_with_empty_prefix(default_encoder):
    result = layerwise_lr_groups(default_encoder, lr=1e-4, decay=0.8, weight_decay=0.01, encoder_prefix="")
    check_groups(default_encoder, result, 1e-4, 0.8, 0.01, num_layers=6)
    placed = group_of_each_parameter(result, default_encoder)
    assert len(placed) == len(list(default_encoder.parameters())) == 6 * 16 + 5 + 2
    assert placed["layers.0.ffn.up.weight"]["lr"] == pytest.approx(1e-4 * 0.8 ** 5)
    assert placed["embeddings.word_embeddings.weight"]["lr"] == pytest.approx(1e-4 * 0.8 ** 6)
    assert placed["pooler.dense.weight"]["lr"] == placed["layers.5.ffn.up.weight"]["lr"] == 1e-4
    assert placed["embeddings.layer_norm.weight"]["weight_decay"] == 0.0


def test_no_decay_set_on_the_default_encoder(default_encoder):
    """Exactly biases and LayerNorm weights have weight decay 0; word embeddings and matrices keep it."""
    model = TwoHeads(default_encoder)
    result = layerwise_lr_groups(model, lr=1e-3, decay=1.0, weight_decay=0.05)
    no_decay = {n for g in result.groups if g["weight_decay"] == 0.0 for n in result.members[g["name"]]}
    expected = {n for n, _ in model.named_parameters() if expected_no_decay(n)}
    assert no_decay == expected
    assert len(expected) == 6 * 10 + 2 + 1 + 2  # per layer 6 biases + 4 norm tensors; embeddings LN; pooler; heads
    assert "encoder.embeddings.word_embeddings.weight" not in no_decay
    assert "encoder.layers.3.attention.query.weight" not in no_decay


@pytest.mark.parametrize("name, decays", [
    ("layers.0.ffn.up.bias", False), ("embeddings.layer_norm.weight", False), ("encoder.LayerNorm.weight", False),
    ("bert.encoder.layer.0.output.LayerNorm.bias", False), ("bias", False), ("layers.0.ffn_norm.weight", False),
    ("layers.0.ffn.up.weight", True), ("embeddings.word_embeddings.weight", True), ("heads.sst.1.weight", True),
])
def test_uses_weight_decay(name, decays):
    assert uses_weight_decay(name) is decays


def test_decay_one_gives_every_group_the_same_lr():
    model = TwoHeads(BertModel(BertConfig.tiny()))
    result = layerwise_lr_groups(model, lr=3e-4, decay=1.0)
    assert {g["lr"] for g in result.groups} == {3e-4}


def test_unknown_name_outside_encoder_and_heads_is_an_error():
    model = TwoHeads(BertModel(BertConfig.tiny()))
    model.shared = nn.Linear(4, 4)  # e.g. a shared layer the caller forgot to declare
    with pytest.raises(ValueError, match=r"(?s)shared\.weight.*head_prefixes"):
        layerwise_lr_groups(model, lr=1e-3, decay=0.9)
    result = layerwise_lr_groups(model, lr=1e-3, decay=0.9, head_prefixes=("heads.", "shared."))
    assert {g["lr"] for g in result.groups if g["name"].startswith("shared.")} == {1e-3}


def test_unknown_name_inside_the_encoder_is_an_error():
    model = TwoHeads(BertModel(BertConfig.tiny()))
    model.encoder.adapter = nn.Linear(4, 4)
    with pytest.raises(ValueError, match=r"(?s)encoder\.adapter\.weight.*not a minBERT encoder parameter"):
        layerwise_lr_groups(model, lr=1e-3, decay=0.9)


def test_wrong_encoder_prefix_is_an_error():
    model = TwoHeads(BertModel(BertConfig.tiny()))
    with pytest.raises(ValueError, match="no submodule 'bert'"):
        layerwise_lr_groups(model, lr=1e-3, decay=0.9, encoder_prefix="bert.")


def test_frozen_parameters_are_left_out_and_reported():
    model = TwoHeads(BertModel(BertConfig.tiny()))
    model.encoder.requires_grad_(False)
    result = layerwise_lr_groups(model, lr=1e-3, decay=0.9)
    assert {g["name"] for g in result.groups} == {"heads.*", "heads.* (no decay)"}
    assert len(result.frozen) == len(list(model.encoder.parameters()))
    assert "frozen" in str(result)


@pytest.mark.parametrize("kwargs", [dict(decay=0.0), dict(decay=-0.5), dict(lr=-1.0), dict(weight_decay=-1.0)])
def test_bad_values_are_errors(kwargs):
    settings = dict(lr=1e-3, decay=0.9, weight_decay=0.0) | kwargs
    with pytest.raises(ValueError):
        layerwise_lr_groups(TwoHeads(BertModel(BertConfig.tiny())), **settings)


def test_table_lists_every_group_with_its_counts():
    model = TwoHeads(BertModel(BertConfig.tiny()))
    result = layerwise_lr_groups(model, lr=1e-3, decay=0.5, weight_decay=0.01)
    table = result.table()
    assert isinstance(table, pd.DataFrame)
    assert list(table.columns) == ["name pattern", "parameters", "depth", "lr multiplier", "lr", "weight decay",
                                   "tensors", "parameters (numel)"]
    assert len(table) == len(result.groups)
    assert table["tensors"].sum() == len(list(model.parameters()))
    assert table["parameters (numel)"].sum() == sum(p.numel() for p in model.parameters()) == result.num_trainable
    row = table[(table["name pattern"] == "encoder.layers.0.*") & (table["parameters"] == "weights")].iloc[0]
    assert (row["depth"], row["lr multiplier"], row["lr"], row["weight decay"]) == (1, 0.5, 5e-4, 0.01)
    top = table[(table["name pattern"] == "encoder.layers.1.*") & (table["parameters"] == "weights")].iloc[0]
    assert (top["depth"], top["lr multiplier"], top["lr"]) == (0, 1.0, 1e-3)
    text = str(result)
    assert "encoder.layers.1.*" in text and "biases, norms" in text
    assert "<table" in result._repr_html_()


def test_groups_drive_adamw_and_a_scheduler_keeps_the_ratios():
    model = TwoHeads(BertModel(BertConfig.tiny()))
    result = layerwise_lr_groups(model, lr=1e-3, decay=0.5, weight_decay=0.01)
    opt = AdamW(result.groups)
    sched = make_scheduler("linear", opt, num_training_steps=10, warmup_steps=2)
    for _ in range(5):
        opt.step()
        sched.step()
    factor = opt.param_groups[0]["lr"] / 1e-3
    assert 0 < factor < 1
    for group in opt.param_groups:
        assert group["lr"] == pytest.approx(factor * 1e-3 * 0.5 ** group["depth"])
    # the descriptive keys survive a state_dict round trip
    assert [g["name"] for g in opt.state_dict()["param_groups"]] == [g["name"] for g in result.groups]


def test_head_lr_sets_the_heads_apart_from_the_encoder():
    """head_lr changes only the heads; the encoder keeps lr * decay ** depth."""
    model = TwoHeads(BertModel(BertConfig.tiny()))
    result = layerwise_lr_groups(model, lr=2e-5, decay=0.5, head_lr=1e-3)
    lrs = {g["name"]: g["lr"] for g in result.groups}
    assert lrs["heads.*"] == lrs["heads.* (no decay)"] == 1e-3
    assert lrs["encoder.layers.1.*"] == lrs["encoder.pooler.*"] == 2e-5  # the top layer keeps lr, not head_lr
    assert lrs["encoder.layers.0.*"] == pytest.approx(1e-5) and lrs["encoder.embeddings.*"] == pytest.approx(5e-6)
    assert {g["block"] for g in result.groups if g["lr"] == 1e-3} == {"heads"}
    assert "head_lr 0.001" in str(result)
    with pytest.raises(ValueError, match="head_lr"):
        layerwise_lr_groups(model, lr=2e-5, decay=0.5, head_lr=-1.0)


def test_the_trainer_gives_head_lr_to_the_heads_only():
    """The top encoder layer shares the heads' exponent (0): the trainer must not hand it head_lr too."""
    from mtkit.data.tasks import default_tasks
    from mtkit.tasks.multitask import build_model
    from mtkit.train.config import TrainConfig
    from mtkit.train.trainer import build_optimizer
    torch.manual_seed(0)
    config = TrainConfig(encoder="tiny", llrd_decay=0.5, weight_decay=0.01)
    model = build_model(config, default_tasks(), encoder=BertModel(BertConfig.tiny()))
    opt = build_optimizer(model, config, lr=2e-5, head_lr=1e-3)
    names = {id(p): n for n, p in model.named_parameters()}
    for group in opt.param_groups:
        for p in group["params"]:
            name = names[id(p)]
            want = 1e-3 if name.startswith("heads.") else 2e-5 * 0.5 ** expected_depth(name, 2)
            assert group["lr"] == pytest.approx(want, rel=1e-12), name
