"""Losses against values worked out by hand, and against sentence-transformers' and torch's losses on the same
tensors (values and gradients)."""
from __future__ import annotations

import math

import pytest
import torch

from mtkit.tasks.losses import (
    HEADS_FOR_LOSS,
    LOSSES,
    BCEWithLogitsLoss,
    BucketedCrossEntropyLoss,
    CoSENTLoss,
    CosineEmbeddingLoss,
    CosineSimilarityLoss,
    CrossEntropyLoss,
    MSELoss,
    MultipleNegativesRankingLoss,
    check_pairing,
    loss_options,
    make_loss,
)


def _st_losses():
    pytest.importorskip("sentence_transformers")
    try:  # sentence-transformers >= 6
        from sentence_transformers.sentence_transformer import losses
    except ImportError:  # 3.x - 5.x
        from sentence_transformers import losses
    return losses


class Precomputed(torch.nn.Module):
    """A stand-in SentenceTransformer: each features dict already holds its sentence embedding, so the
    library's own forward (embeddings, then its loss formula) runs on our tensors."""
    device = torch.device("cpu")

    def forward(self, features):
        return {"sentence_embedding": features["embedding"]}


def _st_value_and_grads(st_loss, u, v, labels):
    u, v = u.clone().requires_grad_(True), v.clone().requires_grad_(True)
    value = st_loss([{"embedding": u}, {"embedding": v}], labels)
    value.backward()
    return value.detach(), u.grad, v.grad


def _our_value_and_grads(loss, u, v, labels):
    u, v = u.clone().requires_grad_(True), v.clone().requires_grad_(True)
    value = loss(u, v, labels)
    value.backward()
    return value.detach(), u.grad, v.grad


def _random_pairs(B=8, H=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(B, H, generator=g), torch.randn(B, H, generator=g)


def _at_cosine(c: float) -> list[float]:
    """A unit vector whose cosine with (1, 0) is c."""
    return [c, math.sqrt(1 - c * c)]


# ----------------------------------------------------------------------------------------------- on outputs
def test_cross_entropy_by_hand():
    logits = torch.tensor([[2.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    labels = torch.tensor([0, 2])
    row0 = -math.log(math.exp(2) / (math.exp(2) + 2))
    row1 = -math.log(1 / (2 + math.e))
    assert CrossEntropyLoss()(logits, labels).item() == pytest.approx((row0 + row1) / 2, rel=1e-6)
    torch.testing.assert_close(CrossEntropyLoss(label_smoothing=0.1)(logits, labels),
                               torch.nn.CrossEntropyLoss(label_smoothing=0.1)(logits, labels))
    with pytest.raises(TypeError, match="class ids"):
        CrossEntropyLoss()(logits, labels.float())
    with pytest.raises(ValueError, match="bce_with_logits"):
        CrossEntropyLoss()(logits[:, 0], labels)


def test_bce_with_logits_by_hand():
    z = torch.tensor([0.0, 2.0])
    y = torch.tensor([1.0, 0.0])
    # y=1: -log sigmoid(0) = log 2; y=0: -log(1 - sigmoid(2)) = log(1 + e^2)
    expected = (math.log(2) + math.log(1 + math.exp(2))) / 2
    assert BCEWithLogitsLoss()(z, y).item() == pytest.approx(expected, rel=1e-6)
    assert BCEWithLogitsLoss()(z[:, None], y.long()).item() == pytest.approx(expected, rel=1e-6)  # (B, 1), 0/1 ids
    weighted = (2 * math.log(2) + math.log(1 + math.exp(2))) / 2  # the positive term counts twice
    assert BCEWithLogitsLoss(pos_weight=2.0)(z, y).item() == pytest.approx(weighted, rel=1e-6)
    with pytest.raises(ValueError, match="looks like 2 class logits: use cross_entropy"):
        BCEWithLogitsLoss()(torch.zeros(2, 2), y)


def test_mse_by_hand_and_no_silent_broadcast():
    s = torch.tensor([1.0, 2.0])
    y = torch.tensor([0.0, 4.0])
    assert MSELoss()(s, y).item() == pytest.approx((1 + 4) / 2)
    # torch.nn.MSELoss would broadcast (B, 1) against (B,) to (B, B) and average 4 differences;
    # ours reads (B, 1) as (B,)
    assert MSELoss()(s[:, None], y).item() == pytest.approx(2.5)
    with pytest.raises(ValueError, match=r"expected labels of shape \(B,\) = \(2,\)"):
        MSELoss()(s, torch.tensor([0.0, 4.0, 1.0]))


# ----------------------------------------------------------------------------------------------- on embeddings
def test_cosine_similarity_loss_by_hand():
    u = torch.tensor([[1.0, 0.0], [1.0, 0.0]])
    v = torch.tensor([[0.0, 1.0], [2.0, 0.0]])  # cos 0 and 1
    labels = torch.tensor([2.5, 5.0])  # STS scores -> targets 0.5 and 1.0
    assert CosineSimilarityLoss(label_range=(0, 5))(u, v, labels).item() == pytest.approx((0.5**2 + 0.0) / 2)
    # targets on [-1, 1] instead: 2.5 -> 0, 5 -> 1; both cosines hit
    assert CosineSimilarityLoss(label_range=(0, 5), target_range=(-1, 1))(u, v, labels).item() == pytest.approx(0.0)


def test_cosine_similarity_loss_matches_sentence_transformers():
    losses = _st_losses()
    u, v = _random_pairs()
    scores = torch.tensor([0.0, 1.2, 2.5, 5.0, 3.3, 4.1, 0.7, 2.0])
    # sentence-transformers expects labels already in [0, 1]; ours scales them from label_range
    expected = _st_value_and_grads(losses.CosineSimilarityLoss(Precomputed()), u, v, scores / 5)
    ours = _our_value_and_grads(CosineSimilarityLoss(label_range=(0, 5)), u, v, scores)
    for a, b in zip(ours, expected):
        torch.testing.assert_close(a, b)


def test_cosine_embedding_loss_by_hand():
    u = torch.tensor([[1.0, 0.0]] * 4)
    v = torch.tensor([_at_cosine(0.6), _at_cosine(0.6), _at_cosine(0.28), [-0.8, 0.6]])
    labels = torch.tensor([1, 0, 0, 1])
    # y=1: 1 - cos; y=0 (read as -1): max(0, cos - margin), margin 0.5
    expected = ((1 - 0.6) + (0.6 - 0.5) + 0.0 + (1 + 0.8)) / 4
    assert CosineEmbeddingLoss(margin=0.5)(u, v, labels).item() == pytest.approx(expected, rel=1e-6)
    plus_minus = torch.tensor([1, -1, -1, 1])  # torch's convention gives the same
    assert CosineEmbeddingLoss(margin=0.5)(u, v, plus_minus).item() == pytest.approx(expected, rel=1e-6)
    with pytest.raises(ValueError, match="margin is a cosine"):
        CosineEmbeddingLoss(margin=2.0)
    assert CosineEmbeddingLoss(margin=0.5).cosine_range == (0.5, 1.0)


@pytest.mark.parametrize("margin", [0.0, 0.3, -0.2])
def test_cosine_embedding_loss_matches_torch(margin):
    u, v = _random_pairs(B=16)
    v[:4] = u[:4] + 0.1 * v[:4]  # some similar pairs, so both branches and the hinge are exercised
    labels01 = torch.tensor([1, 1, 1, 0, 1, 0, 0, 1, 0, 0, 1, 0, 1, 0, 0, 1])
    expected = _our_value_and_grads(lambda a, b, y: torch.nn.CosineEmbeddingLoss(margin=margin)(a, b, y),
                                    u, v, labels01 * 2 - 1)
    ours = _our_value_and_grads(CosineEmbeddingLoss(margin=margin), u, v, labels01)
    for a, b in zip(ours, expected):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_cosent_by_hand():
    u = torch.tensor([[1.0, 0.0]] * 3)
    c = [0.9, 0.2, 0.5]
    v = torch.tensor([_at_cosine(x) for x in c])
    labels = torch.tensor([1.0, 2.0, 3.0])
    # pairs (i, j) with y_i > y_j: (1, 0), (2, 0), (2, 1); each adds exp(scale * (c_j - c_i))
    for scale in (1.0, 20.0):
        terms = [math.exp(scale * (c[0] - c[1])), math.exp(scale * (c[0] - c[2])), math.exp(scale * (c[1] - c[2]))]
        expected = math.log(1 + sum(terms))
        assert CoSENTLoss(scale=scale)(u, v, labels).item() == pytest.approx(expected, rel=1e-5)
    # equal labels are never compared: log(1 + 0) = 0
    assert CoSENTLoss()(u, v, torch.tensor([2.0, 2.0, 2.0])).item() == 0.0
    # only the order of labels matters
    torch.testing.assert_close(CoSENTLoss()(u, v, labels), CoSENTLoss()(u, v, labels * 10 - 3))


@pytest.mark.parametrize("scale", [20.0, 5.0])
def test_cosent_matches_sentence_transformers(scale):
    losses = _st_losses()
    u, v = _random_pairs(B=12)
    scores = torch.tensor([0.0, 1.2, 2.5, 5.0, 3.3, 4.1, 0.7, 2.5, 2.5, 1.2, 4.6, 3.0])  # with ties
    expected = _st_value_and_grads(losses.CoSENTLoss(Precomputed(), scale=scale), u, v, scores)
    ours = _our_value_and_grads(CoSENTLoss(scale=scale), u, v, scores)
    for a, b in zip(ours, expected):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_mnrl_by_hand():
    a = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    p = torch.tensor([[1.0, 0.0], [0.6, 0.8]])
    # cos(a_i, p_j): [[1, 0.6], [0, 0.8]]; the right positive is on the diagonal
    row0 = -math.log(math.exp(1.0) / (math.exp(1.0) + math.exp(0.6)))
    row1 = -math.log(math.exp(0.8) / (math.exp(0.0) + math.exp(0.8)))
    assert MultipleNegativesRankingLoss(scale=1.0)(a, p).item() == pytest.approx((row0 + row1) / 2, rel=1e-6)
    col0 = -math.log(math.exp(1.0) / (math.exp(1.0) + math.exp(0.0)))  # positive p_0 must pick its anchor a_0
    col1 = -math.log(math.exp(0.8) / (math.exp(0.6) + math.exp(0.8)))
    symmetric = MultipleNegativesRankingLoss(scale=1.0, symmetric=True)(a, p).item()
    assert symmetric == pytest.approx(((row0 + row1) / 2 + (col0 + col1) / 2) / 2, rel=1e-6)


def test_mnrl_uses_only_positive_pairs():
    loss = MultipleNegativesRankingLoss()
    u, v = _random_pairs(B=6)
    labels = torch.tensor([1.0, 0.0, 1.0, 1.0, 0.0, 0.0])
    keep = labels > 0
    torch.testing.assert_close(loss(u, v, labels), loss(u[keep], v[keep]))
    u = u.requires_grad_(True)
    zero = loss(u, v, torch.zeros(6))
    assert zero.item() == 0.0
    zero.backward()  # still part of the graph: a batch without duplicates does not break the step
    assert torch.equal(u.grad, torch.zeros_like(u))


def test_mnrl_matches_sentence_transformers():
    losses = _st_losses()
    u, v = _random_pairs(B=10)
    for scale in (20.0, 3.0):
        expected = _st_value_and_grads(losses.MultipleNegativesRankingLoss(Precomputed(), scale=scale), u, v, None)
        ours = _our_value_and_grads(MultipleNegativesRankingLoss(scale=scale), u, v, None)
        for a, b in zip(ours, expected):
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    try:  # the symmetric variant: both directions, one softmax each, averaged (sentence-transformers >= 5.2)
        reference = losses.MultipleNegativesRankingLoss(Precomputed(), directions=("query_to_doc", "doc_to_query"),
                                                        partition_mode="per_direction")
    except TypeError:
        return
    expected = _st_value_and_grads(reference, u, v, None)
    ours = _our_value_and_grads(MultipleNegativesRankingLoss(symmetric=True), u, v, None)
    for a, b in zip(ours, expected):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_bucketed_cross_entropy_by_hand():
    logits = torch.tensor([[0.0, 1.0, 2.0, 0.0, 0.0, 0.0]])
    log_p = torch.log_softmax(logits, dim=-1)[0]
    # 2.4 is nearest to bucket 2
    assert BucketedCrossEntropyLoss(6, (0, 5))(logits, torch.tensor([2.4])).item() == pytest.approx(-log_p[2].item())
    # soft: 2.3 is 0.7 of bucket 2 and 0.3 of bucket 3
    soft = BucketedCrossEntropyLoss(6, (0, 5), soft=True)(logits, torch.tensor([2.3])).item()
    assert soft == pytest.approx(-(0.7 * log_p[2] + 0.3 * log_p[3]).item(), rel=1e-6)
    uniform = BucketedCrossEntropyLoss(6)(torch.zeros(3, 6), torch.tensor([0.0, 2.0, 5.0]))
    assert uniform.item() == pytest.approx(math.log(6))
    with pytest.raises(ValueError, match=r"num_buckets=6"):
        BucketedCrossEntropyLoss(6)(torch.zeros(3, 5), torch.tensor([0.0, 2.0, 5.0]))
    with pytest.raises(ValueError, match="label_range"):
        BucketedCrossEntropyLoss(6, (0, 5))(torch.zeros(1, 6), torch.tensor([7.0]))


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_precision_inputs_give_float32_losses(dtype):
    u, v = _random_pairs()
    u, v = u.to(dtype), v.to(dtype)
    labels01 = torch.tensor([1.0, 0.0, 1.0, 1.0, 0.0, 0.0, 1.0, 0.0])
    scores = labels01 * 4 + 0.5
    cases = [
        (CosineSimilarityLoss((0, 5)), (u, v, scores)),
        (CosineEmbeddingLoss(0.2), (u, v, labels01)),
        (CoSENTLoss(), (u, v, scores)),
        (MultipleNegativesRankingLoss(), (u, v, labels01)),
        (CrossEntropyLoss(), (u[:, :5], labels01.long())),
        (BCEWithLogitsLoss(), (u[:, 0], labels01)),
        (MSELoss(), (u[:, 0], scores)),
        (BucketedCrossEntropyLoss(6, (0, 5)), (u[:, :6], scores)),
    ]
    for loss, args in cases:
        out = loss(*args)
        assert out.dtype == torch.float32 and out.dim() == 0 and torch.isfinite(out), type(loss).__name__
        as_float = loss(*[a.float() if a.is_floating_point() and a.dtype == dtype else a for a in args])
        torch.testing.assert_close(out, as_float)  # the same math on the same (rounded) values


def test_make_loss_registry_and_pairings():
    assert LOSSES == ("cross_entropy", "bce_with_logits", "mse", "cosine_similarity", "cosine_embedding", "cosent",
                      "multiple_negatives_ranking", "bucketed_cross_entropy")
    takes = {name: make_loss(name).takes for name in LOSSES}
    assert [n for n, t in takes.items() if t == "embeddings"] == ["cosine_similarity", "cosine_embedding", "cosent",
                                                                  "multiple_negatives_ranking"]
    assert make_loss("cosent", scale=10).scale == 10.0
    assert isinstance(make_loss("multiple_negatives_ranking", symmetric=True), MultipleNegativesRankingLoss)
    with pytest.raises(ValueError, match=r"'cosnet' is not known. Did you mean 'cosent'\?.*Valid losses: cross_ent"):
        make_loss("cosnet")
    with pytest.raises(ValueError, match=r"no option 'margn'. Did you mean 'margin'\?"):
        make_loss("cosine_embedding", margn=0.5)
    assert loss_options("cosine_similarity") == {"label_range": (0.0, 1.0), "target_range": (0.0, 1.0)}
    # the cosine interval a cosine head should map onto the labels: where the loss puts the lowest/highest label
    assert make_loss("cosine_similarity", label_range=(0, 5)).cosine_range == (0.0, 1.0)
    assert make_loss("cosine_similarity", target_range=(-1, 1)).cosine_range == (-1.0, 1.0)
    assert make_loss("cosent").cosine_range is None and make_loss("mse").cosine_range is None
    from mtkit.tasks.heads import HEADS
    assert set(HEADS_FOR_LOSS) == set(LOSSES)
    assert all(h in HEADS for heads in HEADS_FOR_LOSS.values() for h in heads)
    check_pairing("sentiment", "cross_entropy")
    check_pairing("buckets", "bucketed_cross_entropy")
    with pytest.raises(ValueError, match="trains the pooled embeddings u, v directly.*Heads for 'cosent': cosine"):
        check_pairing("bi_encoder", "cosent")
    with pytest.raises(ValueError, match="Heads for 'bucketed_cross_entropy': buckets"):
        check_pairing("sentiment", "bucketed_cross_entropy")
