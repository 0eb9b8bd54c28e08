"""The edge: which fields a submission may carry, and every check on them, in one place."""

from __future__ import annotations

import ipaddress
import json
import re
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import urlsplit

import idna
from email_validator import EmailNotValidError, validate_email
from flask import g, has_app_context
from flask.json.provider import DefaultJSONProvider

from workers.intake import Submission
from workers.store import is_comment_id

# Fields a submission may carry; anything else is ignored.
ACCEPT = ("post_id", "comment", "author", "email", "url", "parent_id")
REQUIRED = ("post_id", "comment", "author", "email")
# Hidden form fields: the honeypot (humans never fill it) and the signed render time.
HONEYPOT_FIELD = "homepage"
FORM_TOKEN_FIELD = "form_token"  # noqa: S105 - a field name, not a secret
# What the signed form token of a submission showed (None: no signal, e.g. a JSON client).
FormToken = Literal["valid", "expired", "invalid", "missing"]
MAX_LENGTH = {"author": 245, "email": 254, "url": 200, "comment": 65_525, "post_id": 128}
LABELS = {
    "post_id": "Post",
    "comment": "Comment",
    "author": "Name",
    "email": "Email",
    "url": "Website",
    "parent_id": "Reply to",
}
POST_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:/-]*\Z")
# Control characters other than tab and newlines never belong in a comment.
_CONTROL = {chr(c) for c in range(32) if chr(c) not in "\t\n\r"} | {"\x7f"}
# Free text stored in NFC, the form the model scores and moderators search. NFC can lengthen
# text (U+0958 becomes U+0915 U+093C), so it happens before the length check. Email is
# normalised (and its limit checked on the result) by email-validator; post ids are ASCII;
# a Website is stored as given (normalising could change where a link goes).
NFC_FIELDS = ("comment", "author")
# Bidi embedding, override and isolate controls. In a name they reverse how a moderator or
# reader sees the text around it ("\u202e" turns what follows right-to-left). The marks
# U+200E, U+200F and U+061C override nothing, and RTL scripts need no control, so they stay.
_BIDI_CONTROLS = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")
# A label of a Website's host name (ASCII, or punycode for a Unicode one): 1 to 63 letters,
# digits, hyphens and underscores, no hyphen at either end. Underscores are no part of a
# host name (RFC 1123), but DNS serves them and browsers reach such sites (my_site.example).
_HOST_LABEL = re.compile(r"[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?\Z")
_DIGITS_AND_DOTS = re.compile(r"[0-9.]+\Z")
_WHITESPACE = re.compile(r"\s")


@dataclass(frozen=True)
class Invalid:
    """Every failing field with a message a person can act on."""

    errors: dict[str, str]


def field_values(source: Mapping[str, Any]) -> dict[str, Any]:
    """Return the accepted fields of a parsed body (form or JSON), ignoring the rest."""
    return {
        name: source[name] for name in (*ACCEPT, HONEYPOT_FIELD, FORM_TOKEN_FIELD) if name in source
    }


def validate_submission(
    values: Mapping[str, Any],
    *,
    submit_seconds: float | None = None,
    form_token: FormToken | None = None,
) -> Submission | Invalid:
    """Check a submission and return it cleaned, or every error at once."""
    errors: dict[str, str] = {}
    clean: dict[str, str] = {}
    for name in ACCEPT:
        raw = values.get(name)
        if raw is None:
            raw = ""
        if not isinstance(raw, str):
            errors[name] = f"{LABELS[name]} must be text."
            continue
        text = raw.strip() if name != "comment" else _strip_comment(raw)
        typed = len(text)
        if name in NFC_FIELDS:
            # Normalise before any check, so every check sees the text that will be stored.
            text = unicodedata.normalize("NFC", text).strip()
        if name in REQUIRED and not _has_visible(text):
            errors[name] = f"{LABELS[name]} is required."
            continue
        limit = MAX_LENGTH.get(name)
        if limit is not None and len(text) > limit:
            # Say when normalisation made the difference, or "got" would not match the input.
            how = " after Unicode normalisation" if len(text) != typed else ""
            errors[name] = (
                f"{LABELS[name]} must be at most {limit:,} characters (got {len(text):,}{how})."
            )
            continue
        bad = _CONTROL if name == "comment" else _CONTROL | {"\t", "\n", "\r"}
        if any(ch in bad for ch in text):
            errors[name] = f"{LABELS[name]} contains control characters."
            continue
        if name == "author" and not _BIDI_CONTROLS.isdisjoint(text):
            errors[name] = (
                f"{LABELS[name]} contains invisible text-direction controls "
                "(such as a right-to-left override); please type it again without them."
            )
            continue
        clean[name] = text

    if "post_id" in clean and not POST_ID.match(clean["post_id"]):
        errors["post_id"] = (
            "Post must be a short id of letters, digits and . _ : / - "
            "(starting with a letter or digit)."
        )
    if clean.get("email"):
        normalized, problem = checked_email(clean["email"])
        if problem is not None:
            errors["email"] = problem
        else:
            clean["email"] = normalized
    if clean.get("url"):
        problem = _url_problem(clean["url"])
        if problem:
            errors["url"] = problem
    if clean.get("parent_id") and not is_comment_id(clean["parent_id"]):
        errors["parent_id"] = "Reply to must be the id of an existing comment."
    if errors:
        return Invalid(errors)
    honeypot = values.get(HONEYPOT_FIELD)
    return Submission(
        post_id=clean["post_id"],
        comment=clean["comment"],
        author=clean["author"],
        email=clean["email"],
        url=clean.get("url", ""),
        parent_id=clean.get("parent_id", ""),
        honeypot_filled=isinstance(honeypot, str) and bool(honeypot.strip()),
        submit_seconds=submit_seconds,
        form_token=form_token or "",
    )


def _strip_comment(text: str) -> str:
    return text.replace("\r\n", "\n").strip()


# Characters outside category Cf that still render as nothing: Hangul fillers, the braille
# blank, the combining grapheme joiner and variation selectors.
_BLANK = frozenset(
    "\u115f\u1160\u3164\uffa0\u2800\u034f\u17b4\u17b5"
    + "".join(map(chr, [*range(0xFE00, 0xFE10), *range(0x180B, 0x1810), *range(0xE0100, 0xE01F0)]))
)


def _has_visible(text: str) -> bool:
    """Whether text shows anything: a required field of only whitespace and format characters
    (category Cf: zero-width spaces, BOMs, bidi controls) or blank letters would be stored and
    displayed as nothing. A ZWJ emoji sequence or an RTL name has visible characters around
    its Cf ones."""
    # Stops at the first visible character, so ordinary text costs a character or two.
    return any(
        not ch.isspace() and ch not in _BLANK and unicodedata.category(ch) != "Cf" for ch in text
    )


def stored_address(raw: Any) -> str | None:
    """Return the address a submission's email field is stored as, or None if it is refused.

    The author rate limit is keyed by this, so it counts what the intake stores: spellings
    email-validator normalises to one address (full-width letters, an IDN domain in punycode)
    are one author. It runs before the view, which finds the check done (checked_email)."""
    if not isinstance(raw, str):
        return None
    email = raw.strip()  # as validate_submission cleans the field before checking it
    if not email or len(email) > MAX_LENGTH["email"]:
        return None
    normalized, problem = checked_email(email)
    return normalized if problem is None else None


def checked_email(email: str) -> tuple[str, str | None]:
    """Return the normalised address and None, or the input and a message.

    Within a request the answer is kept on flask.g: the author rate limit and the view's
    validation both need it, and email-validator is the costliest check of a submission."""
    if not has_app_context():
        return _checked_email(email)
    cached: tuple[str, tuple[str, str | None]] | None = g.get("checked_email")
    if cached is not None and cached[0] == email:
        return cached[1]
    checked = _checked_email(email)
    g.checked_email = (email, checked)
    return checked


def _checked_email(email: str) -> tuple[str, str | None]:
    """Return the normalised address and None, or the input and a message (one validation)."""
    try:
        return validate_email(email, check_deliverability=False).normalized, None
    except EmailNotValidError as exc:
        message = str(exc)
        # Never echo any part of the address back (it would land in logs and pages).
        local, _, domain = email.rpartition("@")
        if any(part and part in message for part in (email, local, domain)):
            return email, "Email is not a valid email address."
        return email, f"Email is not valid: {message}"


def _url_problem(url: str) -> str | None:
    """Return why a Website cannot be published as a link, or None.

    urlsplit is lenient: it keeps spaces in a host and only complains about a port when asked,
    so both are checked here, as is every character of the host."""
    if _WHITESPACE.search(url):
        # Never part of a URL (a browser would cut or re-encode it); the stored link would break.
        return "Website must not contain spaces."
    try:
        parts = urlsplit(url)
    except ValueError:
        return "Website is not a valid URL."
    if parts.scheme.lower() not in ("http", "https"):
        return "Website must start with http:// or https://."
    if not parts.hostname:
        return "Website must include a host name."
    try:
        port = parts.port
    except ValueError:  # not a number, or over 65535
        port = 0
    if port is not None and not 1 <= port <= 65535:
        return "Website has an invalid port (it must be a number from 1 to 65535)."
    bracketed = parts.netloc.rpartition("@")[2].startswith("[")
    if not _valid_host(parts.hostname, bracketed=bracketed):
        return "Website has an invalid host name."
    return None


def _valid_host(host: str, *, bracketed: bool) -> bool:
    """Whether a (lower-cased) host is one a browser can reach: a bracketed IPv6 address, a
    dotted IPv4 address, or a name of at most 253 characters in dot-separated labels of 1 to 63,
    neither starting nor ending with a hyphen, whose last label is not a number.

    Unicode labels (bücher.example: browsers convert them) are checked as the punycode they
    become, by IDNA 2008 (the idna library, as email-validator checks an address's domain)."""
    if bracketed:
        # urlsplit has not checked what is inside [...] on every Python 3.11 release.
        try:
            return ipaddress.ip_address(host).version == 6
        except ValueError:
            return False
    if _DIGITS_AND_DOTS.match(host):
        # Browsers read it as an address (999.2.3.4 is none), never as a name.
        try:
            ipaddress.IPv4Address(host)
        except ValueError:
            return False
        return True
    labels = host.split(".")
    if labels[-1] == "" and len(labels) > 1:  # a fully qualified name's final dot
        labels.pop()
    encoded = []
    for label in labels:
        if label.isascii():
            encoded.append(label)
            continue
        # Letters, marks, digits and hyphens only: IDNA would map some invisible or dot-like
        # characters (a zero-width space, a full-width stop) away, but the link is stored as
        # written, and should go where it reads.
        if not all(_host_char(ch) for ch in label):
            return False
        try:
            encoded.append(idna.encode(label, uts46=True).decode("ascii"))
        except UnicodeError:  # idna.IDNAError: a bad hyphen, a leading mark, 63+ encoded...
            return False
    return (
        all(_HOST_LABEL.match(label) for label in encoded)
        and not encoded[-1].isdigit()  # example.123 is an address to a browser, and invalid
        and len(".".join(encoded)) <= 253
    )


def _host_char(ch: str) -> bool:
    category = unicodedata.category(ch)
    return category[0] in "LM" or category == "Nd" or ch == "-"


class EdgeJSONProvider(DefaultJSONProvider):
    """Flask's JSON provider, refusing as invalid (a 400, not a 500) JSON nested too deep and
    JSON whose strings hold an unpaired surrogate escape such as ``"\\ud800"`` (valid JSON
    syntax, but not text: it cannot be stored, encrypted or scored)."""

    def loads(self, s: str | bytes, **kwargs: Any) -> Any:
        try:
            value = super().loads(s, **kwargs)
        except RecursionError:
            raise ValueError("JSON nested too deeply") from None
        escaped = b"\\u" in s if isinstance(s, bytes) else "\\u" in s
        if escaped:  # only a backslash-u escape can produce a lone surrogate
            try:
                json.dumps(value, ensure_ascii=False).encode("utf-8")
            except UnicodeEncodeError:
                raise ValueError("JSON text contains an unpaired surrogate escape") from None
            except RecursionError:
                raise ValueError("JSON nested too deeply") from None
        return value


def parse_limit(raw: str | None, *, default: int, maximum: int) -> int | None:
    """Return a page size from a query string, or None when it is not a number in range."""
    if raw is None or raw == "":
        return default
    if not _ascii_digits(raw):
        return None
    value = int(raw)
    return value if 1 <= value <= maximum else None


def parse_cursor(raw: str | None) -> tuple[int, str | None] | bool | None:
    """Return a listing cursor (creation time, id), None when absent, or False when malformed.

    next_cursor is "<microseconds>~<id>"; a bare "<microseconds>" (cursors handed out before
    the id was added) still reads, with no id.
    """
    if raw is None or raw == "":
        return None
    when, sep, comment_id = raw.partition("~")
    if not _ascii_digits(when) or len(when) > 20:
        return False
    if sep and not is_comment_id(comment_id):
        return False
    return int(when), (comment_id if sep else None)


def _ascii_digits(raw: str) -> bool:
    # str.isdigit() is also true for "²" and other digits int() refuses.
    return raw.isascii() and raw.isdigit()
