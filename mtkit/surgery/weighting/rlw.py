"""RLW, random loss weighting (Lin, Ye, Xu, Shi and Zhang, "Reasonable Effectiveness of Random Weighting: A
Litmus Test for Multi-Task Learning", TMLR 2022).

Each step weights the losses with lambda = softmax(z), z ~ N(0, I_k) (the paper's default), drawn fresh
from the generator; the gradient is sum_i lambda_i g_i, the same update as RGW with one backward. No state.
"""
from __future__ import annotations

from mtkit.surgery.methods.rgw import random_simplex_weights
from mtkit.surgery.weighting.base import LossWeighting

__all__ = ["RLW"]


class RLW(LossWeighting):
    """Random convex loss weights, drawn fresh every step."""

    name = "rlw"
    summary = "random loss weights softmax(N(0, I)), drawn every step"
    paper = "Lin et al. 2022"
    stochastic = True

    def __init__(self, tasks) -> None:
        super().__init__(tasks)

    def _weights(self, values, index, step, generator):
        return random_simplex_weights(index.numel(), generator, device=values.device)  # (k,)
