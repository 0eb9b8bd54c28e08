"""Logs never hold an email address or a client IP, whoever writes them (app, gunicorn)."""

from __future__ import annotations

import contextlib
import io
import json
import logging
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import ROOT
from workers.logs import configure_logging
from workers.privacy import redact_log_text


@pytest.mark.parametrize(
    ("text", "secret"),
    [
        ("path /api/v1/comments/jane@example.com", "jane@example.com"),
        ("from jane@пример.рф", "jane@пример.рф"),  # a TLD in another script
        ("from x@xn--e1afmkfd.xn--p1ai", "x@xn--e1afmkfd.xn--p1ai"),
        ("GET /api/v1/comments/jane@example.c0m HTTP/1.1", "example.c0m"),  # digits in the TLD
        ("from jane@sub.example.ab-c", "ab-c"),
        ("from o'brien@example.com", "brien"),  # an apostrophe is valid in the local part
        # gunicorn logs a UTF-8 path read as Latin-1 ("мох" holds U+0085 there, a \s space).
        *(
            (f"GET /api/v1/comments/{garbled} HTTP/1.1", garbled)
            for garbled in (
                "иван@пример.рф".encode().decode("latin-1"),
                "мох@пример.рф".encode().decode("latin-1"),
            )
        ),
        ("Invalid request from ip=203.0.113.9: bad header", "203.0.113.9"),
        ("peer 2001:db8:85a3::8a2e:370:7334 closed", "2001:db8:85a3::8a2e:370:7334"),
        ("peer ::1 closed", "::1"),
    ],
)
def test_addresses_are_redacted(text: str, secret: str) -> None:
    assert secret not in redact_log_text(text)


@pytest.mark.parametrize(
    "text",
    [
        "at 08:03:46",
        "[27/Nov/2026:08:25:45 +0000]",  # gunicorn's access-log time
        "key : value",
        "model 20261127-065917-94032115",
    ],
)
def test_ordinary_log_text_is_left_alone(text: str) -> None:
    assert redact_log_text(text) == text


def test_hostile_text_is_redacted_in_linear_time() -> None:
    for text in ("1:" * 50_000, "a@" * 50_000, "1." * 50_000):
        started = time.perf_counter()
        redact_log_text(text)
        assert time.perf_counter() - started < 1.0


def test_strings_passed_as_extra_fields_are_redacted_too() -> None:
    sink = io.StringIO()
    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    try:
        configure_logging("INFO", stream=sink)
        logging.getLogger("test").error(
            "request failed", extra={"path": "/x/jane@example.com", "peer": "198.51.100.7"}
        )
    finally:
        for handler in list(root.handlers):
            root.removeHandler(handler)
        for handler in saved[0]:
            root.addHandler(handler)
        root.setLevel(saved[1])
    line = json.loads(sink.getvalue().splitlines()[-1])
    assert line["path"] == "/x/[email redacted]"
    assert line["peer"] == "[ip redacted]"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_gunicorn_logs_are_json_and_redacted(worker_env: dict[str, str], tmp_path: Path) -> None:
    port = _free_port()
    log_path = tmp_path / "gunicorn.log"
    env = {**worker_env, "HOST": "127.0.0.1", "PORT": str(port), "WEB_CONCURRENCY": "1"}
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "gunicorn",
                "-c",
                "python:service.gunicorn_conf",
                "service:create_app()",
            ],
            env=env,
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(f"{base}/healthz", timeout=1).close()  # noqa: S310
                break
            except OSError:
                assert time.monotonic() < deadline and proc.poll() is None, log_path.read_text()
                time.sleep(0.1)
        with contextlib.suppress(urllib.error.HTTPError):
            urllib.request.urlopen(f"{base}/api/v1/comments/jane%40example.com", timeout=5)  # noqa: S310
        with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
            raw.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nBad Header jane@example.com\r\n\r\n")
            raw.recv(1024)
        time.sleep(0.5)
    finally:
        proc.terminate()
        proc.wait(20)
    text = log_path.read_text()
    assert "jane@example.com" not in text and "jane%40example.com" not in text
    assert "127.0.0.1" not in text
    gunicorn_lines = [
        json.loads(line) for line in text.splitlines() if '"logger": "gunicorn' in line
    ]
    # The access log, as JSON: the request with an address in its path was logged, redacted.
    assert any("/api/v1/comments/[email redacted]" in line["message"] for line in gunicorn_lines)
    assert any("Invalid request" in line["message"] for line in gunicorn_lines)  # error log
