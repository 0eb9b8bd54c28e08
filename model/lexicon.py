"""Toxic-lexicon features derived from the toxic-spans annotations."""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np
from numpy.typing import NDArray

from model.features import MAX_CHARS

# Toxic-lexicon features: the toxic-spans set marks *which words* raters found toxic. Its posts
# are all toxic (no negatives), so instead of training on whole posts (which teaches news
# topics) we take the words raters marked and count them in every comment.
LEXICON_MIN_MARKED = 3  # a word must be marked toxic at least this often…
LEXICON_MIN_SHARE = 0.5  # …and in at least this share of its occurrences in the set
LEXICON_CAP = 3  # counts above this add nothing
LEXICON_COLUMNS = 2  # capped count / cap, any-hit indicator
_LEXICON_WORD_RE = re.compile(r"\w+")


def lexicon_words(text: str, lexicon: frozenset[str]) -> list[str]:
    """Return the lexicon words in a (normalised) text, in order, lower-cased.

    Like the n-grams, only the first MAX_CHARS characters count (the batch path counts the
    hasher's tokens, so all paths must see the same span)."""
    return [w for w in _LEXICON_WORD_RE.findall(text[:MAX_CHARS].lower()) if w in lexicon]


def lexicon_row(text: str, lexicon: frozenset[str]) -> tuple[float, float]:
    """Return the two lexicon feature values of one text."""
    hits = len(lexicon_words(text, lexicon))
    return (min(hits, LEXICON_CAP) / LEXICON_CAP, float(hits > 0))


def lexicon_values(texts: Sequence[str], lexicon: frozenset[str]) -> NDArray[np.float64]:
    """Return the lexicon features of many texts as a dense ``(n, LEXICON_COLUMNS)`` array."""
    values = np.array([lexicon_row(t, lexicon) for t in texts], dtype=np.float64)
    return values.reshape(len(texts), LEXICON_COLUMNS)


def lexicon_values_from_tokens(
    tokens: Sequence[str], token_doc: NDArray[np.int64], n_docs: int, lexicon: frozenset[str]
) -> NDArray[np.float64]:
    """Return ``lexicon_values`` from already-split lower-cased tokens (the batch fast path)."""
    hit = np.fromiter((t in lexicon for t in tokens), dtype=bool, count=len(tokens))
    hits = np.bincount(token_doc[hit], minlength=n_docs).astype(np.float64)
    return np.column_stack([np.minimum(hits, LEXICON_CAP) / LEXICON_CAP, hits > 0])


def build_lexicon(marked: dict[str, int], seen: dict[str, int]) -> list[str]:
    """Return words marked toxic often enough, relative to how often they occur."""
    return sorted(
        w
        for w, n in marked.items()
        if n >= LEXICON_MIN_MARKED and n / max(seen.get(w, n), 1) >= LEXICON_MIN_SHARE
    )
