"""Public endpoints: submit a comment, see its status, list a post's approved comments."""

from __future__ import annotations

import hashlib
import json
import secrets
import time
from collections.abc import Mapping
from dataclasses import replace
from typing import Any
from urllib.parse import urlsplit

from flask import Blueprint, Response, current_app, g, redirect, render_template, request, url_for
from itsdangerous import BadSignature, SignatureExpired, TimestampSigner
from werkzeug.exceptions import HTTPException

from service import services
from service.abuse import has_service_token
from service.body import FORM_TYPES, body_cut_off, refuse_cut_off_body
from service.errors import problem, wants_html
from service.validation import (
    FORM_TOKEN_FIELD,
    FormToken,
    Invalid,
    field_values,
    parse_cursor,
    parse_limit,
    validate_submission,
)
from workers.intake import accept_comment
from workers.privacy import PUBLIC_FIELDS
from workers.settings import normalise_origin
from workers.store import is_comment_id

bp = Blueprint("comments", __name__, url_prefix="/api/v1")

FORM_TOKEN_MAX_AGE = 24 * 3600
# Added to the article's address when a browser is sent back after posting, so the page (ours
# or a site's own) can tell the reader their comment is waiting: ?comment_status=pending&...
REDIRECT_STATUS_PARAM = "comment_status"
REDIRECT_ID_PARAM = "comment_id"
PARENT_GONE = (
    "The comment you were replying to could not be found (it may have been removed). "
    "Post yours again to publish it as a new comment, not a reply."
)


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
    """Return a signed token recording when a comment form was rendered.

    Each carries a random nonce, so no two renders share a token and each can be single-use.
    """
    return _form_signer().sign(secrets.token_urlsafe(12)).decode()


def form_token_id(token: Any, state: FormToken | None) -> str:
    """Return the digest that marks a genuine token as used, or "" for no usable token.

    The digest is of the signed part (nonce and time), not the whole string: the signature
    decodes from several spellings (base64 padding), which would make one token many. Tokens
    from before nonces ("form" signed) were shared by every render in a second: not tracked.
    """
    if state not in ("valid", "expired") or not isinstance(token, str) or has_service_token():
        return ""
    signed = token.rsplit(".", 1)[0]
    if signed.split(".", 1)[0] == "form":
        return ""
    return hashlib.sha256(signed.encode()).hexdigest()[:32]


def check_form_token(token: Any) -> tuple[FormToken, float | None]:
    """Return whether a form token is valid, expired, invalid or missing, and, when valid,
    the seconds since the form was rendered."""
    if token is None or token == "":
        return "missing", None
    if not isinstance(token, str):
        return "invalid", None
    try:
        _, signed_at = _form_signer().unsign(
            token, max_age=FORM_TOKEN_MAX_AGE, return_timestamp=True
        )
    except SignatureExpired:
        # Signed by us, but more than a day ago (a reader who left the tab open): harmless.
        return "expired", None
    except (BadSignature, ValueError, TypeError):
        return "invalid", None
    return "valid", max(0.0, time.time() - signed_at.timestamp())


def _form_token_signal(token: Any) -> tuple[FormToken | None, float | None]:
    """Return the token signal of this request's submission and the submit time.

    Only an HTML form post (form-encoded) is expected to carry the token our pages and
    GET /api/v1/form-token hand out; JSON clients are scripts and legitimately have none, so a
    missing or unreadable token from them is no signal at all, until the site requires the
    token: then a bot could skip it just by posting JSON, so anonymous JSON needs it too, and
    scripts that post for readers authenticate with a service token (role poster) instead.
    A request with a service token is a site's back end, form-encoded or not: no token is
    asked of it.
    """
    state, seconds = check_form_token(token)
    if has_service_token():
        return (state, seconds) if state in ("valid", "expired") else (None, None)
    if request.mimetype not in FORM_TYPES:
        if state in ("valid", "expired"):
            return state, seconds
        if services().settings.require_form_token:
            return state, seconds
        return None, None
    if state == "missing" and not services().settings.require_form_token:
        # A site whose own form does not carry the token yet: no signal, rather than every
        # comment held. A forged or unreadable token still holds.
        return None, None
    return state, seconds


def _parse_body() -> tuple[dict[str, Any] | None, Response | None]:
    if request.mimetype == "application/json":
        raw = request.get_data(cache=True)
        refuse_cut_off_body()
        try:
            # The app's provider: it also refuses unpaired surrogate escapes ("\ud800").
            body = current_app.json.loads(raw)
        except (ValueError, UnicodeDecodeError, RecursionError):
            # RecursionError: arrays or objects nested thousands deep (fits in the body limit).
            return None, problem(400, "Bad Request", "The body is not valid JSON.")
        if not isinstance(body, dict):
            return None, problem(400, "Bad Request", "The JSON body must be an object of fields.")
        return body, None
    if request.mimetype in FORM_TYPES:
        form = request.form.to_dict(flat=True)
        refuse_cut_off_body()
        return form, None
    return None, problem(
        415,
        "Unsupported Media Type",
        "Send the comment as application/x-www-form-urlencoded, multipart/form-data or "
        "application/json.",
    )


def _same_site_target(candidate: str | None) -> str | None:
    """Return candidate if it is a safe place to send the browser back to, else None."""
    if not candidate or len(candidate) > 2000 or any(ch in candidate for ch in "\r\n\\"):
        return None
    try:
        parts = urlsplit(candidate)
    except ValueError:  # e.g. an unclosed IPv6 bracket
        return None
    ours = _origin_of(request.host_url.rstrip("/"))
    relative = not parts.scheme and not parts.netloc and candidate.startswith("/")
    if relative and not candidate.startswith("//"):
        origin = ours
    elif parts.scheme in ("http", "https") and parts.netloc:
        # Compared as browsers write origins (lower case, punycode, no default port), the
        # form MODERATION_SITE_ORIGINS is kept in.
        origin = _origin_of(f"{parts.scheme}://{parts.netloc}")
    else:
        return None
    if origin is None:
        return None
    if origin == ours and parts.path.startswith("/api/"):
        return None  # e.g. the Referer of a resubmitted "please fix" page: not a page to show
    allowed = {*services().settings.site_origins, ours}  # normalised when settings were read
    return candidate if origin in allowed else None


def _origin_of(url: str) -> str | None:
    try:
        return normalise_origin(url)
    except ValueError:
        return None


def _article_target(body: Mapping[str, Any]) -> str | None:
    """Return the same-site page the reader came from: redirect_to, else the Referer."""
    given = body.get("redirect_to")
    return _same_site_target(given if isinstance(given, str) else None) or _same_site_target(
        request.referrer
    )


def pending_redirect_target(back_to: str, comment_id: str) -> str:
    """Return the article's address with the pending flag and id in its query and fragment."""
    base = back_to.split("#", 1)[0]
    path, _, query = base.partition("?")
    ours = (REDIRECT_STATUS_PARAM, REDIRECT_ID_PARAM)
    # Drop the flag of an earlier comment (the page the reader posted from may carry one);
    # every other parameter is kept byte for byte.
    kept = [p for p in query.split("&") if p and p.split("=", 1)[0] not in ours]
    kept += [f"{REDIRECT_STATUS_PARAM}=pending", f"{REDIRECT_ID_PARAM}={comment_id}"]
    return f"{path}?{'&'.join(kept)}#comment-{comment_id}"


def _fix_page(errors: dict[str, str], values: Mapping[str, Any], back_to: str | None) -> Response:
    """Return the "please fix your comment" page (422) with everything the reader typed."""
    shown = {k: v for k, v in values.items() if isinstance(v, str)}
    errors = dict(errors)
    if "parent_id" in errors:
        # The reader cannot change a hidden field: drop the reply link, or the page would
        # refuse the same id on every attempt.
        shown["parent_id"] = ""
        errors["parent_id"] = PARENT_GONE
    # Keep a valid token, so the time is still counted from the first rendering.
    given = values.get(FORM_TOKEN_FIELD)
    keep = check_form_token(given)[0] == "valid"
    page = render_template(
        "fix_form.html",
        errors=errors,
        values=shown,
        form_token=given if keep else new_form_token(),
        # Keep the article's address, so fixing the form still leads back to it.
        redirect_to=back_to or "",
    )
    return Response(page, status=422, mimetype="text/html")


def _received_page(comment_id: str, *, duplicate: bool) -> Response:
    """Return the "comment received" page, for a browser with no article to go back to.

    A duplicate (409) says the comment was already received and, unlike a new one, need not
    be awaiting moderation any more: the page tells what it knows of the original.
    """
    status = "pending"
    if duplicate:
        original = services().runtime.store.get(comment_id)
        status = str(original.get("status", "")) if original is not None else ""
    page = render_template(
        "received.html", comment_id=comment_id, duplicate=duplicate, comment_status=status
    )
    return Response(page, status=409 if duplicate else 202, mimetype="text/html")


@bp.context_processor
def reader_draft() -> dict[str, str]:
    """Give error pages of a browser's form post the reader's text and a way back to the article.

    Runs for pages rendered while handling this blueprint's requests, including the rate-limit,
    storage and size errors raised before or inside the view.
    """
    if request.method != "POST" or request.mimetype not in FORM_TYPES:
        return {}
    try:
        form: Mapping[str, Any] = request.form
        if body_cut_off():  # what was read is only the start of the body: show none of it
            form = {}
    except HTTPException:  # the body was over the size limit: none of it was read
        form = {}
    draft = form.get("comment")
    return {
        "reader_draft": draft if isinstance(draft, str) else "",
        "article_url": _article_target(form) or "",
    }


@bp.post("/comments")
def submit() -> Response | tuple[Response, int]:
    """Accept a comment from a form or a script; store it and queue it for scoring."""
    body, error = _parse_body()
    if error is not None:
        return error
    assert body is not None  # noqa: S101 - _parse_body returns one or the other
    values = field_values(body)
    token = values.get(FORM_TOKEN_FIELD)
    token_state, submit_seconds = _form_token_signal(token)
    result = validate_submission(values, submit_seconds=submit_seconds, form_token=token_state)
    browser = wants_html()
    back_to = _article_target(body)
    if isinstance(result, Invalid):
        if browser:
            return _fix_page(result.errors, values, back_to)
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
            if browser:  # e.g. deleted while the reader was typing: keep their text
                return _fix_page(errors, values, back_to)
            return problem(422, "Unprocessable Content", "Some fields need fixing.", errors=errors)
    result = replace(result, form_token_id=form_token_id(token, token_state))
    accepted = accept_comment(
        svc.runtime, svc.celery, result, request_id=g.request_id, client_ip=request.remote_addr
    )
    # A duplicate's id is the original's: a browser's double submit lands on that comment.
    # Its 303 looks like a first post's; g.duplicate_of lets the metrics tell them apart.
    g.duplicate_of = accepted.duplicate_of
    status_url = url_for("comments.status", comment_id=accepted.id)
    if browser:
        if back_to:
            target = pending_redirect_target(back_to, accepted.id)
            return redirect(target, code=303)  # type: ignore[return-value]
        return _received_page(accepted.id, duplicate=accepted.duplicate_of is not None)
    if accepted.duplicate_of is not None:
        return problem(
            409,
            "Conflict",
            "The same comment was already submitted.",
            id=accepted.duplicate_of,
            status_url=status_url,
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
        after=cursor if isinstance(cursor, tuple) else None,
        limit=limit or 1,
    )
    return _json(
        {
            "post_id": post_id,
            "comments": [public_view(r) for r in records],
            "next_cursor": f"{next_cursor[0]}~{next_cursor[1]}" if next_cursor else None,
        }
    )


@bp.get("/form-token")
def form_token() -> Response:
    """Return a signed form-render token for sites that render the form themselves."""
    # One token a render, each good for one comment: no cache may hand the same one out twice.
    response = _json({"form_token": new_form_token(), "field": FORM_TOKEN_FIELD})
    response.headers["Cache-Control"] = "no-store"
    return response


def _json(payload: dict[str, Any], status: int = 200) -> Response:
    return Response(json.dumps(payload), status=status, mimetype="application/json")


demo = Blueprint("demo", __name__)


@demo.get("/")
def demo_page() -> Response:
    """Render a demo article page with the comment form (for trying the service locally)."""
    post_id = "demo-article"
    store = services().runtime.store
    records, _ = store.list_post(post_id, after=None, limit=50)
    # Sent back here after posting (pending_redirect_target): say what happened to the comment.
    posted_id = request.args.get(REDIRECT_ID_PARAM, "")
    posted = store.get(posted_id) if is_comment_id(posted_id) else None
    if posted is not None and posted.get("post_id") != post_id:
        posted = None
    awaiting = request.args.get(REDIRECT_STATUS_PARAM) == "pending" and (
        posted is None or posted["status"] != "approved"
    )
    published = posted if posted is not None and posted["status"] == "approved" else None
    page = render_template(
        "demo.html",
        comments=records,
        awaiting_id=posted_id if awaiting and is_comment_id(posted_id) else "",
        awaiting=awaiting,
        published=published,
        published_listed=published is not None and any(r["id"] == posted_id for r in records),
        values={"post_id": post_id},
        errors={},
        form_token=new_form_token(),
        redirect_to=url_for("demo.demo_page"),
    )
    # The form's token is single-use: a cached copy of the page would reuse it.
    return Response(page, mimetype="text/html", headers={"Cache-Control": "no-store"})
