"""Accept a validated submission: store it, then enqueue scoring by id."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from celery import Celery

from workers.celery_app import score_task_message
from workers.privacy import ip_digest
from workers.runtime import Runtime
from workers.store import NewComment, new_comment_id

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
    form_token: str = ""  # valid | expired | invalid | missing; "" when it is no signal
    # Digest of a genuine (valid or expired) token: each may be used for one stored comment.
    form_token_id: str = ""


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
    """Store the comment and its scoring message in one atomic step (before answering)."""
    vault = runtime.vault
    signals: dict[str, Any] = {"honeypot_filled": submission.honeypot_filled}
    if submission.submit_seconds is not None:
        signals["submit_seconds"] = round(submission.submit_seconds, 3)
    if submission.form_token:
        signals["form_token"] = submission.form_token
    comment_id = new_comment_id()
    stored_id, _, duplicate_of = runtime.store.add(
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
        repeat_window=runtime.settings.repeat_window_seconds,
        form_token_id=submission.form_token_id,
        comment_id=comment_id,
        # The scoring message is pushed by the same Lua call (the broker is the store's Redis).
        enqueue=score_task_message(celery, comment_id, request_id),
    )
    if duplicate_of is not None:
        return Accepted(
            id=duplicate_of, status="duplicate", enqueued=False, duplicate_of=duplicate_of
        )
    return Accepted(id=stored_id, status="pending", enqueued=True)
