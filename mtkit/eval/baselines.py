"""Baselines without fine-tuning: what the pretrained encoder gives before any training step.

Two families, both on frozen sentence vectors (masked mean pooling, as Sentence-BERT; Reimers & Gurevych
2019, "Sentence-BERT: Sentence Embeddings using Siamese BERT-Networks", arXiv 1908.10084):

- **zero-shot**: the cosine of the two sentences' vectors. Similarity (regression) tasks score its Pearson
  correlation with the gold scores; pair classification tasks threshold it, at the threshold that is best on
  the training pairs (``threshold_from="train"``, honest) or on dev itself (``"dev"``, optimistic: the way the
  baseline numbers in the issues were measured);
- **linear probe**: logistic regression (scikit-learn) on the frozen vectors: ``u`` for single sentences,
  ``[u; v; |u - v|; u * v]`` for pairs; ridge regression on the same pair features for regression.

Every probe sees mean-pooled sentence vectors scaled to unit L2 norm (``l2_normalize``), the geometry a
sentence encoder is trained for (its similarity is the cosine). Its regularisation is tuned on the training set
only, never on dev: the logistic probes hold out a stratified, seeded 20 % of the training examples, fit every
(C, standardise or not) of a small grid on the other 80 %, keep the best on the held-out part and refit it on
the whole training set (``linear_probe``); the ridge probe picks its alpha by efficient leave-one-out on the
training set (``RidgeCV``). The grids reach well past the values chosen on the CS224N data, so a choice is
never cut off at a grid edge. With the default encoder on the CS224N files (max length 64, seed 11711) the SST
probe reaches 0.409 (C = 0.0316, standardised), where a fixed C = 1 on standardised raw vectors gave 0.386.

Every function takes any ``mtkit.model.bert.BertModel`` and ``mtkit.model.tokenizer.Tokenizer``; ``frozen_baselines`` runs
them all on the tasks of a data folder. Used by ``bench/results.py`` (configuration 1 of the results protocol).
"""
from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from mtkit.data.tasks import default_task, load_split
from mtkit.eval.metrics import pearson
from mtkit.model.bert import BertModel
from mtkit.model.pooling import pool
from mtkit.model.tokenizer import Tokenizer

__all__ = ["embed_sentences", "pair_cosines", "best_threshold", "CrossFitThreshold", "cross_fitted_threshold",
           "pair_features", "l2_normalize", "ProbeResult",
           "linear_probe", "linear_probe_accuracy", "ridge_probe_pearson", "frozen_baselines", "PROBE_CS",
           "RIDGE_ALPHAS", "PROBE_DESCRIPTION"]

PROBE_CS = tuple(float(c) for c in np.logspace(-4, 2, 13))  # inverse L2 strengths tried: 1e-4 ... 100
PROBE_HOLDOUT = 0.2  # share of the training set held out to choose C
RIDGE_ALPHAS = tuple(float(a) for a in np.logspace(-2, 6, 17))  # ridge strengths tried: 0.01 ... 1e6
PROBE_DESCRIPTION = ("mean-pooled, L2-normalised sentence vectors; logistic regression with C (and "
                     "standardisation) chosen on a held-out 20 % of the training set, ridge alpha by leave-one-out "
                     "on the training set; dev never used for tuning")


@torch.inference_mode()
def embed_sentences(encoder, tokenizer, sentences: Sequence[str], *, pooling: str = "mean", max_length: int = 128,
                    batch_size: int = 128, device: str | torch.device = "cpu") -> np.ndarray:
    """Pooled vectors (N, H) of ``sentences``, in float32, in the order given.

    Sentences are encoded in batches of similar length (sorted), so little of the work is padding."""
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


@dataclass
class CrossFitThreshold:
    """A threshold tuned without looking at the examples it decides (:func:`cross_fitted_threshold`)."""
    predictions: np.ndarray  # (N,) 0/1, each from the threshold fitted on the other folds
    thresholds: list[float]  # one per fold: the threshold that decided that fold's examples
    accuracy: float  # of ``predictions`` against the labels, over all N examples
    folds: np.ndarray  # (N,) the fold of each example


def cross_fitted_threshold(scores: np.ndarray, labels: np.ndarray, *, folds: int = 2,
                           seed: int = 0) -> CrossFitThreshold:
    """Cross-fitting: each example is decided by a threshold tuned (:func:`best_threshold`) on the *other* folds.

    ``scores``: (N,) a score that rises with the positive class (a probability, a cosine, a logit); ``labels``:
    (N,) 0/1. The N examples are split into ``folds`` seeded folds of (nearly) equal size; for each fold the
    threshold best on the remaining examples decides it, so no example's own label chooses its threshold and
    the accuracy is honest, as on a held-out set. With ``folds=2`` on a dev set: tune on one half, score the
    other, and the other way round. Used in notebooks/10_experiments_and_error_analysis.ipynb to ask how much of
    an ensemble's gain on a pair task a single model recovers with a threshold of its own.
    """
    scores, labels = np.asarray(scores, dtype=np.float64), np.asarray(labels, dtype=np.float64)
    if scores.ndim != 1 or scores.shape != labels.shape:
        raise ValueError(f"cross_fitted_threshold takes two 1-D arrays of the same length, got {scores.shape} and "
                         f"{labels.shape}.")
    if not np.isin(labels, (0.0, 1.0)).all():
        raise ValueError("cross_fitted_threshold: labels must be 0/1 (a pair classification task).")
    if not np.isfinite(scores).all():
        raise ValueError("cross_fitted_threshold: scores must be finite.")
    if int(folds) != folds or folds < 2:
        raise ValueError(f"cross_fitted_threshold: folds must be an integer >= 2, got {folds!r}.")
    if len(scores) < 2 * folds:
        raise ValueError(f"cross_fitted_threshold: {len(scores)} examples are too few for {folds} folds "
                         f"(at least two per fold).")
    order = np.random.default_rng(seed).permutation(len(scores))
    fold_of = np.empty(len(scores), dtype=np.int64)
    fold_of[order] = np.arange(len(scores)) % folds  # (N,) sizes differ by at most one
    predictions = np.empty(len(scores), dtype=np.float64)
    thresholds = []
    for k in range(folds):
        held_out = fold_of == k
        threshold, _ = best_threshold(scores[~held_out], labels[~held_out])
        predictions[held_out] = (scores[held_out] >= threshold).astype(np.float64)
        thresholds.append(threshold)
    accuracy = float((predictions == labels).mean())
    return CrossFitThreshold(predictions=predictions, thresholds=thresholds, accuracy=accuracy, folds=fold_of)


def pair_features(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """[u; v; |u - v|; u * v]: (N, H), (N, H) -> (N, 4H)."""
    return np.concatenate([u, v, np.abs(u - v), u * v], axis=1)


def l2_normalize(x: np.ndarray) -> np.ndarray:
    """Each row scaled to unit L2 norm (zero rows stay zero): (N, H) -> (N, H)."""
    x = np.asarray(x)
    norms = np.linalg.norm(x, axis=1, keepdims=True).clip(min=1e-12)  # (N, 1)
    return (x / norms).astype(x.dtype if np.issubdtype(x.dtype, np.floating) else np.float64, copy=False)


@dataclass
class ProbeResult:
    """A tuned logistic-regression probe: its dev accuracy and what was chosen on held-out training data."""

    accuracy: float  # on dev, of the probe refitted on the whole training set with the chosen settings
    C: float  # the chosen inverse regularisation strength
    standardize: bool  # whether the features were standardised (StandardScaler) before the regression
    holdout_accuracy: dict[tuple[bool, float], float] = field(default_factory=dict)  # (standardize, C) -> acc


def _logistic(C: float, standardize: bool, seed: int):
    from sklearn.linear_model import (
        LogisticRegression,  # imported here: scikit-learn is heavy and only this function needs it
    )  # imported here: scikit-learn is heavy and only this function needs it
    from sklearn.pipeline import make_pipeline  # imported here: scikit-learn is heavy and only this function needs it
    from sklearn.preprocessing import (
        StandardScaler,  # imported here: scikit-learn is heavy and only this function needs it
    )  # imported here: scikit-learn is heavy and only this function needs it
    steps = [StandardScaler()] if standardize else []
    return make_pipeline(*steps, LogisticRegression(C=C, max_iter=5000, random_state=seed))


def linear_probe(x_train: np.ndarray, y_train: np.ndarray, x_dev: np.ndarray, y_dev: np.ndarray, *,
                 seed: int = 0, Cs: Sequence[float] = PROBE_CS, standardize: Sequence[bool] = (False, True),
                 holdout: float = PROBE_HOLDOUT) -> ProbeResult:
    """Logistic regression on frozen features, its regularisation tuned on the training set only.

    A stratified split seeded by ``seed`` holds out ``holdout`` of the training examples; every pair of ``Cs``
    (inverse L2 strength) and ``standardize`` (features standardised or used as they are) is fitted on the rest
    and scored on the held-out part. The best pair (ties: the smaller C, the stronger regularisation; then no
    standardisation) is refitted on the whole training set and scored on dev. ``x_dev`` and ``y_dev`` are used
    for that last score only. The features are used as given: ``frozen_baselines`` passes L2-normalised
    sentence vectors (or pair features built from them).
    """
    from sklearn.model_selection import (
        train_test_split,  # imported here: scikit-learn is heavy and only this function needs it
    )  # imported here: scikit-learn is heavy and only this function needs it
    x_train, x_dev = np.asarray(x_train), np.asarray(x_dev)
    y_train, y_dev = np.asarray(y_train).astype(int), np.asarray(y_dev).astype(int)
    if not 0.0 < holdout < 1.0:
        raise ValueError(f"holdout={holdout!r} must be a share of the training set, strictly between 0 and 1.")
    if len(np.unique(y_train)) < 2:
        raise ValueError("linear_probe needs at least two classes in y_train.")
    fit_x, held_x, fit_y, held_y = train_test_split(x_train, y_train, test_size=holdout, random_state=seed,
                                                    stratify=y_train)
    scores = {}
    for scaled in sorted(set(bool(s) for s in standardize)):
        for C in sorted(float(c) for c in Cs):
            model = _logistic(C, scaled, seed).fit(fit_x, fit_y)
            scores[(scaled, C)] = float((model.predict(held_x) == held_y).mean())
    best = max(scores.values())
    scaled, C = min((key for key, score in scores.items() if score == best), key=lambda k: (k[1], k[0]))
    model = _logistic(C, scaled, seed).fit(x_train, y_train)
    return ProbeResult(accuracy=float((model.predict(x_dev) == y_dev).mean()), C=C, standardize=scaled,
                       holdout_accuracy=scores)


def linear_probe_accuracy(x_train: np.ndarray, y_train: np.ndarray, x_dev: np.ndarray, y_dev: np.ndarray,
                          seed: int = 0, **tuning) -> float:
    """Dev accuracy of ``linear_probe`` (logistic regression, regularisation tuned on held-out training data)."""
    return linear_probe(x_train, y_train, x_dev, y_dev, seed=seed, **tuning).accuracy


def ridge_probe_pearson(x_train: np.ndarray, y_train: np.ndarray, x_dev: np.ndarray, y_dev: np.ndarray,
                        alphas: Sequence[float] = RIDGE_ALPHAS, return_alpha: bool = False):
    """Dev Pearson of a ridge regression on standardised frozen features, its alpha chosen on the training set by
    efficient leave-one-out (``RidgeCV``; dev is not seen). ``return_alpha``: return (pearson, alpha)."""
    from sklearn.linear_model import RidgeCV  # imported here: scikit-learn is heavy and only this function needs it
    from sklearn.pipeline import make_pipeline  # imported here: scikit-learn is heavy and only this function needs it
    from sklearn.preprocessing import (
        StandardScaler,  # imported here: scikit-learn is heavy and only this function needs it
    )  # imported here: scikit-learn is heavy and only this function needs it

    probe = make_pipeline(StandardScaler(), RidgeCV(alphas=alphas))
    probe.fit(x_train, np.asarray(y_train, dtype=np.float64))
    score = pearson(probe.predict(x_dev), np.asarray(y_dev, dtype=np.float64))
    return (score, float(probe[-1].alpha_)) if return_alpha else score


def frozen_baselines(data_dir, *, encoder=None, tasks: Sequence[str] = ("sst", "para", "sts"),
                     train_limit: int | None = None, max_length: int = 128, seed: int = 11711,
                     device: str | torch.device = "cpu") -> dict[str, dict[str, float]]:
    """Zero-shot and linear-probe dev scores of a frozen encoder on ``tasks`` of ``data_dir``.

    Returns ``{task: {"zero_shot": ..., "zero_shot_dev_threshold": ..., "linear_probe": ...}}`` with the task's
    metric (accuracy or Pearson), plus what the probe's tuning chose on the training set: ``linear_probe_C`` and
    ``linear_probe_standardized`` (logistic probes) or ``linear_probe_alpha`` (ridge); keys that do not apply to a
    task's kind are left out. ``encoder`` is a folder (None: the default encoder). ``train_limit`` takes a seeded
    random subset of each training set. The probes see mean-pooled, L2-normalised vectors (``PROBE_DESCRIPTION``);
    the zero-shot cosine is the same with or without the normalisation.
    """

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

        def embed(texts):  # (N, H), mean-pooled and L2-normalised
            return l2_normalize(embed_sentences(model, tokenizer, texts, max_length=max_length, device=device))

        y_train = np.array([ex.label for ex in train], dtype=np.float64)
        y_dev = np.array([ex.label for ex in dev], dtype=np.float64)
        scores: dict[str, float] = {}
        if not spec.is_pair:
            x_train, x_dev = embed([ex.sentence for ex in train]), embed([ex.sentence for ex in dev])
            scores.update(_probe_scores(linear_probe(x_train, y_train, x_dev, y_dev, seed=seed)))
        else:
            u_train, v_train = embed([ex.sentence1 for ex in train]), embed([ex.sentence2 for ex in train])
            u_dev, v_dev = embed([ex.sentence1 for ex in dev]), embed([ex.sentence2 for ex in dev])
            cos_train, cos_dev = pair_cosines(u_train, v_train), pair_cosines(u_dev, v_dev)
            f_train, f_dev = pair_features(u_train, v_train), pair_features(u_dev, v_dev)
            if spec.is_regression:
                scores["zero_shot"] = pearson(cos_dev, y_dev)
                scores["linear_probe"], scores["linear_probe_alpha"] = ridge_probe_pearson(
                    f_train, y_train, f_dev, y_dev, return_alpha=True)
            else:
                threshold, _ = best_threshold(cos_train, y_train)
                scores["zero_shot"] = float(((cos_dev >= threshold) == (y_dev > 0.5)).mean())
                scores["zero_shot_dev_threshold"] = best_threshold(cos_dev, y_dev)[1]
                scores.update(_probe_scores(linear_probe(f_train, y_train, f_dev, y_dev, seed=seed)))
        results[spec.name] = scores
    return results


def _probe_scores(probe: ProbeResult) -> dict:
    return {"linear_probe": probe.accuracy, "linear_probe_C": probe.C, "linear_probe_standardized": probe.standardize}
