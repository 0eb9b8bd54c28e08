"""Score one stored comment and record the decision: the body of the scoring task."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any, Literal

from model.policy import Decision, Signals, decide, held_for_error
from workers import metrics
from workers.logs import bind_request_id
from workers.runtime import Runtime
from workers.settings import Settings
from workers.store import STATE_QUEUED, STATE_SCORED, iso_now, now_us

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
    return Signals(
        honeypot_filled=bool(raw.get("honeypot_filled")),
        submit_seconds=float(seconds) if isinstance(seconds, int | float) else None,
        min_submit_seconds=settings.min_submit_seconds,
        author_approved=history.get("approved", 0),
        author_rejected=history.get("rejected", 0) + history.get("spam", 0),
        auto_approve_after=settings.auto_approve_after,
    )


def uncertainty(spam: float, toxic: float) -> float:
    """Return how close the scores are to a coin flip (1 = most uncertain), for sorting."""
    return max(1 - abs(2 * spam - 1), 1 - abs(2 * toxic - 1))


def score_and_decide(runtime: Runtime, comment_id: str) -> Outcome:
    """Score a queued comment and move it to its queue; a second run changes nothing."""
    store = runtime.store
    record = store.get(comment_id)
    if record is None:
        return "missing"
    if record.get("state") != STATE_QUEUED:
        return "already_decided"
    bind_request_id(record.get("request_id") or "")
    classifier = runtime.classifier()
    started = time.perf_counter()
    score = classifier.score(record["comment"])
    elapsed_ms = (time.perf_counter() - started) * 1000
    history = None
    if runtime.settings.auto_approve_after > 0 and record.get("email_digest"):
        history = store.author_history(record["email_digest"], exclude=comment_id)
    decision = decide(
        score,
        thresholds_for(runtime.settings, classifier.thresholds),
        signals_for(record, runtime.settings, history),
    )
    result = store.transition(
        record,
        decision.queue,
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
    )
    if not result.applied:
        return "already_decided" if result.found else "missing"
    metrics.SCORING_SECONDS.labels(model_version=score.model_version).observe(elapsed_ms / 1000)
    metrics.DECISIONS.labels(decision.label, decision.queue, score.model_version).inc()
    if isinstance(record.get("created_us"), int):
        metrics.DECISION_DELAY_SECONDS.observe(max(0.0, (now_us() - record["created_us"]) / 1e6))
    log.info(
        "comment scored",
        extra={
            "comment_id": comment_id,
            "queue": decision.queue,
            "label": decision.label,
            "model_version": score.model_version,
            "score_ms": round(elapsed_ms, 3),
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
        audit={"actor": "model", "action": "hold", "to": decision.queue, "reasons": [code]},
    )
    log.warning("comment held after scoring failures", extra={"comment_id": comment_id})
    if result.applied:
        metrics.DECISIONS.labels(decision.label, decision.queue, "none").inc()
    return "decided" if result.applied else "already_decided"
