"""Per-process resources (Redis client, store, vault, model), created lazily after fork."""

from __future__ import annotations

import logging
import threading
import time
from functools import cached_property
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import redis
from redis.backoff import ExponentialWithJitterBackoff  # type: ignore[attr-defined]  # stubs lag redis-py
from redis.retry import Retry

from workers.privacy import EmailVault
from workers.settings import Settings
from workers.store import CommentStore

if TYPE_CHECKING:
    from model import Classifier, ModelRegistry

log = logging.getLogger(__name__)

# from_url() gives connections no retry, so after a Redis restart or failover every pooled
# (now dead) connection failed one request with a 503 or one task. Two quick retries reconnect
# transparently; a real outage still fails within ~0.4 s, so the 503 comes fast.
COMMAND_RETRY = Retry(ExponentialWithJitterBackoff(base=0.05, cap=0.2), retries=2)


def redis_client(settings: Settings) -> redis.Redis[bytes]:
    """Return a Redis client for the store, with short timeouts so outages fail fast."""
    return redis.Redis.from_url(
        settings.redis_url,
        socket_connect_timeout=2,
        socket_timeout=5,
        health_check_interval=30,
        retry=COMMAND_RETRY,
    )


def redis_address(url: str) -> str:
    """Return the host:port a Redis URL names, leaving out any user name and password."""
    parts = urlsplit(url)
    host = parts.hostname or "localhost"
    return f"{f'[{host}]' if ':' in host else host}:{parts.port or 6379}"


def redis_failure(url: str, doing: str, exc: redis.RedisError) -> str:
    """Return one line for an operator tool that could not ``doing`` because Redis failed."""
    why = f"{type(exc).__name__}: {exc}"
    password = urlsplit(url).password
    if password:  # redis-py names host and port in its errors; make sure of the rest
        why = why.replace(password, "***")
    return (
        f"cannot {doing}: Redis at {redis_address(url)} failed ({why}); is "
        "MODERATION_REDIS_URL right (under `make run`: `. var/run.env`) and Redis running?"
    )


class Runtime:
    """What a process needs to serve requests or run tasks, built on first use."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._model_lock = threading.Lock()
        self._classifier: Classifier | None = None
        self._checked_at = 0.0
        self._load_failure: tuple[str | None, str] | None = None  # last one logged

    @cached_property
    def redis(self) -> redis.Redis[bytes]:
        return redis_client(self.settings)

    @cached_property
    def store(self) -> CommentStore:
        # A webhook configured: every decision and deletion records its event in the outbox
        # (tasks.py drains it).
        return CommentStore(self.redis, outbox=bool(self.settings.webhook_url))

    @cached_property
    def vault(self) -> EmailVault:
        return EmailVault(self.settings.email_encryption_keys, self.settings.email_hmac_key)

    @cached_property
    def registry(self) -> ModelRegistry:
        from model import ModelRegistry

        registry = ModelRegistry(self.settings.model_dir)
        registry.ensure_seeded()
        return registry

    def classifier(self) -> Classifier:
        """Return the live model, switching to a newly promoted one between tasks."""
        now = time.monotonic()
        with self._model_lock:
            current = self._classifier
            if current is None or now - self._checked_at >= self.settings.model_check_seconds:
                self._checked_at = now
                live = self.registry.live_version()
                if current is None or (live is not None and live != current.version):
                    self._classifier = self._load(live, current)
            assert self._classifier is not None  # noqa: S101 - set just above
            return self._classifier

    def _load(self, live: str | None, current: Classifier | None) -> Classifier:
        """Load ``live``; if it cannot load, log why and keep ``current`` (if any) scoring."""
        from model.errors import ArtifactError
        from model.registry import RegistryError

        try:
            classifier = self.registry.load(live)
        except (ArtifactError, RegistryError) as exc:
            failure = (live, f"{type(exc).__name__}: {exc}")
            if failure != self._load_failure:  # once per version and cause, not every check
                self._load_failure = failure
                log.error(
                    "cannot load live model version %s (%s); %s",
                    live,
                    failure[1],
                    f"still scoring with {current.version}" if current else "cannot score",
                    extra={"error": type(exc).__name__},
                )
            if current is None:
                raise
            return current
        self._load_failure = None
        return classifier
