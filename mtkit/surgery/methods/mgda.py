"""MGDA: the min-norm point of the convex hull of the task gradients (Sener and Koltun, "Multi-Task
Learning as Multi-Objective Optimization", NeurIPS 2018; Desideri 2012).

Eq. (3) of the paper: min_{w >= 0, sum w = 1} |sum_i w_i g_i|^2 = w.T G w, a quadratic program on the
K x K Gram matrix. The update d = sum_i w_i g_i is a descent direction for every task (d . g_i >= |d|^2)
and is 0 exactly at a Pareto-stationary point. The paper solves the QP with Frank-Wolfe (its Algorithm 2,
run to a tolerance); we solve it exactly with non-negative least squares: with R.T R = G,

    min_{s >= 0}  |R s|^2 + (1 - sum s)^2   has the solution  s = t w*,  t = 1 / (1 + w*.T G w*),

because for s = t w (w on the simplex) the objective is t^2 q + (1 - t)^2, minimised over t at
q / (1 + q), which grows with q = w.T G w. So w* = s / sum(s).

``normalization`` scales each gradient before the solve, as in the paper's code: "none", "l2" (g_i /
|g_i|), "loss" (g_i / L_i), "loss+" (g_i / (L_i |g_i|)); the update then combines the scaled gradients.
No state.
"""
from __future__ import annotations

import torch

from mtkit.surgery.methods.base import GramWeighting, Step, Weights
from mtkit.surgery.methods.linalg import gram_root, nonneg_least_squares, normalized
from mtkit.surgery.registry import check_choice

__all__ = ["MGDA", "min_norm_weights"]

NORMALIZATIONS = ("none", "l2", "loss", "loss+")


def min_norm_weights(gram: torch.Tensor) -> torch.Tensor:
    """w (k,) on the simplex minimising w.T G w (the min-norm point of the hull is w @ rows)."""
    G, _ = normalized(gram)  # (k, k) the minimiser does not depend on the scale
    k = G.shape[0]
    A = torch.cat([gram_root(G), G.new_ones(1, k)])  # (k + 1, k) rows: R, then the "sum = 1" row
    b = torch.cat([G.new_zeros(k), G.new_ones(1)])  # (k + 1,)
    s = nonneg_least_squares(A, b)  # (k,)
    return s / s.sum()


class MGDA(GramWeighting):
    """The min-norm combination; ``normalization`` as in the paper's code (default "none")."""

    name = "mgda"
    summary = "min-norm point of the convex hull of the task gradients"
    paper = "Sener and Koltun 2018, Eq. (3)"

    def __init__(self, tasks, normalization: str = "none") -> None:
        super().__init__(tasks)
        self.normalization = check_choice(self.name, "normalization", normalization, NORMALIZATIONS)
        self.needs_losses = normalization in ("loss", "loss+")

    def weigh(self, step: Step) -> Weights:
        G = step.gram  # (k, k)
        norms = G.diagonal().clamp_min(0).sqrt()  # (k,) |g_i|
        if self.normalization == "none":
            scale = torch.ones_like(norms)
        elif self.normalization == "l2":
            scale = norms
        elif self.normalization == "loss":
            scale = step.losses
        else:  # "loss+"
            scale = step.losses * norms
        scale = torch.where(scale > 0, scale, torch.ones_like(scale))  # a zero gradient or loss stays unscaled
        w = min_norm_weights(G / (scale[:, None] * scale[None, :]))  # (k,) over the scaled gradients
        return Weights(w / scale, extra={"min_norm_weights": w.tolist()})
