"""Faults: kill and restart real processes, and prove no accepted comment is lost or decided twice.

Each test runs its own redis-server (AOF, appendfsync always) and its own worker processes, so
killing them never disturbs the session's Redis and worker.
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from collections.abc import Callable
from itertools import count
from typing import Any

import pytest
from flask.testing import FlaskClient

from tests.conftest import Stack, WorkerProcess, wait_for
from workers.celery_app import SCORE_TASK, SCORING_QUEUE, create_celery
from workers.tasks import POISON_ATTEMPTS

pytestmark = [pytest.mark.fault, pytest.mark.integration, pytest.mark.slow]

# kombu's Redis transport keeps messages a worker took but has not acknowledged in this hash
# until the visibility timeout (an hour by default) puts them back on the queue.
KOMBU_UNACKED = "unacked"
_serial = count()


def comment(n: int) -> dict[str, str]:
    return {
        "post_id": "fault-tolerance",
        "comment": f"Comment number {n}: the council vote was closer than the article says.",
        "author": f"Reader {n}",
        "email": f"reader{n}@example.com",
    }


def post(client: FlaskClient) -> tuple[int, str | None]:
    """Post one comment; return the status and, when accepted, its id."""
    response = client.post("/api/v1/comments", json=comment(next(_serial)))
    accepted = response.status_code == 202
    return response.status_code, response.get_json()["id"] if accepted else None


def post_many(client: FlaskClient, n: int) -> list[str]:
    ids = []
    for _ in range(n):
        status, comment_id = post(client)
        assert status == 202
        assert comment_id is not None
        ids.append(comment_id)
    return ids


def score_entries(stack: Stack, comment_id: str) -> list[dict[str, Any]]:
    return [e for e in stack.audit(comment_id) if e["action"] == "score"]


def stranded_by(stack: Stack, ids: list[str]) -> list[str]:
    """Return the ids whose task messages sit in kombu's unacked hash, taken but never acked."""
    raw = "".join(stack.redis.hvals(KOMBU_UNACKED))
    return [i for i in ids if i in raw]


def kill_holding_undecided_work(stack: Stack, proc: WorkerProcess, ids: list[str]) -> list[str]:
    """SIGKILL the worker at a moment it holds undecided comments; return those comments.

    The worker is frozen (SIGSTOP) while its unacked messages are read, so the kill lands
    exactly on the state inspected; if it held nothing undecided, it is thawed and tried again.
    """
    assert proc.process is not None
    group = proc.process.pid
    for _ in range(200):
        os.killpg(group, signal.SIGSTOP)
        held = stranded_by(stack, ids)
        undecided = set(held) - set(stack.decided(held))
        if undecided:
            proc.kill()
            return sorted(undecided)
        os.killpg(group, signal.SIGCONT)
        time.sleep(0.005)
    pytest.fail("the worker never held an undecided comment")


def test_worker_killed_mid_burst_loses_nothing_and_decides_each_comment_once(
    stack_factory: Callable[..., Stack],
) -> None:
    """SIGKILL a worker mid-burst: the sweep re-enqueues what it held; each comment scored once."""
    stack = stack_factory()
    client = stack.client()
    burst = post_many(client, 400)
    first = stack.start_worker(concurrency=2, wait=False)
    wait_for(lambda: len(stack.decided(burst)) >= 30, timeout=30, interval=0.005)
    stranded = kill_holding_undecided_work(stack, first, burst)
    orphaned = set(stack.redis.hkeys(KOMBU_UNACKED))
    assert len(stack.decided(burst)) < len(burst)

    # Intake keeps accepting while no worker runs.
    burst += post_many(client, 50)

    second = stack.start_worker(concurrency=2)
    wait_for(lambda: len(stack.decided(burst)) == len(burst), timeout=60)
    for comment_id in burst:
        assert len(score_entries(stack, comment_id)) == 1, stack.audit(comment_id)
    # kombu did not hand the dead worker's messages back (visibility timeout: an hour); the
    # service's sweep re-enqueued those comments by id, which is what recovered them.
    assert orphaned <= set(stack.redis.hkeys(KOMBU_UNACKED))
    assert set(stack.decided(stranded)) == set(stranded)
    assert "re-enqueued unscored comments" in second.output()

    # A repeated task (as the redelivery after the visibility timeout will be) changes nothing.
    before = {i: (stack.record(i), stack.audit(i)) for i in burst}
    celery = create_celery(stack.settings)
    for comment_id in burst:
        celery.send_task(SCORE_TASK, args=[comment_id])
    live = lambda: set(stack.redis.hkeys(KOMBU_UNACKED)) - orphaned  # noqa: E731
    wait_for(lambda: stack.redis.llen(SCORING_QUEUE) == 0 and not live(), timeout=30)
    assert {i: (stack.record(i), stack.audit(i)) for i in burst} == before


def test_redis_restarted_during_a_burst_keeps_every_accepted_comment(
    stack_factory: Callable[..., Stack],
) -> None:
    """Kill Redis (AOF, appendfsync always) mid-burst: every 202 survives and is decided."""
    stack = stack_factory()
    stack.start_worker(concurrency=2)
    accepted: list[str] = []
    statuses: list[int] = []
    done = threading.Event()

    def burst() -> None:
        client = stack.client()
        try:
            while len(accepted) < 300:
                status, comment_id = post(client)
                statuses.append(status)
                if comment_id:
                    accepted.append(comment_id)
        finally:
            done.set()

    thread = threading.Thread(target=burst)
    thread.start()
    try:
        wait_for(lambda: len(accepted) >= 50, timeout=30)
        stack.server.kill()
        wait_for(lambda: statuses and statuses[-1] == 503, timeout=10)
        stack.server.start()
    finally:
        thread.join(60)
    assert done.is_set()
    assert set(statuses) == {202, 503}, "every request was accepted or refused with 503"
    assert [i for i in accepted if not stack.record(i)] == []
    # Celery's consumer sometimes exits on losing the broker ("Unrecoverable error" while
    # restoring unacked messages, in kombu's Redis transport); the restart policy (compose:
    # unless-stopped) brings it back. Nothing depends on the old worker surviving.
    wait_for(
        lambda: stack.supervise() >= 0 and len(stack.decided(accepted)) == len(accepted),
        timeout=60,
    )
    for comment_id in accepted:
        assert len(score_entries(stack, comment_id)) == 1


def test_redis_down_gives_503_with_retry_after_and_recovers_on_its_own(
    stack_factory: Callable[..., Stack],
) -> None:
    """With Redis down: 503 + Retry-After (problem+json, or HTML for browsers); then recovery."""
    stack = stack_factory()
    client = stack.client()
    assert client.get("/readyz").status_code == 200
    stack.server.kill()

    started = time.monotonic()
    response = client.post("/api/v1/comments", json=comment(next(_serial)))
    assert time.monotonic() - started < 5, "a Redis outage must fail fast, not hang the request"
    assert response.status_code == 503
    assert response.mimetype == "application/problem+json"
    assert response.headers["Retry-After"].isdigit()
    assert response.get_json()["status"] == 503

    browser = client.post(
        "/api/v1/comments",
        data=comment(next(_serial)),
        headers={"Accept": "text/html,application/xhtml+xml"},
    )
    assert browser.status_code == 503
    assert browser.mimetype == "text/html"
    assert "Retry-After" in browser.headers
    assert "Traceback" not in browser.get_data(as_text=True)

    for path in ("/api/v1/comments/" + "0" * 24, "/api/v1/posts/fault-tolerance/comments"):
        assert client.get(path).status_code == 503
    ready = client.get("/readyz")
    assert ready.status_code == 503
    assert ready.get_json()["checks"]["redis"].startswith("unavailable")

    stack.server.start()  # same port, same AOF directory
    wait_for(lambda: client.get("/readyz").status_code == 200, timeout=10)
    status, comment_id = post(client)
    assert status == 202
    assert stack.record(str(comment_id))["state"] == "queued"


def test_a_full_redis_gives_503_with_retry_after_and_the_comment_can_be_resent(
    stack_factory: Callable[..., Stack],
) -> None:
    """With noeviction, a Redis at maxmemory refuses writes (OOM): the reader is told to retry
    (503 + Retry-After), not shown a 500, and the same post succeeds once there is room."""
    stack = stack_factory()
    client = stack.client()
    stack.redis.config_set("maxmemory", "1")  # below what it already uses: every write refused
    try:
        body = comment(next(_serial))
        response = client.post("/api/v1/comments", json=body)
        assert response.status_code == 503, response.get_data(as_text=True)
        assert response.headers["Retry-After"].isdigit()
        assert response.mimetype == "application/problem+json"
    finally:
        stack.redis.config_set("maxmemory", "0")
    again = client.post("/api/v1/comments", json=body)
    assert again.status_code == 202
    assert stack.record(again.get_json()["id"])["state"] == "queued"


@pytest.mark.parametrize("refusal", ["OutOfMemoryError", "ReadOnlyError"])
def test_writes_refused_by_a_full_redis_or_a_replica_are_retried_like_a_lost_connection(
    stack_factory: Callable[..., Stack], monkeypatch: pytest.MonkeyPatch, refusal: str
) -> None:
    """A full Redis (maxmemory, noeviction) or a replica after a failover refuses writes for a
    while: the batch waits and retries, as for a lost connection (then would leave its comments
    to the sweep). It must not take the poison path, which scores each comment alone and
    charges it a failed attempt towards being held."""
    import redis as redis_lib

    import workers.tasks as tasks
    from workers.runtime import Runtime

    stack = stack_factory()
    (comment_id,) = post_many(stack.client(), 1)
    runtime = Runtime(stack.settings.with_overrides(task_max_retries=2))
    real = tasks.score_and_decide_many
    calls: list[int] = []

    def refused_once(rt: Runtime, ids: list[str]) -> object:
        calls.append(1)
        if len(calls) == 1:
            raise getattr(redis_lib.exceptions, refusal)("refused")
        return real(rt, ids)

    def poison_path(*args: object) -> str:
        raise AssertionError("scored one at a time, as a poison batch")

    monkeypatch.setattr(tasks, "score_and_decide_many", refused_once)
    monkeypatch.setattr(tasks, "score_one", poison_path)
    outcomes = tasks.score_jobs(create_celery(runtime.settings), runtime, [(comment_id, "r")])
    assert outcomes == {comment_id: "decided"} and len(calls) == 2
    assert stack.record(comment_id).get("attempts", "0") == "0"


def test_a_damaged_record_is_still_held_for_a_moderator_and_spoils_no_other_comment(
    stack_factory: Callable[..., Stack],
) -> None:
    """A record that lost a field fails scoring and then failed the ordinary hold too: it
    stayed queued, in no moderation queue, re-sent by every sweep forever, and its exception
    cut the batch short (comments after it left to the sweep). Now it is held in pending from
    what is left, and the batch goes on."""
    from workers.runtime import Runtime
    from workers.tasks import POISON_ATTEMPTS, score_jobs

    stack = stack_factory()
    client = stack.client()
    runtime = Runtime(stack.settings)
    app = create_celery(runtime.settings)
    damaged, before, after = post_many(client, 3)
    stack.redis.hdel(f"mod:c:{damaged}", "post_id")
    for _ in range(POISON_ATTEMPTS - 1):
        assert score_jobs(app, runtime, [(damaged, "")]) == {damaged: "retried"}
    outcomes = score_jobs(app, runtime, [(before, ""), (damaged, ""), (after, "")])
    assert outcomes == {before: "decided", damaged: "decided", after: "decided"}
    record = stack.record(damaged)
    assert (record["state"], record["queue"]) == ("scored", "pending")
    assert json.loads(record["decision_reasons"]) == ["scoring_failed"]
    assert stack.redis.zscore("mod:q:pending", damaged) is not None
    assert stack.redis.zscore("mod:unscored", damaged) is None  # the sweep leaves it be
    assert [e["action"] for e in stack.audit(damaged)] == ["hold"]


def test_a_record_that_lost_its_arrival_time_is_still_decided_into_a_queue(
    stack_factory: Callable[..., Stack],
) -> None:
    """The transition script indexed a comment by its stored arrival time after its first
    writes: without one, it failed half-way (Redis keeps a script's earlier writes), leaving
    the comment scored but in no queue, unscored no more, and invisible to everyone."""
    from workers.runtime import Runtime
    from workers.tasks import score_jobs

    stack = stack_factory()
    runtime = Runtime(stack.settings)
    (comment_id,) = post_many(stack.client(), 1)
    stack.redis.hdel(f"mod:c:{comment_id}", "created_us")
    outcomes = score_jobs(create_celery(runtime.settings), runtime, [(comment_id, "")])
    assert outcomes == {comment_id: "decided"}
    queue = stack.record(comment_id)["queue"]
    assert stack.redis.zscore(f"mod:q:{queue}", comment_id) is not None
    for index in ("spam", "toxic", "uncertainty"):
        assert stack.redis.zscore(f"mod:q:{queue}:by:{index}", comment_id) is not None


def test_a_damaged_record_held_as_it_is_gets_its_webhook_event(
    stack_factory: Callable[..., Stack],
) -> None:
    """Decision events go out through the outbox only: the last-resort hold records its event
    too, or the site would never learn the comment was held."""
    from workers.runtime import Runtime
    from workers.tasks import POISON_ATTEMPTS, score_jobs

    stack = stack_factory()
    hooked = stack.settings.with_overrides(
        webhook_url="http://127.0.0.1:9/hook", webhook_secret="s"
    )
    runtime = Runtime(hooked)
    app = create_celery(hooked)
    (damaged,) = post_many(stack.client(), 1)
    stack.redis.hdel(f"mod:c:{damaged}", "post_id")
    for _ in range(POISON_ATTEMPTS):
        score_jobs(app, runtime, [(damaged, "")])
    assert stack.record(damaged)["queue"] == "pending"
    events = [e for e in stack.redis.zrange("mod:outbox", 0, -1) if e.startswith(damaged)]
    queued = "".join(str(m) for m in stack.redis.lrange("webhooks", 0, -1))
    assert f"{damaged}.1" in events or f"{damaged}.1" in queued


def test_a_trusted_authors_comments_in_one_batch_are_decided_as_if_one_at_a_time(
    stack_factory: Callable[..., Stack],
) -> None:
    """Trust depends on the author's earlier decisions: a spam rejection revokes it. The batch
    path read every author's history before writing any decision, so a borderline comment
    sent right after a trusted author's spam was published in a batch and held one at a
    time. Both paths must decide alike, whichever one a batch takes."""
    from workers.moderation import apply_decision
    from workers.pipeline import score_and_decide, score_and_decide_many
    from workers.runtime import Runtime

    spam_text = (
        "CLICK HERE to WIN a FREE iPhone!!! Visit http://free-prizes.example.biz now, "
        "limited offer, call 0800 123 456 to claim your cash prize"
    )
    borderline = "Great article, also see my site for more cheap deals on loans"
    stack = stack_factory()  # no worker: only this test decides
    clf = Runtime(stack.settings).classifier()
    s_spam, s_border = clf.score(spam_text).spam, clf.score(borderline).spam
    assert s_border < s_spam
    runtime = Runtime(
        stack.settings.with_overrides(
            auto_approve_after=1,
            spam_reject_threshold=(s_border + s_spam) / 2,  # the spam: rejected
            spam_hold_threshold=s_border / 2,  # the borderline one: held unless trusted
            toxic_hold_threshold=1.0,
        )
    )
    client = stack.client()
    decided = {}
    for path in ("batch", "single"):

        def send(text: str, path: str = path) -> str:
            body = {"post_id": "p", "comment": text, "author": "T", "email": f"{path}@x.org"}
            return str(client.post("/api/v1/comments", json=body).get_json()["id"])

        first = send(f"A first, fine remark ({path}).")
        assert apply_decision(runtime.store, first, "approve", "root").found  # now trusted
        spam, border = send(spam_text), send(borderline)
        if path == "batch":
            score_and_decide_many(runtime, [spam, border])
        else:
            score_and_decide(runtime, spam)
            score_and_decide(runtime, border)
        assert stack.record(spam)["queue"] == "spam"
        decided[path] = stack.record(border)["queue"]
    assert decided == {"batch": "pending", "single": "pending"}


def test_without_a_worker_comments_wait_as_pending_and_are_decided_when_one_returns(
    stack_factory: Callable[..., Stack],
) -> None:
    stack = stack_factory()
    client = stack.client()
    ids = post_many(client, 40)
    for comment_id in ids[:5]:
        assert client.get(f"/api/v1/comments/{comment_id}").get_json()["status"] == "pending"
    assert stack.decided(ids) == []
    assert stack.redis.llen(SCORING_QUEUE) == len(ids)

    stack.start_worker(concurrency=1)
    wait_for(lambda: len(stack.decided(ids)) == len(ids), timeout=30)
    assert all(len(score_entries(stack, i)) == 1 for i in ids)


def test_poison_comment_is_retried_a_bounded_number_of_times_then_held_without_blocking(
    stack_factory: Callable[..., Stack],
) -> None:
    """A corrupted record (its text field lost) is retried, held as scoring_failed; others flow."""
    # The sweep is slowed down so the attempts counted are the task's own retries.
    # Every comment is held (spam hold threshold 0, never rejected), so the poison comment
    # shares the pending queue with scored comments created before and after it: its place in
    # a sort then cannot come from its age, nor from being alone.
    stack = stack_factory(
        MODERATION_SWEEP_AFTER_SECONDS="60",
        MODERATION_SPAM_HOLD_THRESHOLD="0",
        MODERATION_SPAM_REJECT_THRESHOLD="1",
    )
    client = stack.client()
    earlier = post_many(client, 15)
    status, poison = post(client)
    assert status == 202 and poison
    # A partial write or a bad manual edit: the record exists but has no text to score.
    stack.redis.hdel(f"mod:c:{poison}", "comment")
    after = post_many(client, 15)
    others = earlier + after

    worker = stack.start_worker(concurrency=1)
    wait_for(lambda: len(stack.decided(others)) == len(others), timeout=30)
    wait_for(lambda: stack.record(poison).get("state") == "scored", timeout=30)

    record = stack.record(poison)
    assert record["queue"] == "pending"
    assert record["decision_label"] == "error"
    assert json.loads(record["decision_reasons"]) == ["scoring_failed"]
    assert int(record["attempts"]) == POISON_ATTEMPTS
    holds = [e for e in stack.audit(poison) if e["action"] == "hold"]
    assert [h["reasons"] for h in holds] == [["scoring_failed"]]
    assert "scoring failed" in worker.output()

    moderator = {"Authorization": f"Bearer {stack.settings.moderator_token}"}
    queue = client.get("/api/v1/moderation/queue?status=pending&limit=200", headers=moderator)
    held = [item for item in queue.get_json()["items"] if item["id"] == poison]
    assert held and held[0]["decision_reasons"] == ["scoring_failed"]
    # Newest first, it is in the middle of the pending queue, neither first nor last.
    by_age = [item["id"] for item in queue.get_json()["items"]]
    assert queue.get_json()["next_cursor"] is None
    assert by_age == [*after[::-1], poison, *earlier[::-1]]
    # Every view of the queue shows it: first by uncertainty (its scores are unknown), after
    # every scored comment by spam or toxic score, which come highest first.
    for sort, position in (("uncertainty", 0), ("spam", -1), ("toxic", -1)):
        page = client.get(
            f"/api/v1/moderation/queue?status=pending&sort={sort}&limit=200", headers=moderator
        ).get_json()
        assert page["next_cursor"] is None
        ids = [item["id"] for item in page["items"]]
        assert sorted(ids) == sorted(by_age), sort
        assert ids[position] == poison, sort
        if sort != "uncertainty":
            scores = [item["scores"][sort] for item in page["items"] if item["id"] != poison]
            assert None not in scores and scores == sorted(scores, reverse=True), sort
