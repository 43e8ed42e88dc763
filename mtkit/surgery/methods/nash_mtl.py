"""Nash-MTL, multi-task learning as a bargaining game (Navon, Shamsian, Achituve, Maron, Kawaguchi, Chechik
and Fetaya, ICML 2022).

The paper's Algorithm 1 steps along sum_i a_i g_i with the Nash bargaining weights a > 0 solving

    G a = 1 / a        (element-wise; Eq. (4) of the paper, G the Gram matrix of the task gradients),

which makes every task's directional derivative g_i . d = 1 / a_i and |d|^2 = a.T G a = k whatever the
gradients' scale. G a = 1 / a is exactly the stationarity condition of the strictly convex function
f(a) = a.T G a / 2 - sum_i log a_i (for G positive definite), so we minimise f with Newton's method
(gradient G a - 1/a, Hessian G + diag(1/a^2)): backtracking steps that keep a > 0 while far from the
solution, full steps near it (f is self-concordant), so it converges quadratically: about 5 iterations
to machine precision. (The paper's code approximates the
same point with a sequence of cvxpy problems; general solvers from scipy reach 1e-8 in ~100 ms a call,
too slow for every step, so these few lines are written by hand.) The solve runs on G / s (s = trace / k)
and a = a_s / sqrt(s) brings the weights back to G's scale; a 1e-12 ridge on G / s keeps f bounded when
gradients are linearly dependent.

As in the paper: ``update_every`` N reuses the last weights for N - 1 steps (the paper's cheaper
variant), and each solve starts from the previous solution (warm start). ``max_norm`` > 0 clips |d|
(the official code's option; off by default). State: the last weights, the tasks they were solved for,
and the step counter.
"""
from __future__ import annotations

import numpy as np
import torch

from mtkit.surgery.methods.base import GramWeighting, Step, Weights
from mtkit.surgery.methods.linalg import normalized
from mtkit.surgery.registry import check_int, check_number

__all__ = ["NashMTL", "nash_weights"]


def nash_weights(gram: np.ndarray, start: np.ndarray | None = None, tol: float = 1e-13,
                 max_iter: int = 50) -> tuple[np.ndarray, int]:
    """a > 0 (k,) with G a = 1 / a for a (k, k) positive-definite G, by damped Newton; and the iterations."""
    k = gram.shape[0]
    a = np.ones(k) if start is None else np.where(start > 0, start, 1.0)

    def f(x):
        return 0.5 * x @ gram @ x - np.log(x).sum()

    previous = np.inf
    for iteration in range(1, max_iter + 1):
        grad = gram @ a - 1.0 / a  # (k,)
        if np.linalg.norm(grad) <= tol * np.linalg.norm(1.0 / a):
            return a, iteration - 1
        step = np.linalg.solve(gram + np.diag(1.0 / a ** 2), grad)  # (k,) Newton direction
        decrement = grad @ step  # lambda^2: f(a) - min f is about lambda^2 / 2 near the solution
        if decrement <= 1e-30 or (decrement <= 1e-16 and decrement > 0.25 * previous):
            return a, iteration - 1  # solved as far as rounding allows (G near singular: dependent gradients)
        previous = decrement
        t = 1.0
        while np.any(a - t * step <= 0):  # stay in the domain a > 0
            t *= 0.5
        if decrement > 0.01:  # far away: backtrack (Armijo); near it, f is self-concordant and full steps
            fa = f(a)         # converge quadratically, where comparing f values would only compare rounding
            while f(a - t * step) > fa - 1e-4 * t * decrement and t > 1e-12:
                t *= 0.5
        a = a - t * step
    return a, max_iter


class NashMTL(GramWeighting):
    """``update_every``: solve every N steps (1: every step); ``max_norm``: clip |d| (0: off)."""

    name = "nash_mtl"
    summary = "Nash bargaining weights: G a = 1/a, so every task gains 1/a_i"
    paper = "Navon et al. 2022, Algorithm 1 and Eq. (4)"

    def __init__(self, tasks, update_every: int = 1, max_norm: float = 0.0) -> None:
        super().__init__(tasks)
        self.update_every = check_int(self.name, "update_every", update_every, low=1)
        self.max_norm = check_number(self.name, "max_norm", max_norm, 0.0)
        K = len(self.tasks)
        self.alpha = torch.ones(K, dtype=torch.float64)  # (K,) the last weights, at G's scale
        self.solved_for = torch.zeros(K, dtype=torch.bool)  # (K,) the tasks present at the last solve
        self.steps = 0

    def weigh(self, step: Step) -> Weights:
        index = step.index.cpu()
        present = torch.zeros(step.num_tasks, dtype=torch.bool)
        present[index] = True
        reuse = self.steps % self.update_every != 0 and bool((present == self.solved_for).all())
        self.steps += 1
        extra = {"solved": not reuse}
        if not reuse:
            G, s = normalized(step.gram.cpu())  # (k, k)
            G = G + 1e-12 * torch.eye(G.shape[0], dtype=G.dtype)
            start = self.alpha[index].numpy() * s ** 0.5 if bool(self.solved_for[index].all()) else None
            a, iterations = nash_weights(G.numpy(), start)
            self.alpha[index] = torch.as_tensor(a, dtype=torch.float64) / s ** 0.5
            self.solved_for = present
            extra["newton_iterations"] = iterations
        coefficients = self.alpha[index].to(step.gram.device, step.gram.dtype)  # (k,)
        if self.max_norm > 0:
            norm = float(coefficients @ step.gram @ coefficients) ** 0.5
            if norm > self.max_norm:
                coefficients = coefficients * (self.max_norm / norm)
        return Weights(coefficients, extra=extra)

    def state_dict(self) -> dict:
        return {"alpha": self.alpha.clone(), "solved_for": self.solved_for.clone(), "steps": self.steps}

    def load_state_dict(self, state: dict) -> None:
        alpha = torch.as_tensor(state["alpha"], dtype=torch.float64)
        if alpha.shape != self.alpha.shape:
            raise ValueError(f"{self.name}: saved weights for {alpha.numel()} tasks, this run has {len(self.tasks)}.")
        self.alpha = alpha.clone()
        self.solved_for = torch.as_tensor(state["solved_for"], dtype=torch.bool).clone()
        self.steps = int(state["steps"])
