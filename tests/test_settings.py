"""Configuration: bad values fail at start-up with the variable's name, never later."""

from __future__ import annotations

import pytest
from cryptography.fernet import Fernet

from workers.settings import ConfigError, Settings


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("MODERATION_SWEEP_AFTER_SECONDS", "-5"),  # would re-enqueue every comment, forever
        ("MODERATION_SWEEP_AFTER_SECONDS", "0"),
        ("MODERATION_SWEEP_INTERVAL_SECONDS", "nan"),
        ("MODERATION_PAGE_SIZE", "0"),
        ("MODERATION_RETENTION_REJECTED_DAYS", "inf"),
        ("MODERATION_TASK_MAX_RETRIES", "-1"),
        ("MODERATION_TRUSTED_PROXIES", "-1"),
        ("MODERATION_SPAM_REJECT_THRESHOLD", "nan"),
        ("MODERATION_SPAM_HOLD_THRESHOLD", "1.5"),
        ("MODERATION_PAGE_SIZE", "ten"),
        # A bearer token: only printable ASCII survives an HTTP header.
        ("MODERATION_MODERATOR_TOKEN", "caf\u00e9-token"),
        ("MODERATION_MODERATOR_TOKEN", "two words"),
        ("MODERATION_METRICS_TOKEN", "two words"),
        # Flask-Limiter would skip a limit it cannot parse: a typo must not turn throttling off.
        ("MODERATION_RATE_LIMIT_IP", "10/min"),
        ("MODERATION_RATE_LIMIT_AUTHOR", "abc"),
        ("MODERATION_LOG_LEVEL", "LOUD"),
        ("MODERATION_PAGE_SIZE", "500"),  # a client may ask for at most 200
        ("MODERATION_SITE_ORIGINS", "https://news.example.com,news.example.com"),
        ("MODERATION_SITE_ORIGINS", "https://news.example.com/articles"),
        ("MODERATION_SITE_ORIGINS", "https://news.example.com:99999"),
        ("MODERATION_SITE_ORIGINS", "https://*.example.com"),  # flask-cors: a regex
        ("MODERATION_SITE_ORIGINS", "https://news.example.com:"),
        ("MODERATION_SITE_ORIGINS", "https://news example.com"),
        ("MODERATION_RATE_LIMIT_IP", "0/minute"),
        ("MODERATION_REPEAT_WINDOW_SECONDS", "99999999999999"),
        # URLs the Redis client, Celery and Flask-Limiter would each fail on later, differently.
        ("MODERATION_REDIS_URL", "htp://localhost"),
        ("MODERATION_REDIS_URL", "redis://localhost:notaport/0"),
        ("MODERATION_REDIS_URL", "localhost:6379"),
        ("REDIS_URL", "127.0.0.1:6379"),
        # A webhook URL that only fails at delivery, retried for 2.5 hours.
        ("MODERATION_WEBHOOK_URL", "https://"),
        ("MODERATION_WEBHOOK_URL", "https:// example.com/hook"),
        ("MODERATION_WEBHOOK_URL", "https://example.com:99999/h"),
        ("MODERATION_WEBHOOK_URL", "ftp://example.com/h"),
        ("MODERATION_WORKER_METRICS_PORT", "70000"),  # bind() would fail in the worker
        ("MODERATION_MODEL_DIR", ""),  # the registry would land in the working directory
        # Misspelt names: the default would stay in force without a word.
        ("MODERATION_REQUIRE_FORM_TOKENS", "true"),
        ("MODERATION_RATE_LIMIT", "1/minute"),
    ],
)
def test_out_of_range_values_are_refused_naming_the_variable(variable: str, value: str) -> None:
    with pytest.raises(ConfigError, match=variable):
        Settings.from_mapping({variable: value})


@pytest.mark.parametrize(
    ("variable", "value", "field", "expected"),
    [
        ("MODERATION_DUPLICATE_WINDOW_SECONDS", "0", "duplicate_window_seconds", 0),  # off
        ("MODERATION_MIN_SUBMIT_SECONDS", "0", "min_submit_seconds", 0.0),
        ("MODERATION_TASK_MAX_RETRIES", "0", "task_max_retries", 0),
        ("MODERATION_SWEEP_AFTER_SECONDS", "0.5", "sweep_after_seconds", 0.5),
        ("MODERATION_SPAM_HOLD_THRESHOLD", "", "spam_hold_threshold", None),  # the model's own
        ("MODERATION_MODERATOR_TOKEN", "Op3r~ator/t0ken=", "moderator_token", "Op3r~ator/t0ken="),
        ("MODERATION_RATE_LIMIT_IP", "", "rate_limit_ip", ""),  # off
        (
            "MODERATION_RATE_LIMIT_IP",
            "3/second;10 per hour",
            "rate_limit_ip",
            "3/second;10 per hour",
        ),
        ("MODERATION_LOG_LEVEL", "debug", "log_level", "DEBUG"),
        (
            "MODERATION_SITE_ORIGINS",
            "https://news.example.com/, http://localhost:8080",
            "site_origins",
            ("https://news.example.com", "http://localhost:8080"),
        ),
        # As browsers send them: lower case, punycode, no default port.
        (
            "MODERATION_SITE_ORIGINS",
            "HTTPS://News.Example.com:443,https://bücher.example,http://x.example:80,"
            "http://[::1]:8000,https://faß.de",
            "site_origins",
            (
                "https://news.example.com",
                "https://xn--bcher-kva.example",
                "http://x.example",
                "http://[::1]:8000",
                "https://xn--fa-hia.de",  # IDNA 2008, as browsers send it (2003 gave fass.de)
            ),
        ),
        ("MODERATION_LOG_LEVEL", "warn", "log_level", "WARNING"),
    ],
)
def test_values_in_range_are_read(variable: str, value: str, field: str, expected: object) -> None:
    assert getattr(Settings.from_mapping({variable: value}), field) == expected


def test_production_refuses_to_start_without_its_secrets_and_never_uses_the_development_ones() -> (
    None
):
    """Outside development and test the four secrets are required: a deployment that forgot
    one must not run on the publicly known development keys."""
    with pytest.raises(ConfigError) as refused:
        Settings.from_mapping({"MODERATION_ENV": "production"}).check()
    for variable in (
        "MODERATION_SECRET_KEY",
        "MODERATION_EMAIL_ENCRYPTION_KEYS",
        "MODERATION_EMAIL_HMAC_KEY",
        "MODERATION_MODERATOR_TOKEN",
    ):
        assert variable in str(refused.value)
    development = Settings.from_mapping({}).check()
    secrets = {
        "MODERATION_SECRET_KEY": "s" * 32,
        "MODERATION_EMAIL_ENCRYPTION_KEYS": Fernet.generate_key().decode(),
        "MODERATION_EMAIL_HMAC_KEY": "h" * 32,
        "MODERATION_MODERATOR_TOKEN": "operator-token",
    }
    for missing in secrets:
        partial = {k: v for k, v in secrets.items() if k != missing}
        with pytest.raises(ConfigError, match=missing):
            Settings.from_mapping({"MODERATION_ENV": "production", **partial}).check()
    production = Settings.from_mapping({"MODERATION_ENV": "production", **secrets}).check()
    assert production.secret_key != development.secret_key
    assert production.email_encryption_keys != development.email_encryption_keys
    assert production.email_hmac_key != development.email_hmac_key


def test_a_misspelt_setting_is_refused_with_the_name_it_probably_meant() -> None:
    with pytest.raises(ConfigError, match="did you mean MODERATION_REQUIRE_FORM_TOKEN\\?"):
        Settings.from_mapping({"MODERATION_REQUIRE_FORM_TOKENS": "true"})
    # Read under prometheus-client's own name only: the prefixed one would be ignored.
    with pytest.raises(ConfigError, match="did you mean PROMETHEUS_MULTIPROC_DIR\\?"):
        Settings.from_mapping({"MODERATION_PROMETHEUS_MULTIPROC_DIR": "var/metrics"})
    assert (
        Settings.from_mapping({"PROMETHEUS_MULTIPROC_DIR": "/m"}).prometheus_multiproc_dir == "/m"
    )


@pytest.mark.parametrize(
    "values",
    [
        {"MODERATION_SPAM_REJECT_THRESHOLD": "0"},  # every comment rejected as spam
        {"MODERATION_SPAM_HOLD_THRESHOLD": "0.95", "MODERATION_SPAM_REJECT_THRESHOLD": "0.2"},
    ],
)
def test_spam_thresholds_that_reject_what_they_mean_to_hold_are_refused(
    values: dict[str, str],
) -> None:
    """The artifact's own thresholds are refused for the same values (model/artifact.py)."""
    with pytest.raises(ConfigError, match="MODERATION_SPAM_"):
        Settings.from_mapping(values).check()


def test_thresholds_and_urls_that_make_sense_are_accepted() -> None:
    settings = Settings.from_mapping(
        {
            "MODERATION_SPAM_HOLD_THRESHOLD": "0.2",
            "MODERATION_SPAM_REJECT_THRESHOLD": "0.2",
            "MODERATION_REDIS_URL": "rediss://:secret@redis.internal:6380/2",
            "MODERATION_WEBHOOK_URL": "https://news.example.com:8443/hooks/moderation",
            "MODERATION_WEBHOOK_SECRET": "s",
            "MODERATION_VISIBILITY_TIMEOUT_SECONDS": "2700",
        }
    ).check()
    assert settings.redis_url == "rediss://:secret@redis.internal:6380/2"
    assert settings.spam_reject_threshold == settings.spam_hold_threshold == 0.2


def test_a_visibility_timeout_shorter_than_the_webhook_retry_wait_is_refused_with_a_webhook() -> (
    None
):
    """Each webhook retry would be delivered again and again; without a webhook no message is
    due that far ahead, so a deployment that set a short timeout keeps starting."""
    short = {"MODERATION_VISIBILITY_TIMEOUT_SECONDS": "600"}
    assert Settings.from_mapping(short).check().visibility_timeout_seconds == 600
    hooked = {
        **short,
        "MODERATION_WEBHOOK_URL": "https://s.example/h",
        "MODERATION_WEBHOOK_SECRET": "s",
    }
    with pytest.raises(ConfigError, match="MODERATION_VISIBILITY_TIMEOUT_SECONDS"):
        Settings.from_mapping(hooked).check()


def test_the_visibility_timeout_floor_covers_the_longest_webhook_retry_wait() -> None:
    from workers.settings import MIN_VISIBILITY_TIMEOUT_SECONDS
    from workers.tasks import WEBHOOK_RETRY_MAX_DELAY, WEBHOOK_RETRY_SPREAD

    assert WEBHOOK_RETRY_MAX_DELAY * (1 + WEBHOOK_RETRY_SPREAD) < MIN_VISIBILITY_TIMEOUT_SECONDS
