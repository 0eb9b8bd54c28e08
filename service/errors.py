"""Error responses: problem+json for clients, small HTML pages for browsers, never a trace."""

from __future__ import annotations

import logging
import math
import time
from typing import Any

import redis
from flask import Flask, Response, current_app, jsonify, render_template, request
from kombu.exceptions import OperationalError
from werkzeug.exceptions import HTTPException

from service.validation import MAX_LENGTH

log = logging.getLogger(__name__)

PROBLEM_JSON = "application/problem+json"
RETRY_AFTER_SECONDS = 5
# Browsers get words a reader can act on where Werkzeug's or Flask-Limiter's are technical
# ("The data value transmitted exceeds the capacity limit.", "10 per 1 minute").
_READER_WORDING = {
    413: (
        "Your comment is too long to send",
        f"A comment can be up to {MAX_LENGTH['comment']:,} characters. "
        "Please shorten it and post it again.",
    ),
    429: (
        "Please wait a moment",
        "Several comments were posted from here in a short time. "
        "Please wait a minute, then post your comment again.",
    ),
}


def wants_html() -> bool:
    """Return True when the client is a browser that prefers an HTML page."""
    best = request.accept_mimetypes.best_match(["application/json", "text/html"])
    return best == "text/html" and request.mimetype != "application/json"


def problem(
    status: int,
    title: str,
    detail: str = "",
    *,
    errors: dict[str, str] | None = None,
    headers: dict[str, str] | None = None,
    **extra: Any,
) -> Response:
    """Return an RFC 9457 problem response (JSON), or an HTML page for browsers."""
    if wants_html():
        title, detail = _READER_WORDING.get(status, (title, detail))
        html = render_template(
            "error.html", status=status, title=title, detail=detail, errors=errors or {}
        )
        response = Response(html, status=status, mimetype="text/html")
    else:
        body: dict[str, Any] = {"type": "about:blank", "title": title, "status": status}
        if detail:
            body["detail"] = detail
        if errors:
            body["errors"] = errors
        body.update(extra)
        response = jsonify(body)
        response.status_code = status
        response.mimetype = PROBLEM_JSON
    for key, value in (headers or {}).items():
        response.headers[key] = value
    return response


def _seconds_until_limit_resets() -> int:
    """Return when the breached rate limit's window ends (a per-day limit: hours, not 5 s)."""
    for limiter in current_app.extensions.get("limiter", ()):
        breached = limiter.current_limit
        if breached is not None:
            return max(1, math.ceil(float(breached.reset_at) - time.time()))
    return RETRY_AFTER_SECONDS


def register_error_handlers(app: Flask) -> None:
    """Turn every error into a clear 4xx/5xx response, never a stack trace."""

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException) -> Response:
        code = exc.code or 500
        headers = dict(exc.get_headers()) if code == 405 else {}
        headers.pop("Content-Type", None)
        if code == 429:
            headers["Retry-After"] = str(_seconds_until_limit_resets())
        return problem(code, exc.name, exc.description or "", headers=headers)

    @app.errorhandler(redis.exceptions.ConnectionError)
    @app.errorhandler(redis.exceptions.TimeoutError)
    @app.errorhandler(redis.exceptions.BusyLoadingError)
    # Full (maxmemory with noeviction) or a replica after a failover: writes refused for now.
    @app.errorhandler(redis.exceptions.OutOfMemoryError)  # type: ignore[attr-defined]
    @app.errorhandler(redis.exceptions.ReadOnlyError)
    @app.errorhandler(OperationalError)
    def store_unavailable(exc: Exception) -> Response:
        log.error("storage unavailable", extra={"error": type(exc).__name__, "path": request.path})
        return problem(
            503,
            "Service Unavailable",
            "Comments cannot be stored right now. Please try again shortly.",
            headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
        )

    @app.errorhandler(Exception)
    def unexpected(exc: Exception) -> Response:
        log.exception("unhandled error", extra={"path": request.path})
        return problem(500, "Internal Server Error", "Something went wrong on our side.")
