"""Threshold selection (goals over the weighted validation pool) and training weights."""

from __future__ import annotations

import numpy as np

from model.evaluation import hold_threshold, reject_threshold, threshold_report


def test_unweighted_hold_threshold_lets_through_at_most_the_miss_rate() -> None:
    y = np.array([1] * 100 + [0] * 100)
    p = np.concatenate([np.linspace(0.01, 1.0, 100), np.linspace(0.0, 0.5, 100)])
    cut = hold_threshold(y, p, recall=0.95)
    report = threshold_report(y, p, cut)
    assert 1.0 - report["recall"] <= 0.05 + 1e-9
    assert report["recall"] < 1.0  # the budget is used, not wasted


def test_low_weight_positives_do_not_drag_the_hold_threshold_down() -> None:
    """Ten noisy, low-scored positives from a half-trusted source move the cut far less
    when they count for what they weigh."""
    y = np.array([1] * 100 + [1] * 10 + [0] * 100)
    p = np.concatenate([np.linspace(0.5, 1.0, 100), np.full(10, 0.01), np.linspace(0, 0.6, 100)])
    w = np.array([5.0] * 100 + [0.5] * 10 + [1.0] * 100)
    plain = hold_threshold(y, p, recall=0.95)
    weighted = hold_threshold(y, p, recall=0.95, weight=w)
    assert plain == 0.01  # unweighted, the ten noisy positives alone exceed the 5 % budget
    assert weighted > 0.5
    weighted_report = threshold_report(y, p, weighted, w)
    assert 1.0 - weighted_report["recall"] <= 0.05 + 1e-9
    assert weighted_report["flag_rate_clean"] < threshold_report(y, p, plain)["flag_rate_clean"]


def test_weighted_reject_threshold_meets_weighted_precision() -> None:
    y = np.array([1] * 60 + [0] * 5 + [1] * 40 + [0] * 100)
    p = np.concatenate([np.full(60, 0.99), np.full(5, 0.98), np.full(40, 0.9), np.zeros(100)])
    w = np.array([1.0] * 60 + [0.01] * 5 + [1.0] * 140)
    assert reject_threshold(y, p, 0.99) == 0.99  # five clean rows at 0.98 break 99 % precision
    cut = reject_threshold(y, p, 0.99, weight=w)  # …unless they weigh almost nothing
    assert cut == 0.9
    assert threshold_report(y, p, cut, w)["precision"] >= 0.99


def test_training_balances_classes_within_each_public_source() -> None:
    """Each public source keeps its total weight with positives and negatives weighing the
    same; one-class sources and moderator labels keep theirs."""
    from model.datasets import Row
    from model.training import _balanced

    rows = [Row("t", "toxic", t, "davidson", "") for t in (1, 1, 1, 0)]
    rows += [Row("t", "toxic", 0, "comment_ham", "")] * 2
    rows += [Row("t", "toxic", t, "moderator", "") for t in (1, 0, 0)]
    y = np.array([r.target for r in rows])
    w = np.array([0.3] * 4 + [0.2] * 2 + [30.0] * 3)
    out = _balanced(rows, y, w)
    assert abs(out[:4].sum() - 1.2) < 1e-12
    assert abs(out[:3].sum() - out[3]) < 1e-12  # three positives weigh what one negative does
    assert list(out[4:]) == [0.2, 0.2, 30.0, 30.0, 30.0]


def test_weightless_classes_give_defined_results() -> None:
    """Zero-weight positives or negatives behave like absent ones, without warnings."""
    y = np.array([1, 1, 0, 0])
    p = np.array([0.9, 0.8, 0.2, 0.1])
    assert hold_threshold(y, p, 0.99, weight=np.array([0.0, 0.0, 1.0, 1.0])) == 0.0
    report = threshold_report(y, p, 0.5, np.array([1.0, 1.0, 0.0, 0.0]))
    assert report["recall"] == 1.0
    assert report["flag_rate_clean"] != report["flag_rate_clean"]  # NaN: no clean weight
