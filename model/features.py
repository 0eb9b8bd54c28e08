"""Feature pipeline and training settings shared by training, scoring and explanations."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from sklearn.feature_extraction.text import HashingVectorizer, TfidfTransformer
from sklearn.pipeline import FeatureUnion, Pipeline

WORD_TOKEN_PATTERN = r"(?u)\b\w+\b"  # noqa: S105  # a regex, not a password (name has TOKEN)

# Relative weight of each source inside its head. Chosen on validation data (OLID train
# hold-out, per-source CV): sets whose label definition or domain differs from "toxic comment"
# (HatEval counts insults as not-hate, Stormfront is forum sentences, Davidson is 80% offensive
# slang) help a little at low weight and hurt at full weight. See docs/model.md.
DEFAULT_SOURCE_WEIGHTS: dict[str, float] = {
    "youtube": 1.0,
    "sms": 1.0,
    "instagram": 0.5,
    "comment_ham": 0.3,
    "olid": 1.0,
    "jigsaw": 1.0,
    "kaggle_insults": 0.3,
    "stormfront": 0.3,
    "davidson": 0.1,
    "tweeteval_hate": 0.1,
    "toxic_spans": 0.0,
}
# One moderator decision counts as this many public rows, so a handful visibly moves scores.
MODERATOR_WEIGHT = 30.0


@dataclass(frozen=True)
class TrainConfig:
    """Everything that determines a trained model besides the data."""

    word_features: int = 2**18
    char_features: int = 2**18
    word_ngrams: tuple[int, int] = (1, 2)
    char_ngrams: tuple[int, int] = (2, 5)
    c_spam: float = 4.0
    c_toxic: float = 2.0
    calibration_folds: int = 3
    random_state: int = 20251127
    moderator_weight: float = MODERATOR_WEIGHT
    source_weights: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_SOURCE_WEIGHTS))
    max_rows_per_source: int | None = None  # for quick tests; None = use everything

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready copy for the artifact metadata."""
        return asdict(self)


def word_vectorizer(config: TrainConfig) -> HashingVectorizer:
    """Hash lower-cased word n-grams; stateless, so the artifact stores no vocabulary."""
    return HashingVectorizer(
        ngram_range=config.word_ngrams,
        n_features=config.word_features,
        token_pattern=WORD_TOKEN_PATTERN,
        alternate_sign=False,
        norm=None,
    )


def char_vectorizer(config: TrainConfig) -> HashingVectorizer:
    """Hash character n-grams inside word boundaries; robust to obfuscation like 'id iot'."""
    return HashingVectorizer(
        analyzer="char_wb",
        ngram_range=config.char_ngrams,
        n_features=config.char_features,
        alternate_sign=False,
        norm=None,
    )


def build_features(config: TrainConfig) -> Pipeline:
    """Return the unfitted text → tf-idf feature pipeline (word block first, then char block)."""
    return Pipeline(
        [
            (
                "ngrams",
                FeatureUnion(
                    [("word", word_vectorizer(config)), ("char", char_vectorizer(config))]
                ),
            ),
            ("tfidf", TfidfTransformer(sublinear_tf=True)),
        ]
    )
