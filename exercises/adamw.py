# ==============================================================================================================
# EXERCISE FILE: edit this file, exercises/adamw.py
# Replace each `raise NotImplementedError()` (below a `# YOUR CODE HERE`) with your code; keep the
# signatures. The module docstring says which notebook teaches it and which mtkit.exercises.checks function
# checks it. Stuck? The worked answer is in solutions/adamw.py.
# Generated from solutions/adamw.py by `python -m mtkit.exercises solutions exercises` (`make exercises`).
# Regenerating never overwrites this file once you have edited it (unless you pass --force).
# fingerprint: b3d0fa8475327013
# ==============================================================================================================
"""Exercise: one AdamW step for one parameter, with the CS224N handout's semantics.

Adam is Kingma & Ba 2015 (arXiv 1412.6980); decoupled weight decay is Loshchilov & Hutter 2019
(arXiv 1711.05101). The CS224N minBERT handout uses the "efficient" bias correction of the end of section 2
of the Adam paper, adds eps to sqrt(v), and applies the weight decay after the Adam update.

Taught in notebooks/04_adamw.ipynb. Check your answer with::

    from mtkit.exercises.checks import check_adamw_step
    check_adamw_step(adamw_step)

The reference is ``mtkit.optim.adamw.adamw_loop`` (the loop inside ``mtkit.optim.AdamW``).
"""
from __future__ import annotations

import math

import torch


@torch.no_grad()
def adamw_step(param: torch.Tensor, grad: torch.Tensor, exp_avg: torch.Tensor, exp_avg_sq: torch.Tensor,
               step: int, lr: float = 1e-3, beta1: float = 0.9, beta2: float = 0.999, eps: float = 1e-6,
               weight_decay: float = 0.0, correct_bias: bool = True) -> None:
    """Update ``param``, ``exp_avg`` (m) and ``exp_avg_sq`` (v) **in place**; return nothing.

    ``step`` is t, the number of this step (1 on the first). The formulas, for gradient g::

        m <- beta1 * m + (1 - beta1) * g
        v <- beta2 * v + (1 - beta2) * g^2
        alpha = lr * sqrt(1 - beta2^t) / (1 - beta1^t)      (alpha = lr when correct_bias is False)
        param <- param - alpha * m / (sqrt(v) + eps)
        param <- param - lr * weight_decay * param          (after the Adam update; note: lr, not alpha)

    Hints: in-place tensor methods end with ``_`` (``mul_``, ``add_``, ``addcmul_``, ``addcdiv_``); writing
    ``param = param - ...`` only rebinds the local name and leaves the caller's tensor unchanged. Write the decay
    as it reads, a scaled add of ``param`` to itself, not a product with ``(1 - lr * weight_decay)``: in float32
    that factor is itself rounded, which biases small decays (the check has a case for it; notebook 04 shows why).
    """
    # YOUR CODE HERE
    raise NotImplementedError()
