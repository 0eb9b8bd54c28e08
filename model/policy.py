"""Decision policy: turn model scores and site signals into publish / hold / reject."""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Literal, Protocol

Status = Literal["approved", "pending", "rejected"]
Queue = Literal["approved", "pending", "rejected", "spam"]


class ThresholdsLike(Protocol):
    @property
    def spam_reject(self) -> float: ...
    @property
    def spam_hold(self) -> float: ...
    @property
    def toxic_hold(self) -> float: ...


class ScoreLike(Protocol):
    @property
    def spam(self) -> float: ...
    @property
    def toxic(self) -> float: ...


# Form-token states that hold a comment for a moderator, and their reason codes. An expired
# token (a reader who took days) is harmless.
FORM_TOKEN_HOLDS = {
    "missing": "form_token_missing",
    "invalid": "form_token_invalid",
    "reused": "form_token_reused",
}


@dataclass(frozen=True)
class Signals:
    """Site signals about one submission, gathered outside the model."""

    honeypot_filled: bool = False
    submit_seconds: float | None = None  # time from form render to submit, when signed
    # What the signed form token showed: valid | expired | invalid | missing, or "" when it is
    # no signal (a JSON client, or a comment stored before the token was recorded).
    form_token: str = ""
    min_submit_seconds: float = 3.0
    repeats: int = 0  # other (author, post) pairs that sent the same text in the repeat window
    repeat_hold_after: int = 0  # hold from this many repeats on; 0 disables
    author_approved: int = 0
    author_rejected: int = 0
    auto_approve_after: int = 0  # 0 disables trusted-author auto-approval


@dataclass(frozen=True)
class Decision:
    """What happens to a comment, and why (reason codes shown to moderators)."""

    queue: Queue
    label: str  # clean | spam | toxic | signal | error (the queue filter and metrics use these)
    reasons: tuple[str, ...] = field(default_factory=tuple)

    @property
    def status(self) -> Status:
        """Return the public status (spam is shown to readers as rejected)."""
        return "rejected" if self.queue in ("rejected", "spam") else self.queue  # type: ignore[return-value]


def decide(
    score: ScoreLike, thresholds: ThresholdsLike, signals: Signals | None = None
) -> Decision:
    """Decide: clearly clean publishes, clear spam is rejected, anything else waits for a human."""
    signals = signals or Signals()
    codes: list[str] = []
    if signals.honeypot_filled:
        # Only bots fill a field humans cannot see; reject outright.
        return Decision("spam", "spam", ("honeypot_filled",))
    too_fast = (
        signals.submit_seconds is not None and signals.submit_seconds < signals.min_submit_seconds
    )
    if too_fast:
        codes.append("submitted_too_fast")
    token_hold = FORM_TOKEN_HOLDS.get(signals.form_token)
    if token_hold:
        # A form post without our token, or with a forged one, skipped the timing check.
        codes.append(token_hold)
    if signals.repeat_hold_after > 0 and signals.repeats >= signals.repeat_hold_after:
        # The same text posted again and again, from any address: a copy-and-paste campaign.
        codes.append("repeated_text")

    if not all(math.isfinite(v) for v in (score.spam, score.toxic)):
        # Every comparison with NaN is False, which would publish: hold it for a human.
        return held_for_error("score_not_finite")
    if score.spam >= thresholds.spam_reject:
        return Decision("spam", "spam", ("spam_score_high", *codes))
    toxic = score.toxic >= thresholds.toxic_hold
    spammy = score.spam >= thresholds.spam_hold
    if toxic:
        codes.insert(0, "toxic_score")
    if spammy:
        codes.insert(0, "spam_score_uncertain")
    trusted = (
        signals.auto_approve_after > 0
        and signals.author_approved >= signals.auto_approve_after
        and signals.author_rejected == 0
    )
    if trusted and not toxic and not token_hold:
        # WordPress-style: an author with enough approved comments and none rejected skips
        # the hold for uncertain spam or timing signals. Never for toxicity or clear spam, nor
        # for a missing or forged form token: the address is unverified, and a post that
        # bypassed our form is the kind of impersonation the token exists to catch.
        return Decision("approved", "clean", ("trusted_author", *codes))
    if toxic or spammy or codes:
        if toxic and spammy:
            # Both held it: the main label names the score further past its threshold (in
            # log-odds), so "you are an idiot" at toxic 0.95 and spam 0.031 (hold 0.029) is a
            # toxic comment, not spam. labels (decision_labels) carries both either way.
            label = (
                "toxic"
                if _past(score.toxic, thresholds.toxic_hold)
                >= _past(score.spam, thresholds.spam_hold)
                else "spam"
            )
        else:
            label = "toxic" if toxic else "spam" if spammy else "signal"
        return Decision("pending", label, tuple(codes))
    return Decision("approved", "clean", ())


# Reason codes that name the score behind a hold or rejection, and the label each one means.
_SCORE_CODE_LABELS = {
    "spam_score_high": "spam",
    "spam_score_uncertain": "spam",
    "honeypot_filled": "spam",
    "toxic_score": "toxic",
}


def decision_labels(label: str, reasons: Iterable[str]) -> tuple[str, ...]:
    """Return every label a decision carries: its main label, then each other score behind it.

    A comment held both as uncertain spam and as toxic has one main label (the score further
    past its threshold); a moderator filtering the queue by the other must still find it.
    """
    labels = [label] if label else []
    for code in reasons:
        extra = _SCORE_CODE_LABELS.get(code)
        if extra is not None and extra not in labels:
            labels.append(extra)
    return tuple(labels)


def _past(score: float, threshold: float) -> float:
    """Return how far a score is past its threshold, in log-odds."""
    return _logit(score) - _logit(threshold)


def _logit(p: float) -> float:
    p = min(max(p, 1e-9), 1 - 1e-9)
    return math.log(p / (1 - p))


def held_for_error(code: str) -> Decision:
    """Return the decision for a comment whose scoring failed: hold it, never publish."""
    return Decision("pending", "error", (code,))
