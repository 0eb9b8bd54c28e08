"""The intake ceiling: a Flask app whose comment endpoint only answers 202 (no parsing, no Redis).

Served by the same gunicorn settings as the service, in the same benchmark run.
"""

from __future__ import annotations

import json
import secrets

from flask import Flask, Response


def create_app() -> Flask:
    """Build the bare app."""
    app = Flask(__name__)

    @app.post("/api/v1/comments")
    def submit() -> Response:
        comment_id = secrets.token_hex(12)
        body = {
            "id": comment_id,
            "status": "pending",
            "status_url": f"/api/v1/comments/{comment_id}",
        }
        return Response(json.dumps(body), status=202, mimetype="application/json")

    @app.get("/healthz")
    def healthz() -> Response:
        return Response('{"status": "ok"}', mimetype="application/json")

    return app
