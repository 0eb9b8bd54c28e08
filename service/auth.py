"""Moderator authentication: a bearer token compared in constant time."""

from __future__ import annotations

import hmac
from collections.abc import Callable
from functools import wraps
from typing import Any, TypeVar

from flask import g, request

from service import services
from service.errors import problem

F = TypeVar("F", bound=Callable[..., Any])


def bearer_token() -> str:
    """Return the bearer token of the request, or an empty string."""
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    return token.strip() if scheme.lower() == "bearer" else ""


def require_moderator(view: F) -> F:
    """Refuse the request with 401 unless it carries a valid moderator token."""

    @wraps(view)
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        expected = services().settings.moderator_token
        given = bearer_token()
        if not expected or not given or not hmac.compare_digest(given.encode(), expected.encode()):
            return problem(
                401,
                "Unauthorized",
                "A valid moderator token is required.",
                headers={"WWW-Authenticate": 'Bearer realm="moderation"'},
            )
        g.moderator = "moderator"
        return view(*args, **kwargs)

    return wrapped  # type: ignore[return-value]
