"""IMTL-G, impartial multi-task learning on gradients (Liu, Li, Kuang, Xue, Chen, Yang, Liao and Zhang,
"Towards Impartial Multi-task Learning", ICLR 2021).

The update g = sum_i a_i g_i with sum_i a_i = 1 has equal projections on every task's unit gradient
u_i = g_i / |g_i|: g . u_i = g . u_j for all i, j. The paper's closed form (its Eq. for alpha, with
D = [g_1 - g_i] and U = [u_1 - u_i]) is the solution of a k x k linear system; on the Gram matrix it reads

    v = G^+ d,   d_i = |g_i| = sqrt(G_ii),   a = v / sum(v),

since then g_i . (sum_k v_k g_k) = (G v)_i = |g_i|, i.e. g . u_i = 1 / sum(v) for every i. The
pseudo-inverse (as in Quinton and Rey 2024's generalisation) also covers linearly dependent gradients.
No state.
"""
from __future__ import annotations

import torch

from mtkit.surgery.methods.base import GramWeighting, Step, Weights

__all__ = ["IMTLG"]


class IMTLG(GramWeighting):
    """Equal projection of the update on every task's unit gradient; coefficients sum to 1."""

    name = "imtl_g"
    summary = "the combination (sum 1) with equal projections on every unit task gradient"
    paper = "Liu et al. 2021 (IMTL), IMTL-G closed form"

    def __init__(self, tasks) -> None:
        super().__init__(tasks)

    def weigh(self, step: Step) -> Weights:
        G = step.gram  # (k, k)
        d = G.diagonal().clamp_min(0).sqrt()  # (k,) |g_i|
        v = torch.linalg.pinv(G) @ d  # (k,)
        total = v.sum()
        if not bool(total.abs() > 1e-12 * v.abs().sum().clamp_min(1e-300)):
            return Weights(torch.zeros_like(v))  # no combination with sum 1 has equal projections
        return Weights(v / total)
