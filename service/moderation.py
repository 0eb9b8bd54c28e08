"""Moderator endpoints: the review queue and decisions."""

from __future__ import annotations

import json
from typing import Any

from flask import Blueprint, Response, g, request

from service import services
from service.auth import require_moderator
from service.errors import problem
from service.validation import parse_cursor, parse_limit
from workers.moderation import ACTIONS, apply_decision
from workers.privacy import mask_email
from workers.store import QUEUES, is_comment_id

bp = Blueprint("moderation", __name__, url_prefix="/api/v1/moderation")


def moderator_view(record: dict[str, Any]) -> dict[str, Any]:
    """Return what a moderator sees of a comment: scores and reasons, a masked email."""
    vault = services().runtime.vault
    email = vault.decrypt(record.get("email_enc", "")) if record.get("email_enc") else None
    return {
        "id": record["id"],
        "post_id": record.get("post_id"),
        "parent_id": record.get("parent_id") or None,
        "author": record.get("author"),
        "email": mask_email(email),
        "url": record.get("url") or None,
        "comment": record.get("comment"),
        "created_at": record.get("created_at"),
        "status": record.get("status"),
        "queue": record.get("queue"),
        "state": record.get("state"),
        "scores": {"spam": record.get("spam"), "toxic": record.get("toxic")},
        "categories": record.get("categories") or {},
        "label": record.get("decision_label") or None,
        "decision_reasons": record.get("decision_reasons") or [],
        "reasons": record.get("reasons") or [],
        "model_version": record.get("model_version") or None,
        "decided_by": record.get("decided_by") or None,
        "moderated_by": record.get("moderated_by") or None,
        "moderated_at": record.get("moderated_at") or None,
    }


@bp.get("/queue")
@require_moderator
def queue() -> Response:
    """List a moderation queue (pending by default), newest first, with a stable cursor."""
    settings = services().settings
    errors: dict[str, str] = {}
    status = request.args.get("status", "pending")
    if status not in QUEUES:
        errors["status"] = f"status must be one of: {', '.join(QUEUES)}."
    order = request.args.get("order", "newest")
    if order not in ("newest", "oldest"):
        errors["order"] = "order must be newest or oldest."
    limit = parse_limit(request.args.get("limit"), default=settings.page_size, maximum=200)
    if limit is None:
        errors["limit"] = "limit must be a whole number from 1 to 200."
    cursor = parse_cursor(request.args.get("cursor"))
    if cursor is False:
        errors["cursor"] = "cursor must be the next_cursor value of a previous page."
    if errors:
        return problem(400, "Bad Request", "Invalid query.", errors=errors)
    records, next_cursor = services().runtime.store.list_queue(
        status,
        before=cursor if isinstance(cursor, int) else None,
        limit=limit or 1,
        newest_first=order == "newest",
    )
    payload = {
        "status": status,
        "items": [moderator_view(r) for r in records],
        "next_cursor": str(next_cursor) if next_cursor is not None else None,
        "counts": services().runtime.store.queue_sizes(),
    }
    return Response(json.dumps(payload), mimetype="application/json")


@bp.post("/comments/<comment_id>/decision")
@require_moderator
def decision(comment_id: str) -> Response:
    """Approve, reject or mark a comment as spam; the decision becomes a training label."""
    body = request.get_json(silent=True) if request.is_json else request.form.to_dict()
    if not isinstance(body, dict):
        return problem(400, "Bad Request", 'Send a JSON object such as {"action": "approve"}.')
    action = body.get("action")
    note = body.get("note", "")
    errors: dict[str, str] = {}
    if action not in ACTIONS:
        errors["action"] = f"action must be one of: {', '.join(ACTIONS)}."
    if not isinstance(note, str) or len(note) > 2000:
        errors["note"] = "note must be text of at most 2,000 characters."
    if errors:
        return problem(422, "Unprocessable Content", "Invalid decision.", errors=errors)
    if not is_comment_id(comment_id):
        return problem(404, "Not Found", "No comment with that id.")
    result = apply_decision(services().runtime.store, comment_id, str(action), g.moderator, note)
    if not result.found or result.comment is None:
        return problem(404, "Not Found", "No comment with that id.")
    view = moderator_view(result.comment)
    view["previous_queue"] = result.previous_queue
    return Response(json.dumps(view), mimetype="application/json")
