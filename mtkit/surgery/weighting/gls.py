"""GLS, the geometric loss strategy (Chennupati, Sistu, Yogamani and Rawashdeh, "MultiNet++: Multi-Stream
Feature Aggregation and Geometric Loss Strategy for Multi-Task Learning", CVPR Workshops 2019).

The total is the geometric mean of the k task losses, (prod_i L_i)^(1/k), computed as exp(mean(log L)).
Its gradient is sum_i GLS / (k L_i) grad L_i: a task's effective weight is inversely proportional to its
loss, so a task with a small loss is not drowned by one with a large loss. Losses must be > 0. No state.
"""
from __future__ import annotations

import torch

from mtkit.surgery.weighting.base import LossWeighting

__all__ = ["GLS"]


class GLS(LossWeighting):
    """The geometric mean of the task losses."""

    name = "gls"
    summary = "geometric mean of the task losses"
    paper = "Chennupati et al. 2019"

    def __init__(self, tasks) -> None:
        super().__init__(tasks)

    def _check_positive(self, values: torch.Tensor) -> None:
        if not bool((values > 0).all()):
            raise ValueError(f"{self.name}: the geometric mean needs losses > 0; got {values.tolist()}.")

    def _weights(self, values, index, step, generator):
        self._check_positive(values)
        mean = torch.exp(torch.log(values).mean())  # () the geometric mean
        return mean / (values.numel() * values)  # (k,) d GLS / d L_i

    def _total(self, losses, weights, index):
        return torch.exp(torch.log(losses).mean())
