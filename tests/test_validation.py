"""The edge: every field error is reported at once, with a message naming the field."""

from __future__ import annotations

import pytest

from service.validation import Invalid, validate_submission
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
