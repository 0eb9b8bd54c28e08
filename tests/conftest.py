"""Shared fixtures: a private Redis, settings built from a dict, the app, a real Celery worker."""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

import pytest
import redis as redis_lib
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from service import create_app
from workers.celery_app import create_celery
from workers.embedded_redis import EmbeddedRedis
from workers.logs import configure_logging
from workers.privacy import EMAIL_PATTERN
from workers.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"
MODERATOR_TOKEN = "test-moderator-token-0123456789"
TEST_SECRETS = {
    "MODERATION_ENV": "test",
    "MODERATION_SECRET_KEY": "test-secret-key",
    # Fernet keys: 32 url-safe base64 bytes; fixed so failures are reproducible.
    "MODERATION_EMAIL_ENCRYPTION_KEYS": "dGVzdC1lbmNyeXB0aW9uLWtleS0zMi1ieXRlcy1vayE=",
    "MODERATION_EMAIL_HMAC_KEY": "test-hmac-key",
    "MODERATION_MODERATOR_TOKEN": MODERATOR_TOKEN,
}


# Everything a public endpoint answered and every log line, for the run-wide privacy check.
PUBLIC_RESPONSES: list[tuple[str, int, str, str]] = []
WORKER_LOGS: list[Path] = []
# Addresses the tests use as client IPs (documentation ranges, RFC 5737).
TEST_IP_PREFIXES = ("203.0.113.", "198.51.100.")
PRIVATE_PATHS = ("/api/v1/moderation", "/api/v1/privacy")


class RecordingClient(FlaskClient):
    """A test client that keeps what public endpoints answered."""

    def open(self, *args: Any, **kwargs: Any) -> TestResponse:
        response: TestResponse = super().open(*args, **kwargs)
        path = response.request.path
        if not path.startswith(PRIVATE_PATHS):
            body = response.get_data(as_text=True) if not response.is_streamed else ""
            PUBLIC_RESPONSES.append((path, response.status_code, response.mimetype or "", body))
        return response


@pytest.fixture(scope="session", autouse=True)
def privacy_audit() -> Iterator[None]:
    """Over the whole run: no email, token or full client IP in a log line or public response."""
    sink = io.StringIO()
    previous_client = Flask.test_client_class
    Flask.test_client_class = RecordingClient
    configure_logging("DEBUG", stream=sink)
    yield
    Flask.test_client_class = previous_client
    texts = {"service logs": sink.getvalue()}
    texts.update({str(p): p.read_text(errors="replace") for p in WORKER_LOGS if p.exists()})
    for path, status, mimetype, body in PUBLIC_RESPONSES:
        # A browser whose form had errors gets its own input back (so nothing is lost).
        if not (status == 422 and mimetype == "text/html"):
            texts[f"response {status} {path}"] = body
    for where, text in texts.items():
        emails = EMAIL_PATTERN.findall(text)
        assert not emails, f"email address in {where}: {emails[:3]}"
        assert "Bearer " not in text, f"authorization header in {where}"
        assert MODERATOR_TOKEN not in text, f"token in {where}"
        assert not re.search(r"\bmod_[A-Za-z0-9_-]{20,}", text), f"token in {where}"
        for prefix in TEST_IP_PREFIXES:
            assert prefix not in text, f"client IP in {where}"


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedRedis]:
    """A private redis-server on a free port for the whole run."""
    server = EmbeddedRedis(tmp_path_factory.mktemp("redis")).start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A model registry seeded with the bundled default artifact."""
    from model import ModelRegistry

    root = tmp_path_factory.mktemp("models")
    ModelRegistry(root).ensure_seeded()
    return root


@pytest.fixture(scope="session")
def settings_values(redis_server: EmbeddedRedis, model_dir: Path) -> dict[str, str]:
    """The MODERATION_* values every process of the test run shares."""
    return {
        **TEST_SECRETS,
        "MODERATION_REDIS_URL": redis_server.url,
        "MODERATION_MODEL_DIR": str(model_dir),
        "MODERATION_SWEEP_AFTER_SECONDS": "2",
        "MODERATION_SWEEP_INTERVAL_SECONDS": "1",
        "MODERATION_MODEL_CHECK_SECONDS": "0.2",
        "MODERATION_LOG_LEVEL": "INFO",
        # Tests post many comments from one address; tests of these features raise them.
        "MODERATION_RATE_LIMIT_IP": "100000/minute",
        "MODERATION_RATE_LIMIT_AUTHOR": "100000/minute",
        "MODERATION_DUPLICATE_WINDOW_SECONDS": "0",
        # Tests repeat the same texts across tests; the repeated-text test turns it on.
        "MODERATION_REPEAT_WINDOW_SECONDS": "0",
    }


@pytest.fixture(scope="session")
def base_settings(settings_values: dict[str, str]) -> Settings:
    return Settings.from_mapping(settings_values).check()


@pytest.fixture
def settings(base_settings: Settings, request: pytest.FixtureRequest) -> Settings:
    """Settings for one test (override with ``settings.with_overrides``).

    Tests that start the session's worker use database 0, where it listens. The others use
    database 1, where no worker takes their comments, so they can score them in-process.
    """
    if "worker" in request.fixturenames:
        return base_settings
    return base_settings.with_overrides(redis_url=base_settings.redis_url.rsplit("/", 1)[0] + "/1")


@pytest.fixture
def redis(settings: Settings) -> Iterator[redis_lib.Redis]:
    """A client on the test's Redis database; the service's keys are removed before each test.

    Celery's own keys (queue bindings) stay, so the session's worker keeps working.
    """
    client = redis_lib.Redis.from_url(settings.redis_url, decode_responses=True)
    keys = list(client.scan_iter("mod:*", count=1000))
    if keys:
        client.delete(*keys)
    yield client
    client.close()


@pytest.fixture
def app(settings: Settings, redis: redis_lib.Redis) -> Flask:
    flask_app = create_app(settings, configure_logs=False)
    flask_app.config["TESTING"] = True
    return flask_app


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


def client_for(settings: Settings, **overrides: object) -> FlaskClient:
    """Return a test client of an app with some settings changed (same Redis and model)."""
    return create_app(settings.with_overrides(**overrides), configure_logs=False).test_client()


def post_chunked(
    client: FlaskClient,
    path: str,
    body: bytes,
    content_type: str,
    *,
    remote_addr: str = "127.0.0.1",
    **headers: str,
) -> TestResponse:
    """POST a body as gunicorn passes a chunked one: no length, a stream the server ends."""
    return client.post(
        path,
        input_stream=io.BytesIO(body),
        content_type=content_type,
        headers={"Transfer-Encoding": "chunked", **headers},
        environ_overrides={"wsgi.input_terminated": True, "REMOTE_ADDR": remote_addr},
    )


class WorkerProcess:
    """A real `python -m workers worker` process whose output goes to a file."""

    def __init__(
        self,
        env: dict[str, str],
        log_path: Path,
        concurrency: int = 1,
        extra_args: tuple[str, ...] = (),
    ) -> None:
        self.env = env
        self.log_path = log_path
        self.concurrency = concurrency
        self.extra_args = extra_args
        self.process: subprocess.Popen[bytes] | None = None
        WORKER_LOGS.append(log_path)

    def start(self, settings: Settings, timeout: float = 30.0) -> WorkerProcess:
        """Start the worker and wait until it answers a ping."""
        self.spawn()
        assert self.process is not None
        celery = create_celery(settings)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"worker exited early; see {self.log_path}")
            if celery.control.ping(timeout=0.5):
                return self
        raise RuntimeError(f"worker did not answer within {timeout}s; see {self.log_path}")

    def spawn(self) -> WorkerProcess:
        """Start the worker without waiting for it (it starts consuming as soon as it can)."""
        with self.log_path.open("ab") as log:
            self.process = self._spawn(log)
        return self

    def _command(self) -> list[str]:
        return [
            "worker",
            "--concurrency",
            str(self.concurrency),
            "--beat",
            "--without-gossip",
            "--without-mingle",
        ]

    def _spawn(self, log: IO[bytes]) -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            [sys.executable, "-m", "workers", *self._command(), *self.extra_args],
            env=self.env,
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
            # Its own process group, so kill() reaches the pool children and the beat process.
            start_new_session=True,
        )

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.kill()

    def kill(self) -> None:
        """Kill the worker, its pool children and its beat with SIGKILL, as a crash would."""
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")


@pytest.fixture(scope="session")
def worker_env(
    settings_values: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MODERATION_")}
    env.update(settings_values)
    return env


@pytest.fixture(scope="session")
def worker(
    worker_env: dict[str, str], base_settings: Settings, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[WorkerProcess]:
    """One real Celery worker process (with the sweep scheduler) for the session."""
    proc = WorkerProcess(worker_env, tmp_path_factory.mktemp("worker") / "worker.log")
    proc.start(base_settings)
    yield proc
    proc.stop()


def wait_for(predicate, timeout: float = 5.0, interval: float = 0.02):  # type: ignore[no-untyped-def]
    """Poll predicate until it returns something truthy; return it (or fail the test)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    pytest.fail(f"condition not met within {timeout}s")


DECIDED_STATES = ("scored", "moderated")


class Stack:
    """A private Redis, the app on it, and any number of worker processes (stopped at the end).

    For tests that kill or restart processes, or need workers configured differently from the
    session's: nothing they do reaches the session's Redis or worker.
    """

    def __init__(self, tmp_path: Path, values: dict[str, str], worker_env: dict[str, str]) -> None:
        from model import ModelRegistry

        self.tmp_path = tmp_path
        self.server = EmbeddedRedis(tmp_path / "redis", appendfsync="always").start()
        model_dir = tmp_path / "models"  # its own dir: the beat schedule file lives beside it
        ModelRegistry(model_dir).ensure_seeded()
        self.values = {
            **values,
            "MODERATION_REDIS_URL": self.server.url,
            "MODERATION_MODEL_DIR": str(model_dir),
            # One test client posts hundreds of comments from one address.
            "MODERATION_RATE_LIMIT_IP": "1000000/minute",
            "MODERATION_RATE_LIMIT_AUTHOR": "1000000/minute",
        }
        self.settings = Settings.from_mapping(self.values).check()
        self.env = {**worker_env, **self.values}
        self.redis = redis_lib.Redis.from_url(self.server.url, decode_responses=True)
        self.workers: list[WorkerProcess] = []
        self._app: Flask | None = None

    @property
    def app(self) -> Flask:
        if self._app is None:
            self._app = create_app(self.settings, configure_logs=False)
            self._app.config["TESTING"] = True
        return self._app

    def client(self) -> FlaskClient:
        return self.app.test_client()

    def start_worker(self, concurrency: int = 2, *, wait: bool = True) -> WorkerProcess:
        log = self.tmp_path / f"worker-{len(self.workers)}.log"
        proc = WorkerProcess(self.env, log, concurrency=concurrency)
        self.workers.append(proc)
        return proc.start(self.settings) if wait else proc.spawn()

    def supervise(self) -> int:
        """Replace workers that exited, as a restart policy would; return how many."""
        dead = [p for p in self.workers if p.process is not None and p.process.poll() is not None]
        for proc in dead:
            self.workers.remove(proc)
            self.start_worker(proc.concurrency, wait=False)
        return len(dead)

    def record(self, comment_id: str) -> dict[str, str]:
        return self.redis.hgetall(f"mod:c:{comment_id}")

    def audit(self, comment_id: str) -> list[dict[str, Any]]:
        return [json.loads(e) for e in self.redis.lrange(f"mod:c:{comment_id}:audit", 0, -1)]

    def decided(self, ids: list[str]) -> list[str]:
        pipe = self.redis.pipeline(transaction=False)
        for comment_id in ids:
            pipe.hget(f"mod:c:{comment_id}", "state")
        return [i for i, s in zip(ids, pipe.execute(), strict=True) if s in DECIDED_STATES]

    def close(self) -> None:
        for proc in self.workers:
            proc.stop()
        self.redis.close()
        self.server.stop()


@pytest.fixture
def stack_factory(
    tmp_path: Path, settings_values: dict[str, str], worker_env: dict[str, str]
) -> Iterator[Callable[..., Stack]]:
    """Build a private stack, with settings overridden as MODERATION_* values.

    ``worker_env`` adds variables seen by the worker processes only.
    """
    made: list[Stack] = []

    def make(worker_only: dict[str, str] | None = None, **overrides: str) -> Stack:
        env = {**worker_env, **(worker_only or {})}
        stack = Stack(tmp_path, {**settings_values, **overrides}, env)
        made.append(stack)
        return stack

    yield make
    for stack in made:
        stack.close()


class WebhookWorkerProcess(WorkerProcess):
    """A real `python -m workers webhooks` process (the webhook deliveries' own worker)."""

    def _command(self) -> list[str]:
        return ["webhooks", "--hostname", "webhooks@%h", "--without-gossip", "--without-mingle"]


class DropOneReply:
    """A TCP proxy to Redis that loses the reply of the first command holding ``needle``: it
    forwards the command, lets Redis run it, then cuts the client's connection instead of
    relaying the answer (a reply lost on the network). redis-py's retry then sends it again."""

    def __init__(self, redis_url: str, needle: bytes) -> None:
        address, self.db = redis_url.removeprefix("redis://").rsplit("/", 1)
        host, port = address.rsplit(":", 1)
        self.upstream = (host, int(port))
        self.needle = needle
        self.armed = True
        self.dropped = 0
        self.server = socket.create_server(("127.0.0.1", 0))
        self.url = f"redis://127.0.0.1:{self.server.getsockname()[1]}/{self.db}"
        threading.Thread(target=self._accept, daemon=True).start()

    def close(self) -> None:
        self.server.close()

    def _accept(self) -> None:
        with contextlib.suppress(OSError):
            while True:
                client, _ = self.server.accept()
                upstream = socket.create_connection(self.upstream)
                lost = threading.Event()
                threading.Thread(
                    target=self._up, args=(client, upstream, lost), daemon=True
                ).start()
                threading.Thread(
                    target=self._down, args=(client, upstream, lost), daemon=True
                ).start()

    def _up(self, client: socket.socket, upstream: socket.socket, lost: threading.Event) -> None:
        with contextlib.suppress(OSError):
            while data := client.recv(65536):
                upstream.sendall(data)
                if self.armed and self.needle in data:
                    self.armed = False
                    lost.set()
                    time.sleep(0.3)  # Redis runs it and answers; the answer goes nowhere
                    self.dropped += 1
                    client.shutdown(socket.SHUT_RDWR)
                    client.close()
                    upstream.close()
                    return

    def _down(self, client: socket.socket, upstream: socket.socket, lost: threading.Event) -> None:
        with contextlib.suppress(OSError):
            while data := upstream.recv(65536):
                if not lost.is_set():
                    client.sendall(data)


@pytest.fixture
def drop_one_reply() -> Iterator[Callable[[Settings, bytes], tuple[Settings, DropOneReply]]]:
    """Return settings whose Redis URL goes through a DropOneReply proxy (and the proxy)."""
    proxies: list[DropOneReply] = []

    def make(settings: Settings, needle: bytes) -> tuple[Settings, DropOneReply]:
        proxies.append(DropOneReply(settings.redis_url, needle))
        return settings.with_overrides(redis_url=proxies[-1].url), proxies[-1]

    yield make
    for proxy in proxies:
        proxy.close()
