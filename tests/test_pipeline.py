"""End to end: comment form → Flask → Celery worker → model → Redis → moderators → readers."""

from __future__ import annotations

import base64
import json
import logging
import time
from collections.abc import Callable
from typing import Any

import pytest
import redis as redis_lib
from flask.testing import FlaskClient

from tests.conftest import MODERATOR_TOKEN, Stack, WorkerProcess, wait_for
from workers import intake
from workers.celery_app import SCORE_TASK, SCORING_QUEUE, create_celery, score_task_message
from workers.settings import Settings

pytestmark = pytest.mark.integration

AUTH = {"Authorization": f"Bearer {MODERATOR_TOKEN}"}
EMAIL = "integration.reader@example.com"
CLEAN = {
    "post_id": "city-council",
    "comment": "I attended the meeting too and the summary here matches what was said.",
    "author": "Sam Reader",
    "email": EMAIL,
}
SPAM = {
    **CLEAN,
    "comment": "CLICK HERE to WIN a FREE iPhone!!! Visit http://free-prizes.example.biz now, "
    "limited offer, call 0800 123 456 to claim your cash prize",
}


def scored(redis: redis_lib.Redis, comment_id: str) -> dict[str, str] | None:
    record = redis.hgetall(f"mod:c:{comment_id}")
    return record if record.get("state") in ("scored", "moderated") else None


def test_json_and_form_posts_are_scored_and_visible_to_moderators_within_a_second(
    client: FlaskClient, redis: redis_lib.Redis, worker: WorkerProcess
) -> None:
    started = time.monotonic()
    json_id = client.post("/api/v1/comments", json=CLEAN).get_json()["id"]
    form_id = client.post("/api/v1/comments", data=SPAM).get_json()["id"]
    wait_for(lambda: scored(redis, json_id) and scored(redis, form_id), timeout=1.0)
    assert time.monotonic() - started < 1.0
    for comment_id in (json_id, form_id):
        record = redis.hgetall(f"mod:c:{comment_id}")
        assert 0.0 <= float(record["spam"]) <= 1.0
        assert 0.0 <= float(record["toxic"]) <= 1.0
        assert record["model_version"]
    assert float(redis.hget(f"mod:c:{form_id}", "spam")) > float(
        redis.hget(f"mod:c:{json_id}", "spam")
    )
    seen = set()
    for status in ("pending", "approved", "rejected", "spam"):
        page = client.get(f"/api/v1/moderation/queue?status={status}", headers=AUTH).get_json()
        for item in page["items"]:
            seen.add(item["id"])
            assert item["email"] == "i***@example.com"
            assert item["scores"]["spam"] is not None
    assert {json_id, form_id} <= seen


def test_approving_a_held_comment_publishes_it(
    client: FlaskClient, redis: redis_lib.Redis, worker: WorkerProcess
) -> None:
    held = {**CLEAN, "comment": "You are all idiots and this article is garbage written by morons."}
    comment_id = client.post("/api/v1/comments", json=held).get_json()["id"]
    wait_for(lambda: scored(redis, comment_id))
    if redis.hget(f"mod:c:{comment_id}", "queue") == "approved":
        pytest.fail("an insulting comment was published without review")
    listing = client.get("/api/v1/posts/city-council/comments").get_json()
    assert comment_id not in [c["id"] for c in listing["comments"]]

    response = client.post(
        f"/api/v1/moderation/comments/{comment_id}/decision",
        json={"action": "approve"},
        headers=AUTH,
    )
    assert response.status_code == 200
    assert response.get_json()["moderated_by"] == "operator"  # the bootstrap admin token
    listing = client.get("/api/v1/posts/city-council/comments").get_json()
    published = [c for c in listing["comments"] if c["id"] == comment_id]
    assert published and published[0]["comment"] == held["comment"]
    assert set(published[0]) == {
        "id",
        "post_id",
        "parent_id",
        "author",
        "url",
        "comment",
        "created_at",
        "status",
    }
    public = client.get(f"/api/v1/comments/{comment_id}").get_json()
    assert public["status"] == "approved" and "email" not in public and "spam" not in public


# kombu's Redis transport keeps each message a worker has taken but not acknowledged in this
# hash, as [envelope, exchange, routing key].
KOMBU_UNACKED = "unacked"


def waiting_to_be_scored(redis: redis_lib.Redis) -> set[str]:
    """Return the comment ids named by score messages queued, or taken and not yet acked."""
    envelopes = [json.loads(raw) for raw in redis.lrange(SCORING_QUEUE, 0, -1)]
    envelopes += [json.loads(raw)[0] for raw in redis.hvals(KOMBU_UNACKED)]
    return {
        str(args[0])
        for envelope in envelopes
        if envelope["headers"].get("task") == SCORE_TASK
        for args in [json.loads(base64.b64decode(envelope["body"]))[0]]
        if args
    }


def test_running_the_task_twice_changes_nothing(
    client: FlaskClient, redis: redis_lib.Redis, worker: WorkerProcess, settings: Settings
) -> None:
    comment_id = client.post("/api/v1/comments", json=CLEAN).get_json()["id"]
    wait_for(lambda: scored(redis, comment_id))
    before = redis.hgetall(f"mod:c:{comment_id}")
    audit_before = redis.lrange(f"mod:c:{comment_id}:audit", 0, -1)
    create_celery(settings).send_task(SCORE_TASK, args=[comment_id])
    # Proof the duplicate was consumed, however busy the worker: a comment posted after it is
    # scored (the session worker has one process and the queue is FIFO, so the duplicate ran
    # in the same batch or an earlier one), and no message naming either one is left queued
    # or taken but unacknowledged (acks_late: acknowledged once its batch has run).
    later = {**CLEAN, "comment": CLEAN["comment"] + " Posted after the duplicate message."}
    later_id = client.post("/api/v1/comments", json=later).get_json()["id"]
    wait_for(lambda: scored(redis, later_id), timeout=10)
    wait_for(lambda: not {comment_id, later_id} & waiting_to_be_scored(redis), timeout=10)
    assert redis.hgetall(f"mod:c:{comment_id}") == before
    assert redis.lrange(f"mod:c:{comment_id}:audit", 0, -1) == audit_before


def test_moderator_decision_wins_over_a_late_score(
    client: FlaskClient, redis: redis_lib.Redis, settings: Settings
) -> None:
    """A comment decided by a moderator before scoring keeps the moderator's decision."""
    from workers.pipeline import score_and_decide
    from workers.runtime import Runtime

    comment_id = client.post("/api/v1/comments", json=SPAM).get_json()["id"]
    client.post(
        f"/api/v1/moderation/comments/{comment_id}/decision",
        json={"action": "approve"},
        headers=AUTH,
    )
    assert score_and_decide(Runtime(settings), comment_id) == "already_decided"
    assert redis.hget(f"mod:c:{comment_id}", "queue") == "approved"


def test_comment_whose_message_was_lost_is_decided_by_the_sweep(
    client: FlaskClient, redis: redis_lib.Redis, worker: WorkerProcess, settings: Settings
) -> None:
    from workers.intake import Submission
    from workers.runtime import Runtime
    from workers.store import NewComment

    runtime = Runtime(settings)
    sub = Submission(**CLEAN)
    # Stored, but never enqueued: as if the broker lost the message.
    comment_id, _, _ = runtime.store.add(
        NewComment(
            post_id=sub.post_id,
            author=sub.author,
            comment=sub.comment,
            email_enc=runtime.vault.encrypt(sub.email),
            email_digest=runtime.vault.digest(sub.email),
        )
    )
    wait_for(lambda: scored(redis, comment_id), timeout=settings.sweep_after_seconds + 8)


def test_email_never_reaches_queue_messages_logs_or_public_responses(
    client: FlaskClient,
    redis: redis_lib.Redis,
    worker: WorkerProcess,
    settings: Settings,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    caplog.set_level(logging.DEBUG)
    email = "secret.person+tag@private-mail.example"
    published: list[str] = []

    def capture(*args: object, **kwargs: object) -> tuple[str, str]:
        queue, message = score_task_message(*args, **kwargs)  # type: ignore[arg-type]
        published.append(message + base64.b64decode(json.loads(message)["body"]).decode())
        return queue, message

    # The exact message (payload and headers) the intake pushes to the broker with a comment.
    monkeypatch.setattr(intake, "score_task_message", capture)
    comment_id = client.post("/api/v1/comments", json={**CLEAN, "email": email}).get_json()["id"]
    client.post("/api/v1/comments", data={**CLEAN, "email": "bad@@" + email})
    wait_for(lambda: scored(redis, comment_id))
    assert published and any(comment_id in message for message in published)
    responses = [
        client.get(f"/api/v1/comments/{comment_id}").get_data(as_text=True),
        client.get("/api/v1/posts/city-council/comments").get_data(as_text=True),
        client.get("/api/v1/moderation/queue?status=approved", headers=AUTH).get_data(as_text=True),
        client.get("/api/v1/moderation/queue?status=pending", headers=AUTH).get_data(as_text=True),
    ]
    for text in [*responses, *published, caplog.text, worker.output()]:
        assert email not in text
        assert "secret.person" not in text
    # Everything in Redis (hashes, lists, Celery's queues and unacked messages): no plain address.
    for key in redis.scan_iter("*"):
        kind = redis.type(key)
        dump = {
            "hash": lambda k: json.dumps(redis.hgetall(k)),
            "list": lambda k: json.dumps(redis.lrange(k, 0, -1)),
            "string": lambda k: str(redis.get(k)),
            "zset": lambda k: json.dumps(redis.zrange(k, 0, -1)),
            "set": lambda k: json.dumps(sorted(redis.smembers(k))),
        }.get(kind, lambda k: "")(key)
        assert "secret.person" not in dump, key


def test_the_message_stored_with_a_comment_is_the_one_celery_itself_would_send(
    stack_factory: Callable[..., Stack],
) -> None:
    """Intake pushes score_comment(id) in the store's Lua call, in Celery's own message format."""
    stack = stack_factory()
    create_celery(stack.settings).send_task(
        SCORE_TASK, args=["0" * 24], headers={"request_id": "rid-celery"}
    )
    response = stack.client().post(
        "/api/v1/comments", json=CLEAN, headers={"X-Request-ID": "rid-intake"}
    )
    comment_id = response.get_json()["id"]
    ours, celerys = (json.loads(m) for m in stack.redis.lrange(SCORING_QUEUE, 0, -1))

    assert json.loads(base64.b64decode(ours["body"]))[0] == [comment_id]
    assert ours["headers"]["task"] == SCORE_TASK
    assert ours["headers"]["request_id"] == "rid-intake"

    def without_ids(message: dict[str, Any]) -> dict[str, Any]:
        headers = {k: v for k, v in message["headers"].items() if k not in _PER_MESSAGE_HEADERS}
        properties = {
            k: v
            for k, v in message["properties"].items()
            if k not in ("correlation_id", "delivery_tag", "reply_to")  # per message or app
        }
        return {**message, "body": None, "headers": headers, "properties": properties}

    assert without_ids(ours) == without_ids(celerys)


_PER_MESSAGE_HEADERS = ("id", "root_id", "argsrepr", "request_id")
