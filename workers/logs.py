"""Structured JSON logging with email redaction, shared by the API and the workers."""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import IO

from pythonjsonlogger.json import JsonFormatter

from workers.privacy import RedactingFilter

# The X-Request-ID of the submission being handled, so a comment's lines can be followed from
# the API into the worker.
_request_id: ContextVar[str] = ContextVar("request_id", default="")


def bind_request_id(request_id: str) -> None:
    """Tag this context's later log lines with request_id (until request_id_bound exits)."""
    _request_id.set(request_id)


@contextmanager
def request_id_bound(request_id: str) -> Iterator[None]:
    """Tag every log line inside the block with request_id."""
    token = _request_id.set(request_id)
    try:
        yield
    finally:
        _request_id.reset(token)


class RequestIdFilter(logging.Filter):
    """Add the bound request id to records that do not carry one."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not getattr(record, "request_id", ""):
            bound = _request_id.get()
            if bound:
                record.request_id = bound
        return True


def configure_logging(level: str = "INFO", stream: IO[str] | None = None) -> None:
    """Send JSON log lines to stderr (or stream); every handler scrubs email addresses."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(
        JsonFormatter(
            "%(asctime)s %(levelname)s %(name)s %(message)s",
            rename_fields={"asctime": "time", "levelname": "level", "name": "logger"},
        )
    )
    handler.addFilter(RedactingFilter())
    handler.addFilter(RequestIdFilter())
    root = logging.getLogger()
    for existing in list(root.handlers):
        root.removeHandler(existing)
    root.addHandler(handler)
    root.setLevel(level.upper())
