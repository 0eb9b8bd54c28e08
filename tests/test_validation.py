"""The edge: every field error is reported at once, with a message naming the field."""

from __future__ import annotations

import pytest

from service.validation import LABELS, Invalid, validate_submission
from workers.intake import Submission

VALID = {
    "post_id": "2026/11/budget-vote",
    "comment": "Thanks for the clear explanation of the budget vote.",
    "author": "Jane Reader",
    "email": "Jane.Reader@Example.com",
}


def errors_of(values: dict[str, object]) -> dict[str, str]:
    result = validate_submission(values)
    assert isinstance(result, Invalid), result
    return result.errors


def test_valid_submission_is_cleaned() -> None:
    result = validate_submission({**VALID, "comment": "  hi there  \r\n", "url": "https://x.org"})
    assert isinstance(result, Submission)
    assert result.comment == "hi there"
    assert result.url == "https://x.org"
    assert result.email.endswith("@example.com")  # domain normalised by email-validator


@pytest.mark.parametrize("field", ["post_id", "comment", "author", "email"])
def test_each_missing_required_field_is_named(field: str) -> None:
    values = {k: v for k, v in VALID.items() if k != field}
    errors = errors_of(values)
    assert list(errors) == [field]
    assert "required" in errors[field]


def test_blank_after_trimming_counts_as_missing() -> None:
    errors = errors_of({**VALID, "author": "   ", "comment": "\n\t "})
    assert set(errors) == {"author", "comment"}


def test_all_errors_are_returned_at_once() -> None:
    errors = errors_of({"url": "ftp://files.example.com"})
    assert set(errors) == {"post_id", "comment", "author", "email", "url"}


@pytest.mark.parametrize(
    ("field", "limit"), [("author", 245), ("email", 254), ("url", 200), ("comment", 65_525)]
)
def test_length_limits(field: str, limit: int) -> None:
    long_value = {
        "author": "a" * (limit + 1),
        "email": "a" * (limit - 10) + "@example.com",
        "url": "https://example.com/" + "p" * limit,
        "comment": "c" * (limit + 1),
    }[field]
    errors = errors_of({**VALID, field: long_value})
    assert field in errors
    assert f"{limit:,}" in errors[field]


def test_email_syntax_is_checked_without_echoing_the_address() -> None:
    errors = errors_of({**VALID, "email": "jane.reader-at-example.com"})
    assert "email" in errors
    assert "jane.reader" not in errors["email"]


@pytest.mark.parametrize("url", ["javascript:alert(1)", "ftp://x.org", "https://", "example.com"])
def test_website_must_be_http_or_https(url: str) -> None:
    assert "url" in errors_of({**VALID, "url": url})


def test_post_id_must_be_a_safe_slug() -> None:
    assert "post_id" in errors_of({**VALID, "post_id": "<script>"})
    assert "post_id" in errors_of({**VALID, "post_id": "x" * 129})


def test_wrong_types_are_named() -> None:
    errors = errors_of({**VALID, "author": ["Jane"], "comment": 42})
    assert set(errors) == {"author", "comment"}


def test_control_characters_are_refused_but_newlines_kept() -> None:
    assert "comment" in errors_of({**VALID, "comment": "hi\x00there"})
    assert "author" in errors_of({**VALID, "author": "Ja\nne"})
    ok = validate_submission({**VALID, "comment": "line one\nline two"})
    assert isinstance(ok, Submission) and ok.comment == "line one\nline two"


def test_parent_id_must_look_like_a_comment_id() -> None:
    assert "parent_id" in errors_of({**VALID, "parent_id": "../../etc"})


def test_honeypot_is_recorded_as_a_signal() -> None:
    result = validate_submission({**VALID, "homepage": "http://spam.example"})
    assert isinstance(result, Submission) and result.honeypot_filled


def test_the_form_token_signal_is_carried_to_the_submission() -> None:
    result = validate_submission(VALID, form_token="missing")
    assert isinstance(result, Submission) and result.form_token == "missing"
    plain = validate_submission(VALID)
    assert isinstance(plain, Submission) and plain.form_token == ""


def test_length_is_checked_on_the_normalised_text_that_is_stored() -> None:
    # NFC turns U+0958 into two characters (U+0915 U+093C): the limit is on what is stored.
    errors = errors_of({**VALID, "comment": "\u0958" * 65_525, "author": "\u0958" * 245})
    assert set(errors) == {"comment", "author"}
    assert "65,525" in errors["comment"] and "131,050" in errors["comment"]
    assert "245" in errors["author"] and "490" in errors["author"]
    at_limit = validate_submission(
        {**VALID, "comment": "\u0958" * 32_762, "author": "\u0958" * 122}
    )
    assert isinstance(at_limit, Submission)
    assert at_limit.comment == "\u0915\u093c" * 32_762  # stored normalised, within the limit
    assert at_limit.author == "\u0915\u093c" * 122


def test_names_are_stored_normalised() -> None:
    result = validate_submission({**VALID, "author": "Jose\u0301", "comment": "cafe\u0301"})
    assert isinstance(result, Submission)
    assert (result.author, result.comment) == ("Jos\u00e9", "caf\u00e9")


def test_stored_email_stays_within_its_limit_after_normalisation() -> None:
    # email-validator checks the normalised address too: 80 x U+0958 become 160 characters.
    assert "email" in errors_of({**VALID, "email": "\u0958" * 80 + "@example.com"})


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("comment", "\u200b\u200b"),
        ("comment", "\ufeff"),
        ("comment", " \u200d\u2060\n\u00a0\u3000"),
        ("author", "\u202e\u200b"),
        ("author", "\u200e\u200f"),
        ("author", "\u3164"),  # Hangul filler: a letter that renders as nothing
        ("comment", "\u2800\u2800 \u034f\ufe0f"),  # braille blank, CGJ, variation selector
        ("post_id", "\u200b"),
        ("email", "\ufeff"),
    ],
)
def test_invisible_only_text_counts_as_missing(field: str, value: str) -> None:
    errors = errors_of({**VALID, field: value})
    assert list(errors) == [field]
    assert errors[field] == f"{LABELS[field]} is required."


@pytest.mark.parametrize(
    "control", [*map(chr, range(0x202A, 0x202F)), *map(chr, range(0x2066, 0x206A))]
)
def test_text_direction_controls_are_refused_in_names(control: str) -> None:
    errors = errors_of({**VALID, "author": f"Jane{control} Reader"})
    assert list(errors) == ["author"]
    assert errors["author"].startswith("Name ") and "direction" in errors["author"]


@pytest.mark.parametrize(
    "text",
    [
        "\u0644\u064a\u0644\u0649 \u0639\u0628\u062f \u0627\u0644\u0644\u0647",  # Arabic name
        "\u05d3\u05d5\u05d3 \u05dc\u05d5\u05d9",  # Hebrew name
        "Jane \U0001f468\u200d\U0001f469\u200d\U0001f467",  # family emoji (ZWJ sequence)
        "\U0001f468\u200d\U0001f469\u200d\U0001f467",  # the emoji alone is visible content
        "Jane\u200f Reader",  # a right-to-left mark only marks, it overrides nothing
    ],
)
def test_right_to_left_scripts_and_emoji_sequences_stay_valid(text: str) -> None:
    result = validate_submission({**VALID, "author": text, "comment": text})
    assert isinstance(result, Submission), result
    assert (result.author, result.comment) == (text, text)


@pytest.mark.parametrize(
    "url",
    [
        "http://exa mple.com",
        "https://example.com/a b",
        "https://example.com/a\u00a0b",
        "https://example.com/?q=a\u3000b",
        "https://x.com:99999/",
        "https://x.com:0/",
        "https://x.com:abc/",
        "https://x.com:+80/",
        "http://exa%20mple.com/",
        "http://exa_<mple.com/",
        "http://a..b/",
        "http://./",
        "http://ex\u200bample.com/",
        "http://exa\u202emple.com/",
        "http://[v1.fe]/",
    ],
)
def test_malformed_website_urls_are_refused(url: str) -> None:
    errors = errors_of({**VALID, "url": url})
    assert list(errors) == ["url"]
    assert errors["url"].startswith("Website ")


# Hangul syllables far apart: 15 of them are 50 characters in punycode, 20 are 65.
_HANGUL_SPREAD = "".join(chr(0xAC00 + n * 401) for n in range(15))
_HANGUL_LONGER = "".join(chr(0xAC00 + n * 401) for n in range(20))


@pytest.mark.parametrize(
    "url",
    [
        "https://example.com",
        "https://Example.COM./path?q=1#top",
        "http://example.com:8080/",
        "https://x.com:/",
        "https://user:secret@example.com/",
        "http://192.0.2.1/",
        "http://[2001:db8::1]:443/",
        "https://b\u00fccher.example/",
        "https://xn--bcher-kva.example/",
        "https://\u0939\u093f\u0902\u0926\u0940.example/",  # marks inside a Devanagari label
        "https://my_site.example/",
        "https://example.com/\u00fcber?x=\u00e9",
        # Hosts at the edges of the host-name rules that browsers do reach.
        "https://sub-domain.example.co.uk/",
        "http://127.0.0.1:8080/",
        "http://[::1]/",
        "https://" + "a" * 63 + ".example/",
        "https://" + _HANGUL_SPREAD + ".example/",
        "https://3com.example/",
        "https://example.c0m/",
        "https://localhost/",
    ],
)
def test_ordinary_website_urls_stay_valid(url: str) -> None:
    result = validate_submission({**VALID, "url": url})
    assert isinstance(result, Submission), result
    assert result.url == url


@pytest.mark.parametrize(
    "url",
    [
        "https://-bad-.com/",
        "https://bad-.example/",
        "https://news.-bad.example/",
        "https://-b\u00fccher.example/",  # IDNA checks the hyphens of a Unicode label too
        "https://" + "a" * 64 + ".example/",  # a label is at most 63 characters
        "https://" + _HANGUL_LONGER + ".example/",  # 20 characters, but 65 in punycode
        "https://" + ".".join([_HANGUL_SPREAD] * 5) + "/",  # 254 characters in punycode
        "https://999.2.3.4/",
        "https://1.2.3/",
        "https://1.2.3.4.5/",
        "https://01.2.3.4/",  # octal to some parsers, decimal to others
        "https://1234/",
        "https://example.123/",  # an all-numeric top-level label is an address, not a name
    ],
)
def test_website_hosts_no_browser_could_reach_are_refused(url: str) -> None:
    errors = errors_of({**VALID, "url": url})
    assert errors == {"url": "Website has an invalid host name."}
