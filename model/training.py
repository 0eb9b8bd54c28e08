"""Train both label heads on the shared datasets (plus moderator labels) into an artifact."""

from __future__ import annotations

import hashlib
import json
import random
from collections import Counter, defaultdict
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray
from scipy import sparse
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold
from tqdm import tqdm

from model.artifact import save_artifact
from model.datasets import (
    LABELS,
    Row,
    dedupe,
    file_hashes,
    load_rows,
    read_moderator_labels,
    sha256_file,
    toxic_span_word_counts,
    with_comment_ham,
)
from model.errors import DataError
from model.evaluation import (
    binary_metrics,
    hold_threshold,
    hold_tradeoffs,
    jsonable,
    per_group_metrics,
    reject_threshold,
    reject_tradeoffs,
    threshold_report,
)
from model.evaluation_sets import LABEL_KEYS, label_text_key
from model.features import NgramHasher, TrainConfig, distinct_counts
from model.lexicon import build_lexicon, lexicon_values
from model.scoring import LinearScorer, tfidf_values
from model.shape import SHAPE_COLUMNS, shape_values
from model.text import normalise


@dataclass(frozen=True)
class TrainResult:
    """Where a training run wrote its artifact and what it measured."""

    version: str
    folder: Path
    metadata: dict[str, Any]


@dataclass
class _Head:
    label: str
    rows: list[Row]
    index: NDArray[np.int64]  # row positions in the shared feature matrix
    y: NDArray[np.int_]
    weight: NDArray[np.float64]  # for fitting the linear model: per-source class-balanced
    pool_weight: NDArray[np.float64]  # for calibration and thresholds: source weight only


def select_rows(
    data_dir: Path, label_files: Sequence[Path], config: TrainConfig
) -> tuple[list[Row], dict[str, dict[str, int]]]:
    """Read, sample and de-duplicate training rows; return them with per-source counts."""
    rows = load_rows(data_dir)
    if config.max_rows_per_source is not None:
        rows = _sample_per_source(rows, config.max_rows_per_source, config.random_state)
    for path in label_files:
        rows.extend(read_moderator_labels(path))
    rows = with_comment_ham(dedupe(rows))
    rows = [r for r in rows if _source_weight(r, config) > 0]
    counts: dict[str, dict[str, int]] = defaultdict(lambda: {"rows": 0, "positives": 0})
    for r in rows:
        key = f"{r.label}/{r.source}"
        counts[key]["rows"] += 1
        counts[key]["positives"] += r.target
    for label in LABELS:
        targets = {r.target for r in rows if r.label == label}
        if targets != {0, 1}:
            raise DataError(f"no usable {label} training data with both classes in {data_dir}")
    return rows, dict(sorted(counts.items()))


def _sample_per_source(rows: list[Row], limit: int, seed: int) -> list[Row]:
    by_source: dict[tuple[str, str], list[Row]] = defaultdict(list)
    for r in rows:
        by_source[(r.label, r.source)].append(r)
    rng = random.Random(seed)  # noqa: S311  # reproducible sampling, not security
    out: list[Row] = []
    for key in sorted(by_source):
        group = by_source[key]
        out.extend(group if len(group) <= limit else rng.sample(group, limit))
    return out


def _source_weight(row: Row, config: TrainConfig) -> float:
    if row.source == "moderator":
        return config.moderator_weight
    return config.source_weights.get(row.source, 0.0) * row.weight


def ngram_counts(texts: Sequence[str], hasher: NgramHasher) -> sparse.csr_matrix:
    """Return the n-gram count matrix of normalised texts."""
    doc, col, counts = distinct_counts(hasher.occurrences(texts), len(texts), hasher.width)
    return sparse.csr_matrix(
        (counts.astype(np.float64), (doc, col)), shape=(len(texts), hasher.width)
    )


def feature_matrix(
    counts: sparse.csr_matrix,
    texts: Sequence[str],
    idf: NDArray[np.float32],
    lexicon: frozenset[str],
) -> sparse.csr_matrix:
    """Return model inputs: L2-normalised (1 + ln count) * idf, lexicon then shape columns.

    The same transform ``LinearScorer.margins`` computes at scoring time.
    """
    coo = counts.tocoo()
    values = tfidf_values(
        coo.row.astype(np.int64),
        coo.col.astype(np.int64),
        coo.data,
        idf.astype(np.float64),
        counts.shape[0],
    )
    scaled = sparse.csr_matrix((values, (coo.row, coo.col)), shape=counts.shape)
    lex = sparse.csr_matrix(lexicon_values(texts, lexicon))
    shape = sparse.csr_matrix(shape_values(texts))
    return sparse.hstack([scaled, lex, shape], format="csr")


def fit_heads(
    rows: list[Row],
    config: TrainConfig,
    lexicon: list[str],
    progress: tqdm[Any] | None = None,
    labels: Sequence[str] = LABELS,
) -> tuple[dict[str, Any], dict[str, NDArray[np.float64]], dict[str, _Head]]:
    """Fit idf on all ``rows`` and every head in ``labels`` present in them (benchmarks fit
    one head, with the idf of both, as the shipped model has).

    Returns the bundle (plain numpy arrays), out-of-fold calibrated probabilities and the heads.
    """
    texts = [normalise(r.text) for r in rows]
    hasher = NgramHasher.from_config(config)
    counts = ngram_counts(texts, hasher)
    df = np.bincount(counts.indices, minlength=hasher.width)
    idf = (np.log((1.0 + len(texts)) / (1.0 + df)) + 1.0).astype(np.float32)  # smoothed idf
    x = feature_matrix(counts, texts, idf, frozenset(lexicon))
    _tick(progress, "features")
    heads: dict[str, _Head] = {}
    for label in labels:
        index = np.array([i for i, r in enumerate(rows) if r.label == label], dtype=np.int64)
        if index.size == 0:
            continue
        sub = [rows[i] for i in index]
        y = np.array([r.target for r in sub], dtype=np.int_)
        pool = np.array([_source_weight(r, config) for r in sub], dtype=np.float64)
        fit_weight = _balanced(sub, y, pool) if config.balance_sources else pool
        heads[label] = _Head(label, sub, index, y, fit_weight, pool)
    bundle: dict[str, Any] = {"idf": idf, "lexicon": np.array(sorted(lexicon), dtype=np.str_)}
    oof: dict[str, NDArray[np.float64]] = {}
    for label, head in heads.items():
        c = config.c_spam if label == "spam" else config.c_toxic
        xh = x[head.index]
        if label not in config.shape_heads:  # all-zero columns get zero weights
            keep = np.ones(x.shape[1])
            keep[-SHAPE_COLUMNS:] = 0.0
            xh = (xh @ sparse.diags(keep)).tocsr()
        margins = _out_of_fold_margins(xh, head, c, config)
        _tick(progress, f"{label} validation folds")
        calibrator = LogisticRegression(C=1e4)
        calibrator.fit(margins.reshape(-1, 1), head.y, sample_weight=head.pool_weight)
        oof[label] = calibrator.predict_proba(margins.reshape(-1, 1))[:, 1]
        linear = _fit_linear(xh, head.y, head.weight, c, config.random_state)
        bundle[f"{label}_coef"] = linear.coef_.ravel().astype(np.float32)
        bundle[f"{label}_intercept"] = np.asarray(linear.intercept_, dtype=np.float64).ravel()
        bundle[f"{label}_calibration"] = np.array(
            [calibrator.coef_.ravel()[0], calibrator.intercept_.ravel()[0]], dtype=np.float64
        )
        _tick(progress, f"{label} final fit")
    return bundle, oof, heads


def _balanced(
    rows: Sequence[Row], y: NDArray[np.int_], weight: NDArray[np.float64]
) -> NDArray[np.float64]:
    """Rescale each public source so its positives and negatives weigh the same in total.

    Sources differ in prevalence (Davidson is 83 % offensive, OLID 33 %, SMS 13 % spam), and
    with one shared intercept the model otherwise learns "sounds like Davidson" as a toxicity
    cue. A source keeps its total weight; one-class sources and moderator labels are unchanged.
    OLID-train hold-out ROC-AUC 0.8199 → 0.8236, Davidson 5-fold 0.973 → 0.979 (docs/model.md).
    """
    out = weight.copy()
    sources = np.array([r.source for r in rows])
    for source in set(sources.tolist()) - {"moderator"}:
        mine = sources == source
        pos, neg = mine & (y == 1), mine & (y == 0)
        total, w_pos, w_neg = out[mine].sum(), out[pos].sum(), out[neg].sum()
        if w_pos > 0 and w_neg > 0:
            out[pos] *= total / 2 / w_pos
            out[neg] *= total / 2 / w_neg
    return out


def predict_label(
    bundle: dict[str, Any], label: str, texts: Sequence[str], config: TrainConfig
) -> NDArray[np.float64]:
    """Return calibrated probabilities of one head for raw texts (used by benchmarks)."""
    scorer = LinearScorer(bundle, NgramHasher.from_config(config), labels=(label,))
    return scorer.probabilities([normalise(t) for t in texts])[:, 0]


def _fit_linear(
    x: sparse.csr_matrix, y: NDArray[np.int_], w: NDArray[np.float64], c: float, seed: int
) -> LogisticRegression:
    model = LogisticRegression(C=c, solver="liblinear", max_iter=1000, random_state=seed)
    model.fit(x, y, sample_weight=w)
    return model


def _out_of_fold_margins(
    x: sparse.csr_matrix, head: _Head, c: float, config: TrainConfig
) -> NDArray[np.float64]:
    """Return each row's linear margin from a model that never saw that row."""
    strata = [f"{r.source}:{r.target}" for r in head.rows]
    counts = Counter(strata)
    # Strata too small to split fall back to the label alone.
    strata = [s if counts[s] >= config.calibration_folds else s.rsplit(":", 1)[1] for s in strata]
    folds = StratifiedKFold(
        config.calibration_folds, shuffle=True, random_state=config.random_state
    )
    margins = np.zeros(len(head.rows))

    def run(split: tuple[NDArray[np.int_], NDArray[np.int_]]) -> None:
        train, test = split
        model = _fit_linear(x[train], head.y[train], head.weight[train], c, config.random_state)
        margins[test] = model.decision_function(x[test])

    # liblinear releases the GIL, so threads use both cores without copying the matrix.
    with ThreadPoolExecutor(max_workers=2) as pool:
        list(pool.map(run, folds.split(np.zeros(len(strata)), strata)))
    return margins


def validation_summary(
    oof: dict[str, NDArray[np.float64]],
    heads: dict[str, _Head],
    config: TrainConfig | None = None,
) -> tuple[dict[str, Any], dict[str, float], dict[str, Any]]:
    """Return out-of-fold metrics, thresholds chosen on them, and the thresholds' behaviour.

    The behaviour includes trade-off tables (other miss rates / precisions) for operators.
    """
    config = config or TrainConfig()
    recall = 1.0 - config.max_miss_rate
    metrics: dict[str, Any] = {}
    for label, head in heads.items():
        metrics[label] = {
            "overall": binary_metrics(head.y, oof[label]),
            "by_source": per_group_metrics(head.y, oof[label], [r.source for r in head.rows]),
        }
    spam, toxic = heads["spam"], heads["toxic"]
    # Goals hold over the pool weighted as in training: the weights say how much each source
    # resembles this site's comments (Instagram's partly heuristic labels count half).
    ws, wt = spam.pool_weight, toxic.pool_weight
    thresholds = {
        "spam_reject": reject_threshold(spam.y, oof["spam"], config.reject_precision, ws),
        "spam_hold": hold_threshold(spam.y, oof["spam"], recall, ws),
        "toxic_hold": hold_threshold(toxic.y, oof["toxic"], recall, wt),
    }
    behaviour = {
        "spam_reject": threshold_report(spam.y, oof["spam"], thresholds["spam_reject"], ws),
        "spam_hold": threshold_report(spam.y, oof["spam"], thresholds["spam_hold"], ws),
        "toxic_hold": threshold_report(toxic.y, oof["toxic"], thresholds["toxic_hold"], wt),
        "by_source": {
            label: _held_by_source(head, oof[label], thresholds[f"{label}_hold"])
            for label, head in (("spam", spam), ("toxic", toxic))
        },
        "tradeoffs": {
            "spam_reject": reject_tradeoffs(spam.y, oof["spam"], ws),
            "spam_hold": hold_tradeoffs(spam.y, oof["spam"], ws),
            "toxic_hold": hold_tradeoffs(toxic.y, oof["toxic"], wt),
        },
    }
    return metrics, thresholds, behaviour


def _held_by_source(head: _Head, p: NDArray[np.float64], cut: float) -> dict[str, Any]:
    """Per source: the share of clean rows held and of positives let through at ``cut``."""
    sources = np.array([r.source for r in head.rows])
    out: dict[str, Any] = {}
    for source in sorted(set(sources.tolist())):
        mine = sources == source
        clean, positive = mine & (head.y == 0), mine & (head.y == 1)
        out[source] = {
            "clean_held": float(np.mean(p[clean] >= cut)) if clean.any() else None,
            "miss_rate": float(np.mean(p[positive] < cut)) if positive.any() else None,
        }
    return out


def train(
    data_dir: Path,
    out_dir: Path,
    *,
    label_files: Sequence[Path] = (),
    config: TrainConfig | None = None,
    progress: bool = True,
    version: str | None = None,
) -> TrainResult:
    """Train on ``data_dir`` (+ moderator labels) and write ``out_dir/<version>``."""
    config = config or TrainConfig()
    data_dir = data_dir.resolve()
    with tqdm(total=7, desc="train", unit="step", disable=not progress) as bar:
        rows, counts = select_rows(data_dir, label_files, config)
        lexicon = build_lexicon(*toxic_span_word_counts(data_dir))
        _tick(bar, f"read {len(rows)} rows, {len(lexicon)} lexicon words")
        bundle, oof, heads = fit_heads(rows, config, lexicon, bar)
        metrics, thresholds, behaviour = validation_summary(oof, heads, config)
        hashes = file_hashes(data_dir)
        label_hashes = {str(p): sha256_file(p) for p in label_files}
        # Promote leaves these texts out of its evaluation set: a model scores ~1.0 on the
        # moderator labels it was fitted to (weight 30), whatever their quality.
        label_keys = sorted({label_text_key(r.text) for r in rows if r.source == "moderator"})
        created = datetime.now(UTC)
        if version is None:
            digest = hashlib.sha256(
                json.dumps([hashes, label_hashes, config.to_dict()], sort_keys=True).encode()
            ).hexdigest()
            version = f"{created:%Y%m%d-%H%M%S}-{digest[:8]}"
        metadata = jsonable(
            {
                "version": version,
                "created_at": created.isoformat(timespec="seconds"),
                "config": config.to_dict(),
                "training_data": {
                    "root": str(data_dir),
                    "files": hashes,
                    "moderator_labels": label_hashes,
                    LABEL_KEYS: label_keys,
                    "rows": counts,
                },
                "metrics": {
                    "validation": metrics,
                    "validation_protocol": (
                        f"{config.calibration_folds}-fold out-of-fold predictions, stratified by "
                        "source and label, on the training pool (after de-duplication)"
                    ),
                },
                "thresholds": thresholds,
                "threshold_behaviour": behaviour,
            }
        )
        folder = save_artifact(out_dir / version, bundle, metadata)
        _tick(bar, "saved")
    return TrainResult(version, folder, metadata)


def _tick(bar: tqdm[Any] | None, what: str) -> None:
    if bar is not None:
        bar.set_postfix_str(what)
        bar.update(1)
