"""The checks of mean pooling and of the Sentence-BERT pair features (u, v, |u - v|, u * v) (notebook 06)."""
from __future__ import annotations

from collections.abc import Callable

import torch

from mtkit.exercises.checks.runner import CheckResult, _randn, _Runner, _shapes
from mtkit.model.pooling import mean_pool as reference
from mtkit.tasks.heads import PairFeatures

__all__ = ['check_mean_pool', 'check_pair_features']


# ---------------------------------------------------------------------------------------------- pooling
def check_mean_pool(mean_pool: Callable) -> CheckResult:
    """Check ``mean_pool(last_hidden_state, attention_mask) -> (B, H)`` against ``mtkit.model.pooling.mean_pool``."""
    run = _Runner("check_mean_pool", mean_pool)
    cases = [
        ("no padding (mask of ones)", (2, 4, 6), [[1] * 4, [1] * 4], torch.long, torch.float32),
        ("padding: sentences of 4, 2 and 1 real tokens", (3, 4, 5), [[1, 1, 1, 1], [1, 1, 0, 0], [1, 0, 0, 0]],
         torch.long, torch.float32),
        ("a float mask (0./1.) and float64 hidden states", (2, 5, 3), [[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]],
         torch.float32, torch.float64),
        ("a row with no real token at all -> zeros, not NaN", (2, 3, 4), [[1, 1, 0], [0, 0, 0]], torch.long,
         torch.float32),
        ("large values in the padding must not leak in", (2, 4, 3), [[1, 1, 0, 0], [1, 1, 1, 0]], torch.long,
         torch.float32),
    ]
    for seed, (case, shape, rows, mask_dtype, dtype) in enumerate(cases):
        h = _randn(*shape, seed=500 + seed, dtype=dtype)
        mask = torch.tensor(rows, dtype=mask_dtype)
        if "large values" in case:
            h = h.masked_fill(~mask.bool()[..., None], 1e4)
        run.start(case, _shapes(last_hidden_state=h, attention_mask=mask) + f", mask rows {rows}")
        h_in, mask_in = h.clone(), mask.clone()
        got = run.call(h_in, mask_in)
        expected = reference(h, mask)
        mistakes = {
            "a plain mean over all T positions (padding included)": (
                h.mean(dim=1), "multiply by the mask before summing, and divide by the number of real tokens, "
                               "not by T."),
            "the masked sum, not divided by the number of real tokens": (
                (h * mask[..., None].to(dtype)).sum(1), "divide by mask.sum(dim=1, keepdim=True), clamped to >= 1."),
            "dividing by T instead of the number of real tokens": (
                (h * mask[..., None].to(dtype)).sum(1) / shape[1], "divide by the count of real tokens per row."),
        }
        run.tensor("pooled vectors", got, expected,
                   "sum(h * mask[..., None], dim=1) / mask.sum(dim=1, keepdim=True).clamp(min=1).",
                   atol=1e-5, rtol=1e-5, known_mistakes=mistakes)
        if not (torch.equal(h_in, h) and torch.equal(mask_in, mask)):
            run.fail("  your function modified its inputs.",
                     "use out-of-place operations (h * mask, not h *= mask or masked_fill_).")
        run.passed()
    # Training backpropagates through pooling into the encoder.
    h = _randn(2, 4, 3, seed=560, dtype=torch.float64)
    mask = torch.tensor([[1, 1, 1, 0], [1, 0, 0, 0]])
    weights = _randn(2, 3, seed=561, dtype=torch.float64)
    run.start("gradients: autograd through your pooling vs through the reference (float64)",
              _shapes(last_hidden_state=h, attention_mask=mask))
    h_ref = h.clone().requires_grad_(True)
    (expected,) = torch.autograd.grad((reference(h_ref, mask) * weights).sum(), [h_ref])
    h_in = h.clone().requires_grad_(True)
    with torch.enable_grad():
        got = run.call(h_in, mask.clone())
    if not isinstance(got, torch.Tensor) or not got.requires_grad:
        run.fail("  the output does not depend on last_hidden_state for autograd (no grad_fn).",
                 "do not .detach(), call .item() or go through numpy inside the function.")
    (grad,) = torch.autograd.grad((got * weights).sum(), [h_in])
    run.tensor("the gradient of last_hidden_state", grad, expected,
               "padding positions must get a zero gradient; real ones 1 / (number of real tokens).",
               atol=1e-9, rtol=1e-7)
    run.passed()
    return run.result()


def check_pair_features(pair_features: Callable) -> CheckResult:
    """Check ``pair_features(u, v) -> [u; v; |u - v|]`` against ``mtkit.tasks.heads.PairFeatures``."""
    reference = PairFeatures(("u", "v", "|u-v|"))
    run = _Runner("check_pair_features", pair_features)
    cases = [("a batch of 2 pairs, H = 4", (2, 4), torch.float32),
             ("one pair, H = 3 (batch of 1)", (1, 3), torch.float32),
             ("float64, a batch of 5, H = 8", (5, 8), torch.float64)]
    for seed, (case, shape, dtype) in enumerate(cases):
        u, v = _randn(*shape, seed=600 + seed, dtype=dtype), _randn(*shape, seed=650 + seed, dtype=dtype)
        run.start(case, _shapes(u=u, v=v))
        got = run.call(u.clone(), v.clone())
        mistakes = {
            "[u; v; u - v] (no absolute value)": (torch.cat([u, v, u - v], -1),
                                                  "take the absolute value: (u - v).abs()."),
            "[v; u; |u - v|] (u and v swapped)": (torch.cat([v, u, (u - v).abs()], -1), "u first, then v."),
            "[u; v; u * v]": (torch.cat([u, v, u * v], -1), "the third part is |u - v|, not u * v."),
        }
        if isinstance(got, torch.Tensor) and got.dim() == 3:
            run.fail(f"  expected shape (B, 3H) = {(shape[0], 3 * shape[1])}, got {tuple(got.shape)}.",
                     "torch.stack adds a dimension; torch.cat([...], dim=-1) concatenates along the features.")
        run.tensor("pair features", got, reference(u, v), "torch.cat([u, v, (u - v).abs()], dim=-1).",
                   atol=0, rtol=0, known_mistakes=mistakes)
        run.passed()
    return run.result()
