"""PCGrad, "projecting conflicting gradients", as a pure function of the per-task gradients.

Yu, Kumar, Gupta, Levine, Hausman and Finn, "Gradient Surgery for Multi-Task Learning", NeurIPS 2020
(arXiv:2001.06782), Algorithm 1::

    g_i^PC <- g_i for every task i
    for each task i:
        for each other task j, visited in a fresh uniformly random order:
            if g_i^PC . g_j < 0:
                g_i^PC <- g_i^PC - (g_i^PC . g_j) / |g_j|^2 * g_j
    update = sum_i g_i^PC

Note that g_i^PC is projected off the *original* g_j, not off g_j^PC: that is the paper's algorithm (and
that of its official TensorFlow code), so we follow it.

How this file computes it (the "Gram-matrix formulation", also used by TorchJD and LibMTL's weights):
every g_i^PC stays a linear combination of the original gradients, g_i^PC = sum_k W[i, k] g_k, and every
dot product above is a dot product of such combinations. So all we need from the (K, P) gradients is their
K x K Gram matrix G = grads @ grads.T (``gram_matrix``, summed tile by tile in float64 for accuracy). The sequential projections then run on the small K x K side, and the
update is one (K,) @ (K, P) product. Compared with the usual loop over P-sized vectors this

- reads the big gradients twice (once for G, once for the update) instead of K^2 times;
- makes no host synchronisation: the "if dot < 0" is a ``torch.where``, never a Python ``if`` on a device
  value (a Python ``if`` would wait for the GPU K^2 times per step);
- is reproducible: the visiting orders come from ``visit_orders(K, generator)``;
- divides by |g_j|^2 + eps, so a vanishing task gradient cannot divide by zero.

``reduction="sum"`` is the paper's choice and the default; ``"mean"`` divides the sum by K. With Adam or
AdamW a constant factor on the gradient nearly cancels (only the optimizer's eps and decoupled weight decay
do not scale), so the difference matters for SGD and for comparisons with a summed-loss baseline.

Taught in notebooks/09_gradient_surgery.ipynb.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from mtkit.surgery.gramian import _as_float, _gram, gram_matrix, small_dtype

__all__ = [
    "PCGradResult",
    "visit_orders",
    "pcgrad_weights",
    "pcgrad",
    "main_aux_mixing",
    "main_aux_pcgrad",
    "gram_matrix",
    "REDUCTIONS",
]

REDUCTIONS = ("sum", "mean")
DEFAULT_EPS = 1e-12


@dataclass
class PCGradResult:
    """Everything ``pcgrad(..., return_details=True)`` computed, for teaching and for tests."""

    update: torch.Tensor  # (P,) the combined gradient handed to the optimizer
    weights: torch.Tensor  # (K, K) row i: g_i^PC = weights[i] @ grads
    coefficients: torch.Tensor  # (K,) update = coefficients @ grads (column sums of weights, / K for "mean")
    orders: torch.Tensor  # (K, K - 1) orders[i] = the other tasks in the order task i visited them
    gram: torch.Tensor  # (K, K) the Gram matrix of the original gradients


def _check_reduction(reduction: str) -> None:
    # A plain membership test: never `if reduction:`, which is true for every non-empty string (the bug
    # that made one popular PyTorch port always average).
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction must be 'sum' (the paper's choice) or 'mean'; got {reduction!r}.")


def _check_grads(grads: torch.Tensor) -> None:
    if not isinstance(grads, torch.Tensor):
        raise TypeError(f"pcgrad expects a tensor of shape (K, P), one row per task; got {type(grads).__name__}. "
                        "Build it with torch.stack([g_task1, g_task2, ...]) from flattened gradients.")
    if grads.dim() != 2:
        raise ValueError(
            f"pcgrad expects one flattened gradient per task, a (K, P) tensor; got shape {tuple(grads.shape)}. "
            "Flatten each task's gradient with torch.cat([p.grad.flatten() for p in shared_params]) and stack "
            "the K results with torch.stack(..., dim=0).")
    if not grads.is_floating_point():
        raise TypeError(f"pcgrad expects floating-point gradients; got dtype {grads.dtype}.")
    if grads.shape[0] < 1:
        raise ValueError("pcgrad needs at least one task gradient (K >= 1); got K = 0.")


def visit_orders(num_tasks: int, generator: torch.Generator | None = None,
                 device: torch.device | str | None = None) -> torch.Tensor:
    """For each task i, a fresh uniformly random order of the other tasks: a (K, K - 1) long tensor.

    Row i is a random permutation of ``[0, K) \\ {i}``. The random numbers come from ``generator`` (on the
    generator's own device) or, without one, from torch's global generator, so ``torch.manual_seed`` makes
    runs repeatable. The result is moved to ``device`` without waiting for it.
    """
    K = int(num_tasks)
    if K < 1:
        raise ValueError(f"num_tasks must be >= 1; got {num_tasks}.")
    draw_device = generator.device if generator is not None else torch.device("cpu")
    keys = torch.rand(K, K, generator=generator, device=draw_device)  # (K, K) uniform in [0, 1)
    keys.fill_diagonal_(2.0)  # a task never visits itself: its key sorts last and is cut off below
    orders = keys.argsort(dim=1)[:, : K - 1]  # (K, K - 1) sorting iid keys gives a uniform permutation
    return orders.to(device) if device is not None else orders


def pcgrad_weights(gram: torch.Tensor, orders: torch.Tensor, eps: float = DEFAULT_EPS) -> torch.Tensor:
    """Algorithm 1 of Yu et al. (2020) on the Gram matrix: returns W (K, K) with g_i^PC = W[i] @ grads.

    ``gram[a, b] = g_a . g_b`` for the original gradients; ``orders`` comes from ``visit_orders`` (pass only
    its first T columns to stop after T visits, e.g. to watch the algorithm step by step). All K tasks take
    their t-th visit at the same time (their projections are independent of each other), so the loop has
    K - 1 iterations of small tensor operations and no Python ``if`` on tensor values.
    """
    K = gram.shape[0]
    if gram.shape != (K, K):
        raise ValueError(f"gram must be square (K, K); got shape {tuple(gram.shape)}.")
    if orders.dim() != 2 or orders.shape[0] != K or orders.shape[1] > max(K - 1, 0):
        raise ValueError(f"orders must have shape (K, T) with T <= K - 1, here ({K}, {K - 1}); "
                         f"got {tuple(orders.shape)}.")
    G = gram.to(small_dtype(gram.device))  # (K, K)
    orders = orders.to(G.device)
    W = torch.eye(K, dtype=G.dtype, device=G.device)  # (K, K) start from g_i^PC = g_i
    rows = torch.arange(K, device=G.device)  # (K,)
    sq_norms = G.diagonal() + eps  # (K,) |g_j|^2 + eps
    for t in range(orders.shape[1]):
        j = orders[:, t]  # (K,) the task that task i visits now
        dot = (W * G[j]).sum(dim=1)  # (K,) g_i^PC . g_j = sum_k W[i, k] (g_k . g_j); G is symmetric
        coef = torch.where(dot < 0, dot / sq_norms[j], torch.zeros_like(dot))  # (K,) 0 when no conflict
        W[rows, j] -= coef  # g_i^PC <- g_i^PC - coef_i * g_j
    return W


def _reduce(weights: torch.Tensor, reduction: str) -> torch.Tensor:
    coefficients = weights.sum(dim=0)  # (K,) update = sum_i g_i^PC = sum_k (sum_i W[i, k]) g_k
    if reduction == "mean":
        coefficients = coefficients / weights.shape[0]
    return coefficients


def pcgrad(grads: torch.Tensor, generator: torch.Generator | None = None, reduction: str = "sum",
           eps: float = DEFAULT_EPS, return_details: bool = False) -> torch.Tensor | PCGradResult:
    """PCGrad update from per-task gradients ``grads`` (K, P): returns the (P,) vector to descend along.

    ``generator`` makes the random visiting orders repeatable; ``reduction`` is "sum" (the paper) or "mean";
    ``eps`` is added to |g_j|^2 in the projection's denominator. Half-precision inputs are promoted to float32.
    With ``return_details=True`` returns a ``PCGradResult`` (update, weights, coefficients, orders, gram).

    Taught in notebooks/09_gradient_surgery.ipynb.
    """
    _check_grads(grads)
    _check_reduction(reduction)
    J = _as_float(grads)  # (K, P)
    K = J.shape[0]
    gram = _gram(J)  # (K, K)
    orders = visit_orders(K, generator, device=J.device)  # (K, K - 1)
    weights = pcgrad_weights(gram, orders, eps)  # (K, K)
    coefficients = _reduce(weights, reduction)  # (K,)
    update = coefficients.to(J.dtype) @ J  # (P,)
    if return_details:
        return PCGradResult(update=update, weights=weights, coefficients=coefficients, orders=orders, gram=gram)
    return update


def main_aux_mixing(num_tasks: int, main_index: int, aux_weight: float = 0.3,
                    dtype: torch.dtype = torch.float64, device: torch.device | str | None = None) -> torch.Tensor:
    """The (2, K) matrix A that turns K task gradients into [g_main; g_aux].

    Row 0 picks the main task; row 1 is ``aux_weight`` times the sum of all the other tasks (MTRec, Bi et al.
    2022: g_aux = lambda * sum of the auxiliary gradients, lambda = 0.3 in report C).
    """
    K = int(num_tasks)
    if not 0 <= main_index < K:
        raise ValueError(f"main_index must be in [0, {K}); got {main_index}.")
    A = torch.zeros(2, K, dtype=dtype, device=device)  # (2, K)
    A[0, main_index] = 1.0
    A[1] = aux_weight
    A[1, main_index] = 0.0
    return A


def main_aux_pcgrad(grads: torch.Tensor, main_index: int, aux_weight: float = 0.3,
                    generator: torch.Generator | None = None, reduction: str = "sum", eps: float = DEFAULT_EPS,
                    return_details: bool = False) -> torch.Tensor | PCGradResult:
    """Main + auxiliary PCGrad (report C, after MTRec, Bi et al. 2022): PCGrad between g_main and g_aux.

    g_aux = aux_weight * (sum of the other tasks' gradients); the two are then treated as a 2-task PCGrad
    problem, and the update is g_main^PC + g_aux^PC ("mean" halves it). In the details, ``weights`` is the
    (2, 2) weight matrix over [g_main; g_aux] and ``coefficients`` is over the K original tasks.
    """
    _check_grads(grads)
    _check_reduction(reduction)
    J = _as_float(grads)  # (K, P)
    K = J.shape[0]
    gram = _gram(J)  # (K, K)
    A = main_aux_mixing(K, main_index, aux_weight, dtype=small_dtype(J.device), device=J.device)  # (2, K)
    gram2 = A @ gram.to(A.dtype) @ A.T  # (2, 2) Gram matrix of [g_main; g_aux]
    orders = visit_orders(2, generator, device=J.device)  # (2, 1)
    weights = pcgrad_weights(gram2, orders, eps)  # (2, 2)
    coefficients = _reduce(weights, reduction) @ A  # (K,)
    update = coefficients.to(J.dtype) @ J  # (P,)
    if return_details:
        return PCGradResult(update=update, weights=weights, coefficients=coefficients, orders=orders, gram=gram)
    return update