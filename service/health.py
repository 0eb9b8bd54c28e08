"""Liveness and readiness probes."""

from __future__ import annotations

import logging

import redis
from flask import Blueprint, Response, jsonify

from model import ArtifactError
from model.registry import RegistryError
from service import services

log = logging.getLogger(__name__)
bp = Blueprint("health", __name__)


@bp.get("/healthz")
def healthz() -> Response:
    """The process is up."""
    return jsonify(status="ok")


@bp.get("/readyz")
def readyz() -> tuple[Response, int]:
    """Redis answers and the live model loads."""
    checks: dict[str, str] = {}
    runtime = services().runtime
    try:
        runtime.store.ping()
        checks["redis"] = "ok"
    except (redis.exceptions.RedisError, OSError) as exc:
        checks["redis"] = f"unavailable: {type(exc).__name__}"
    try:
        checks["model"] = runtime.classifier().version
    except (ArtifactError, RegistryError, OSError) as exc:
        log.error("model not loadable", extra={"error": str(exc)})
        checks["model"] = "unavailable"
    ready = checks["redis"] == "ok" and checks["model"] != "unavailable"
    return jsonify(status="ready" if ready else "unavailable", checks=checks), 200 if ready else 503
