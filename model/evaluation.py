"""Metrics, threshold selection and evaluation reports shared by training, CLI and bench."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray
from sklearn.metrics import (
    average_precision_score,
    brier_score_loss,
    f1_score,
    roc_auc_score,
)

# Goals from the moderation policy: auto-reject spam only where precision is at least this…
REJECT_PRECISION = 0.99
# …and auto-approve only below the score that still catches this share of spam/toxic comments.
HOLD_RECALL = 0.99
_MIN_REJECTED = 20  # a precision estimate from fewer auto-rejections is too noisy to trust


def binary_metrics(
    y: NDArray[np.int_], p: NDArray[np.float64], weight: NDArray[np.float64] | None = None
) -> dict[str, float]:
    """Return ROC-AUC, average precision, Brier score and counts (NaN AUC if one class)."""
    out: dict[str, float] = {"n": float(len(y)), "positives": float(np.sum(y))}
    if len(set(y.tolist())) == 2:
        out["roc_auc"] = float(roc_auc_score(y, p, sample_weight=weight))
        out["average_precision"] = float(average_precision_score(y, p, sample_weight=weight))
    else:
        out["roc_auc"] = float("nan")
        out["average_precision"] = float("nan")
    out["brier"] = float(brier_score_loss(y, p, sample_weight=weight)) if len(y) else float("nan")
    return out


def macro_f1(y: NDArray[np.int_], p: NDArray[np.float64], threshold: float) -> float:
    """Return the macro-averaged F1 of ``p >= threshold``."""
    return float(f1_score(y, (p >= threshold).astype(int), average="macro"))


def best_f1_threshold(y: NDArray[np.int_], p: NDArray[np.float64]) -> float:
    """Return the threshold that maximises macro-F1 on validation data."""
    grid = np.unique(np.round(np.quantile(p, np.linspace(0.01, 0.99, 99)), 4))
    scores = [macro_f1(y, p, t) for t in grid]
    return float(grid[int(np.argmax(scores))])


def reject_threshold(
    y: NDArray[np.int_],
    p: NDArray[np.float64],
    precision: float = REJECT_PRECISION,
    weight: NDArray[np.float64] | None = None,
) -> float:
    """Return the lowest score whose auto-rejections (and every stricter cut) meet ``precision``
    (weighted by ``weight``, e.g. training source weights, if given).

    Returns 1.0 (never auto-reject) if no cut with enough rejections is precise enough.
    """
    w = np.ones(len(y)) if weight is None else np.asarray(weight, dtype=np.float64)
    order = np.argsort(-p, kind="stable")
    ys, ps, ws = y[order], p[order], w[order]
    prec = np.cumsum(ys * ws) / np.maximum(np.cumsum(ws), 1e-12)
    taken = np.arange(1, len(ys) + 1)
    best = 1.0
    for i in range(len(ys)):
        if i + 1 < len(ys) and ps[i + 1] == ps[i]:
            continue  # only cut between distinct scores
        if taken[i] >= _MIN_REJECTED and prec[i] < precision:
            break
        if taken[i] >= _MIN_REJECTED:
            best = float(ps[i])
    return best


def hold_threshold(
    y: NDArray[np.int_],
    p: NDArray[np.float64],
    recall: float = HOLD_RECALL,
    weight: NDArray[np.float64] | None = None,
) -> float:
    """Return the highest score below which at most ``1 - recall`` of positives fall
    (as a share of their total ``weight``, if given)."""
    pos = np.flatnonzero(y == 1)
    if pos.size == 0:
        return 0.0
    order = pos[np.argsort(p[pos], kind="stable")]
    w = np.ones(pos.size) if weight is None else np.asarray(weight, np.float64)[order]
    cumulative = np.cumsum(w)
    if cumulative[-1] <= 0:
        return 0.0  # no positive carries weight: nothing to protect, as with no positives
    # How many of the lowest-scored positives fit in the allowed (weighted) miss budget.
    k = int(np.searchsorted(cumulative, (1.0 - recall) * cumulative[-1] * (1 + 1e-12), "right"))
    return float(p[order][min(k, pos.size - 1)])


def threshold_report(
    y: NDArray[np.int_],
    p: NDArray[np.float64],
    threshold: float,
    weight: NDArray[np.float64] | None = None,
) -> dict[str, float]:
    """Return precision, recall and flag rate of ``p >= threshold`` (weighted, if given)."""
    w = np.ones(len(y)) if weight is None else np.asarray(weight, dtype=np.float64)
    flagged = p >= threshold
    pos = y == 1
    tp = float(np.sum(w[flagged & pos]))
    return {
        "threshold": threshold,
        "precision": tp / max(float(np.sum(w[flagged])), 1e-12) if flagged.any() else 0.0,
        "recall": tp / max(float(np.sum(w[pos])), 1e-12),
        "flag_rate_clean": (
            float(np.sum(w[flagged & ~pos]) / np.sum(w[~pos]))
            if np.sum(w[~pos]) > 0
            else float("nan")
        ),
    }


# Operating points recorded in the metadata so an operator can pick another trade-off.
TRADEOFF_MISS_RATES = (0.005, 0.01, 0.02, 0.05, 0.1, 0.2)
TRADEOFF_PRECISIONS = (0.95, 0.98, 0.99, 0.995)


def hold_tradeoffs(
    y: NDArray[np.int_], p: NDArray[np.float64], weight: NDArray[np.float64] | None = None
) -> list[dict[str, float]]:
    """Return, per allowed miss rate, the hold threshold and the share of clean rows it holds."""
    out = []
    for miss in TRADEOFF_MISS_RATES:
        cut = hold_threshold(y, p, 1.0 - miss, weight)
        report = threshold_report(y, p, cut, weight)
        out.append(
            {
                "max_miss_rate": miss,
                "threshold": cut,
                "miss_rate": 1.0 - report["recall"],
                "clean_held": report["flag_rate_clean"],
            }
        )
    return out


def reject_tradeoffs(
    y: NDArray[np.int_], p: NDArray[np.float64], weight: NDArray[np.float64] | None = None
) -> list[dict[str, float]]:
    """Return, per precision goal, the auto-reject threshold and the share of spam it rejects."""
    out = []
    for precision in TRADEOFF_PRECISIONS:
        cut = reject_threshold(y, p, precision, weight)
        report = threshold_report(y, p, cut, weight)
        out.append(
            {
                "min_precision": precision,
                "threshold": cut,
                "precision": report["precision"],
                "spam_rejected": report["recall"],
                "clean_rejected": report["flag_rate_clean"],
            }
        )
    return out


def per_group_metrics(
    y: NDArray[np.int_], p: NDArray[np.float64], groups: Sequence[str]
) -> dict[str, dict[str, float]]:
    """Return binary_metrics for each group (e.g. source) separately."""
    g = np.asarray(groups)
    return {name: binary_metrics(y[g == name], p[g == name]) for name in sorted(set(g.tolist()))}


def jsonable(obj: Any) -> Any:
    """Replace NaN with None recursively so the result is strict JSON."""
    if isinstance(obj, dict):
        return {k: jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [jsonable(v) for v in obj]
    if isinstance(obj, float) and obj != obj:
        return None
    return obj
