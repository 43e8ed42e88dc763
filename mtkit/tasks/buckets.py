"""STS scores as buckets: bucket centres, hard and soft bucket targets, the expected score of bucket
probabilities, and the bucket-classification head."""
from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from mtkit.tasks.head_checks import DEFAULT_DROPOUT, _check_range, _Classifier, _positive_int
from mtkit.tasks.pair_features import _PairInput

__all__ = ['bucket_centres', 'scores_to_buckets', 'scores_to_soft_buckets', 'buckets_to_scores', 'BucketClassificationHead']


# ------------------------------------------------------------------------------------------------ buckets
def bucket_centres(num_buckets: int, label_range: Sequence[float] = (0.0, 5.0),
                   device=None, dtype=torch.float32) -> torch.Tensor:
    """The score each bucket stands for: ``num_buckets`` evenly spaced values from low to high, both included.

    ``bucket_centres(6, (0, 5))`` is ``[0, 1, 2, 3, 4, 5]``: STS's integer grades.
    """
    _positive_int(num_buckets, "num_buckets", "bucket_centres", minimum=2)
    lo, hi = _check_range(label_range, "bucket_centres")
    return torch.linspace(lo, hi, num_buckets, device=device, dtype=dtype)  # (K,)


def _positions(scores: torch.Tensor, num_buckets: int, label_range, who: str) -> torch.Tensor:
    """Scores as fractional bucket positions in [0, K-1]; an out-of-range score raises (one host sync)."""
    _positive_int(num_buckets, "num_buckets", who, minimum=2)
    lo, hi = _check_range(label_range, who)
    if not isinstance(scores, torch.Tensor):
        scores = torch.as_tensor(scores, dtype=torch.float32)
    s = scores.float()
    tol = 1e-6 * (hi - lo)
    bad = (s < lo - tol) | (s > hi + tol) | ~torch.isfinite(s)
    if bool(bad.any()):
        raise ValueError(f"{who}: scores must lie in label_range {(lo, hi)}; got {s[bad][:5].tolist()} (first "
                         f"{min(5, int(bad.sum()))} of {int(bad.sum())}). Check the task's label_range.")
    return ((s - lo) / (hi - lo) * (num_buckets - 1)).clamp(0, num_buckets - 1)  # same shape as scores


def scores_to_buckets(scores: torch.Tensor, num_buckets: int,
                      label_range: Sequence[float] = (0.0, 5.0)) -> torch.Tensor:
    """The nearest bucket of each score (halves round up): ``(B,) float -> (B,) long`` in ``[0, num_buckets)``.

    With 6 buckets over (0, 5): 0.4 -> 0, 2.5 -> 3, 5.0 -> 5. A score outside the range raises ValueError.
    """
    x = _positions(scores, num_buckets, label_range, "scores_to_buckets")
    return torch.floor(x + 0.5).long().clamp(max=num_buckets - 1)  # (B,)


def scores_to_soft_buckets(scores: torch.Tensor, num_buckets: int,
                           label_range: Sequence[float] = (0.0, 5.0)) -> torch.Tensor:
    """Each score split between its two neighbouring buckets: ``(B,) -> (B, num_buckets)`` probabilities.

    A score of 2.3 with centres 0..5 puts 0.7 on bucket 2 and 0.3 on bucket 3, so the expected value over the
    centres is the score itself.
    """
    x = _positions(scores, num_buckets, label_range, "scores_to_soft_buckets")  # (B,)
    low = torch.floor(x).long().clamp(max=num_buckets - 2)  # (B,) left neighbour
    frac = x - low  # (B,) in [0, 1]
    target = torch.zeros(*x.shape, num_buckets, device=x.device)  # (B, K)
    target.scatter_(-1, low.unsqueeze(-1), (1 - frac).unsqueeze(-1))
    target.scatter_(-1, (low + 1).unsqueeze(-1), frac.unsqueeze(-1))
    return target  # (B, K), rows sum to 1


def buckets_to_scores(logits_or_probs: torch.Tensor, label_range: Sequence[float] = (0.0, 5.0),
                      from_logits: bool = True) -> torch.Tensor:
    """A score from bucket logits: the expected value of the bucket centres, ``(B, K) -> (B,)``.

    ``softmax(logits) @ centres`` (``from_logits=False``: the rows are already probabilities). The expected
    value, unlike the argmax bucket, moves smoothly, which is what Pearson rewards.
    """
    x = logits_or_probs
    if not isinstance(x, torch.Tensor) or x.dim() != 2:
        raise ValueError(f"buckets_to_scores: expected bucket logits of shape (B, K), got "
                         f"{tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__}.")
    probs = x.float().softmax(dim=-1) if from_logits else x.float()  # (B, K)
    centres = bucket_centres(x.shape[-1], label_range, device=x.device)  # (K,)
    return probs @ centres  # (B,)


class BucketClassificationHead(nn.Module):
    """STS as classification (report C): logits over ``num_buckets`` similarity buckets.

    ``forward(u, v) -> logits (B, num_buckets)``; train with :class:`mtkit.tasks.losses.BucketedCrossEntropyLoss`
    on the raw scores, and read a score back with :meth:`scores` (the expected value over the bucket centres,
    :func:`buckets_to_scores`). The default 6 buckets over (0, 5) are the integer grades 0..5.
    ``features=None`` takes one pooled vector of a joined pair (cross layout).
    """

    def __init__(self, hidden: int, num_buckets: int = 6, label_range: Sequence[float] = (0.0, 5.0),
                 features: Sequence[str] | None = ("u", "v", "|u-v|"), dropout: float = DEFAULT_DROPOUT,
                 hidden_layer: int | None = None):
        super().__init__()
        who = "BucketClassificationHead"
        self.hidden = _positive_int(hidden, "hidden", who)
        self.num_buckets = _positive_int(num_buckets, "num_buckets", who, minimum=2)
        self.label_range = _check_range(label_range, who)
        self.pair = _PairInput(hidden, features, who)
        self.num_inputs = self.pair.num_inputs
        self.classifier = _Classifier(self.pair.width, num_buckets, dropout, hidden_layer)

    def forward(self, u: torch.Tensor, v: torch.Tensor | None = None) -> torch.Tensor:
        return self.classifier(self.pair(u, v))  # (B, num_buckets)

    def scores(self, logits: torch.Tensor) -> torch.Tensor:
        """Expected score over the bucket centres: ``(B, num_buckets) -> (B,)``."""
        return buckets_to_scores(logits, self.label_range)
