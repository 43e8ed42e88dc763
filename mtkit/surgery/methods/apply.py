"""From a (K, P) Jacobian to the P-space update with any method: Gram -> coefficients -> update.

The driver does the same with its flat buffers; this plain version serves the tests, the 2-D toy and small
experiments. ``blocks`` cuts the P columns into contiguous layer blocks (their sizes), for block-wise
methods such as GradVac; without it the whole row is one block.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch

from mtkit.surgery.methods.base import GramWeighting, Weights

__all__ = ["block_gram_matrices", "update_from_jacobian"]


def block_gram_matrices(jacobian: torch.Tensor, blocks: Sequence[int] | None = None) -> torch.Tensor:
    """(B, K, K) float64 Gram matrices of the column blocks of ``jacobian`` (K, P); ``blocks``: sizes summing to P."""
    K, P = jacobian.shape
    sizes = [P] if blocks is None else [int(n) for n in blocks]
    if sum(sizes) != P or any(n < 0 for n in sizes):
        raise ValueError(f"block sizes must be >= 0 and sum to P = {P}; got {sizes}.")
    J = jacobian.to(torch.float64)
    return torch.stack([part @ part.T for part in J.split(sizes, dim=1)])  # (B, K, K)


def update_from_jacobian(method: GramWeighting, jacobian: torch.Tensor, blocks: Sequence[int] | None = None,
                         present: torch.Tensor | None = None, generator: torch.Generator | None = None,
                         losses: torch.Tensor | None = None, return_weights: bool = False):
    """The (P,) update ``method`` makes from the task gradients ``jacobian`` (K, P), in the Jacobian's dtype.

    Rows of absent tasks (``present`` False) are ignored. With ``return_weights`` also returns the
    method's ``Weights``.
    """
    if jacobian.dim() != 2:
        raise ValueError(f"jacobian must be (K, P), one flattened gradient per task; got {tuple(jacobian.shape)}.")
    sizes = [jacobian.shape[1]] if blocks is None else list(blocks)
    block_grams = block_gram_matrices(jacobian, sizes)  # (B, K, K)
    weights: Weights = method(block_grams.sum(dim=0), present, generator,
                              block_grams=block_grams if len(sizes) > 1 or method.needs_block_grams else None,
                              losses=losses)
    c = weights.coefficients.to(jacobian.dtype)
    if c.dim() == 1:
        update = c @ jacobian  # (P,)
    else:  # (B, K): one combination per block
        update = torch.cat([cb @ part for cb, part in zip(c, jacobian.split(sizes, dim=1))])  # (P,)
    return (update, weights) if return_weights else update
