"""The 2-D two-objective toy of the CAGrad and Nash-MTL papers: its hand-derived gradients, and the
behaviour the papers show, reproduced with the kit's own method objects (Adam, lr 0.01)."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from mtkit.surgery import toy
from mtkit.surgery.methods import GRAM_METHODS

LOWER_START, UPPER_STARTS = toy.STARTS[1], (toy.STARTS[0], toy.STARTS[2])


def autograd_objectives(x: float, y: float):
    """The objectives written as the CAGrad paper's code does, with torch ops, for autograd."""
    p = torch.tensor([x, y], dtype=torch.float64, requires_grad=True)
    x1, x2 = p[0], p[1]
    c1, c2 = torch.clamp(torch.tanh(x2 * 0.5), 0), torch.clamp(torch.tanh(-x2 * 0.5), 0)
    h1 = torch.clamp((0.5 * (-x1 - 7) - torch.tanh(-x2)).abs(), toy.LOWER).log() + 6
    h2 = torch.clamp((0.5 * (-x1 + 3) + torch.tanh(-x2) + 2).abs(), toy.LOWER).log() + 6
    q1 = ((-x1 + 7) ** 2 + 0.1 * (-x2 - 8) ** 2) / 10 - 20
    q2 = ((-x1 - 7) ** 2 + 0.1 * (-x2 - 8) ** 2) / 10 - 20
    f = torch.stack([h1 * c1 + q1 * c2, h2 * c1 + q2 * c2])
    rows = [torch.autograd.grad(f[i], p, retain_graph=True)[0].tolist() for i in range(2)]
    return f.tolist(), rows


@pytest.mark.parametrize("seed", range(20))
def test_hand_derived_gradients_match_autograd(seed):
    x, y = np.random.default_rng(seed).uniform(-10, 10, size=2)
    values, rows = toy.objectives_and_jacobian(float(x), float(y))
    ref_values, ref_rows = autograd_objectives(float(x), float(y))
    assert values == pytest.approx(ref_values, rel=1e-12)
    assert np.allclose(rows, ref_rows, rtol=1e-10, atol=1e-12)


def test_grid_and_trajectory_shapes():
    X, Y, F = toy.grid(n=11)
    assert X.shape == Y.shape == (11, 11) and F.shape == (2, 11, 11)
    path = toy.run("sum", steps=5)
    assert path.points.shape == (6, 2) and path.losses.shape == (6, 2) and path.method == "sum"
    assert tuple(path.points[0]) == toy.STARTS[0]


def test_pareto_gap_is_zero_where_the_gradients_oppose():
    x, y = 0.0, -8.3552  # the best average, on the front
    assert toy.pareto_gap(x, y) < 1e-5 and toy.pareto_gap(0.0, 3.0) > 0.1


def end(path):
    x, y = path.points[-1]
    return x, y, toy.pareto_gap(x, y), float(path.losses[-1].mean())


def test_mgda_and_pcgrad_stop_at_an_end_of_the_front_cagrad_finds_the_best_average():
    """CAGrad, Figure 1: from (-8.5, -5) MGDA and PCGrad reach a Pareto point near the left end of the
    front, far from the best average; CAGrad (c = 0.5 as in that figure) converges to it."""
    for name in ("mgda", "pcgrad"):
        x, y, gap, mean = end(toy.run(name, LOWER_START, steps=2000))
        assert gap < 1e-3 and x < -5 and mean > -11.5, name
    x, y, gap, mean = end(toy.run("cagrad", LOWER_START, steps=3000, c=0.5))
    assert gap < 1e-3 and abs(x) < 0.1 and mean < -15.05


def test_the_summed_loss_is_slow_from_the_upper_starts_nash_mtl_is_not():
    """From the two upper starts the summed loss crawls along the flat log valleys: after 3000 steps it is
    still off the front while Nash-MTL (whose update has norm sqrt(K) whatever the gradients' scale) is on
    it; given twice the steps, the summed loss gets there too (slow, not stuck, at this learning rate)."""
    for start in UPPER_STARTS:
        assert end(toy.run("nash_mtl", start, steps=3000))[2] < 0.01
        summed = toy.run("sum", start, steps=6000)
        gap_at_3000 = toy.pareto_gap(*summed.points[3000])
        assert gap_at_3000 > 0.01 and end(summed)[2] < 0.01


def test_adam_step_matches_torch_adam():
    """The toy's hand-written Adam is torch.optim.Adam's update."""
    path = toy.run("mean", toy.STARTS[0], steps=25, lr=0.05)
    p = torch.tensor(toy.STARTS[0], dtype=torch.float64, requires_grad=True)
    optimizer = torch.optim.Adam([p], lr=0.05)
    for _ in range(25):
        _, J = toy.objectives_and_jacobian(*p.tolist())
        p.grad = torch.tensor(J, dtype=torch.float64).mean(dim=0)
        optimizer.step()
    assert np.allclose(path.points[-1], p.detach().numpy(), rtol=1e-12, atol=1e-12)
    assert math.isfinite(path.losses[-1].sum())


@pytest.mark.parametrize("name", list(GRAM_METHODS))
def test_every_method_runs_on_the_toy(name):
    options = {"main_task": "f1"} if name == "main_aux" else {}
    path = toy.run(name, toy.STARTS[0], steps=40, **options)
    assert np.isfinite(path.points).all() and np.isfinite(path.losses).all()
    assert not np.allclose(path.points[-1], path.points[0])  # it moved
