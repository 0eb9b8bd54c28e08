"""Prometheus metrics: every metric the service exports is defined here, and how it is exposed.

gunicorn and Celery's prefork pool run several processes. With ``PROMETHEUS_MULTIPROC_DIR`` set
(prometheus-client reads it when it is imported, before any metric exists), each process writes
its samples to files in that directory and one scrape adds them up. Without it, each process
counts in memory: right for tests and single-process servers.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import redis
from celery import Celery
from kombu.exceptions import ChannelError, OperationalError
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    start_http_server,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector

from workers.store import CommentStore

log = logging.getLogger(__name__)

__all__ = ["CONTENT_TYPE_LATEST"]

# Latency buckets from 1 ms: intake answers in milliseconds, scoring in tens of them.
FAST_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
DELAY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)

# -- API --------------------------------------------------------------------------------------

HTTP_REQUEST_SECONDS = Histogram(
    "moderation_http_request_duration_seconds",
    "Time to answer an HTTP request, by route (the URL rule, never the raw path).",
    ["method", "route", "status"],
    buckets=FAST_BUCKETS,
)
SUBMISSIONS = Counter(
    "moderation_submissions_total",
    "Comment submissions by outcome: accepted, invalid, malformed, rate_limited, "
    "unavailable, error.",
    ["outcome"],
)

# -- workers ----------------------------------------------------------------------------------

SCORING_SECONDS = Histogram(
    "moderation_scoring_duration_seconds",
    "Time the model takes to score one comment.",
    ["model_version"],
    buckets=FAST_BUCKETS,
)
DECISION_DELAY_SECONDS = Histogram(
    "moderation_decision_delay_seconds",
    "Time from a comment being stored to its automatic decision being visible to moderators.",
    buckets=DELAY_BUCKETS,
)
DECISIONS = Counter(
    "moderation_decisions_total",
    "Automatic decisions by label (clean, spam, toxic, signal, error), queue and model version.",
    ["label", "queue", "model_version"],
)
SCORING_FAILURES = Counter(
    "moderation_scoring_failures_total",
    "Scoring attempts that failed on something other than Redis, by what happened next.",
    ["outcome"],  # retried | held
)
WEBHOOK_DELIVERIES = Counter(
    "moderation_webhook_deliveries_total",
    "Webhook delivery attempts by outcome: delivered, failed_attempt (retried later) or dropped "
    "(retries used up, or the site refused it with a 4xx).",
    ["outcome"],  # delivered | failed_attempt | dropped
)

# -- moderators -------------------------------------------------------------------------------

MODERATOR_DECISIONS = Counter(
    "moderation_moderator_decisions_total",
    "Moderator decisions, by action and by who decided the comment before (model or moderator).",
    ["action", "previous"],
)
OVERTURNS = Counter(
    "moderation_overturns_total",
    "Moderator decisions that reversed a final automatic decision (published or rejected).",
    ["from_queue", "to_queue"],
)

# Queues where the model's decision is final until a moderator looks; "pending" is a hold.
FINAL_QUEUES = frozenset({"approved", "rejected", "spam"})


def submission_outcome(status: int) -> str:
    """Name the outcome of a POST /api/v1/comments from its response status."""
    if status in (202, 303):
        return "accepted"
    return {
        409: "duplicate",  # the same comment again (a double click): stored once, not an error
        400: "malformed",
        413: "malformed",
        415: "malformed",
        422: "invalid",
        429: "rate_limited",
        503: "unavailable",
    }.get(status, "error")


def record_moderator_decision(previous: dict[str, object], action: str, queue: str) -> None:
    """Count a moderator's decision, and an overturn when it reverses the model's final call."""
    decided_by = str(previous.get("decided_by") or "none")
    MODERATOR_DECISIONS.labels(action=action, previous=decided_by).inc()
    before = str(previous.get("queue") or "")
    if decided_by == "model" and before in FINAL_QUEUES and _side(before) != _side(queue):
        OVERTURNS.labels(from_queue=before, to_queue=queue).inc()


def _side(queue: str) -> str:
    # rejected and spam are the same verdict for readers; moving between them is not an overturn.
    return "published" if queue == "approved" else "withheld"


# -- exposition -------------------------------------------------------------------------------


class QueueDepthCollector(Collector):
    """Read queue depths from Redis at scrape time, so every process reports the same truth."""

    def __init__(self, store: CommentStore, celery: Celery, broker_queues: tuple[str, ...]) -> None:
        self.store = store
        self.celery = celery
        self.broker_queues = broker_queues

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily("moderation_redis_up", "1 when Redis answered this scrape.")
        try:
            sizes = self.store.queue_sizes()
            broker = {q: self._broker_length(q) for q in self.broker_queues}
        except (redis.exceptions.RedisError, OperationalError, OSError) as exc:
            log.warning("metrics: Redis unavailable", extra={"error": type(exc).__name__})
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        depth = GaugeMetricFamily(
            "moderation_queue_depth",
            "Comments per moderation queue; 'unscored' = stored but not yet decided by the model.",
            labels=["queue"],
        )
        for name, size in sizes.items():
            depth.add_metric([name], size)
        yield depth
        waiting = GaugeMetricFamily(
            "moderation_broker_queue_length",
            "Task messages waiting in the Celery broker queue (not yet taken by a worker).",
            labels=["queue"],
        )
        for name, size in broker.items():
            waiting.add_metric([name], size)
        yield waiting

    def _broker_length(self, queue: str) -> int:
        with self.celery.connection_for_read() as conn:
            try:
                declared = conn.default_channel.queue_declare(queue=queue, passive=True)
            except ChannelError:
                return 0  # kombu's Redis transport: an empty queue has no key
            return int(declared.message_count)


class _ThisProcess(Collector):
    """The default registry's samples (this process only), for single-process mode."""

    def collect(self) -> Iterator[Metric]:
        yield from REGISTRY.collect()


def process_registry(multiproc_dir: str) -> CollectorRegistry:
    """Return a registry of the samples of all processes (multiprocess mode) or of this one."""
    registry = CollectorRegistry(auto_describe=False)
    if multiproc_dir:
        MultiProcessCollector(registry, path=multiproc_dir)  # type: ignore[no-untyped-call]
    else:
        registry.register(_ThisProcess())
    return registry


def exposition(multiproc_dir: str, *extra: Collector) -> bytes:
    """Return the text exposition of every process's metrics plus scrape-time collectors."""
    registry = process_registry(multiproc_dir)
    for collector in extra:
        registry.register(collector)
    return generate_latest(registry)


def serve_worker_metrics(host: str, port: int, multiproc_dir: str) -> None:
    """Serve the worker's metrics (all pool processes) on host:port in a background thread."""
    if multiproc_dir and not Path(multiproc_dir).is_dir():
        raise ValueError(f"PROMETHEUS_MULTIPROC_DIR {multiproc_dir} is not a directory")
    start_http_server(port, addr=host, registry=process_registry(multiproc_dir))
