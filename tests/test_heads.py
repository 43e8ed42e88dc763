"""Heads against hand-computed values and sentence-transformers' SoftmaxLoss classifier; buckets; shape errors."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from mtkit.tasks.heads import (
    HEADS,
    BiEncoderPairHead,
    BucketClassificationHead,
    CosineSimilarityHead,
    CrossEncoderHead,
    PairFeatures,
    SentimentHead,
    SharedPairLayer,
    SigmoidRegressionHead,
    bucket_centres,
    buckets_to_scores,
    head_options,
    make_head,
    scores_to_buckets,
    scores_to_soft_buckets,
)


def _uv(B=4, H=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(B, H, generator=g), torch.randn(B, H, generator=g)


def test_sentiment_head_is_dropout_then_linear():
    head = SentimentHead(hidden=8, num_labels=5, dropout=0.5)
    u, _ = _uv()
    W, b = head.classifier.weight, head.classifier.bias
    head.eval()  # no dropout
    torch.testing.assert_close(head(u), u @ W.T + b)
    assert head(u).shape == (4, 5)
    head.train()  # dropout on the input vector, then the linear layer: same random draws, same result
    torch.manual_seed(3)
    out = head(u)
    torch.manual_seed(3)
    torch.testing.assert_close(out, F.dropout(u, 0.5, training=True) @ W.T + b)
    assert SentimentHead(8, num_labels=2)(u).shape == (4, 2)  # binary sentiment (CFIMDB)


def test_pair_features_by_hand():
    u = torch.tensor([[1.0, 2.0]])
    v = torch.tensor([[3.0, -1.0]])
    # u, v, |u-v| = (2, 3), u*v = (3, -2)
    assert torch.equal(PairFeatures(("u", "v", "|u-v|", "u*v"))(u, v),
                       torch.tensor([[1.0, 2.0, 3.0, -1.0, 2.0, 3.0, 3.0, -2.0]]))
    assert torch.equal(PairFeatures(["u*v", "|u - v|"])(u, v), torch.tensor([[3.0, -2.0, 2.0, 3.0]]))
    assert torch.equal(PairFeatures("v, u")(u, v), torch.tensor([[3.0, -1.0, 1.0, 2.0]]))
    assert PairFeatures(("u", "v", "|u-v|")).width(384) == 3 * 384
    with pytest.raises(ValueError, match=r"unknown feature 'u-v' \(did you mean '\|u-v\|'\?\)"):
        PairFeatures(("u", "u-v"))
    with pytest.raises(ValueError, match="repeat"):
        PairFeatures(("u", "u"))
    with pytest.raises(ValueError, match="empty"):
        PairFeatures(())


@pytest.mark.parametrize("multiplication", [False, True])
def test_bi_encoder_head_matches_sentence_transformers_softmax_classifier(multiplication):
    """SBERT's SoftmaxLoss builds [u; v; |u-v|(; u*v)] -> linear; with its weights our head gives its logits."""
    pytest.importorskip("sentence_transformers")
    try:
        from sentence_transformers.sentence_transformer.losses import SoftmaxLoss
    except ImportError:
        from sentence_transformers.losses import SoftmaxLoss

    class Precomputed(torch.nn.Module):
        """A stand-in SentenceTransformer whose features already hold the sentence embedding."""
        device = torch.device("cpu")

        def forward(self, features):
            return {"sentence_embedding": features["embedding"]}

    H, labels = 8, 3
    u, v = _uv(B=5, H=H)
    reference = SoftmaxLoss(Precomputed(), H, labels, concatenation_sent_multiplication=multiplication)
    _, expected = reference([{"embedding": u}, {"embedding": v}], labels=None)
    features = ("u", "v", "|u-v|", "u*v") if multiplication else ("u", "v", "|u-v|")
    head = BiEncoderPairHead(H, features=features, out_dim=labels, dropout=0.0)
    head.classifier.net[1].load_state_dict(reference.classifier.state_dict())
    torch.testing.assert_close(head(u, v), expected)


def test_bi_encoder_head_by_hand_and_hidden_layer():
    u, v = _uv()
    head = BiEncoderPairHead(8, features=("u", "v"), out_dim=1, dropout=0.0).eval()  # report A's STS regression
    linear = head.classifier.net[1]
    expected = (torch.cat([u, v], dim=-1) @ linear.weight.T + linear.bias).squeeze(-1)
    out = head(u, v)
    assert out.shape == (4,)  # one score per pair, the shape of the labels
    torch.testing.assert_close(out, expected)
    mlp = BiEncoderPairHead(8, out_dim=2, hidden_layer=16, dropout=0.0).eval()
    first, last = mlp.classifier.net[1], mlp.classifier.net[4]
    x = torch.cat([u, v, (u - v).abs()], dim=-1)
    torch.testing.assert_close(mlp(u, v), torch.relu(x @ first.weight.T + first.bias) @ last.weight.T + last.bias)
    assert mlp.features == ("u", "v", "|u-v|") and mlp.num_inputs == 2


def test_cosine_head_by_hand():
    u = torch.tensor([[3.0, 4.0], [1.0, 0.0], [1.0, 0.0], [1.0, 1.0]])
    v = torch.tensor([[4.0, 3.0], [0.0, 1.0], [-2.0, 0.0], [2.0, 2.0]])
    cos = torch.tensor([24 / 25, 0.0, -1.0, 1.0])
    head = CosineSimilarityHead(label_range=(0, 5))
    torch.testing.assert_close(head.cosine(u, v), cos)
    torch.testing.assert_close(head(u, v), (cos + 1) / 2 * 5)  # -1 -> 0, 0 -> 2.5, 1 -> 5
    zero_one = CosineSimilarityHead(label_range=(0, 5), cosine_range=(0, 1))  # to predict after CosineSimilarityLoss
    torch.testing.assert_close(zero_one(u, v), cos * 5)
    assert list(head.parameters()) == []
    assert head(u.half(), v.half()).dtype == torch.float32  # computed in float32


def test_cross_encoder_head():
    x, _ = _uv()
    head = CrossEncoderHead(8, out_dim=1, dropout=0.0).eval()
    linear = head.classifier.net[1]
    torch.testing.assert_close(head(x), (x @ linear.weight.T + linear.bias).squeeze(-1))
    assert CrossEncoderHead(8, out_dim=3)(x).shape == (4, 3)
    with pytest.raises(TypeError, match="one pooled vector of the joined pair"):
        head(x, x)


def test_shared_pair_layer_by_hand_and_shared_by_two_heads():
    u, v = _uv()
    layer = SharedPairLayer(8, out_dim=6, dropout=0.0)
    torch.testing.assert_close(layer(u), torch.tanh(u @ layer.dense.weight.T + layer.dense.bias))
    relu = SharedPairLayer(8, activation="relu", dropout=0.0)
    assert relu.out_dim == 8 and (relu(u) >= 0).all()
    para = BiEncoderPairHead(layer.out_dim, dropout=0.0)  # the pair heads are built on the layer's width
    sts = CosineSimilarityHead()
    total = para(layer(u), layer(v)).sum() + sts(layer(u), layer(v)).sum()
    total.backward()
    assert layer.dense.weight.grad is not None and layer.dense.weight.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="activation 'swish'"):
        SharedPairLayer(8, activation="swish")


def test_sigmoid_regression_head_is_bounded():
    u, v = _uv()
    head = SigmoidRegressionHead(8, label_range=(0, 5), dropout=0.0).eval()
    linear = head.regressor.net[1]
    z = (torch.cat([u, v, (u - v).abs()], dim=-1) @ linear.weight.T + linear.bias).squeeze(-1)
    torch.testing.assert_close(head(u, v), 5 * torch.sigmoid(z))
    with torch.no_grad():
        linear.weight.mul_(1000.0)
    out = head(u, v)
    assert ((out >= 0) & (out <= 5)).all()
    cross = SigmoidRegressionHead(8, features=None, label_range=(1, 2), dropout=0.0)
    assert cross.num_inputs == 1 and ((cross(u) >= 1) & (cross(u) <= 2)).all()
    with pytest.raises(TypeError, match="features=None"):
        cross(u, v)


def test_buckets_by_hand():
    assert torch.equal(bucket_centres(6, (0, 5)), torch.tensor([0.0, 1.0, 2.0, 3.0, 4.0, 5.0]))
    assert torch.equal(bucket_centres(3, (0, 1)), torch.tensor([0.0, 0.5, 1.0]))
    scores = torch.tensor([0.0, 0.4, 0.5, 2.5, 3.49, 4.8, 5.0])
    assert scores_to_buckets(scores, 6, (0, 5)).tolist() == [0, 0, 1, 3, 3, 5, 5]  # halves round up
    assert scores_to_buckets(torch.tensor([0.2, 0.3]), 3, (0, 1)).tolist() == [0, 1]
    soft = scores_to_soft_buckets(torch.tensor([2.3, 5.0, 0.0]), 6, (0, 5))
    torch.testing.assert_close(soft, torch.tensor([[0, 0, 0.7, 0.3, 0, 0], [0, 0, 0, 0, 0, 1.0], [1.0, 0, 0, 0, 0, 0]]))
    # the expected value of the soft target is the score itself
    torch.testing.assert_close(buckets_to_scores(soft, (0, 5), from_logits=False), torch.tensor([2.3, 5.0, 0.0]))
    probs = torch.tensor([[0.5, 0.5, 0, 0, 0, 0], [0, 0, 0, 0, 0.25, 0.75]])
    torch.testing.assert_close(buckets_to_scores(probs, (0, 5), from_logits=False), torch.tensor([0.5, 4.75]))
    torch.testing.assert_close(buckets_to_scores(torch.zeros(2, 6), (0, 5)), torch.tensor([2.5, 2.5]))  # uniform
    with pytest.raises(ValueError, match=r"label_range \(0.0, 5.0\); got \[5.5, -1.0\]"):
        scores_to_buckets(torch.tensor([1.0, 5.5, -1.0]), 6, (0, 5))


def test_bucket_head():
    u, v = _uv()
    head = BucketClassificationHead(8, num_buckets=6, label_range=(0, 5), dropout=0.0)
    logits = head(u, v)
    assert logits.shape == (4, 6)
    torch.testing.assert_close(head.scores(logits), logits.softmax(-1) @ torch.arange(6.0))
    assert BucketClassificationHead(8, features=None)(u).shape == (4, 6)


def test_shape_errors_teach():
    u, v = _uv(H=384)
    head = make_head("bi_encoder", 384)
    with pytest.raises(ValueError, match=r"expected u of shape \(B, H=384\) but got \(B, T, H\).*forget to pool"):
        head(torch.zeros(4, 7, 384), v)
    with pytest.raises(ValueError, match=r"built for vectors of width 384"):
        head(torch.zeros(4, 768), torch.zeros(4, 768))
    with pytest.raises(ValueError, match="same shape"):
        head(u, v[:3])
    with pytest.raises(ValueError, match="batch dimension"):
        make_head("sentiment", 384)(u[0])
    with pytest.raises(TypeError, match="needs both u and v"):
        head(u)
    with pytest.raises(TypeError, match="token ids"):
        make_head("sentiment", 384)(torch.zeros(4, 384, dtype=torch.long))


def test_make_head_registry():
    u, v = _uv(H=16)
    assert HEADS == ("sentiment", "bi_encoder", "cosine", "cross_encoder", "sigmoid_regression", "buckets")
    for kind in HEADS:
        head = make_head(kind, 16)
        out = head(u) if head.num_inputs == 1 else head(u, v)
        assert out.shape[0] == 4
    assert isinstance(make_head("bi_encoder", 16, features=["u", "v"], out_dim=1), BiEncoderPairHead)
    assert make_head("cosine", 16, label_range=[0, 1]).label_range == (0.0, 1.0)
    with pytest.raises(ValueError, match=r"'cosin' is not known. Did you mean 'cosine'\?.*Valid kinds: sentiment"):
        make_head("cosin", 16)
    with pytest.raises(ValueError, match=r"has no option 'num_label'. Did you mean 'num_labels'\?"):
        make_head("sentiment", 16, num_label=5)
    assert head_options("sentiment") == {"num_labels": 5, "dropout": 0.3}
    with pytest.raises(ValueError, match="label_range must have low < high"):
        make_head("cosine", 16, label_range=(5, 0))
