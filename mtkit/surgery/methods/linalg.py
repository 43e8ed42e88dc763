"""Small K x K linear algebra shared by the methods: scale normalisation, a Gram square root, NNLS.

Two methods need a constrained least-squares solve on the Gram side, and both reduce to non-negative least
squares (scipy.optimize.nnls, Lawson and Hanson's active-set algorithm, exact up to rounding):

- with R any square root of G (R.T @ R = G, so |R w| = |J.T w| for every w), a quadratic form w.T G w is a
  squared norm |R w|^2, and "w >= u" or "w on the simplex" become NNLS problems (see mgda.py, upgrad.py).

Everything here is float64 on the CPU: the matrices are K x K with K a handful of tasks.
"""
from __future__ import annotations

import numpy as np
import torch
from scipy.optimize import nnls

__all__ = ["normalized", "gram_root", "nonneg_least_squares"]


def normalized(gram: torch.Tensor) -> tuple[torch.Tensor, float]:
    """G / s with s the mean squared task-gradient norm (trace / k), and s; s = 1 when G is zero.

    Every method whose weights do not depend on the gradients' common scale solves on G / s: the numbers
    stay near 1 whatever the loss scale, which keeps solver tolerances meaningful.
    """
    k = gram.shape[0]
    s = float(gram.diagonal().sum()) / max(k, 1)
    if not s > 0:
        return gram.clone(), 1.0
    return gram / s, s


def gram_root(gram: torch.Tensor) -> torch.Tensor:
    """R (k, k) with R.T @ R = G for a symmetric positive semi-definite G (tiny negative eigenvalues from
    rounding are clipped to 0)."""
    G = 0.5 * (gram + gram.T)  # (k, k) symmetrise the rounding
    lam, V = torch.linalg.eigh(G)  # G = V diag(lam) V.T
    return lam.clamp_min(0).sqrt()[:, None] * V.T  # (k, k) R = diag(sqrt lam) V.T


def nonneg_least_squares(A: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """argmin_{x >= 0} |A x - b| with scipy's NNLS; returns x in A's dtype and device."""
    x, _ = nnls(A.detach().cpu().numpy().astype(np.float64), b.detach().cpu().numpy().astype(np.float64),
                maxiter=50 * max(A.shape[1], 1))
    return torch.as_tensor(x, dtype=A.dtype, device=A.device)
