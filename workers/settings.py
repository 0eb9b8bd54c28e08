"""Typed, frozen configuration: the one place that reads the environment."""

from __future__ import annotations

import difflib
import ipaddress
import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import idna
import limits

ENV_PREFIX = "MODERATION_"


class ConfigError(ValueError):
    """Raised at start-up when the configuration is missing or malformed."""


def _parse_bool(value: str) -> bool:
    lowered = value.strip().lower()
    if lowered in {"1", "true", "yes", "on"}:
        return True
    if lowered in {"0", "false", "no", "off", ""}:
        return False
    raise ValueError(f"not a boolean: {value!r}")


def _parse_list(value: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in value.split(",") if part.strip())


@dataclass(frozen=True)
class Settings:
    """Every setting of the service; see the configuration table in README.md."""

    env: str = "development"
    redis_url: str = "redis://127.0.0.1:6379/0"
    # Secrets: required outside development. Email encryption keys are Fernet keys;
    # several (comma-separated) allow rotation: the first encrypts, all decrypt.
    secret_key: str = ""
    email_encryption_keys: tuple[str, ...] = ()
    email_hmac_key: str = ""
    moderator_token: str = ""
    # When set, GET /metrics on the API needs "Authorization: Bearer <this>" (Prometheus'
    # scrape config: authorization.credentials). Empty: open, for an internal network only.
    metrics_token: str = ""
    # Model
    model_dir: Path = Path("var/models")
    model_check_seconds: float = 1.0
    spam_reject_threshold: float | None = None
    spam_hold_threshold: float | None = None
    toxic_hold_threshold: float | None = None
    # Intake
    # The longest comment (65,525 characters) must fit in any script: a 4-byte UTF-8 character
    # (emoji, rarer CJK) is 12 bytes percent-encoded or as a JSON surrogate pair, so 786,300
    # bytes, plus at most ~35 kB of other fields (redirect_to alone can be 24 kB): 1 MiB.
    max_content_length: int = 1024 * 1024
    site_origins: tuple[str, ...] = ()
    min_submit_seconds: float = 3.0
    # Hold form posts without the signed form token (turn on once the site's form carries it).
    require_form_token: bool = False
    # Scoring pipeline
    sweep_after_seconds: float = 60.0
    sweep_interval_seconds: float = 30.0
    task_max_retries: int = 6  # a batch's retries while Redis is unreachable (~13 s)
    visibility_timeout_seconds: int = 3600
    # Public listing
    page_size: int = 50
    # Abuse protection
    rate_limit_ip: str = "10/minute;200/day"
    rate_limit_author: str = "5/minute;100/day"
    duplicate_window_seconds: int = 600
    # Hold a comment whose text (50+ letters and digits) came from this many other (author, post)
    # pairs within the window: copy-and-paste campaigns. 0 in either turns it off.
    repeat_window_seconds: int = 86400
    repeat_hold_after: int = 2
    trusted_proxies: int = 0  # how many reverse proxies in front set X-Forwarded-For
    auto_approve_after: int = 0  # approve authors with this many approved comments; 0 = off
    # Webhook on decisions (signed with HMAC-SHA256 of the body)
    webhook_url: str = ""
    webhook_secret: str = ""
    # Retention
    retention_rejected_days: float = 30.0
    retention_audit_days: float = 365.0
    log_level: str = "INFO"
    # Metrics: PROMETHEUS_MULTIPROC_DIR (that exact name; prometheus-client reads it too) makes
    # gunicorn's and Celery's processes share their samples; the worker serves them on a port.
    prometheus_multiproc_dir: str = ""
    worker_metrics_host: str = "127.0.0.1"
    worker_metrics_port: int = 0  # 0 = the worker serves no metrics
    extra: Mapping[str, str] = field(default_factory=dict, compare=False, repr=False)

    @property
    def is_development(self) -> bool:
        """Return True when running with development defaults (local secrets allowed)."""
        return self.env in {"development", "test"}

    @classmethod
    def from_mapping(cls, values: Mapping[str, str]) -> Settings:
        """Build settings from MODERATION_* style string values (environment or a test dict)."""
        # prometheus_multiproc_dir is read as PROMETHEUS_MULTIPROC_DIR (prometheus-client's
        # own name), so MODERATION_PROMETHEUS_MULTIPROC_DIR would be ignored: it is unknown.
        aliases = {"MODERATION_PROMETHEUS_MULTIPROC_DIR": "PROMETHEUS_MULTIPROC_DIR"}
        known = {ENV_PREFIX + f.name.upper() for f in fields(cls) if f.name != "extra"}
        known -= set(aliases)
        unknown = sorted(k for k in values if k.startswith(ENV_PREFIX) and k not in known)
        if unknown:
            # A misspelt setting would otherwise leave its default in force without a word
            # (MODERATION_REQUIRE_FORM_TOKENS: no form-token holds).
            hints = []
            for key in unknown:
                close = [aliases[key]] if key in aliases else []
                close = close or difflib.get_close_matches(key, known, n=1)
                hints.append(f"{key} (did you mean {close[0]}?)" if close else key)
            raise ConfigError(
                f"unknown setting {', '.join(hints)}: see README, Configuration, for the names"
            )
        kwargs: dict[str, Any] = {}
        for f in fields(cls):
            if f.name == "extra":
                continue
            key = ENV_PREFIX + f.name.upper()
            if f.name == "redis_url" and "REDIS_URL" in values and key not in values:
                key = "REDIS_URL"
            if f.name == "prometheus_multiproc_dir":
                key = "PROMETHEUS_MULTIPROC_DIR"
            if key not in values:
                continue
            raw = values[key]
            try:
                kwargs[f.name] = _coerce(f.name, raw, cls)
            except ValueError as exc:
                raise ConfigError(f"{key}: {exc}") from None
        return cls(**kwargs)

    @classmethod
    def from_env(cls) -> Settings:
        """Read the process environment; the only place that does."""
        return cls.from_mapping(os.environ)

    def with_overrides(self, **changes: Any) -> Settings:
        """Return a copy with some settings changed (tests and CLI use this)."""
        return replace(self, **changes)

    def check(self) -> Settings:
        """Fail with a clear message if a required secret is missing outside development.

        In development, missing secrets get fixed, publicly known values so a checkout works
        at once; ``make run`` generates real ones under var/.
        """
        if self.webhook_url and not self.webhook_secret:
            raise ConfigError("MODERATION_WEBHOOK_SECRET is required when a webhook URL is set")
        if self.webhook_url and self.visibility_timeout_seconds < MIN_VISIBILITY_TIMEOUT_SECONDS:
            raise ConfigError(
                f"MODERATION_VISIBILITY_TIMEOUT_SECONDS: must be at least "
                f"{MIN_VISIBILITY_TIMEOUT_SECONDS} with a webhook (its retries wait up to 37.5 "
                "min, and a message due after the timeout is delivered again and again)"
            )
        if self.spam_reject_threshold == 0:
            raise ConfigError(
                "MODERATION_SPAM_REJECT_THRESHOLD: must be above 0 (0 rejects every comment as "
                "spam; 1 never rejects)"
            )
        hold, reject = self.spam_hold_threshold, self.spam_reject_threshold
        if hold is not None and reject is not None and hold > reject:
            raise ConfigError(
                f"MODERATION_SPAM_HOLD_THRESHOLD ({hold}) must not exceed "
                f"MODERATION_SPAM_REJECT_THRESHOLD ({reject}): a comment scored between them "
                "would be rejected, not held"
            )
        if self.is_development:
            return self._with_development_secrets()
        missing = [
            ENV_PREFIX + name.upper()
            for name in ("secret_key", "email_encryption_keys", "email_hmac_key", "moderator_token")
            if not getattr(self, name)
        ]
        if missing:
            raise ConfigError(
                f"missing required secrets for env={self.env}: {', '.join(missing)} "
                "(see README, Configuration)"
            )
        return self

    def _with_development_secrets(self) -> Settings:
        changes: dict[str, Any] = {}
        if not self.secret_key:
            changes["secret_key"] = "development-only-secret-key"  # noqa: S105 - dev only
        if not self.email_encryption_keys:
            # A valid Fernet key (32 bytes, base64) that is public: development only.
            changes["email_encryption_keys"] = ("ZGV2ZWxvcG1lbnQtb25seS1rZXktZG8tbm90LXVzZSE=",)
        if not self.email_hmac_key:
            changes["email_hmac_key"] = "development-only-hmac-key"
        return replace(self, **changes) if changes else self


_FLOAT_OR_NONE = {"spam_reject_threshold", "spam_hold_threshold", "toxic_hold_threshold"}
# Numbers that must be above zero (a zero or negative sweep age, for one, would re-enqueue
# every comment on every sweep); every other number must be at least zero.
_POSITIVE = {
    "max_content_length",
    "sweep_after_seconds",
    "sweep_interval_seconds",
    "visibility_timeout_seconds",
    "page_size",
    "retention_rejected_days",
    "retention_audit_days",
}


# Upper bounds: a default page larger than any page a client may ask for would be odd.
_AT_MOST = {
    "page_size": 200,
    # Windows Redis keeps entries for: a month is plenty, and far larger values overflow
    # the intake script's arithmetic.
    "duplicate_window_seconds": 30 * 86400,
    "repeat_window_seconds": 30 * 86400,
}
_AT_MOST["worker_metrics_port"] = 65535
# kombu's ETA messages (the webhook retries) come back after the visibility timeout however
# far in the future they are due: with a webhook it must exceed the longest retry wait, 30
# minutes plus a quarter of spread (workers/tasks.py; a test keeps the two in step), or each
# retry is delivered again and again. Scoring retries are due within seconds.
MIN_VISIBILITY_TIMEOUT_SECONDS = 2700
_RATE_LIMITS = {"rate_limit_ip", "rate_limit_author"}
_LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
_LOG_LEVEL_ALIASES = {"WARN": "WARNING", "FATAL": "CRITICAL"}  # Python's own spellings


def _parse_rate_limit(raw: str) -> str:
    """Check a rate limit the way Flask-Limiter will read it; empty turns the limit off.

    Flask-Limiter skips a limit it cannot parse, so a typo ("10/min") would silently remove
    the throttle: refuse it at start-up instead.
    """
    if not raw.strip():
        return ""
    try:
        parsed = limits.parse_many(raw)
        if any(item.amount < 1 for item in parsed):
            raise ValueError("zero")  # "0/minute" would refuse every post
    except ValueError:
        raise ValueError(
            "must be rate limits like '10/minute;200/day' (per second, minute, hour, day, "
            "month or year), or empty to turn the limit off"
        ) from None
    return raw


def _check_url(raw: str, schemes: tuple[str, ...], example: str) -> str:
    """Return the URL if it has one of the schemes, a host and a valid port, else refuse it
    (naming the setting happens in from_mapping). Credentials in it are never echoed."""
    value = raw.strip()
    parts = urlsplit(value)
    try:
        parts.port  # noqa: B018 - raises on a port that is not a number in range
    except ValueError:
        raise ValueError(f"has an invalid port; expected {example}") from None
    if (
        parts.scheme.lower() not in schemes
        or not parts.hostname
        or any(c.isspace() for c in value)
        or parts.netloc.endswith(":")
    ):
        raise ValueError(f"must be {example}")
    return value


def normalise_origin(raw: str) -> str:
    """Return a site origin exactly as browsers send it in Origin, or refuse it.

    Browsers send scheme://host[:port] with the host lower-cased and in punycode, and no
    default port; an origin written any other way would never match. Only hostname characters
    are allowed: flask-cors reads an origin holding regex characters ("https://*.example.com")
    as a pattern anchored only at the start, which would admit attacker sites.
    """
    invalid = ValueError(f"{raw!r} is not an origin like https://news.example.com")
    parts = urlsplit(raw.strip())
    try:
        port = parts.port
    except ValueError:
        raise ValueError(f"{raw!r} has an invalid port") from None
    if parts.scheme.lower() not in ("http", "https") or parts.path not in ("", "/"):
        raise invalid
    if parts.query or parts.fragment or parts.username or parts.password or not parts.hostname:
        raise invalid
    if parts.netloc.endswith(":"):
        raise invalid
    if ":" in parts.hostname:  # an IPv6 literal, written in brackets
        try:
            host = f"[{ipaddress.IPv6Address(parts.hostname).compressed}]"
        except ValueError:
            raise invalid from None
    else:
        try:
            # IDNA 2008 with UTS 46 mapping, as browsers encode hosts (Python's "idna" codec is
            # IDNA 2003: it turns "faß.de" into "fass.de", which no browser sends).
            host = idna.encode(parts.hostname, uts46=True, transitional=False).decode("ascii")
        except UnicodeError:  # idna.IDNAError is one
            raise invalid from None
        if not _ORIGIN_HOST_RE.fullmatch(host):
            raise invalid
    scheme = parts.scheme.lower()
    default = {"http": 80, "https": 443}[scheme]
    return f"{scheme}://{host}" + (f":{port}" if port is not None and port != default else "")


_ORIGIN_HOST_RE = re.compile(
    r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)*"
)


# Settings that travel as bearer tokens in an Authorization header.
_BEARER_TOKENS = {"moderator_token", "metrics_token"}


def _coerce(name: str, raw: str, cls: type[Settings]) -> Any:
    default = getattr(cls, name, None) if name not in _FLOAT_OR_NONE else None
    if name in _FLOAT_OR_NONE:
        value = float(raw) if raw.strip() else None
        if value is not None and not 0.0 <= value <= 1.0:  # also refuses nan
            raise ValueError("must be between 0 and 1")
        return value
    if name == "site_origins":
        return tuple(normalise_origin(part) for part in _parse_list(raw))
    if name == "email_encryption_keys":
        return _parse_list(raw)
    if name == "model_dir":
        if not raw.strip():
            raise ValueError("must be a directory path (empty would put the registry in the cwd)")
        return Path(raw)
    if name == "redis_url":
        return _check_url(raw, ("redis", "rediss"), "a Redis URL like redis://127.0.0.1:6379/0")
    if name == "webhook_url":
        if not raw.strip():
            return ""
        return _check_url(raw, ("http", "https"), "an http(s) URL like https://site.example/hook")
    if name in _BEARER_TOKENS and not (raw.isascii() and raw.isprintable() and " " not in raw):
        # It travels in an Authorization header, where only printable ASCII arrives intact.
        raise ValueError("must be printable ASCII without spaces")
    if name in _RATE_LIMITS:
        return _parse_rate_limit(raw)
    if name == "log_level":
        level = raw.strip().upper()
        level = _LOG_LEVEL_ALIASES.get(level, level)
        if level not in _LOG_LEVELS:
            raise ValueError(f"must be one of {', '.join(_LOG_LEVELS)}")
        return level
    if isinstance(default, bool):
        return _parse_bool(raw)
    if isinstance(default, int | float):
        number = int(raw) if isinstance(default, int) else float(raw)
        if not math.isfinite(number):
            raise ValueError("must be a finite number")
        if name in _POSITIVE and number <= 0:
            raise ValueError("must be greater than 0")
        if name in _AT_MOST and number > _AT_MOST[name]:
            raise ValueError(f"must be at most {_AT_MOST[name]}")
        if number < 0:
            raise ValueError("must not be negative")
        return number
    return raw
