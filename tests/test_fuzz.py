"""Fuzzing every endpoint with hypothesis: hostile input gets a 4xx, never a 5xx or a trace.

Cases: arbitrary text (NUL, control characters, lone surrogates), invalid UTF-8 bodies, huge
fields, deeply nested and wrongly typed JSON, duplicate keys, header injection attempts, and
HTML/script in every field, which must come back escaped wherever HTML is rendered.
The ``HYPOTHESIS_PROFILE`` environment variable picks ``ci`` (default, about a minute in all)
or ``deep`` (ten times the cases).
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import pytest
import redis as redis_lib
import schemathesis
from flask import Flask
from flask.testing import FlaskClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from service import create_app
from tests.conftest import MODERATOR_TOKEN
from workers.settings import Settings

# Fixtures are shared across the examples of one test on purpose: each example is independent.
_COMMON = {
    "deadline": None,
    "suppress_health_check": [HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    "derandomize": True,
}
settings.register_profile("ci", max_examples=400, **_COMMON)
settings.register_profile("deep", max_examples=4000, **_COMMON)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

AUTH = {"Authorization": f"Bearer {MODERATOR_TOKEN}"}
FIELDS = ("post_id", "comment", "author", "email", "url", "parent_id", "redirect_to", "homepage")
SCRIPT = "<script>alert(1)</script>"
HTML_PAYLOADS = (
    SCRIPT,
    '"><img src=x onerror=alert(1)>',
    "<svg/onload=alert(1)>",
    "javascript:alert(1)",
    "'\"><iframe src=//evil.example>",
)

# Text of every kind: control characters, NUL, lone surrogates, astral characters.
any_text = st.text(st.characters(codec=None), max_size=300)
hostile_text = st.one_of(
    any_text,
    st.sampled_from(HTML_PAYLOADS),
    st.sampled_from(["\x00", "\r\nX-Injected: 1", "%0d%0aSet-Cookie:x=1", "\ud800", "é" * 70_000]),
    st.builds(lambda n: "a" * n, st.integers(0, 300_000)),
)
json_scalars = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), hostile_text
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(any_text, inner, max_size=4)
    ),
    max_leaves=12,
)


@pytest.fixture
def fuzz_app(settings: Settings, redis: redis_lib.Redis) -> Flask:
    """The app without submission rate limits, so every example reaches validation."""
    app = create_app(
        settings.with_overrides(rate_limit_ip="", rate_limit_author=""), configure_logs=False
    )
    app.config["TESTING"] = True
    return app


@pytest.fixture
def web(fuzz_app: Flask) -> Iterator[FlaskClient]:
    yield fuzz_app.test_client()


def no_server_error(response: Any) -> None:
    body = response.get_data(as_text=True)
    assert response.status_code < 500, body[:500]
    assert "Traceback" not in body


def _json_body(value: Any) -> bytes:
    # ensure_ascii keeps lone surrogates as \ud800 escapes, exactly as a hostile client sends.
    return json.dumps(value).encode()


@given(body=st.dictionaries(st.sampled_from(FIELDS), json_values, max_size=8))
def test_json_submissions_of_any_shape_never_cause_a_server_error(
    web: FlaskClient, body: dict[str, Any]
) -> None:
    response = web.post("/api/v1/comments", data=_json_body(body), content_type="application/json")
    no_server_error(response)
    assert response.status_code in (202, 400, 409, 413, 422)


@given(body=st.dictionaries(st.sampled_from(FIELDS), hostile_text, max_size=8))
def test_form_submissions_with_hostile_text_never_cause_a_server_error(
    web: FlaskClient, body: dict[str, str]
) -> None:
    encoded = "&".join(
        f"{quote(k)}={quote(v, safe='', errors='surrogatepass')}" for k, v in body.items()
    )
    response = web.post(
        "/api/v1/comments",
        data=encoded.encode(),
        content_type="application/x-www-form-urlencoded",
        headers={"Accept": "text/html"},
    )
    no_server_error(response)


@given(raw=st.binary(max_size=2000), kind=st.sampled_from(["json", "form", "multipart", "other"]))
def test_raw_bytes_in_any_content_type_never_cause_a_server_error(
    web: FlaskClient, raw: bytes, kind: str
) -> None:
    """Invalid UTF-8, truncated JSON and garbage form bodies are refused cleanly."""
    content_type = {
        "json": "application/json",
        "form": "application/x-www-form-urlencoded",
        "multipart": "multipart/form-data; boundary=xyz",
        "other": "application/octet-stream",
    }[kind]
    no_server_error(web.post("/api/v1/comments", data=raw, content_type=content_type))


# Endpoints that parse a JSON body (one per blueprint that writes).
JSON_WRITE_PATHS = [
    "/api/v1/comments",
    "/api/v1/moderation/comments/" + "0" * 24 + "/decision",
    "/api/v1/moderation/bulk",
    "/api/v1/privacy/export",
]


@pytest.mark.parametrize("depth", [100, 1_000, 50_000])
@pytest.mark.parametrize("path", JSON_WRITE_PATHS)
def test_deeply_nested_json_is_refused_not_crashed_on(
    web: FlaskClient, depth: int, path: str
) -> None:
    for body in ("[" * depth + "]" * depth, '{"comment":' * depth + "1" + "}" * depth):
        response = web.post(path, data=body, content_type="application/json", headers=AUTH)
        no_server_error(response)
        assert response.status_code in (400, 404, 413, 422)


@pytest.mark.parametrize("path", JSON_WRITE_PATHS)
def test_unpaired_surrogate_escapes_in_json_are_refused_not_crashed_on(
    web: FlaskClient, path: str
) -> None:
    """ "\\ud800" is valid JSON syntax but not text; it used to reach Redis and give a 500."""
    for field in ('"comment":"hi \\ud800 there"', '"author":"A \\udfff"', '"x\\ud83d":1'):
        body = '{"post_id":"p1","email":"a@example.com",' + field + "}"
        response = web.post(path, data=body, content_type="application/json", headers=AUTH)
        no_server_error(response)
        assert response.status_code in (400, 404, 422)


@pytest.mark.parametrize("field", ["comment", "author", "url", "post_id"])
def test_an_unpaired_surrogate_in_an_otherwise_valid_comment_is_a_400(
    web: FlaskClient, field: str
) -> None:
    """A complete submission must be refused at the edge, not reach Redis (it gave a 500)."""
    valid = {
        "post_id": "p1",
        "comment": "A perfectly ordinary remark.",
        "author": "A",
        "email": "a@example.com",
        "url": "https://example.org/me",
    }
    body = json.dumps({**valid, field: valid[field] + "\ud800"})  # ensure_ascii: "\\ud800"
    response = web.post("/api/v1/comments", data=body, content_type="application/json")
    no_server_error(response)
    assert response.status_code == 400, response.get_data(as_text=True)


def test_a_paired_surrogate_escape_is_an_ordinary_emoji(web: FlaskClient) -> None:
    body = '{"post_id":"p1","comment":"Lovely \\ud83d\\ude00","author":"A","email":"a@example.com"}'
    response = web.post("/api/v1/comments", data=body, content_type="application/json")
    assert response.status_code == 202, response.get_data(as_text=True)


def test_duplicate_json_keys_take_the_last_value_like_every_json_parser(
    web: FlaskClient, redis: redis_lib.Redis
) -> None:
    body = (
        '{"post_id":"p","comment":"first","comment":"A second thought on the matter.",'
        '"author":"Dup","email":"dup@example.com","email":"dup2@example.com"}'
    )
    response = web.post("/api/v1/comments", data=body, content_type="application/json")
    assert response.status_code == 202
    stored = redis.hget(f"mod:c:{response.get_json()['id']}", "comment")
    assert stored == "A second thought on the matter."


@given(value=hostile_text)
def test_request_id_and_other_headers_cannot_inject_headers(web: FlaskClient, value: str) -> None:
    try:
        response = web.get("/healthz", headers={"X-Request-ID": value, "Referer": value})
    except ValueError:
        return  # the client itself refuses to send a header with a newline
    no_server_error(response)
    echoed = response.headers["X-Request-ID"]
    assert re.fullmatch(r"[A-Za-z0-9._-]{1,64}", echoed)
    assert "X-Injected" not in response.headers


@settings(max_examples=150)  # each example calls eight endpoints
@given(
    comment_id=any_text,
    post_id=any_text,
    query=st.dictionaries(
        st.sampled_from(
            [
                "limit",
                "cursor",
                "status",
                "sort",
                "order",
                "label",
                "post_id",
                "author_digest",
                "min_spam",
                "max_spam",
                "min_toxic",
                "q",
                "action",
            ]
        ),
        hostile_text,
        max_size=5,
    ),
)
def test_every_read_endpoint_answers_hostile_paths_and_queries_without_a_server_error(
    web: FlaskClient, comment_id: str, post_id: str, query: dict[str, str]
) -> None:
    qs = "&".join(
        f"{quote(k)}={quote(v, safe='', errors='surrogatepass')}" for k, v in query.items()
    )
    cid = quote(comment_id, safe="", errors="surrogatepass")
    pid = quote(post_id, safe="/", errors="surrogatepass")
    for path, headers in (
        (f"/api/v1/comments/{cid}?{qs}", {}),
        (f"/api/v1/posts/{pid}/comments?{qs}", {}),
        (f"/api/v1/moderation/queue?{qs}", AUTH),
        (f"/api/v1/moderation/audit?{qs}", AUTH),
        (f"/api/v1/moderation/comments/{cid}", AUTH),
        (f"/api/v1/moderation/comments/{cid}/email", AUTH),
        (f"/?{qs}", {"Accept": "text/html"}),
        (f"/api/v1/form-token?{qs}", {}),
    ):
        no_server_error(web.get(path, headers=headers))


@pytest.mark.parametrize(
    ("cursor", "status"),
    [
        ("0-0", 400),  # nothing lies before the first possible id; Redis refuses "(0-0"
        ("18446744073709551616-0", 400),  # beyond 64 bits: Redis refuses it
        ("1-99999999999999999999", 400),
        ("18446744073709551615-18446744073709551615", 200),  # the largest id is fine
        ("1-0", 200),
    ],
)
def test_audit_cursors_redis_would_refuse_are_a_400_naming_the_cursor(
    web: FlaskClient, cursor: str, status: int
) -> None:
    response = web.get(f"/api/v1/moderation/audit?cursor={cursor}", headers=AUTH)
    assert response.status_code == status, response.get_data(as_text=True)
    if status == 400:
        assert "cursor" in response.get_json()["errors"]


@given(
    comment_id=st.one_of(any_text, st.just("0" * 24)),
    body=json_values,
    endpoint=st.sampled_from(["decision", "notes", "bulk", "undo", "export", "erase"]),
    authorised=st.booleans(),
)
def test_every_write_endpoint_answers_hostile_bodies_without_a_server_error(
    web: FlaskClient, comment_id: str, body: Any, endpoint: str, authorised: bool
) -> None:
    cid = quote(comment_id, safe="", errors="surrogatepass")
    path = {
        "decision": f"/api/v1/moderation/comments/{cid}/decision",
        "notes": f"/api/v1/moderation/comments/{cid}/notes",
        "bulk": "/api/v1/moderation/bulk",
        "undo": "/api/v1/moderation/undo",
        "export": "/api/v1/privacy/export",
        "erase": "/api/v1/privacy/erase",
    }[endpoint]
    headers = AUTH if authorised else {"Authorization": "Bearer " + comment_id[:40]}
    try:
        response = web.post(
            path, data=_json_body(body), content_type="application/json", headers=headers
        )
    except ValueError:
        return  # a header with a newline: refused by the client before it is sent
    no_server_error(response)
    if not authorised:
        # 308: an empty id makes "comments//decision", which routing redirects to its
        # one-slash form; that answer is unauthenticated too.
        assert response.status_code in (308, 401, 403, 404, 405)


@pytest.mark.parametrize("token", ["\udac2", "abc\udac2def", "caf\u00e9", "tab\there", "\u2028"])
def test_a_token_no_client_could_have_been_given_is_a_401(web: FlaskClient, token: str) -> None:
    """Found by the deep fuzz profile: a lone surrogate failed to encode for the comparison."""
    response = web.get("/api/v1/moderation/queue", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 401, response.get_data(as_text=True)


@given(payload=st.sampled_from(HTML_PAYLOADS), field=st.sampled_from(FIELDS[:5]))
def test_html_in_any_field_is_escaped_on_the_fix_the_form_page(
    web: FlaskClient, payload: str, field: str
) -> None:
    body = {"post_id": "p", "comment": "Fine words.", "author": "A", "email": "not-an-email"}
    body[field] = payload
    response = web.post("/api/v1/comments", data=body, headers={"Accept": "text/html"})
    page = response.get_data(as_text=True)
    assert response.status_code == 422
    assert response.mimetype == "text/html"
    assert payload not in page or payload == "javascript:alert(1)"
    # Escaped, the payload is inert text (&lt;img ...); raw, it would be markup.
    assert "<script>alert" not in page and "<img src=x" not in page and "<svg/" not in page


def test_html_in_a_published_comment_is_stored_as_text_and_escaped_on_the_page(
    web: FlaskClient, redis: redis_lib.Redis
) -> None:
    body = {
        "post_id": "demo-article",
        "comment": f"Nice article {SCRIPT} and <b>bold</b> claims.",
        "author": '"><img src=x onerror=alert(1)>',
        "email": "html@example.com",
        "url": "https://example.com/?q=<script>",
    }
    response = web.post("/api/v1/comments", json=body)
    assert response.status_code == 202
    comment_id = response.get_json()["id"]
    assert redis.hget(f"mod:c:{comment_id}", "comment") == body["comment"]  # stored verbatim
    decided = web.post(
        f"/api/v1/moderation/comments/{comment_id}/decision",
        json={"action": "approve"},
        headers=AUTH,
    )
    assert decided.status_code == 200
    public = web.get(f"/api/v1/comments/{comment_id}")
    assert public.mimetype == "application/json"
    assert public.get_json()["comment"] == body["comment"]  # JSON is not HTML: returned as text
    page = web.get("/", headers={"Accept": "text/html"}).get_data(as_text=True)
    assert "Nice article &lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert SCRIPT not in page and "<img src=x" not in page


def test_error_pages_escape_what_the_client_sent(web: FlaskClient) -> None:
    response = web.get(f"/api/v1/nowhere/{quote(SCRIPT)}", headers={"Accept": "text/html"})
    assert response.status_code == 404
    assert SCRIPT not in response.get_data(as_text=True)


# -- schema-driven: every operation of the service's own OpenAPI document ----------------------


@pytest.fixture
def api_schema(fuzz_app: Flask) -> Any:
    """The service's OpenAPI document, served by the app itself, driving calls into the app."""
    return schemathesis.openapi.from_wsgi("/api/v1/openapi.json", fuzz_app)


def test_every_openapi_operation_answers_generated_requests_without_a_server_error(
    api_schema: Any,
) -> None:
    """Generated from service/openapi.yaml: every operation, with the moderator's token."""
    # Driven through hypothesis directly: schemathesis' pytest plugin does not support pytest 9.
    operations = [result.ok() for result in api_schema.get_all_operations()]
    assert len(operations) >= 10
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(max_examples=60)
        def call(case: Any) -> None:
            response = case.call(headers=AUTH)
            assert response.status_code < 500, (case.method, case.path, response.text[:300])

        call()
