"""Gradient-conflict telemetry: every number checked against one computed here from per-parameter gradients."""
from __future__ import annotations

import dataclasses
import io
import json
import math

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F

from mtkit.model.bert import BertModel
from mtkit.model.bert_config import BertConfig
from mtkit.model.names import block_of
from mtkit.surgery import GradientSurgery, GradientTelemetry, pcgrad
from mtkit.surgery.telemetry import FRAME_COLUMNS, TASK_FRAME_COLUMNS

TASKS = ["sst", "para", "sts"]
V, L = 40, 2


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def build(seed=0):
    torch.manual_seed(seed)
    config = dataclasses.replace(BertConfig.tiny(vocab_size=V), hidden_dropout_prob=0.0,
                                 attention_probs_dropout_prob=0.0)
    encoder = BertModel(config)
    heads = torch.nn.ModuleDict({t: torch.nn.Linear(config.hidden_size, 1) for t in TASKS})
    return encoder, heads


def losses(encoder, heads, seed):
    gen = torch.Generator().manual_seed(seed)
    ids = torch.randint(1, V, (3, 5), generator=gen)
    out = {}
    for k, task in enumerate(TASKS):
        h = encoder(ids if task != "sst" else torch.randint(1, V, (3, 5), generator=gen))
        x = h.pooler_output if task == "sst" else h.last_hidden_state.mean(1)
        out[task] = F.mse_loss(heads[task](x).squeeze(-1), torch.full((3,), (-1.0) ** k))
    return out


def step(encoder, heads, surgery, s, tasks=TASKS):
    for task in tasks:
        losses(encoder, heads, s)[task].backward()
        surgery.capture(task)
    info = surgery.step(s)
    encoder.zero_grad(set_to_none=True)
    heads.zero_grad(set_to_none=True)
    return info


def test_every_recorded_number_matches_an_independent_computation():
    encoder, heads = build()
    surgery = GradientSurgery(list(encoder.named_parameters()), TASKS, telemetry_every=1,
                              generator=torch.Generator().manual_seed(4), num_layers=L)
    # the expected values, from torch.autograd.grad per task and per parameter
    names = [n for n, _ in encoder.named_parameters()]
    params = list(encoder.parameters())
    per_task = []
    for task in TASKS:
        g = torch.autograd.grad(losses(encoder, heads, 0)[task], params, allow_unused=True)
        per_task.append({n: (torch.zeros_like(p) if gi is None else gi).double() for n, p, gi in zip(names, params, g)})
    for task in TASKS:
        losses(encoder, heads, 0)[task].backward()
        surgery.capture(task)
    surgery.step(0)
    update = torch.cat([p.grad.reshape(-1).double() for p in params])
    frame = surgery.telemetry.to_frame()
    assert list(frame.columns) == FRAME_COLUMNS
    blocks = ["embeddings.word", "embeddings.other", "layers.0", "layers.1", "pooler"]
    assert list(frame["block"].cat.categories) == ["all"] + blocks
    assert len(frame) == 3 * (len(blocks) + 1)

    def flat(k, block):
        return torch.cat([per_task[k][n].reshape(-1) for n in names if block in ("all", block_of(n, L))])

    conflicts_seen = 0
    for (i, j) in [(0, 1), (0, 2), (1, 2)]:
        for block in ["all"] + blocks:
            gi, gj = flat(i, block), flat(j, block)
            row = frame[(frame.task_i == TASKS[i]) & (frame.task_j == TASKS[j]) & (frame.block == block)]
            assert len(row) == 1
            row = row.iloc[0]
            assert row["dot"] == pytest.approx(float(gi @ gj), rel=1e-4, abs=1e-9)
            assert row.norm_i == pytest.approx(float(gi.norm()), rel=1e-5)
            assert row.norm_j == pytest.approx(float(gj.norm()), rel=1e-5)
            if gi.norm() > 0 and gj.norm() > 0:
                cos = float(gi @ gj / (gi.norm() * gj.norm()))
                assert row.cosine == pytest.approx(cos, abs=1e-5)
                assert bool(row.conflict) == (cos < 0)
                conflicts_seen += bool(row.conflict)
            else:  # the pooler gets no gradient from the mean-pooled tasks
                assert block == "pooler" and row.cosine != row.cosine and not row.conflict
    assert conflicts_seen > 0  # "para" and "sts" regress the same batch to opposite targets
    plain = sum(flat(k, "all") for k in range(3))
    assert frame.plain_norm.iloc[0] == pytest.approx(float(plain.norm()), rel=1e-5)
    assert frame.update_norm.iloc[0] == pytest.approx(float(update.norm()), rel=1e-5)
    assert frame.removed_norm.iloc[0] == pytest.approx(float((plain - update).norm()), rel=1e-4)
    # what surgery removed from each task's own gradient
    rows = torch.stack([flat(k, "all") for k in range(3)])
    details = pcgrad(rows, generator=torch.Generator().manual_seed(4), return_details=True)
    removed = (rows - details.weights @ rows).norm(dim=1)
    tasks = surgery.telemetry.task_frame()
    assert list(tasks.columns) == TASK_FRAME_COLUMNS
    got = tasks[tasks.block == "all"].set_index("task").loc[TASKS, "removed_norm"].to_numpy()
    np.testing.assert_allclose(got, removed.numpy(), rtol=1e-4, atol=1e-8)
    norms = tasks[tasks.block == "all"].set_index("task").loc[TASKS, "norm"].to_numpy()
    np.testing.assert_allclose(norms, rows.norm(dim=1).numpy(), rtol=1e-5)


def test_records_at_the_configured_interval_only():
    encoder, heads = build()
    surgery = GradientSurgery(encoder, TASKS, telemetry_every=3, num_layers=L)
    recorded = [step(encoder, heads, surgery, s).telemetry_recorded for s in range(7)]
    assert recorded == [True, False, False, True, False, False, True]
    assert surgery.telemetry.arrays()["steps"].tolist() == [0, 3, 6]
    assert GradientSurgery(encoder, TASKS, telemetry_every=None).telemetry_due(0) is False


def test_absent_task_has_nan_cosine_and_no_conflict():
    encoder, heads = build()
    surgery = GradientSurgery(encoder, TASKS, telemetry_every=1, num_layers=L)
    step(encoder, heads, surgery, 0, tasks=["para", "sts"])
    frame = surgery.telemetry.to_frame()
    with_sst = frame[(frame.task_i == "sst") | (frame.task_j == "sst")]
    assert with_sst.cosine.isna().all() and not with_sst.conflict.any()
    tf = surgery.telemetry.task_frame()
    assert not tf[tf.task == "sst"].present.any()


def test_save_load_roundtrip_without_pickle(tmp_path):
    encoder, heads = build()
    surgery = GradientSurgery(encoder, TASKS, telemetry_every=1, num_layers=L)
    for s in range(4):
        step(encoder, heads, surgery, s)
    path = surgery.telemetry.save(tmp_path / "run" / "telemetry")
    assert path.name == "telemetry.npz" and path.is_file()
    assert not list(path.parent.glob("*.tmp"))
    with np.load(path, allow_pickle=False) as data:  # plain arrays and a JSON header
        header = json.loads(str(data["header"]))
        assert header["tasks"] == TASKS and header["meta"]["method"] == "pcgrad"
    loaded = GradientTelemetry.load(path)
    pd.testing.assert_frame_equal(loaded.to_frame(), surgery.telemetry.to_frame())
    pd.testing.assert_frame_equal(loaded.task_frame(), surgery.telemetry.task_frame())
    assert path.stat().st_size < 4 * 1024 + 600 * len(loaded)  # compact: a few hundred bytes per record


def test_load_errors_say_what_is_wrong(tmp_path):
    with pytest.raises(FileNotFoundError, match="telemetry"):
        GradientTelemetry.load(tmp_path / "nothing.npz")
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"not a zip file")
    with pytest.raises(ValueError, match="not an mtkit gradient-telemetry file"):
        GradientTelemetry.load(bad)
    other = tmp_path / "other.npz"
    np.savez(other, x=np.zeros(3))
    with pytest.raises(ValueError, match="not an mtkit gradient-telemetry file"):
        GradientTelemetry.load(other)


def test_state_dict_loads_with_weights_only_and_truncates_on_resume():
    encoder, heads = build()
    surgery = GradientSurgery(encoder, TASKS, telemetry_every=1, num_layers=L)
    for s in range(5):
        step(encoder, heads, surgery, s)
    buffer = io.BytesIO()
    torch.save(surgery.state_dict(), buffer)
    buffer.seek(0)
    state = torch.load(buffer, weights_only=True)
    fresh = GradientSurgery(encoder, TASKS, telemetry_every=1, num_layers=L)
    fresh.load_state_dict(state)
    pd.testing.assert_frame_equal(fresh.telemetry.to_frame(), surgery.telemetry.to_frame())
    rebuilt = GradientTelemetry.from_state_dict(state["telemetry"])  # e.g. from an interrupted run's checkpoint
    pd.testing.assert_frame_equal(rebuilt.to_frame(), surgery.telemetry.to_frame())
    fresh.telemetry.truncate(2)
    assert fresh.telemetry.arrays()["steps"].tolist() == [0, 1, 2]


def test_empty_telemetry_gives_empty_frames_with_the_columns():
    telemetry = GradientTelemetry(TASKS, ["layers.0"])
    assert list(telemetry.to_frame().columns) == FRAME_COLUMNS
    assert len(telemetry.to_frame()) == 0 and len(telemetry.task_frame()) == 0
    assert "empty" in repr(telemetry)


def test_record_checks_shapes():
    telemetry = GradientTelemetry(TASKS, ["layers.0"])
    with pytest.raises(ValueError, match="block_grams"):
        telemetry.record(0, torch.zeros(2, 3, 3), torch.ones(3, dtype=torch.bool), *[torch.tensor(0.0)] * 3,
                         torch.zeros(3))


def test_conflict_rate_is_plain_to_compute_from_the_frame():
    encoder, heads = build()
    surgery = GradientSurgery(encoder, TASKS, telemetry_every=1, num_layers=L)
    for s in range(3):
        step(encoder, heads, surgery, s)
    frame = surgery.telemetry.to_frame()
    rate = frame[frame.block == "all"].groupby("step")["conflict"].mean()
    assert len(rate) == 3 and ((rate >= 0) & (rate <= 1)).all()
    assert not math.isnan(rate.iloc[0])


def test_removed_fraction_and_norm_ratio_by_hand():
    """Two blocks, three tasks: the norms come from the summed Gram matrix; an absent task is left out."""
    telemetry = GradientTelemetry(TASKS, ["layers.0", "layers.1"])
    g = torch.tensor([[3.0, 0.0], [0.0, 1.0], [-1.0, 1.0]])  # (K, 2): one coordinate per block
    grams = torch.stack([torch.outer(g[:, b], g[:, b]) for b in range(2)])  # (B, K, K)
    plain = g.sum(0).norm()
    telemetry.record(1, grams, torch.tensor([True, True, True]), plain, plain * 0.75, plain * 0.25, torch.zeros(3))
    telemetry.record(2, grams, torch.tensor([True, True, False]), torch.tensor(0.0), torch.tensor(0.0),
                     torch.tensor(0.0), torch.zeros(3))
    telemetry.record(3, grams, torch.tensor([True, False, False]), plain, plain, torch.tensor(0.0), torch.zeros(3))
    fraction, ratio = telemetry.removed_fraction(), telemetry.norm_ratio()
    assert fraction[0] == pytest.approx(0.25) and math.isnan(fraction[1]) and fraction[2] == 0.0
    assert ratio[0] == pytest.approx(3.0 / 1.0)  # |g_sst| = 3, |g_para| = 1, |g_sts| = sqrt(2)
    assert ratio[1] == pytest.approx(3.0)  # sts absent
    assert math.isnan(ratio[2])  # one task: no ratio
