"""The checks of PCGrad's projection and combination (Yu et al. 2020) and of the gradient cosine (notebook 09)."""
from __future__ import annotations

import math
from collections.abc import Callable

import torch

from mtkit.exercises.checks.runner import CheckResult, _describe, _gen, _randn, _Runner, _shapes
from mtkit.surgery.gramian import gram_matrix
from mtkit.surgery.pcgrad import pcgrad_weights

__all__ = ['check_pcgrad_projection', 'check_pcgrad', 'check_gradient_cosine']


# ---------------------------------------------------------------------------------------------- PCGrad
def _reference_pcgrad_rows(grads: torch.Tensor, orders: torch.Tensor) -> torch.Tensor:
    """(K, P) projected gradients g_i^PC from mtkit.surgery's Gram-matrix formulation."""
    weights = pcgrad_weights(gram_matrix(grads.double()), orders)  # (K, K)
    return (weights @ grads.double()).to(grads.dtype)  # (K, P)


def check_pcgrad_projection(project_conflicting: Callable) -> CheckResult:
    """Check ``project_conflicting(g_i, g_j) -> g_i^PC`` against ``mtkit.surgery.pcgrad`` (two tasks)."""
    run = _Runner("check_pcgrad_projection", project_conflicting)
    d = torch.float64
    cases = [
        ("no conflict (acute angle): g_i comes back unchanged", torch.tensor([1.0, 1.0], dtype=d),
         torch.tensor([1.0, 0.2], dtype=d)),
        ("orthogonal (dot = 0): unchanged", torch.tensor([0.0, 2.0], dtype=d), torch.tensor([3.0, 0.0], dtype=d)),
        ("conflict in 2-D: g_i loses its component along g_j", torch.tensor([1.0, 1.0], dtype=d),
         torch.tensor([-2.0, 0.5], dtype=d)),
        ("exactly opposite: the projection is zero", torch.tensor([1.0, -2.0, 3.0], dtype=d),
         torch.tensor([-1.0, 2.0, -3.0], dtype=d)),
        ("g_j is all zeros: unchanged, no NaN", torch.tensor([1.0, 2.0], dtype=d), torch.zeros(2, dtype=d)),
        ("random 1000-dim float32 gradients that conflict", _randn(1000, seed=700), None),
    ]
    for case, g_i, g_j in cases:
        if g_j is None:
            g_j = -0.5 * g_i + _randn(1000, seed=701)
        run.start(case, _shapes(g_i=g_i, g_j=g_j) + (f", g_i={g_i.tolist()}, g_j={g_j.tolist()}"
                                                     if g_i.numel() < 5 else ""))
        a, b = g_i.clone(), g_j.clone()
        got = run.call(a, b)
        expected = _reference_pcgrad_rows(torch.stack([g_i, g_j]), torch.tensor([[1], [0]]))[0]
        conflict = float(g_i.double() @ g_j.double()) < 0
        mistakes = {}
        if conflict:
            dot, sq = g_i @ g_j, g_j @ g_j
            mistakes = {
                "adding the component instead of removing it": (g_i + dot / sq * g_j,
                                                                "subtract: g_i - (g_i . g_j) / |g_j|^2 * g_j."),
                "dividing by |g_j| instead of |g_j|^2": (g_i - dot / sq.sqrt() * g_j,
                                                         "divide by the squared norm, g_j . g_j."),
                "projecting g_j instead of g_i": (g_j - dot / (g_i @ g_i) * g_i,
                                                  "return the projected g_i (the first argument)."),
            }
        else:
            mistakes = {"projecting even without a conflict": (
                g_i - (g_i @ g_j) / (g_j @ g_j + 1e-12) * g_j,
                "only project when g_i . g_j < 0; otherwise return g_i unchanged.")}
        atol = 1e-5 if g_i.dtype == torch.float32 else 1e-9
        run.tensor("g_i^PC", got, expected, "if g_i . g_j < 0: g_i - (g_i . g_j) / (|g_j|^2 + eps) * g_j, else g_i.",
                   atol=atol, rtol=1e-5, known_mistakes=mistakes)
        if not (torch.equal(a, g_i) and torch.equal(b, g_j)):
            run.fail("  your function modified its inputs.", "build a new tensor (g_i - ...), not g_i -= ...; "
                                                              "return g_i.clone() when nothing changes.")
        if conflict and float(got.double() @ g_j.double()) > 1e-6 * float(g_j.norm() * g_i.norm()):
            run.fail("  after a conflict, g_i^PC . g_j should be 0.", "see the formula in the docstring.")
        run.passed()
    return run.result()


def check_pcgrad(pcgrad: Callable) -> CheckResult:
    """Check ``pcgrad(grads (K, P), orders (K, K - 1)) -> update (P,)`` against ``mtkit.surgery.pcgrad``."""
    run = _Runner("check_pcgrad", pcgrad)
    d = torch.float64
    two = torch.tensor([[1.0, 1.0], [-2.0, 0.5]], dtype=d)
    three = torch.tensor([[1.0, 0.0, 0.0], [-1.0, 1.0, 0.0], [-0.5, -1.0, 1.0]], dtype=d)
    cases = [
        ("one task (K = 1): the update is its gradient", _randn(1, 5, seed=800, dtype=d),
         torch.zeros(1, 0, dtype=torch.long)),
        ("two tasks that agree: the plain sum", torch.tensor([[1.0, 2.0], [2.0, 1.0]], dtype=d),
         torch.tensor([[1], [0]])),
        ("two tasks in conflict (2-D)", two, torch.tensor([[1], [0]])),
        ("three tasks, visiting order 0: [1, 2], 1: [0, 2], 2: [0, 1]", three, torch.tensor([[1, 2], [0, 2], [0, 1]])),
        ("the same three tasks, other orders 0: [2, 1], 1: [2, 0], 2: [1, 0] (the order matters)", three,
         torch.tensor([[2, 1], [2, 0], [1, 0]])),
        ("four random 50-dim float32 gradients", _randn(4, 50, seed=801),
         torch.stack([torch.tensor([j for j in torch.randperm(4, generator=_gen(802 + i)).tolist() if j != i])
                      for i in range(4)])),
    ]
    for case, grads, orders in cases:
        run.start(case, _shapes(grads=grads, orders=orders) + (f", grads={grads.tolist()}, orders={orders.tolist()}"
                                                               if grads.numel() <= 9 else ""))
        g_in = grads.clone()
        got = run.call(g_in, orders.clone())
        rows = _reference_pcgrad_rows(grads, orders)
        expected = rows.sum(dim=0)
        mistakes = {"the plain sum (no projection)": (grads.sum(0), "project each g_i off the conflicting g_j "
                                                                    "(use project_conflicting) before summing.")}
        if grads.shape[0] > 1:
            mistakes["the mean instead of the sum"] = (expected / grads.shape[0],
                                                       "the paper sums the projected gradients (no division by K).")
        atol = 1e-5 if grads.dtype == torch.float32 else 1e-9
        run.tensor("update", got, expected, "g_i^PC starts as g_i; for j in orders[i]: g_i^PC = project(g_i^PC, "
                                            "grads[j]) (off the original g_j); update = sum of the g_i^PC.",
                   atol=atol, rtol=1e-5, known_mistakes=mistakes)
        if not torch.equal(g_in, grads):
            run.fail("  your function modified grads.", "work on copies: g = grads[i] then g = project(g, ...).")
        run.passed()
    return run.result()


def check_gradient_cosine(gradient_cosine: Callable) -> CheckResult:
    """Check ``gradient_cosine(grads_i, grads_j) -> float`` against ``mtkit.surgery``'s Gram matrix."""
    run = _Runner("check_gradient_cosine", gradient_cosine)
    shapes = [(4, 3), (3,), (2, 2, 2)]
    base = [_randn(*s, seed=900 + i) for i, s in enumerate(shapes)]
    other = [_randn(*s, seed=950 + i) for i, s in enumerate(shapes)]
    cases = [
        ("three tensors of different shapes (4x3, 3, 2x2x2)", base, other),
        ("the same gradient twice -> 1", base, [g.clone() for g in base]),
        ("opposite gradients -> -1", base, [-2.0 * g for g in base]),
        ("one tensor each, orthogonal -> 0", [torch.tensor([1.0, 0.0])], [torch.tensor([0.0, 3.0])]),
        ("task j's gradient is all zeros -> nan", base, [torch.zeros_like(g) for g in base]),
        ("the cosine is over all tensors at once, not an average of per-tensor cosines",
         [torch.tensor([1.0, 0.0]), torch.tensor([10.0])], [torch.tensor([1.0, 0.0]), torch.tensor([-0.1])]),
    ]
    for case, gi, gj in cases:
        run.start(case, "grads_i: " + ", ".join(str(tuple(g.shape)) for g in gi))
        got = run.call([g.clone() for g in gi], [g.clone() for g in gj])
        flat = torch.stack([torch.cat([g.flatten() for g in gi]), torch.cat([g.flatten() for g in gj])])
        G = gram_matrix(flat)
        denom = math.sqrt(float(G[0, 0]) * float(G[1, 1]))
        expected = float("nan") if denom == 0 else float(G[0, 1]) / denom
        try:
            value = float(got)
        except (TypeError, ValueError):
            run.fail(f"  expected a number, got {_describe(got)}.", "return float(cosine).")
        if math.isnan(expected):
            if not math.isnan(value):
                run.fail(f"  expected nan (an all-zero gradient has no direction), got {value!r}.",
                         "check the product of the norms; if it is 0, return float('nan').")
        elif not math.isclose(value, expected, rel_tol=1e-5, abs_tol=1e-6):
            per_tensor = sum(float(torch.nn.functional.cosine_similarity(a.flatten(), b.flatten(), dim=0))
                             for a, b in zip(gi, gj)) / len(gi)
            hint = ("flatten every tensor and concatenate them into one vector per task, then take a single "
                    "cosine (torch.cat([g.flatten() for g in grads])).")
            if math.isclose(value, per_tensor, rel_tol=1e-5, abs_tol=1e-6):
                hint = "you averaged per-tensor cosines; " + hint
            run.fail(f"  expected cosine {expected:.6f}, got {value:.6f}.", hint)
        run.passed()
    return run.result()
