"""Baselines without fine-tuning: what the pretrained encoder gives before any training step.

Two families, both on frozen sentence vectors (masked mean pooling, as Sentence-BERT; Reimers & Gurevych
2019, "Sentence-BERT: Sentence Embeddings using Siamese BERT-Networks", arXiv 1908.10084):

- **zero-shot**: the cosine of the two sentences' vectors. Similarity (regression) tasks score its Pearson
  correlation with the gold scores; pair classification tasks threshold it, at the threshold that is best on
  the training pairs (``threshold_from="train"``, honest) or on dev itself (``"dev"``, optimistic: the way the
  baseline numbers in the issues were measured);
- **linear probe**: logistic regression (scikit-learn) on the frozen vectors: ``u`` for single sentences,
  ``[u; v; |u - v|; u * v]`` for pairs; least squares on the same pair features for regression.

Every function takes any ``mtkit.bert.BertModel`` and ``mtkit.tokenizer.Tokenizer``; ``frozen_baselines`` runs
them all on the tasks of a data folder. Used by ``bench/results.py`` (configuration 1 of the results protocol).
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

__all__ = ["embed_sentences", "pair_cosines", "best_threshold", "pair_features", "linear_probe_accuracy",
           "ridge_probe_pearson", "frozen_baselines"]


@torch.inference_mode()
def embed_sentences(encoder, tokenizer, sentences: Sequence[str], *, pooling: str = "mean", max_length: int = 128,
                    batch_size: int = 128, device: str | torch.device = "cpu") -> np.ndarray:
    """Pooled vectors (N, H) of ``sentences``, in float32, in the order given.

    Sentences are encoded in batches of similar length (sorted), so little of the work is padding."""
    from mtkit.pooling import pool
    encoder.eval()
    order = sorted(range(len(sentences)), key=lambda i: len(sentences[i]))
    out = np.zeros((len(sentences), encoder.config.hidden_size), dtype=np.float32)
    for start in range(0, len(order), batch_size):
        index = order[start:start + batch_size]
        batch = tokenizer([sentences[i] for i in index], max_length=max_length)
        batch = {k: v.to(device) for k, v in batch.items()}
        hidden = encoder(batch["input_ids"], attention_mask=batch["attention_mask"],
                         token_type_ids=batch["token_type_ids"]).last_hidden_state  # (B, T, H)
        out[index] = pool(hidden, batch["attention_mask"], pooling).float().cpu().numpy()  # (B, H)
    return out


def pair_cosines(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Row-wise cosine of (N, H) and (N, H) -> (N,)."""
    nu = np.linalg.norm(u, axis=1).clip(min=1e-12)
    nv = np.linalg.norm(v, axis=1).clip(min=1e-12)
    return (u * v).sum(axis=1) / (nu * nv)


def best_threshold(scores: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
    """The threshold t maximising the accuracy of ``scores >= t`` against 0/1 ``labels``: (t, accuracy).

    Exact over every cut between consecutive sorted scores (and below all / above all), in O(N log N)."""
    scores, labels = np.asarray(scores, dtype=np.float64), np.asarray(labels).astype(bool)
    if scores.shape != labels.shape or scores.ndim != 1 or not len(scores):
        raise ValueError(f"best_threshold takes two 1-D arrays of the same non-zero length, got {scores.shape} and "
                         f"{labels.shape}.")
    order = np.argsort(scores, kind="stable")
    s, y = scores[order], labels[order]
    # cut k: the first k sorted scores are predicted 0, the rest 1
    negatives_below = np.concatenate([[0], np.cumsum(~y)])  # (N + 1,)
    positives_above = y.sum() - np.concatenate([[0], np.cumsum(y)])  # (N + 1,)
    correct = negatives_below + positives_above
    # only cut between distinct values (ties cannot be split by a threshold)
    valid = np.concatenate([[True], s[1:] > s[:-1], [True]])
    k = int(np.argmax(np.where(valid, correct, -1)))
    if k == 0:
        threshold = s[0] - 1e-6
    elif k == len(s):
        threshold = s[-1] + 1e-6
    else:
        threshold = 0.5 * (s[k - 1] + s[k])
    return float(threshold), float(correct[k] / len(s))


def pair_features(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """[u; v; |u - v|; u * v]: (N, H), (N, H) -> (N, 4H)."""
    return np.concatenate([u, v, np.abs(u - v), u * v], axis=1)


def linear_probe_accuracy(x_train: np.ndarray, y_train: np.ndarray, x_dev: np.ndarray, y_dev: np.ndarray,
                          seed: int = 0) -> float:
    """Dev accuracy of a logistic regression fitted on frozen features (standardised; L2, C = 1)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    probe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000, random_state=seed))
    probe.fit(x_train, np.asarray(y_train).astype(int))
    return float((probe.predict(x_dev) == np.asarray(y_dev).astype(int)).mean())


def ridge_probe_pearson(x_train: np.ndarray, y_train: np.ndarray, x_dev: np.ndarray, y_dev: np.ndarray) -> float:
    """Dev Pearson of a ridge regression (alpha chosen by efficient leave-one-out) on frozen features."""
    from sklearn.linear_model import RidgeCV
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from mtkit.metrics import pearson
    probe = make_pipeline(StandardScaler(), RidgeCV(alphas=np.logspace(-2, 4, 13)))
    probe.fit(x_train, np.asarray(y_train, dtype=np.float64))
    return pearson(probe.predict(x_dev), np.asarray(y_dev, dtype=np.float64))


def frozen_baselines(data_dir, *, encoder=None, tasks: Sequence[str] = ("sst", "para", "sts"),
                     train_limit: int | None = None, max_length: int = 128, seed: int = 11711,
                     device: str | torch.device = "cpu") -> dict[str, dict[str, float]]:
    """Zero-shot and linear-probe dev scores of a frozen encoder on ``tasks`` of ``data_dir``.

    Returns ``{task: {"zero_shot": ..., "zero_shot_dev_threshold": ..., "linear_probe": ...}}`` with the task's
    metric (accuracy or Pearson); keys that do not apply to a task's kind are left out. ``encoder`` is a folder
    (None: the default encoder). ``train_limit`` takes a seeded random subset of each training set.
    """
    import random

    from mtkit.bert import BertModel
    from mtkit.data.tasks import default_task, load_split
    from mtkit.metrics import pearson
    from mtkit.tokenizer import Tokenizer
    model = BertModel.from_pretrained(encoder).to(device)
    tokenizer = Tokenizer.from_pretrained(encoder)
    results: dict[str, dict[str, float]] = {}
    for name in tasks:
        spec = default_task(name) if isinstance(name, str) else name
        train, _ = load_split(spec, data_dir, "train")
        dev, _ = load_split(spec, data_dir, "dev")
        if train_limit is not None and train_limit < len(train):
            keep = sorted(random.Random(f"{seed}-{spec.name}").sample(range(len(train)), train_limit))
            train = [train[i] for i in keep]

        def embed(texts):
            return embed_sentences(model, tokenizer, texts, max_length=max_length, device=device)

        y_train = np.array([ex.label for ex in train], dtype=np.float64)
        y_dev = np.array([ex.label for ex in dev], dtype=np.float64)
        scores: dict[str, float] = {}
        if not spec.is_pair:
            x_train, x_dev = embed([ex.sentence for ex in train]), embed([ex.sentence for ex in dev])
            scores["linear_probe"] = linear_probe_accuracy(x_train, y_train, x_dev, y_dev, seed)
        else:
            u_train, v_train = embed([ex.sentence1 for ex in train]), embed([ex.sentence2 for ex in train])
            u_dev, v_dev = embed([ex.sentence1 for ex in dev]), embed([ex.sentence2 for ex in dev])
            cos_train, cos_dev = pair_cosines(u_train, v_train), pair_cosines(u_dev, v_dev)
            f_train, f_dev = pair_features(u_train, v_train), pair_features(u_dev, v_dev)
            if spec.is_regression:
                scores["zero_shot"] = pearson(cos_dev, y_dev)
                scores["linear_probe"] = ridge_probe_pearson(f_train, y_train, f_dev, y_dev)
            else:
                threshold, _ = best_threshold(cos_train, y_train)
                scores["zero_shot"] = float(((cos_dev >= threshold) == (y_dev > 0.5)).mean())
                scores["zero_shot_dev_threshold"] = best_threshold(cos_dev, y_dev)[1]
                scores["linear_probe"] = linear_probe_accuracy(f_train, y_train, f_dev, y_dev, seed)
        results[spec.name] = scores
    return results
