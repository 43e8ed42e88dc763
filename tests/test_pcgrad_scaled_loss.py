"""PCGrad when one task's loss is scaled up (notebook 09's last lesson): what the telemetry shows and what changes.

- the math: with two tasks PCGrad removes exactly |cos| of the plain sum whatever the norms, while what it removes
  grows with the big task's norm, past the small task's whole gradient;
- in a real training run (tiny minBERT, the demo data): a task's loss weight reaches the per-task gradients that
  surgery and telemetry see, so the norm ratio and the removed norm relative to the smallest task grow with it,
  and PCGrad's final weights differ from the plain run's.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

from mtkit.surgery.pcgrad import pcgrad
from mtkit.train.config import TrainConfig
from mtkit.train.trainer import Trainer


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny models gain nothing from a second thread (and lose much on a busy machine)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.mark.parametrize("scale", [1.0, 10.0, 100.0])
def test_two_tasks_pcgrad_removes_the_cosine_share_of_the_plain_sum_at_any_scale(scale):
    gen = torch.Generator().manual_seed(0)
    g1 = torch.randn(500, generator=gen, dtype=torch.float64)
    g2 = -0.3 * g1 + torch.randn(500, generator=gen, dtype=torch.float64)  # conflicting: cos < 0
    grads = torch.stack([scale * g1, g2])  # (2, P): task 1's loss scaled
    cos = torch.nn.functional.cosine_similarity(g1, g2, dim=0)
    assert cos < -0.1
    plain = grads.sum(0)
    removed = (plain - pcgrad(grads, generator=torch.Generator().manual_seed(1))).norm()
    assert removed / plain.norm() == pytest.approx(abs(cos.item()), rel=1e-9)  # the same share at every scale
    assert removed / g2.norm() == pytest.approx(abs(cos.item()) * (plain.norm() / g2.norm()).item(), rel=1e-9)
    if scale >= 10:
        assert removed > g2.norm()  # what surgery takes away outweighs the small task's whole gradient


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    from mtkit.data.demo import write_demo_data
    return write_demo_data(tmp_path_factory.mktemp("demo"), seed=0, sizes={"train": 32, "dev": 16, "test": 8})


def run(demo, tmp_path, surgery, sst_weight):
    tasks = {"sst": {"weight": sst_weight}, "para": {}, "sts": {}}
    config = TrainConfig(encoder="tiny", data_dir=str(demo), output_dir=str(tmp_path / f"{surgery}-{sst_weight}"),
                         tasks=tasks, schedule="equal", surgery=surgery, telemetry_every=1, train_limit=32,
                         dev_limit=16, batch_size=8, epochs=1, lr=1e-3, dropout=0.0, encoder_dropout=0.0, seed=1,
                         progress=False, write_predictions=False)
    trainer = Trainer(config, verbose=False)
    result = trainer.fit()
    weights = torch.cat([p.detach().flatten() for p in trainer.model.encoder.parameters()])
    return trainer.surgery.telemetry, weights, result


def removed_over_smallest(telemetry) -> np.ndarray:
    tasks = telemetry.task_frame()
    smallest = tasks[tasks["block"].astype(str) == "all"].groupby("step")["norm"].min().to_numpy()  # (S,)
    return telemetry.arrays()["norms"][:, 2] / smallest


def test_a_scaled_loss_dominates_the_step_and_pcgrad_then_changes_the_weights(demo, tmp_path):
    runs = {(s, w): run(demo, tmp_path, s, w) for s in ("none", "pcgrad") for w in (1.0, 10.0)}
    (t1, _, _), (t10, _, _) = runs["pcgrad", 1.0], runs["pcgrad", 10.0]
    # step 1 starts from the same weights and batches: the scaled task's gradient is exactly 10x larger
    norms1 = t1.task_frame().query("step == 1 and block == 'all'").set_index("task")["norm"]
    norms10 = t10.task_frame().query("step == 1 and block == 'all'").set_index("task")["norm"]
    assert norms10["sst"] == pytest.approx(10 * norms1["sst"], rel=1e-4)
    assert norms10["para"] == pytest.approx(norms1["para"], rel=1e-4)
    assert t10.norm_ratio()[0] > 5 * t1.norm_ratio()[0]
    # there was conflict to remove, and relative to the smallest task it grows with the scale
    assert (t1.removed_fraction() > 0).any() and (t10.removed_fraction() > 0).any()
    assert removed_over_smallest(t10)[0] > 3 * removed_over_smallest(t1)[0]
    assert np.allclose(runs["none", 10.0][0].removed_fraction(), 0.0)  # the plain run removes nothing
    # the outcome: PCGrad's final encoder differs from the plain run's, under the scaling as without it
    for w in (1.0, 10.0):
        plain, surgery = runs["none", w][1], runs["pcgrad", w][1]
        assert (surgery - plain).norm() / plain.norm() > 1e-4, f"sst weight {w}: PCGrad changed nothing"
    for key, (_, _, result) in runs.items():
        assert np.isfinite(result.best["overall"]), key
