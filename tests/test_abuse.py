"""Abuse protection: rate limits, duplicates, honeypot and timing, CORS, proxies, headers."""

from __future__ import annotations

import re
import secrets
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.parse import urlencode

import pytest
import redis as redis_lib
from email_validator import validate_email
from flask.testing import FlaskClient
from itsdangerous import TimestampSigner
from werkzeug.test import TestResponse

from service import create_app, validation
from tests.conftest import MODERATOR_TOKEN, client_for, post_chunked
from workers.pipeline import score_and_decide
from workers.runtime import Runtime
from workers.settings import Settings

FORM = {
    "post_id": "p1",
    "comment": "A calm and friendly comment.",
    "author": "Ann",
    "email": "ann@example.com",
}
BROWSER = {"Accept": "text/html"}


@pytest.mark.parametrize(("limit", "low", "high"), [("2/minute", 1, 61), ("2/day", 3600, 86401)])
def test_retry_after_says_when_the_breached_limit_resets_and_only_on_a_429(
    settings: Settings, redis: redis_lib.Redis, limit: str, low: int, high: int
) -> None:
    client = client_for(settings, rate_limit_ip=limit)
    env = {"REMOTE_ADDR": "203.0.113.60" if "minute" in limit else "203.0.113.61"}
    answers = [
        client.post(
            "/api/v1/comments",
            json={**FORM, "email": f"w{n}@example.com", "comment": f"Window {n} {limit}"},
            environ_base=env,
        )
        for n in range(3)
    ]
    assert [a.status_code for a in answers] == [202, 202, 429]
    for accepted in answers[:2]:  # no rate-limit headers on ordinary answers
        assert "Retry-After" not in accepted.headers
        assert not any(name.startswith("X-RateLimit") for name, _ in accepted.headers.items())
    assert low <= int(answers[2].headers["Retry-After"]) <= high


def test_rate_limit_per_client_ip_answers_429_with_retry_after(
    settings: Settings, redis: redis_lib.Redis
) -> None:
    client = client_for(settings, rate_limit_ip="3/minute")
    env = {"REMOTE_ADDR": "203.0.113.77"}
    codes = [
        client.post(
            "/api/v1/comments",
            json={**FORM, "email": f"r{n}@example.com", "comment": f"c{n}"},
            environ_base=env,
        ).status_code
        for n in range(4)
    ]
    assert codes == [202, 202, 202, 429]
    limited = client.post("/api/v1/comments", json=FORM, environ_base=env)
    assert limited.mimetype == "application/problem+json"
    assert int(limited.headers["Retry-After"]) > 0
    # Another reader is not affected; a forged X-Forwarded-For does not reset the counter.
    assert (
        client.post(
            "/api/v1/comments",
            json={**FORM, "comment": "x"},
            environ_base={"REMOTE_ADDR": "203.0.113.78"},
        ).status_code
        == 202
    )
    forged = {"X-Forwarded-For": "198.51.100.23"}
    assert (
        client.post("/api/v1/comments", json=FORM, headers=forged, environ_base=env).status_code
        == 429
    )
    # Moderators are exempt.
    moderator = {"Authorization": f"Bearer {MODERATOR_TOKEN}"}
    assert (
        client.post(
            "/api/v1/comments", json={**FORM, "comment": "mod"}, headers=moderator, environ_base=env
        ).status_code
        == 202
    )


def test_rate_limit_per_author_follows_the_address_across_ips(
    settings: Settings, redis: redis_lib.Redis
) -> None:
    client = client_for(settings, rate_limit_author="2/minute")
    codes = [
        client.post(
            "/api/v1/comments",
            data={
                **FORM,
                "comment": f"text {n}",
                "email": "Same@Example.com" if n % 2 else "same@example.com",
            },
            environ_base={"REMOTE_ADDR": f"203.0.113.{n + 10}"},
        ).status_code
        for n in range(3)
    ]
    assert codes == [202, 202, 429]


def test_the_author_limit_never_reads_an_address_cut_short_from_a_chunked_body(
    settings: Settings, redis: redis_lib.Redis
) -> None:
    """A chunked body over the size limit is read only up to the limit: an address cut short
    there is someone else's (here a reader at their limit), so the answer was their 429."""
    client = client_for(settings, max_content_length=1024, rate_limit_author="1/minute")
    assert client.post("/api/v1/comments", data=FORM).status_code == 202
    # About ann@example.com.uk; the first 1,024 bytes end with ann@example.com.
    tail = "&" + urlencode({"email": FORM["email"]})
    head = urlencode({k: v for k, v in FORM.items() if k != "email"}) + "&zz=" + "x" * 1024
    body = (head[: 1024 - len(tail)] + tail + ".uk").encode()
    form = "application/x-www-form-urlencoded"
    # A client of its own: earlier tests' counters for 127.0.0.1 at 1/minute must not answer.
    response = post_chunked(client, "/api/v1/comments", body, form, remote_addr="198.51.100.213")
    assert response.status_code == 413, response.get_data(as_text=True)


def test_behind_a_trusted_proxy_the_forwarded_client_is_limited(
    settings: Settings, redis: redis_lib.Redis
) -> None:
    client = client_for(settings, rate_limit_ip="1/minute", trusted_proxies=1)
    proxy = {"REMOTE_ADDR": "10.0.0.2"}
    first = client.post(
        "/api/v1/comments",
        json=FORM,
        headers={"X-Forwarded-For": "198.51.100.1"},
        environ_base=proxy,
    )
    second = client.post(
        "/api/v1/comments",
        json={**FORM, "comment": "b"},
        headers={"X-Forwarded-For": "198.51.100.2"},
        environ_base=proxy,
    )
    again = client.post(
        "/api/v1/comments",
        json={**FORM, "comment": "c"},
        headers={"X-Forwarded-For": "198.51.100.1"},
        environ_base=proxy,
    )
    assert (first.status_code, second.status_code, again.status_code) == (202, 202, 429)
    # A client prepending its own forged hop is still seen as the address the proxy saw.
    forged = client.post(
        "/api/v1/comments",
        json={**FORM, "comment": "d"},
        headers={"X-Forwarded-For": "1.2.3.4, 198.51.100.1"},
        environ_base=proxy,
    )
    assert forged.status_code == 429


def test_duplicate_submission_answers_409_with_the_original_id(
    settings: Settings, redis: redis_lib.Redis
) -> None:
    client = client_for(settings, duplicate_window_seconds=600)
    first = client.post("/api/v1/comments", json=FORM)
    assert first.status_code == 202
    again = client.post(
        "/api/v1/comments", json={**FORM, "comment": "  A calm and FRIENDLY   comment. "}
    )
    assert again.status_code == 409
    assert again.get_json()["id"] == first.get_json()["id"]
    assert client.post("/api/v1/comments", json={**FORM, "post_id": "p2"}).status_code == 202
    assert (
        client.post("/api/v1/comments", json={**FORM, "email": "bob@example.com"}).status_code
        == 202
    )
    assert (
        len(list(redis.scan_iter("mod:c:*:audit"))) == 0
        and len([k for k in redis.scan_iter("mod:c:*")]) == 3
    )


def test_honeypot_and_too_fast_submissions_are_not_published(
    client: FlaskClient, settings: Settings
) -> None:
    runtime = Runtime(settings)
    bot = client.post(
        "/api/v1/comments", data={**FORM, "homepage": "http://spam.example"}
    ).get_json()["id"]
    token = client.get("/api/v1/form-token").get_json()["form_token"]
    hasty = client.post(
        "/api/v1/comments", data={**FORM, "comment": "Fast but fine.", "form_token": token}
    ).get_json()["id"]
    for comment_id in (bot, hasty):
        score_and_decide(runtime, comment_id)
    bot_record, hasty_record = runtime.store.get(bot), runtime.store.get(hasty)
    assert bot_record["queue"] == "spam" and bot_record["decision_reasons"] == ["honeypot_filled"]
    assert (
        hasty_record["queue"] == "pending"
        and "submitted_too_fast" in hasty_record["decision_reasons"]
    )
    # A reader who took their time with the same form token is not held for timing.
    patient = settings.with_overrides(min_submit_seconds=0.05)
    time.sleep(0.1)
    ok = client.post(
        "/api/v1/comments", data={**FORM, "comment": "Slow and fine.", "form_token": token}
    ).get_json()["id"]
    score_and_decide(Runtime(patient), ok)
    assert "submitted_too_fast" not in (Runtime(patient).store.get(ok)["decision_reasons"] or [])


def test_cors_only_for_the_sites_origins(settings: Settings, redis: redis_lib.Redis) -> None:
    client = client_for(settings, site_origins=("https://news.example",))
    allowed = client.options(
        "/api/v1/comments",
        headers={"Origin": "https://news.example", "Access-Control-Request-Method": "POST"},
    )
    assert allowed.headers.get("Access-Control-Allow-Origin") == "https://news.example"
    other = client.options(
        "/api/v1/comments",
        headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"},
    )
    assert "Access-Control-Allow-Origin" not in other.headers
    moderation = client.options(
        "/api/v1/moderation/queue",
        headers={"Origin": "https://news.example", "Access-Control-Request-Method": "GET"},
    )
    assert "Access-Control-Allow-Origin" not in moderation.headers


def test_a_browser_goes_back_to_the_sites_page_however_its_address_is_spelled(
    settings: Settings, redis: redis_lib.Redis
) -> None:
    """Origins are compared as browsers write them: case, punycode and default ports aside."""
    # Read as the service reads it (from_mapping normalises origins once, at start-up).
    origins = Settings.from_mapping({"MODERATION_SITE_ORIGINS": "https://bücher.example"})
    client = client_for(settings, site_origins=origins.site_origins)
    for target in (
        "https://xn--bcher-kva.example/article",
        "https://XN--BCHER-KVA.example:443/article",
    ):
        body = {**FORM, "comment": f"Back to {target}.", "redirect_to": target}
        response = client.post("/api/v1/comments", data=body, headers=BROWSER)
        assert response.status_code == 303, target
        assert response.headers["Location"].lower().startswith(target.lower() + "?")
    body = {**FORM, "comment": "Elsewhere.", "redirect_to": "https://evil.example/"}
    assert client.post("/api/v1/comments", data=body, headers=BROWSER).status_code == 202


def test_html_pages_carry_security_headers_and_escape_input(client: FlaskClient) -> None:
    response = client.post(
        "/api/v1/comments",
        data={**FORM, "author": "", "comment": "<script>alert('x')</script>"},
        headers=BROWSER,
    )
    page = response.get_data(as_text=True)
    assert "<script>alert" not in page and "&lt;script&gt;" in page
    assert_html_security_headers(response)


CSP = "default-src 'self'; style-src 'self' 'unsafe-inline'; frame-ancestors 'none'"


def assert_html_security_headers(response: TestResponse) -> None:
    """The headers every HTML page carries, with the values the service sets."""
    assert response.mimetype == "text/html", response.mimetype
    headers = response.headers
    csp = headers.get("Content-Security-Policy", "")
    directives = {d.split()[0]: d.split()[1:] for d in csp.split(";") if d.strip()}
    # Scripts only from the service itself (none inline, no eval: a "javascript:" back link
    # is blocked), and no other site may frame the page (clickjacking).
    assert directives.get("default-src") == ["'self'"], csp
    assert "script-src" not in directives, csp
    assert directives.get("frame-ancestors") == ["'none'"], csp
    assert "unsafe-eval" not in csp and "*" not in csp, csp
    assert csp == CSP
    assert headers.get("X-Frame-Options") == "DENY"
    assert headers.get("X-Content-Type-Options") == "nosniff"
    assert headers.get("Referrer-Policy") == "same-origin"


def test_every_kind_of_html_page_carries_the_security_headers(
    settings: Settings, redis: redis_lib.Redis
) -> None:
    client = client_for(settings, rate_limit_ip="1/minute")
    env = {"REMOTE_ADDR": "203.0.113.93"}
    pages = {
        "demo": client.get("/", headers=BROWSER),
        "fix": client.post(
            "/api/v1/comments", data={**FORM, "author": ""}, headers=BROWSER, environ_base=env
        ),
        "429": client.post("/api/v1/comments", data=FORM, headers=BROWSER, environ_base=env),
        "404": client.get("/api/v1/comments/not-a-comment-id", headers=BROWSER),
        "unknown path": client.get("/no/such/page", headers=BROWSER),
    }
    assert {name: r.status_code for name, r in pages.items()} == {
        "demo": 200,
        "fix": 422,
        "429": 429,
        "404": 404,
        "unknown path": 404,
    }
    for name, response in pages.items():
        try:
            assert_html_security_headers(response)
        except AssertionError as failure:
            raise AssertionError(f"{name} page: {failure}") from failure
    # JSON answers are never sniffed as something else either.
    api = client.get("/api/v1/comments/not-a-comment-id")
    assert api.headers.get("X-Content-Type-Options") == "nosniff"


def test_duplicate_is_a_409_only_for_the_client_that_sent_the_original(
    settings: Settings, redis: redis_lib.Redis
) -> None:
    """The same client resubmitting gets the original id; anyone else posting the same text
    with the author's address (a guess, to confirm who wrote it) gets a new comment."""
    client = client_for(settings, duplicate_window_seconds=600)
    author = {"REMOTE_ADDR": "203.0.113.40"}
    first = client.post("/api/v1/comments", json=FORM, environ_base=author)
    assert first.status_code == 202
    again = client.post("/api/v1/comments", json=FORM, environ_base=author)
    assert again.status_code == 409
    assert again.get_json()["id"] == first.get_json()["id"]

    guesser = {"REMOTE_ADDR": "198.51.100.9"}
    guess = client.post("/api/v1/comments", json=FORM, environ_base=guesser)
    assert guess.status_code == 202
    assert guess.get_json()["id"] != first.get_json()["id"]
    assert first.get_json()["id"] not in guess.get_data(as_text=True)
    # The guesser's own double submit is then a duplicate of the guesser's comment.
    repeat = client.post("/api/v1/comments", json=FORM, environ_base=guesser)
    assert repeat.status_code == 409 and repeat.get_json()["id"] == guess.get_json()["id"]
    assert len(list(redis.scan_iter("mod:c:*"))) == 2


def test_a_rate_limit_holds_against_concurrent_posts(
    settings: Settings, redis: redis_lib.Redis
) -> None:
    """Bots post in parallel: the count must be taken atomically as each post arrives."""
    app = create_app(settings.with_overrides(rate_limit_ip="2/minute"), configure_logs=False)
    env = {"REMOTE_ADDR": "203.0.113.92"}
    start = threading.Barrier(20)

    def post(n: int) -> int:
        client = app.test_client()
        start.wait()
        body = {**FORM, "email": f"burst{n}@example.com", "comment": f"Burst {n}"}
        return client.post("/api/v1/comments", json=body, environ_base=env).status_code

    with ThreadPoolExecutor(20) as pool:
        codes = sorted(pool.map(post, range(20)))
    assert codes == [202, 202] + [429] * 18


def test_an_ipv6_client_is_limited_by_its_64_not_by_each_address(
    settings: Settings, redis: redis_lib.Redis
) -> None:
    client = client_for(settings, rate_limit_ip="3/minute", rate_limit_author="")
    codes = [
        client.post(
            "/api/v1/comments",
            json={**FORM, "email": f"v6{n}@example.com", "comment": f"From v6 {n}"},
            environ_base={"REMOTE_ADDR": f"2001:db8:1:2::{n + 1:x}"},
        ).status_code
        for n in range(4)
    ]
    assert codes == [202, 202, 202, 429]
    elsewhere = client.post(
        "/api/v1/comments",
        json={**FORM, "email": "v6other@example.com", "comment": "Another network"},
        environ_base={"REMOTE_ADDR": "2001:db8:1:3::1"},
    )
    assert elsewhere.status_code == 202


def test_nobody_can_lock_a_reader_out_by_posting_refused_comments_with_their_address(
    settings: Settings, redis: redis_lib.Redis
) -> None:
    """The address is unverified: refused posts must not use up its author limit."""
    client = client_for(settings, rate_limit_ip="1000/minute", rate_limit_author="2/minute")
    attacker = {"REMOTE_ADDR": "203.0.113.200"}
    for _ in range(10):
        refused = client.post(
            "/api/v1/comments", json={**FORM, "comment": ""}, environ_base=attacker
        )
        assert refused.status_code == 422
    reader = {"REMOTE_ADDR": "198.51.100.10"}
    mine = client.post("/api/v1/comments", json=FORM, environ_base=reader)
    assert mine.status_code == 202
    # Accepted comments still count against the author.
    codes = [
        client.post(
            "/api/v1/comments", json={**FORM, "comment": f"More {n}"}, environ_base=reader
        ).status_code
        for n in range(2)
    ]
    assert codes == [202, 429]


def test_refused_and_duplicate_submissions_count_too(
    settings: Settings, redis: redis_lib.Redis
) -> None:
    """Every attempt counts: a bot cannot probe for free with invalid posts."""
    client = client_for(settings, rate_limit_ip="3/minute")
    env = {"REMOTE_ADDR": "203.0.113.90"}
    bad_site = {**FORM, "url": "www.ann.example"}  # without http://
    codes = [
        client.post("/api/v1/comments", data=bad_site, headers=BROWSER, environ_base=env)
        for _ in range(4)
    ]
    assert [c.status_code for c in codes] == [422, 422, 422, 429]
    assert FORM["comment"] in codes[-1].get_data(as_text=True)  # the 429 page keeps the text
    duplicate_client = client_for(settings, rate_limit_ip="2/minute", duplicate_window_seconds=60)
    other = {"REMOTE_ADDR": "203.0.113.91"}
    codes = [
        duplicate_client.post("/api/v1/comments", json=FORM, environ_base=other).status_code
        for _ in range(3)
    ]
    assert codes == [202, 409, 429]


def _token_signed_ago(settings: Settings, seconds: float) -> str:
    class Past(TimestampSigner):
        def get_timestamp(self) -> int:
            return int(time.time() - seconds)

    signer = Past(settings.secret_key, salt="comment-form-rendered")
    return signer.sign(secrets.token_urlsafe(12)).decode()  # a nonce, as the service's own


@pytest.mark.parametrize("required", [True, False])
def test_form_posts_without_a_valid_form_token_are_held_for_a_moderator(
    settings: Settings, redis: redis_lib.Redis, required: bool
) -> None:
    """A bot forging the signed token, or (once the site requires it) leaving it out, does not
    skip the timing check; a reader who took days (expired token) is not held for it. JSON
    clients need no token until the site requires it; then only an authenticated script does
    not (otherwise a bot would skip the check by posting JSON)."""
    client = client_for(settings, require_form_token=required)
    runtime = Runtime(settings)
    posts = {
        "missing": {"data": FORM},
        "blank": {"data": {**FORM, "form_token": ""}},
        "forged": {"data": {**FORM, "form_token": "form.AAAAAA.forged-signature"}},
        "expired": {"data": {**FORM, "form_token": _token_signed_ago(settings, 3 * 86400)}},
        "valid": {"data": {**FORM, "form_token": _token_signed_ago(settings, 60)}},
        "json": {"json": FORM},
        "json_forged": {"json": {**FORM, "form_token": "nope"}},
        "json_valid": {"json": {**FORM, "form_token": _token_signed_ago(settings, 60)}},
        "json_script": {"json": FORM, "auth": True},
    }
    reasons = {}
    for name, kwargs in posts.items():
        comment = f"{FORM['comment']} ({name})"
        body = {**(kwargs.get("data") or kwargs["json"]), "comment": comment}
        key = "data" if "data" in kwargs else "json"
        headers = {
            **BROWSER,
            **({"Authorization": f"Bearer {MODERATOR_TOKEN}"} if kwargs.get("auth") else {}),
        }
        response = client.post("/api/v1/comments", **{key: body}, headers=headers)
        assert response.status_code in (202, 303), (name, response.status_code)
        comment_id = (
            response.get_json()["id"]
            if response.mimetype == "application/json"
            else response.get_data(as_text=True).split("Reference: ")[1].split("<")[0]
        )
        score_and_decide(runtime, comment_id)
        record = runtime.store.get(comment_id)
        reasons[name] = (record["queue"], set(record["decision_reasons"] or []))
    token_codes = {"form_token_missing", "form_token_invalid", "form_token_reused"}
    for name in ("missing", "blank"):
        queue, codes = reasons[name]
        if required:
            assert queue == "pending" and "form_token_missing" in codes, (name, reasons[name])
        else:  # a site whose form has no token field yet: no signal, not every comment held
            assert not codes & token_codes, (name, reasons[name])
    assert reasons["forged"][0] == "pending" and "form_token_invalid" in reasons["forged"][1]
    for name in ("expired", "valid", "json_valid", "json_script"):
        assert not reasons[name][1] & token_codes, (name, reasons[name])
    for name, code in (("json", "form_token_missing"), ("json_forged", "form_token_invalid")):
        if required:
            assert reasons[name][0] == "pending" and code in reasons[name][1], (name, reasons)
        else:
            assert not reasons[name][1] & token_codes, (name, reasons[name])


@pytest.mark.parametrize("required", [True, False])
def test_a_form_token_is_good_for_one_stored_comment(
    settings: Settings, redis: redis_lib.Redis, required: bool
) -> None:
    """One harvested token must not carry a bot's posts forever: once the site requires
    tokens, a second stored comment with the same one waits for a moderator. A post refused
    for a field to fix did not use it up, and a double click is a duplicate, not a reuse."""
    client = client_for(settings, require_form_token=required, duplicate_window_seconds=600)
    runtime = Runtime(settings.with_overrides(require_form_token=required))
    token = _token_signed_ago(settings, 60)
    old = _token_signed_ago(settings, 3 * 86400)  # expired: a slow reader's, also single-use

    def post(comment: str, form_token: str, **extra: str) -> tuple[int, set[str]]:
        body = {**FORM, "comment": comment, "form_token": form_token, **extra}
        response = client.post("/api/v1/comments", data=body)
        if response.status_code not in (202, 409):
            return response.status_code, set()
        comment_id = response.get_json()["id"]
        score_and_decide(runtime, comment_id)
        return response.status_code, set(runtime.store.get(comment_id)["decision_reasons"] or [])

    assert post("First try, without my name.", token, author="")[0] == 422
    status, codes = post("First comment with this form.", token)
    assert status == 202 and "form_token_reused" not in codes
    assert post("First comment with this form.", token)[0] == 409  # the double click
    status, codes = post("Second comment, same token.", token)
    assert status == 202 and ("form_token_reused" in codes) == required
    # The signature decodes from other spellings (base64 padding): still the same token.
    status, codes = post("Third comment, the token padded.", token + "==")
    assert status == 202 and ("form_token_reused" in codes) == required
    assert "form_token_reused" not in post("A slow reader's comment.", old)[1]
    assert ("form_token_reused" in post("The slow reader again.", old)[1]) == required
    # Tokens from before nonces were shared by every render of a second: never "reused".
    legacy = TimestampSigner(settings.secret_key, salt="comment-form-rendered").sign(b"form")
    for n in range(2):
        assert "form_token_reused" not in post(f"Legacy token post {n}.", legacy.decode())[1]
    fresh = client.get("/api/v1/form-token")
    assert fresh.headers["Cache-Control"] == "no-store"  # one token a render
    assert client.get("/").headers["Cache-Control"] == "no-store"


def test_a_poster_token_submits_for_readers_and_can_do_nothing_else(
    settings: Settings, redis: redis_lib.Redis
) -> None:
    """A site's back end posting for its readers needs no form token and no per-client limit,
    and a leaked poster token must not open the moderation queue."""
    from workers.moderation import create_token

    client = client_for(settings, require_form_token=True, rate_limit_ip="2/minute")
    runtime = Runtime(settings.with_overrides(require_form_token=True))
    poster = {"Authorization": "Bearer " + create_token(runtime.store, "site-backend", "poster")}
    for n in range(4):  # past the per-client limit; JSON or form-encoded, no form token
        body = {**FORM, "comment": f"Reader comment {n} relayed by the site."}
        how = {"json": body} if n % 2 else {"data": body}
        response = client.post("/api/v1/comments", **how, headers=poster)
        assert response.status_code == 202, response.get_json()
        score_and_decide(runtime, response.get_json()["id"])
        codes = set(runtime.store.get(response.get_json()["id"])["decision_reasons"] or [])
        assert not codes & {"form_token_missing", "form_token_invalid"}
    # Every moderation and privacy route refuses it, and nothing changes.
    comment_id = response.get_json()["id"]
    before = _snapshot(redis)
    trail = runtime.store.audit_trail(comment_id)
    queue = runtime.store.get(comment_id)["queue"]
    routes = _private_requests(client, comment_id, FORM["email"])
    assert set(ALL_PRIVATE_ENDPOINTS) <= {endpoint for endpoint, *_ in routes}
    for endpoint, method, path, body in routes:
        denied = client.open(path, method=method, json=body, headers=poster)
        assert denied.status_code == 403, (endpoint, method, denied.status_code)
        assert denied.mimetype == "application/problem+json", endpoint
        assert "token" in denied.get_json()["detail"], endpoint
    assert runtime.store.get(comment_id)["queue"] == queue
    assert runtime.store.audit_trail(comment_id) == trail
    assert _snapshot(redis) == before
    # The same requests are ones that act: an admin's succeed (erase last, it removes all).
    admin = {"Authorization": "Bearer " + create_token(runtime.store, "dpo", "admin")}
    for endpoint, method, path, body in sorted(
        (r for r in routes if r[0] in ALL_PRIVATE_ENDPOINTS),
        key=lambda r: ALL_PRIVATE_ENDPOINTS.index(r[0]),
    ):
        allowed = client.open(path, method=method, json=body, headers=admin)
        assert allowed.status_code in (200, 201), (endpoint, allowed.get_json())
    assert runtime.store.get(comment_id) is None  # erased


# Every moderation and privacy endpoint, in an order an admin can run them one after another.
ALL_PRIVATE_ENDPOINTS = (
    "moderation.queue",
    "moderation.detail",
    "moderation.note",
    "moderation.decision",
    "moderation.bulk",
    "moderation.undo",
    "moderation.reveal_email",
    "moderation.audit_log",
    "privacy.export",
    "privacy.erase",
)


def _private_requests(
    client: FlaskClient, comment_id: str, email: str
) -> list[tuple[str, str, str, dict[str, object] | None]]:
    """Return (endpoint, method, path, JSON body) for every route of the moderation and
    privacy APIs in the app's URL map (so a new route is checked too), each a request that
    would act if the token were allowed to."""
    bodies: dict[str, dict[str, object]] = {
        "moderation.decision": {"action": "reject", "note": "by a poster"},
        "moderation.bulk": {"action": "spam", "ids": [comment_id]},
        "moderation.note": {"note": "A note by a poster."},
        "privacy.export": {"email": email},
        "privacy.erase": {"email": email},
    }
    found = []
    for rule in client.application.url_map.iter_rules():
        if not rule.rule.startswith(("/api/v1/moderation", "/api/v1/privacy")):
            continue
        path = re.sub(r"<[^>]+>", comment_id, rule.rule)  # every path argument is a comment id
        for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"}):
            found.append((rule.endpoint, method, path, bodies.get(rule.endpoint)))
    return found


def _snapshot(redis: redis_lib.Redis) -> dict[str, object]:
    """Return every key of the service and its value."""
    read = {
        "hash": redis.hgetall,
        "list": lambda k: redis.lrange(k, 0, -1),
        "zset": lambda k: redis.zrange(k, 0, -1, withscores=True),
        "set": lambda k: sorted(redis.smembers(k)),
        "stream": redis.xrange,
        "string": redis.get,
    }
    return {key: read.get(redis.type(key), lambda k: None)(key) for key in redis.scan_iter("mod:*")}


def test_a_moderator_token_cannot_take_admin_actions_or_handle_privacy_requests(
    settings: Settings, redis: redis_lib.Redis
) -> None:
    """Only admins delete, reveal addresses, read the audit log and handle privacy requests."""
    from workers.moderation import create_token

    client = client_for(settings)
    runtime = Runtime(settings)
    moderator = {"Authorization": "Bearer " + create_token(runtime.store, "mia", "moderator")}
    comment_id = client.post("/api/v1/comments", json=FORM).get_json()["id"]
    score_and_decide(runtime, comment_id)
    before = _snapshot(redis)
    privacy = [r for r in _private_requests(client, comment_id, FORM["email"]) if "privacy" in r[0]]
    assert {r[0] for r in privacy} >= {"privacy.export", "privacy.erase"}
    admin_only = [
        *privacy,
        ("reveal", "GET", f"/api/v1/moderation/comments/{comment_id}/email", None),
        ("audit", "GET", "/api/v1/moderation/audit", None),
        (
            "delete",
            "POST",
            f"/api/v1/moderation/comments/{comment_id}/decision",
            {"action": "delete"},
        ),
    ]
    for name, method, path, body in admin_only:
        denied = client.open(path, method=method, json=body, headers=moderator)
        assert denied.status_code == 403, (name, denied.status_code)
        assert "admin" in denied.get_json()["detail"], name
    bulk = client.post(
        "/api/v1/moderation/bulk",
        json={"action": "delete", "ids": [comment_id]},
        headers=moderator,
    )
    assert bulk.status_code == 200 and bulk.get_json()["results"][comment_id]["status"] == 403
    assert _snapshot(redis) == before
    assert runtime.store.get(comment_id) is not None


@pytest.mark.parametrize(
    ("spelling", "other_spelling"),
    [
        ("zed-{tag}@example.net", "zed-{tag}@\uff45xample.net"),  # fullwidth "e" in the domain
        ("x-{tag}@b\u00fccher.example", "x-{tag}@xn--bcher-kva.example"),  # IDN and punycode
    ],
)
def test_the_author_limit_counts_the_stored_author_not_each_spelling_of_the_address(
    settings: Settings, redis: redis_lib.Redis, spelling: str, other_spelling: str
) -> None:
    """Spellings email-validator normalises to one address are one stored author: they share
    one budget, counted under the digest the stored comments carry (which erasure finds)."""
    client = client_for(settings, rate_limit_author="5/minute;100/day")
    tag = secrets.token_hex(4)  # counters outlive the test: a fresh author each run
    codes, ids = [], []
    for n in range(8):
        address = (other_spelling if n % 2 else spelling).format(tag=tag)
        response = client.post(
            "/api/v1/comments",
            json={**FORM, "email": address, "comment": f"Spelling {n}"},
            environ_base={"REMOTE_ADDR": f"203.0.113.{n + 120}"},
        )
        codes.append(response.status_code)
        if response.status_code == 202:
            ids.append(response.get_json()["id"])
    assert codes == [202] * 5 + [429] * 3
    (digest,) = {redis.hget(f"mod:c:{comment_id}", "email_digest") for comment_id in ids}
    counters = list(redis.scan_iter(f"*mod-rl/author:{digest}/*"))
    assert sorted(redis.get(key) for key in counters) == ["5", "5"]  # the minute and the day


def test_the_address_is_validated_once_though_the_author_limit_and_the_view_both_need_it(
    settings: Settings, redis: redis_lib.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[str] = []

    def counted(email: str, **options: Any) -> Any:
        calls.append(email)
        return validate_email(email, **options)

    monkeypatch.setattr(validation, "validate_email", counted)
    client = client_for(settings, rate_limit_author="5/minute")
    address = f"once-{secrets.token_hex(4)}@\uff45xample.net"
    response = client.post("/api/v1/comments", json={**FORM, "email": f" {address} "})
    assert response.status_code == 202
    assert calls == [address]
