"""Exercise: Sentence-BERT's pair features [u; v; |u - v|].

For a pair of sentences encoded separately into u and v (the bi-encoder, "Siamese" layout), Sentence-BERT's
classification objective (Reimers & Gurevych 2019, arXiv 1908.10084, section 3) feeds the concatenation
``[u; v; |u - v|]`` to a linear layer. Its Table 6 shows |u - v| matters most.

Taught in notebooks/06_sentence_bert.ipynb. Check your answer with::

    from mtkit.exercises.checks import check_pair_features
    check_pair_features(pair_features)

The reference is ``mtkit.tasks.heads.PairFeatures(("u", "v", "|u-v|"))``.
"""
from __future__ import annotations

import torch


def pair_features(u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """``[u; v; |u - v|]``: two (B, H) sentence vectors -> one (B, 3H) feature vector per pair, in that order.

    Hint: ``torch.cat`` along the last dimension.
    """
    ### BEGIN SOLUTION
    return torch.cat([u, v, (u - v).abs()], dim=-1)  # (B, 3H)
    ### END SOLUTION
