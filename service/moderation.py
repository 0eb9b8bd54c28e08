"""Moderator endpoints: queue, detail, decisions (single and bulk), undo, notes, reveal, audit."""

from __future__ import annotations

import json
from typing import Any

from flask import Blueprint, Response, request

from model.policy import decision_labels
from service import services
from service.auth import current_moderator, require_role
from service.body import body_fields
from service.errors import problem
from service.validation import parse_limit
from workers.moderation import (
    ALL_ACTIONS,
    MAX_BULK,
    Moderator,
    add_note,
    apply_decision,
    remember_bulk,
    undo_last,
)
from workers.privacy import mask_email
from workers.store import QUEUES, is_comment_id
from workers.tasks import OUTBOX_PAGE, publish_outbox

bp = Blueprint("moderation", __name__, url_prefix="/api/v1/moderation")

SORTS = ("newest", "oldest", "spam", "toxic", "uncertainty")
LABELS = ("clean", "spam", "toxic", "signal", "error")


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
        "author_digest": record.get("email_digest"),
        "url": record.get("url") or None,
        "comment": record.get("comment"),
        "created_at": record.get("created_at"),
        "status": record.get("status"),
        "queue": record.get("queue"),
        "state": record.get("state"),
        "scores": {"spam": record.get("spam"), "toxic": record.get("toxic")},
        "categories": record.get("categories") or {},
        "label": record.get("decision_label") or None,
        "labels": list(_labels(record)),
        "decision_reasons": record.get("decision_reasons") or [],
        "reasons": record.get("reasons") or [],
        "signals": _signals(record),
        "model_version": record.get("model_version") or None,
        "decided_by": record.get("decided_by") or None,
        "moderated_by": record.get("moderated_by") or None,
        "moderated_at": record.get("moderated_at") or None,
    }


def _signals(record: dict[str, Any]) -> dict[str, Any]:
    """Return what the submission showed, with the counts intake took when it stored it."""
    signals = dict(record.get("signals") or {})
    if record.get("repeats"):
        signals["repeats"] = int(record["repeats"])
    if record.get("form_token_reused"):
        signals["form_token_reused"] = True
    return signals


def _labels(record: dict[str, Any]) -> tuple[str, ...]:
    return decision_labels(record.get("decision_label") or "", record.get("decision_reasons") or [])


def _json(payload: Any, status: int = 200) -> Response:
    return Response(json.dumps(payload), status=status, mimetype="application/json")


def _moderator() -> Moderator:
    found = current_moderator()
    assert found is not None  # noqa: S101 - require_role ran first
    return found


def _float_arg(name: str, errors: dict[str, str]) -> float | None:
    raw = request.args.get(name)
    if raw is None or raw == "":
        return None
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not 0.0 <= value <= 1.0:
        errors[name] = f"{name} must be a number from 0 to 1."
        return None
    return value


def _parse_cursor(raw: str | None, errors: dict[str, str]) -> tuple[float, str] | None:
    if not raw:
        return None
    score, _, comment_id = raw.partition("~")
    try:
        value = float(score)
    except ValueError:
        value = float("nan")
    if value != value or not is_comment_id(comment_id):  # NaN check
        errors["cursor"] = "cursor must be the next_cursor value of a previous page."
        return None
    return value, comment_id


@bp.get("/queue")
@require_role("moderator")
def queue() -> Response:
    """List a queue with filters (label, post, author, score ranges), sorts and a stable cursor."""
    svc = services()
    args = request.args
    errors: dict[str, str] = {}
    status = args.get("status", "pending")
    if status not in QUEUES:
        errors["status"] = f"status must be one of: {', '.join(QUEUES)}."
    sort = args.get("sort", args.get("order", "newest"))
    if sort not in SORTS:
        errors["sort"] = f"sort must be one of: {', '.join(SORTS)}."
    label = args.get("label")
    if label is not None and label not in LABELS:
        errors["label"] = f"label must be one of: {', '.join(LABELS)}."
    limit = parse_limit(args.get("limit"), default=svc.settings.page_size, maximum=200)
    if limit is None:
        errors["limit"] = "limit must be a whole number from 1 to 200."
    bounds = {
        name: _float_arg(name, errors)
        for name in ("min_spam", "max_spam", "min_toxic", "max_toxic")
    }
    cursor = _parse_cursor(args.get("cursor"), errors)
    post_id = args.get("post_id")
    author = args.get("author_digest")
    if errors:
        return problem(400, "Bad Request", "Invalid query.", errors=errors)

    def accept(record: dict[str, Any]) -> bool:
        if label is not None and label not in _labels(record):
            return False
        if post_id is not None and record.get("post_id") != post_id:
            return False
        if author is not None and record.get("email_digest") != author:
            return False
        return _in_range(record.get("spam"), bounds["min_spam"], bounds["max_spam"]) and _in_range(
            record.get("toxic"), bounds["min_toxic"], bounds["max_toxic"]
        )

    score_range = None
    if sort in ("spam", "toxic") and (
        bounds[f"min_{sort}"] is not None or bounds[f"max_{sort}"] is not None
    ):
        low, high = bounds[f"min_{sort}"], bounds[f"max_{sort}"]
        score_range = (low if low is not None else 0.0, high if high is not None else 1.0)
    records, next_cursor = svc.runtime.store.scan_queue(
        status,
        sort=sort,
        cursor=cursor,
        limit=limit or 1,
        accept=accept,
        score_range=score_range,
    )
    return _json(
        {
            "status": status,
            "sort": sort,
            "items": [moderator_view(r) for r in records],
            "next_cursor": f"{next_cursor[0]!r}~{next_cursor[1]}" if next_cursor else None,
            "counts": svc.runtime.store.queue_sizes(),
        }
    )


def _in_range(value: float | None, low: float | None, high: float | None) -> bool:
    if low is None and high is None:
        return True
    if value is None:
        return False
    return (low is None or value >= low) and (high is None or value <= high)


@bp.get("/comments/<comment_id>")
@require_role("moderator")
def detail(comment_id: str) -> Response:
    """Return a comment with its scores, reasons, author history and full audit trail."""
    store = services().runtime.store
    record = store.get(comment_id) if is_comment_id(comment_id) else None
    if record is None:
        return problem(404, "Not Found", "No comment with that id.")
    view = moderator_view(record)
    history = store.author_history(record.get("email_digest", ""), exclude=comment_id)
    view["author_history"] = history
    view["audit"] = store.audit_trail(comment_id)
    return _json(view)


def _act(
    comment_id: str, action: str, note: str, steps: list[dict[str, Any]] | None = None
) -> tuple[int, dict[str, Any]]:
    """Apply one action as the current moderator; return (HTTP status, result body).

    With ``steps`` (a bulk action) the undo step is appended there instead of remembered."""
    moderator = _moderator()
    if not moderator.may(action):
        return 403, {"error": f"action {action!r} needs an admin token"}
    if not is_comment_id(comment_id):
        return 404, {"error": "no comment with that id"}
    svc = services()
    result = apply_decision(
        svc.runtime.store, comment_id, action, moderator.name, note, remember=steps is None
    )
    if not result.found:
        return 404, {"error": "no comment with that id"}
    if steps is not None and result.undo_step is not None:
        steps.append(result.undo_step)
    if result.deleted:
        return 200, {"id": comment_id, "deleted": True, "previous_queue": result.previous_queue}
    assert result.comment is not None  # noqa: S101 - found and not deleted
    view = moderator_view(result.comment)
    view["previous_queue"] = result.previous_queue
    return 200, view


def _action_errors(body: dict[str, Any]) -> dict[str, str]:
    errors: dict[str, str] = {}
    if body.get("action") not in ALL_ACTIONS:
        errors["action"] = f"action must be one of: {', '.join(ALL_ACTIONS)}."
    note = body.get("note", "")
    if not isinstance(note, str) or len(note) > 2000:
        errors["note"] = "note must be text of at most 2,000 characters."
    return errors


@bp.post("/comments/<comment_id>/decision")
@require_role("moderator")
def decision(comment_id: str) -> Response:
    """Approve, reject, mark spam / not spam, or (admins) delete one comment."""
    body = body_fields()
    if body is None:
        return problem(400, "Bad Request", 'Send a JSON object such as {"action": "approve"}.')
    errors = _action_errors(body)
    if errors:
        return problem(422, "Unprocessable Content", "Invalid decision.", errors=errors)
    status, result = _act(comment_id, body["action"], body.get("note", ""))
    svc = services()
    # The decision's or deletion's event, recorded in the outbox with it.
    publish_outbox(svc.celery, svc.runtime)
    if status == 403:
        return problem(403, "Forbidden", result["error"])
    if status == 404:
        return problem(404, "Not Found", "No comment with that id.")
    return _json(result)


@bp.post("/bulk")
@require_role("moderator")
def bulk() -> Response:
    """Apply one action to many comments; each is atomic, each gets its own result."""
    body = body_fields()
    if body is None:
        return problem(400, "Bad Request", 'Send {"action": "...", "ids": [...]}.')
    errors = _action_errors(body)
    ids = body.get("ids")
    if not isinstance(ids, list) or not ids or not all(isinstance(i, str) for i in ids):
        errors["ids"] = "ids must be a non-empty list of comment ids."
    elif len(ids) > MAX_BULK:
        errors["ids"] = f"at most {MAX_BULK} ids at once."
    if errors:
        return problem(422, "Unprocessable Content", "Invalid bulk action.", errors=errors)
    results = {}
    steps: list[dict[str, Any]] = []
    try:
        for comment_id in dict.fromkeys(ids or ()):
            status, result = _act(comment_id, body["action"], body.get("note", ""), steps)
            results[comment_id] = {
                "status": status,
                **({"queue": result.get("queue")} if status == 200 and "queue" in result else {}),
                **({"error": result["error"]} if "error" in result else {}),
            }
    finally:  # one undo reverts the whole bulk action (what was applied of it)
        svc = services()
        remember_bulk(svc.runtime.store, _moderator().name, steps)
        # Every event of the bulk at once, not a drain per comment.
        publish_outbox(svc.celery, svc.runtime, limit=OUTBOX_PAGE + len(results))
    return _json({"action": body["action"], "results": results})


@bp.post("/undo")
@require_role("moderator")
def undo() -> Response:
    """Undo the calling moderator's most recent action."""
    svc = services()
    undone = undo_last(
        svc.runtime.store, _moderator().name, repeat_window=svc.settings.repeat_window_seconds
    )
    if undone is None:
        return problem(409, "Conflict", "There is nothing to undo.")
    if undone.bulk:
        results: dict[str, dict[str, Any]] = {}
        for comment_id, one in undone.results.items():
            if one.conflict:
                results[comment_id] = {"status": 409, "error": _UNDO_CONFLICT}
            elif not one.found or one.comment is None:
                results[comment_id] = {"status": 404, "error": "no comment with that id"}
            else:
                results[comment_id] = {"status": 200, "queue": one.comment.get("queue")}
        # Every event of the bulk now, not only a page of them.
        publish_outbox(svc.celery, svc.runtime, limit=OUTBOX_PAGE + len(results))
        return _json({"action": "undo", "results": results})
    (result,) = undone.results.values()
    if result.conflict:
        return problem(409, "Conflict", _UNDO_CONFLICT)
    if not result.found or result.comment is None:
        return problem(409, "Conflict", "The comment of the last action no longer exists.")
    publish_outbox(svc.celery, svc.runtime)
    view = moderator_view(result.comment)
    view["previous_queue"] = result.previous_queue
    return _json(view)


_UNDO_CONFLICT = "A later decision changed this comment; undo would overwrite it, so it was kept."


@bp.post("/comments/<comment_id>/notes")
@require_role("moderator")
def note(comment_id: str) -> Response | tuple[Response, int]:
    """Attach a note to a comment's audit trail."""
    body = body_fields()
    text = body.get("note") if body else None
    if not isinstance(text, str) or not text.strip() or len(text) > 2000:
        return problem(
            422,
            "Unprocessable Content",
            "Invalid note.",
            errors={"note": "note must be text of 1 to 2,000 characters."},
        )
    if not is_comment_id(comment_id) or not add_note(
        services().runtime.store, comment_id, _moderator().name, text.strip()
    ):
        return problem(404, "Not Found", "No comment with that id.")
    return _json({"id": comment_id, "note": text.strip()}, status=201), 201


@bp.get("/comments/<comment_id>/email")
@require_role("admin")
def reveal_email(comment_id: str) -> Response:
    """Reveal the full email address of a comment's author (admins only; audited)."""
    svc = services()
    record = svc.runtime.store.get(comment_id) if is_comment_id(comment_id) else None
    if record is None:
        return problem(404, "Not Found", "No comment with that id.")
    svc.runtime.store.append_audit(
        comment_id, {"actor": _moderator().name, "action": "reveal_email"}
    )
    response = _json({"id": comment_id, "email": svc.runtime.vault.decrypt(record["email_enc"])})
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.get("/audit")
@require_role("admin")
def audit_log() -> Response:
    """Return the global, append-only audit log, newest first."""
    errors: dict[str, str] = {}
    limit = parse_limit(request.args.get("limit"), default=100, maximum=1000)
    if limit is None:
        errors["limit"] = "limit must be a whole number from 1 to 1000."
    before = request.args.get("cursor")
    if before is not None and not _is_stream_id(before):
        errors["cursor"] = "cursor must be the next_cursor value of a previous page."
    if errors:
        return problem(400, "Bad Request", "Invalid query.", errors=errors)
    entries = services().runtime.store.audit_log(count=limit or 100, before=before)
    next_cursor = entries[-1]["audit_id"] if len(entries) == limit else None
    return _json({"entries": entries, "next_cursor": next_cursor})


def _is_stream_id(value: str) -> bool:
    """Return True for a stream id Redis accepts as an exclusive upper bound."""
    ms, _, seq = value.partition("-")
    # isascii: str.isdigit() also accepts "²", which Redis refuses as a stream id.
    if not (value.isascii() and ms.isdigit() and seq.isdigit() and len(value) < 42):
        return False
    # Each part is a 64-bit unsigned number, and nothing lies before 0-0.
    return int(ms) < 2**64 and int(seq) < 2**64 and (int(ms), int(seq)) != (0, 0)
