# ==============================================================================================================
# EXERCISE FILE: edit this file, exercises/pcgrad.py
# Replace each `raise NotImplementedError()` (below a `# YOUR CODE HERE`) with your code; keep the
# signatures. The module docstring says which notebook teaches it and which mtkit.exercises.checks function
# checks it. Stuck? The worked answer is in solutions/pcgrad.py.
# Generated from solutions/pcgrad.py by `python -m mtkit.exercises solutions exercises` (`make exercises`).
# Regenerating never overwrites this file once you have edited it (unless you pass --force).
# fingerprint: 420d885c0c9702a5
# ==============================================================================================================
"""Exercise: PCGrad's projection and the whole algorithm on K task gradients.

Yu et al. 2020, "Gradient Surgery for Multi-Task Learning" (arXiv 2001.06782), Algorithm 1: when two tasks'
gradients conflict (negative dot product), project each onto the normal plane of the other, then sum::

    for each task i:
        g_i^PC = g_i
        for each other task j (in a random order):
            if g_i^PC . g_j < 0:
                g_i^PC = g_i^PC - (g_i^PC . g_j) / |g_j|^2 * g_j
    update = sum_i g_i^PC

Note that g_i^PC is projected off the *original* g_j, as in the paper.

Taught in notebooks/09_gradient_surgery.ipynb. Check your answers with::

    from mtkit.exercises.checks import check_pcgrad_projection, check_pcgrad
    check_pcgrad_projection(project_conflicting)
    check_pcgrad(pcgrad)

The reference is ``mtkit.surgery.pcgrad`` (a Gram-matrix formulation of the same algorithm).
"""
from __future__ import annotations

import torch


def project_conflicting(g_i: torch.Tensor, g_j: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    """``g_i`` with its component along ``g_j`` removed when the two conflict; ``g_i`` unchanged otherwise.

    Both are flat (P,) gradients. Divide by ``|g_j|^2 + eps`` so an all-zero ``g_j`` cannot divide by zero.
    Return a new tensor; do not modify the inputs.
    """
    # YOUR CODE HERE
    raise NotImplementedError()


def pcgrad(grads: torch.Tensor, orders: torch.Tensor) -> torch.Tensor:
    """The PCGrad update (P,) from K task gradients ``grads`` (K, P).

    ``orders`` (K, K - 1) gives, for task i, the other tasks in the order task i visits them (the paper draws
    it at random; here it is given, so the answer is deterministic). Use ``project_conflicting``.
    """
    # YOUR CODE HERE
    raise NotImplementedError()
