# ==============================================================================================================
# EXERCISE FILE: edit this file, exercises/mean_pooling.py
# Replace each `raise NotImplementedError()` (below a `# YOUR CODE HERE`) with your code; keep the
# signatures. The module docstring says which notebook teaches it and which mtkit.exercises.checks function
# checks it. Stuck? The worked answer is in solutions/mean_pooling.py.
# Generated from solutions/mean_pooling.py by `python -m mtkit.exercises solutions exercises` (`make exercises`).
# Regenerating never overwrites this file once you have edited it (unless you pass --force).
# fingerprint: 6cf78515195ba452
# ==============================================================================================================
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
    # YOUR CODE HERE
    raise NotImplementedError()
