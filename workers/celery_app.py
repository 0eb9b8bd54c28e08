"""The one place that creates the Celery app."""

from __future__ import annotations

import base64
import json
import uuid

from celery import Celery
from kombu.serialization import dumps as serialize

from workers.settings import Settings

SCORE_TASK = "workers.tasks.score_comment"
SWEEP_TASK = "workers.tasks.sweep_unscored"
WEBHOOK_TASK = "workers.tasks.deliver_webhook"
WEBHOOK_DELETION_TASK = "workers.tasks.deliver_deletion_webhook"
PURGE_TASK = "workers.tasks.purge_expired"
OUTBOX_TASK = "workers.tasks.publish_decision_events"
SCORING_QUEUE = "scoring"
# Scoring batches: up to this many queued comments are scored together (one Redis read, one
# vectorised model call, one pipelined write), after waiting at most this long for company.
SCORE_BATCH_SIZE = 64
SCORE_BATCH_WAIT_SECONDS = 0.005
WEBHOOK_QUEUE = "webhooks"


def create_celery(settings: Settings) -> Celery:
    """Create and configure the Celery app, with the moderation tasks registered."""
    app = Celery("moderation", set_as_current=False)
    app.conf.update(
        broker_url=settings.redis_url,
        # Results are never read: decisions are written to Redis by the task itself.
        task_ignore_result=True,
        result_backend=None,
        task_serializer="json",
        accept_content=["json"],
        task_default_queue=SCORING_QUEUE,
        # Webhooks wait on other sites: their own queue, consumed by its own worker
        # (`python -m workers webhooks`), keeps scoring fast when a site is slow or hung.
        task_routes={
            WEBHOOK_TASK: {"queue": WEBHOOK_QUEUE},
            WEBHOOK_DELETION_TASK: {"queue": WEBHOOK_QUEUE},
        },
        # A task is acknowledged only after it ran, and redelivered if its worker dies.
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        # Batching needs messages in hand: two batches per pool process may be taken (unacked
        # until decided). A killed worker strands them; the sweep re-enqueues those comments.
        worker_prefetch_multiplier=2 * SCORE_BATCH_SIZE,
        broker_transport_options={
            # Well above any task's run time, or unacked tasks would run twice needlessly.
            "visibility_timeout": settings.visibility_timeout_seconds,
        },
        broker_connection_retry_on_startup=True,
        worker_hijack_root_logger=False,
        worker_send_task_events=False,
        # Fail fast when Redis is down: intake answers 503 (or leaves the comment to the sweep).
        task_publish_retry_policy={"max_retries": 2, "interval_start": 0, "interval_step": 0.2},
        beat_schedule={
            "sweep-unscored": {"task": SWEEP_TASK, "schedule": settings.sweep_interval_seconds},
            # Webhook events a crash or a broker failure left in the outbox (workers/tasks.py).
            "publish-decision-events": {
                "task": OUTBOX_TASK,
                "schedule": settings.sweep_interval_seconds,
            },
            "purge-expired": {"task": PURGE_TASK, "schedule": 3600.0},
        },
        timezone="UTC",
    )
    app.conf["moderation_settings"] = settings
    from workers.tasks import register_tasks  # tasks need the app; defined at creation time

    register_tasks(app)
    return app


def score_task_message(app: Celery, comment_id: str, request_id: str) -> tuple[str, str]:
    """Return (broker list key, message) of score_comment(comment_id), as send_task would push it.

    The headers and body come from Celery's own message code; the envelope is kombu's Redis
    transport format (a direct exchange publishes with LPUSH to the queue's list). The store
    pushes it in the same Lua call that stores the comment: one round trip instead of two, and
    never a stored comment without its message (the sweep still covers a lost one).
    """
    task_id = str(uuid.uuid4())
    headers, properties, body, _ = app.amqp.create_task_message(
        task_id, SCORE_TASK, [comment_id], {}, reply_to=app.thread_oid
    )
    headers["request_id"] = request_id
    content_type, content_encoding, data = serialize(body, serializer="json")  # type: ignore[no-untyped-call]  # kombu ships no hints
    raw = data.encode() if isinstance(data, str) else data
    envelope = {
        "body": base64.b64encode(raw).decode(),
        "content-encoding": content_encoding,
        "content-type": content_type,
        "headers": headers,
        "properties": {
            **properties,
            "delivery_mode": 2,  # persistent
            "delivery_info": {"exchange": "", "routing_key": SCORING_QUEUE},
            "priority": 0,
            "body_encoding": "base64",
            "delivery_tag": str(uuid.uuid4()),
        },
    }
    return SCORING_QUEUE, json.dumps(envelope)
