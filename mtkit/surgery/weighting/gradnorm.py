"""GradNorm, gradient normalisation (Chen, Badrinarayanan, Lee and Rabinovich, "GradNorm: Gradient
Normalization for Adaptive Loss Balancing in Deep Multitask Networks", ICML 2018).

Learned loss weights w_i, pushed so that every task's weighted gradient norm G_i = w_i |g_i| moves towards
the common norm, scaled by how far behind the task is in training (Eq. (1)-(2) of the paper):

    L_grad = sum_i | G_i - mean_j(G_j) * r_i^alpha |,     r_i = (L_i / L_i(0)) / mean_j (L_j / L_j(0)),

with the target treated as a constant, and the w_i renormalised to sum to K after each update. L_i(0) is
the task's first loss. **Needs the per-task gradients**: |g_i| is sqrt(G_ii) of the step's Gram matrix,
which ``after_gradients`` reads; it writes d L_grad / d w_i = sign(G_i - target_i) |g_i| into ``w.grad``
for the optimizer, and ``after_step`` renormalises. We take the norms over the whole shared encoder (the
paper uses the last shared layer). A w_i is kept >= 1e-6 before renormalising, so a weight never turns
negative. State: w and the initial losses.
"""
from __future__ import annotations

import torch

from mtkit.surgery.registry import check_number
from mtkit.surgery.weighting.base import LossWeighting

__all__ = ["GradNorm"]


class GradNorm(LossWeighting):
    """``alpha``: the restoring force (1.5 in the paper's NYUv2 runs); ``lr``: a learning rate for the w_i
    (None: the optimizer's)."""

    name = "gradnorm"
    summary = "learned weights that equalise w_i |g_i| (scaled by training rate); needs per-task gradients"
    paper = "Chen et al. 2018, Eq. (1)-(2)"
    needs_gradients = True

    def __init__(self, tasks, alpha: float = 1.5, lr: float | None = None) -> None:
        super().__init__(tasks)
        self.alpha = check_number(self.name, "alpha", alpha, 0.0)
        self.lr = None if lr is None else check_number(self.name, "lr", lr, 0.0, low_open=True)
        K = len(self.tasks)
        self.w = torch.nn.Parameter(torch.ones(K))  # (K,) the loss weights
        self.initial_losses = torch.full((K,), float("nan"), dtype=torch.float64)  # (K,) L_i(0)
        self.last_grad_loss = float("nan")

    def _weights(self, values, index, step, generator):
        return self.w.detach()[index].to(torch.float64)  # (k,)

    def after_gradients(self, gram, losses, present=None) -> None:
        K = len(self.tasks)
        present = torch.ones(K, dtype=torch.bool) if present is None else torch.as_tensor(present, dtype=torch.bool)
        index = present.cpu().nonzero().flatten()
        G = torch.as_tensor(gram, dtype=torch.float64).cpu()
        values = torch.as_tensor(losses, dtype=torch.float64).detach().cpu().reshape(K)
        if not (bool(torch.isfinite(G).all()) and bool(torch.isfinite(values[index]).all())):
            raise ValueError(f"{self.name}: the Gram matrix or the losses are not finite; skip this step.")
        first = index[torch.isnan(self.initial_losses[index])]
        self.initial_losses[first] = values[first]
        norms = G.diagonal()[index].clamp_min(0).sqrt()  # (k,) |g_i|
        w = self.w.detach().cpu().to(torch.float64)[index]  # (k,)
        weighted = w * norms  # (k,) G_i
        ratio = values[index] / self.initial_losses[index]  # (k,) L_i / L_i(0)
        rate = ratio / ratio.mean()  # (k,) r_i
        target = weighted.mean() * rate ** self.alpha  # (k,) constant
        self.last_grad_loss = float((weighted - target).abs().sum())
        grad = torch.zeros(K, dtype=torch.float64)
        grad[index] = torch.sign(weighted - target) * norms  # d L_grad / d w_i
        grad = grad.to(self.w.device, self.w.dtype)
        self.w.grad = grad if self.w.grad is None else self.w.grad + grad

    def after_step(self, new_losses=None, present=None) -> None:
        with torch.no_grad():
            self.w.clamp_(min=1e-6)
            self.w.mul_(len(self.tasks) / self.w.sum())

    def parameters(self) -> list[torch.nn.Parameter]:
        return [self.w]

    def state_dict(self) -> dict:
        return {"w": self.w.detach().cpu().clone(), "initial_losses": self.initial_losses.clone()}

    def load_state_dict(self, state: dict) -> None:
        with torch.no_grad():
            self.w.copy_(torch.as_tensor(state["w"]))
        self.initial_losses = torch.as_tensor(state["initial_losses"], dtype=torch.float64).clone()
