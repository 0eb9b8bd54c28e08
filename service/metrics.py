"""Prometheus endpoint and request timing for the API (metric definitions: workers.metrics)."""

from __future__ import annotations

import hmac
import time

from flask import Blueprint, Flask, Response, g, request

from service import services
from service.auth import bearer_token
from service.errors import problem
from workers.celery_app import SCORING_QUEUE, WEBHOOK_QUEUE
from workers.metrics import (
    CONTENT_TYPE_LATEST,
    HTTP_REQUEST_SECONDS,
    SUBMISSIONS,
    QueueDepthCollector,
    exposition,
    submission_outcome,
)

bp = Blueprint("metrics", __name__)
SUBMIT_ENDPOINT = "comments.submit"


@bp.get("/metrics")
def metrics() -> Response:
    """Return every API process's metrics and the queue depths, for Prometheus to scrape."""
    svc = services()
    expected = svc.settings.metrics_token
    if expected and not hmac.compare_digest(bearer_token().encode(), expected.encode()):
        return problem(
            401,
            "Unauthorized",
            "The metrics token is required (MODERATION_METRICS_TOKEN).",
            headers={"WWW-Authenticate": 'Bearer realm="metrics"'},
        )
    depth = QueueDepthCollector(svc.runtime.store, svc.celery, (SCORING_QUEUE, WEBHOOK_QUEUE))
    body = exposition(svc.settings.prometheus_multiproc_dir, depth)
    return Response(body, headers={"Content-Type": CONTENT_TYPE_LATEST})


_HTTP_METHODS = frozenset(
    {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE", "CONNECT"}
)


def install_metrics(app: Flask) -> None:
    """Serve /metrics and time every request by route."""
    app.register_blueprint(bp)

    @app.before_request
    def start_timer() -> None:
        g.metrics_started = time.perf_counter()

    @app.after_request
    def observe(response: Response) -> Response:
        started = g.pop("metrics_started", None)
        route = request.url_rule.rule if request.url_rule is not None else "unmatched"
        if started is not None:
            # Clients choose the method name: any outside HTTP's own set shares one label, so
            # requests like "FOOA", "FOOB", … cannot create a series each.
            method = request.method if request.method in _HTTP_METHODS else "other"
            HTTP_REQUEST_SECONDS.labels(
                method=method, route=route, status=str(response.status_code)
            ).observe(time.perf_counter() - started)
        if request.endpoint == SUBMIT_ENDPOINT and request.method == "POST":
            # A browser's double submit gets the same 303 as a first post: the view says so.
            duplicate = g.get("duplicate_of") is not None
            outcome = "duplicate" if duplicate else submission_outcome(response.status_code)
            SUBMISSIONS.labels(outcome=outcome).inc()
        return response
