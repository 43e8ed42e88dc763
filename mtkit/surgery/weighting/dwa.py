"""DWA, dynamic weight average (Liu, Johns and Davison, "End-to-End Multi-Task Learning with Attention",
CVPR 2019).

Eq. (1)-(2) of the paper: a task whose loss fell slowly over the last epoch gets more weight,

    w_i(t) = K exp(r_i(t-1) / T) / sum_j exp(r_j(t-1) / T),     r_i(t-1) = L_i(t-1) / L_i(t-2),

with L_i the task's mean training loss over an epoch and temperature T (2 in the paper); w_i = 1 for the
first two epochs. A task with no batch in one of those epochs gets r_i = 1 (no change seen). State: the
last two epochs' mean losses and the number of epochs seen.
"""
from __future__ import annotations

import torch

from mtkit.surgery.registry import check_number
from mtkit.surgery.weighting.base import LossWeighting

__all__ = ["DWA"]


class DWA(LossWeighting):
    """``temperature``: T, > 0 (larger: weights closer to 1)."""

    name = "dwa"
    summary = "softmax of each task's last-epoch loss ratio / T"
    paper = "Liu et al. 2019, Eq. (1)-(2)"

    def __init__(self, tasks, temperature: float = 2.0) -> None:
        super().__init__(tasks)
        self.temperature = check_number(self.name, "temperature", temperature, 0.0, low_open=True)
        self.history = torch.full((2, len(self.tasks)), float("nan"), dtype=torch.float64)  # (2, K) [t-2, t-1]
        self.epochs = 0

    def on_epoch_end(self, mean_losses: torch.Tensor) -> None:
        mean = torch.as_tensor(mean_losses, dtype=torch.float64).reshape(-1).cpu()
        if mean.shape != (len(self.tasks),):
            raise ValueError(f"{self.name}: on_epoch_end needs one mean loss per task ({len(self.tasks)},); "
                             f"got {tuple(mean.shape)}.")
        self.history = torch.stack([self.history[1], mean])
        self.epochs += 1

    def _weights(self, values, index, step, generator):
        K = len(self.tasks)
        if self.epochs < 2:
            return torch.ones(index.numel(), dtype=torch.float64, device=values.device)
        ratio = self.history[1] / self.history[0]  # (K,) r_i(t-1)
        ratio = torch.where(torch.isfinite(ratio), ratio, torch.ones_like(ratio))
        return (K * torch.softmax(ratio / self.temperature, dim=0)).to(values.device)[index]  # (k,)

    def state_dict(self) -> dict:
        return {"history": self.history.clone(), "epochs": self.epochs}

    def load_state_dict(self, state: dict) -> None:
        self.history = torch.as_tensor(state["history"], dtype=torch.float64).clone()
        self.epochs = int(state["epochs"])
