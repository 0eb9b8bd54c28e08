"""Shared fixtures: a private Redis, settings built from a dict, the app, a real Celery worker."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import pytest
import redis as redis_lib
from flask import Flask
from flask.testing import FlaskClient

from service import create_app
from workers.celery_app import create_celery
from workers.embedded_redis import EmbeddedRedis
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
    }


@pytest.fixture(scope="session")
def base_settings(settings_values: dict[str, str]) -> Settings:
    return Settings.from_mapping(settings_values).check()


@pytest.fixture
def settings(base_settings: Settings) -> Settings:
    """Settings for one test (override with ``settings.with_overrides``)."""
    return base_settings


@pytest.fixture
def redis(base_settings: Settings) -> Iterator[redis_lib.Redis]:
    """A client on the private Redis; the service's keys are removed before each test.

    Celery's own keys (queue bindings) stay, so the session's worker keeps working.
    """
    client = redis_lib.Redis.from_url(base_settings.redis_url, decode_responses=True)
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

    def _spawn(self, log: IO[bytes]) -> subprocess.Popen[bytes]:
        return subprocess.Popen(  # noqa: S603 - fixed argv
            [
                sys.executable,
                "-m",
                "workers",
                "worker",
                "--concurrency",
                str(self.concurrency),
                "--beat",
                "--without-gossip",
                "--without-mingle",
                *self.extra_args,
            ],
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
