"""Metrics against hand-computed values, and prediction files in the CS224N submission format."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from mtkit.data import TaskSpec
from mtkit.eval import metrics


def test_accuracy_and_confusion_by_hand():
    preds = [0, 1, 2, 2, 1, 0]
    labels = [0, 1, 1, 2, 1, 2]
    assert metrics.accuracy(preds, labels) == pytest.approx(4 / 6)
    # rows = true class, columns = predicted
    expected = np.array([[1, 0, 0],
                         [0, 2, 1],
                         [1, 0, 1]])
    np.testing.assert_array_equal(metrics.confusion_matrix(preds, labels), expected)
    assert metrics.confusion_matrix(preds, labels, num_labels=5).shape == (5, 5)
    assert metrics.accuracy(torch.tensor([1, 0]), torch.tensor([1, 1])) == 0.5


def test_macro_f1_by_hand():
    preds = [0, 1, 2, 2, 1, 0]
    labels = [0, 1, 1, 2, 1, 2]
    # class 0: tp 1, fp 1, fn 0 -> p 1/2, r 1 -> f1 2/3
    # class 1: tp 2, fp 0, fn 1 -> p 1, r 2/3 -> f1 4/5
    # class 2: tp 1, fp 1, fn 1 -> p 1/2, r 1/2 -> f1 1/2
    assert metrics.macro_f1(preds, labels) == pytest.approx((2 / 3 + 4 / 5 + 1 / 2) / 3)
    # declaring 4 classes adds a class with F1 0 (absent from both)
    assert metrics.macro_f1(preds, labels, num_labels=4) == pytest.approx((2 / 3 + 4 / 5 + 1 / 2) / 4)


def test_pearson_and_spearman_by_hand():
    x = [1.0, 2.0, 3.0, 4.0, 10.0]
    y = [2.0, 1.0, 4.0, 3.0, 5.0]
    mx, my = sum(x) / 5, sum(y) / 5
    cov = sum((a - mx) * (b - my) for a, b in zip(x, y))
    r = cov / math.sqrt(sum((a - mx) ** 2 for a in x) * sum((b - my) ** 2 for b in y))
    assert metrics.pearson(x, y) == pytest.approx(r)
    # Spearman = Pearson of the ranks; ranks of x: 1..5, of y: 2,1,4,3,5
    rx, ry = [1, 2, 3, 4, 5], [2, 1, 4, 3, 5]
    assert metrics.spearman(x, y) == pytest.approx(1 - 6 * sum((a - b) ** 2 for a, b in zip(rx, ry)) / (5 * 24))
    assert metrics.pearson([3.0, 3.0, 3.0], [1.0, 2.0, 3.0]) == 0.0  # constant: undefined -> 0


def test_overall_score_formula():
    assert metrics.overall_score(0.5, 0.8, 0.6) == pytest.approx((0.5 + 0.8 + 0.8) / 3)
    assert metrics.overall_score(1.0, 1.0, 1.0) == 1.0
    assert metrics.overall_score(0.0, 0.0, -1.0) == 0.0


def test_evaluate_task_picks_the_task_metric():
    out = metrics.evaluate_task("sst", [0, 1, 2], [0, 1, 1])
    assert out["score"] == out["accuracy"] == pytest.approx(2 / 3) and "macro_f1" in out
    out = metrics.evaluate_task("sts", [0.1, 0.5, 0.9], [0.0, 2.0, 5.0])
    assert out["score"] == out["pearson"] and out["spearman"] == pytest.approx(1.0)
    spec = TaskSpec("bin", "classification", metric="macro_f1")
    assert metrics.evaluate_task(spec, [1, 1], [1, 0])["score"] == pytest.approx((0 + 2 / 3) / 2)


def test_bad_metric_inputs_teach():
    with pytest.raises(ValueError, match="aligned"):
        metrics.accuracy([1, 2], [1])
    with pytest.raises(ValueError, match="class ids"):
        metrics.accuracy(np.zeros((4, 5)), [0, 1, 2, 3])  # logits instead of class ids
    with pytest.raises(ValueError, match="probabilities"):
        metrics.accuracy([0.2, 0.9], [0, 1])
    with pytest.raises(ValueError, match="empty"):
        metrics.pearson([], [])


def test_prediction_file_format_matches_starter(tmp_path):
    path = metrics.write_predictions(tmp_path / "sst-dev-output.csv", ["a1", "b2"], torch.tensor([4, 0]), "sst")
    assert path.read_text() == "id \t Predicted_Sentiment \na1 , 4 \nb2 , 0 \n"
    para = metrics.write_predictions(tmp_path / "para.csv", ["x"], [1.0], "para")
    assert para.read_text() == "id \t Predicted_Is_Paraphrase \nx , 1.0 \n"
    sts = metrics.write_predictions(tmp_path / "sts.csv", ["x", "y"], np.array([3.25, 0.5]), "sts")
    assert sts.read_text() == "id \t Predicted_Similiary \nx , 3.25 \ny , 0.5 \n"
    assert metrics.read_predictions(sts) == {"x": 3.25, "y": 0.5}
    assert not list(tmp_path.glob("*.part"))
    with pytest.raises(ValueError, match="not 0 or 1"):
        metrics.write_predictions(tmp_path / "p.csv", ["x"], [0.7], "para")
    with pytest.raises(ValueError, match="duplicates"):
        metrics.write_predictions(tmp_path / "p.csv", ["x", "x"], [1, 1], "sst")


def test_read_predictions_variants_and_errors(tmp_path):
    variant = tmp_path / "v.csv"
    variant.write_text("id,Predicted_Similiarity\na, 1.5 \nb,2\n")
    assert metrics.read_predictions(variant) == {"a": 1.5, "b": 2.0}
    bad = tmp_path / "bad.csv"
    bad.write_text("id \t Predicted_Sentiment \na , 3 \na , 2 \nb , x \n")
    with pytest.raises(ValueError) as err:
        metrics.read_predictions(bad)
    assert "line 3" in str(err.value) and "line 4" in str(err.value)


def test_evaluate_file_matches_ids_and_reports_missing_and_extra(tmp_path):
    labeled = tmp_path / "ids-sst-dev.csv"
    labeled.write_text("\tid\tsentence\tsentiment\n0\ta\tx\t1\n1\tb\ty\t2\n2\tc\tz\t3\n3\td\tw\t4\n")
    preds = tmp_path / "sst-dev-output.csv"
    # order differs from the labeled file, 'd' is missing and 'zz' is extra
    metrics.write_predictions(preds, ["c", "a", "b", "zz"], [3, 1, 0, 2], "sst")
    result = metrics.evaluate_file(preds, labeled, "sst")
    assert result.scored == 3 and result.metrics["accuracy"] == pytest.approx(2 / 3)
    assert result.missing == ["d"] and result.extra == ["zz"]
    assert "1 labeled example(s) have no prediction" in str(result)
    with pytest.raises(ValueError, match="without a prediction"):
        metrics.evaluate_file(preds, labeled, "sst", require_all=True)


@pytest.mark.realdata
def test_evaluate_file_on_real_dev_files(real_data, tmp_path):
    """Gold labels written as predictions score perfectly; ids come back in file order."""
    from mtkit.data import default_tasks, load_split
    for spec in default_tasks():
        examples, _ = load_split(spec, real_data, "dev")
        path = metrics.write_predictions(tmp_path / f"{spec.name}-dev-output.csv", [e.id for e in examples],
                                         [e.label for e in examples], spec)
        result = metrics.evaluate_file(path, real_data / spec.dev_file, spec)
        assert result.metrics["score"] == pytest.approx(1.0) and not result.extra
        # the malformed Quora dev row has no gold label, so its id is neither scored nor missing
        assert result.scored == len(examples) and not result.missing
