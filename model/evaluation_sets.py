"""Score labelled evaluation sets with a classifier and write reports (JSON, markdown, PNG)."""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from model.datasets import SPAM, TOXIC, Row, dedupe_key, read_moderator_labels, read_olid_test
from model.evaluation import binary_metrics, jsonable, macro_f1, threshold_report

if TYPE_CHECKING:
    from model.scoring import Classifier

# metadata["training_data"][LABEL_KEYS]: sorted fingerprints of the moderator-label texts an
# artifact was trained on, so promote never scores a model on its own training labels (they
# weigh 30x: a candidate fitted to noisy or poisoned labels would score ~1.0 on them).
LABEL_KEYS = "moderator_label_keys"
# 64 bits of SHA-256: compact in metadata, and a chance collision only leaves one row out.
LABEL_KEY_HEX_DIGITS = 16


@dataclass(frozen=True)
class EvalSet:
    """Texts with gold labels for one label head."""

    name: str
    label: str
    texts: list[str]
    y: NDArray[np.int_]


def eval_sets_from_rows(name: str, rows: Sequence[Row]) -> list[EvalSet]:
    """Split rows into one evaluation set per label that has both classes."""
    out: list[EvalSet] = []
    for label in (SPAM, TOXIC):
        sub = [r for r in rows if r.label == label]
        y = np.array([r.target for r in sub], dtype=np.int_)
        if len(set(y.tolist())) == 2:
            out.append(EvalSet(f"{name}/{label}", label, [r.text for r in sub], y))
    return out


def read_label_rows(path: Path) -> list[Row]:
    """Read a moderator-label JSONL file, refusing unreadable or non-UTF-8 files with DataError."""
    return list(read_moderator_labels(path))


def default_eval_sets(data_dir: Path | None, label_files: Sequence[Path] = ()) -> list[EvalSet]:
    """Return held-out sets: OLID official test A (if present) and any moderator-label files."""
    sets: list[EvalSet] = []
    if data_dir is not None:
        sets.extend(eval_sets_from_rows("olid-test-a", list(read_olid_test(data_dir))))
    for path in label_files:
        sets.extend(eval_sets_from_rows(path.stem, read_label_rows(path)))
    return sets


def score_set(classifier: Classifier, eval_set: EvalSet) -> NDArray[np.float64]:
    """Return the classifier's probabilities for the set's label."""
    column = 0 if eval_set.label == SPAM else 1
    scores = classifier.score_batch(eval_set.texts)
    return np.array([s[column] for s in scores], dtype=np.float64)


def label_text_key(text: str) -> str:
    """Return the fingerprint training records for a moderator-label text."""
    # The same identity de-duplication uses: the text as the model sees it (raw text when
    # nothing word-like is left), so a re-cased or re-punctuated copy is still recognised.
    key = dedupe_key(text) or text
    digest = hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()
    return digest[:LABEL_KEY_HEX_DIGITS]


def trained_label_keys(classifier: Classifier) -> frozenset[str]:
    """Return the moderator-label fingerprints ``classifier`` was trained on (none if old)."""
    training_data = classifier.metadata.get("training_data")
    keys = training_data.get(LABEL_KEYS, []) if isinstance(training_data, dict) else []
    return frozenset(keys)


@dataclass(frozen=True)
class Comparison:
    """Candidate and live ROC-AUC per label, and which evaluation rows were used."""

    labels: dict[str, dict[str, Any]]
    evaluation_rows: int  # rows (lines) in the evaluation file; 0 without one
    left_out: int  # of those, rows either model was trained on, so not scored

    def left_out_note(self) -> str:
        """Say how many evaluation rows were left out as training labels of either model."""
        return (
            f"{self.left_out} of {self.evaluation_rows} evaluation rows left out as seen in "
            "training"
        )


def compare_models(candidate: Classifier, live: Classifier, evaluation_file: Path) -> Comparison:
    """Return per-label ROC-AUC of both models on the registry's evaluation set.

    Rows whose text either model was trained on as a moderator label are left out, so neither
    is scored on its own training labels. A label the remaining rows cannot measure (no file,
    or not both classes for that label) falls back to each artifact's recorded out-of-fold
    validation ROC-AUC (comparable only when both were trained on similar data), so no label
    goes unchecked.
    """
    out: dict[str, dict[str, Any]] = {}
    total = left_out = 0
    if evaluation_file.is_file():
        rows = read_label_rows(evaluation_file)
        seen = trained_label_keys(candidate) | trained_label_keys(live)
        unseen = [r for r in rows if label_text_key(r.text) not in seen] if seen else rows
        # Each line of a moderator-label file yields one row per label head.
        total, left_out = len(rows) // 2, (len(rows) - len(unseen)) // 2
        for eval_set in eval_sets_from_rows("evaluation", unseen):
            out[eval_set.label] = {
                "set": str(evaluation_file),
                "candidate": binary_metrics(eval_set.y, score_set(candidate, eval_set))["roc_auc"],
                "live": binary_metrics(eval_set.y, score_set(live, eval_set))["roc_auc"],
            }
    for label in (SPAM, TOXIC):
        if label in out:
            continue
        cand, cur = _recorded_auc(candidate, label), _recorded_auc(live, label)
        if math.isnan(cand) and not math.isnan(cur):
            cand = -math.inf  # a candidate without metrics cannot show it is not worse
        out[label] = {"set": "recorded validation metrics", "candidate": cand, "live": cur}
    return Comparison(out, total, left_out)


def _recorded_auc(classifier: Classifier, label: str) -> float:
    """Return the artifact's out-of-fold ROC-AUC for ``label``, NaN if it records none."""
    value: Any = classifier.metadata
    for key in ("metrics", "validation", label, "overall", "roc_auc"):
        value = value.get(key) if isinstance(value, dict) else None
    return float(value) if isinstance(value, int | float) else math.nan


def evaluate(classifier: Classifier, sets: Sequence[EvalSet], out_dir: Path) -> dict[str, Any]:
    """Score every set, write report.json, report.md and PNG curves into ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    thresholds = classifier.thresholds
    report: dict[str, Any] = {"model_version": classifier.version, "sets": {}}
    curves: dict[str, tuple[NDArray[np.int_], NDArray[np.float64]]] = {}
    for eval_set in sets:
        p = score_set(classifier, eval_set)
        cut = thresholds.spam_reject if eval_set.label == SPAM else thresholds.toxic_hold
        hold = thresholds.spam_hold if eval_set.label == SPAM else thresholds.toxic_hold
        metrics: dict[str, Any] = binary_metrics(eval_set.y, p)
        metrics["macro_f1_at_0.5"] = macro_f1(eval_set.y, p, 0.5)
        metrics["decision_threshold"] = threshold_report(eval_set.y, p, cut)
        metrics["hold_threshold"] = threshold_report(eval_set.y, p, hold)
        tn = int(np.sum((p < 0.5) & (eval_set.y == 0)))
        fp = int(np.sum((p >= 0.5) & (eval_set.y == 0)))
        fn = int(np.sum((p < 0.5) & (eval_set.y == 1)))
        tp = int(np.sum((p >= 0.5) & (eval_set.y == 1)))
        metrics["confusion_at_0.5"] = {"tn": tn, "fp": fp, "fn": fn, "tp": tp}
        report["sets"][eval_set.name] = metrics
        curves[eval_set.name] = (eval_set.y, p)
    (out_dir / "report.json").write_text(json.dumps(jsonable(report), indent=2) + "\n")
    (out_dir / "report.md").write_text(_markdown(report))
    if curves:
        _plot(curves, out_dir)
    return report


def _markdown(report: dict[str, Any]) -> str:
    lines = [
        f"# Evaluation of model {report['model_version']}",
        "",
        "| set | n | positives | ROC-AUC | avg precision | Brier | macro-F1 @0.5 "
        "| TN/FP/FN/TP @0.5 |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, m in report["sets"].items():
        c = m["confusion_at_0.5"]
        lines.append(
            f"| {name} | {int(m['n'])} | {int(m['positives'])} | {m['roc_auc']:.4f} | "
            f"{m['average_precision']:.4f} | {m['brier']:.4f} | {m['macro_f1_at_0.5']:.4f} | "
            f"{c['tn']}/{c['fp']}/{c['fn']}/{c['tp']} |"
        )
    lines += ["", "Curves: `roc_pr.png`; confusion matrices: `confusion.png`.", ""]
    return "\n".join(lines)


def _plot(curves: dict[str, tuple[NDArray[np.int_], NDArray[np.float64]]], out_dir: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.metrics import ConfusionMatrixDisplay, precision_recall_curve, roc_curve

    fig, (ax_roc, ax_pr) = plt.subplots(1, 2, figsize=(11, 4.5))
    for name, (y, p) in curves.items():
        fpr, tpr, _ = roc_curve(y, p)
        prec, rec, _ = precision_recall_curve(y, p)
        ax_roc.plot(fpr, tpr, label=name)
        ax_pr.plot(rec, prec, label=name)
    ax_roc.plot([0, 1], [0, 1], ":", color="grey")
    ax_roc.set(xlabel="false positive rate", ylabel="true positive rate", title="ROC")
    ax_pr.set(xlabel="recall", ylabel="precision", title="Precision-recall")
    ax_roc.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out_dir / "roc_pr.png", dpi=110)
    plt.close(fig)
    fig, axes = plt.subplots(1, len(curves), figsize=(4 * len(curves), 3.6), squeeze=False)
    for ax, (name, (y, p)) in zip(axes[0], curves.items(), strict=True):
        ConfusionMatrixDisplay.from_predictions(y, (p >= 0.5).astype(int), ax=ax, colorbar=False)
        ax.set_title(f"{name} @0.5", fontsize=9)
    fig.tight_layout()
    fig.savefig(out_dir / "confusion.png", dpi=110)
    plt.close(fig)
