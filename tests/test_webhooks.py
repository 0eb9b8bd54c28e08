"""Webhooks as a receiving site and an operator see them, against real local HTTP servers.

Slow, hung, redirecting, failing and half-answering sites; deletion events; retries, drops and
their metric; and scoring that never waits for a site.
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import itertools
import json
import logging
import math
import re
import socket
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import redis as redis_lib
from celery import Celery
from flask.testing import FlaskClient
from prometheus_client import REGISTRY

from service import create_app
from tests.conftest import DropOneReply, Stack, WebhookWorkerProcess, wait_for
from workers import webhooks
from workers.celery_app import (
    OUTBOX_TASK,
    PURGE_TASK,
    WEBHOOK_DELETION_TASK,
    WEBHOOK_QUEUE,
    WEBHOOK_TASK,
    create_celery,
)
from workers.moderation import create_token
from workers.pipeline import score_and_decide, score_and_decide_many
from workers.privacy import PUBLIC_FIELDS
from workers.runtime import Runtime
from workers.settings import Settings
from workers.tasks import (
    WEBHOOK_MAX_RETRIES,
    WEBHOOK_RETRY_FIRST_DELAY,
    WEBHOOK_RETRY_MAX_DELAY,
    apply_retention,
    score_jobs,
    webhook_retry_delay,
)
from workers.webhooks import (
    DEADLINE_SECONDS,
    SIGNATURE_HEADER,
    WebhookError,
    WebhookRedirect,
    deliver,
    post_signed,
    sign,
    verify,
)

SECRET = "site-shared-secret"
EMAIL = "hook.reader@example.com"
AUTHOR = "Hook Reader"
TEXT = "A thoughtful note on the harbour plans, thanks for the reporting."


class Receiver:
    """A site on a free 127.0.0.1 port; the path picks how it behaves."""

    def __init__(self, ipv6: bool = False) -> None:
        self.requests: list[tuple[str, dict[str, str], bytes]] = []
        self.bytes_sent = 0
        self.release = threading.Event()  # set at teardown: hung handlers return
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                receiver.requests.append((self.path, dict(self.headers), body))
                name, _, arg = self.path.strip("/").partition("/")
                # OSError: the deliverer hung up, which is what a deadline or a byte cap does.
                with contextlib.suppress(OSError):
                    getattr(receiver, "on_" + name.replace("-", "_"))(self, arg)

        class Server(ThreadingHTTPServer):
            address_family = socket.AF_INET6 if ipv6 else socket.AF_INET

        self.server = Server(("::" if ipv6 else "127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.server.handle_error = lambda *args: None  # type: ignore[method-assign]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.server.server_port}{path}"

    def close(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()

    # behaviours ----------------------------------------------------------------------------

    def on_status(self, handler: BaseHTTPRequestHandler, code: str) -> None:
        handler.send_response(int(code))
        handler.send_header("Content-Length", "0")
        handler.end_headers()

    def on_redirect(self, handler: BaseHTTPRequestHandler, arg: str) -> None:
        code, _, target = arg.partition("/")
        handler.send_response(int(code))
        handler.send_header("Location", base64.urlsafe_b64decode(target).decode())
        handler.send_header("Content-Length", "0")
        handler.end_headers()

    def on_hang(self, handler: BaseHTTPRequestHandler, _: str) -> None:
        self.release.wait(60)

    def on_trickle_body(self, handler: BaseHTTPRequestHandler, _: str) -> None:
        handler.send_response(200)
        handler.send_header("Content-Length", "1000")
        handler.end_headers()
        for _ in range(1000):
            handler.wfile.write(b"x")
            handler.wfile.flush()
            if self.release.wait(0.05):
                return

    def on_trickle_headers(self, handler: BaseHTTPRequestHandler, _: str) -> None:
        handler.wfile.write(b"HTTP/1.1 200 OK\r\nX-Slow: ")
        for _ in range(1000):
            handler.wfile.write(b"a")
            handler.wfile.flush()
            if self.release.wait(0.05):
                return

    def on_huge(self, handler: BaseHTTPRequestHandler, _: str) -> None:
        chunk = b"a" * (1 << 20)
        handler.send_response(200)
        handler.send_header("Content-Length", str(300 * len(chunk)))
        handler.end_headers()
        for _ in range(300):
            handler.wfile.write(chunk)
            self.bytes_sent += len(chunk)

    def on_cut_short(self, handler: BaseHTTPRequestHandler, _: str) -> None:
        handler.send_response(200)
        handler.send_header("Content-Length", "1000")
        handler.end_headers()
        handler.wfile.write(b"short")
        handler.close_connection = True

    def on_garbage(self, handler: BaseHTTPRequestHandler, _: str) -> None:
        handler.wfile.write(b"garbage\r\n\r\n")
        handler.close_connection = True

    def on_hang_up(self, handler: BaseHTTPRequestHandler, _: str) -> None:
        handler.close_connection = True  # no answer at all


@pytest.fixture
def receivers() -> Iterator[Callable[[], Receiver]]:
    made: list[Receiver] = []

    def make() -> Receiver:
        made.append(Receiver())
        return made[-1]

    yield make
    for receiver in made:
        receiver.close()


@pytest.fixture
def receiver(receivers: Callable[[], Receiver]) -> Receiver:
    return receivers()


@pytest.fixture
def broker(redis: redis_lib.Redis) -> redis_lib.Redis:
    """The test database's Celery queues, emptied of earlier tests' webhook messages."""
    redis.delete(WEBHOOK_QUEUE)
    return redis


def hooked(settings: Settings, url: str) -> Settings:
    return settings.with_overrides(webhook_url=url, webhook_secret=SECRET)


def stored_comment(settings: Settings, post_id: str = "harbour", email: str = EMAIL) -> str:
    """Post a comment through the API (no worker on this database) and return its id."""
    client = create_app(settings, configure_logs=False).test_client()
    body = {"post_id": post_id, "comment": TEXT, "author": AUTHOR, "email": email}
    response = client.post("/api/v1/comments", json=body)
    assert response.status_code == 202, response.get_json()
    return str(response.get_json()["id"])


def queued_webhooks(broker: redis_lib.Redis) -> list[tuple[str, list[Any]]]:
    """Return (task name, args) of every message waiting in the webhooks queue, oldest first."""
    found = []
    for raw in reversed(broker.lrange(WEBHOOK_QUEUE, 0, -1)):
        message = json.loads(raw)
        args = json.loads(base64.b64decode(message["body"]))[0]
        found.append((message["headers"]["task"], args))
    return found


def deliveries(outcome: str) -> float:
    value = REGISTRY.get_sample_value("moderation_webhook_deliveries_total", {"outcome": outcome})
    return value or 0.0


# -- slow, hung and huge answers ----------------------------------------------------------------


@pytest.mark.parametrize("behaviour", ["hang", "trickle-body", "trickle-headers"])
def test_a_hung_or_trickling_site_holds_a_delivery_no_longer_than_its_deadline(
    receiver: Receiver, behaviour: str
) -> None:
    """Socket timeouts alone bound each read: a byte every 50 ms would hold it for a minute."""
    started = time.monotonic()
    with pytest.raises(WebhookError, match=r"no complete answer within 0\.5 s"):
        post_signed(receiver.url(f"/{behaviour}"), SECRET, b"{}", deadline=0.5)
    assert time.monotonic() - started < 1.5
    assert len(receiver.requests) == 1  # the site did get the POST; it just never finished


HUNG_HOST = "hooks.example.test"


@pytest.fixture
def hung_resolver(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Look-ups of HUNG_HOST get no answer (until the test ends); other hosts resolve."""
    release = threading.Event()
    real_getaddrinfo = socket.getaddrinfo

    def hung_for_one_host(host: Any, *args: Any, **kwargs: Any) -> Any:
        if host == HUNG_HOST:
            release.wait(30)
        return real_getaddrinfo(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", hung_for_one_host)
    yield
    release.set()


def test_a_resolver_that_never_answers_holds_a_delivery_no_longer_than_its_deadline(
    hung_resolver: None,
) -> None:
    """http.client's own look-up has no timeout: a hung DNS server held it for tens of seconds."""
    started = time.monotonic()
    with pytest.raises(WebhookError, match=r"no complete answer within 0\.5 s"):
        post_signed(f"http://{HUNG_HOST}/hook", SECRET, b"{}", deadline=0.5)
    assert time.monotonic() - started < 1.5


def test_each_address_of_a_host_gets_only_what_is_left_of_the_deadline(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Three black-holed addresses once took three full timeouts (30 s for a 10 s delivery)."""
    addresses = [
        (socket.AF_INET, socket.SOCK_STREAM, 6, "", (f"192.0.2.{i}", 80)) for i in (1, 2, 3)
    ]
    tried: list[tuple[Any, float]] = []

    def slow_then_black_hole(
        family: int, kind: int, proto: int, sockaddr: Any, timeout: float, source: Any
    ) -> socket.socket:
        tried.append((sockaddr, timeout))
        if len(tried) == 1:
            time.sleep(0.3)  # the first address refuses, late
            raise ConnectionRefusedError
        time.sleep(timeout)  # a SYN that nobody answers
        raise TimeoutError

    monkeypatch.setattr(socket, "getaddrinfo", lambda *args, **kwargs: addresses)
    monkeypatch.setattr(webhooks, "_connect", slow_then_black_hole)
    started = time.monotonic()
    with pytest.raises(WebhookError, match=r"no complete answer within 0\.5 s"):
        post_signed("http://hooks.example.test/hook", SECRET, b"{}", deadline=0.5)
    assert time.monotonic() - started < 0.8
    assert [address for address, _ in tried] == [("192.0.2.1", 80), ("192.0.2.2", 80)]
    assert tried[1][1] <= 0.5 - 0.3 + 0.05  # what was left, not a fresh 0.5 s


def test_look_ups_a_hung_resolver_never_answers_are_capped(
    hung_resolver: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each timed-out attempt leaves its look-up thread behind; retries cannot pile them up."""

    def pending() -> int:
        return sum(t.name == "webhook-dns" for t in threading.enumerate())

    monkeypatch.setattr(webhooks, "_PENDING_LOOKUPS", threading.BoundedSemaphore(2))
    for _ in range(4):
        with pytest.raises(WebhookError):
            post_signed(f"http://{HUNG_HOST}/hook", SECRET, b"{}", deadline=0.2)
        assert pending() <= 2


def test_a_link_local_ipv6_site_is_reached_with_its_scope() -> None:
    """Connecting to a resolved address keeps the whole socket address, scope id included."""
    link_local = (
        [line.split() for line in Path("/proc/net/if_inet6").read_text().splitlines()]
        if Path("/proc/net/if_inet6").exists()
        else []
    )
    found = [(a, dev) for a, _, _, _, _, dev in link_local if a.startswith("fe80")]
    if not found:
        pytest.skip("no link-local IPv6 address on this machine")
    raw, dev = found[0]
    address = ":".join(raw[i : i + 4] for i in range(0, 32, 4))
    receiver = Receiver(ipv6=True)
    try:
        url = f"http://[{address}%{dev}]:{receiver.server.server_port}/status/204"
        assert post_signed(url, SECRET, b"{}", deadline=5) == 204
        assert [path for path, _, _ in receiver.requests] == ["/status/204"]
    finally:
        receiver.close()


def test_a_site_named_by_host_name_is_looked_up_and_receives_the_event(
    receiver: Receiver,
) -> None:
    url = receiver.url("/status/204").replace("127.0.0.1", "localhost")
    assert post_signed(url, SECRET, b"{}", deadline=5) == 204
    assert [path for path, _, _ in receiver.requests] == ["/status/204"]


def test_a_host_name_that_does_not_resolve_is_worth_retrying(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def unknown(host: Any, *args: Any, **kwargs: Any) -> Any:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(socket, "getaddrinfo", unknown)
    with pytest.raises(WebhookError, match="gaierror"):
        post_signed("http://no-such-host.invalid/hook", SECRET, b"{}", deadline=2)


def test_a_huge_answer_is_not_read_only_its_status_counts(
    receiver: Receiver, settings: Settings, redis: redis_lib.Redis
) -> None:
    store = Runtime(settings).store
    comment_id = stored_comment(settings)
    started = time.monotonic()
    assert deliver(store, receiver.url("/huge"), SECRET, comment_id, "e1") == "sent"
    assert time.monotonic() - started < 2
    # The site stopped at what the sockets' buffers hold, far from its 300 MB.
    time.sleep(0.2)
    assert receiver.bytes_sent < 64 * (1 << 20)
    assert store.webhook_sent(comment_id, "e1")


def test_the_delivery_deadline_is_ten_seconds_inside_the_tasks_time_limits(
    settings: Settings,
) -> None:
    """The task's limits are a backstop (prefork): they never cut a delivery still in time."""
    celery = create_celery(hooked(settings, "http://127.0.0.1:1/hook"))
    assert DEADLINE_SECONDS == 10.0
    for name in (WEBHOOK_TASK, WEBHOOK_DELETION_TASK):
        task = celery.tasks[name]
        assert DEADLINE_SECONDS < task.soft_time_limit < task.time_limit


# -- redirects, failures, answers cut short ------------------------------------------------------


@pytest.mark.parametrize("code", [301, 302, 303, 304, 307, 308])
def test_a_redirect_is_never_followed_and_the_event_is_not_counted_as_delivered(
    receivers: Callable[[], Receiver], settings: Settings, redis: redis_lib.Redis, code: int
) -> None:
    site, elsewhere = receivers(), receivers()
    target = base64.urlsafe_b64encode(elsewhere.url("/status/200").encode()).decode()
    store = Runtime(settings).store
    comment_id = stored_comment(settings)
    with pytest.raises(WebhookRedirect, match=f"answered {code}"):
        deliver(store, site.url(f"/redirect/{code}/{target}"), SECRET, comment_id, "e1")
    assert elsewhere.requests == []  # neither the event nor its signature went anywhere else
    assert not store.webhook_sent(comment_id, "e1")  # so it will be sent again


@pytest.mark.parametrize("code", [500, 502, 503, 429])
def test_a_server_error_or_429_is_worth_retrying(receiver: Receiver, code: int) -> None:
    with pytest.raises(WebhookError, match=f"answered {code}"):
        post_signed(receiver.url(f"/status/{code}"), SECRET, b"{}", deadline=2)


@pytest.mark.parametrize(
    ("behaviour", "error"),
    [("cut-short", "IncompleteRead"), ("garbage", "BadStatusLine"), ("hang-up", "Disconnected")],
)
def test_an_answer_cut_short_is_worth_retrying(
    receiver: Receiver, behaviour: str, error: str
) -> None:
    """http.client's errors are not OSErrors: they used to escape and end the task for good."""
    with pytest.raises(WebhookError, match=error):
        post_signed(receiver.url(f"/{behaviour}"), SECRET, b"{}", deadline=2)


def test_the_site_receives_a_signed_event_and_a_4xx_refuses_it(receiver: Receiver) -> None:
    body = b'{"id": "x"}'
    assert post_signed(receiver.url("/status/204"), SECRET, body, deadline=2) == 204
    _, headers, received = receiver.requests[-1]
    assert received == body and verify(SECRET, headers[SIGNATURE_HEADER], body)
    assert post_signed(receiver.url("/status/410"), SECRET, body, deadline=2) == 410


def test_verify_answers_false_for_any_malformed_header_and_true_for_a_spaced_one() -> None:
    now = int(time.time())
    for header in (f"t={now},v1=é", f"t={now},v1=\udc80", f"t={now}", "garbage", "", f"t={now},"):
        assert verify(SECRET, header, b"{}") is False, header
    good = sign(SECRET, now, b"{}")
    assert verify(SECRET, good, b"{}") and verify(SECRET, good.replace(",", ", "), b"{}")
    assert not verify(SECRET, good, b"{ }")


def test_verify_refuses_an_event_signed_more_than_five_minutes_away_either_side() -> None:
    """A replayed event (or one with a forged far-future stamp) fails even when its HMAC is
    right: what a site copying verify() relies on. The window is verify's default, 300 s."""
    body = b'{"id": "x"}'
    now = time.time()
    # Stamps are whole seconds: rounded so that the 301 s ones are at least 301 s away and
    # the 299 s ones less than 300 s away, whatever the fraction of a second.
    replayed = sign(SECRET, int(now) - 301, body)
    assert verify(SECRET, replayed, body) is False
    assert verify(SECRET, replayed, body, tolerance=600) is True  # refused for its age alone
    assert verify(SECRET, sign(SECRET, math.ceil(now) - 299, body), body) is True
    assert verify(SECRET, sign(SECRET, math.ceil(now) + 299, body), body) is True
    assert verify(SECRET, sign(SECRET, math.ceil(now) + 301, body), body) is False
    assert verify(SECRET, sign(SECRET, math.ceil(now) + 86400 * 365, body), body) is False


# -- retries, drops, the metric and the log ----------------------------------------------------


def test_retries_wait_at_least_five_seconds_and_back_off_to_half_an_hour() -> None:
    for _ in range(50):
        delays = [webhook_retry_delay(n) for n in range(WEBHOOK_MAX_RETRIES)]
        assert delays[0] >= WEBHOOK_RETRY_FIRST_DELAY == 5.0
        assert all(later > earlier for earlier, later in itertools.pairwise(delays[:5]))
        assert max(delays) <= WEBHOOK_RETRY_MAX_DELAY * 1.25 < 3600  # the visibility timeout


def retry_lines(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.message.startswith("webhook delivery failed")]


def error_lines(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.levelno >= logging.ERROR]


def test_a_failing_site_gets_spaced_retries_then_the_event_is_dropped_with_an_error_line(
    receiver: Receiver, settings: Settings, redis: redis_lib.Redis, caplog: pytest.LogCaptureFixture
) -> None:
    """apply() runs Celery's retries at once (eagerly); the waits are in the log lines."""
    celery = create_celery(hooked(settings, receiver.url("/status/500")))
    comment_id = stored_comment(settings)
    failed, dropped = deliveries("failed_attempt"), deliveries("dropped")
    with caplog.at_level(logging.WARNING, logger="workers.tasks"):
        result = celery.tasks[WEBHOOK_TASK].apply(args=[comment_id, f"{comment_id}.1"])
    assert result.get() == "dropped"
    assert len(receiver.requests) == WEBHOOK_MAX_RETRIES + 1
    waits = [r.retry_in_s for r in retry_lines(caplog)]  # type: ignore[attr-defined]
    assert len(waits) == WEBHOOK_MAX_RETRIES and waits[0] >= 5.0  # never "Retry in 0s"
    assert waits[:6] == sorted(waits[:6]) and sum(waits) > 2 * 3600
    assert deliveries("failed_attempt") == failed + WEBHOOK_MAX_RETRIES
    assert deliveries("dropped") == dropped + 1
    (line,) = error_lines(caplog)
    assert "dropped" in line.message and line.error == "receiver answered 500"  # type: ignore[attr-defined]
    assert line.comment_id == comment_id and line.event == "comment.decided"  # type: ignore[attr-defined]
    assert EMAIL not in caplog.text and AUTHOR not in caplog.text


def test_a_redirecting_url_is_retried_and_logged_as_a_misconfiguration(
    receivers: Callable[[], Receiver],
    settings: Settings,
    redis: redis_lib.Redis,
    caplog: pytest.LogCaptureFixture,
) -> None:
    site, elsewhere = receivers(), receivers()
    target = base64.urlsafe_b64encode(elsewhere.url("/status/200").encode()).decode()
    celery = create_celery(hooked(settings, site.url(f"/redirect/307/{target}")))
    comment_id = stored_comment(settings)
    with caplog.at_level(logging.WARNING, logger="workers.tasks"):
        result = celery.tasks[WEBHOOK_TASK].apply(args=[comment_id, f"{comment_id}.1"])
    assert result.get() == "dropped"  # never "sent": the site never had it
    assert len(site.requests) == WEBHOOK_MAX_RETRIES + 1 and elsewhere.requests == []
    misconfigured = [r.message for r in error_lines(caplog) if "redirect" in r.message]
    assert len(misconfigured) == WEBHOOK_MAX_RETRIES + 1
    assert "MODERATION_WEBHOOK_URL" in misconfigured[0]


def test_a_4xx_drops_the_event_at_once_with_an_error_line(
    receiver: Receiver, settings: Settings, redis: redis_lib.Redis, caplog: pytest.LogCaptureFixture
) -> None:
    celery = create_celery(hooked(settings, receiver.url("/status/404")))
    comment_id = stored_comment(settings)
    dropped = deliveries("dropped")
    with caplog.at_level(logging.WARNING, logger="workers.tasks"):
        result = celery.tasks[WEBHOOK_TASK].apply(args=[comment_id, f"{comment_id}.1"])
    assert result.get() == "dropped" and len(receiver.requests) == 1
    assert deliveries("dropped") == dropped + 1
    (line,) = error_lines(caplog)
    assert line.comment_id == comment_id and line.error == "refused:404"  # type: ignore[attr-defined]


def test_a_delivered_event_is_counted(
    receiver: Receiver, settings: Settings, redis: redis_lib.Redis
) -> None:
    celery = create_celery(hooked(settings, receiver.url("/status/200")))
    comment_id = stored_comment(settings)
    before = deliveries("delivered")
    assert celery.tasks[WEBHOOK_TASK].apply(args=[comment_id, f"{comment_id}.1"]).get() == "sent"
    assert deliveries("delivered") == before + 1


# -- deletion events ----------------------------------------------------------------------------


def deliver_queued(
    settings: Settings, broker: redis_lib.Redis, site: Receiver
) -> list[dict[str, Any]]:
    """Run every queued webhook message through its task; return the events the site got."""
    celery = create_celery(settings)
    for name, args in queued_webhooks(broker):
        assert celery.tasks[name].apply(args=args).get() == "sent"
    events = []
    for _, headers, body in site.requests:
        assert verify(SECRET, headers[SIGNATURE_HEADER], body)
        events.append(json.loads(body))
    return events


def assert_only_ids(event: dict[str, Any]) -> None:
    text = json.dumps(event)
    assert EMAIL not in text and AUTHOR not in text and TEXT not in text
    assert set(event) == {"id", "type", "comment", "reason", "after"}
    assert set(event["comment"]) == {"id", "post_id"}


def test_a_deleted_comment_reaches_the_site_as_a_comment_deleted_event(
    receiver: Receiver, settings: Settings, broker: redis_lib.Redis
) -> None:
    hook = hooked(settings, receiver.url("/status/204"))
    comment_id = stored_comment(hook)
    client = create_app(hook, configure_logs=False).test_client()
    admin = {"Authorization": "Bearer " + create_token(Runtime(hook).store, "root", "admin")}
    score_and_decide(Runtime(hook), comment_id)
    approve = {"action": "approve"}
    url = f"/api/v1/moderation/comments/{comment_id}/decision"
    assert client.post(url, json=approve, headers=admin).status_code == 200
    # The model's decision, then the approval: the site shows the comment.
    published = deliver_queued(hook, broker, receiver)[-1]
    assert published["type"] == "comment.decided" and published["comment"]["comment"] == TEXT
    assert published["decided_by"] == "moderator"
    broker.delete(WEBHOOK_QUEUE)
    assert client.post(url, json={"action": "delete"}, headers=admin).status_code == 200
    deleted = deliver_queued(hook, broker, receiver)[-1]
    assert deleted["type"] == "comment.deleted"
    assert deleted["comment"] == {"id": comment_id, "post_id": "harbour"}
    assert deleted["reason"] == "deleted" and deleted["id"].startswith(comment_id)
    assert_only_ids(deleted)
    # Ordering for the site: the approval already sent is a change the deletion follows…
    published_n = int(published["id"].rsplit(".", 1)[1])
    assert deleted["after"] >= published_n
    # …and an admin undoing the delete sends a decision numbered after it, so a site that
    # ignores decisions up to "after" still shows the restored comment.
    broker.delete(WEBHOOK_QUEUE)
    assert client.post("/api/v1/moderation/undo", headers=admin).status_code == 200
    restored = deliver_queued(hook, broker, receiver)[-1]
    assert restored["type"] == "comment.decided"
    assert int(restored["id"].rsplit(".", 1)[1]) > deleted["after"]


def test_erasing_a_reader_sends_a_comment_deleted_event_per_comment(
    receiver: Receiver, settings: Settings, broker: redis_lib.Redis
) -> None:
    hook = hooked(settings, receiver.url("/status/200"))
    ids = {stored_comment(hook, post_id): post_id for post_id in ("harbour", "budget")}
    kept = stored_comment(hook, "harbour", email="someone.else@example.com")
    client = create_app(hook, configure_logs=False).test_client()
    admin = {"Authorization": "Bearer " + create_token(Runtime(hook).store, "dpo", "admin")}
    response = client.post("/api/v1/privacy/erase", json={"email": EMAIL}, headers=admin)
    assert response.status_code == 200 and response.get_json()["comments_deleted"] == 2
    events = deliver_queued(hook, broker, receiver)
    assert {e["comment"]["id"]: e["comment"]["post_id"] for e in events} == ids
    assert {e["reason"] for e in events} == {"erased"} and kept not in json.dumps(events)
    for event in events:
        assert_only_ids(event)


def rejected_comment_past_retention(hook: Settings) -> str:
    """Store a comment, reject it, and wait past a retention period of 86 ms (1e-6 days)."""
    store = Runtime(hook).store
    comment_id = stored_comment(hook)
    store.transition(
        store.get(comment_id),
        "rejected",
        allowed_states=None,
        fields={"state": "moderated"},
        audit={"actor": "t", "action": "reject"},
    )
    time.sleep(0.1)
    return comment_id


def test_a_rejected_comment_expiring_sends_a_comment_deleted_event(
    receiver: Receiver, settings: Settings, broker: redis_lib.Redis
) -> None:
    hook = hooked(settings, receiver.url("/status/200")).with_overrides(
        retention_rejected_days=1e-6
    )
    comment_id = rejected_comment_past_retention(hook)
    purged = create_celery(hook).tasks[PURGE_TASK].apply().get()
    assert purged["comments_deleted"] == 1
    (event,) = deliver_queued(hook, broker, receiver)
    assert event["type"] == "comment.deleted" and event["reason"] == "expired"
    assert event["comment"] == {"id": comment_id, "post_id": "harbour"}


def test_the_operators_manual_purge_sends_the_same_events(
    receiver: Receiver,
    settings: Settings,
    settings_values: dict[str, str],
    broker: redis_lib.Redis,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """`moderation-admin purge` removes what the hourly task would, and tells the site."""
    from click.testing import CliRunner

    from service.cli import main as admin

    hook = hooked(settings, receiver.url("/status/200"))
    comment_id = rejected_comment_past_retention(hook)
    env = {
        **settings_values,
        "MODERATION_REDIS_URL": hook.redis_url,
        "MODERATION_WEBHOOK_URL": hook.webhook_url,
        "MODERATION_WEBHOOK_SECRET": SECRET,
        "MODERATION_RETENTION_REJECTED_DAYS": "1e-6",
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    result = CliRunner().invoke(admin, ["purge"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["comments_deleted"] == 1
    (event,) = deliver_queued(hook, broker, receiver)
    assert event["type"] == "comment.deleted" and event["reason"] == "expired"
    assert event["comment"] == {"id": comment_id, "post_id": "harbour"}


# -- what a decision event holds, and at most once ------------------------------------------------


def leaves(value: Any) -> Iterator[tuple[str, Any]]:
    """Yield (key, value) of every leaf of a decoded JSON document, at any depth."""
    if isinstance(value, dict):
        for key, item in value.items():
            if isinstance(item, dict | list):
                yield from leaves(item)
            else:
                yield key, item
    elif isinstance(value, list):
        for item in value:
            yield from leaves(item)


def scored_and_approved(hook: Settings) -> tuple[str, FlaskClient, dict[str, str]]:
    """Store a comment, score it and have an admin approve it: its id, a client, the headers."""
    comment_id = stored_comment(hook)
    runtime = Runtime(hook)
    score_and_decide(runtime, comment_id)
    client = create_app(hook, configure_logs=False).test_client()
    admin = {"Authorization": "Bearer " + create_token(runtime.store, "root", "admin")}
    url = f"/api/v1/moderation/comments/{comment_id}/decision"
    assert client.post(url, json={"action": "approve"}, headers=admin).status_code == 200
    return comment_id, client, admin


def test_a_decision_event_carries_the_public_fields_and_never_the_email_or_scores(
    receiver: Receiver, settings: Settings, broker: redis_lib.Redis
) -> None:
    """README: a decision event holds the comment's public fields and the decision, "never the
    email or scores": not at the top level either, and not the email's digest."""
    hook = hooked(settings, receiver.url("/status/204"))
    comment_id, _, _ = scored_and_approved(hook)
    event = deliver_queued(hook, broker, receiver)[-1]  # the approval, after the model's
    (_, _, body) = receiver.requests[-1]
    text = body.decode()

    assert set(event) == {"id", "type", "comment", "status", "queue", "decided_by"}
    assert set(event["comment"]) == set(PUBLIC_FIELDS)
    assert event["type"] == "comment.decided" and event["id"].startswith(f"{comment_id}.")
    assert event["status"] == event["queue"] == "approved"
    assert event["comment"]["id"] == comment_id and event["comment"]["comment"] == TEXT
    assert event["comment"]["author"] == AUTHOR and event["comment"]["post_id"] == "harbour"

    raw = broker.hgetall(f"mod:c:{comment_id}")
    secrets = {name: raw[name] for name in ("email_enc", "email_digest", "ip_digest")}
    assert all(secrets.values()), secrets  # each is stored, so its absence below means something
    for name, value in secrets.items():
        assert value not in text, f"{name} in the event"
    assert EMAIL not in text and EMAIL.split("@")[0] not in text
    # The model's scores: no number anywhere in the event, and neither stored value as text
    # (when it has digits enough not to turn up by chance, as in a timestamp's "0.0").
    assert raw["spam"] and raw["toxic"]
    for name in ("spam", "toxic"):
        if len(raw[name]) >= 6:
            assert raw[name] not in text and repr(float(raw[name])) not in text, name
    for key, value in leaves(event):
        assert value is None or isinstance(value, str), (key, value)
        assert key not in {"spam", "toxic", "scores", "email", "email_digest", "model_version"}


def test_running_the_same_delivery_twice_sends_one_request(
    receiver: Receiver, settings: Settings, redis: redis_lib.Redis
) -> None:
    """At most once: a task Celery runs again (redelivered after a crash, say) sends nothing."""
    celery = create_celery(hooked(settings, receiver.url("/status/200")))
    comment_id = stored_comment(settings)
    decision = celery.tasks[WEBHOOK_TASK]
    event_id = f"{comment_id}.1"
    assert decision.apply(args=[comment_id, event_id]).get() == "sent"
    assert decision.apply(args=[comment_id, event_id]).get() == "already_sent"
    assert len(receiver.requests) == 1
    deletion = celery.tasks[WEBHOOK_DELETION_TASK]
    args = [comment_id, "harbour", "deleted", f"{comment_id}.deleted.x", 1]
    assert deletion.apply(args=args).get() == "sent"
    assert deletion.apply(args=args).get() == "already_sent"
    assert len(receiver.requests) == 2
    assert [json.loads(body)["type"] for _, _, body in receiver.requests] == [
        "comment.decided",
        "comment.deleted",
    ]


def test_a_decision_queued_before_its_comment_was_deleted_is_not_sent(
    receiver: Receiver, settings: Settings, broker: redis_lib.Redis
) -> None:
    """A decision event still waiting when a moderator deletes the comment is skipped: the site
    gets the deletion only, never the deleted comment's text."""
    hook = hooked(settings, receiver.url("/status/200"))
    comment_id, client, admin = scored_and_approved(hook)
    url = f"/api/v1/moderation/comments/{comment_id}/decision"
    assert client.post(url, json={"action": "delete"}, headers=admin).status_code == 200
    queued = queued_webhooks(broker)
    # The model's decision and the approval, then the deletion.
    assert [name for name, _ in queued] == [WEBHOOK_TASK, WEBHOOK_TASK, WEBHOOK_DELETION_TASK]
    assert {args[0] for _, args in queued} == {comment_id}

    celery = create_celery(hook)
    outcomes = [celery.tasks[name].apply(args=args).get() for name, args in queued]
    assert outcomes == ["missing", "missing", "sent"]
    (event,) = [json.loads(body) for _, _, body in receiver.requests]
    assert event["type"] == "comment.deleted" and event["reason"] == "deleted"
    assert event["comment"] == {"id": comment_id, "post_id": "harbour"}
    assert_only_ids(event)


# -- no decision without its event ------------------------------------------------------------

# Nothing listens here: these tests look at the queued messages, not at deliveries.
NO_SITE = "http://127.0.0.1:9/hook"


def decided_events(ids: list[str]) -> list[tuple[str, list[Any]]]:
    """The messages a first decision of each comment queues: its event is ``<id>.1``."""
    return sorted((WEBHOOK_TASK, [i, f"{i}.1"]) for i in ids)


def test_a_redis_error_after_a_batchs_decisions_still_queues_their_events(
    settings: Settings, broker: redis_lib.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A batch retried after a Redis error that followed its transitions finds its comments
    decided; each one's comment.decided event is queued all the same."""
    hook = hooked(settings, NO_SITE).with_overrides(task_max_retries=1)
    ids = [stored_comment(hook) for _ in range(3)]
    runtime = Runtime(hook)
    decide, blips = runtime.store.transition_many, []

    def decide_then_lose_redis(moves: Any) -> Any:
        results = decide(moves)
        if not blips:
            blips.append(moves)
            raise redis_lib.exceptions.ConnectionError("Connection reset by peer")
        return results

    monkeypatch.setattr(runtime.store, "transition_many", decide_then_lose_redis)
    outcomes = score_jobs(create_celery(hook), runtime, [(i, "") for i in ids])
    assert blips and set(outcomes.values()) == {"already_decided"}  # the retry found them so
    assert sorted(queued_webhooks(broker)) == decided_events(ids)
    assert runtime.store.outbox_size() == 0


def test_a_lost_reply_of_a_batchs_decisions_still_queues_their_events(
    settings: Settings,
    broker: redis_lib.Redis,
    drop_one_reply: Callable[[Settings, bytes], tuple[Settings, DropOneReply]],
) -> None:
    """redis-py sends the transitions again when their reply is lost; they are applied once,
    and their events are queued."""
    hook = hooked(settings, NO_SITE)
    ids = [stored_comment(hook) for _ in range(3)]
    via_proxy, proxy = drop_one_reply(hook, b"EVALSHA")
    score_jobs(create_celery(hook), Runtime(via_proxy), [(i, "") for i in ids])
    assert proxy.dropped == 1
    assert all(broker.llen(f"mod:c:{i}:audit") == 1 for i in ids)
    assert sorted(queued_webhooks(broker)) == decided_events(ids)


def test_a_broker_failure_after_the_decisions_keeps_their_events_for_the_next_drain(
    settings: Settings,
    broker: redis_lib.Redis,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The batch's decisions stand and nothing escapes the task when its events cannot be
    queued; the beat-scheduled drain queues them once the broker is back."""
    from workers import tasks
    from workers.celery_app import OUTBOX_TASK

    monkeypatch.setattr(tasks, "OUTBOX_LEASE_SECONDS", 0.2)
    hook = hooked(settings, NO_SITE)
    ids = [stored_comment(hook) for _ in range(3)]
    runtime = Runtime(hook)
    closed = socket.create_server(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    closed.close()  # nothing listens there
    no_broker = create_celery(hook.with_overrides(redis_url=f"redis://127.0.0.1:{port}/1"))
    with caplog.at_level(logging.WARNING, logger="workers.tasks"):
        outcomes = score_jobs(no_broker, runtime, [(i, "") for i in ids])
    assert set(outcomes.values()) == {"decided"}
    assert queued_webhooks(broker) == [] and runtime.store.outbox_size() == 3
    assert any("outbox" in r.getMessage() for r in caplog.records)
    time.sleep(0.25)  # the failed drain's claim on them ends
    assert create_celery(hook).tasks[OUTBOX_TASK].apply().get() == 3
    assert sorted(queued_webhooks(broker)) == decided_events(ids)
    assert runtime.store.outbox_size() == 0


def test_a_worker_dying_after_its_decisions_loses_none_of_their_events(
    settings: Settings, broker: redis_lib.Redis
) -> None:
    """A crash after the transitions (nothing queued), or of a drain after it claimed the
    events: the beat-scheduled drain queues them, the claimed ones once their lease ends."""
    from workers.celery_app import OUTBOX_TASK

    hook = hooked(settings, NO_SITE)
    ids = [stored_comment(hook) for _ in range(4)]
    runtime = Runtime(hook)
    assert set(score_and_decide_many(runtime, ids).values()) == {"decided"}  # and it dies
    claimed = runtime.store.claim_outbox(2, lease_seconds=0.2)  # a drain that dies
    drain = create_celery(hook).tasks[OUTBOX_TASK]
    assert drain.apply().get() == 2  # the two nobody holds
    time.sleep(0.25)
    assert drain.apply().get() == 2  # the dead drain's, once its lease ended
    assert sorted(queued_webhooks(broker)) == decided_events(ids)
    assert {event for _, (_, event) in queued_webhooks(broker)} >= set(claimed)
    assert runtime.store.outbox_size() == 0


def test_without_a_webhook_no_event_waits_in_the_outbox(
    settings: Settings, broker: redis_lib.Redis
) -> None:
    comment_id = stored_comment(settings)
    runtime = Runtime(settings)
    assert score_and_decide(runtime, comment_id) == "decided"
    assert runtime.store.outbox_size() == 0 and queued_webhooks(broker) == []


# -- no deletion without its event ------------------------------------------------------------

# The three ways a comment goes: a moderator's delete and an erasure (through the API), and the
# retention period ending (the retention task).
DELETIONS = ("deleted", "erased", "expired")


class Killed(BaseException):
    """The process dies here: nothing after it runs (no error handler catches it)."""


def no_broker(settings: Settings) -> Celery:
    """A Celery app whose broker refuses every connection (nothing listens on its port)."""
    closed = socket.create_server(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    closed.close()
    return create_celery(settings.with_overrides(redis_url=f"redis://127.0.0.1:{port}/1"))


def remove(reason: str, hook: Settings, celery: Celery, comment_id: str) -> int:
    """Remove the comment (EMAIL's, past retention) as ``reason`` says, queuing its event
    through celery; return the HTTP status (the retention task: 200 once it returned)."""
    if reason == "expired":
        assert apply_retention(celery, Runtime(hook))["comments_deleted"] == 1
        return 200
    app = create_app(hook, configure_logs=False)
    app.extensions["moderation"] = dataclasses.replace(app.extensions["moderation"], celery=celery)
    admin = {"Authorization": "Bearer " + create_token(Runtime(hook).store, "root", "admin")}
    if reason == "erased":
        url, body = "/api/v1/privacy/erase", {"email": EMAIL}
    else:
        url, body = f"/api/v1/moderation/comments/{comment_id}/decision", {"action": "delete"}
    return app.test_client().post(url, json=body, headers=admin).status_code


def rejected_and_published(hook: Settings, broker: redis_lib.Redis) -> tuple[str, int]:
    """A rejected comment past a retention of 86 ms whose decision the site already has: its
    id and the number of its last change."""
    comment_id = rejected_comment_past_retention(hook)
    assert create_celery(hook).tasks[OUTBOX_TASK].apply().get() == 1
    broker.delete(WEBHOOK_QUEUE)
    return comment_id, int(broker.llen(f"mod:c:{comment_id}:audit"))


def assert_site_told(
    hook: Settings,
    broker: redis_lib.Redis,
    site: Receiver,
    comment_id: str,
    reason: str,
    after: int,
) -> None:
    """The next drain queues the deletion's event, and the site receives it as it always did."""
    assert create_celery(hook).tasks[OUTBOX_TASK].apply().get() == 1
    ((name, args),) = queued_webhooks(broker)
    (event,) = deliver_queued(hook, broker, site)
    assert (name, args) == (
        WEBHOOK_DELETION_TASK,
        [comment_id, "harbour", reason, event["id"], after],
    )
    assert re.fullmatch(rf"{comment_id}\.deleted\.[0-9a-f]{{16}}", event["id"])
    assert event == {
        "id": event["id"],
        "type": "comment.deleted",
        "comment": {"id": comment_id, "post_id": "harbour"},
        "reason": reason,
        "after": after,
    }
    assert Runtime(hook).store.outbox_size() == 0


@pytest.mark.parametrize("reason", DELETIONS)
def test_a_deletion_whose_event_the_broker_refuses_is_delivered_by_the_next_drain(
    receiver: Receiver,
    settings: Settings,
    broker: redis_lib.Redis,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    reason: str,
) -> None:
    """The comment is gone and the request or task succeeds with the broker down; the beat-
    scheduled drain tells the site once the broker is back (it was lost: the site kept showing
    a deleted or erased comment)."""
    from workers import tasks

    monkeypatch.setattr(tasks, "OUTBOX_LEASE_SECONDS", 0.2)
    hook = hooked(settings, receiver.url("/status/200")).with_overrides(
        retention_rejected_days=1e-6
    )
    comment_id, changes = rejected_and_published(hook, broker)
    with caplog.at_level(logging.WARNING, logger="workers.tasks"):
        assert remove(reason, hook, no_broker(hook), comment_id) == 200
    assert not broker.exists(f"mod:c:{comment_id}")
    assert any("outbox" in r.getMessage() for r in caplog.records)
    assert queued_webhooks(broker) == [] and Runtime(hook).store.outbox_size() == 1
    time.sleep(0.25)  # the failed drain's claim on it ends
    assert_site_told(hook, broker, receiver, comment_id, reason, changes)


@pytest.mark.parametrize("reason", DELETIONS)
def test_a_process_dying_right_after_a_deletion_loses_none_of_its_event(
    receiver: Receiver,
    settings: Settings,
    broker: redis_lib.Redis,
    monkeypatch: pytest.MonkeyPatch,
    reason: str,
) -> None:
    """The API or worker process dies as it queues the deletion's event: the beat-scheduled
    drain queues it (once the dead drain's claim on it ended)."""
    from workers import tasks

    monkeypatch.setattr(tasks, "OUTBOX_LEASE_SECONDS", 0.2)
    hook = hooked(settings, receiver.url("/status/200")).with_overrides(
        retention_rejected_days=1e-6
    )
    comment_id, changes = rejected_and_published(hook, broker)
    dying = create_celery(hook)

    def killed(*args: Any, **kwargs: Any) -> Any:
        raise Killed

    monkeypatch.setattr(dying, "send_task", killed)
    with pytest.raises(Killed):
        remove(reason, hook, dying, comment_id)
    assert not broker.exists(f"mod:c:{comment_id}") and queued_webhooks(broker) == []
    time.sleep(0.25)
    assert_site_told(hook, broker, receiver, comment_id, reason, changes)


@pytest.mark.parametrize("reason", DELETIONS)
def test_without_a_webhook_no_deletion_event_waits_in_the_outbox(
    settings: Settings, broker: redis_lib.Redis, reason: str
) -> None:
    plain = settings.with_overrides(retention_rejected_days=1e-6)
    comment_id = rejected_comment_past_retention(plain)
    assert remove(reason, plain, create_celery(plain), comment_id) == 200
    assert not broker.exists(f"mod:c:{comment_id}")
    assert Runtime(plain).store.outbox_size() == 0 and queued_webhooks(broker) == []


# -- scoring never waits on a site --------------------------------------------------------------


@pytest.mark.integration
def test_a_hung_site_never_delays_scoring_with_the_default_workers(
    stack_factory: Callable[..., Stack], receiver: Receiver
) -> None:
    """`python -m workers worker` scores; `python -m workers webhooks` waits on the site."""
    stack = stack_factory(
        MODERATION_WEBHOOK_URL=receiver.url("/hang"), MODERATION_WEBHOOK_SECRET=SECRET
    )
    hooks = WebhookWorkerProcess(stack.env, stack.tmp_path / "webhooks.log")
    hooks.start(stack.settings)
    try:
        stack.start_worker(concurrency=1)
        client = stack.client()

        def post(n: int) -> str:
            body = {"post_id": "p", "comment": f"{TEXT} ({n})", "author": "A", "email": EMAIL}
            return str(client.post("/api/v1/comments", json=body).get_json()["id"])

        first = [post(n) for n in range(3)]
        wait_for(lambda: len(stack.decided(first)) == 3, timeout=10)
        wait_for(lambda: receiver.requests, timeout=5)  # deliveries have started, and hang
        for n in range(8):
            posted = time.monotonic()
            comment_id = post(100 + n)
            wait_for(lambda cid=comment_id: stack.decided([cid]), timeout=2)  # type: ignore[misc]
            assert time.monotonic() - posted < 2
        assert len(receiver.requests) >= 3  # every decision's event is waiting on the site
    finally:
        hooks.kill()  # its threads wait out the deadline on the hung site; no need to watch
