"""Validation harness for toxic-head experiments (docs/model.md, Known gaps).

Judges a change on data it was not tuned on, never on OLID test A (reported for reference):
- 20 % stratified hold-outs of OLID train and of Davidson (left out of training);
- leave-one-source-out ROC-AUC: train without Kaggle insults, Jigsaw or OLID, test on all of it
  (how the head meets a site whose comments it has never seen).

Variants: ``baseline`` (the shipped head), ``maxpool`` (max-pooled per-word scores from a
cross-fitted unigram model as four extra columns), ``blocks`` (word block re-weighted x1.4),
``hashtags`` (camel-case hashtags split into words). Each takes 1-2 minutes on 2 cores.

Run: .venv/bin/python bench/toxic_validation.py --data ../shared/data baseline maxpool
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
from numpy.typing import NDArray
from scipy import sparse
from sklearn.feature_extraction.text import CountVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import StratifiedKFold, train_test_split

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from model.datasets import (  # the repo root is put on sys.path above
    TOXIC,
    Row,
    dedupe_key,
    read_olid_test,
    toxic_span_word_counts,
)
from model.features import NgramHasher, TrainConfig
from model.lexicon import build_lexicon
from model.shape import SHAPE_COLUMNS
from model.text import normalise
from model.training import (
    _balanced,
    _fit_linear,
    _source_weight,
    feature_matrix,
    ngram_counts,
    select_rows,
)

CONFIG = TrainConfig()
HELD_SOURCES = ("olid", "davidson")
LEAVE_OUT = ("kaggle_insults", "jigsaw", "olid")
Matrix = sparse.csr_matrix
# A variant: (training rows, rows to score) -> (training matrix, matrices of the others).
Features = Callable[[list[Row], Sequence[list[Row]], list[str]], tuple[Matrix, list[Matrix]]]


def hashtag_normalise(text: str) -> str:
    """normalise(), then "#LockThemAllUp" -> "Lock Them All Up" (camel-case tags only)."""
    camel = re.compile(r"(?<=[a-z])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])|(?<=[A-Za-z])(?=\d)")

    def split(match: re.Match[str]) -> str:
        tag = match.group(1)
        return camel.sub(" ", tag) if re.search(r"[a-z][A-Z]", tag) else match.group(0)

    norm = normalise(text)
    return re.sub(r"#(\w+)", split, norm) if "#" in norm else norm


def tfidf(
    train: list[Row], others: Sequence[list[Row]], lexicon: list[str], norm: Callable[[str], str]
) -> tuple[Matrix, list[Matrix]]:
    """The shipped head's features (idf fitted on the training rows), shape columns off."""
    texts = [norm(r.text) for r in train]
    hasher = NgramHasher.from_config(CONFIG)
    counts = ngram_counts(texts, hasher)
    df = np.bincount(counts.indices, minlength=hasher.width)
    idf = (np.log((1.0 + len(texts)) / (1.0 + df)) + 1.0).astype(np.float32)
    lex = frozenset(lexicon)

    def matrix(rows_texts: list[str], rows_counts: Matrix) -> Matrix:
        return feature_matrix(rows_counts, rows_texts, idf, lex)[:, :-SHAPE_COLUMNS].tocsr()

    out = []
    for group in others:
        t = [norm(r.text) for r in group]
        out.append(matrix(t, ngram_counts(t, hasher)))
    return matrix(texts, counts), out


def weights(rows: list[Row]) -> tuple[NDArray[np.int_], NDArray[np.float64]]:
    y = np.array([r.target for r in rows], dtype=np.int_)
    pool = np.array([_source_weight(r, CONFIG) for r in rows], dtype=np.float64)
    return y, _balanced(rows, y, pool)


def _words(rows: Sequence[Row]) -> list[str]:
    return [" ".join(re.findall(r"\w+", normalise(r.text)[:3000].lower())) for r in rows]


def _pooled(words: Matrix, scores: NDArray[np.float64]) -> NDArray[np.float64]:
    """Per text: highest, second-highest and lowest word score, summed positives (capped)."""
    out = np.zeros((words.shape[0], 4))
    for i in range(words.shape[0]):
        v = np.sort(scores[words.indices[words.indptr[i] : words.indptr[i + 1]]])[::-1]
        if v.size:
            out[i] = (v[0], v[1] if v.size > 1 else 0.0, min(np.clip(v, 0, None).sum(), 10), v[-1])
    return out


def maxpool(
    train: list[Row], others: Sequence[list[Row]], lexicon: list[str]
) -> tuple[Matrix, list[Matrix]]:
    """tf-idf plus max-pooled word scores from a unigram model (cross-fitted in 5 folds)."""
    x, xs = tfidf(train, others, lexicon, normalise)
    y, w = weights(train)
    vectorizer = CountVectorizer(binary=True, token_pattern=r"\S+", min_df=2)  # noqa: S106
    words = vectorizer.fit_transform(_words(train)).tocsr()

    def word_scores(rows: NDArray[np.int_]) -> NDArray[np.float64]:
        model = LogisticRegression(C=0.3, solver="liblinear", max_iter=1000)
        model.fit(words[rows], y[rows], sample_weight=w[rows])
        return np.asarray(model.coef_.ravel(), dtype=np.float64)

    pooled = np.zeros((len(train), 4))
    strata = [f"{r.source}:{r.target}" for r in train]
    for fit, held in StratifiedKFold(5, shuffle=True, random_state=0).split(pooled, strata):
        pooled[held] = _pooled(words[held], word_scores(fit))
    scores = word_scores(np.arange(len(train)))

    def joined(m: Matrix, p: NDArray[np.float64]) -> Matrix:
        return sparse.hstack([m, sparse.csr_matrix(0.3 * p)], format="csr")

    extra = [_pooled(vectorizer.transform(_words(o)).tocsr(), scores) for o in others]
    return joined(x, pooled), [joined(m, p) for m, p in zip(xs, extra, strict=True)]


def blocks(
    train: list[Row], others: Sequence[list[Row]], lexicon: list[str]
) -> tuple[Matrix, list[Matrix]]:
    """tf-idf with the word block scaled by 1.4 (a weaker penalty on word n-grams)."""
    x, xs = tfidf(train, others, lexicon, normalise)
    scale = np.ones(x.shape[1])
    scale[: CONFIG.word_features] = 1.4
    diag = sparse.diags(scale)
    return (x @ diag).tocsr(), [(m @ diag).tocsr() for m in xs]


VARIANTS: dict[str, Features] = {
    "baseline": lambda t, o, lex: tfidf(t, o, lex, normalise),
    "maxpool": maxpool,
    "blocks": blocks,
    "hashtags": lambda t, o, lex: tfidf(t, o, lex, hashtag_normalise),
}


def evaluate(name: str, rows: list[Row], lexicon: list[str], test: list[Row]) -> dict[str, float]:
    """Hold-out, leave-one-source-out and (reference) OLID test A ROC-AUC of one variant."""
    features = VARIANTS[name]
    toxic = [i for i, r in enumerate(rows) if r.label == TOXIC]
    held: set[int] = set()
    for source in HELD_SOURCES:
        index = [i for i in toxic if rows[i].source == source]
        _, picked = train_test_split(
            index, test_size=0.2, stratify=[rows[i].target for i in index], random_state=0
        )
        held |= set(picked)
    train = [rows[i] for i in toxic if i not in held]
    hold = [rows[i] for i in sorted(held)]
    x, (x_hold, x_test) = features(train, [hold, test], lexicon)
    y, w = weights(train)
    model = _fit_linear(x, y, w, CONFIG.c_toxic, 0)
    p_hold = model.decision_function(x_hold)
    y_hold = np.array([r.target for r in hold])
    out: dict[str, float] = {}
    for source in HELD_SOURCES:
        mine = np.array([r.source == source for r in hold])
        out[f"{source}_holdout"] = float(roc_auc_score(y_hold[mine], p_hold[mine]))
    everything = [rows[i] for i in toxic]
    for source in LEAVE_OUT:
        fit = [r for r in everything if r.source != source]
        left = [r for r in everything if r.source == source]
        xf, (xl,) = features(fit, [left], lexicon)
        yf, wf = weights(fit)
        scores = _fit_linear(xf, yf, wf, CONFIG.c_toxic, 0).decision_function(xl)
        out[f"without_{source}"] = float(roc_auc_score([r.target for r in left], scores))
    y_test = [r.target for r in test]
    out["olid_test_a_reference"] = float(roc_auc_score(y_test, model.decision_function(x_test)))
    return out


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=Path("../shared/data"))
    parser.add_argument("variants", nargs="*", default=["baseline"], choices=sorted(VARIANTS))
    args = parser.parse_args(argv)
    rows, _ = select_rows(args.data, [], CONFIG)
    test = list(read_olid_test(args.data))
    test_keys = {dedupe_key(r.text) for r in test}
    rows = [r for r in rows if dedupe_key(r.text) not in test_keys]
    lexicon = build_lexicon(*toxic_span_word_counts(args.data))
    for name in args.variants:
        result = evaluate(name, rows, lexicon, test)
        print(name, " ".join(f"{k} {v:.4f}" for k, v in result.items()), flush=True)


if __name__ == "__main__":
    main()
