"""Celery tasks: they take comment ids only, re-read state, and are idempotent."""

from __future__ import annotations

import logging
import time
from typing import Any

import redis
from celery import Celery, Task

from workers.celery_app import PURGE_TASK, SCORE_TASK, SWEEP_TASK, WEBHOOK_TASK
from workers.erasure import purge_expired as purge
from workers.logs import request_id_bound
from workers.metrics import SCORING_FAILURES
from workers.pipeline import hold_after_failure, score_and_decide
from workers.runtime import Runtime
from workers.settings import Settings
from workers.webhooks import WebhookError, deliver

log = logging.getLogger(__name__)

# Redis hiccups are transient: retry with backoff. Anything else is a poison comment.
TRANSIENT_ERRORS = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError)
POISON_ATTEMPTS = 3

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
        bind=True,
        acks_late=True,
        reject_on_worker_lost=True,
        autoretry_for=TRANSIENT_ERRORS,
        retry_backoff=True,
        retry_backoff_max=60,
        retry_jitter=True,
        max_retries=settings.task_max_retries,
    )
    def score_comment(self: Task[Any, Any], comment_id: str) -> str:
        """Score and decide one comment by id."""
        # The intake's request id (a message header) tags every log line of this task.
        with request_id_bound(str(getattr(self.request, "request_id", None) or "")):
            return _score_comment(self, comment_id)

    def _score_comment(self: Task[Any, Any], comment_id: str) -> str:
        runtime = runtime_for(app)
        try:
            outcome = score_and_decide(runtime, comment_id)
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
                raise self.retry(countdown=0.5 * attempts, max_retries=POISON_ATTEMPTS) from None
            SCORING_FAILURES.labels(outcome="held").inc()
            outcome = hold_after_failure(runtime, comment_id, "scoring_failed")
        if outcome == "decided":
            notify_decision(app, runtime, comment_id)
        return outcome

    @app.task(name=SWEEP_TASK, acks_late=True, autoretry_for=TRANSIENT_ERRORS, max_retries=3)
    def sweep_unscored() -> int:
        """Re-enqueue comments stored but not scored in time; return how many."""
        return sweep(app, runtime_for(app))

    @app.task(
        name=WEBHOOK_TASK,
        acks_late=True,
        autoretry_for=(WebhookError, *TRANSIENT_ERRORS),
        retry_backoff=2,
        retry_backoff_max=600,
        retry_jitter=True,
        max_retries=10,
    )
    def deliver_webhook(comment_id: str, event_id: str) -> str:
        """POST a signed decision event to the configured site; retried with backoff."""
        runtime = runtime_for(app)
        return deliver(
            runtime.store, settings.webhook_url, settings.webhook_secret, comment_id, event_id
        )

    @app.task(name=PURGE_TASK, acks_late=True, autoretry_for=TRANSIENT_ERRORS, max_retries=3)
    def purge_expired() -> dict[str, int]:
        """Apply the retention periods to rejected comments and audit entries."""
        return purge(
            runtime_for(app).store,
            rejected_days=settings.retention_rejected_days,
            audit_days=settings.retention_audit_days,
        )


def notify_decision(app: Celery, runtime: Runtime, comment_id: str) -> None:
    """Queue a webhook for a comment's latest decision, when a webhook is configured."""
    if runtime.settings.webhook_url:
        app.send_task(WEBHOOK_TASK, args=[comment_id, runtime.store.event_id(comment_id)])


def sweep(app: Celery, runtime: Runtime) -> int:
    """Re-enqueue every comment that waited longer than the configured time to be scored."""
    cutoff = time.time_ns() // 1000 - int(runtime.settings.sweep_after_seconds * 1_000_000)
    total = 0
    while True:
        ids = runtime.store.stale_unscored(cutoff)
        if not ids:
            return total
        runtime.store.touch_unscored(ids)
        for comment_id in ids:
            app.send_task(SCORE_TASK, args=[comment_id])
        total += len(ids)
        log.info("re-enqueued unscored comments", extra={"count": len(ids)})
