"""Toxic-lexicon features derived from the toxic-spans annotations."""

from __future__ import annotations

import re

import numpy as np
from scipy import sparse

# Toxic-lexicon features: the toxic-spans set marks *which words* raters found toxic. Its posts
# are all toxic (no negatives), so instead of training on whole posts (which teaches news
# topics) we take the words raters marked and count them in every comment.
LEXICON_MIN_MARKED = 3  # a word must be marked toxic at least this often…
LEXICON_MIN_SHARE = 0.5  # …and in at least this share of its occurrences in the set
LEXICON_CAP = 3  # counts above this add nothing
LEXICON_COLUMNS = 2  # capped count / cap, any-hit indicator
_LEXICON_WORD_RE = re.compile(r"\w+")


def lexicon_words(text: str, lexicon: frozenset[str]) -> list[str]:
    """Return the lexicon words in a (normalised) text, in order, lower-cased."""
    return [w for w in _LEXICON_WORD_RE.findall(text.lower()) if w in lexicon]


def lexicon_row(text: str, lexicon: frozenset[str]) -> tuple[float, float]:
    """Return the two lexicon feature values of one text."""
    hits = len(lexicon_words(text, lexicon))
    return (min(hits, LEXICON_CAP) / LEXICON_CAP, float(hits > 0))


def lexicon_matrix(texts: list[str], lexicon: frozenset[str]) -> sparse.csr_matrix:
    """Return the lexicon features of many texts as a sparse matrix."""
    values = np.array([lexicon_row(t, lexicon) for t in texts], dtype=np.float64)
    return sparse.csr_matrix(values.reshape(len(texts), LEXICON_COLUMNS))


def build_lexicon(marked: dict[str, int], seen: dict[str, int]) -> list[str]:
    """Return words marked toxic often enough, relative to how often they occur."""
    return sorted(
        w
        for w, n in marked.items()
        if n >= LEXICON_MIN_MARKED and n / max(seen.get(w, n), 1) >= LEXICON_MIN_SHARE
    )
