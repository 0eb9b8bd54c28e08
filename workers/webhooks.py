"""Signed webhooks on decisions, so a site can react (e.g. purge a cache, notify the author)."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
import urllib.error
import urllib.request
from typing import Any

from workers.privacy import PUBLIC_FIELDS
from workers.store import CommentStore

SIGNATURE_HEADER = "X-Moderation-Signature"
TIMEOUT_SECONDS = 5


class WebhookError(Exception):
    """A delivery failed in a way worth retrying (network error or 5xx/429)."""


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """Return the signature header value: ``t=<unix>,v1=<hex HMAC-SHA256 of "t.body">``."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"t={timestamp},v1={mac.hexdigest()}"


def verify(secret: str, header: str, body: bytes, tolerance: int = 300) -> bool:
    """Check a signature header (what a receiving site does)."""
    try:
        parts = dict(item.split("=", 1) for item in header.split(","))
        timestamp = int(parts["t"])
    except (ValueError, KeyError):
        return False
    if abs(time.time() - timestamp) > tolerance:
        return False
    return hmac.compare_digest(sign(secret, timestamp, body), header)


def event_payload(record: dict[str, Any], event_id: str) -> dict[str, Any]:
    """Build the event body: public fields and the decision, never the email or scores."""
    return {
        "id": event_id,
        "type": "comment.decided",
        "comment": {name: record.get(name) or None for name in PUBLIC_FIELDS},
        "status": record.get("status"),
        "queue": record.get("queue"),
        "decided_by": record.get("decided_by"),
    }


def deliver(store: CommentStore, url: str, secret: str, comment_id: str, event_id: str) -> str:
    """POST the event once; return "sent", "already_sent" or "missing"; raise to retry."""
    if store.webhook_sent(comment_id, event_id):
        return "already_sent"
    record = store.get(comment_id)
    if record is None:
        return "missing"
    body = json.dumps(event_payload(record, event_id)).encode()
    request = urllib.request.Request(  # noqa: S310 - the operator configures an http(s) URL
        url,
        data=body,
        method="POST",
        headers={
            "Content-Type": "application/json",
            "User-Agent": "comment-moderation-webhook/1",
            SIGNATURE_HEADER: sign(secret, int(time.time()), body),
        },
    )
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT_SECONDS) as response:  # noqa: S310
            response.read()
    except urllib.error.HTTPError as exc:
        if exc.code >= 500 or exc.code == 429:
            raise WebhookError(f"receiver answered {exc.code}") from None
        return f"refused:{exc.code}"  # a 4xx will not get better by retrying
    except (urllib.error.URLError, TimeoutError, OSError) as exc:
        raise WebhookError(type(exc).__name__) from None
    store.mark_webhook_sent(comment_id, event_id)
    return "sent"
