"""Frozen-encoder baselines (mtkit.eval.baselines): the threshold search against brute force, cosines and features
by hand, embeddings against the encoder run one sentence at a time, and the baselines on the demo set."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from mtkit.eval.baselines import (
    PROBE_CS,
    best_threshold,
    cross_fitted_threshold,
    embed_sentences,
    frozen_baselines,
    l2_normalize,
    linear_probe,
    linear_probe_accuracy,
    pair_cosines,
    pair_features,
)


def brute_force_threshold(scores, labels):
    candidates = np.concatenate([np.unique(scores), [np.inf]])  # predict 1 from each distinct score up, or never
    return max(((scores >= t) == labels.astype(bool)).mean() for t in candidates)


@pytest.mark.parametrize("seed", range(5))
def test_best_threshold_matches_brute_force(seed):
    rng = np.random.default_rng(seed)
    scores = np.round(rng.normal(size=200), 1)  # many ties
    labels = (scores + rng.normal(scale=0.8, size=200) > 0.2).astype(int)
    threshold, accuracy = best_threshold(scores, labels)
    assert accuracy == pytest.approx(brute_force_threshold(scores, labels))
    assert ((scores >= threshold) == labels.astype(bool)).mean() == pytest.approx(accuracy)


def test_best_threshold_edge_cases():
    assert best_threshold(np.array([0.1, 0.2]), np.array([1, 1]))[1] == 1.0  # all positive: threshold below all
    assert best_threshold(np.array([0.1, 0.2]), np.array([0, 0]))[1] == 1.0  # all negative: above all
    t, acc = best_threshold(np.array([0.9, 0.1, 0.5]), np.array([1, 0, 1]))
    assert acc == 1.0 and 0.1 < t <= 0.5
    with pytest.raises(ValueError, match="same non-zero length"):
        best_threshold(np.array([0.1]), np.array([1, 0]))


def test_pair_cosines_and_features_by_hand():
    u = np.array([[1.0, 0.0], [1.0, 1.0]])
    v = np.array([[0.0, 2.0], [2.0, 2.0]])
    np.testing.assert_allclose(pair_cosines(u, v), [0.0, 1.0], atol=1e-12)
    np.testing.assert_array_equal(pair_features(u, v)[0], [1, 0, 0, 2, 1, 2, 0, 0])


def test_embeddings_equal_one_sentence_at_a_time():
    from mtkit.model.bert import BertModel
    from mtkit.model.pooling import mean_pool
    from mtkit.model.tokenizer import Tokenizer
    model, tokenizer = BertModel.from_pretrained(), Tokenizer.from_pretrained()
    sentences = ["a", "a much longer sentence about a film that nobody liked at all", "the cat sat", "ok then"]
    batched = embed_sentences(model, tokenizer, sentences, batch_size=3)
    with torch.no_grad():
        for i, s in enumerate(sentences):
            b = tokenizer([s])
            alone = mean_pool(model(b["input_ids"], attention_mask=b["attention_mask"]).last_hidden_state,
                              b["attention_mask"])[0].numpy()
            np.testing.assert_allclose(batched[i], alone, atol=2e-5)


def test_frozen_baselines_on_the_demo_set():
    from mtkit.data.demo import demo_data_dir
    scores = frozen_baselines(demo_data_dir(), train_limit=120)
    assert set(scores) == {"sst", "para", "sts"}
    assert set(scores["sst"]) == {"linear_probe", "linear_probe_C", "linear_probe_standardized"}
    assert set(scores["para"]) == {"zero_shot", "zero_shot_dev_threshold", "linear_probe", "linear_probe_C",
                                   "linear_probe_standardized"}
    assert set(scores["sts"]) == {"zero_shot", "linear_probe", "linear_probe_alpha"}
    assert scores["sst"]["linear_probe_C"] in PROBE_CS
    # the demo set is learnable from pretrained vectors: far above chance on each task
    assert scores["sst"]["linear_probe"] > 0.4 and scores["para"]["zero_shot"] > 0.7 and scores["sts"]["zero_shot"] > 0.6
    # the dev-tuned threshold is the best possible on dev, so never below the train-tuned one
    assert scores["para"]["zero_shot_dev_threshold"] >= scores["para"]["zero_shot"]


# ----- the linear probe: regularisation tuned on held-out training data, never on dev ---------------------------

def anisotropic_features(seed=0, n_train=200, n_dev=2000, signal=5, noise=195, classes=3):
    """Like sentence embeddings: the labels depend on a few high-variance directions, and many low-variance
    directions carry only noise. Standardising blows the noise up to the signal's scale (and C = 1 then fits it);
    an L2 penalty on the raw features leaves it small."""
    rng = np.random.default_rng(seed)
    w = rng.normal(size=(classes, signal))

    def draw(n):
        s = rng.normal(size=(n, signal))
        x = np.concatenate([s, 0.05 * rng.normal(size=(n, noise))], axis=1).astype(np.float32)  # (n, 200)
        y = np.argmax(s @ w.T + rng.gumbel(size=(n, classes)), axis=1)
        return x, y
    return (*draw(n_train), *draw(n_dev))


def test_the_tuned_probe_beats_the_fixed_one_and_nears_the_best_setting():
    """The old probe (standardised, C = 1) overfits the noise directions; tuning C and the standardisation on
    held-out training data finds a setting within 0.05 of the best one of the grid on dev."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    x_train, y_train, x_dev, y_dev = anisotropic_features()
    fixed = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000)).fit(x_train, y_train)
    fixed_acc = fixed.score(x_dev, y_dev)
    tuned = linear_probe_accuracy(x_train, y_train, x_dev, y_dev)
    best = max(make_pipeline(*([StandardScaler()] if scaled else []), LogisticRegression(C=C, max_iter=5000))
               .fit(x_train, y_train).score(x_dev, y_dev) for C in PROBE_CS for scaled in (False, True))
    print(f"fixed C = 1 {fixed_acc:.3f}, tuned {tuned:.3f}, best of the grid on dev {best:.3f}")
    assert tuned > fixed_acc + 0.1
    assert tuned > best - 0.05


def test_the_probe_never_looks_at_dev():
    """Shuffled dev labels and random dev features change nothing that was chosen: same C, same standardisation,
    same held-out scores (only the dev accuracy differs)."""
    x_train, y_train, x_dev, y_dev = anisotropic_features(seed=1, noise=45)
    grid = dict(Cs=(0.01, 1.0, 100.0), seed=3)
    honest = linear_probe(x_train, y_train, x_dev, y_dev, **grid)
    rng = np.random.default_rng(0)
    shuffled = linear_probe(x_train, y_train, x_dev, rng.permutation(y_dev), **grid)
    noise = linear_probe(x_train, y_train, rng.normal(size=x_dev.shape), y_dev, **grid)
    for other in (shuffled, noise):
        assert (other.C, other.standardize, other.holdout_accuracy) == \
            (honest.C, honest.standardize, honest.holdout_accuracy)
    assert shuffled.accuracy < honest.accuracy - 0.1  # the dev labels do reach the final score
    assert set(honest.holdout_accuracy) == {(s, c) for s in (False, True) for c in (0.01, 1.0, 100.0)}
    # the held-out split is seeded: the same seed gives the same choice
    again = linear_probe(x_train, y_train, x_dev, y_dev, **grid)
    assert again.holdout_accuracy == honest.holdout_accuracy


def test_probe_arguments_are_checked():
    x, y = np.zeros((10, 2)), np.array([0, 1] * 5)
    with pytest.raises(ValueError, match="holdout"):
        linear_probe(x, y, x, y, holdout=1.5)
    with pytest.raises(ValueError, match="two classes"):
        linear_probe(x, np.zeros(10), x, y)


def test_l2_normalize():
    x = np.array([[3.0, 4.0], [0.0, 0.0]], dtype=np.float32)
    out = l2_normalize(x)
    np.testing.assert_allclose(out, [[0.6, 0.8], [0.0, 0.0]])
    assert out.dtype == np.float32


def test_cross_fitted_threshold_uses_only_the_other_folds():
    """Each fold is decided by the threshold best on the other folds, never by its own labels."""
    rng = np.random.default_rng(0)
    scores = rng.uniform(size=101)
    labels = (scores + rng.normal(scale=0.1, size=101) > 0.7).astype(int)  # the right threshold is near 0.7
    fit = cross_fitted_threshold(scores, labels, folds=3, seed=1)
    assert sorted(np.bincount(fit.folds)) == [33, 34, 34]
    for k, threshold in enumerate(fit.thresholds):
        others = fit.folds != k
        assert threshold == best_threshold(scores[others], labels[others])[0]
        assert np.array_equal(fit.predictions[~others], (scores[~others] >= threshold).astype(float))
    assert fit.accuracy == pytest.approx((fit.predictions == labels).mean())
    # a model whose 0.5 threshold is badly placed: cross-fitting moves it close to the right one
    assert all(0.6 < t < 0.8 for t in fit.thresholds)
    assert fit.accuracy > ((scores >= 0.5) == labels).mean() + 0.1
    # honest: never better than the threshold tuned on all the examples at once
    assert fit.accuracy <= best_threshold(scores, labels)[1]


def test_cross_fitted_threshold_cannot_fit_noise():
    """On labels unrelated to the scores, a threshold tuned on the same examples looks better than chance;
    the cross-fitted one does not, on average."""
    gaps = []
    for seed in range(20):
        rng = np.random.default_rng(seed)
        scores, labels = rng.normal(size=60), rng.integers(0, 2, size=60)
        same_data = best_threshold(scores, labels)[1]
        honest = cross_fitted_threshold(scores, labels, seed=seed).accuracy
        gaps.append(same_data - honest)
    assert np.mean(gaps) > 0.05


def test_cross_fitted_threshold_checks_its_input():
    with pytest.raises(ValueError, match="0/1"):
        cross_fitted_threshold(np.arange(6.0), np.array([0, 1, 2, 0, 1, 0]))
    with pytest.raises(ValueError, match="same length"):
        cross_fitted_threshold(np.arange(6.0), np.zeros(5))
    with pytest.raises(ValueError, match="folds"):
        cross_fitted_threshold(np.arange(6.0), np.zeros(6), folds=1)
    with pytest.raises(ValueError, match="too few"):
        cross_fitted_threshold(np.arange(3.0), np.zeros(3))
    with pytest.raises(ValueError, match="finite"):
        cross_fitted_threshold(np.array([0.0, np.nan, 1.0, 2.0]), np.array([0, 1, 0, 1]))
