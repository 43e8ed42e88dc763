"""Exercise: masked mean pooling, from one vector per token to one vector per sentence.

Sentence-BERT (Reimers & Gurevych 2019, arXiv 1908.10084) averages the token vectors of the last layer; the
padding positions of a shorter sentence must not count.

Taught in notebooks/06_sentence_bert.ipynb. Check your answer with::

    from mtkit.exercises.checks import check_mean_pool
    check_mean_pool(mean_pool)

The reference is ``mtkit.model.pooling.mean_pool``.
"""
from __future__ import annotations

import torch


def mean_pool(last_hidden_state: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """The average of the real tokens' vectors: (B, T, H) and (B, T) -> (B, H).

    ``attention_mask`` is 1 for real tokens and 0 for padding. A row with no real token at all must give a
    vector of zeros (not NaN). Do not modify the inputs.

    Hints: turn the mask into the hidden state's dtype and add a last dimension, (B, T, 1), so it broadcasts;
    sum over the token dimension; divide by the number of real tokens, clamped to at least 1.
    """
    ### BEGIN SOLUTION
    keep = attention_mask.unsqueeze(-1).to(last_hidden_state.dtype)  # (B, T, 1): 1 real, 0 padding
    total = (last_hidden_state * keep).sum(dim=1)  # (B, H): padding contributes 0
    count = keep.sum(dim=1).clamp(min=1.0)  # (B, 1): real tokens per sentence, at least 1
    return total / count  # (B, H)
    ### END SOLUTION
