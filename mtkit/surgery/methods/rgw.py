"""RGW, random gradient weighting (Lin, Ye, Xu, Shi and Zhang, "Reasonable Effectiveness of Random
Weighting: A Litmus Test for Multi-Task Learning", TMLR 2022).

Each step draws fresh weights lambda = softmax(z), z ~ N(0, I_k) (the paper's default distribution), and
steps along sum_i lambda_i g_i. The paper's point: this random method, which looks at nothing, is a
baseline a multi-task optimizer has to beat. (RLW, in ``mtkit.surgery.weighting``, applies the same draw to
the losses, which gives the same update without per-task gradients.) No state: the draws come from the
driver's generator.
"""
from __future__ import annotations

import torch

from mtkit.surgery.methods.base import GramWeighting, Step, Weights

__all__ = ["RGW", "random_simplex_weights"]


def random_simplex_weights(k: int, generator: torch.Generator | None, dtype=torch.float64,
                           device=None) -> torch.Tensor:
    """softmax(z) for z ~ N(0, I_k), drawn from ``generator`` (on its own device)."""
    draw_device = generator.device if generator is not None else torch.device("cpu")
    z = torch.randn(k, generator=generator, dtype=dtype, device=draw_device)  # (k,)
    return torch.softmax(z, dim=0).to(device if device is not None else draw_device)


class RGW(GramWeighting):
    """Random convex weights, drawn fresh every step."""

    name = "rgw"
    summary = "random weights softmax(N(0, I)), drawn every step"
    paper = "Lin et al. 2022 (RLW/RGW)"
    stochastic = True

    def __init__(self, tasks) -> None:
        super().__init__(tasks)

    def weigh(self, step: Step) -> Weights:
        k = step.gram.shape[0]
        return Weights(random_simplex_weights(k, step.generator, step.gram.dtype, step.gram.device))
