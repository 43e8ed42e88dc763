"""A 2-D two-objective toy: watch a method's path through a conflicting landscape.

The classic example of the CAGrad paper (Liu et al. 2021, Figure 1, after its code), also used by the
Nash-MTL paper: two objectives of a point (x, y),

    f_i = c1(y) * (log max(|a_i(x, y)|, 5e-6) + 6)  +  c2(y) * (q_i(x, y) - 20),
    a_1 = -x/2 - 7/2 + tanh y,    a_2 = -x/2 + 7/2 - tanh y,
    q_1 = ((x - 7)^2 + (y + 8)^2 / 10) / 10,    q_2 = ((x + 7)^2 + (y + 8)^2 / 10) / 10,
    c1 = max(tanh(y/2), 0),     c2 = max(tanh(-y/2), 0).

Above y = 0 the objectives are log-shaped valleys whose gradients barely point down; below it each is a
bowl, centred at x = +7 and x = -7. The Pareto set is a curve from x = -7 to x = 7 near y = -8.4, with
the best average at (0, -8.36). Gradients are derived by hand (``objectives_and_jacobian``); ``run`` moves a
point with Adam along whatever any registered Gram method makes of the 2 x 2 Gram matrix, with the kit's
own method objects, and returns the path. ``pareto_gap`` (the norm of the min-norm point of the two
gradients' hull; 0 exactly at Pareto-stationary points) says how far a point is from the front.

Pure Python and tiny; the learners' notebook plots the paths over ``grid``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from mtkit.surgery.methods import GRAM_METHODS, GramWeighting

__all__ = ["objectives", "objectives_and_jacobian", "grid", "run", "Trajectory", "pareto_gap", "STARTS"]

LOWER = 5e-6  # the clamp inside the log
STARTS = ((-8.5, 7.5), (-8.5, -5.0), (9.0, 9.0))  # the start points of the papers' figures


def objectives_and_jacobian(x: float, y: float) -> tuple[tuple[float, float], list[list[float]]]:
    """(f1, f2) and the Jacobian [[df1/dx, df1/dy], [df2/dx, df2/dy]] at (x, y)."""
    t, th = math.tanh(y), math.tanh(y / 2)
    dt, dth = 1 - t * t, 0.5 * (1 - th * th)  # d tanh(y)/dy, d tanh(y/2)/dy
    c1, dc1 = (th, dth) if th > 0 else (0.0, 0.0)
    c2, dc2 = (-th, -dth) if th < 0 else (0.0, 0.0)
    values, rows = [], []
    for a, da_dy, centre in ((-x / 2 - 3.5 + t, dt, 7.0), (-x / 2 + 3.5 - t, -dt, -7.0)):
        if abs(a) > LOWER:
            h, dh_dx, dh_dy = math.log(abs(a)) + 6, -0.5 / a, da_dy / a  # d log|a| = da / a
        else:
            h, dh_dx, dh_dy = math.log(LOWER) + 6, 0.0, 0.0
        q = ((x - centre) ** 2 + 0.1 * (y + 8) ** 2) / 10 - 20
        dq_dx, dq_dy = (x - centre) / 5, 0.02 * (y + 8)
        values.append(c1 * h + c2 * q)
        rows.append([c1 * dh_dx + c2 * dq_dx, dc1 * h + c1 * dh_dy + dc2 * q + c2 * dq_dy])
    return (values[0], values[1]), rows


def objectives(x: float, y: float) -> tuple[float, float]:
    """(f1, f2) at (x, y)."""
    return objectives_and_jacobian(x, y)[0]


def grid(low: float = -10.0, high: float = 10.0, n: int = 201) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """X, Y (n, n) and F (2, n, n): both objectives on a square grid, for contour plots."""
    xs = np.linspace(low, high, n)
    X, Y = np.meshgrid(xs, xs)
    F = np.array([[objectives(x, y) for x, y in zip(rx, ry)] for rx, ry in zip(X, Y)])  # (n, n, 2)
    return X, Y, F.transpose(2, 0, 1)


def pareto_gap(x: float, y: float) -> float:
    """|min-norm point of conv(grad f1, grad f2)| at (x, y): 0 at a Pareto-stationary point."""
    _, J = objectives_and_jacobian(x, y)
    g1, g2 = np.array(J[0]), np.array(J[1])
    diff = g1 - g2
    denom = float(diff @ diff)
    gamma = 0.5 if denom == 0 else min(max(float((g2 - g1) @ g2) / denom, 0.0), 1.0)  # weight of g1
    return float(np.linalg.norm(gamma * g1 + (1 - gamma) * g2))


@dataclass
class Trajectory:
    method: str
    points: np.ndarray  # (N + 1, 2) the path, start included
    losses: np.ndarray  # (N + 1, 2) (f1, f2) along it


def run(method: str | GramWeighting, start: tuple[float, float] = STARTS[0], steps: int = 2000,
        lr: float = 0.01, seed: int = 0, **options) -> Trajectory:
    """Move from ``start`` for ``steps`` Adam steps (lr ``lr``, betas 0.9/0.999, eps 1e-8, as the papers'
    toy) along the update that ``method`` (a name from GRAM_METHODS with ``options``, or a method object
    built for two tasks) makes from the two objectives' gradients."""
    if isinstance(method, str):
        method = GRAM_METHODS.make(method, ["f1", "f2"], **options)
    generator = torch.Generator().manual_seed(seed)
    p = [float(start[0]), float(start[1])]
    m, v = [0.0, 0.0], [0.0, 0.0]
    points, losses = [tuple(p)], [objectives(*p)]
    for t in range(1, steps + 1):
        _, J = objectives_and_jacobian(*p)
        Jt = torch.tensor(J, dtype=torch.float64)  # (2, 2) row i: grad f_i
        G = Jt @ Jt.T  # (2, 2)
        c = method(G, None, generator, block_grams=G[None]).coefficients  # (2,), or (1, 2) per block
        c = c.reshape(-1)  # the point is one block
        d = (c @ Jt).tolist()  # the method's update
        for k in range(2):  # Adam, written out for two coordinates
            m[k] = 0.9 * m[k] + 0.1 * d[k]
            v[k] = 0.999 * v[k] + 0.001 * d[k] * d[k]
            p[k] -= lr * (m[k] / (1 - 0.9 ** t)) / (math.sqrt(v[k] / (1 - 0.999 ** t)) + 1e-8)
        points.append(tuple(p))
        losses.append(objectives(*p))
    return Trajectory(method.name, np.array(points), np.array(losses))
