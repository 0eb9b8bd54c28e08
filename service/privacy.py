"""Readers' privacy requests, handled by admins: export and erase by email address."""

from __future__ import annotations

import json

from email_validator import EmailNotValidError, validate_email
from flask import Blueprint, Response

from service import services
from service.auth import current_moderator, require_role
from service.body import body_fields
from service.errors import problem
from workers.erasure import erase_by_email, export_by_email
from workers.tasks import drain_outbox

bp = Blueprint("privacy", __name__, url_prefix="/api/v1/privacy")


def _email_from_body() -> tuple[str | None, Response | None]:
    body = body_fields()
    email = body.get("email") if body is not None else None
    if not isinstance(email, str) or not email.strip() or len(email) > 254:
        return None, problem(
            422,
            "Unprocessable Content",
            "Invalid request.",
            errors={"email": "email is required (the reader's address)."},
        )
    try:
        normalized = validate_email(email.strip(), check_deliverability=False).normalized
    except EmailNotValidError:
        return None, problem(
            422,
            "Unprocessable Content",
            "Invalid request.",
            errors={"email": "email is not a valid email address."},
        )
    return normalized, None


@bp.post("/export")
@require_role("admin")
def export() -> Response:
    """Return every comment stored for an email address."""
    email, error = _email_from_body()
    if error is not None:
        return error
    assert email is not None  # noqa: S101 - set when error is None
    svc = services()
    comments = export_by_email(svc.runtime.store, svc.runtime.vault, email)
    response = Response(
        json.dumps({"count": len(comments), "comments": comments}), mimetype="application/json"
    )
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.post("/erase")
@require_role("admin")
def erase() -> Response:
    """Remove every comment by an email address, and every index and record naming it."""
    email, error = _email_from_body()
    if error is not None:
        return error
    assert email is not None  # noqa: S101 - set when error is None
    svc = services()
    moderator = current_moderator()
    actor = moderator.name if moderator else "admin"
    report = erase_by_email(svc.runtime.store, svc.runtime.vault, email, actor)
    # A site mirroring published comments hears of each one, by id only: each delete recorded
    # its event in the outbox.
    drain_outbox(svc.celery, svc.runtime)
    return Response(json.dumps(report.to_dict()), mimetype="application/json")
