"""Request bodies are read whole or refused: a chunked body over the size limit is a 413."""

from __future__ import annotations

from typing import Any

from flask import g, request
from werkzeug.exceptions import RequestEntityTooLarge, UnsupportedMediaType

FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")


def body_cut_off() -> bool:
    """Return True when a body sent without Content-Length (chunked) was over the size limit.

    Werkzeug refuses a Content-Length over MAX_CONTENT_LENGTH (413) before reading. A streamed
    body, which it reads only when the server ends the stream (wsgi.input_terminated: gunicorn
    always does), is read up to the limit and then ends as if it were complete, so the JSON or
    form would be parsed cut short. Call only once the body has been read: one more byte from
    the server's stream tells a body of exactly the limit from a longer one.
    """
    if "body_cut_off" not in g:
        environ = request.environ
        cut_off = False
        if (
            request.content_length is None
            and request.max_content_length is not None
            and environ.get("wsgi.input_terminated")
        ):
            try:
                cut_off = bool(environ["wsgi.input"].read(1))
            except (OSError, ValueError):  # e.g. the client hung up past the limit
                cut_off = True
        g.body_cut_off = cut_off
    return bool(g.body_cut_off)


def refuse_cut_off_body() -> None:
    """Raise 413 if the body just read was only the start of a longer, chunked one."""
    if body_cut_off():
        raise RequestEntityTooLarge()


def body_fields() -> dict[str, Any] | None:
    """Return the fields of a JSON object or form body (None if it is JSON but not an object),
    read whole; raise 415 for a body of any other type.

    Werkzeug parses no form from other types, so their fields would read as missing (a 422
    naming a field the client did send). A request with no body and no type has no fields."""
    if request.is_json:
        body = request.get_json(silent=True)
    elif request.mimetype in FORM_TYPES:
        body = request.form.to_dict()
    elif request.mimetype or request.get_data(cache=True):
        raise UnsupportedMediaType(
            "Send the body as application/json (an object) or application/x-www-form-urlencoded."
        )
    else:
        body = {}
    refuse_cut_off_body()
    return body if isinstance(body, dict) else None
