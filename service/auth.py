"""Moderator authentication and roles: named bearer tokens, stored hashed."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any, TypeVar

from flask import g, request

from service import services
from service.errors import problem
from workers.moderation import ROLE_RANK, Moderator, Role, authenticate

F = TypeVar("F", bound=Callable[..., Any])


def bearer_token() -> str:
    """Return the bearer token of the request, or an empty string.

    Tokens are printable ASCII; anything else (a WSGI server may pass a lone surrogate) cannot
    be one and counts as no token, a 401, rather than failing to encode for the comparison.
    """
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not (token.isascii() and token.isprintable()):
        return ""
    return token


def current_moderator() -> Moderator | None:
    """Return the moderator making this request (cached per request), or None."""
    if "moderator" not in g:
        token = bearer_token()
        svc = services()
        g.moderator = (
            authenticate(svc.runtime.store, token, svc.settings.moderator_token) if token else None
        )
    found: Moderator | None = g.moderator
    return found


def require_role(role: Role) -> Callable[[F], F]:
    """Refuse with 401 without a valid token, 403 when the token's role may not act."""

    def decorate(view: F) -> F:
        @wraps(view)
        def wrapped(*args: Any, **kwargs: Any) -> Any:
            moderator = current_moderator()
            if moderator is None:
                return problem(
                    401,
                    "Unauthorized",
                    "A valid moderator token is required.",
                    headers={"WWW-Authenticate": 'Bearer realm="moderation"'},
                )
            if ROLE_RANK[moderator.role] < ROLE_RANK[role]:
                needs = "an admin" if role == "admin" else f"a {role}"
                return problem(403, "Forbidden", f"This action needs {needs} token.")
            return view(*args, **kwargs)

        return wrapped  # type: ignore[return-value]

    return decorate
