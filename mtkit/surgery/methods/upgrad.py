"""UPGrad, unconflicting projection of gradients (Quinton and Rey, "Jacobian Descent for Multi-Objective
Optimization", 2024).

Eq. (5)-(6) of the paper: project every task gradient onto the dual cone of all of them, the set of
directions that conflict with no task, {x : g_j . x >= 0 for all j}, and average the projections:
update = (1/k) sum_i pi(g_i). Proposition 1 writes the projection on the Gram side: pi(J.T u) = J.T v with

    v = argmin_{v >= u} v.T G v,

so with u = e_i, v = e_i + s and R.T R = G this is the non-negative least-squares problem
min_{s >= 0} |R s + R e_i|. ``per_task`` row i is the v of task i (pi(g_i) = v @ rows); the coefficients
are their mean. Because every pi(g_i) is in the dual cone, so is their mean: the update never conflicts
with any task (G @ coefficients >= 0). No options, no state.
"""
from __future__ import annotations

import torch

from mtkit.surgery.methods.base import GramWeighting, Step, Weights
from mtkit.surgery.methods.linalg import gram_root, nonneg_least_squares, normalized

__all__ = ["UPGrad", "dual_cone_weights"]


def dual_cone_weights(gram: torch.Tensor) -> torch.Tensor:
    """V (k, k): row i holds the weights of the projection of g_i onto the dual cone of the rows."""
    G, _ = normalized(gram)  # (k, k) the projection's weights do not depend on the scale
    R = gram_root(G)  # (k, k)
    eye = torch.eye(G.shape[0], dtype=G.dtype, device=G.device)
    return torch.stack([eye[i] + nonneg_least_squares(R, -R[:, i]) for i in range(G.shape[0])])  # (k, k)


class UPGrad(GramWeighting):
    """The mean of the task gradients' projections onto the dual cone of all of them."""

    name = "upgrad"
    summary = "mean of each task gradient projected onto the cone of non-conflicting directions"
    paper = "Quinton and Rey 2024, Eq. (5)-(6) and Proposition 1"

    def __init__(self, tasks) -> None:
        super().__init__(tasks)

    def weigh(self, step: Step) -> Weights:
        V = dual_cone_weights(step.gram)  # (k, k)
        return Weights(V.mean(dim=0), per_task=V)
