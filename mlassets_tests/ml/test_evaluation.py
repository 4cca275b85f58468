"""Metrics, gates and pictures, checked against values computed by hand."""

import base64

import matplotlib
import numpy as np
import pandas as pd
import pytest
from sklearn.dummy import DummyClassifier
from sklearn.linear_model import RidgeClassifier

from mlassets.ml.evaluation import (
    METRICS,
    GateResult,
    classification_metrics,
    confusion_and_roc_figure,
    evaluate,
    gate,
    png_data_url,
    positive_scores,
)

pytestmark = pytest.mark.unit

matplotlib.use("Agg")

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

# tp at 2 and 4, fp at 1, fn at 3, tn at 0 and 5
Y_TRUE = [0, 0, 1, 1, 1, 0]
Y_PRED = [0, 1, 1, 0, 1, 0]
Y_SCORE = [0.1, 0.6, 0.8, 0.4, 0.9, 0.2]


def test_metrics_on_a_toy_example_equal_the_hand_computed_values():
    m = classification_metrics(Y_TRUE, Y_PRED, Y_SCORE)
    assert set(m) == set(METRICS)
    assert m["accuracy"] == pytest.approx(4 / 6)
    assert m["precision"] == pytest.approx(2 / 3)
    assert m["recall"] == pytest.approx(2 / 3)
    assert m["f1"] == pytest.approx(2 / 3)
    # 8 of the 9 (positive, negative) pairs are ordered correctly: 0.4 < 0.6
    assert m["roc_auc"] == pytest.approx(8 / 9)
    # ranked: P P N P N N -> precision 1 at recall 1/3 and 2/3, 3/4 at recall 1
    assert m["pr_auc"] == pytest.approx((1 + 1 + 3 / 4) / 3)
    assert all(isinstance(v, float) for v in m.values())


def test_an_all_negative_predictor_gets_f1_zero_and_fails_the_f1_gate():
    y_true = np.array([1] * 10 + [0] * 90)
    m = classification_metrics(y_true, np.zeros(100, dtype=int), np.zeros(100))
    assert m["accuracy"] == pytest.approx(0.9)
    assert m["precision"] == 0.0 and m["recall"] == 0.0 and m["f1"] == 0.0
    assert m["roc_auc"] == pytest.approx(0.5)
    results = {g.metric: g for g in gate(m, {"accuracy": 0.85, "f1": 0.8})}
    assert results["accuracy"].passed
    assert not results["f1"].passed
    assert results["f1"].value == 0.0 and results["f1"].threshold == 0.8
    assert "FAILS" in results["f1"].describe() and ">= 0.8" in results["f1"].describe()
    assert "passes" in results["accuracy"].describe()


def test_a_single_class_gives_zero_auc_instead_of_an_error():
    m = classification_metrics([0, 0, 0], [0, 0, 1], [0.1, 0.2, 0.9])
    assert m["roc_auc"] == 0.0 and m["pr_auc"] == 0.0
    assert m["accuracy"] == pytest.approx(2 / 3)


def test_a_gate_without_a_threshold_passes():
    (result,) = gate({"f1": 0.01}, {"f1": None})
    assert result == GateResult("f1", 0.01, None, True)
    assert "no threshold" in result.describe()
    assert result.as_dict() == {"metric": "f1", "value": 0.01, "threshold": None, "passed": True}


def test_a_gate_at_exactly_the_threshold_passes():
    (result,) = gate({"recall": 0.8}, {"recall": 0.8})
    assert result.passed


def test_a_gate_on_an_unknown_metric_raises():
    with pytest.raises(KeyError, match="'f2'"):
        gate({"f1": 0.9}, {"f2": 0.5})


def test_gate_keeps_the_order_of_the_thresholds():
    m = classification_metrics(Y_TRUE, Y_PRED, Y_SCORE)
    assert [g.metric for g in gate(m, {"recall": 0.1, "accuracy": 0.9, "f1": None})] == [
        "recall",
        "accuracy",
        "f1",
    ]


@pytest.fixture
def toy():
    X = pd.DataFrame({"x": [0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0]})
    y = pd.Series([0, 0, 0, 0, 0, 1, 1, 1])
    return X, y


def test_evaluate_reports_metrics_confusion_matrix_and_counts(toy):
    X, y = toy
    model = DummyClassifier(strategy="most_frequent").fit(X, y)
    report = evaluate(model, X, y)
    assert report["confusion_matrix"] == {"tn": 5, "fp": 0, "fn": 3, "tp": 0}
    assert report["rows"] == 8
    assert report["positive_rate"] == pytest.approx(3 / 8)
    assert report["metrics"]["accuracy"] == pytest.approx(5 / 8)
    assert report["metrics"]["f1"] == 0.0


def test_positive_scores_use_probabilities_or_the_decision_function(toy):
    X, y = toy
    prior = DummyClassifier(strategy="prior").fit(X, y)
    np.testing.assert_allclose(positive_scores(prior, X), [3 / 8] * 8)
    ridge = RidgeClassifier().fit(X, y)
    assert not hasattr(ridge, "predict_proba")
    np.testing.assert_allclose(positive_scores(ridge, X), ridge.decision_function(X))
    assert evaluate(ridge, X, y)["metrics"]["roc_auc"] == 1.0


def decode(url: str) -> bytes:
    prefix = "data:image/png;base64,"
    assert url.startswith(prefix)
    return base64.b64decode(url[len(prefix) :], validate=True)


def test_png_data_url_decodes_to_a_png_and_closes_the_figure():
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(2, 2))
    ax.plot([0, 1], [0, 1])
    url = png_data_url(fig)
    assert decode(url).startswith(PNG_SIGNATURE)
    assert not plt.fignum_exists(fig.number)


def test_confusion_and_roc_figure_renders(toy):
    X, y = toy
    model = RidgeClassifier().fit(X, y)
    fig = confusion_and_roc_figure(model, X, y)
    assert [ax.get_title() for ax in fig.axes[:2]] == [
        "Confusion matrix (test set)",
        "ROC curve (test set)",
    ]
    assert decode(png_data_url(fig)).startswith(PNG_SIGNATURE)
