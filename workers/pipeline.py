"""Score one stored comment and record the decision: the body of the scoring task."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from model import Classifier, Score
from model.policy import Decision, Signals, decide, held_for_error
from workers import metrics
from workers.logs import bind_request_id, request_id_bound
from workers.runtime import Runtime
from workers.settings import Settings
from workers.store import (
    STATE_QUEUED,
    STATE_SCORED,
    TRANSIENT_STORE_ERRORS,
    Transition,
    TransitionResult,
    iso_now,
    now_us,
)

log = logging.getLogger(__name__)

Outcome = Literal["decided", "already_decided", "missing"]


@dataclass(frozen=True)
class EffectiveThresholds:
    spam_reject: float
    spam_hold: float
    toxic_hold: float


def thresholds_for(settings: Settings, model_thresholds: Any) -> EffectiveThresholds:
    """Return the model's thresholds with any operator overrides from config applied."""
    return EffectiveThresholds(
        spam_reject=_pick(settings.spam_reject_threshold, model_thresholds.spam_reject),
        spam_hold=_pick(settings.spam_hold_threshold, model_thresholds.spam_hold),
        toxic_hold=_pick(settings.toxic_hold_threshold, model_thresholds.toxic_hold),
    )


def _pick(override: float | None, default: float) -> float:
    return float(default) if override is None else override


def signals_for(
    record: dict[str, Any], settings: Settings, history: dict[str, int] | None = None
) -> Signals:
    """Build the site signals of a stored comment (and its author's history, if asked)."""
    raw = record.get("signals") or {}
    seconds = raw.get("submit_seconds")
    history = history or {}
    token = raw.get("form_token")
    if record.get("form_token_reused") and settings.require_form_token:
        # The same genuine token on an earlier stored comment: a bot replaying one harvested
        # token. Only once the site requires tokens: a reader's back button can resend one.
        token = "reused"  # noqa: S105 - a token state, not a secret
    return Signals(
        honeypot_filled=bool(raw.get("honeypot_filled")),
        submit_seconds=float(seconds) if isinstance(seconds, int | float) else None,
        form_token=token if isinstance(token, str) else "",
        min_submit_seconds=settings.min_submit_seconds,
        repeats=record.get("repeats") or 0,  # typed by decode_record
        repeat_hold_after=settings.repeat_hold_after,
        author_approved=history.get("approved", 0),
        author_rejected=history.get("rejected", 0) + history.get("spam", 0),
        auto_approve_after=settings.auto_approve_after,
    )


def uncertainty(spam: float, toxic: float) -> float:
    """Return how close the scores are to a coin flip (1 = most uncertain), for sorting."""
    return max(1 - abs(2 * spam - 1), 1 - abs(2 * toxic - 1))


def score_and_decide(runtime: Runtime, comment_id: str) -> Outcome:
    """Score a queued comment and move it to its queue; a second run changes nothing."""
    record = runtime.store.get(comment_id)
    if record is None or record.get("state") != STATE_QUEUED:
        runtime.store.forget_unscored([comment_id])  # so the sweep stops sending it
        return "missing" if record is None else "already_decided"
    bind_request_id(record.get("request_id") or "")
    classifier = runtime.classifier()
    started = time.perf_counter()
    score = classifier.score(record["comment"], _reasons_from(runtime, classifier))
    elapsed = time.perf_counter() - started
    move = _decision_move(runtime, record, score, classifier.thresholds)
    result = runtime.store.transition(
        record,
        move.queue,
        allowed_states=move.allowed_states,
        fields=move.fields,
        audit=move.audit,
    )
    return _after_transition(record, move, result, elapsed)


def score_and_decide_many(runtime: Runtime, comment_ids: Sequence[str]) -> dict[str, Outcome]:
    """Score and decide many comments: one read, one vectorised model call, one write (with
    trusted authors on, an author's later comments in the batch follow one at a time).

    Each comment's transition is still guarded by its state, so running it again, or a
    moderator acting first, changes nothing. Raises if any comment cannot be scored (the
    caller then falls back to one comment at a time, so one poison comment fails alone).
    """
    store = runtime.store
    records = store.get_by_ids(comment_ids)
    outcomes: dict[str, Outcome] = {}
    queued: list[dict[str, Any]] = []
    # With trusted authors on, a decision depends on the author's earlier ones: an author's
    # second and later comments in this batch are decided after it, one at a time, as they
    # would be had they arrived in separate batches (a spam rejection revokes trust).
    later: list[str] = []
    authors: set[str] = set()
    for comment_id in dict.fromkeys(comment_ids):  # an id sent twice is decided once
        record = records.get(comment_id)
        if record is None:
            outcomes[comment_id] = "missing"
        elif record.get("state") != STATE_QUEUED:
            outcomes[comment_id] = "already_decided"
        elif runtime.settings.auto_approve_after and record.get("email_digest") in authors:
            later.append(comment_id)
        else:
            authors.add(str(record.get("email_digest") or ""))
            queued.append(record)
    store.forget_unscored(list(outcomes))  # so the sweep stops sending them
    if queued:
        outcomes.update(_decide_together(runtime, queued))
    for comment_id in later:
        outcomes[comment_id] = score_and_decide(runtime, comment_id)
    return outcomes


def _decide_together(runtime: Runtime, queued: list[dict[str, Any]]) -> dict[str, Outcome]:
    """Score queued records in one model call and write their decisions in one round trip."""
    store = runtime.store
    outcomes: dict[str, Outcome] = {}
    classifier = runtime.classifier()
    started = time.perf_counter()
    probabilities = classifier.score_batch([r["comment"] for r in queued])
    explain = _reasons_from(runtime, classifier)
    scores = []
    for record, (spam, toxic) in zip(queued, probabilities, strict=True):
        if spam < explain[0] and toxic < explain[1]:
            # Below both hold thresholds: nothing for a moderator to read, so skip the
            # explanation (site signals such as the honeypot are reasons of their own).
            scores.append(Score(spam, toxic, {}, (), classifier.version))
        else:
            scores.append(classifier.score(record["comment"], explain))
    elapsed = (time.perf_counter() - started) / len(queued)
    moves = [
        _decision_move(runtime, record, score, classifier.thresholds)
        for record, score in zip(queued, scores, strict=True)
    ]
    results = store.transition_many(moves)
    for record, move, result in zip(queued, moves, results, strict=True):
        with request_id_bound(record.get("request_id") or ""):
            outcomes[record["id"]] = _after_transition(record, move, result, elapsed)
    return outcomes


def _reasons_from(runtime: Runtime, classifier: Classifier) -> tuple[float, float]:
    """Explain a label from its effective hold threshold (operator overrides included), so
    every comment held on a score carries the n-grams behind it."""
    effective = thresholds_for(runtime.settings, classifier.thresholds)
    return classifier.reasons_from(effective.spam_hold, effective.toxic_hold)


@dataclass(frozen=True)
class _Move(Transition):
    decision: Decision | None = None
    model_version: str = ""


def _decision_move(
    runtime: Runtime, record: dict[str, Any], score: Score, model_thresholds: Any
) -> _Move:
    history = None
    if runtime.settings.auto_approve_after > 0 and record.get("email_digest"):
        history = runtime.store.author_history(record["email_digest"], exclude=record["id"])
    decision = decide(
        score,
        thresholds_for(runtime.settings, model_thresholds),
        signals_for(record, runtime.settings, history),
    )
    return _Move(
        comment=record,
        queue=decision.queue,
        allowed_states=(STATE_QUEUED,),
        fields={
            "state": STATE_SCORED,
            "spam": round(score.spam, 6),
            "toxic": round(score.toxic, 6),
            "uncertainty": round(uncertainty(score.spam, score.toxic), 6),
            "categories": {k: round(v, 6) for k, v in score.categories.items()},
            "reasons": [r.to_dict() for r in score.reasons],
            "decision_label": decision.label,
            "decision_reasons": list(decision.reasons),
            "model_version": score.model_version,
            "scored_at": iso_now(),
            "scored_us": now_us(),  # microseconds, for end-to-end latency (bench/service.py)
            "decided_by": "model",
        },
        audit={
            "actor": "model",
            "action": "score",
            "to": decision.queue,
            "from": record.get("queue"),
            "model_version": score.model_version,
            "reasons": list(decision.reasons),
        },
        decision=decision,
        model_version=score.model_version,
    )


def _after_transition(
    record: dict[str, Any], move: _Move, result: TransitionResult, elapsed: float
) -> Outcome:
    """Count and log an applied decision; name the outcome."""
    if not result.applied:
        return "already_decided" if result.found else "missing"
    decision = move.decision
    assert decision is not None  # noqa: S101 - every _Move is built with one
    version = move.model_version
    metrics.SCORING_SECONDS.labels(model_version=version).observe(elapsed)
    metrics.DECISIONS.labels(decision.label, decision.queue, version).inc()
    if isinstance(record.get("created_us"), int):
        metrics.DECISION_DELAY_SECONDS.observe(max(0.0, (now_us() - record["created_us"]) / 1e6))
    log.info(
        "comment scored",
        extra={
            "comment_id": record["id"],
            "queue": decision.queue,
            "label": decision.label,
            "model_version": version,
            "score_ms": round(elapsed * 1000, 3),
            "request_id": record.get("request_id", ""),
        },
    )
    return "decided"


def hold_after_failure(runtime: Runtime, comment_id: str, code: str) -> Outcome:
    """Hold a comment whose scoring keeps failing for a moderator, with a reason."""
    record = runtime.store.get(comment_id)
    if record is None:
        return "missing"
    decision: Decision = held_for_error(code)
    audit = {"actor": "model", "action": "hold", "to": decision.queue, "reasons": [code]}
    try:
        result = runtime.store.transition(
            record,
            decision.queue,
            allowed_states=(STATE_QUEUED,),
            fields={
                "state": STATE_SCORED,
                "decision_label": decision.label,
                "decision_reasons": list(decision.reasons),
                "scored_at": iso_now(),
                "decided_by": "model",
            },
            audit=audit,
        )
        applied = result.applied
    except TRANSIENT_STORE_ERRORS:
        raise
    except Exception as exc:
        # The record itself is damaged (a field lost or mangled): the ordinary hold cannot
        # index it. Held from what is left, or the sweep would send it forever, unseen.
        log.error(
            "comment record damaged; held in pending as it is",
            extra={"comment_id": comment_id, "error": type(exc).__name__},
        )
        applied = runtime.store.hold_damaged(comment_id, decision.label, decision.reasons, audit)
    log.warning("comment held after scoring failures", extra={"comment_id": comment_id})
    if applied:
        metrics.DECISIONS.labels(decision.label, decision.queue, "none").inc()
    return "decided" if applied else "already_decided"
