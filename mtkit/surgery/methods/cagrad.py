"""CAGrad, conflict-averse gradient descent (Liu, Liu, Jin, Stone and Liu, NeurIPS 2021).

Algorithm 1 of the paper: with the average gradient g0 = (1/k) sum_i g_i and phi = c^2 |g0|^2, find the
task weights w on the simplex that minimise

    F(w) = g_w . g0 + sqrt(phi) |g_w|,      g_w = sum_i w_i g_i,

and step along d = g0 + sqrt(phi) / |g_w| * g_w: the direction within c |g0| of g0 that maximises the
worst task's improvement. On the Gram matrix g_w . g0 = w.T G 1 / k and |g_w|^2 = w.T G w, so F is a
convex function of k numbers, minimised here with scipy's SLSQP (on G / s, which leaves w and d / |d| the
same), and d has coefficients 1/k + sqrt(phi) / |g_w| * w. c = 0 gives the mean gradient.

``rescale`` is the official code's option: 0 keeps d (Algorithm 1, the default here), 1 divides it by
1 + c^2 (the official code's and LibMTL's default), 2 by 1 + c. No state.
"""
from __future__ import annotations

import numpy as np
import torch
from scipy.optimize import minimize

from mtkit.surgery.methods.base import GramWeighting, Step, Weights
from mtkit.surgery.methods.linalg import normalized
from mtkit.surgery.registry import check_choice, check_number

__all__ = ["CAGrad", "cagrad_simplex_weights"]


def cagrad_simplex_weights(gram: np.ndarray, sqrt_phi: float) -> np.ndarray:
    """argmin over the simplex of w.T G 1/k + sqrt_phi * sqrt(w.T G w), for a (k, k) float64 Gram."""
    k = gram.shape[0]
    b = gram.mean(axis=1)  # (k,) G 1 / k

    def objective(w):
        norm = np.sqrt(max(w @ gram @ w, 1e-300))
        return w @ b + sqrt_phi * norm, b + sqrt_phi * (gram @ w) / norm

    start = np.full(k, 1.0 / k)
    result = minimize(objective, start, jac=True, method="SLSQP", bounds=[(0.0, 1.0)] * k,
                      constraints=[{"type": "eq", "fun": lambda w: w.sum() - 1.0, "jac": lambda w: np.ones(k)}],
                      options={"ftol": 1e-15, "maxiter": 1000})
    w = np.clip(result.x, 0.0, None)
    return w / w.sum()


class CAGrad(GramWeighting):
    """``c``: the radius of the ball around g0, relative to |g0| (0.4 in the paper's experiments);
    ``rescale``: 0, 1 or 2 as above."""

    name = "cagrad"
    summary = "best worst-task improvement within c |g0| of the average gradient"
    paper = "Liu et al. 2021, Algorithm 1"

    def __init__(self, tasks, c: float = 0.4, rescale: int = 0) -> None:
        super().__init__(tasks)
        self.c = check_number(self.name, "c", c, 0.0)
        self.rescale = check_choice(self.name, "rescale", rescale, (0, 1, 2))

    def weigh(self, step: Step) -> Weights:
        G, _ = normalized(step.gram)  # (k, k)
        k = G.shape[0]
        mean = G.new_full((k,), 1.0 / k)  # (k,) coefficients of g0
        sqrt_phi = self.c * max(float(mean @ G @ mean), 0.0) ** 0.5  # c |g0|, in the normalised Gram's units
        coefficients = mean.clone()
        if sqrt_phi > 0:
            w = torch.as_tensor(cagrad_simplex_weights(G.cpu().numpy(), sqrt_phi), dtype=G.dtype, device=G.device)
            gw_norm = max(float(w @ G @ w), 0.0) ** 0.5
            if gw_norm > 1e-12:  # |g_w| = 0: the hull holds 0 and d / |g_w| has no direction; keep g0
                coefficients = mean + (sqrt_phi / gw_norm) * w
        if self.rescale == 1:
            coefficients = coefficients / (1 + self.c ** 2)
        elif self.rescale == 2:
            coefficients = coefficients / (1 + self.c)
        return Weights(coefficients)
