# ==============================================================================================================
# EXERCISE FILE: edit this file, exercises/attention.py
# Replace each `raise NotImplementedError()` (below a `# YOUR CODE HERE`) with your code; keep the
# signatures. The module docstring says which notebook teaches it and which mtkit.exercises.checks function
# checks it. Stuck? The worked answer is in solutions/attention.py.
# Generated from solutions/attention.py by `python -m mtkit.exercises solutions exercises` (`make exercises`).
# Regenerating never overwrites this file once you have edited it (unless you pass --force).
# fingerprint: b79139628bd63788
# ==============================================================================================================
"""Exercise: scaled dot-product attention with a padding mask.

Vaswani et al. 2017, "Attention Is All You Need" (arXiv 1706.03762), section 3.2.1:
``Attention(Q, K, V) = softmax(Q K^T / sqrt(d_k)) V``. BERT adds a padding mask so that no token attends to
the [PAD] positions of a shorter sentence.

Taught in notebooks/03_attention_and_minbert.ipynb. Check your answer with::

    from mtkit.exercises.checks import check_attention
    check_attention(attention)

The reference is the explicit path of ``mtkit.model.bert.SelfAttention`` (and torch's fused
``scaled_dot_product_attention`` computes the same).
"""
from __future__ import annotations

import math

import torch


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
              attention_mask: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Scaled dot-product attention over the last two dimensions.

    Args:
        q, k, v: queries, keys and values, each of shape (B, heads, T, D).
        attention_mask: (B, T) with 1 for real tokens and 0 for padding, or None (no padding). Padded *keys*
            must get probability 0; the rows of padded *queries* are computed like any other (nobody reads them).

    Returns:
        ``(context, probs)``: ``probs`` (B, heads, T, T), row t of which is how much query t attends to each
        key (every row sums to 1), and ``context = probs @ v`` of shape (B, heads, T, D).

    Hints: divide the scores by sqrt(D); put a very negative number (``torch.finfo(scores.dtype).min``) on the
    padded keys *before* the softmax; the softmax runs over the last dimension (the keys).
    """
    # YOUR CODE HERE
    raise NotImplementedError()
