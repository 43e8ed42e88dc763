"""The Gram matrix of task gradients (K x K dot products), the generic tool of every gradient method that
works on the K x K side: computed in float64-accumulated tiles, so a P of millions stays exact enough."""
from __future__ import annotations

import torch

__all__ = ['GRAM_TILE', 'gram_matrix', 'small_dtype']


def small_dtype(device: torch.device) -> torch.dtype:
    """The K x K side is tiny, so do it in float64 where the device has it."""
    return torch.float32 if device.type == "mps" else torch.float64


GRAM_TILE = 1 << 15  # columns per partial Gram matrix in gram_matrix


def gram_matrix(rows: torch.Tensor, tile: int = GRAM_TILE) -> torch.Tensor:
    """G = rows @ rows.T for a (K, n) matrix with n in the millions, accurately and fast.

    A single float32 product over 10 million columns loses about three digits (the library's accumulation
    order), which is enough to flip the sign of a small cosine. So the columns are cut into tiles of ``tile``,
    one batched product gives a (K, K) partial Gram matrix per tile, and the partials are summed in float64.
    On a CPU this is also faster than the single product (skinny matrix products are not what BLAS is tuned
    for). Returns (K, K) in float64 (float32 on devices without float64).
    """
    K, n = rows.shape
    acc = small_dtype(rows.device)
    G = torch.zeros(K, K, dtype=acc, device=rows.device)  # (K, K)
    q = n // tile
    if q:
        x = rows[:, : q * tile].reshape(K, q, tile).transpose(0, 1)  # (q, K, tile) a view: no copy
        G += torch.bmm(x, x.transpose(1, 2)).sum(dim=0, dtype=acc)  # q partial (K, K) Grams, summed
    if q * tile < n:
        rest = rows[:, q * tile:]  # (K, n - q * tile)
        G += (rest @ rest.T).to(acc)
    return G


def _gram(grads: torch.Tensor) -> torch.Tensor:
    return gram_matrix(grads)  # (K, K)


def _as_float(grads: torch.Tensor) -> torch.Tensor:
    # Half-precision dot products over millions of entries lose too much: work in float32 (or float64 if given).
    return grads if grads.dtype in (torch.float32, torch.float64) else grads.float()
