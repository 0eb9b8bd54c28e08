"""Serve the OpenAPI document that describes this API (service/openapi.yaml)."""

from __future__ import annotations

import json
from functools import cache
from importlib import resources
from typing import Any

import yaml
from flask import Blueprint, Response

bp = Blueprint("openapi", __name__)


@cache
def openapi_document() -> dict[str, Any]:
    """Return the parsed OpenAPI document (read once per process, on first use)."""
    text = resources.files("service").joinpath("openapi.yaml").read_text(encoding="utf-8")
    document: dict[str, Any] = yaml.safe_load(text)
    return document


@bp.get("/api/v1/openapi.json")
def openapi_json() -> Response:
    """Return the OpenAPI 3.1 document."""
    return Response(json.dumps(openapi_document()), mimetype="application/json")
