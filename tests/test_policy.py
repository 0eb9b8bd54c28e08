"""The decision policy: publish only the clearly clean, reject only clear spam, hold the rest."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import pytest

from model.policy import Signals, decide, held_for_error


@dataclass(frozen=True)
class FakeThresholds:
    spam_reject: float = 0.95
    spam_hold: float = 0.3
    toxic_hold: float = 0.4


@dataclass(frozen=True)
class S:
    spam: float
    toxic: float
    reasons: tuple[object, ...] = field(default_factory=tuple)


T = FakeThresholds()


def test_clean_comment_is_published() -> None:
    decision = decide(S(0.01, 0.02), T)
    assert decision.queue == "approved" and decision.status == "approved"


def test_clear_spam_is_rejected_as_spam() -> None:
    decision = decide(S(0.99, 0.01), T)
    assert decision.queue == "spam" and decision.status == "rejected"
    assert "spam_score_high" in decision.reasons


def test_uncertain_spam_is_held() -> None:
    decision = decide(S(0.5, 0.01), T)
    assert decision.queue == "pending" and decision.label == "spam"


def test_toxic_is_held_for_a_moderator_not_rejected() -> None:
    decision = decide(S(0.01, 0.9), T)
    assert decision.queue == "pending" and decision.label == "toxic"
    assert "toxic_score" in decision.reasons


def test_honeypot_rejects_even_clean_text() -> None:
    decision = decide(S(0.0, 0.0), T, Signals(honeypot_filled=True))
    assert decision.queue == "spam" and decision.reasons == ("honeypot_filled",)


def test_submitting_too_fast_holds_clean_text() -> None:
    decision = decide(S(0.0, 0.0), T, Signals(submit_seconds=0.5, min_submit_seconds=3))
    assert decision.queue == "pending" and "submitted_too_fast" in decision.reasons
    assert decide(S(0.0, 0.0), T, Signals(submit_seconds=30)).queue == "approved"


def test_failed_scoring_never_publishes() -> None:
    decision = held_for_error("scoring_failed")
    assert decision.queue == "pending" and decision.reasons == ("scoring_failed",)


def test_a_score_that_is_not_a_number_is_held_never_published() -> None:
    for spam, toxic in ((float("nan"), 0.01), (0.01, float("nan")), (float("inf"), 0.0)):
        decision = decide(S(spam, toxic), T)
        assert decision.queue == "pending" and decision.reasons == ("score_not_finite",)


def test_a_form_post_without_a_valid_token_is_held_with_its_reason() -> None:
    for state, code in (("missing", "form_token_missing"), ("invalid", "form_token_invalid")):
        decision = decide(S(0.0, 0.0), T, Signals(form_token=state))
        assert decision.queue == "pending" and decision.label == "signal"
        assert decision.reasons == (code,)
    # A reader who took days (expired), a valid token and no signal at all (JSON) publish.
    for state in ("expired", "valid", ""):
        assert decide(S(0.0, 0.0), T, Signals(form_token=state, submit_seconds=None)).queue == (
            "approved"
        )


def test_a_trusted_author_skips_uncertain_spam_and_timing_holds_but_not_the_rest() -> None:
    trusted = {"author_approved": 3, "auto_approve_after": 3}
    relaxed = decide(S(0.5, 0.0), T, Signals(submit_seconds=0.5, **trusted))
    assert relaxed.queue == "approved"
    assert relaxed.reasons == ("trusted_author", "spam_score_uncertain", "submitted_too_fast")
    # A forged or missing form token, toxicity and clear spam are still held or rejected.
    for state in ("missing", "invalid"):
        assert decide(S(0.0, 0.0), T, Signals(form_token=state, **trusted)).queue == "pending"
    assert decide(S(0.0, 0.9), T, Signals(**trusted)).queue == "pending"
    assert decide(S(0.99, 0.0), T, Signals(**trusted)).queue == "spam"
    # One rejected comment and the author is no longer trusted.
    assert decide(S(0.5, 0.0), T, Signals(author_rejected=1, **trusted)).queue == "pending"


def test_text_posted_again_and_again_is_held_from_the_set_number_of_repeats() -> None:
    assert decide(S(0.0, 0.0), T, Signals(repeats=1, repeat_hold_after=2)).queue == "approved"
    held = decide(S(0.0, 0.0), T, Signals(repeats=2, repeat_hold_after=2))
    assert (held.queue, held.label, held.reasons) == ("pending", "signal", ("repeated_text",))
    assert decide(S(0.0, 0.0), T, Signals(repeats=9, repeat_hold_after=0)).queue == "approved"


def test_a_comment_held_on_both_scores_is_labelled_by_the_one_further_past_its_threshold() -> None:
    real = FakeThresholds(spam_reject=0.9664, spam_hold=0.0287, toxic_hold=0.0785)
    insult = decide(S(0.031, 0.95), real)  # "You are a complete idiot …", as scored
    assert (insult.queue, insult.label) == ("pending", "toxic")
    assert set(insult.reasons) == {"spam_score_uncertain", "toxic_score"}
    pitch = decide(S(0.8, 0.09), real)
    assert (pitch.queue, pitch.label) == ("pending", "spam")


def below(threshold: float) -> float:
    """Return the largest score below a threshold."""
    return math.nextafter(threshold, 0.0)


@pytest.mark.parametrize(
    "thresholds",
    [T, FakeThresholds(spam_reject=0.9664, spam_hold=0.0287, toxic_hold=0.0785)],
    ids=["round", "trained"],
)
def test_each_threshold_applies_at_or_above_it(thresholds: FakeThresholds) -> None:
    """README: a score "at or above" a threshold rejects or holds; just below it does not."""
    at_reject = decide(S(thresholds.spam_reject, 0.0), thresholds)
    assert (at_reject.queue, at_reject.reasons) == ("spam", ("spam_score_high",))
    below_reject = decide(S(below(thresholds.spam_reject), 0.0), thresholds)
    assert (below_reject.queue, below_reject.label) == ("pending", "spam")

    at_spam_hold = decide(S(thresholds.spam_hold, 0.0), thresholds)
    assert (at_spam_hold.queue, at_spam_hold.reasons) == ("pending", ("spam_score_uncertain",))
    assert decide(S(below(thresholds.spam_hold), 0.0), thresholds).queue == "approved"

    at_toxic_hold = decide(S(0.0, thresholds.toxic_hold), thresholds)
    assert (at_toxic_hold.queue, at_toxic_hold.reasons) == ("pending", ("toxic_score",))
    assert decide(S(0.0, below(thresholds.toxic_hold)), thresholds).queue == "approved"


def test_hold_thresholds_of_zero_hold_every_comment() -> None:
    """An operator setting a hold threshold to 0 sends even a 0.0 score to a moderator."""
    for zero in (FakeThresholds(spam_hold=0.0), FakeThresholds(toxic_hold=0.0)):
        assert decide(S(0.0, 0.0), zero).queue == "pending", zero
