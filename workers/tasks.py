"""Celery tasks: they take comment ids only, re-read state, and are idempotent."""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from typing import Any

from celery import Celery, Task
from celery.exceptions import SoftTimeLimitExceeded
from celery_batches import Batches, SimpleRequest
from kombu.exceptions import OperationalError

from workers.celery_app import (
    OUTBOX_TASK,
    PURGE_TASK,
    SCORE_BATCH_SIZE,
    SCORE_BATCH_WAIT_SECONDS,
    SCORE_TASK,
    SWEEP_TASK,
    WEBHOOK_DELETION_TASK,
    WEBHOOK_TASK,
)
from workers.erasure import purge_expired as purge
from workers.logs import request_id_bound
from workers.metrics import SCORING_FAILURES, WEBHOOK_DELIVERIES
from workers.pipeline import hold_after_failure, score_and_decide, score_and_decide_many
from workers.runtime import Runtime
from workers.settings import Settings
from workers.store import TRANSIENT_STORE_ERRORS, outbox_event
from workers.webhooks import (
    DEADLINE_SECONDS,
    DECIDED,
    DELETED,
    WebhookError,
    WebhookRedirect,
    deliver,
    deliver_deletion,
)

log = logging.getLogger(__name__)

# Redis hiccups (workers.store names them) are transient: retry with backoff. Anything else
# is a poison comment.
TRANSIENT_ERRORS = TRANSIENT_STORE_ERRORS
# Publishing to the broker: its own connection errors too.
PUBLISH_ERRORS: tuple[type[Exception], ...] = (OperationalError, *TRANSIENT_ERRORS)
POISON_ATTEMPTS = 3
# The longest a comment waits between two resends by the sweep (the waits double from
# MODERATION_SWEEP_AFTER_SECONDS): while workers are down, five copies in the first hour at
# the default 60 s, then one an hour.
SWEEP_MAX_WAIT_SECONDS = 3600
# How long a batch waits for Redis to come back before leaving its comments to the sweep:
# MODERATION_TASK_MAX_RETRIES retries, the n-th after min(0.2 * 2**n, 8) seconds.
REDIS_RETRY_FIRST_DELAY = 0.2
REDIS_RETRY_MAX_DELAY = 8.0
# Webhook retries: the n-th after 5 * 3**(n-1) seconds, at most 30 minutes, plus up to a quarter
# more so events that failed together do not return together: 5 s, 15 s, 45 s, … 30 min; about
# 2.5 hours over ten retries (up to 3.1 with the spread) before an event is dropped.
WEBHOOK_MAX_RETRIES = 10
WEBHOOK_RETRY_FIRST_DELAY = 5.0
# Below the broker's visibility timeout (1 h): a message due later would be delivered twice.
WEBHOOK_RETRY_MAX_DELAY = 1800.0
WEBHOOK_RETRY_SPREAD = 0.25
# Backstops where Celery can enforce them (prefork pool); in every pool, the delivery's own
# deadline (workers/webhooks.py) is what ends it.
WEBHOOK_SOFT_TIME_LIMIT = DEADLINE_SECONDS + 5
WEBHOOK_TIME_LIMIT = DEADLINE_SECONDS + 20
# Webhook events are written to the outbox with their change (a transition, a delete) and
# queued from there: a drain claims up to OUTBOX_PAGE of them for OUTBOX_LEASE_SECONDS (far
# longer than publishing a page takes); one it could not publish is claimed again by a later
# drain once the lease ends.
OUTBOX_PAGE = 256
OUTBOX_LEASE_SECONDS = 60.0


def webhook_retry_delay(retries: int) -> float:
    """Return the wait, in seconds, before a webhook's retry number retries + 1."""
    base = min(WEBHOOK_RETRY_FIRST_DELAY * 3.0**retries, WEBHOOK_RETRY_MAX_DELAY)
    spread = 1 + WEBHOOK_RETRY_SPREAD * random.random()  # noqa: S311 - timing spread, not a secret
    return round(base * spread, 1)


def redis_retry_delays(retries: int) -> tuple[float, ...]:
    """Return the waits between a batch's attempts while Redis is unreachable."""
    return tuple(
        min(REDIS_RETRY_FIRST_DELAY * 2**n, REDIS_RETRY_MAX_DELAY) for n in range(max(retries, 0))
    )


_runtimes: dict[int, Runtime] = {}


def runtime_for(app: Celery) -> Runtime:
    """Return this process's Runtime for the app (created after fork, on first use)."""
    found = _runtimes.get(id(app))
    if found is None:
        settings: Settings = app.conf["moderation_settings"]
        found = _runtimes[id(app)] = Runtime(settings)
    return found


def register_tasks(app: Celery) -> None:
    """Define the moderation tasks on app."""
    settings: Settings = app.conf["moderation_settings"]

    @app.task(
        name=SCORE_TASK,
        base=Batches,
        # Messages wait at most SCORE_BATCH_WAIT_SECONDS to be scored together, up to
        # SCORE_BATCH_SIZE at a time (the prefetch allows two batches in flight per process).
        flush_every=SCORE_BATCH_SIZE,
        flush_interval=SCORE_BATCH_WAIT_SECONDS,
        acks_late=True,
    )
    def score_comment(requests: list[SimpleRequest]) -> dict[str, str]:
        """Score and decide the comments named by a batch of score_comment(id) messages."""
        jobs = [_job(request) for request in requests]
        return score_jobs(app, runtime_for(app), [job for job in jobs if job is not None])

    @app.task(name=SWEEP_TASK, acks_late=True, autoretry_for=TRANSIENT_ERRORS, max_retries=3)
    def sweep_unscored() -> int:
        """Re-enqueue comments stored but not scored in time; return how many."""
        return sweep(app, runtime_for(app))

    # Not shared with apps created later in this process (tests make several): each app's
    # deliveries use its own settings.
    webhook_task: dict[str, Any] = {
        "shared": False,
        "bind": True,
        "acks_late": True,
        "max_retries": WEBHOOK_MAX_RETRIES,
        "soft_time_limit": WEBHOOK_SOFT_TIME_LIMIT,
        "time_limit": WEBHOOK_TIME_LIMIT,
    }

    @app.task(name=WEBHOOK_TASK, **webhook_task)
    def deliver_webhook(self: Task, comment_id: str, event_id: str) -> str:
        """POST a signed decision event to the configured site; retried with backoff."""
        store = runtime_for(app).store
        url, secret = settings.webhook_url, settings.webhook_secret
        return attempt_webhook(
            self, DECIDED, comment_id, lambda: deliver(store, url, secret, comment_id, event_id)
        )

    @app.task(name=WEBHOOK_DELETION_TASK, **webhook_task)
    def deliver_deletion_webhook(
        self: Task, comment_id: str, post_id: str, reason: str, event_id: str, after: int = 0
    ) -> str:
        """POST a signed comment.deleted event (ids and reason only); retried with backoff."""
        store = runtime_for(app).store
        url, secret = settings.webhook_url, settings.webhook_secret
        return attempt_webhook(
            self,
            DELETED,
            comment_id,
            lambda: deliver_deletion(
                store, url, secret, comment_id, post_id, reason, event_id, after=after
            ),
        )

    # The task's name is older than deletion events in the outbox: kept, so a message queued
    # under it before an upgrade still runs.
    @app.task(name=OUTBOX_TASK, shared=False, acks_late=True)
    def publish_decision_events() -> int:
        """Queue every webhook event left in the outbox (beat-scheduled); return how many."""
        return drain_outbox(app, runtime_for(app))

    @app.task(
        name=PURGE_TASK,
        shared=False,
        acks_late=True,
        autoretry_for=TRANSIENT_ERRORS,
        max_retries=3,
    )
    def purge_expired() -> dict[str, int]:
        """Apply the retention periods to rejected comments and audit entries."""
        return apply_retention(app, runtime_for(app))


def attempt_webhook(task: Task, event: str, comment_id: str, send: Callable[[], str]) -> str:
    """Make one delivery attempt and count it; retry it later, or drop it after the last try."""
    attempt = task.request.retries + 1
    try:
        outcome = send()
    except (WebhookError, SoftTimeLimitExceeded, *TRANSIENT_ERRORS) as exc:
        error = str(exc) if isinstance(exc, WebhookError) else type(exc).__name__
        about = {"comment_id": comment_id, "event": event, "attempt": attempt, "error": error}
        if isinstance(exc, WebhookRedirect):
            log.error(
                "webhook URL answers with a redirect, which is never followed: set "
                "MODERATION_WEBHOOK_URL to the address that takes the POST",
                extra=about,
            )
        if task.request.retries >= WEBHOOK_MAX_RETRIES:
            return _drop_webhook(about)
        delay = webhook_retry_delay(task.request.retries)
        WEBHOOK_DELIVERIES.labels(outcome="failed_attempt").inc()
        log.warning("webhook delivery failed; will retry", extra={**about, "retry_in_s": delay})
        raise task.retry(exc=exc, countdown=delay) from None
    if outcome == "sent":
        WEBHOOK_DELIVERIES.labels(outcome="delivered").inc()
    elif outcome.startswith("refused:"):
        about = {"comment_id": comment_id, "event": event, "attempt": attempt, "error": outcome}
        return _drop_webhook(about)
    return outcome


def _drop_webhook(about: dict[str, object]) -> str:
    WEBHOOK_DELIVERIES.labels(outcome="dropped").inc()
    log.error("webhook event dropped: the site will not receive it", extra=about)
    return "dropped"


def _job(request: SimpleRequest) -> tuple[str, str] | None:
    """Return (comment id, request id) of a score_comment message, or None if malformed."""
    args = list(request.args or ())
    comment_id = args[0] if args else (request.kwargs or {}).get("comment_id")
    if not isinstance(comment_id, str):
        log.warning("score_comment message without a comment id; dropped")
        return None
    headers = request.request_dict or {}
    return comment_id, str(headers.get("request_id") or "")


def score_jobs(app: Celery, runtime: Runtime, jobs: list[tuple[str, str]]) -> dict[str, str]:
    """Decide a batch of comments; retry the batch while Redis is unreachable."""
    for delay in (*redis_retry_delays(runtime.settings.task_max_retries), None):
        try:
            return _score_jobs(app, runtime, jobs)
        except TRANSIENT_ERRORS as exc:
            if delay is None:
                # The messages are acknowledged with the batch; the comments stay listed as
                # unscored in Redis, and the sweep enqueues them again once it is back.
                log.error(
                    "Redis unavailable; batch left for the sweep",
                    extra={"count": len(jobs), "error": type(exc).__name__},
                )
                raise
            log.warning("Redis unavailable; retrying batch", extra={"delay_s": delay})
            time.sleep(delay)
    raise AssertionError("unreachable")  # pragma: no cover


def _score_jobs(app: Celery, runtime: Runtime, jobs: list[tuple[str, str]]) -> dict[str, str]:
    ids = [comment_id for comment_id, _ in jobs]
    outcomes: dict[str, str]
    try:
        outcomes = dict(score_and_decide_many(runtime, ids))
    except TRANSIENT_ERRORS:
        raise
    except Exception as exc:
        # One bad comment must not fail or block the others: decide them one at a time.
        log.warning(
            "batch scoring failed; scoring one at a time",
            extra={"count": len(jobs), "error": type(exc).__name__},
        )
        outcomes = {}
        for comment_id, request_id in dict(jobs).items():
            with request_id_bound(request_id):
                outcomes[comment_id] = score_one(app, runtime, comment_id, request_id)
    # Also after a re-run that found its comments decided (a batch retried after a Redis error,
    # a redelivery after a crash): their events wait in the outbox since their transitions.
    publish_outbox(app, runtime)
    return outcomes


def score_one(app: Celery, runtime: Runtime, comment_id: str, request_id: str) -> str:
    """Decide one comment; a failure is retried later, then held for a moderator."""
    try:
        return score_and_decide(runtime, comment_id)
    except TRANSIENT_ERRORS:
        raise
    except Exception as exc:
        attempts = runtime.store.bump_attempts(comment_id)
        log.warning(
            "scoring failed",
            extra={"comment_id": comment_id, "attempt": attempts, "error": type(exc).__name__},
        )
        if attempts < POISON_ATTEMPTS:
            SCORING_FAILURES.labels(outcome="retried").inc()
            # A new message, later (what Task.retry does); this one is acknowledged.
            app.send_task(
                SCORE_TASK,
                args=[comment_id],
                countdown=0.5 * attempts,
                headers={"request_id": request_id},
            )
            return "retried"
        SCORING_FAILURES.labels(outcome="held").inc()
        return hold_after_failure(runtime, comment_id, "scoring_failed")


def publish_outbox(app: Celery, runtime: Runtime, limit: int = OUTBOX_PAGE) -> int:
    """Queue a webhook task for each event waiting in the outbox (up to limit) and remove
    those queued; return how many were.

    Each transition records its comment.decided event, and each delete its comment.deleted
    event, in the outbox in the same Lua script (when a webhook is configured), so an event is
    never lost between the change and this publish: one that fails here (broker or Redis
    down, a crash) stays for the next drain, after each batch, decision or deletion and from
    beat (OUTBOX_TASK). At least once: a site deduplicates by event id."""
    if not runtime.settings.webhook_url:
        return 0
    published: list[str] = []
    try:
        try:
            for entry in runtime.store.claim_outbox(limit, OUTBOX_LEASE_SECONDS):
                _publish_event(app, entry)
                published.append(entry)
        finally:
            runtime.store.release_outbox(published)
    except PUBLISH_ERRORS as exc:
        # Any queued but not released is queued again after the lease: the delivery's own
        # "already sent" marker makes the repeat a no-op once the first was delivered.
        log.warning(
            "webhook events not queued; they stay in the outbox for the next drain",
            extra={"queued": len(published), "error": type(exc).__name__},
        )
    return len(published)


def _publish_event(app: Celery, entry: str) -> None:
    """Queue the delivery task of one outbox entry (an unreadable one is only logged)."""
    try:
        event = outbox_event(entry)
    except (ValueError, TypeError):
        # Neither script writes such an entry: it is released with the queued ones rather
        # than fail every drain (and the scoring batch running it) on it.
        log.error("unreadable outbox entry dropped", extra={"entry": entry[:100]})
        return
    if event.deletion is None:
        app.send_task(WEBHOOK_TASK, args=[event.comment_id, event.event_id])
        return
    post_id, reason, after = event.deletion
    app.send_task(
        WEBHOOK_DELETION_TASK, args=[event.comment_id, post_id, reason, event.event_id, after]
    )


def drain_outbox(app: Celery, runtime: Runtime) -> int:
    """Queue every webhook event waiting in the outbox, a page at a time; return how many."""
    total = 0
    while (published := publish_outbox(app, runtime)) == OUTBOX_PAGE:
        total += published
    return total + published


def apply_retention(app: Celery, runtime: Runtime) -> dict[str, int]:
    """Delete rejected comments and audit entries past their retention periods, telling a
    site that mirrors comments of each one removed (the hourly task and the admin CLI)."""
    purged = purge(
        runtime.store,
        rejected_days=runtime.settings.retention_rejected_days,
        audit_days=runtime.settings.retention_audit_days,
    )
    # Each delete recorded its comment.deleted event in the outbox.
    drain_outbox(app, runtime)
    return purged


def sweep(app: Celery, runtime: Runtime) -> int:
    """Re-enqueue every comment that waited longer than the configured time to be scored.

    A comment sent again waits twice as long as the previous time before the next resend (at
    most SWEEP_MAX_WAIT_SECONDS), so a backlog no worker drains does not gain a copy of every
    message on every sweep."""
    base = int(runtime.settings.sweep_after_seconds * 1_000_000)
    cap = max(base, SWEEP_MAX_WAIT_SECONDS * 1_000_000)
    cutoff = time.time_ns() // 1000 - base
    total = 0
    while True:
        stale = runtime.store.stale_unscored(cutoff)
        if not stale:
            return total
        ids = runtime.store.touch_unscored(stale, base, cap)
        for comment_id in ids:
            app.send_task(SCORE_TASK, args=[comment_id])
        total += len(ids)
        log.info("re-enqueued unscored comments", extra={"count": len(ids)})
