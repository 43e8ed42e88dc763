"""Metrics of the CS224N multitask project, and its prediction files.

- SST (5 classes) and Quora (paraphrase 0/1) are scored by accuracy; macro-F1 and a confusion matrix help the
  error analysis (scikit-learn computes them).
- STS is scored by Pearson's r between predicted and gold scores (Spearman's rho beside it; scipy computes
  both). A constant prediction has no defined correlation; we score it 0.0 (not NaN) so an overall score stays
  defined early in training.
- The overall score normalises Pearson from [-1, 1] to [0, 1] and averages:
  ``overall = (sst_acc + para_acc + (sts_r + 1) / 2) / 3``.

Prediction files follow the CS224N starter's submission format (``evaluation.py`` of the default final
project): a header ``id \\t Predicted_Sentiment `` (or ``Predicted_Is_Paraphrase``, or ``Predicted_Similiary``,
the starter's spelling), then one line per example ``<id> , <prediction> `` (space, comma, space, trailing
space). Sentiment is a class index, paraphrase ``0.0``/``1.0`` (as the starter writes
``sigmoid().round()``), similarity a float. :func:`read_predictions` accepts these files and the common
variants (``id,pred`` without spaces, other header spellings).

Taught in notebooks/10_experiments_and_error_analysis.ipynb (and used from 05 on).
"""
from __future__ import annotations

import logging
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mtkit.data.readers import load_examples
from mtkit.data.tasks import TaskSpec, default_task

logger = logging.getLogger("mtkit.eval.metrics")

# Header of the prediction file per kind of task (CS224N starter spelling, "Similiary" included).
PREDICTION_HEADERS = {
    "classification": "Predicted_Sentiment",
    "pair_classification": "Predicted_Is_Paraphrase",
    "pair_regression": "Predicted_Similiary",
}
_KIND_OF_TASK = {"sst": "classification", "para": "pair_classification", "sts": "pair_regression"}


# --------------------------------------------------------------------------------------------- helpers
def _as_array(values, name: str) -> np.ndarray:
    if hasattr(values, "detach"):  # a torch tensor
        values = values.detach().cpu().numpy()
    array = np.asarray(values)
    if array.ndim == 2 and 1 in array.shape:
        array = array.reshape(-1)
    if array.ndim != 1:
        raise ValueError(f"{name} must be a flat list of values, one per example; got shape {array.shape}. "
                         "For classification pass predicted class ids (logits.argmax(-1)), not logits.")
    return array


def _pair(preds, labels) -> tuple[np.ndarray, np.ndarray]:
    p, y = _as_array(preds, "preds"), _as_array(labels, "labels")
    if len(p) != len(y):
        raise ValueError(f"preds has {len(p)} values but labels has {len(y)}; they must be aligned one to one.")
    if len(p) == 0:
        raise ValueError("preds and labels are empty: there is nothing to score.")
    return p, y


# --------------------------------------------------------------------------------------------- metrics
def accuracy(preds, labels) -> float:
    """Fraction of predictions equal to the labels (class ids; 0/1 for paraphrase)."""
    p, y = _pair(preds, labels)
    if p.dtype.kind == "f" and not np.all(p == np.round(p)):
        raise ValueError("accuracy got fractional predictions; pass class ids (argmax, or sigmoid().round() "
                         "for paraphrase), not probabilities or logits.")
    return float(np.mean(p == y))


def macro_f1(preds, labels, num_labels: int | None = None) -> float:
    """F1 averaged over classes with equal weight (classes absent from both score 0, as scikit-learn does)."""
    from sklearn.metrics import f1_score  # imported here: scikit-learn is heavy and only this function needs it
    p, y = _pair(preds, labels)
    classes = None if num_labels is None else list(range(num_labels))
    return float(f1_score(y, p, average="macro", labels=classes, zero_division=0))


def pearson(preds, labels) -> float:
    """Pearson's r; 0.0 when either side is constant (the correlation is undefined there)."""
    from scipy.stats import pearsonr  # imported here: scipy is heavy and only this function needs it
    p, y = _pair(preds, labels)
    p, y = p.astype(np.float64), y.astype(np.float64)
    if len(p) < 2 or np.ptp(p) == 0 or np.ptp(y) == 0:
        return 0.0
    return float(pearsonr(p, y)[0])


def spearman(preds, labels) -> float:
    """Spearman's rank correlation; 0.0 when either side is constant."""
    from scipy.stats import spearmanr  # imported here: scipy is heavy and only this function needs it
    p, y = _pair(preds, labels)
    if len(p) < 2 or np.ptp(p.astype(np.float64)) == 0 or np.ptp(y.astype(np.float64)) == 0:
        return 0.0
    return float(spearmanr(p, y)[0])


def confusion_matrix(preds, labels, num_labels: int | None = None) -> np.ndarray:
    """Counts, rows = true class, columns = predicted class (scikit-learn's convention), classes 0..K-1."""
    from sklearn.metrics import (
        confusion_matrix as sk_confusion,  # imported here: scikit-learn is heavy and only this function needs it
    )  # imported here: scikit-learn is heavy and only this function needs it
    p, y = _pair(preds, labels)
    k = num_labels if num_labels is not None else int(max(p.max(), y.max())) + 1
    return sk_confusion(y, p, labels=list(range(k)))


def normalized_score(metric: str, value: float) -> float:
    """A task's score on [0, 1]: correlations (Pearson, Spearman) go from [-1, 1] to [0, 1] as (r + 1) / 2."""
    return (value + 1) / 2 if metric in ("pearson", "spearman") else value


def overall_of(scores: dict[str, float], metrics: dict[str, str]) -> float:
    """The mean of the tasks' normalised scores. With SST, Quora and STS this is the CS224N overall score
    (sst_acc + para_acc + (sts_r + 1) / 2) / 3 (:func:`overall_score`)."""
    values = [normalized_score(metrics[t], s) for t, s in scores.items()]
    return float(sum(values) / len(values)) if values else float("nan")


def overall_score(sst: float, para: float, sts: float) -> float:
    """The project's single number: (SST accuracy + Quora accuracy + (STS Pearson + 1) / 2) / 3."""
    return overall_of({"sst": sst, "para": para, "sts": sts}, {"sst": "accuracy", "para": "accuracy", "sts": "pearson"})


def _kind_and_metric(task) -> tuple[str, str]:
    """Accepts a TaskSpec, a default task name ("sst"), a kind, or a metric name."""
    if hasattr(task, "kind") and hasattr(task, "metric"):
        return task.kind, task.metric
    if task in _KIND_OF_TASK:
        kind = _KIND_OF_TASK[task]
        return kind, "pearson" if kind == "pair_regression" else "accuracy"
    if task in PREDICTION_HEADERS:
        return task, "pearson" if task == "pair_regression" else "accuracy"
    if task in ("accuracy", "macro_f1"):
        return "classification", task
    if task in ("pearson", "spearman"):
        return "pair_regression", task
    raise ValueError(f"Unknown task {task!r}: pass a TaskSpec, 'sst' / 'para' / 'sts', a kind "
                     f"({sorted(PREDICTION_HEADERS)}) or a metric (accuracy, macro_f1, pearson, spearman).")


def evaluate_task(task, preds, labels, num_labels: int | None = None) -> dict[str, float]:
    """All metrics of one task, plus ``score`` = the task's own metric (accuracy or Pearson by default).

    Classification: accuracy, macro_f1. Regression: pearson, spearman, mse.
    """
    kind, metric = _kind_and_metric(task)
    if num_labels is None:
        num_labels = getattr(task, "num_labels", None)
    if kind == "pair_regression":
        p, y = _pair(preds, labels)
        out = {"pearson": pearson(p, y), "spearman": spearman(p, y),
               "mse": float(np.mean((p.astype(np.float64) - y.astype(np.float64)) ** 2))}
    else:
        out = {"accuracy": accuracy(preds, labels), "macro_f1": macro_f1(preds, labels, num_labels)}
    out["score"] = out[metric]
    return out


# --------------------------------------------------------------------------------------------- files
def _format_value(kind: str, value) -> str:
    if hasattr(value, "item"):
        value = value.item()
    if kind == "classification":
        if float(value) != int(value):
            raise ValueError(f"sentiment prediction {value!r} is not a class id.")
        return str(int(value))
    if kind == "pair_classification":
        if float(value) not in (0.0, 1.0):
            raise ValueError(f"paraphrase prediction {value!r} is not 0 or 1 (round the probability first).")
        return f"{float(value):.1f}"
    number = float(value)
    if not math.isfinite(number):
        raise ValueError(f"similarity prediction {value!r} is not a finite number.")
    return repr(number)


def write_predictions(path: str | Path, ids: Sequence[str], preds, task) -> Path:
    """Write a prediction file in the CS224N submission format (atomically: a temporary file, then rename).

    ``task``: a TaskSpec, "sst" / "para" / "sts", or a kind. Returns the path.
    """
    kind, _ = _kind_and_metric(task)
    values = _as_array(preds, "preds")
    ids = [str(i) for i in ids]
    if len(ids) != len(values):
        raise ValueError(f"{len(ids)} ids but {len(values)} predictions; they must be aligned one to one.")
    if len(set(ids)) != len(ids):
        raise ValueError("ids contain duplicates; each example gets exactly one prediction.")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [f"id \t {PREDICTION_HEADERS[kind]} \n"]
    lines += [f"{i} , {_format_value(kind, v)} \n" for i, v in zip(ids, values)]
    tmp = path.with_name(path.name + ".part")
    tmp.write_text("".join(lines), encoding="utf-8")
    os.replace(tmp, path)
    return path


def read_predictions(path: str | Path) -> dict[str, float]:
    """Read a prediction file (CS224N format or ``id,pred``) into {id: value}, in file order."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"No prediction file at {path}.")
    text = path.read_text(encoding="utf-8-sig")
    lines = text.splitlines()
    if not lines or not lines[0].strip():
        raise ValueError(f"{path} is empty; a prediction file starts with a header 'id \\t Predicted_...'.")
    header = lines[0].strip()
    if not header.lower().startswith("id"):
        raise ValueError(f"{path}, line 1: expected a header starting with 'id' (e.g. 'id \\t Predicted_Sentiment'), "
                         f"found {header[:60]!r}.")
    out: dict[str, float] = {}
    problems = []
    for number, line in enumerate(lines[1:], start=2):
        if not line.strip():
            continue
        sep = "," if "," in line else "\t"
        ex_id, _, value = line.rpartition(sep)
        ex_id, value = ex_id.strip(), value.strip()
        try:
            out_value = float(value)
        except ValueError:
            problems.append(f"line {number}: {line.strip()[:60]!r} has no numeric prediction")
            continue
        if not ex_id:
            problems.append(f"line {number}: {line.strip()[:60]!r} has no id")
        elif ex_id in out:
            problems.append(f"line {number}: id {ex_id!r} appears a second time")
        else:
            out[ex_id] = out_value
    if problems:
        shown = "; ".join(problems[:5]) + (f"; ... {len(problems) - 5} more" if len(problems) > 5 else "")
        raise ValueError(f"{path}: {len(problems)} malformed line(s): {shown}. Each line is '<id> , <prediction>'.")
    return out


@dataclass
class FileEvaluation:
    """The result of scoring a prediction file against a labeled file."""
    task: str
    predictions: str
    labeled: str
    metrics: dict[str, float]
    scored: int  # examples with both a prediction and a label
    missing: list[str] = field(default_factory=list)  # labeled ids without a prediction
    extra: list[str] = field(default_factory=list)  # predicted ids that are not in the labeled file

    def __str__(self) -> str:
        metrics = ", ".join(f"{k} {v:.4f}" for k, v in self.metrics.items())
        lines = [f"{Path(self.predictions).name} vs {Path(self.labeled).name} ({self.task}): {metrics} "
                 f"on {self.scored:,} examples"]
        if self.missing:
            lines.append(f"  {len(self.missing):,} labeled example(s) have no prediction (not scored), e.g. "
                         f"{self.missing[:3]}")
        if self.extra:
            lines.append(f"  {len(self.extra):,} prediction(s) have ids not in the labeled file (ignored), e.g. "
                         f"{self.extra[:3]}")
        return "\n".join(lines)


def evaluate_file(pred_path: str | Path, labeled_path: str | Path, task, require_all: bool = False) -> FileEvaluation:
    """Score a prediction file against a labeled file (ids matched, not positions).

    ``task``: a TaskSpec or "sst" / "para" / "sts". Missing and extra ids are listed in the result (and
    logged); ``require_all=True`` makes any missing or extra id an error instead.
    """
    spec = task if isinstance(task, TaskSpec) else default_task(task)
    examples, _ = load_examples(labeled_path, spec.kind, columns=spec.columns, labeled=True,
                                num_labels=spec.num_labels, labels=spec.labels, label_range=spec.label_range,
                                preprocess="none", delimiter=spec.delimiter, task=spec.name)
    preds = read_predictions(pred_path)
    gold = {ex.id: ex.label for ex in examples}
    missing = [i for i in gold if i not in preds]
    extra = [i for i in preds if i not in gold]
    if require_all and (missing or extra):
        raise ValueError(f"{pred_path}: {len(missing)} labeled id(s) without a prediction (e.g. {missing[:3]}) and "
                         f"{len(extra)} predicted id(s) not in {labeled_path} (e.g. {extra[:3]}).")
    common = [i for i in gold if i in preds]
    if not common:
        raise ValueError(f"No id of {pred_path} is in {labeled_path}: is it the prediction file of this task "
                         "and split?")
    metrics = evaluate_task(spec, [preds[i] for i in common], [gold[i] for i in common])
    result = FileEvaluation(spec.name, str(pred_path), str(labeled_path), metrics, len(common), missing, extra)
    if missing or extra:
        logger.warning("%s", result)
    return result
