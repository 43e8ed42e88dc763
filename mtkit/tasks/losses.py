"""Losses: one small module per objective, each computable on plain tensors.

As in sentence-transformers, computing the embeddings and computing the loss from them are separate steps:
the model pools sentence vectors (mtkit/model/pooling.py) and a head may turn them into logits (mtkit/tasks/heads.py);
a loss here only does the math. Each loss says what it takes in its ``takes`` attribute:

- ``takes == "outputs"``: ``loss(outputs, labels)``, where ``outputs`` is what a head returned (logits or scores);
- ``takes == "embeddings"``: ``loss(u, v, labels)``, where ``u, v (B, H)`` are the two sentences' pooled vectors
  (the bi-encoder layout); a cosine head then only turns cos(u, v) into predictions.

==============================  ==============================================================  =========
name (``make_loss``)            math                                                            from
==============================  ==============================================================  =========
``"cross_entropy"``             ``-log softmax(logits)[y]``, mean                               A, C, D
``"bce_with_logits"``           ``-[y log s(z) + (1-y) log(1-s(z))]``, s = sigmoid, mean        A
``"mse"``                       ``(score - y)^2``, mean                                         A, E
``"cosine_similarity"``         ``(cos(u,v) - t(y))^2``, t maps label_range onto [0, 1], mean   SBERT
``"cosine_embedding"``          ``1 - cos`` for y=1, ``max(0, cos - margin)`` for y=-1, mean    B
``"cosent"``                    ``log(1 + sum_{y_i > y_j} exp(s (cos_j - cos_i)))``             Su 2022
``"multiple_negatives_ranking"``  cross-entropy over ``s cos(a_i, p_j)`` with target j = i      B
``"bucketed_cross_entropy"``    cross-entropy over similarity buckets of the score              C
==============================  ==============================================================  =========

Papers: Sentence-BERT, Reimers & Gurevych 2019 (arXiv 1908.10084) for the softmax/cosine objectives;
Henderson et al. 2017, "Efficient Natural Language Response Suggestion for Smart Reply" (arXiv 1705.00652)
for the multiple-negatives ranking loss; Su 2022, "CoSENT: a more efficient sentence vector scheme than
Sentence-BERT" (kexue.fm/archives/8847; Huang et al. 2024, IEEE/ACM TASLP) for CoSENT. The names are
sentence-transformers' class names, and tests/test_losses.py checks that CosineSimilarityLoss, CoSENTLoss
and MultipleNegativesRankingLoss agree with that library, and CosineEmbeddingLoss with torch's.

Every loss computes in float32 (bf16 or fp16 inputs are upcast) and returns the batch mean as a 0-d tensor.
docs/HEADS_AND_LOSSES.md chooses the loss from the data's shape.

Taught in notebooks/05_sentiment_finetuning.ipynb and notebooks/06_sentence_bert.ipynb.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from mtkit.tasks.heads import HEAD_REGISTRY, _check_pair, _check_range, scores_to_buckets, scores_to_soft_buckets
from mtkit.util.registry import Registry

__all__ = ["LOSSES", "LOSS_REGISTRY", "register_loss", "HEADS_FOR_LOSS", "make_loss", "loss_options", "check_pairing", "CrossEntropyLoss",
           "BCEWithLogitsLoss", "MSELoss", "CosineSimilarityLoss", "CosineEmbeddingLoss", "CoSENTLoss",
           "MultipleNegativesRankingLoss", "BucketedCrossEntropyLoss"]


def _labels_1d(labels, batch: int, who: str) -> torch.Tensor:
    if not isinstance(labels, torch.Tensor):
        labels = torch.as_tensor(labels)
    if labels.dim() == 2 and labels.shape[-1] == 1:
        labels = labels.squeeze(-1)
    if labels.dim() != 1 or labels.shape[0] != batch:
        raise ValueError(f"{who}: expected labels of shape (B,) = ({batch},), one per example, got "
                         f"{tuple(labels.shape)}.")
    return labels


def _scores_1d(outputs: torch.Tensor, who: str, what: str) -> torch.Tensor:
    """(B,) or (B, 1) -> (B,); anything else gets a message."""
    if not isinstance(outputs, torch.Tensor):
        raise TypeError(f"{who}: expected {what} as a tensor of shape (B,), got {type(outputs).__name__}.")
    if outputs.dim() == 2 and outputs.shape[-1] == 1:
        return outputs.squeeze(-1)
    if outputs.dim() != 1:
        hint = ""
        if outputs.dim() == 2:
            hint = (f" {tuple(outputs.shape)} looks like {outputs.shape[-1]} class logits: use cross_entropy, or "
                    f"build the head with out_dim=1.")
        raise ValueError(f"{who}: expected {what} of shape (B,) (one per example), got {tuple(outputs.shape)}.{hint}")
    return outputs


class _Loss(nn.Module):
    takes = "outputs"  # "outputs": loss(outputs, labels); "embeddings": loss(u, v, labels)
    # Embedding losses: the cosines the loss pulls the lowest and the highest labels towards, or None when it
    # only ranks (CoSENT, MNRL). A CosineSimilarityHead built with cosine_range=loss.cosine_range predicts on
    # the label scale, and for a binary task its threshold (the middle of the range) is where the loss puts it.
    cosine_range: tuple[float, float] | None = None


# ------------------------------------------------------------------------------------------------ on outputs
class CrossEntropyLoss(_Loss):
    """Softmax cross-entropy of class logits: ``loss(logits (B, C), labels (B,) long)`` (torch's, checked).

    Sentiment (report A), Sentence-BERT's SoftmaxLoss over ``[u; v; |u-v|]`` (with a bi-encoder head of
    ``out_dim = num_labels``). ``label_smoothing`` is passed to ``torch.nn.functional.cross_entropy``.
    """

    def __init__(self, label_smoothing: float = 0.0):
        super().__init__()
        self.label_smoothing = float(label_smoothing)

    def forward(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        who = "CrossEntropyLoss"
        if not isinstance(logits, torch.Tensor) or logits.dim() != 2:
            shape = tuple(logits.shape) if isinstance(logits, torch.Tensor) else type(logits).__name__
            raise ValueError(f"{who}: expected logits of shape (B, C), one row of C class scores per example, got "
                             f"{shape}. For one logit per example use bce_with_logits.")
        labels = _labels_1d(labels, logits.shape[0], who)
        if labels.is_floating_point():
            raise TypeError(f"{who}: labels must be class ids (torch.long), got {labels.dtype}; is this a "
                            f"regression task (use mse) or a binary one with one logit (use bce_with_logits)?")
        return F.cross_entropy(logits.float(), labels.long(), label_smoothing=self.label_smoothing)


class BCEWithLogitsLoss(_Loss):
    """Binary cross-entropy on one logit per example: ``loss(logits (B,), labels (B,) in {0, 1})``.

    Report A's paraphrase objective (a sigmoid instead of Sentence-BERT's 2-way softmax). The sigmoid is inside
    the loss (``binary_cross_entropy_with_logits``, numerically stable), so the head outputs raw logits.
    ``pos_weight`` scales the positive class's term (Quora has ~37% duplicates).
    """

    def __init__(self, pos_weight: float | None = None):
        super().__init__()
        self.pos_weight = None if pos_weight is None else float(pos_weight)

    def forward(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        z = _scores_1d(logits, "BCEWithLogitsLoss", "one logit per example")
        y = _labels_1d(labels, z.shape[0], "BCEWithLogitsLoss").to(device=z.device, dtype=torch.float32)
        pos_weight = None if self.pos_weight is None else torch.tensor(self.pos_weight, device=z.device)
        return F.binary_cross_entropy_with_logits(z.float(), y, pos_weight=pos_weight)


class MSELoss(_Loss):
    """Mean squared error of a score: ``loss(scores (B,), labels (B,))`` (report A's STS regression).

    Unlike ``torch.nn.MSELoss``, a (B, 1) score against (B,) labels is not broadcast to (B, B) (a classic
    silent bug): (B, 1) is read as (B,), and any other mismatch raises.
    """

    def forward(self, scores: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        s = _scores_1d(scores, "MSELoss", "scores")
        y = _labels_1d(labels, s.shape[0], "MSELoss").to(device=s.device, dtype=torch.float32)
        return F.mse_loss(s.float(), y)


# ------------------------------------------------------------------------------------------------ on embeddings
class CosineSimilarityLoss(_Loss):
    """Sentence-BERT's regression objective: ``mean((cos(u, v) - t(y))^2)``.

    ``t`` maps ``label_range`` linearly onto ``target_range``: the default target range [0, 1] is
    sentence-transformers' (labels scaled to [0, 1]; its issue #393 reports this worked a bit better than
    [-1, 1]). **Pass the task's label_range** (STS: ``(0, 5)``); the default ``(0, 1)`` assumes labels already
    in [0, 1], as sentence-transformers does. Predict with ``CosineSimilarityHead(label_range,
    cosine_range=target_range)``.
    """
    takes = "embeddings"

    def __init__(self, label_range: Sequence[float] = (0.0, 1.0), target_range: Sequence[float] = (0.0, 1.0)):
        super().__init__()
        self.label_range = _check_range(label_range, "CosineSimilarityLoss")
        self.target_range = _check_range(target_range, "CosineSimilarityLoss (target_range)")
        self.cosine_range = self.target_range

    def targets(self, labels: torch.Tensor) -> torch.Tensor:
        """The cosine each label asks for."""
        lo, hi = self.label_range
        t0, t1 = self.target_range
        return t0 + (labels.float() - lo) * ((t1 - t0) / (hi - lo))

    def forward(self, u: torch.Tensor, v: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        _check_pair(u, v, None, "CosineSimilarityLoss")
        y = _labels_1d(labels, u.shape[0], "CosineSimilarityLoss").to(u.device)
        cos = F.cosine_similarity(u.float(), v.float(), dim=-1)  # (B,)
        return F.mse_loss(cos, self.targets(y))


class CosineEmbeddingLoss(_Loss):
    """Pull similar pairs together, push dissimilar ones below a margin (report B; ``torch.nn.CosineEmbeddingLoss``).

    Per pair: ``1 - cos(u, v)`` when y = 1, ``max(0, cos(u, v) - margin)`` when y = -1; the batch mean.
    Labels: the paraphrase files use 0/1, so **a label > 0 counts as y = 1 and any other (0 or -1) as y = -1**.
    ``cosine_range`` is ``(margin, 1)``: predict with ``CosineSimilarityHead(label_range=(0, 1),
    cosine_range=(margin, 1))``, whose 0.5 threshold is then the cosine halfway between margin and 1 (a start;
    tune the threshold on dev).
    """
    takes = "embeddings"

    def __init__(self, margin: float = 0.0):
        super().__init__()
        self.margin = float(margin)
        if not -1.0 <= self.margin < 1.0:
            raise ValueError(f"CosineEmbeddingLoss: margin is a cosine, so it must lie in [-1, 1), got {margin!r}.")
        self.cosine_range = (self.margin, 1.0)  # dissimilar pairs pushed to <= margin, similar ones to 1

    def forward(self, u: torch.Tensor, v: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        _check_pair(u, v, None, "CosineEmbeddingLoss")
        y = _labels_1d(labels, u.shape[0], "CosineEmbeddingLoss").to(u.device)
        cos = F.cosine_similarity(u.float(), v.float(), dim=-1)  # (B,)
        similar = y > 0  # (B,) bool: 1 -> similar; 0 and -1 -> dissimilar
        per_pair = torch.where(similar, 1.0 - cos, (cos - self.margin).clamp(min=0.0))  # (B,)
        return per_pair.mean()


class CoSENTLoss(_Loss):
    """CoSENT (Su 2022): rank the pairs' cosines in the order of their labels.

    ``loss = log(1 + sum over pairs of pairs (i, j) with y_i > y_j of exp(scale * (cos_j - cos_i)))``: every
    time a pair with a lower label has a higher cosine than a pair with a higher label, the loss grows. Only the
    order of labels matters, so labels need no scaling. ``scale`` = 20 (an inverse temperature) as in
    sentence-transformers. The whole batch gives one value (not a per-example mean).
    """
    takes = "embeddings"

    def __init__(self, scale: float = 20.0):
        super().__init__()
        self.scale = float(scale)
        if not self.scale > 0:
            raise ValueError(f"CoSENTLoss: scale must be positive, got {scale!r}.")

    def forward(self, u: torch.Tensor, v: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        _check_pair(u, v, None, "CoSENTLoss")
        y = _labels_1d(labels, u.shape[0], "CoSENTLoss").to(u.device).float()
        s = self.scale * F.cosine_similarity(u.float(), v.float(), dim=-1)  # (B,)
        diff = s[None, :] - s[:, None]  # (B, B): diff[i, j] = s_j - s_i
        wrong_order = y[:, None] > y[None, :]  # (B, B): pairs (i, j) where i should score higher than j
        terms = diff.masked_fill(~wrong_order, float("-inf")).flatten()  # (B*B,); -inf adds exp(-inf) = 0
        return torch.logsumexp(torch.cat([s.new_zeros(1), terms]), dim=0)  # log(1 + sum exp(...))


class MultipleNegativesRankingLoss(_Loss):
    """In-batch negatives (Henderson et al. 2017): each anchor must pick its own positive among all positives.

    ``scores[i, j] = scale * cos(a_i, p_j)`` is a (B, B) matrix; the loss is the cross-entropy with targets
    ``j = i`` (the diagonal). ``scale`` = 20 (temperature 0.05) as in sentence-transformers.

    Only positive pairs carry the signal: ``forward(anchors, positives, labels)`` keeps the rows with
    ``labels > 0`` (a Quora duplicate) and ignores the rest (non-duplicates would be wrong "positives"); pass
    ``labels=None`` when every pair is positive. A batch with no positive pair gives a zero loss (still part of
    the graph). Duplicated sentences in one batch act as false negatives. ``symmetric=True`` adds the
    positive-to-anchor direction and averages the two.
    """
    takes = "embeddings"

    def __init__(self, scale: float = 20.0, symmetric: bool = False):
        super().__init__()
        self.scale = float(scale)
        self.symmetric = bool(symmetric)
        if not self.scale > 0:
            raise ValueError(f"MultipleNegativesRankingLoss: scale must be positive, got {scale!r}.")

    def forward(self, anchors: torch.Tensor, positives: torch.Tensor,
                labels: torch.Tensor | None = None) -> torch.Tensor:
        _check_pair(anchors, positives, None, "MultipleNegativesRankingLoss")
        a, p = anchors.float(), positives.float()
        if labels is not None:
            keep = _labels_1d(labels, a.shape[0], "MultipleNegativesRankingLoss").to(a.device) > 0  # (B,)
            a, p = a[keep], p[keep]  # (P, H): the positive pairs only
            if a.shape[0] == 0:
                return anchors.sum() * 0.0  # no positive pair in this batch
        scores = self.scale * F.normalize(a, dim=-1) @ F.normalize(p, dim=-1).T  # (P, P) scaled cosines
        target = torch.arange(scores.shape[0], device=scores.device)  # (P,): the diagonal
        loss = F.cross_entropy(scores, target)
        if self.symmetric:
            loss = (loss + F.cross_entropy(scores.T, target)) / 2
        return loss


class BucketedCrossEntropyLoss(_Loss):
    """STS as classification (report C): cross-entropy between bucket logits and the bucket of the score.

    ``loss(logits (B, num_buckets), scores (B,))``; the buckets are ``mtkit.tasks.heads.bucket_centres`` (6 over
    (0, 5): the integer grades), a score goes to the nearest centre. ``soft=True`` splits each score between its
    two neighbouring buckets instead (2.3 -> 0.7 on bucket 2, 0.3 on bucket 3), so no information is rounded
    away. A score outside ``label_range`` raises.
    """

    def __init__(self, num_buckets: int = 6, label_range: Sequence[float] = (0.0, 5.0), soft: bool = False):
        super().__init__()
        if isinstance(num_buckets, bool) or not isinstance(num_buckets, int) or num_buckets < 2:
            raise ValueError(f"BucketedCrossEntropyLoss: num_buckets must be a whole number >= 2, got {num_buckets!r}.")
        self.num_buckets = num_buckets
        self.label_range = _check_range(label_range, "BucketedCrossEntropyLoss")
        self.soft = bool(soft)

    def forward(self, logits: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        who = "BucketedCrossEntropyLoss"
        if not isinstance(logits, torch.Tensor) or logits.dim() != 2 or logits.shape[-1] != self.num_buckets:
            shape = tuple(logits.shape) if isinstance(logits, torch.Tensor) else type(logits).__name__
            raise ValueError(f"{who}: expected logits of shape (B, num_buckets={self.num_buckets}), got {shape}; "
                             f"build the head with the same num_buckets.")
        scores = _labels_1d(scores, logits.shape[0], who).to(logits.device)
        if self.soft:
            target = scores_to_soft_buckets(scores, self.num_buckets, self.label_range)  # (B, K)
        else:
            target = scores_to_buckets(scores, self.num_buckets, self.label_range)  # (B,)
        return F.cross_entropy(logits.float(), target)


# ------------------------------------------------------------------------------------------------ factory
# The losses a config may name: a new loss is one class and one register_loss line (its options are its
# __init__'s; ``takes`` says whether it trains outputs or embeddings).
LOSS_REGISTRY = Registry("loss", {
    "cross_entropy": CrossEntropyLoss,
    "bce_with_logits": BCEWithLogitsLoss,
    "mse": MSELoss,
    "cosine_similarity": CosineSimilarityLoss,
    "cosine_embedding": CosineEmbeddingLoss,
    "cosent": CoSENTLoss,
    "multiple_negatives_ranking": MultipleNegativesRankingLoss,
    "bucketed_cross_entropy": BucketedCrossEntropyLoss,
}, plural="losses")
LOSSES = LOSS_REGISTRY.names  # the built-in losses (read LOSS_REGISTRY.names for any added later)

# Which head kinds (mtkit.tasks.heads.HEADS) each loss goes with. For the embedding losses the head does not enter
# the loss; it only turns the trained embeddings into predictions.
HEADS_FOR_LOSS = {
    "cross_entropy": ("sentiment", "bi_encoder", "cross_encoder"),  # out_dim = num_labels for the pair heads
    "bce_with_logits": ("bi_encoder", "cross_encoder"),  # out_dim = 1
    "mse": ("bi_encoder", "cross_encoder", "sigmoid_regression", "cosine"),
    "cosine_similarity": ("cosine",),
    "cosine_embedding": ("cosine",),
    "cosent": ("cosine",),
    "multiple_negatives_ranking": ("cosine",),
    "bucketed_cross_entropy": ("buckets",),
}


def register_loss(name: str, loss_class: type, heads) -> type:
    """Add a loss under ``name``, with the head kinds it goes with: seen by config validation and ``make_loss``."""
    LOSS_REGISTRY.register(name, loss_class)
    HEADS_FOR_LOSS[name] = tuple(heads)
    return loss_class


def loss_options(name: str) -> dict:
    """The options of a loss and their defaults: what a config's ``loss_options`` may set."""
    return LOSS_REGISTRY.options(name)


def make_loss(name: str, **options) -> _Loss:
    """Build a loss by name: ``make_loss("cosent", scale=20)``. Valid names: see ``LOSSES`` and the table above.

    ``"cross_entropy"`` (label_smoothing), ``"bce_with_logits"`` (pos_weight), ``"mse"``,
    ``"cosine_similarity"`` (label_range, target_range), ``"cosine_embedding"`` (margin), ``"cosent"`` (scale),
    ``"multiple_negatives_ranking"`` (scale, symmetric), ``"bucketed_cross_entropy"`` (num_buckets,
    label_range, soft). An unknown name or option raises ValueError listing the valid ones.
    """
    return LOSS_REGISTRY.make(name, **options)


def check_pairing(head: str, loss: str) -> None:
    """Raise ValueError, naming the heads that fit, when ``loss`` does not go with the head kind ``head``."""
    if head not in HEAD_REGISTRY:
        raise ValueError(f"head kind {head!r} is not known; valid kinds: {', '.join(HEAD_REGISTRY.names)}.")
    fits = HEADS_FOR_LOSS[LOSS_REGISTRY.check(loss)]
    if head not in fits:
        takes = LOSS_REGISTRY[loss].takes
        why = ("it trains the pooled embeddings u, v directly, and only a cosine head turns them into predictions"
               if takes == "embeddings" else "it needs the outputs those heads produce")
        raise ValueError(f"loss {loss!r} does not go with head {head!r}: {why}. Heads for {loss!r}: "
                         f"{', '.join(fits)} (see docs/HEADS_AND_LOSSES.md).")
