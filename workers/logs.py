"""Structured JSON logging with email redaction, shared by the API and the workers."""

from __future__ import annotations

import logging
import sys

from pythonjsonlogger.json import JsonFormatter

from workers.privacy import RedactingFilter


def configure_logging(level: str = "INFO") -> None:
    """Send JSON log lines to stderr; every handler scrubs email addresses."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        JsonFormatter(
            "%(asctime)s %(levelname)s %(name)s %(message)s",
            rename_fields={"asctime": "time", "levelname": "level", "name": "logger"},
        )
    )
    handler.addFilter(RedactingFilter())
    root = logging.getLogger()
    for existing in list(root.handlers):
        root.removeHandler(existing)
    root.addHandler(handler)
    root.setLevel(level.upper())
