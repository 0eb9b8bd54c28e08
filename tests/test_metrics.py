"""Prometheus metrics of the API and the worker, and the request id carried into worker logs."""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Callable
from pathlib import Path

import redis as redis_lib
from flask.testing import FlaskClient
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import MODERATOR_TOKEN, Stack, client_for, wait_for
from workers.embedded_redis import free_port
from workers.settings import Settings

AUTH = {"Authorization": f"Bearer {MODERATOR_TOKEN}"}
CLEAN = {
    "post_id": "metrics",
    "comment": "The new bus timetable works well for people who start early.",
    "author": "Early Riser",
    "email": "early.riser@example.com",
}
SPAM = {
    **CLEAN,
    "comment": "FREE FREE FREE casino bonus!!! Click http://win-cash-now.example.biz to claim "
    "your free prize money today, limited offer, free spins",
    "email": "promo@example.com",
}

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def parse(text: str) -> Samples:
    """Return every sample of an exposition as {(name, sorted labels): value}."""
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    """Sum the samples of name whose labels include the given ones."""
    wanted = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and wanted <= set(ls))


def grown(before: Samples, after: Samples, name: str, **labels: str) -> float:
    """Return how much the matching samples grew between two scrapes."""
    return value(after, name, **labels) - value(before, name, **labels)


def scrape(client: FlaskClient) -> Samples:
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.mimetype == "text/plain"
    return parse(response.get_data(as_text=True))


def test_api_metrics_count_submissions_by_outcome_time_requests_and_show_queue_depth(
    client: FlaskClient, redis: redis_lib.Redis
) -> None:
    before = scrape(client)
    accepted = client.post("/api/v1/comments", json=CLEAN)
    invalid = client.post("/api/v1/comments", json={**CLEAN, "email": "not an email"})
    malformed = client.post("/api/v1/comments", data=b"{", content_type="application/json")
    assert (accepted.status_code, invalid.status_code, malformed.status_code) == (202, 422, 400)
    after = scrape(client)

    for outcome in ("accepted", "invalid", "malformed"):
        assert grown(before, after, "moderation_submissions_total", outcome=outcome) == 1
    timed = {"method": "POST", "route": "/api/v1/comments", "status": "202"}
    assert grown(before, after, "moderation_http_request_duration_seconds_count", **timed) == 1
    # Routes, not raw paths, so ids never become label values.
    client.get("/api/v1/comments/" + "a" * 24)
    routes = {dict(ls).get("route") for (n, ls) in scrape(client) if "request_duration" in n}
    assert "/api/v1/comments/<comment_id>" in routes
    assert not any(r and "a" * 24 in r for r in routes)

    # Queue depths come from Redis at scrape time: the accepted comment waits to be scored.
    assert value(after, "moderation_redis_up") == 1
    assert value(after, "moderation_queue_depth", queue="unscored") >= 1
    queues = {dict(ls)["queue"] for (n, ls) in after if n == "moderation_queue_depth"}
    assert {"pending", "approved", "rejected", "spam", "unscored"} <= queues
    assert ("moderation_broker_queue_length", (("queue", "scoring"),)) in after


def test_a_double_click_counts_as_a_duplicate_not_an_error(
    settings: Settings, redis: redis_lib.Redis
) -> None:
    client = client_for(settings, duplicate_window_seconds=600)
    before = scrape(client)
    first = client.post("/api/v1/comments", json=CLEAN)
    again = client.post("/api/v1/comments", json=CLEAN)
    assert (first.status_code, again.status_code) == (202, 409)
    # A browser's double submit goes back to the article (303) like its first post did.
    browser = {"Accept": "text/html", "Referer": "http://localhost/article"}
    form = {**CLEAN, "comment": "Posted from the article page, twice."}
    posts = [client.post("/api/v1/comments", data=form, headers=browser) for _ in range(2)]
    assert [p.status_code for p in posts] == [303, 303]
    after = scrape(client)
    assert grown(before, after, "moderation_submissions_total", outcome="duplicate") == 2
    assert grown(before, after, "moderation_submissions_total", outcome="accepted") == 2
    assert grown(before, after, "moderation_submissions_total", outcome="error") == 0


def test_a_metrics_token_keeps_metrics_from_anyone_without_it(
    settings: Settings, redis: redis_lib.Redis
) -> None:
    """With MODERATION_METRICS_TOKEN set, only a scraper holding it reads /metrics."""
    client = client_for(settings, metrics_token="scrape-s3cret")
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic x"}):
        response = client.get("/metrics", headers=headers)
        assert response.status_code == 401
        assert "MODERATION_METRICS_TOKEN" in response.get_json()["detail"]
        assert response.headers["WWW-Authenticate"].startswith("Bearer")
        assert "moderation_" not in response.get_data(as_text=True)
    allowed = client.get("/metrics", headers={"Authorization": "Bearer scrape-s3cret"})
    assert allowed.status_code == 200
    assert "moderation_queue_depth" in allowed.get_data(as_text=True)


def test_made_up_http_methods_share_one_label_value(client: FlaskClient) -> None:
    """Clients choose method names; each new one must not add a metric series."""
    for method in ("FOOA", "FOOB", "FOOC"):
        assert client.open("/healthz", method=method).status_code == 405
    methods = {dict(ls).get("method") for (n, ls) in scrape(client) if "request_duration" in n}
    assert "other" in methods
    assert not methods & {"FOOA", "FOOB", "FOOC"}


def test_moderator_overturning_an_automatic_decision_is_counted(
    stack_factory: Callable[..., Stack],
) -> None:
    """The model rejects a comment as spam; a moderator publishes it: one overturn."""
    from workers.pipeline import score_and_decide
    from workers.runtime import Runtime

    stack = stack_factory()  # no worker: the test decides when the model runs
    client = stack.client()
    comment_id = client.post("/api/v1/comments", json=SPAM).get_json()["id"]
    # A reject threshold of 0 makes the model's verdict "spam" whatever this artifact scores.
    strict = stack.settings.with_overrides(spam_reject_threshold=0.0)
    assert score_and_decide(Runtime(strict), comment_id) == "decided"
    assert stack.record(comment_id)["queue"] == "spam"
    assert stack.record(comment_id)["decided_by"] == "model"

    before = scrape(client)
    response = client.post(
        f"/api/v1/moderation/comments/{comment_id}/decision",
        json={"action": "approve"},
        headers=AUTH,
    )
    assert response.status_code == 200
    after = scrape(client)
    labels = {"from_queue": "spam", "to_queue": "approved"}
    assert grown(before, after, "moderation_overturns_total", **labels) == 1
    assert grown(before, after, "moderation_moderator_decisions_total", previous="model") == 1

    # Moving it again is a moderator changing a moderator's mind: not an overturn of the model.
    client.post(
        f"/api/v1/moderation/comments/{comment_id}/decision",
        json={"action": "reject"},
        headers=AUTH,
    )
    final = scrape(client)
    assert value(final, "moderation_overturns_total") == value(after, "moderation_overturns_total")


def test_worker_serves_scoring_metrics_of_all_its_processes_and_logs_the_request_id(
    stack_factory: Callable[..., Stack], tmp_path: Path
) -> None:
    """Two pool processes share their samples through PROMETHEUS_MULTIPROC_DIR."""
    metrics_dir = tmp_path / "worker-metrics"
    metrics_dir.mkdir()
    port = free_port()
    stack = stack_factory(
        worker_only={
            "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir),
            "MODERATION_WORKER_METRICS_PORT": str(port),
        }
    )
    client = stack.client()
    ids = []
    for n in range(6):
        body = {**CLEAN, "comment": f"{CLEAN['comment']} Route {n}.", "email": f"r{n}@example.com"}
        response = client.post("/api/v1/comments", json=body, headers={"X-Request-ID": f"rid-{n}"})
        assert response.status_code == 202
        ids.append(response.get_json()["id"])
    # A record that cannot be scored: its failure lines must carry its request id too.
    poison = client.post(
        "/api/v1/comments",
        json={**CLEAN, "email": "poison@example.com"},
        headers={"X-Request-ID": "rid-poison"},
    ).get_json()["id"]
    stack.redis.hdel(f"mod:c:{poison}", "comment")

    worker = stack.start_worker(concurrency=2)
    wait_for(lambda: len(stack.decided([*ids, poison])) == 7, timeout=30)

    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as reply:
        samples = parse(reply.read().decode())
    assert value(samples, "moderation_decisions_total") == 7
    assert value(samples, "moderation_decisions_total", label="error", queue="pending") == 1
    assert value(samples, "moderation_scoring_duration_seconds_count") == 6
    assert value(samples, "moderation_decision_delay_seconds_count") == 6
    assert value(samples, "moderation_scoring_failures_total", outcome="retried") == 2
    assert value(samples, "moderation_scoring_failures_total", outcome="held") == 1

    lines = [json.loads(line) for line in worker.output().splitlines() if line.startswith("{")]
    for n, comment_id in enumerate(ids):
        assert any(
            line.get("comment_id") == comment_id and line.get("request_id") == f"rid-{n}"
            for line in lines
        ), comment_id
    failures = [line for line in lines if line.get("message") == "scoring failed"]
    assert failures and all(line.get("request_id") == "rid-poison" for line in failures)
