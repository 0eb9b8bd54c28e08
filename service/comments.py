"""Public endpoints: submit a comment, see its status, list a post's approved comments."""

from __future__ import annotations

import json
import time
from typing import Any
from urllib.parse import urlsplit

from flask import Blueprint, Response, current_app, g, redirect, render_template, request, url_for
from itsdangerous import BadSignature, TimestampSigner

from service import services
from service.errors import problem, wants_html
from service.validation import (
    FORM_TOKEN_FIELD,
    Invalid,
    field_values,
    parse_cursor,
    parse_limit,
    validate_submission,
)
from workers.intake import accept_comment
from workers.privacy import PUBLIC_FIELDS
from workers.store import is_comment_id

bp = Blueprint("comments", __name__, url_prefix="/api/v1")

FORM_TOKEN_MAX_AGE = 24 * 3600


def public_view(record: dict[str, Any]) -> dict[str, Any]:
    """Return the public part of a stored comment."""
    view = {name: record.get(name, "") for name in PUBLIC_FIELDS}
    view["status"] = record["status"]
    view["parent_id"] = view["parent_id"] or None
    view["url"] = view["url"] or None
    return view


def _form_signer() -> TimestampSigner:
    return TimestampSigner(services().settings.secret_key, salt="comment-form-rendered")


def new_form_token() -> str:
    """Return a signed token recording when a comment form was rendered."""
    return _form_signer().sign(b"form").decode()


def _submit_seconds(token: Any) -> float | None:
    if not isinstance(token, str) or not token:
        return None
    try:
        _, signed_at = _form_signer().unsign(
            token, max_age=FORM_TOKEN_MAX_AGE, return_timestamp=True
        )
    except (BadSignature, ValueError, TypeError):
        return None
    return max(0.0, time.time() - signed_at.timestamp())


def _parse_body() -> tuple[dict[str, Any] | None, Response | None]:
    if request.mimetype == "application/json":
        raw = request.get_data(cache=True)
        try:
            # The app's provider: it also refuses unpaired surrogate escapes ("\ud800").
            body = current_app.json.loads(raw)
        except (ValueError, UnicodeDecodeError, RecursionError):
            # RecursionError: arrays or objects nested thousands deep (fits in the body limit).
            return None, problem(400, "Bad Request", "The body is not valid JSON.")
        if not isinstance(body, dict):
            return None, problem(400, "Bad Request", "The JSON body must be an object of fields.")
        return body, None
    if request.mimetype in ("application/x-www-form-urlencoded", "multipart/form-data"):
        return request.form.to_dict(flat=True), None
    return None, problem(
        415,
        "Unsupported Media Type",
        "Send the comment as application/x-www-form-urlencoded or application/json.",
    )


def _same_site_target(candidate: str | None) -> str | None:
    """Return candidate if it is a safe place to send the browser back to, else None."""
    if not candidate or len(candidate) > 2000 or any(ch in candidate for ch in "\r\n\\"):
        return None
    try:
        parts = urlsplit(candidate)
    except ValueError:  # e.g. an unclosed IPv6 bracket
        return None
    relative = not parts.scheme and not parts.netloc and candidate.startswith("/")
    if relative and not candidate.startswith("//"):
        origin = request.host_url.rstrip("/").lower()
    elif parts.scheme in ("http", "https") and parts.netloc:
        origin = f"{parts.scheme}://{parts.netloc}".lower()
    else:
        return None
    ours = request.host_url.rstrip("/").lower()
    if origin == ours and parts.path.startswith("/api/"):
        return None  # e.g. the Referer of a resubmitted "please fix" page: not a page to show
    allowed = {o.rstrip("/").lower() for o in services().settings.site_origins} | {ours}
    return candidate if origin in allowed else None


@bp.post("/comments")
def submit() -> Response | tuple[Response, int]:
    """Accept a comment from a form or a script; store it and queue it for scoring."""
    body, error = _parse_body()
    if error is not None:
        return error
    assert body is not None  # noqa: S101 - _parse_body returns one or the other
    values = field_values(body)
    result = validate_submission(
        values, submit_seconds=_submit_seconds(values.get(FORM_TOKEN_FIELD))
    )
    browser = wants_html()
    back_to = _same_site_target(
        body.get("redirect_to") if isinstance(body.get("redirect_to"), str) else None
    ) or _same_site_target(request.referrer)
    if isinstance(result, Invalid):
        if browser:
            page = render_template(
                "fix_form.html",
                errors=result.errors,
                values={k: v for k, v in values.items() if isinstance(v, str)},
                form_token=values.get(FORM_TOKEN_FIELD) or new_form_token(),
                # Keep the article's address, so fixing the form still leads back to it.
                redirect_to=back_to or "",
            )
            return Response(page, status=422, mimetype="text/html")
        return problem(
            422,
            "Unprocessable Content",
            "Some fields need fixing.",
            errors=result.errors,
        )
    svc = services()
    if result.parent_id:
        parent = svc.runtime.store.get(result.parent_id)
        if parent is None or parent.get("post_id") != result.post_id:
            errors = {"parent_id": "Reply to must be the id of an existing comment on this post."}
            return problem(422, "Unprocessable Content", "Some fields need fixing.", errors=errors)
    accepted = accept_comment(
        svc.runtime, svc.celery, result, request_id=g.request_id, client_ip=request.remote_addr
    )
    status_url = url_for("comments.status", comment_id=accepted.id)
    if accepted.duplicate_of is not None:
        if browser:
            return Response(
                render_template("received.html", comment_id=accepted.id), 409, mimetype="text/html"
            )
        return problem(
            409,
            "Conflict",
            "The same comment was already submitted.",
            id=accepted.duplicate_of,
            status_url=status_url,
        )
    if browser:
        if back_to:
            target = back_to.split("#", 1)[0] + f"#comment-{accepted.id}"
            return redirect(target, code=303)  # type: ignore[return-value]
        return Response(
            render_template("received.html", comment_id=accepted.id), 202, mimetype="text/html"
        )
    response = Response(
        json.dumps({"id": accepted.id, "status": accepted.status, "status_url": status_url}),
        status=202,
        mimetype="application/json",
    )
    response.headers["Location"] = status_url
    return response


@bp.get("/comments/<comment_id>")
def status(comment_id: str) -> Response:
    """Return a comment's public status, and its public fields once approved."""
    record = services().runtime.store.get(comment_id) if is_comment_id(comment_id) else None
    if record is None:
        return problem(404, "Not Found", "No comment with that id.")
    if record["status"] == "approved":
        return _json(public_view(record))
    return _json({"id": record["id"], "status": record["status"]})


@bp.get("/posts/<path:post_id>/comments")
def list_post(post_id: str) -> Response:
    """Return a post's approved comments, oldest first, a page at a time."""
    from service.validation import POST_ID

    settings = services().settings
    errors: dict[str, str] = {}
    if len(post_id) > 128 or not POST_ID.match(post_id):
        errors["post_id"] = "Post must be a short id of letters, digits and . _ : / -."
    limit = parse_limit(request.args.get("limit"), default=settings.page_size, maximum=200)
    if limit is None:
        errors["limit"] = "limit must be a whole number from 1 to 200."
    cursor = parse_cursor(request.args.get("cursor"))
    if cursor is False:
        errors["cursor"] = "cursor must be the next_cursor value of a previous page."
    if errors:
        return problem(400, "Bad Request", "Invalid query.", errors=errors)
    records, next_cursor = services().runtime.store.list_post(
        post_id,
        after=cursor if isinstance(cursor, int) else None,
        limit=limit or 1,
    )
    return _json(
        {
            "post_id": post_id,
            "comments": [public_view(r) for r in records],
            "next_cursor": str(next_cursor) if next_cursor is not None else None,
        }
    )


@bp.get("/form-token")
def form_token() -> Response:
    """Return a signed form-render token for sites that render the form themselves."""
    return _json({"form_token": new_form_token(), "field": FORM_TOKEN_FIELD})


def _json(payload: dict[str, Any], status: int = 200) -> Response:
    return Response(json.dumps(payload), status=status, mimetype="application/json")


demo = Blueprint("demo", __name__)


@demo.get("/")
def demo_page() -> str:
    """Render a demo article page with the comment form (for trying the service locally)."""
    post_id = "demo-article"
    records, _ = services().runtime.store.list_post(post_id, after=None, limit=50)
    return render_template(
        "demo.html",
        comments=records,
        values={"post_id": post_id},
        errors={},
        form_token=new_form_token(),
        redirect_to=url_for("demo.demo_page"),
    )
