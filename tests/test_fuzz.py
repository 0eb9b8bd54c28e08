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
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import pytest
import redis as redis_lib
import schemathesis
from flask import Flask
from flask.testing import FlaskClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from service import create_app
from service.openapi import openapi_document
from tests.conftest import MODERATOR_TOKEN
from workers.moderation import create_token
from workers.pipeline import score_and_decide
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


# -- schema-driven: the service's own OpenAPI document, held to what the app serves -----------

# Every answer must be in the document: no 5xx, a documented status code, content type and
# headers, and a body its schema accepts. The schemas are closed where the code's output is
# fixed, so a field the code stops sending fails, and so does one the document does not name.
CONFORMANCE = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]
SEED_EMAIL = "seeded.reader@example.com"
SEED_POST = "seeded-post"
SEED_TEXTS = (
    "Interesting analysis of the turnout numbers, thanks.",
    "WIN FREE CASH NOW!!! Click http://cheap-pills.example.biz for a limited offer",
    "You are a complete idiot and so is everyone who agrees with you.",
    "I disagree with the second point, but the article is well argued.",
    "Replying to the first comment: the model has not scored this one yet.",
)
NO_SUCH_ID = "0" * 24


@dataclass
class Seeded:
    """Comments in every state, an undo stack and audit entries, restorable at will."""

    ids: list[str]
    client: redis_lib.Redis
    snapshot: dict[bytes, bytes]

    def restore(self) -> None:
        """Put the service's keys back as seeded, so each example starts from the same data."""
        pipe = self.client.pipeline(transaction=True)
        current = list(self.client.scan_iter("mod:*", count=1000))
        if current:
            pipe.delete(*current)
        for key, dumped in self.snapshot.items():
            pipe.restore(key, 0, dumped, replace=True)
        pipe.execute()


@pytest.fixture
def seeded(fuzz_app: Flask, web: FlaskClient, settings: Settings) -> Iterator[Seeded]:
    """Five comments by one author: approved and rejected by a moderator (the rejection a bulk
    action, on top of the undo stack), two decided by the model, a reply not scored yet; a
    note, an address revealed."""
    runtime = fuzz_app.extensions["moderation"].runtime
    ids: list[str] = []
    for n, text in enumerate(SEED_TEXTS):
        body = {
            "post_id": SEED_POST,
            "comment": text,
            "author": f"Seeded Reader {n}",
            "email": SEED_EMAIL,
            "url": "https://seeded.example.org/",
            **({"parent_id": ids[0]} if n == 4 else {}),
        }
        response = web.post("/api/v1/comments", json=body)
        assert response.status_code == 202, response.get_data(as_text=True)
        ids.append(response.get_json()["id"])
        if n < 4:
            assert score_and_decide(runtime, ids[-1]) == "decided"
    moderation = "/api/v1/moderation"
    for path, body in (
        (f"{moderation}/comments/{ids[0]}/decision", {"action": "approve", "note": "Fine."}),
        (f"{moderation}/bulk", {"action": "reject", "ids": [ids[3]]}),
        (f"{moderation}/comments/{ids[2]}/notes", {"note": "Watch this author."}),
    ):
        assert web.post(path, json=body, headers=AUTH).status_code in (200, 201)
    assert web.get(f"{moderation}/comments/{ids[1]}/email", headers=AUTH).status_code == 200
    client = redis_lib.Redis.from_url(settings.redis_url)
    snapshot = {key: client.dump(key) for key in client.scan_iter("mod:*", count=1000)}
    yield Seeded(ids=ids, client=client, snapshot=snapshot)
    client.close()


class Api:
    """Calls into an app through its own OpenAPI document; every answer must conform to it."""

    def __init__(self, app: Flask, checks: list[Any] = CONFORMANCE) -> None:
        self.schema = schemathesis.openapi.from_wsgi("/api/v1/openapi.json", app)
        self.checks = checks

    def __call__(
        self,
        method: str,
        path: str,
        status: int,
        *,
        headers: dict[str, str] | None = None,
        **case: Any,
    ) -> Any:
        """Send one request to the operation at path; check it, and that it got status."""
        if "body" in case:
            case.setdefault("media_type", "application/json")
        made = self.schema[path][method].Case(**case)
        response = made.call(headers=AUTH if headers is None else headers)
        made.validate_response(response, checks=self.checks)
        assert response.status_code == status, (method, path, response.text[:500])
        return response


def _with_seeded_data(operation: Any, seeded: Seeded) -> Any:
    """Generated requests (valid and invalid ones), and about as many aimed at the seeded
    comments and author: random ids and addresses alone would only ever find nothing."""
    generated = st.one_of(
        operation.as_strategy(), operation.as_strategy(generation_mode=GenerationMode.NEGATIVE)
    )
    if "{comment_id}" in operation.path:
        on_seeds = st.sampled_from(seeded.ids).flatmap(
            lambda cid: operation.as_strategy(path_parameters={"comment_id": cid})
        )
    elif operation.path == "/api/v1/moderation/bulk":
        on_seeds = st.tuples(
            st.sampled_from(["approve", "reject", "spam", "not_spam", "delete"]),
            st.lists(st.sampled_from([*seeded.ids, NO_SUCH_ID, "not-an-id"]), min_size=1),
        ).flatmap(
            lambda pair: operation.as_strategy(
                body={"action": pair[0], "ids": pair[1]}, media_type="application/json"
            )
        )
    elif operation.path.startswith("/api/v1/privacy/"):
        on_seeds = operation.as_strategy(body={"email": SEED_EMAIL}, media_type="application/json")
    else:
        return generated
    return st.one_of(generated, on_seeds)


def test_every_openapi_operation_answers_generated_requests_as_documented(
    fuzz_app: Flask, seeded: Seeded
) -> None:
    """Generated from service/openapi.yaml: valid and invalid requests to every operation, with
    the operator's (admin) token, on the seeded data each time: never a server error, and every
    answer as documented (status code, content type, headers, body)."""
    api_schema = schemathesis.openapi.from_wsgi("/api/v1/openapi.json", fuzz_app)
    # Driven through hypothesis directly: schemathesis' pytest plugin does not support pytest 9.
    operations = [result.ok() for result in api_schema.get_all_operations()]
    # All but GET /api/v1/openapi.json: schemathesis leaves out where it read the document.
    assert len(operations) == sum(len(item) for item in openapi_document()["paths"].values()) - 1
    for operation in operations:

        @given(case=_with_seeded_data(operation, seeded))
        @settings(max_examples=max(60, settings.default.max_examples // 4))
        def call(case: Any) -> None:
            seeded.restore()
            response = case.call(headers=AUTH)
            assert "Traceback" not in response.text
            case.validate_response(response, checks=CONFORMANCE)

        call()


def test_every_documented_answer_shape_is_what_the_app_serves(
    fuzz_app: Flask, seeded: Seeded
) -> None:
    """Each documented answer, provoked on purpose (generated requests rarely reach most)."""
    api = Api(fuzz_app)
    store = fuzz_app.extensions["moderation"].runtime.store
    approved, spam, held, rejected, reply = seeded.ids
    one = "/api/v1/moderation/comments/{comment_id}"
    decision, undo = one + "/decision", "/api/v1/moderation/undo"
    bulk = "/api/v1/moderation/bulk"

    def on(comment_id: str) -> dict[str, Any]:
        return {"path_parameters": {"comment_id": comment_id}}

    submission = {
        "post_id": "shapes",
        "comment": "Every media type the form endpoint takes.",
        "author": "Shaper",
        "email": "shaper@example.com",
    }
    for n, media_type in enumerate(
        ("application/json", "application/x-www-form-urlencoded", "multipart/form-data")
    ):
        text = f"{submission['comment']} ({n})"
        sent = {**submission, "comment": text}
        accepted = api("POST", "/api/v1/comments", 202, body=sent, media_type=media_type)
        assert accepted.headers["location"] == [accepted.json()["status_url"]]
    browser = {"Accept": "text/html"}
    form = "application/x-www-form-urlencoded"
    back = {**submission, "comment": "Sent back to the article.", "redirect_to": "/article"}
    sent_back = api("POST", "/api/v1/comments", 303, body=back, media_type=form, headers=browser)
    assert sent_back.headers["location"][0].startswith("/article?comment_status=pending&")
    stay = {**submission, "comment": "Nowhere to go back to."}
    received = api("POST", "/api/v1/comments", 202, body=stay, media_type=form, headers=browser)
    assert received.headers["content-type"][0].startswith("text/html")
    incomplete = {"post_id": "shapes"}
    api("POST", "/api/v1/comments", 422, body=incomplete, media_type=form, headers=browser)
    api("POST", "/api/v1/comments", 422, body=incomplete)
    api("POST", "/api/v1/comments", 400, body=["not", "an", "object"])
    api("POST", "/api/v1/comments", 415, body="text", media_type="text/plain", headers={})

    # Public reads: an approved comment in full, another only by its status.
    public = "/api/v1/comments/{comment_id}"
    assert set(api("GET", public, 200, **on(approved)).json()) > {"id", "status", "comment"}
    assert set(api("GET", public, 200, **on(held)).json()) == {"id", "status"}
    api("GET", public, 404, **on(NO_SUCH_ID))
    listed = "/api/v1/posts/{post_id}/comments"
    page = api("GET", listed, 200, path_parameters={"post_id": SEED_POST}, query={"limit": 1})
    assert page.json()["comments"]
    api("GET", listed, 400, path_parameters={"post_id": SEED_POST}, query={"limit": 0})
    api("GET", "/api/v1/form-token", 200)

    # Moderation reads: every queue and sort, every comment's detail, the address, the log.
    seen: set[str] = set()
    for queue in ("pending", "approved", "rejected", "spam"):
        for sort in ("newest", "oldest", "spam", "toxic", "uncertainty"):
            query = {"status": queue, "sort": sort}
            listing = api("GET", "/api/v1/moderation/queue", 200, query=query).json()
            seen.update(item["id"] for item in listing["items"])
    # A comment the model has not scored yet is in no queue, only counted as unscored.
    assert seen == set(seeded.ids) - {reply}
    assert listing["counts"]["unscored"] >= 1
    api("GET", "/api/v1/moderation/queue", 400, query={"cursor": "nonsense"})
    api("GET", "/api/v1/moderation/queue", 401, headers={})
    for comment_id in seeded.ids:
        detail = api("GET", one, 200, **on(comment_id)).json()
        assert detail["audit"] or comment_id == reply  # the model writes the first entry
    api("GET", one, 404, **on(NO_SUCH_ID))
    assert api("GET", one + "/email", 200, **on(spam)).json()["email"] == SEED_EMAIL
    log = api("GET", "/api/v1/moderation/audit", 200, query={"limit": 2}).json()
    assert log["next_cursor"] == log["entries"][-1]["audit_id"]
    api("GET", "/api/v1/moderation/audit", 200, query={"cursor": log["next_cursor"]})
    api("GET", "/api/v1/moderation/audit", 400, query={"cursor": "0-0"})

    # Notes.
    assert api("POST", one + "/notes", 201, **on(held), body={"note": " Hm. "}).json() == {
        "id": held,
        "note": "Hm.",
    }
    api("POST", one + "/notes", 422, **on(held), body={"note": "   "})
    api("POST", one + "/notes", 404, **on(NO_SUCH_ID), body={"note": "Gone?"})

    # Undo: the seeded stack holds a bulk action on top of a single decision.
    assert api("POST", undo, 200).json()["results"][rejected]["status"] == 200
    assert api("POST", undo, 200).json()["id"] == approved
    api("POST", undo, 409)  # nothing (left) to undo

    # Decisions, a delete and its undo.
    assert api("POST", decision, 200, **on(held), body={"action": "approve"}).json()["queue"] == (
        "approved"
    )
    assert api("POST", decision, 200, **on(reply), body={"action": "delete"}).json() == {
        "id": reply,
        "deleted": True,
        "previous_queue": "pending",
    }
    assert api("POST", undo, 200).json()["id"] == reply
    api("POST", decision, 404, **on(NO_SUCH_ID), body={"action": "approve"})
    api("POST", decision, 422, **on(held), body={"action": "promote"})
    api("POST", decision, 400, **on(held), body=["approve"])
    api("POST", decision, 413, **on(held), body={"action": "approve", "note": "x" * 2_000_000})
    results = api("POST", bulk, 200, body={"action": "spam", "ids": [spam, NO_SUCH_ID, "x"]})
    assert {k: v["status"] for k, v in results.json()["results"].items()} == {
        spam: 200,
        NO_SUCH_ID: 404,
        "x": 404,
    }
    api("POST", bulk, 422, body={"action": "spam", "ids": []})

    # Undo never overwrites a later decision (someone else's), nor brings back a comment
    # removed since: per id for a bulk action, the whole request for a single one.
    alice = {"Authorization": "Bearer " + create_token(store, "alice", "moderator")}
    api("POST", bulk, 200, body={"action": "approve", "ids": [spam, rejected]})
    api("POST", decision, 200, **on(spam), body={"action": "reject"}, headers=alice)
    assert store.delete(store.get(rejected), reason="deleted") is not None
    assert {k: v["status"] for k, v in api("POST", undo, 200).json()["results"].items()} == {
        spam: 409,
        rejected: 404,
    }
    api("POST", decision, 200, **on(held), body={"action": "spam"})
    api("POST", decision, 200, **on(held), body={"action": "reject"}, headers=alice)
    api("POST", undo, 409)  # a later decision
    api("POST", decision, 200, **on(approved), body={"action": "reject"})
    assert store.delete(store.get(approved), reason="deleted") is not None
    api("POST", undo, 409)  # the comment is gone

    # Privacy.
    exported = api("POST", "/api/v1/privacy/export", 200, body={"email": SEED_EMAIL}).json()
    assert exported["count"] == len(exported["comments"]) == 3
    assert exported["comments"][0]["email"] == SEED_EMAIL
    api("POST", "/api/v1/privacy/export", 422, body={"email": "not an address"})
    erased = api("POST", "/api/v1/privacy/erase", 200, body={"email": SEED_EMAIL}).json()
    assert erased["comments_deleted"] == 3

    # Operations.
    for path in ("/healthz", "/readyz", "/metrics", "/api/v1/openapi.json"):
        api("GET", path, 200, headers={})


def test_answers_that_depend_on_settings_are_documented(
    settings: Settings, redis: redis_lib.Redis
) -> None:
    """The duplicate 409, the 429 of a rate limit and the 401 of the metrics token."""
    for key in redis.scan_iter("mod-rl*"):  # rate-limit counters of earlier tests
        redis.delete(key)
    app = create_app(
        settings.with_overrides(
            duplicate_window_seconds=60,
            rate_limit_ip="3/minute",
            rate_limit_author="",
            metrics_token="scrape-token",
        ),
        configure_logs=False,
    )
    api = Api(app)
    body = {
        "post_id": "settings",
        "comment": "Said once, then again by mistake.",
        "author": "Repeater",
        "email": "repeater@example.com",
    }
    first = api("POST", "/api/v1/comments", 202, body=body, headers={}).json()
    duplicate = api("POST", "/api/v1/comments", 409, body=body, headers={}).json()
    assert (duplicate["id"], duplicate["status_url"]) == (first["id"], first["status_url"])
    form, browser = "application/x-www-form-urlencoded", {"Accept": "text/html"}
    api("POST", "/api/v1/comments", 409, body=body, media_type=form, headers=browser)
    api("POST", "/api/v1/comments", 429, body=body, headers={})  # a 4th attempt in a minute
    api("GET", "/metrics", 401, headers={})
    api("GET", "/metrics", 200, headers={"Authorization": "Bearer scrape-token"})


def test_every_redis_backed_operation_documents_its_503(settings: Settings) -> None:
    """With Redis unreachable every operation that needs it answers a documented 503."""
    with socket.socket() as probe:  # a port nothing listens on: connections are refused
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    app = create_app(
        settings.with_overrides(
            redis_url=f"redis://127.0.0.1:{port}/0", rate_limit_ip="", rate_limit_author=""
        ),
        configure_logs=False,
    )
    api = Api(app, checks=[c for c in CONFORMANCE if c is not not_a_server_error])
    on = {"path_parameters": {"comment_id": NO_SUCH_ID}}
    one = "/api/v1/moderation/comments/{comment_id}"
    submission = {"post_id": "p", "comment": "Hello.", "author": "A", "email": "a@example.com"}
    for method, path, case in (
        ("POST", "/api/v1/comments", {"body": submission}),
        ("GET", "/api/v1/comments/{comment_id}", on),
        ("GET", "/api/v1/posts/{post_id}/comments", {"path_parameters": {"post_id": "p"}}),
        ("GET", "/api/v1/moderation/queue", {}),
        ("GET", one, on),
        ("POST", one + "/decision", {**on, "body": {"action": "approve"}}),
        ("POST", "/api/v1/moderation/bulk", {"body": {"action": "spam", "ids": [NO_SUCH_ID]}}),
        ("POST", "/api/v1/moderation/undo", {}),
        ("POST", one + "/notes", {**on, "body": {"note": "Hm."}}),
        ("GET", one + "/email", on),
        ("GET", "/api/v1/moderation/audit", {}),
        ("POST", "/api/v1/privacy/export", {"body": {"email": "a@example.com"}}),
        ("POST", "/api/v1/privacy/erase", {"body": {"email": "a@example.com"}}),
    ):
        api(method, path, 503, **case)
    api("GET", "/readyz", 503, headers={})
    for path in ("/healthz", "/metrics", "/api/v1/form-token", "/api/v1/openapi.json"):
        api("GET", path, 200, headers={})


def test_the_openapi_document_lists_every_route_the_app_serves(fuzz_app: Flask) -> None:
    """Every route and method is documented, and every documented operation exists (GET /, the
    demo page, is left out on purpose and says so)."""
    document = openapi_document()
    assert "`GET /`" in document["info"]["description"]
    documented = {
        (path, method.upper()) for path, item in document["paths"].items() for method in item
    }
    served = {
        (re.sub(r"<(?:[^:<>]+:)?([^<>]+)>", r"{\1}", rule.rule), method)
        for rule in fuzz_app.url_map.iter_rules()
        for method in rule.methods or ()
        if method not in ("HEAD", "OPTIONS") and rule.endpoint not in ("static", "demo.demo_page")
    }
    assert served == documented
