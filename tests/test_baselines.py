"""Frozen-encoder baselines (mtkit.baselines): the threshold search against brute force, cosines and features
by hand, embeddings against the encoder run one sentence at a time, and the baselines on the demo set."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from mtkit.baselines import (best_threshold, embed_sentences, frozen_baselines, pair_cosines, pair_features)


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
    from mtkit.bert import BertModel
    from mtkit.pooling import mean_pool
    from mtkit.tokenizer import Tokenizer
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
    assert set(scores["sst"]) == {"linear_probe"}
    assert set(scores["para"]) == {"zero_shot", "zero_shot_dev_threshold", "linear_probe"}
    # the demo set is learnable from pretrained vectors: far above chance on each task
    assert scores["sst"]["linear_probe"] > 0.4 and scores["para"]["zero_shot"] > 0.7 and scores["sts"]["zero_shot"] > 0.6
    # the dev-tuned threshold is the best possible on dev, so never below the train-tuned one
    assert scores["para"]["zero_shot_dev_threshold"] >= scores["para"]["zero_shot"]
