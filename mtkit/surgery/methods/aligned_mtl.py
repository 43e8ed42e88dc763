"""Aligned-MTL, independent component alignment (Senushkin, Patakin, Kuznetsov and Konushin,
"Independent Component Alignment for Multi-Task Learning", CVPR 2023).

Algorithm 1 of the paper makes the task gradients' matrix well conditioned before combining them: with
the eigendecomposition G = V diag(lambda) V.T of the Gram matrix (the squared singular values of the
Jacobian) restricted to its rank r, the balance transformation

    B = sqrt(lambda_min) * V diag(1 / sqrt(lambda)) V.T      (k, k)

turns J into B J, whose non-zero singular values all equal sqrt(lambda_min) (condition number 1). The
update is (B J).T w = J.T (B w) for preference weights w, uniform 1/k here, so the coefficients are B w.
``scale``: which eigenvalue sets the common singular value: "min" (the paper), "median", or "mean". No
state.
"""
from __future__ import annotations

import torch

from mtkit.surgery.methods.base import GramWeighting, Step, Weights
from mtkit.surgery.registry import check_choice

__all__ = ["AlignedMTL"]


class AlignedMTL(GramWeighting):
    """Combine the rows of the aligned Jacobian B J with uniform preference weights."""

    name = "aligned_mtl"
    summary = "align the task gradients to condition number 1, then average"
    paper = "Senushkin et al. 2023, Algorithm 1"

    def __init__(self, tasks, scale: str = "min") -> None:
        super().__init__(tasks)
        self.scale = check_choice(self.name, "scale", scale, ("min", "median", "mean"))

    def weigh(self, step: Step) -> Weights:
        G = step.gram  # (k, k)
        k = G.shape[0]
        preference = G.new_full((k,), 1.0 / k)  # (k,) w
        lam, V = torch.linalg.eigh(0.5 * (G + G.T))  # ascending eigenvalues
        tol = lam.max().clamp_min(0) * k * torch.finfo(G.dtype).eps
        keep = lam > tol  # the rank-r part
        if not bool(keep.any()):
            return Weights(preference.clone())  # every gradient is zero: nothing to align
        lam, V = lam[keep], V[:, keep]  # (r,), (k, r)
        if self.scale == "min":
            sigma2 = lam.min()
        elif self.scale == "median":
            sigma2 = lam.median()
        else:
            sigma2 = lam.mean()
        B = sigma2.sqrt() * (V / lam.sqrt()) @ V.T  # (k, k) sqrt(lambda_min) V diag(lambda^-1/2) V.T
        return Weights(B @ preference)
