"""Celery tasks: they take comment ids only, re-read state, and are idempotent."""

from __future__ import annotations

import logging
import time
from typing import Any

import redis
from celery import Celery, Task

from workers.celery_app import SCORE_TASK, SWEEP_TASK
from workers.pipeline import hold_after_failure, score_and_decide
from workers.runtime import Runtime
from workers.settings import Settings

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
        runtime = runtime_for(app)
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
                raise self.retry(countdown=0.5 * attempts, max_retries=POISON_ATTEMPTS) from None
            return hold_after_failure(runtime, comment_id, "scoring_failed")

    @app.task(name=SWEEP_TASK, acks_late=True, autoretry_for=TRANSIENT_ERRORS, max_retries=3)
    def sweep_unscored() -> int:
        """Re-enqueue comments stored but not scored in time; return how many."""
        return sweep(app, runtime_for(app))


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
