# ==============================================================================================================
# EXERCISE FILE: edit this file, exercises/gradient_cosine.py
# Replace each `raise NotImplementedError()` (below a `# YOUR CODE HERE`) with your code; keep the
# signatures. The module docstring says which notebook teaches it and which mtkit.exercises.checks function
# checks it. Stuck? The worked answer is in solutions/gradient_cosine.py.
# Generated from solutions/gradient_cosine.py by `python -m mtkit.exercises solutions exercises` (`make exercises`).
# Regenerating never overwrites this file once you have edited it (unless you pass --force).
# fingerprint: b8521d161a65787a
# ==============================================================================================================
"""Exercise: the cosine similarity of two tasks' gradients over many parameter tensors.

Do two tasks pull the shared encoder the same way? Their gradients' cosine says so: near 1, they agree; near 0,
they are unrelated; below 0, they conflict (the case PCGrad, Yu et al. 2020, acts on). A gradient is spread
over many parameter tensors, so the cosine is taken over all of them at once, as if they were one long vector.

Taught in notebooks/09_gradient_surgery.ipynb. Check your answer with::

    from mtkit.exercises.checks import check_gradient_cosine
    check_gradient_cosine(gradient_cosine)

The reference is the telemetry of ``mtkit.surgery`` (a Gram matrix of the flattened gradients).
"""
from __future__ import annotations

from collections.abc import Sequence

import torch


def gradient_cosine(grads_i: Sequence[torch.Tensor], grads_j: Sequence[torch.Tensor]) -> float:
    """cos(g_i, g_j) = g_i . g_j / (|g_i| |g_j|) over all tensors, as a Python float.

    ``grads_i[n]`` and ``grads_j[n]`` are the two tasks' gradients of the same parameter (same shape); the
    tensors may have any shapes. If either gradient is all zeros the cosine is undefined: return
    ``float("nan")``.

    Hints: ``torch.cat([g.flatten() for g in grads])`` makes one long vector; accumulate in float64 for
    accuracy when there are millions of entries.
    """
    # YOUR CODE HERE
    raise NotImplementedError()
