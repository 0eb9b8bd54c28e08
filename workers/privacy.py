"""Email protection: encryption at rest, keyed look-up digests, masking, log redaction."""

from __future__ import annotations

import hashlib
import hmac
import logging
import re

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from workers.settings import ConfigError

# What readers may see of a comment: never the email, its digest, scores or reasons.
PUBLIC_FIELDS = ("id", "post_id", "parent_id", "author", "url", "comment", "created_at")

# Deliberately broad: a false positive in a log line costs nothing, a leak costs trust.
# Bounded like real addresses (64-character local part, 253-character domain), so a long
# run without a dot cannot make a failed match rescan it from every start (quadratic).
# The top-level domain may be in any script (validation accepts "jane@пример.рф"), hold
# digits and dashes ("example.c0m" is a valid address too) or be punycode. The local part
# stops at "/", so a logged path keeps its route ("/api/v1/comments/[email …]"), and takes in
# an apostrophe ("o'brien@…"). Only ASCII whitespace ends an address: gunicorn logs a UTF-8
# path read as Latin-1, whose characters include U+0085 and U+00A0, which \s would take for
# spaces and so let the address through.
_NOT_IN_DOMAIN = " \t\n\r\f\v@<>\"'(),;:"
_NOT_IN_LOCAL = ' \t\n\r\f\v@<>"(),;:/'
EMAIL_PATTERN = re.compile(
    rf"[^{_NOT_IN_LOCAL}]{{1,64}}@[^{_NOT_IN_DOMAIN}]{{1,253}}\.[^{_NOT_IN_DOMAIN}/?#.]{{2,63}}"
)
# Client addresses: the app logs none, but servers and libraries around it may (gunicorn's
# "Invalid request from ip=…"). IPv6 needs eight groups or a "::", so times never match.
IP_PATTERN = re.compile(
    r"\b(?:\d{1,3}\.){3}\d{1,3}\b"
    r"|(?<![\w:])(?:[0-9A-Fa-f]{1,4}:){7}[0-9A-Fa-f]{1,4}(?![\w:])"
    r"|(?<![\w:])(?:[0-9A-Fa-f]{1,4}(?::[0-9A-Fa-f]{1,4}){0,5})?::"
    r"(?:[0-9A-Fa-f]{1,4}(?::[0-9A-Fa-f]{1,4}){0,5})?(?![\w:])"
)
# Attributes every LogRecord has; anything else on a record came from ``extra=``.
_STANDARD_ATTRS = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message",
    "asctime",
}


class EmailVault:
    """Encrypt, decrypt and digest email addresses with keys from config."""

    def __init__(self, encryption_keys: tuple[str, ...], hmac_key: str) -> None:
        if not encryption_keys:
            raise ConfigError("MODERATION_EMAIL_ENCRYPTION_KEYS is empty")
        if not hmac_key:
            raise ConfigError("MODERATION_EMAIL_HMAC_KEY is empty")
        try:
            self._fernet = MultiFernet([Fernet(key.encode()) for key in encryption_keys])
        except ValueError:
            raise ConfigError(
                "MODERATION_EMAIL_ENCRYPTION_KEYS must be Fernet keys "
                "(32 url-safe base64-encoded bytes each)"
            ) from None
        self._hmac_key = hmac_key.encode()

    def encrypt(self, email: str) -> str:
        """Return the address encrypted with the current (first) key."""
        return self._fernet.encrypt(email.encode()).decode()

    def decrypt(self, token: str) -> str | None:
        """Return the address, or None when no configured key opens the token."""
        try:
            return self._fernet.decrypt(token.encode()).decode()
        except (InvalidToken, ValueError):
            return None

    def digest(self, email: str) -> str:
        """Return the keyed HMAC-SHA256 of the normalised address (for look-ups)."""
        return self._hmac(normalise_email(email))

    def lookup_digests(self, email: str) -> list[str]:
        """Return every digest stored comments by this address may be filed under.

        Before 2026-11-27 addresses were case-folded, not lower-cased, before digesting; for
        the few where the two differ ("ß", final sigma), comments stored then are filed under
        the case-folded form, and export and erasure must find them too."""
        current = self.digest(email)
        legacy = self._hmac(email.strip().casefold())
        return [current] if legacy == current else [current, legacy]

    def _hmac(self, normalised: str) -> str:
        return hmac.new(self._hmac_key, normalised.encode(), hashlib.sha256).hexdigest()


def normalise_email(email: str) -> str:
    """Return the address in the form used for look-ups (trimmed, lower-cased)."""
    # lower(), not casefold(): case folding merges distinct mailboxes ("straße" and
    # "strasse"), so one reader's export or erasure would reach another's comments.
    return email.strip().lower()


def generate_key() -> str:
    """Return a new random Fernet key (also fine as an HMAC key)."""
    return Fernet.generate_key().decode()


def mask_email(email: str | None) -> str:
    """Return a masked address such as ``j***@example.com`` for moderators."""
    if not email or "@" not in email:
        return "***"
    local, _, domain = email.rpartition("@")
    return f"{local[:1]}***@{domain}"


def redact(text: str) -> str:
    """Replace anything that looks like an email address."""
    return EMAIL_PATTERN.sub("[email redacted]", text)


def redact_log_text(text: str) -> str:
    """Replace email addresses and client IP addresses (for log lines)."""
    return IP_PATTERN.sub("[ip redacted]", redact(text))


class RedactingFilter(logging.Filter):
    """Scrub email and IP addresses from every log record, as a last line of defence.

    The message, its exception text and every string passed in ``extra`` (a request path, an
    error text) are all scrubbed, whoever logs them: this service, Celery or gunicorn."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = redact_log_text(message)
        if cleaned != message:
            record.msg = cleaned
            record.args = None
        if record.exc_info and record.exc_info[1] is not None:
            text = redact_log_text(str(record.exc_info[1]))
            if text != str(record.exc_info[1]):
                record.exc_info = None
                record.exc_text = text
        for name, value in list(vars(record).items()):
            if name not in _STANDARD_ATTRS and isinstance(value, str):
                setattr(record, name, redact_log_text(value))
        return True


def ip_digest(ip: str | None, key: str) -> str:
    """Return a short keyed digest of a client IP (full IPs are never stored)."""
    if not ip:
        return ""
    return hmac.new(key.encode(), ip.encode(), hashlib.sha256).hexdigest()[:16]
