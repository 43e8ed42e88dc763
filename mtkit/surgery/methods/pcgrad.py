"""PCGrad on the Gram matrix (Yu et al., "Gradient Surgery for Multi-Task Learning", NeurIPS 2020).

Algorithm 1 of the paper: each task i visits the other tasks j in a fresh random order and, when
g_i^PC . g_j < 0, removes the conflicting component, g_i^PC <- g_i^PC - (g_i^PC . g_j) / |g_j|^2 g_j; the
update is sum_i g_i^PC. Every g_i^PC stays a combination W[i] @ rows of the original gradients, so the
whole algorithm runs on the K x K Gram matrix: ``pcgrad_weights`` and ``visit_orders`` of
``mtkit.surgery.pcgrad`` (the pure functions notebook 09 teaches) do the work, and this class only puts
them behind the common contract. ``per_task`` is W. State: none (the random orders come from the
driver's generator, which the driver checkpoints).

Taught in notebooks/09_gradient_surgery.ipynb.
"""
from __future__ import annotations

from mtkit.surgery.methods.base import GramWeighting, Step, Weights
from mtkit.surgery.pcgrad import DEFAULT_EPS, REDUCTIONS, pcgrad_weights, visit_orders
from mtkit.surgery.registry import check_choice, check_number

__all__ = ["PCGrad"]


class PCGrad(GramWeighting):
    """``reduction``: "sum" (the paper) or "mean" (divides by the tasks present); ``eps`` is added to
    |g_j|^2 in the projection's denominator."""

    name = "pcgrad"
    summary = "project each task's gradient off the ones it conflicts with, in random order"
    paper = "Yu et al. 2020, Algorithm 1"
    stochastic = True

    def __init__(self, tasks, reduction: str = "sum", eps: float = DEFAULT_EPS) -> None:
        super().__init__(tasks)
        self.reduction = check_choice(self.name, "reduction", reduction, REDUCTIONS)
        self.eps = check_number(self.name, "eps", eps, 0.0)

    def weigh(self, step: Step) -> Weights:
        k = step.gram.shape[0]
        orders = visit_orders(k, step.generator, device=step.gram.device)  # (k, k - 1)
        W = pcgrad_weights(step.gram, orders, self.eps)  # (k, k) row i: g_i^PC = W[i] @ rows
        coefficients = W.sum(dim=0)  # (k,) update = sum_i g_i^PC
        if self.reduction == "mean":
            coefficients = coefficients / k
        return Weights(coefficients, per_task=W)
