"""Score comments with a loaded artifact: calibrated spam/toxic probabilities and reasons."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from model.errors import ArtifactError
from model.features import (
    CURRENCY_TOKEN,
    MAX_NUMBER_LENGTH,
    NUMBER_TOKEN_RE,
    NgramHasher,
    Occurrences,
    distinct_counts,
)
from model.lexicon import (
    LEXICON_COLUMNS,
    lexicon_row,
    lexicon_values_from_tokens,
    lexicon_words,
)
from model.shape import SHAPE_COLUMNS, shape_row, shape_values
from model.text import normalise, text_signals

LABELS = ("spam", "toxic")
# Logit units: a word must raise the odds by at least 28 % to be named. Smaller pushes are
# what common words ("the", "and") carry in any comment; naming them explains nothing.
_MIN_REASON_WEIGHT = 0.25
_MAX_NGRAM_REASONS = 3
EXPLAIN_FROM = 0.2  # explain a label from here, or from its lower hold threshold
_MIN_SHAPE_REASON_WEIGHT = 0.5  # the shape columns move most scores a little; report big pushes
_BATCH_CHUNK = 4096
_PLACEHOLDER_RE = re.compile(r"xurlx|xuserx|xdomx")
_EDGE_PUNCT_RE = re.compile(r"^\W+|\W+$")
_PATTERN_CODES = ("number", "currency")  # reason codes of the pattern tokens


@dataclass(frozen=True)
class Reason:
    """One human-readable cause of a score (an n-gram or a text signal)."""

    code: str
    label: str  # "spam", "toxic" or "signal"
    message: str
    weight: float

    def to_dict(self) -> dict[str, object]:
        """Return a JSON-ready dict."""
        return asdict(self)


@dataclass(frozen=True)
class Thresholds:
    """Decision cut-offs chosen on validation data.

    Approve only if spam < spam_hold and toxic < toxic_hold; reject as spam if
    spam >= spam_reject; otherwise hold for a moderator.
    """

    spam_reject: float
    spam_hold: float
    toxic_hold: float

    def to_dict(self) -> dict[str, float]:
        """Return a JSON-ready dict."""
        return asdict(self)


@dataclass(frozen=True)
class Score:
    """Calibrated probabilities for one comment, with the reasons behind them."""

    spam: float
    toxic: float
    categories: dict[str, float]
    reasons: tuple[Reason, ...]
    model_version: str

    def to_dict(self) -> dict[str, object]:
        """Return a JSON-ready dict."""
        return {
            "spam": self.spam,
            "toxic": self.toxic,
            "categories": dict(self.categories),
            "reasons": [r.to_dict() for r in self.reasons],
            "model_version": self.model_version,
        }


def tfidf_values(
    doc: NDArray[np.int64],
    col: NDArray[np.int64],
    counts: NDArray[np.int64],
    idf: NDArray[np.float64],
    n_docs: int,
) -> NDArray[np.float64]:
    """Return (1 + ln count) * idf per distinct n-gram, L2-normalised per text."""
    values = (1.0 + np.log(counts)) * idf[col]
    norm = np.sqrt(np.bincount(doc, values * values, minlength=n_docs))
    return np.asarray(values / np.maximum(norm, 1e-12)[doc], dtype=np.float64)


class LinearScorer:
    """Linear label heads over hashed tf-idf n-grams plus lexicon and shape columns, with
    Platt scaling.

    Holds only numpy arrays (from the artifact), so scoring needs neither scikit-learn nor scipy.
    """

    def __init__(
        self, bundle: dict[str, Any], hasher: NgramHasher, labels: Sequence[str] = LABELS
    ) -> None:
        self.hasher = hasher
        self.labels = tuple(labels)
        self.idf = np.asarray(bundle["idf"], dtype=np.float64)
        self.lexicon = frozenset(str(w) for w in bundle["lexicon"])
        coef = [np.asarray(bundle[f"{label}_coef"], dtype=np.float64) for label in self.labels]
        self.coef = np.column_stack(coef)  # (width + lexicon + shape columns, labels)
        self.intercept = np.array([float(bundle[f"{lb}_intercept"][0]) for lb in self.labels])
        cal = np.array([np.asarray(bundle[f"{lb}_calibration"], float) for lb in self.labels])
        self.cal_a, self.cal_b = cal[:, 0], cal[:, 1]
        if (
            self.idf.shape != (hasher.width,)
            or self.coef.shape[0] != hasher.width + LEXICON_COLUMNS + SHAPE_COLUMNS
        ):
            raise ValueError("coefficient or idf width does not match the n-gram hasher")
        # Per-label coefficient, contiguous, so a batch gathers each once per n-gram.
        self._ngram_coef = [
            np.ascontiguousarray(self.coef[: hasher.width, j]) for j in range(len(self.labels))
        ]

    def margins(self, norms: Sequence[str]) -> NDArray[np.float64]:
        """Return ``(n, labels)`` linear margins of normalised texts."""
        occ = self.hasher.occurrences(norms)
        n = len(norms)
        doc, col, counts = distinct_counts(occ, n, self.hasher.width)
        values = tfidf_values(doc, col, counts, self.idf, n)
        lex_values = lexicon_values_from_tokens(occ.tokens, occ.token_doc, n, self.lexicon)
        out = np.hstack([lex_values, shape_values(norms)]) @ self.coef[self.hasher.width :]
        for j in range(len(self.labels)):
            out[:, j] += np.bincount(doc, values * self._ngram_coef[j][col], minlength=n)
        return np.asarray(out + self.intercept, dtype=np.float64)

    def calibrate(self, margins: NDArray[np.float64]) -> NDArray[np.float64]:
        """Map margins to calibrated probabilities (Platt scaling per label)."""
        return np.asarray(1.0 / (1.0 + np.exp(-(self.cal_a * margins + self.cal_b))), np.float64)

    def probabilities(self, norms: Sequence[str]) -> NDArray[np.float64]:
        """Return ``(n, labels)`` calibrated probabilities of normalised texts."""
        return self.calibrate(self.margins(norms))


class Classifier:
    """A verified, loaded model version that scores comments."""

    def __init__(self, bundle: dict[str, Any], metadata: dict[str, Any]) -> None:
        self.metadata = metadata
        self.version: str = metadata["version"]
        try:
            self.thresholds = Thresholds(**metadata["thresholds"])
            hasher = NgramHasher.from_config(metadata["config"])
            self._scorer = LinearScorer(bundle, hasher)
        except (KeyError, TypeError, ValueError, IndexError) as exc:
            raise ArtifactError(f"artifact {self.version}: malformed model bundle ({exc})") from exc

    def score_batch(self, texts: Sequence[str]) -> list[tuple[float, float]]:
        """Return ``(spam, toxic)`` probabilities per text (vectorised fast path)."""
        if not texts:
            return []
        norms = [normalise(t) for t in texts]
        # Chunks small enough for the 32-bit sort keys of distinct_counts.
        chunk = _BATCH_CHUNK
        probs = np.vstack(
            [self._scorer.probabilities(norms[i : i + chunk]) for i in range(0, len(norms), chunk)]
        )
        return [(float(s), float(t)) for s, t in probs.tolist()]

    def reasons_from(self, spam_hold: float, toxic_hold: float) -> tuple[float, float]:
        """Return per-label probabilities from which ``score`` explains a label: its hold
        threshold (so every comment held on that label carries its n-grams), capped at
        ``EXPLAIN_FROM``."""
        return (min(EXPLAIN_FROM, spam_hold), min(EXPLAIN_FROM, toxic_hold))

    def score(self, text: str, reasons_from: tuple[float, float] | None = None) -> Score:
        """Score one comment: both labels, top n-gram reasons and text-signal reason codes.

        A label's n-gram reasons are computed when its probability reaches ``reasons_from``
        (per label; default: the artifact's hold thresholds, at most ``EXPLAIN_FROM``).
        """
        if reasons_from is None:
            t = self.thresholds
            reasons_from = self.reasons_from(t.spam_hold, t.toxic_hold)
        scorer = self._scorer
        norm = normalise(text)
        occ = scorer.hasher.occurrences([norm], with_labels=True)
        uniq, inverse, counts = np.unique(occ.col, return_inverse=True, return_counts=True)
        distinct = tfidf_values(np.zeros_like(uniq), uniq, counts, scorer.idf, 1)
        values = distinct[inverse] / counts[inverse]  # each occurrence's share of its n-gram
        lex_values = np.array(lexicon_row(norm, scorer.lexicon))
        lex_words = lexicon_words(norm, scorer.lexicon)
        shape = shape_row(norm)
        width = scorer.hasher.width
        lex_coef = scorer.coef[width : width + LEXICON_COLUMNS]
        shape_coef = scorer.coef[width + LEXICON_COLUMNS :]
        margins = values @ scorer.coef[occ.col] + lex_values @ lex_coef + shape @ shape_coef
        probs = scorer.calibrate(margins + scorer.intercept)
        reasons: list[Reason] = []
        for j, label in enumerate(scorer.labels):
            if probs[j] >= reasons_from[j]:
                contrib = values * scorer.coef[occ.col, j]
                lex_contrib = float(lex_values @ lex_coef[:, j])
                found = _ngram_reasons(label, contrib, occ, lex_words, lex_contrib)
                shape_contrib = float(np.dot(shape, shape_coef[:, j]))
                if shape_contrib >= _MIN_SHAPE_REASON_WEIGHT:
                    found.append(_shape_reason(label, shape, shape_contrib))
                if not found:  # held on a score no single word explains: say so
                    found.append(
                        Reason(
                            "diffuse",
                            label,
                            f"no single word stands out: many small signals add up to the "
                            f"{label} score",
                            0.0,
                        )
                    )
                reasons.extend(found)
        reasons.extend(_signal_reasons(text))
        return Score(
            spam=float(probs[0]),
            toxic=float(probs[1]),
            categories={},
            reasons=tuple(reasons),
            model_version=self.version,
        )


def _ngram_reasons(
    label: str,
    contrib: NDArray[np.float64],
    occ: Occurrences,
    lex_words: list[str],
    lex_contrib: float,
) -> list[Reason]:
    """Credit each n-gram's contribution to the word(s) it came from; return the top ones."""
    per_origin = np.bincount(occ.origin, contrib, minlength=len(occ.labels))
    credit: dict[str, float] = {}
    for word in lex_words:  # the lexicon columns fire because of these words
        credit[word] = credit.get(word, 0.0) + lex_contrib / len(lex_words)
    for gram, weight in zip(occ.labels, per_origin.tolist(), strict=True):
        if not (gram[:1].isalnum() and gram[-1:].isalnum()):  # most are plain: skip the regex
            gram = _EDGE_PUNCT_RE.sub("", gram)  # character n-grams come from whole words
        if gram:
            credit[gram] = credit.get(gram, 0.0) + weight
    ranked = sorted(credit.items(), key=lambda kv: kv[1], reverse=True)
    reasons: list[Reason] = []
    for gram, weight in ranked:
        if weight < _MIN_REASON_WEIGHT or len(reasons) >= _MAX_NGRAM_REASONS:
            break
        if gram.startswith("xdomx"):
            continue  # link domains are reported as a signal reason instead
        if _PLACEHOLDER_RE.search(gram):
            kind = "link" if "xurlx" in gram else "mention"
            if all(r.code != kind for r in reasons):  # "xurlx" and "xurlx word" alike
                reasons.append(Reason(kind, label, f"contains a {kind}", round(weight, 3)))
            continue
        if pattern := _pattern_reason(gram, label, weight):
            if all(r.code not in _PATTERN_CODES for r in reasons):  # one, the strongest
                reasons.append(pattern)
            continue
        reasons.append(
            Reason("ngram", label, f'"{gram}" raises the {label} score', round(weight, 3))
        )
    return reasons


def _pattern_reason(gram: str, label: str, weight: float) -> Reason | None:
    """Describe number-length and currency pattern tokens (one, or a pair of them), or return
    None for any other n-gram."""
    parts: list[str] = []
    code = "currency"
    for token in gram.split(" "):
        number = NUMBER_TOKEN_RE.match(token)
        if number:
            digits = int(number.group(1))
            more = " or more" if digits >= MAX_NUMBER_LENGTH else ""  # lengths are capped
            part, code = f"a number of {digits}{more} digits", "number"
        elif token == CURRENCY_TOKEN:
            part = "a currency sign"
        else:
            return None
        if part not in parts:  # "xcurx xcurx" is one currency sign in the message
            parts.append(part)
    return Reason(code, label, "contains " + " and ".join(parts), round(weight, 3))


def _shape_reason(label: str, shape: tuple[float, ...], weight: float) -> Reason:
    """Describe the text shape (length, links, handles) that raised a score."""
    links, short, long, mentions = shape
    parts = ["a short comment" if short else "a long comment" if long else "a comment"]
    if links:
        parts.append("with links" if links > 1 / 3 else "with a link")
    if mentions:
        parts.append("naming accounts" if mentions > 1 / 3 else "naming an account")
    message = f"{' '.join(parts)}: this shape raises the {label} score"
    return Reason("text_shape", label, message, round(weight, 3))


def _signal_reasons(text: str) -> list[Reason]:
    """Return reason codes for links, link domains, shouting and repeated characters."""
    signals = text_signals(text)
    reasons: list[Reason] = []
    if signals.links >= 2:
        reasons.append(
            Reason("many_links", "signal", f"contains {signals.links} links", float(signals.links))
        )
    if signals.domains:
        reasons.append(
            Reason(
                "link_domains",
                "signal",
                "links to " + ", ".join(signals.domains[:5]),
                float(len(signals.domains)),
            )
        )
    if signals.letters >= 12 and signals.shouting_ratio >= 0.7:
        reasons.append(
            Reason(
                "shouting",
                "signal",
                f"{signals.shouting_ratio:.0%} of letters are capitals",
                round(signals.shouting_ratio, 3),
            )
        )
    if signals.repeated_runs:
        reasons.append(
            Reason(
                "repeated_characters",
                "signal",
                f"{signals.repeated_runs} runs of 4+ repeated characters",
                float(signals.repeated_runs),
            )
        )
    return reasons
