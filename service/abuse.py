"""Abuse protection wired into the app: rate limits (Flask-Limiter on Redis), CORS, proxies."""

from __future__ import annotations

import ipaddress
import json

from flask import Flask, Response, request
from flask_cors import CORS
from flask_limiter import Limiter
from werkzeug.middleware.proxy_fix import ProxyFix

from service.auth import current_moderator
from service.body import FORM_TYPES, body_cut_off
from service.validation import stored_address
from workers.privacy import ip_digest
from workers.settings import Settings
from workers.store import RATE_LIMIT_PREFIX


def client_key() -> str:
    """Rate-limit key for the client IP: a keyed digest, so no full IP is ever stored.

    An IPv6 client is keyed by its /64: one host is usually given a whole /64, so keying by
    full address let it post from 2^64 addresses, each with a fresh limit."""
    from service import services

    key = services().settings.email_hmac_key
    return "ip:" + ip_digest(client_network(request.remote_addr), key)


def client_network(address: str | None) -> str:
    """Return what a client is limited as: its IPv4 address, or its IPv6 /64 network."""
    try:
        ip = ipaddress.ip_address(address or "")
    except ValueError:
        return address or "unknown"
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, 64), strict=False))
    return str(ip)


def author_key() -> str:
    """Rate-limit key for the author: the keyed digest the intake stores the comment under
    (of the address as email-validator normalises it), or the client's key when the address
    is missing or not valid (the submission is then refused, so it counts for nobody)."""
    from service import services

    email = None
    if request.mimetype == "application/json":
        try:
            body = json.loads(request.get_data(cache=True) or b"null")
        except (ValueError, UnicodeDecodeError, RecursionError):
            body = None
        email = body.get("email") if isinstance(body, dict) else None
    elif request.mimetype in FORM_TYPES:
        email = request.form.get("email")
    if email is not None and body_cut_off():
        # Only the start of the body was read: the address may be cut short (someone else's).
        # The view answers 413; the client stands in for the author until then.
        return client_key()
    address = stored_address(email)
    if address is None:
        return client_key()
    return "author:" + services().runtime.vault.digest(address)


_ACCEPTED = frozenset({202, 303, 409})  # stored, or a duplicate of a stored comment


def accepted_submission(response: Response) -> bool:
    """Return True when a submission's answer means it was accepted (the author limit)."""
    return response.status_code in _ACCEPTED


def has_service_token() -> bool:
    """Whether the request carries a valid token (poster, moderator or admin): such clients
    are exempt from submission rate limits and, for JSON, from the required form token."""
    return bool(request.headers.get("Authorization")) and current_moderator() is not None


def install_abuse_protection(app: Flask, settings: Settings) -> Limiter:
    """Set up trusted proxies, CORS for the site's origins, and submission rate limits."""
    if settings.trusted_proxies > 0:
        # Only the hops we operate may set X-Forwarded-*; a forged header from the client is
        # one hop further out and is ignored.
        n = settings.trusted_proxies
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=n, x_proto=n, x_host=n)  # type: ignore[method-assign]
    if settings.site_origins:
        public = {"origins": list(settings.site_origins), "max_age": 600}
        CORS(
            app,
            resources={
                r"/api/v1/comments": public,
                r"/api/v1/comments/*": public,
                r"/api/v1/posts/*": public,
                r"/api/v1/form-token": public,
            },
        )
    limiter = Limiter(
        key_func=client_key,
        app=app,
        storage_uri=settings.redis_url,
        storage_options={"socket_connect_timeout": 2, "socket_timeout": 2},
        key_prefix=RATE_LIMIT_PREFIX,
        # Fixed windows: one INCR-and-EXPIRE script per limit, about a third cheaper per request
        # than moving windows (a sorted-set script each); a client can at most double a limit
        # across a window boundary, acceptable for spam throttling.
        strategy="fixed-window",
        # No X-RateLimit-*/Retry-After on every response: they cost a Redis round trip per
        # limit per request, and a browser posting a form has no use for them. A 429 gets its
        # Retry-After from the breached limit (service/errors.py).
        headers_enabled=False,
        # If Redis is down the limiter steps aside; storing the comment then fails with 503.
        swallow_errors=True,
    )
    return limiter
