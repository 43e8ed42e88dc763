"""The plain combination: ``sum`` (update = sum_i g_i, the gradient of the summed loss) and ``mean``.

K x K formulation: coefficients = ones(k) (sum) or ones(k) / k (mean); every task keeps its own gradient, so
``per_task`` is the identity and nothing is removed. No state. This is the baseline every other method is
measured against (Kurin et al., "In Defense of the Unitary Scalarization for Deep Multi-Task Learning",
NeurIPS 2022).
"""
from __future__ import annotations

import torch

from mtkit.surgery.methods.base import GramWeighting, Step, Weights

__all__ = ["Sum", "Mean"]


class Sum(GramWeighting):
    """update = sum_i g_i: what one backward of the summed loss gives."""

    name = "sum"
    summary = "the gradient of the summed loss (no surgery)"
    paper = "-"

    def __init__(self, tasks) -> None:
        super().__init__(tasks)

    def weigh(self, step: Step) -> Weights:
        k = step.gram.shape[0]
        eye = torch.eye(k, dtype=step.gram.dtype, device=step.gram.device)  # (k, k)
        return Weights(eye.sum(dim=0), per_task=eye)


class Mean(Sum):
    """update = (1 / k) sum_i g_i over the k tasks present this step."""

    name = "mean"
    summary = "the mean of the task gradients present this step"

    def weigh(self, step: Step) -> Weights:
        total = super().weigh(step)
        return Weights(total.coefficients / step.gram.shape[0], per_task=total.per_task)
