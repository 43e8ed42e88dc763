"""Heads: from pooled sentence vectors to logits or scores, one small module per idea.

A head never sees tokens: its input is already pooled (mtkit/model/pooling.py), ``u (B, H)`` for one sentence, or
``u, v (B, H)`` for the two sentences of a pair encoded separately (the bi-encoder, "Siamese" layout), or one
vector of the joined pair ``[CLS] a [SEP] b [SEP]`` (the cross-encoder layout).

The heads, with the report (docs/REPORTS.md) that uses each:

==========================  =====================================================================  ===========
kind (``make_head``)        module                                                                 reports
==========================  =====================================================================  ===========
``"sentiment"``             :class:`SentimentHead`: dropout, linear to ``num_labels`` logits       A-E
``"bi_encoder"``            :class:`BiEncoderPairHead`: features of (u, v) such as                 A, C, D
                            ``[u; v; |u-v|]``, dropout, linear (optionally an MLP)
``"cosine"``                :class:`CosineSimilarityHead`: cos(u, v) scaled to the label range     A, B
``"cross_encoder"``         :class:`CrossEncoderHead`: dropout, linear over the joined pair's      E
                            pooled vector
``"sigmoid_regression"``    :class:`SigmoidRegressionHead`: a sigmoid-bounded score in the range   E
``"buckets"``               :class:`BucketClassificationHead`: STS as classification over          C
                            similarity buckets
==========================  =====================================================================  ===========

:class:`SharedPairLayer` is not a head but a layer a multitask model can put in front of both pair heads
(report E); :class:`PairFeatures` builds the feature vector of a pair.

Sentence-BERT is Reimers & Gurevych 2019 ("Sentence-BERT: Sentence Embeddings using Siamese BERT-Networks",
arXiv 1908.10084): its classification objective is ``softmax(W [u; v; |u-v|])`` (Table 6 compares the
feature sets) and its regression objective is ``cos(u, v)``. The cross-encoder is BERT's own sentence-pair
setup (Devlin et al. 2019). Predicting STS by buckets and reading the score back as an expected value follows
the label-distribution idea of Tai et al. 2015 (Tree-LSTM, arXiv 1503.00075, section 4.2).

Every ``forward`` checks shapes and explains a wrong one ("did you forget to pool?"). ``num_inputs`` says
whether a head takes ``(u,)`` or ``(u, v)``.

Taught in notebooks/05_sentiment_finetuning.ipynb (sentiment) and notebooks/06_sentence_bert.ipynb (pairs).
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from mtkit.tasks.buckets import (
    BucketClassificationHead,
    bucket_centres,
    buckets_to_scores,
    scores_to_buckets,
    scores_to_soft_buckets,
)
from mtkit.tasks.head_checks import (
    DEFAULT_DROPOUT,
    _check_pair,
    _check_range,
    _check_vector,
    _Classifier,
    _positive_int,
    _squeeze_one,
)
from mtkit.tasks.pair_features import FEATURES, PairFeatures, _PairInput
from mtkit.util.registry import Registry

__all__ = ["HEADS", "HEAD_REGISTRY", "FEATURES", "make_head", "head_options", "SentimentHead", "PairFeatures", "BiEncoderPairHead",
           "CosineSimilarityHead", "CrossEncoderHead", "SharedPairLayer", "SigmoidRegressionHead",
           "BucketClassificationHead", "bucket_centres", "scores_to_buckets", "scores_to_soft_buckets",
           "buckets_to_scores"]


# ------------------------------------------------------------------------------------------------ single
class SentimentHead(nn.Module):
    """Dropout, then a linear layer to ``num_labels`` logits (the starter's sentiment classifier; report A).

    ``forward(u (B, H)) -> logits (B, num_labels)``; train with cross-entropy. Any single-sentence
    classification task uses it (SST-5 has 5 labels, CFIMDB 2).
    """
    num_inputs = 1

    def __init__(self, hidden: int, num_labels: int = 5, dropout: float = DEFAULT_DROPOUT):
        super().__init__()
        self.hidden = _positive_int(hidden, "hidden", "SentimentHead")
        self.num_labels = _positive_int(num_labels, "num_labels", "SentimentHead", minimum=2)
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(hidden, num_labels)

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        _check_vector(u, self.hidden, "SentimentHead")
        return self.classifier(self.dropout(u))  # (B, num_labels)


class BiEncoderPairHead(nn.Module):
    """Pair features (default ``[u; v; |u-v|]``), dropout, then a linear layer (an MLP with ``hidden_layer``).

    ``forward(u, v) -> (B,)`` when ``out_dim == 1``, else ``(B, out_dim)``. Choose ``out_dim`` by the loss:
    1 logit for binary cross-entropy with logits (Quora, report A), ``num_labels`` logits for softmax
    cross-entropy (Sentence-BERT's SoftmaxLoss), 1 score for MSE regression (report A's STS uses
    ``features=("u", "v")``). ``hidden_layer``: width of an optional ReLU layer before the output layer.
    """

    def __init__(self, hidden: int, features: Sequence[str] = ("u", "v", "|u-v|"), out_dim: int = 1,
                 dropout: float = DEFAULT_DROPOUT, hidden_layer: int | None = None):
        super().__init__()
        who = "BiEncoderPairHead"
        self.hidden = _positive_int(hidden, "hidden", who)
        self.out_dim = _positive_int(out_dim, "out_dim", who)
        if hidden_layer is not None:
            _positive_int(hidden_layer, "hidden_layer", who)
        self.pair = _PairInput(hidden, features, who)
        if self.pair.num_inputs != 2:
            raise ValueError(f"{who}: needs pair features (u and v); for one vector of a joined pair use "
                             f"CrossEncoderHead.")
        self.num_inputs = 2
        self.classifier = _Classifier(self.pair.width, out_dim, dropout, hidden_layer)

    @property
    def features(self) -> tuple[str, ...]:
        return self.pair.features.features

    def forward(self, u: torch.Tensor, v: torch.Tensor | None = None) -> torch.Tensor:
        return _squeeze_one(self.classifier(self.pair(u, v)))  # (B,) or (B, out_dim)


class CrossEncoderHead(nn.Module):
    """Dropout, then linear, over the pooled vector of the joined pair ``[CLS] a [SEP] b [SEP]`` (report E).

    One encoder pass sees both sentences, so attention compares them token by token; the price is one pass per
    pair (no reusable sentence vectors). ``forward(x (B, H)) -> (B,)`` for ``out_dim == 1`` (a BCE logit or a
    regression score), else ``(B, out_dim)`` logits. Pool the joined pair with ``"cls"`` (BERT's setup) or
    ``"mean"``.
    """
    num_inputs = 1

    def __init__(self, hidden: int, out_dim: int = 1, dropout: float = DEFAULT_DROPOUT,
                 hidden_layer: int | None = None):
        super().__init__()
        self.hidden = _positive_int(hidden, "hidden", "CrossEncoderHead")
        self.out_dim = _positive_int(out_dim, "out_dim", "CrossEncoderHead")
        self.classifier = _Classifier(hidden, out_dim, dropout, hidden_layer)

    def forward(self, x: torch.Tensor, v: torch.Tensor | None = None) -> torch.Tensor:
        if v is not None:
            raise TypeError("CrossEncoderHead: takes one pooled vector of the joined pair, got two (u and v); "
                            "use the cross layout (one [CLS] a [SEP] b [SEP] input) or a bi-encoder head.")
        _check_vector(x, self.hidden, "CrossEncoderHead", "x")
        return _squeeze_one(self.classifier(x))  # (B,) or (B, out_dim)


class CosineSimilarityHead(nn.Module):
    """cos(u, v), mapped linearly from ``cosine_range`` onto ``label_range`` (Sentence-BERT's regression).

    ``forward(u, v) -> scores (B,)`` in the label's units: with the defaults cos -1 -> 0 and cos 1 -> 5 (STS).
    :meth:`cosine` gives the raw cosine, which the embedding losses (CosineSimilarityLoss, CoSENT,
    CosineEmbeddingLoss, MNRL) use. No parameters, so a cosine head trains only the encoder.

    Match ``cosine_range`` to what the loss teaches: CosineSimilarityLoss maps labels onto cosines in [0, 1]
    (sentence-transformers' convention), so pair it with ``cosine_range=(0, 1)`` to predict on the label scale;
    CoSENT only ranks, and Pearson does not change under a linear map, so any range gives the same metric.
    For a binary task (``label_range=(0, 1)``) a score above 0.5 means cos above the middle of
    ``cosine_range``; tune that threshold on dev for the best accuracy. Computed in float32.
    """
    num_inputs = 2

    def __init__(self, label_range: Sequence[float] = (0.0, 5.0), cosine_range: Sequence[float] = (-1.0, 1.0)):
        super().__init__()
        self.label_range = _check_range(label_range, "CosineSimilarityHead")
        self.cosine_range = _check_range(cosine_range, "CosineSimilarityHead (cosine_range)")

    @staticmethod
    def cosine(u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """cos(u, v) per row in float32: ``(B, H), (B, H) -> (B,)``."""
        _check_pair(u, v, None, "CosineSimilarityHead")
        return F.cosine_similarity(u.float(), v.float(), dim=-1)  # (B,)

    def forward(self, u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        lo, hi = self.label_range
        c0, c1 = self.cosine_range
        return lo + (self.cosine(u, v) - c0) * ((hi - lo) / (c1 - c0))  # (B,)

    def extra_repr(self) -> str:
        return f"label_range={self.label_range}, cosine_range={self.cosine_range}"


class SharedPairLayer(nn.Module):
    """A layer both pair heads share, applied to each sentence vector: linear, activation, dropout (report E).

    ``forward(x (B, hidden)) -> (B, out_dim)``; a multitask model applies it to u and to v and builds the
    paraphrase and similarity heads with ``hidden=out_dim``. ``activation``: ``"tanh"`` (default, as BERT's
    pooler; keeps signs, so cosines can still be negative), ``"relu"``, ``"gelu"`` or ``"none"``.
    """
    ACTIVATIONS = {"tanh": nn.Tanh, "relu": nn.ReLU, "gelu": nn.GELU, "none": nn.Identity}

    def __init__(self, hidden: int, out_dim: int | None = None, dropout: float = DEFAULT_DROPOUT,
                 activation: str = "tanh"):
        super().__init__()
        self.hidden = _positive_int(hidden, "hidden", "SharedPairLayer")
        self.out_dim = hidden if out_dim is None else _positive_int(out_dim, "out_dim", "SharedPairLayer")
        if activation not in self.ACTIVATIONS:
            raise ValueError(f"SharedPairLayer: activation {activation!r} is not known; use one of "
                             f"{list(self.ACTIVATIONS)}.")
        self.dense = nn.Linear(hidden, self.out_dim)
        self.activation = self.ACTIVATIONS[activation]()
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _check_vector(x, self.hidden, "SharedPairLayer", "x")
        return self.dropout(self.activation(self.dense(x)))  # (B, out_dim)


class SigmoidRegressionHead(nn.Module):
    """A score bounded to ``label_range`` by a sigmoid: ``lo + (hi - lo) * sigmoid(linear(features))`` (report E).

    ``forward(u, v) -> scores (B,)``, never outside the range; train with MSE on the raw labels.
    ``features=None`` takes one pooled vector of a joined pair instead (``forward(x)``, cross layout).
    """

    def __init__(self, hidden: int, features: Sequence[str] | None = ("u", "v", "|u-v|"),
                 label_range: Sequence[float] = (0.0, 5.0), dropout: float = DEFAULT_DROPOUT,
                 hidden_layer: int | None = None):
        super().__init__()
        who = "SigmoidRegressionHead"
        self.hidden = _positive_int(hidden, "hidden", who)
        self.label_range = _check_range(label_range, who)
        self.pair = _PairInput(hidden, features, who)
        self.num_inputs = self.pair.num_inputs
        self.regressor = _Classifier(self.pair.width, 1, dropout, hidden_layer)

    def forward(self, u: torch.Tensor, v: torch.Tensor | None = None) -> torch.Tensor:
        lo, hi = self.label_range
        z = self.regressor(self.pair(u, v)).squeeze(-1)  # (B,)
        return lo + (hi - lo) * torch.sigmoid(z)  # (B,)


# ------------------------------------------------------------------------------------------------ factory
# The head kinds a config may name: a new head is one class and one line here (its options are its __init__'s).
HEAD_REGISTRY = Registry("head kind", {
    "sentiment": SentimentHead,
    "bi_encoder": BiEncoderPairHead,
    "cosine": CosineSimilarityHead,
    "cross_encoder": CrossEncoderHead,
    "sigmoid_regression": SigmoidRegressionHead,
    "buckets": BucketClassificationHead,
}, plural="kinds", owner="head", skip=("self", "hidden"))
HEADS = HEAD_REGISTRY.names  # the built-in kinds (read HEAD_REGISTRY.names for any added later)


def head_options(kind: str) -> dict:
    """The options of a head kind and their defaults (``hidden`` excluded): what a config's ``head_options`` may set."""
    return HEAD_REGISTRY.options(kind)


def make_head(kind: str, hidden: int, **options) -> nn.Module:
    """Build a head by name, so a YAML config can choose it: ``make_head("bi_encoder", 384, out_dim=1)``.

    Kinds (see the table in the module docstring and docs/HEADS_AND_LOSSES.md):
    ``"sentiment"`` (num_labels, dropout), ``"bi_encoder"`` (features, out_dim, dropout, hidden_layer),
    ``"cosine"`` (label_range, cosine_range; ``hidden`` is not used), ``"cross_encoder"`` (out_dim, dropout,
    hidden_layer), ``"sigmoid_regression"`` (features, label_range, dropout, hidden_layer), ``"buckets"``
    (num_buckets, label_range, features, dropout, hidden_layer). An unknown kind or option raises ValueError
    listing the valid ones.
    """
    if HEAD_REGISTRY[kind] is CosineSimilarityHead:  # the cosine of two vectors has no width to know
        return HEAD_REGISTRY.make(kind, **options)
    return HEAD_REGISTRY.make(kind, hidden, **options)