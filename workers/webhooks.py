"""Signed webhooks on decisions and deletions, so a site can react (purge a cache, hide one)."""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import http.client
import json
import socket
import threading
import time
from typing import Any
from urllib.parse import urlsplit

from workers.privacy import PUBLIC_FIELDS
from workers.store import CommentStore

SIGNATURE_HEADER = "X-Moderation-Signature"
# One delivery, from connecting to the last byte read, takes at most this long: a slow, hung or
# trickling site costs a delivery thread this much and no more.
DEADLINE_SECONDS = 10.0
# Only the status matters: at most this much of the response body is read, the rest dropped.
MAX_RESPONSE_BYTES = 4096
DECIDED = "comment.decided"
DELETED = "comment.deleted"


class WebhookError(Exception):
    """A delivery failed in a way worth retrying (network, deadline, 3xx, 5xx or 429)."""


class WebhookRedirect(WebhookError):
    """The site answered a redirect, which is never followed: the URL is misconfigured."""


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """Return the signature header value: ``t=<unix>,v1=<hex HMAC-SHA256 of "t.body">``."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"t={timestamp},v1={mac.hexdigest()}"


def verify(secret: str, header: str, body: bytes, tolerance: int = 300) -> bool:
    """Check a signature header (what a receiving site does)."""
    if not header.isascii():  # a signature is ASCII; compare_digest refuses other text
        return False
    try:
        parts = dict(item.strip().split("=", 1) for item in header.split(","))
        timestamp = int(parts["t"])
        received = parts["v1"]
    except (ValueError, KeyError):
        return False
    if abs(time.time() - timestamp) > tolerance:
        return False
    expected = sign(secret, timestamp, body).rpartition("v1=")[2]
    return hmac.compare_digest(expected, received)


def event_payload(record: dict[str, Any], event_id: str) -> dict[str, Any]:
    """Build a decision event: public fields and the decision, never the email or scores."""
    return {
        "id": event_id,
        "type": DECIDED,
        "comment": {name: record.get(name) or None for name in PUBLIC_FIELDS},
        "status": record.get("status"),
        "queue": record.get("queue"),
        "decided_by": record.get("decided_by"),
    }


def deletion_payload(
    comment_id: str, post_id: str, reason: str, event_id: str, after: int = 0
) -> dict[str, Any]:
    """Build a deletion event: the comment's and post's ids, why, and ``after``, the number of
    the comment's last change before it (decision events carry theirs as ``<id>.<n>``);
    nothing of its content."""
    return {
        "id": event_id,
        "type": DELETED,
        "comment": {"id": comment_id, "post_id": post_id or None},
        "reason": reason,
        "after": after,
    }


def deliver(
    store: CommentStore,
    url: str,
    secret: str,
    comment_id: str,
    event_id: str,
    *,
    deadline: float = DEADLINE_SECONDS,
) -> str:
    """POST a decision event once: "sent", "already_sent", "missing" or "refused:<status>".

    Raises WebhookError when the attempt failed and is worth retrying."""
    if store.webhook_sent(comment_id, event_id):
        return "already_sent"
    record = store.get(comment_id)
    if record is None:  # deleted since: its comment.deleted event tells the site
        return "missing"
    payload = event_payload(record, event_id)
    return _send(store, url, secret, comment_id, event_id, payload, deadline)


def deliver_deletion(
    store: CommentStore,
    url: str,
    secret: str,
    comment_id: str,
    post_id: str,
    reason: str,
    event_id: str,
    *,
    after: int = 0,
    deadline: float = DEADLINE_SECONDS,
) -> str:
    """POST a deletion event once: "sent", "already_sent" or "refused:<status>"; raise to retry."""
    if store.webhook_sent(comment_id, event_id):
        return "already_sent"
    payload = deletion_payload(comment_id, post_id, reason, event_id, after)
    return _send(store, url, secret, comment_id, event_id, payload, deadline)


def _send(
    store: CommentStore,
    url: str,
    secret: str,
    comment_id: str,
    event_id: str,
    payload: dict[str, Any],
    deadline: float,
) -> str:
    status = post_signed(url, secret, json.dumps(payload).encode(), deadline=deadline)
    if status >= 300:
        return f"refused:{status}"  # a 4xx will not get better by retrying
    store.mark_webhook_sent(comment_id, event_id)
    return "sent"


def post_signed(url: str, secret: str, body: bytes, *, deadline: float = DEADLINE_SECONDS) -> int:
    """POST a signed body once; return a 2xx or 4xx status; raise WebhookError to retry.

    Redirects are never followed: the signed event would go to another address, and the site
    at this one never receives it. The whole exchange ends by the deadline; at most
    MAX_RESPONSE_BYTES of the response body are read.
    """
    try:
        parts = urlsplit(url)
        host, port = parts.hostname or "", parts.port
    except ValueError:
        raise WebhookError("MODERATION_WEBHOOK_URL is not a valid URL") from None
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    connection_class = (
        http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
    )
    connection = connection_class(host, port, timeout=deadline)
    # http.client looks the host up with a plain getaddrinfo, which a resolver that never
    # answers holds for its own timeouts (tens of seconds), before any socket or deadline exists.
    # Its connection factory is the hook for connecting (HTTP and HTTPS alike, the TLS name
    # unchanged): look up within the deadline, then connect to the addresses found.
    setattr(  # noqa: B010  # a private attribute typeshed does not declare
        connection, "_create_connection", _DeadlineConnector(time.monotonic() + deadline)
    )
    # Socket timeouts bound each read, not a response: a site trickling a byte at a time would
    # hold the delivery for as long as it likes. The watchdog closes the socket at the deadline.
    watchdog = _Watchdog(connection, deadline)
    try:
        connection.connect()
        if not watchdog.watch(connection.sock):
            raise TimeoutError
        connection.request(
            "POST",
            path,
            body=body,
            headers={
                "Content-Type": "application/json",
                "User-Agent": "comment-moderation-webhook/1",
                "Connection": "close",
                SIGNATURE_HEADER: sign(secret, int(time.time()), body),
            },
        )
        response = connection.getresponse()
        start = response.read(MAX_RESPONSE_BYTES)
        if response.length and len(start) < MAX_RESPONSE_BYTES:
            raise http.client.IncompleteRead(start, response.length)  # closed before the end
        if watchdog.expired:  # cut off: what looked like the end of the headers may not be
            raise TimeoutError
        status = response.status
    except (OSError, http.client.HTTPException) as exc:
        # IncompleteRead, BadStatusLine and RemoteDisconnected: the site may not have taken
        # the event; receivers deduplicate by event id, so sending it again is safe.
        # A socket timeout is the same deadline (each read may wait at most that long) and can
        # fire a moment before the watchdog's timer thread, on a busy host.
        if watchdog.expired or isinstance(exc, TimeoutError):
            raise WebhookError(f"no complete answer within {deadline:g} s") from None
        raise WebhookError(type(exc).__name__) from None
    finally:
        watchdog.cancel()
        connection.close()
    if 300 <= status < 400:
        raise WebhookRedirect(f"receiver answered {status} (a redirect, never followed)")
    if 400 <= status < 500 and status != 429:
        return status
    if not 200 <= status < 300:
        raise WebhookError(f"receiver answered {status}")
    return status


# Host look-ups still running after their delivery gave up (a resolver that never answers):
# at most this many at once, so retries against a hung DNS server cannot pile up threads.
MAX_PENDING_LOOKUPS = 16
_PENDING_LOOKUPS = threading.BoundedSemaphore(MAX_PENDING_LOOKUPS)


class _DeadlineConnector:
    """``socket.create_connection`` whose host look-up ends by a deadline.

    The look-up runs on a daemon thread; one the resolver never answers is left to end on its
    own while the delivery fails (and is retried) in time. Each address found then gets what is
    left of the deadline.
    """

    def __init__(self, ends_at: float) -> None:
        self.ends_at = ends_at

    def __call__(
        self,
        address: tuple[str, int],
        timeout: float | None = None,
        source_address: tuple[str, int] | None = None,
    ) -> socket.socket:
        host, port = address
        errors: list[OSError] = []
        for family, kind, proto, _name, sockaddr in self._look_up(host, port):
            left = self.ends_at - time.monotonic()
            if left <= 0:  # a host with several unreachable addresses: each try takes time
                raise TimeoutError(f"no connection to {host} in time")
            try:
                return _connect(
                    family, kind, proto, sockaddr, min(left, timeout or left), source_address
                )
            except OSError as exc:
                errors.append(exc)
        raise errors[0] if errors else OSError(f"no address for {host}")

    def _look_up(self, host: str, port: int) -> list[Any]:
        pending = _PENDING_LOOKUPS  # the one released, whatever the global is by then
        if not pending.acquire(timeout=max(0.0, self.ends_at - time.monotonic())):
            raise TimeoutError(f"{MAX_PENDING_LOOKUPS} host look-ups already waiting")
        found: list[Any] = []
        failed: list[OSError] = []

        def look_up() -> None:
            try:
                found.extend(socket.getaddrinfo(host, port, type=socket.SOCK_STREAM))
            except OSError as exc:
                failed.append(exc)
            except Exception as exc:  # UnicodeError: a label IDNA cannot encode
                failed.append(OSError(f"cannot look up {host!r}: {exc}"))
            finally:
                pending.release()

        thread = threading.Thread(target=look_up, name="webhook-dns", daemon=True)
        try:
            thread.start()
        except BaseException:
            pending.release()
            raise
        thread.join(max(0.0, self.ends_at - time.monotonic()))
        if thread.is_alive():
            raise TimeoutError(f"no address for {host} in time")
        if failed:
            raise failed[0]
        return found


def _connect(
    family: int,
    kind: int,
    proto: int,
    sockaddr: Any,
    timeout: float,
    source_address: tuple[str, int] | None,
) -> socket.socket:
    """Connect to one resolved address, the whole ``sockaddr`` kept (an IPv6 scope id too)."""
    sock = socket.socket(family, kind, proto)
    try:
        sock.settimeout(timeout)
        if source_address:
            sock.bind(source_address)
        sock.connect(sockaddr)
    except BaseException:
        sock.close()
        raise
    return sock


class _Watchdog:
    """Shut a connection's socket down when its deadline passes, whatever it is waiting on."""

    def __init__(self, connection: http.client.HTTPConnection, seconds: float) -> None:
        self.connection = connection
        self.expired = False
        # Kept here: the connection forgets its socket once a response says "Connection: close"
        # (the response reads on from it).
        self._sock: socket.socket | None = None
        self._lock = threading.Lock()
        self._timer = threading.Timer(seconds, self._expire)
        self._timer.daemon = True
        self._timer.start()

    def watch(self, sock: socket.socket | None) -> bool:
        """Watch the connected socket; return False if the deadline passed while connecting."""
        with self._lock:
            self._sock = sock
            return not self.expired

    def _expire(self) -> None:
        with self._lock:
            self.expired = True
            sock = self._sock if self._sock is not None else self.connection.sock
        if sock is not None:
            with contextlib.suppress(OSError):  # already closed
                # The plain socket's shutdown, also under TLS: it wakes a blocked read at once.
                socket.socket.shutdown(sock, socket.SHUT_RDWR)

    def cancel(self) -> None:
        self._timer.cancel()
