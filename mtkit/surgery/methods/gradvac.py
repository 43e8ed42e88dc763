"""GradVac, gradient vaccine (Wang, Tsvetkov, Firat and Cao, "Gradient Vaccine: Investigating and Improving
Multi-task Optimization in Massively Multilingual Models", ICLR 2021).

PCGrad acts only when two gradients conflict (cosine < 0). GradVac sets, per task pair and per layer, a
target cosine: the exponential moving average of the cosines seen so far, phi_hat_ij <- (1 - beta) phi_hat_ij
+ beta phi_ij (Algorithm 1; starting from 0, where it reduces to PCGrad's trigger). When task i's (adjusted)
gradient meets task j at a cosine phi_ij below the target, it adds the multiple of g_j that raises the
cosine exactly to phi_hat_ij (Eq. (3) of the paper):

    g_i' <- g_i' + |g_i'| (phi_hat sqrt(1 - phi^2) - phi sqrt(1 - phi_hat^2)) / (|g_j| sqrt(1 - phi_hat^2)) g_j.

Tasks visit the others in a fresh random order, as in PCGrad. Every g_i' stays a combination of the
original gradients, so all norms and cosines come from the Gram matrix; with ``granularity="block"`` (the
paper's per-layer variant, the default) this runs on each layer block's Gram (B, k, k) at once and returns
(B, k) coefficients, one combination per block. State: the (B, K, K) targets phi_hat.
"""
from __future__ import annotations

import torch

from mtkit.surgery.methods.base import GramWeighting, Step, Weights
from mtkit.surgery.pcgrad import visit_orders
from mtkit.surgery.registry import check_choice, check_number

__all__ = ["GradVac"]


class GradVac(GramWeighting):
    """``beta``: the EMA rate of the targets; ``granularity``: "block" (per layer block) or "whole";
    ``eps``: added to the cosine's and the step's denominators."""

    name = "gradvac"
    summary = "raise each pair's cosine to its running target, per layer block"
    paper = "Wang et al. 2021, Algorithm 1 and Eq. (3)"
    stochastic = True

    def __init__(self, tasks, beta: float = 0.5, granularity: str = "block", eps: float = 1e-8) -> None:
        super().__init__(tasks)
        self.beta = check_number(self.name, "beta", beta, 0.0, 1.0)
        self.granularity = check_choice(self.name, "granularity", granularity, ("block", "whole"))
        self.eps = check_number(self.name, "eps", eps, 0.0)
        self.needs_block_grams = granularity == "block"
        self.targets: torch.Tensor | None = None  # (B, K, K) phi_hat, created at the first step

    def weigh(self, step: Step) -> Weights:
        G = step.block_grams if self.granularity == "block" else step.gram[None]  # (B, k, k)
        B, k, _ = G.shape
        K = step.num_tasks
        if self.targets is None:
            self.targets = torch.zeros(B, K, K, dtype=torch.float64)
        if self.targets.shape[0] != B:
            raise ValueError(f"{self.name}: the targets are for {self.targets.shape[0]} blocks, got {B}.")
        targets = self.targets.to(G.device, G.dtype)  # (B, K, K)
        idx = step.index.to(G.device)  # (k,)
        W = torch.eye(k, dtype=G.dtype, device=G.device).expand(B, k, k).clone()  # (B, k, k) g_i' = W[b, i] @ rows_b
        rows = torch.arange(k, device=G.device)  # (k,)
        norm_j_all = G.diagonal(dim1=1, dim2=2).clamp_min(0).sqrt()  # (B, k) |g_j| per block
        orders = visit_orders(k, step.generator, device=G.device)  # (k, k - 1) shared by all blocks
        for t in range(orders.shape[1]):
            j = orders[:, t]  # (k,) the task each task i visits now
            dot = (W * G[:, j, :]).sum(dim=-1)  # (B, k) g_i' . g_j
            norm_i = torch.einsum("bim,bmn,bin->bi", W, G, W).clamp_min(0).sqrt()  # (B, k) |g_i'|
            norm_j = norm_j_all[:, j]  # (B, k)
            phi = dot / (norm_i * norm_j + self.eps)  # (B, k) the cosine now
            target = targets[:, idx, idx[j]]  # (B, k) phi_hat_ij
            root_phi = (1 - phi ** 2).clamp_min(0).sqrt()
            root_target = (1 - target ** 2).clamp_min(0).sqrt()
            w = norm_i * (target * root_phi - phi * root_target) / (norm_j * root_target + self.eps)  # (B, k)
            W[:, rows, j] += torch.where(phi < target, w, torch.zeros_like(w))
            targets[:, idx, idx[j]] = (1 - self.beta) * target + self.beta * phi
        self.targets = targets.cpu()
        coefficients = W.sum(dim=1)  # (B, k) update_b = sum_i g_i'
        if self.granularity == "whole":
            return Weights(coefficients[0], per_task=W[0])
        return Weights(coefficients, per_task=W)

    def state_dict(self) -> dict:
        return {} if self.targets is None else {"targets": self.targets.clone()}

    def load_state_dict(self, state: dict) -> None:
        targets = state.get("targets")
        self.targets = None if targets is None else torch.as_tensor(targets, dtype=torch.float64).clone()
