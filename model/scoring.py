"""Score comments with a loaded artifact: calibrated spam/toxic probabilities and reasons."""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray
from scipy import sparse

from model.errors import ArtifactError
from model.lexicon import LEXICON_COLUMNS, lexicon_matrix, lexicon_row, lexicon_words
from model.text import normalise, text_signals

LABELS = ("spam", "toxic")
_MIN_REASON_WEIGHT = 0.05  # logit units; smaller pushes are noise, not explanations
_MAX_NGRAM_REASONS = 3
_PLACEHOLDER_RE = re.compile(r"xurlx|xuserx|xdomx")
_EDGE_PUNCT_RE = re.compile(r"^\W+|\W+$")


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


class _Head:
    """One linear label head plus its Platt calibration, flattened to numpy arrays."""

    def __init__(self, linear: Any, calibrator: Any) -> None:
        self.coef: NDArray[np.float64] = np.asarray(linear.coef_, dtype=np.float64).ravel()
        self.intercept = float(np.asarray(linear.intercept_).ravel()[0])
        self.cal_a = float(np.asarray(calibrator.coef_).ravel()[0])
        self.cal_b = float(np.asarray(calibrator.intercept_).ravel()[0])

    def probability(self, margin: NDArray[np.float64]) -> NDArray[np.float64]:
        z = self.cal_a * margin + self.cal_b
        return np.asarray(1.0 / (1.0 + np.exp(-z)), dtype=np.float64)


class Classifier:
    """A verified, loaded model version that scores comments."""

    def __init__(self, bundle: dict[str, Any], metadata: dict[str, Any]) -> None:
        self.metadata = metadata
        self.version: str = metadata["version"]
        try:
            self.thresholds = Thresholds(**metadata["thresholds"])
            self._features = bundle["features"]
            ngrams = self._features.named_steps["ngrams"]
            blocks = dict(ngrams.transformer_list)
            self._word = blocks["word"]
            self._char = blocks["char"]
            self._idf = np.asarray(self._features.named_steps["tfidf"].idf_, dtype=np.float64)
            self._lexicon = frozenset(str(w) for w in bundle["lexicon"])
            self._heads = {
                label: _Head(bundle[label], bundle[f"{label}_calibrator"]) for label in LABELS
            }
        except (KeyError, TypeError, AttributeError) as exc:
            raise ArtifactError(f"artifact {self.version}: malformed model bundle ({exc})") from exc
        self._n_word = int(self._word.n_features)
        self._width = self._n_word + int(self._char.n_features)
        for label, head in self._heads.items():
            if (
                head.coef.shape[0] != self._width + LEXICON_COLUMNS
                or self._idf.shape[0] != self._width
            ):
                raise ArtifactError(f"artifact {self.version}: {label} head width mismatch")
        self._weights = np.column_stack([self._heads[label].coef for label in LABELS])
        self._word_analyzer = self._word.build_analyzer()
        self._char_analyzer = self._char.build_analyzer()
        self._word_hasher = self._word._get_hasher()
        self._char_hasher = self._char._get_hasher()

    def score_batch(self, texts: Sequence[str]) -> list[tuple[float, float]]:
        """Return ``(spam, toxic)`` probabilities per text (vectorised fast path)."""
        if not texts:
            return []
        norms = [normalise(t) for t in texts]
        x = sparse.hstack(
            [self._features.transform(norms), lexicon_matrix(norms, self._lexicon)], format="csr"
        )
        margins = np.asarray(x @ self._weights)
        spam = self._heads["spam"].probability(margins[:, 0] + self._heads["spam"].intercept)
        toxic = self._heads["toxic"].probability(margins[:, 1] + self._heads["toxic"].intercept)
        return [(float(s), float(t)) for s, t in zip(spam, toxic, strict=True)]

    def score(self, text: str) -> Score:
        """Score one comment: both labels, top n-gram reasons and text-signal reason codes."""
        norm = normalise(text)
        word_grams = self._word_analyzer(norm)
        char_grams = self._char_analyzer(norm)
        word_idx = self._hash(self._word_hasher, word_grams)
        char_idx = self._hash(self._char_hasher, char_grams) + self._n_word
        all_idx = np.concatenate([word_idx, char_idx])
        if all_idx.size:
            uniq, inverse, counts = np.unique(all_idx, return_inverse=True, return_counts=True)
            values = (1.0 + np.log(counts)) * self._idf[uniq]
            values /= math.sqrt(float(values @ values))
        else:
            uniq = inverse = np.zeros(0, dtype=np.int64)
            values = np.zeros(0)
        lex_values = np.array(lexicon_row(norm, self._lexicon))
        lex_words = lexicon_words(norm, self._lexicon)
        probs: dict[str, float] = {}
        reasons: list[Reason] = []
        for label, head in self._heads.items():
            contrib = values * head.coef[uniq]
            lex_contrib = float(lex_values @ head.coef[self._width :])
            margin = float(contrib.sum()) + lex_contrib + head.intercept
            probs[label] = float(head.probability(np.array([margin]))[0])
            if probs[label] >= 0.2:
                reasons.extend(
                    self._ngram_reasons(
                        label, contrib, inverse, counts, word_grams, norm, lex_words, lex_contrib
                    )
                )
        reasons.extend(_signal_reasons(text))
        return Score(
            spam=probs["spam"],
            toxic=probs["toxic"],
            categories={},
            reasons=tuple(reasons),
            model_version=self.version,
        )

    @staticmethod
    def _hash(hasher: Any, grams: list[str]) -> NDArray[np.int64]:
        if not grams:
            return np.zeros(0, dtype=np.int64)
        return np.asarray(hasher.transform([[g] for g in grams]).indices, dtype=np.int64)

    def _ngram_reasons(
        self,
        label: str,
        contrib: NDArray[np.float64],
        inverse: NDArray[np.int64],
        occurrences: NDArray[np.int64],
        word_grams: list[str],
        norm: str,
        lex_words: list[str],
        lex_contrib: float,
    ) -> list[Reason]:
        """Credit each feature's contribution to the words it came from; return the top ones."""
        per_occurrence = contrib / np.maximum(occurrences, 1)
        n_word = len(word_grams)
        credit: dict[str, float] = {}
        for word in lex_words:  # the lexicon columns fire because of these words
            credit[word] = credit.get(word, 0.0) + lex_contrib / len(lex_words)
        for gram, pos in zip(word_grams, inverse[:n_word], strict=True):
            credit[gram] = credit.get(gram, 0.0) + float(per_occurrence[pos])
        # Character n-grams come word by word (char_wb), in text order; re-derive per word.
        offset = n_word
        for raw_word in norm.lower().split():
            grams = self._char_analyzer(raw_word)
            share = float(per_occurrence[inverse[offset : offset + len(grams)]].sum())
            offset += len(grams)
            word = _EDGE_PUNCT_RE.sub("", raw_word)
            if word:
                credit[word] = credit.get(word, 0.0) + share
        ranked = sorted(credit.items(), key=lambda kv: kv[1], reverse=True)
        reasons: list[Reason] = []
        for gram, weight in ranked:
            if weight < _MIN_REASON_WEIGHT or len(reasons) >= _MAX_NGRAM_REASONS:
                break
            if gram.startswith("xdomx"):
                continue  # link domains are reported as a signal reason instead
            if _PLACEHOLDER_RE.search(gram):
                reasons.append(
                    Reason(
                        "link" if "xurlx" in gram else "mention",
                        label,
                        f"contains a {'link' if 'xurlx' in gram else 'mention'}",
                        round(weight, 3),
                    )
                )
                continue
            reasons.append(
                Reason("ngram", label, f'"{gram}" raises the {label} score', round(weight, 3))
            )
        return reasons


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
