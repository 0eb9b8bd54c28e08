"""Accept a validated submission: store it, then enqueue scoring by id."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from celery import Celery
from kombu.exceptions import OperationalError

from workers.celery_app import SCORE_TASK
from workers.metrics import ENQUEUE_DEFERRED
from workers.privacy import ip_digest
from workers.runtime import Runtime
from workers.store import NewComment

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Submission:
    """A submission that passed validation at the edge (email normalised, text trimmed)."""

    post_id: str
    comment: str
    author: str
    email: str = field(repr=False)
    url: str = ""
    parent_id: str = ""
    honeypot_filled: bool = False
    submit_seconds: float | None = None


@dataclass(frozen=True)
class Accepted:
    id: str
    status: str
    enqueued: bool
    duplicate_of: str | None = None


def accept_comment(
    runtime: Runtime,
    celery: Celery,
    submission: Submission,
    *,
    request_id: str = "",
    client_ip: str | None = None,
) -> Accepted:
    """Store the comment (durably, before answering), then enqueue its scoring task."""
    vault = runtime.vault
    signals: dict[str, Any] = {"honeypot_filled": submission.honeypot_filled}
    if submission.submit_seconds is not None:
        signals["submit_seconds"] = round(submission.submit_seconds, 3)
    comment_id, _, duplicate_of = runtime.store.add(
        NewComment(
            post_id=submission.post_id,
            author=submission.author,
            comment=submission.comment,
            email_enc=vault.encrypt(submission.email),
            email_digest=vault.digest(submission.email),
            url=submission.url,
            parent_id=submission.parent_id,
            signals=signals,
            request_id=request_id,
            ip_digest=ip_digest(client_ip, runtime.settings.email_hmac_key),
        ),
        duplicate_window=runtime.settings.duplicate_window_seconds,
    )
    if duplicate_of is not None:
        return Accepted(
            id=duplicate_of, status="duplicate", enqueued=False, duplicate_of=duplicate_of
        )
    enqueued = True
    try:
        celery.send_task(SCORE_TASK, args=[comment_id], headers={"request_id": request_id})
    except OperationalError:
        # The comment is stored and listed as unscored: the sweep will enqueue it later.
        enqueued = False
        ENQUEUE_DEFERRED.inc()
        log.warning("enqueue failed; left for the sweep", extra={"comment_id": comment_id})
    return Accepted(id=comment_id, status="pending", enqueued=enqueued)
