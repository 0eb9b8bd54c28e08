"""Flask API: a thin HTTP skin over the functions in workers/."""

from __future__ import annotations

import logging
import re
import secrets
from dataclasses import dataclass

from celery import Celery
from flask import Flask, Response, current_app, g, request

from service.validation import EdgeJSONProvider
from workers.celery_app import create_celery
from workers.logs import configure_logging
from workers.runtime import Runtime
from workers.settings import Settings

log = logging.getLogger(__name__)
_REQUEST_ID = re.compile(r"[A-Za-z0-9._-]{1,64}\Z")


@dataclass(frozen=True)
class Services:
    """What the views use: settings, per-process resources and the Celery app."""

    settings: Settings
    runtime: Runtime
    celery: Celery


def services() -> Services:
    """Return the services of the current app."""
    found: Services = current_app.extensions["moderation"]
    return found


def create_app(settings: Settings | None = None, *, configure_logs: bool = True) -> Flask:
    """Build the Flask app; settings default to the environment (read here, once)."""
    settings = (settings or Settings.from_env()).check()
    if configure_logs:
        configure_logging(settings.log_level)
    app = Flask(__name__)
    app.config.update(
        SECRET_KEY=settings.secret_key,
        MAX_CONTENT_LENGTH=settings.max_content_length,
        MAX_FORM_MEMORY_SIZE=settings.max_content_length,
        JSON_SORT_KEYS=False,
    )
    app.json = EdgeJSONProvider(app)  # deep nesting is a 400 from get_json, not a 500
    app.json.sort_keys = False
    runtime = Runtime(settings)
    runtime.vault  # noqa: B018 - fail at start-up, not on the first comment, if keys are bad
    app.extensions["moderation"] = Services(
        settings=settings, runtime=runtime, celery=create_celery(settings)
    )

    from service.abuse import (
        accepted_submission,
        author_key,
        client_key,
        has_service_token,
        install_abuse_protection,
    )
    from service.comments import bp as comments_bp
    from service.comments import demo as demo_bp
    from service.errors import register_error_handlers
    from service.health import bp as health_bp
    from service.metrics import install_metrics
    from service.moderation import bp as moderation_bp
    from service.openapi import bp as openapi_bp
    from service.privacy import bp as privacy_bp

    limiter = install_abuse_protection(app, settings)
    # Per client: every attempt counts, refused ones too, atomically as it arrives (counting
    # after the request let 20 concurrent posts through a 2/minute limit).
    # Per author: only accepted submissions count. The address is unverified, so counting
    # refused posts let anyone lock a reader out by posting empty comments with their address;
    # the check-then-count race this allows is bounded by the per-client limit.
    for limit, key, counts in (
        (settings.rate_limit_ip, client_key, None),
        (settings.rate_limit_author, author_key, accepted_submission),
    ):
        if limit:
            limiter.limit(
                limit,
                key_func=key,
                methods=["POST"],
                exempt_when=has_service_token,
                deduct_when=counts,
            )(comments_bp)
    for blueprint in (moderation_bp, privacy_bp, health_bp, demo_bp, openapi_bp):
        limiter.exempt(blueprint)
    app.register_blueprint(comments_bp)
    app.register_blueprint(moderation_bp)
    app.register_blueprint(privacy_bp)
    app.register_blueprint(health_bp)
    app.register_blueprint(demo_bp)
    app.register_blueprint(openapi_bp)
    register_error_handlers(app)
    install_metrics(app)

    @app.before_request
    def assign_request_id() -> None:
        given = request.headers.get("X-Request-ID", "")
        g.request_id = given if _REQUEST_ID.match(given) else secrets.token_hex(8)

    @app.after_request
    def finish(response: Response) -> Response:
        response.headers["X-Request-ID"] = g.get("request_id", "")
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        if response.mimetype == "text/html":
            response.headers.setdefault(
                "Content-Security-Policy",
                "default-src 'self'; style-src 'self' 'unsafe-inline'; frame-ancestors 'none'",
            )
            response.headers.setdefault("X-Frame-Options", "DENY")
            response.headers.setdefault("Referrer-Policy", "same-origin")
        return response

    return app
