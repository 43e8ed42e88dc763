"""Uncertainty weighting (Kendall, Gal and Cipolla, "Multi-Task Learning Using Uncertainty to Weigh Losses
for Scene Geometry and Semantics", CVPR 2018).

Each task gets a learned homoscedastic noise sigma_i; Eq. (7) of the paper, written with the log-variance
s_i = log sigma_i^2 for numerical stability (as the paper recommends):

    total = sum_i  exp(-s_i) / 2 * L_i  +  s_i / 2

A task whose loss stays large learns a large s_i and is weighted down; the s_i / 2 term stops every
weight from collapsing to 0. The effective weight is exp(-s_i) / 2. We use this form for every task (the
paper's classification variant, Eq. (10), drops the 1/2 on the loss). The s_i are ``parameters()``, trained
by the run's optimizer without weight decay (at ``lr`` when set); they are saved in ``state_dict``.
"""
from __future__ import annotations

import torch

from mtkit.surgery.registry import check_number
from mtkit.surgery.weighting.base import LossWeighting

__all__ = ["Uncertainty"]


class Uncertainty(LossWeighting):
    """``init``: the starting log-variance s_i (0: sigma = 1); ``lr``: a learning rate for the s_i (None:
    the optimizer's)."""

    name = "uncertainty"
    summary = "learned log-variances s_i: exp(-s_i)/2 L_i + s_i/2"
    paper = "Kendall et al. 2018, Eq. (7)"

    def __init__(self, tasks, init: float = 0.0, lr: float | None = None) -> None:
        super().__init__(tasks)
        init = check_number(self.name, "init", init)
        self.lr = None if lr is None else check_number(self.name, "lr", lr, 0.0, low_open=True)
        self.log_variance = torch.nn.Parameter(torch.full((len(self.tasks),), init))  # (K,) s_i

    def _weights(self, values, index, step, generator):
        return (0.5 * torch.exp(-self.log_variance.detach()[index])).to(torch.float64)  # (k,)

    def _total(self, losses, weights, index):
        s = self.log_variance[index].to(losses.dtype)  # (k,) with autograd
        return (0.5 * torch.exp(-s) * losses + 0.5 * s).sum()

    def parameters(self) -> list[torch.nn.Parameter]:
        return [self.log_variance]

    def state_dict(self) -> dict:
        return {"log_variance": self.log_variance.detach().cpu().clone()}

    def load_state_dict(self, state: dict) -> None:
        saved = torch.as_tensor(state["log_variance"])
        if saved.shape != self.log_variance.shape:
            raise ValueError(f"{self.name}: saved {saved.numel()} log-variances, this run has {len(self.tasks)} tasks.")
        with torch.no_grad():
            self.log_variance.copy_(saved)
