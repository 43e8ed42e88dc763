"""FAMO, fast adaptive multitask optimization (Liu, Liu, Jin, Stone and Liu, NeurIPS 2023).

FAMO balances the tasks' *rates* of loss decrease without per-task gradients. Task weights are
z = softmax(xi) over learned logits xi; the step descends sum_i z_i log L_i, normalised (Eq. (4)-(5) of the
paper): with c = sum_j z_j / L_j, the effective loss weights are w_i = z_i / (c L_i), which sum to 1. After
the optimizer step, the change of each task's log-loss on the same batches, delta_i = log L_i(t) -
log L_i(t+1), says which tasks improved; the logits move so that the ones that improved least gain weight
(Eq. (6)): the gradient of xi is J_softmax(xi).T delta = z * (delta - z . delta), applied with Adam at
rate ``lr`` and weight decay ``gamma``, as in the paper's code. Losses must be >= 0 (``eps`` is added
before the log). State: the logits, their Adam state, and the last step's losses.

The trainer calls ``after_step(new_losses)`` after ``optimizer.step()``; the paper's code computes them
with a no-grad forward of the same batches under the new parameters.
"""
from __future__ import annotations

import torch

from mtkit.surgery.registry import check_number
from mtkit.surgery.weighting.base import LossWeighting

__all__ = ["FAMO"]


class FAMO(LossWeighting):
    """``lr``: Adam's rate for the logits; ``gamma``: their weight decay; ``eps``: added to each loss."""

    name = "famo"
    summary = "logits over tasks, updated after each step from the change of the log-losses"
    paper = "Liu et al. 2023, Eq. (4)-(6)"

    def __init__(self, tasks, lr: float = 0.025, gamma: float = 0.001, eps: float = 1e-8) -> None:
        super().__init__(tasks)
        self.lr = check_number(self.name, "lr", lr, 0.0, low_open=True)
        self.gamma = check_number(self.name, "gamma", gamma, 0.0)
        self.eps = check_number(self.name, "eps", eps, 0.0)
        K = len(self.tasks)
        self.logits = torch.zeros(K, requires_grad=True)  # (K,) xi
        self.optimizer = torch.optim.Adam([self.logits], lr=self.lr, weight_decay=self.gamma)
        self.previous = torch.full((K,), float("nan"), dtype=torch.float64)  # (K,) L_i(t), NaN where absent

    def param_groups(self) -> list[dict]:
        return []  # the logits have their own optimizer

    def _log_losses(self, values: torch.Tensor) -> torch.Tensor:
        if not bool((values >= 0).all()):
            raise ValueError(f"{self.name}: needs losses >= 0 (it weights log L_i); got {values.tolist()}.")
        return torch.log(values + self.eps)

    def _weights(self, values, index, step, generator):
        self._log_losses(values)
        z = torch.softmax(self.logits.detach().to(torch.float64), dim=0)[index.cpu()].to(values.device)  # (k,)
        shifted = values + self.eps  # (k,)
        c = (z / shifted).sum()
        self.previous = torch.full_like(self.previous, float("nan"))
        self.previous[index.cpu()] = values.cpu()
        return z / (c * shifted)  # (k,) w_i = z_i / (c L_i)

    def after_step(self, new_losses: torch.Tensor, present: torch.Tensor | None = None) -> None:
        K = len(self.tasks)
        new = torch.as_tensor(new_losses, dtype=torch.float64).detach().cpu().reshape(K)
        mask = torch.isfinite(self.previous) & torch.isfinite(new)
        if present is not None:
            mask &= torch.as_tensor(present, dtype=torch.bool).cpu()
        if not bool(mask.any()):
            return
        delta = torch.zeros(K, dtype=torch.float64)
        delta[mask] = self._log_losses(self.previous[mask]) - self._log_losses(new[mask])  # (K,)
        z = torch.softmax(self.logits.detach().to(torch.float64), dim=0)  # (K,)
        grad = z * (delta - z @ delta)  # (K,) J_softmax.T delta
        self.optimizer.zero_grad(set_to_none=True)
        self.logits.grad = grad.to(self.logits.dtype)
        self.optimizer.step()

    def to(self, device) -> FAMO:
        return self  # the logits live on the CPU: K numbers, updated once a step

    def state_dict(self) -> dict:
        return {"logits": self.logits.detach().clone(), "optimizer": self.optimizer.state_dict(),
                "previous": self.previous.clone()}

    def load_state_dict(self, state: dict) -> None:
        with torch.no_grad():
            self.logits.copy_(torch.as_tensor(state["logits"]))
        self.optimizer.load_state_dict(state["optimizer"])
        self.previous = torch.as_tensor(state["previous"], dtype=torch.float64).clone()
