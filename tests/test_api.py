"""Intake and public reads over HTTP (no worker needed): what a form, a script and a reader see."""

from __future__ import annotations

import json
import re
from pathlib import Path
from urllib.parse import urlencode

import pytest
import redis as redis_lib
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from service import create_app
from tests.conftest import MODERATOR_TOKEN, client_for, post_chunked
from workers.settings import Settings

EMAIL = "jane.reader@example.com"
FORM = {
    "post_id": "budget-vote",
    "comment": "A thoughtful article, thank you.",
    "author": "Jane Reader",
    "email": EMAIL,
    "url": "https://jane.example.org",
}
BROWSER = {"Accept": "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"}


def test_json_post_is_accepted_and_stored_before_the_response(
    client: FlaskClient, redis: redis_lib.Redis
) -> None:
    response = client.post("/api/v1/comments", json=FORM)
    assert response.status_code == 202
    body = response.get_json()
    assert body["status"] == "pending"
    assert body["status_url"] == f"/api/v1/comments/{body['id']}"
    stored = redis.hgetall(f"mod:c:{body['id']}")
    assert stored["comment"] == FORM["comment"]
    assert stored["state"] == "queued"


def test_form_post_from_a_script_gets_json(client: FlaskClient) -> None:
    response = client.post("/api/v1/comments", data=FORM)
    assert response.status_code == 202
    assert response.mimetype == "application/json"


def test_browser_form_post_is_redirected_back_with_the_id(client: FlaskClient) -> None:
    response = client.post(
        "/api/v1/comments",
        data={**FORM, "redirect_to": "/articles/budget-vote"},
        headers=BROWSER,
    )
    assert response.status_code == 303
    location = response.headers["Location"]
    assert location.startswith("/articles/budget-vote?comment_status=pending&comment_id=")
    assert location.endswith("#comment-" + location.rsplit("comment_id=", 1)[1].split("#")[0])


def test_fixing_the_form_still_leads_back_to_the_article(client: FlaskClient) -> None:
    article = "http://localhost/articles/budget-vote"
    page = client.post(
        "/api/v1/comments",
        data={**FORM, "author": ""},
        headers={**BROWSER, "Referer": article},
    ).get_data(as_text=True)
    assert f'name="redirect_to" value="{article}"' in page
    # The corrected form is posted from the "please fix" page, whose address is the API's.
    fixed = client.post(
        "/api/v1/comments",
        data={**FORM, "redirect_to": article},
        headers={**BROWSER, "Referer": "http://localhost/api/v1/comments"},
    )
    assert fixed.status_code == 303
    assert fixed.headers["Location"].startswith(article + "?comment_status=pending&comment_id=")
    broken = client.post(
        "/api/v1/comments", data=FORM, headers={**BROWSER, "Referer": "http://[::1/x"}
    )
    assert broken.status_code == 202


def test_redirect_to_another_site_is_not_followed(client: FlaskClient) -> None:
    response = client.post(
        "/api/v1/comments",
        data={**FORM, "redirect_to": "https://evil.example/phish"},
        headers=BROWSER,
    )
    assert response.status_code == 202
    assert "awaiting moderation" in response.get_data(as_text=True)


def test_browser_gets_a_page_listing_what_to_fix_and_keeps_the_text(client: FlaskClient) -> None:
    response = client.post(
        "/api/v1/comments",
        data={**FORM, "author": "", "email": "not-an-address"},
        headers=BROWSER,
    )
    assert response.status_code == 422
    assert response.mimetype == "text/html"
    page = response.get_data(as_text=True)
    assert "Name is required." in page
    assert "Email is not" in page
    assert FORM["comment"] in page  # the reader's text is not lost


def test_json_validation_errors_are_problem_json_naming_each_field(client: FlaskClient) -> None:
    response = client.post("/api/v1/comments", json={"post_id": "p1"})
    assert response.status_code == 422
    assert response.mimetype == "application/problem+json"
    assert set(response.get_json()["errors"]) == {"comment", "author", "email"}


def test_malformed_json_is_400(client: FlaskClient) -> None:
    response = client.post(
        "/api/v1/comments", data=b'{"post_id": ', content_type="application/json"
    )
    assert response.status_code == 400
    assert response.mimetype == "application/problem+json"


def test_json_that_is_not_an_object_is_400(client: FlaskClient) -> None:
    response = client.post("/api/v1/comments", json=["a", "b"])
    assert response.status_code == 400


def test_wrong_content_type_is_415(client: FlaskClient) -> None:
    response = client.post("/api/v1/comments", data="hello", content_type="text/plain")
    assert response.status_code == 415


def test_body_over_the_limit_is_413(settings: Settings, redis: redis_lib.Redis) -> None:
    app = create_app(settings.with_overrides(max_content_length=2048), configure_logs=False)
    response = app.test_client().post("/api/v1/comments", json={**FORM, "comment": "x" * 5000})
    assert response.status_code == 413


def test_unknown_fields_are_ignored(client: FlaskClient, redis: redis_lib.Redis) -> None:
    response = client.post("/api/v1/comments", json={**FORM, "is_admin": True, "status": "x"})
    assert response.status_code == 202
    stored = redis.hgetall(f"mod:c:{response.get_json()['id']}")
    assert "is_admin" not in stored and stored["status"] == "pending"


def test_email_is_encrypted_at_rest_and_never_public(
    client: FlaskClient, redis: redis_lib.Redis
) -> None:
    comment_id = client.post("/api/v1/comments", json=FORM).get_json()["id"]
    for key in redis.scan_iter("*"):
        if redis.type(key) == "hash":
            assert EMAIL not in json.dumps(redis.hgetall(key))
    status = client.get(f"/api/v1/comments/{comment_id}")
    assert EMAIL not in status.get_data(as_text=True)


def test_pending_comment_shows_status_only(client: FlaskClient) -> None:
    comment_id = client.post("/api/v1/comments", json=FORM).get_json()["id"]
    body = client.get(f"/api/v1/comments/{comment_id}").get_json()
    assert body == {"id": comment_id, "status": "pending"}


def test_unknown_comment_is_404(client: FlaskClient) -> None:
    assert client.get("/api/v1/comments/" + "0" * 24).status_code == 404
    assert client.get("/api/v1/comments/../../etc/passwd").status_code == 404


def test_reply_to_a_missing_parent_is_refused(client: FlaskClient) -> None:
    response = client.post("/api/v1/comments", json={**FORM, "parent_id": "a" * 24})
    assert response.status_code == 422
    assert "parent_id" in response.get_json()["errors"]


def test_post_listing_rejects_bad_paging_arguments(client: FlaskClient) -> None:
    response = client.get("/api/v1/posts/p1/comments?limit=0&cursor=abc")
    assert response.status_code == 400
    assert set(response.get_json()["errors"]) == {"limit", "cursor"}


def test_moderation_needs_a_token(client: FlaskClient) -> None:
    assert client.get("/api/v1/moderation/queue").status_code == 401
    wrong = {"Authorization": "Bearer nope"}
    assert client.get("/api/v1/moderation/queue", headers=wrong).status_code == 401
    right = {"Authorization": f"Bearer {MODERATOR_TOKEN}"}
    assert client.get("/api/v1/moderation/queue", headers=right).status_code == 200


def test_redis_down_gives_503_with_retry_after(settings: Settings) -> None:
    down = settings.with_overrides(redis_url="redis://127.0.0.1:1/0")
    client = create_app(down, configure_logs=False).test_client()
    response = client.post("/api/v1/comments", json=FORM)
    assert response.status_code == 503
    assert response.headers["Retry-After"]
    assert response.mimetype == "application/problem+json"
    page = client.post("/api/v1/comments", data=FORM, headers=BROWSER)
    assert page.status_code == 503 and page.mimetype == "text/html"
    assert client.get("/readyz").status_code == 503


def test_health_and_readiness(client: FlaskClient) -> None:
    assert client.get("/healthz").get_json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200, ready.get_json()
    assert ready.get_json()["checks"]["redis"] == "ok"


def test_demo_page_renders_the_leave_a_reply_form(client: FlaskClient) -> None:
    page = client.get("/").get_data(as_text=True)
    assert "Leave a Reply" in page
    assert "Your email address will not be published" in page
    assert 'name="form_token"' in page


def test_readiness_is_a_503_when_the_live_pointer_names_a_missing_version(
    settings: Settings, tmp_path: Path
) -> None:
    registry = tmp_path / "models"
    registry.mkdir()
    client = create_app(settings.with_overrides(model_dir=registry), configure_logs=False)
    (registry / "LIVE").write_text("20990101-000000-deadbeef\n", encoding="utf-8")
    ready = client.test_client().get("/readyz")
    assert ready.status_code == 503, ready.get_data(as_text=True)
    assert ready.get_json()["checks"]["model"] == "unavailable"


def _location_id(location: str) -> str:
    return location.rsplit("#comment-", 1)[1]


def test_after_posting_the_reader_is_told_the_comment_awaits_moderation(
    client: FlaskClient,
) -> None:
    """The redirect carries a flag and the id the page can see (a fragment never reaches the
    server), and the demo page says the comment is awaiting moderation, then that it is
    published once approved."""
    posted = client.post(
        "/api/v1/comments",
        data={**FORM, "post_id": "demo-article", "redirect_to": "/"},
        headers=BROWSER,
    )
    assert posted.status_code == 303
    location = posted.headers["Location"]
    comment_id = _location_id(location)
    assert location == f"/?comment_status=pending&comment_id={comment_id}#comment-{comment_id}"

    page = client.get(location.split("#")[0], headers=BROWSER).get_data(as_text=True)
    assert "Your comment is awaiting moderation" in page
    assert f'id="comment-{comment_id}"' in page  # the fragment lands on the notice
    assert FORM["comment"] not in page  # a held comment is not shown to anyone
    assert "awaiting moderation" not in client.get("/").get_data(as_text=True)

    approved = client.post(
        f"/api/v1/moderation/comments/{comment_id}/decision",
        json={"action": "approve"},
        headers={"Authorization": f"Bearer {MODERATOR_TOKEN}"},
    )
    assert approved.status_code == 200, approved.get_data(as_text=True)
    page = client.get(location.split("#")[0], headers=BROWSER).get_data(as_text=True)
    assert "Your comment has been published" in page
    assert "awaiting moderation" not in page
    assert f'id="comment-{comment_id}"' in page and FORM["comment"] in page


def test_the_redirect_keeps_the_articles_query_and_replaces_an_earlier_flag(
    client: FlaskClient,
) -> None:
    response = client.post(
        "/api/v1/comments",
        data={
            **FORM,
            "redirect_to": "/news/budget?page=2&comment_status=pending&comment_id=old&x=a%20b#top",
        },
        headers=BROWSER,
    )
    comment_id = _location_id(response.headers["Location"])
    assert response.headers["Location"] == (
        f"/news/budget?page=2&x=a%20b&comment_status=pending&comment_id={comment_id}"
        f"#comment-{comment_id}"
    )


def test_a_reply_to_a_parent_deleted_meanwhile_reshows_the_form_with_the_text(
    client: FlaskClient,
) -> None:
    admin = {"Authorization": f"Bearer {MODERATOR_TOKEN}"}
    parent = client.post("/api/v1/comments", json=FORM).get_json()["id"]
    deleted = client.post(
        f"/api/v1/moderation/comments/{parent}/decision", json={"action": "delete"}, headers=admin
    )
    assert deleted.status_code == 200, deleted.get_data(as_text=True)
    reply = {**FORM, "comment": "My long and careful reply.", "parent_id": parent}
    response = client.post(
        "/api/v1/comments", data={**reply, "redirect_to": "/news/budget"}, headers=BROWSER
    )
    assert response.status_code == 422 and response.mimetype == "text/html"
    page = response.get_data(as_text=True)
    assert ">My long and careful reply.</textarea>" in page
    assert 'name="parent_id" value=""' in page
    assert "could not be found" in page and "as a new comment" in page
    # Posting the page again publishes it as a new comment, back on the article.
    again = client.post(
        "/api/v1/comments",
        data={**reply, "parent_id": "", "redirect_to": "/news/budget"},
        headers=BROWSER,
    )
    assert again.status_code == 303 and again.headers["Location"].startswith("/news/budget?")
    # Scripts still get the problem naming the field.
    assert "parent_id" in client.post("/api/v1/comments", json=reply).get_json()["errors"]


def test_rate_limit_and_outage_pages_keep_the_readers_text_and_link_back(
    settings: Settings, redis: redis_lib.Redis
) -> None:
    """No JavaScript "go back" link (the CSP blocks it): the text in a box to copy and a plain
    link to the article, only when it is on the same site."""
    limited = client_for(settings, rate_limit_ip="1/minute")
    text = "A reply I spent ten minutes writing."
    form = {**FORM, "comment": text, "redirect_to": "/news/budget"}
    assert limited.post("/api/v1/comments", data=form, headers=BROWSER).status_code == 303
    page = limited.post("/api/v1/comments", data={**form, "comment": text + "!"}, headers=BROWSER)
    assert page.status_code == 429 and page.mimetype == "text/html"
    body = page.get_data(as_text=True)
    assert f">{text}!</textarea>" in body
    assert '<a href="/news/budget">Back to the article</a>' in body
    assert "Please wait a minute" in body
    assert "javascript:" not in body

    down = client_for(settings, redis_url="redis://127.0.0.1:1/0")
    page = down.post("/api/v1/comments", data=form, headers=BROWSER)
    assert page.status_code == 503 and page.headers["Retry-After"]
    body = page.get_data(as_text=True)
    assert f">{text}</textarea>" in body and 'href="/news/budget"' in body
    assert "javascript:" not in body
    elsewhere = down.post(
        "/api/v1/comments",
        data={**form, "redirect_to": "https://evil.example/"},
        headers={**BROWSER, "Referer": "https://evil.example/x"},
    ).get_data(as_text=True)
    assert "evil.example" not in elsewhere and f">{text}</textarea>" in elsewhere


def test_the_longest_comment_in_any_script_fits_the_default_body_limit(
    client: FlaskClient,
) -> None:
    """Form encoding costs 9 bytes per CJK character and 12 per emoji: 65,525 of them must
    still reach validation, not a 413."""
    for char in ("日", "😀"):
        response = client.post(
            "/api/v1/comments",
            data={**FORM, "comment": char * 65_525, "redirect_to": "/news/budget"},
            headers=BROWSER,
        )
        assert response.status_code == 303, (char, response.status_code)
    one_more = client.post(
        "/api/v1/comments", data={**FORM, "comment": "😀" * 65_526}, headers=BROWSER
    )
    assert one_more.status_code == 422
    assert "at most 65,525 characters" in one_more.get_data(as_text=True)


def test_a_body_over_the_limit_gets_a_page_a_reader_understands(
    settings: Settings, redis: redis_lib.Redis
) -> None:
    app = create_app(settings.with_overrides(max_content_length=2048), configure_logs=False)
    response = app.test_client().post(
        "/api/v1/comments",
        data={**FORM, "comment": "x" * 5000},
        headers={**BROWSER, "Referer": "http://localhost/news/budget"},
    )
    assert response.status_code == 413 and response.mimetype == "text/html"
    page = response.get_data(as_text=True)
    assert "Your comment is too long to send" in page and "65,525 characters" in page
    assert "capacity limit" not in page and "javascript:" not in page
    assert 'href="http://localhost/news/budget"' in page


def test_the_fix_page_marks_invalid_fields_for_assistive_technology(client: FlaskClient) -> None:
    page = client.post(
        "/api/v1/comments",
        data={**FORM, "author": "", "url": "www.example.org"},
        headers=BROWSER,
    ).get_data(as_text=True)
    author = re.search(r'<input type="text" id="author"[^>]*>', page)
    url = re.search(r'<input type="url" id="url"[^>]*>', page)
    email = re.search(r'<input type="email" id="email"[^>]*>', page)
    assert author and url and email
    assert 'aria-invalid="true"' in author[0] and 'aria-describedby="author-error"' in author[0]
    assert 'aria-invalid="true"' in url[0] and 'aria-describedby="url-error"' in url[0]
    assert "aria-invalid" not in email[0]
    assert 'id="author-error"' in page and 'id="url-error"' in page
    # The first field to fix has the focus, and only it.
    assert "autofocus" in author[0] and page.count("autofocus") == 1
    assert 'href="#author"' in page and 'href="#url"' in page


def test_a_malformed_reply_id_is_dropped_instead_of_refused_forever(client: FlaskClient) -> None:
    response = client.post("/api/v1/comments", data={**FORM, "parent_id": "42"}, headers=BROWSER)
    assert response.status_code == 422
    page = response.get_data(as_text=True)
    assert 'name="parent_id" value=""' in page
    assert 'href="#parent_id"' not in page  # never a link to a hidden input
    assert "could not be found" in page
    hidden = dict(re.findall(r'<input type="hidden" name="(\w+)" value="([^"]*)"', page))
    again = client.post(
        "/api/v1/comments",
        data={**FORM, **hidden, "redirect_to": "/news/budget"},
        headers=BROWSER,
    )
    assert again.status_code == 303


def _chunked(client: FlaskClient, body: bytes, content_type: str, **headers: str) -> TestResponse:
    return post_chunked(client, "/api/v1/comments", body, content_type, **headers)


def test_a_chunked_body_over_the_limit_is_413_not_read_cut_short(
    settings: Settings, redis: redis_lib.Redis
) -> None:
    """Without Content-Length the body used to be read up to the limit and parsed as if it
    were complete: a 400 for JSON, a 422 for a long form, a 202 without a trailing field."""
    client = client_for(settings, max_content_length=2048)
    form = "application/x-www-form-urlencoded"
    over = {
        "json": (json.dumps({**FORM, "comment": "x" * 5000}).encode(), "application/json"),
        "form": (urlencode({**FORM, "comment": "x" * 5000}).encode(), form),
        "trailing field": (urlencode({**FORM, "zz": "x" * 5000}).encode(), form),
    }
    for name, (body, content_type) in over.items():
        response = _chunked(client, body, content_type)
        assert response.status_code == 413, (name, response.get_data(as_text=True))
        assert response.mimetype == "application/problem+json"
    assert not list(redis.scan_iter("mod:c:*"))  # nothing was stored
    # Up to the limit itself is accepted, as it is with a Content-Length.
    exact = json.dumps(FORM).encode()
    exact += b" " * (2048 - len(exact))
    assert _chunked(client, exact, "application/json").status_code == 202
    assert _chunked(client, exact + b" ", "application/json").status_code == 413
    assert _chunked(client, urlencode(FORM).encode(), form).status_code == 202


def test_a_browser_gets_the_same_too_long_page_for_a_chunked_body(
    settings: Settings, redis: redis_lib.Redis
) -> None:
    client = client_for(settings, max_content_length=2048)
    draft = {**FORM, "comment": "My long draft. " * 300}
    headers = {**BROWSER, "Referer": "http://localhost/news/budget"}
    with_length = client.post("/api/v1/comments", data=draft, headers=headers)
    chunked = _chunked(
        client, urlencode(draft).encode(), "application/x-www-form-urlencoded", **headers
    )
    assert (with_length.status_code, chunked.status_code) == (413, 413)
    page = chunked.get_data(as_text=True)
    assert page == with_length.get_data(as_text=True)
    assert "Your comment is too long to send" in page and "My long draft" not in page
    assert 'href="http://localhost/news/budget"' in page


def test_a_double_submit_goes_back_to_the_article_and_lands_on_the_first_comment(
    settings: Settings, redis: redis_lib.Redis
) -> None:
    client = client_for(settings, duplicate_window_seconds=600)
    form = {**FORM, "post_id": "demo-article"}
    first = client.post("/api/v1/comments", data={**form, "redirect_to": "/"}, headers=BROWSER)
    assert first.status_code == 303
    comment_id = _location_id(first.headers["Location"])
    # The second click of a double click, sent back by the Referer alone.
    again = client.post("/api/v1/comments", data=form, headers={**BROWSER, "Referer": "/"})
    assert again.status_code == 303
    assert again.headers["Location"] == first.headers["Location"]
    assert len([k for k in redis.scan_iter("mod:c:*") if k.count(":") == 2]) == 1
    # Once the comment is published, a late resubmit still lands on it, now shown.
    approved = client.post(
        f"/api/v1/moderation/comments/{comment_id}/decision",
        json={"action": "approve"},
        headers={"Authorization": f"Bearer {MODERATOR_TOKEN}"},
    )
    assert approved.status_code == 200, approved.get_data(as_text=True)
    late = client.post("/api/v1/comments", data={**form, "redirect_to": "/"}, headers=BROWSER)
    assert late.status_code == 303 and _location_id(late.headers["Location"]) == comment_id
    page = client.get(late.headers["Location"].split("#")[0]).get_data(as_text=True)
    assert "Your comment has been published" in page and "awaiting moderation" not in page
    # A script still gets the 409 problem naming the original.
    script = client.post("/api/v1/comments", json=form)
    assert script.status_code == 409 and script.mimetype == "application/problem+json"
    assert script.get_json()["id"] == comment_id
    assert script.get_json()["status_url"] == f"/api/v1/comments/{comment_id}"


def test_a_double_submit_with_nowhere_to_go_back_says_it_was_already_received(
    settings: Settings, redis: redis_lib.Redis
) -> None:
    client = client_for(settings, duplicate_window_seconds=600)
    first = client.post("/api/v1/comments", data=FORM, headers=BROWSER)
    assert first.status_code == 202
    comment_id = re.findall(r"Reference: (\w+)", first.get_data(as_text=True))[0]
    again = client.post("/api/v1/comments", data=FORM, headers=BROWSER)
    assert again.status_code == 409 and again.mimetype == "text/html"
    page = again.get_data(as_text=True)
    assert "already received" in page and "not been posted a second time" in page
    assert "awaiting moderation" in page and f"Reference: {comment_id}" in page
    assert "Back button" in page
    rejected = client.post(
        f"/api/v1/moderation/comments/{comment_id}/decision",
        json={"action": "reject"},
        headers={"Authorization": f"Bearer {MODERATOR_TOKEN}"},
    )
    assert rejected.status_code == 200, rejected.get_data(as_text=True)
    page = client.post("/api/v1/comments", data=FORM, headers=BROWSER).get_data(as_text=True)
    assert "already received" in page and "awaiting moderation" not in page


def test_a_posts_comments_page_oldest_first_and_none_is_lost_between_pages(
    client: FlaskClient, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Readers page through a post's comments with next_cursor: oldest first, each once,
    also when two were stored in the same microsecond (two API processes)."""
    import workers.store
    from workers.runtime import Runtime
    from workers.store import NewComment, Transition

    store = Runtime(settings).store
    ids = []
    for n, at in enumerate([1_000, 2_000, 2_000, 2_000, 3_000]):  # three share a microsecond
        with monkeypatch.context() as patch:
            patch.setattr(workers.store, "now_us", lambda at=at: at)
            comment_id, _, _ = store.add(
                NewComment(
                    post_id="paged", author="A", comment=f"c{n}", email_enc="", email_digest="d"
                )
            )
        move = Transition({"id": comment_id, "post_id": "paged"}, "approved", None, {})
        assert store.transition_many([move])[0].applied
        ids.append(comment_id)
    # Oldest first; within the shared microsecond, the index's own order (by id).
    expected = [ids[0], *sorted(ids[1:4]), ids[4]]
    for limit in (1, 2, 3, 5):
        seen, cursor, pages = [], "", 0
        while cursor is not None and pages < 10:
            page = client.get(f"/api/v1/posts/paged/comments?limit={limit}&cursor={cursor}")
            assert page.status_code == 200, page.get_json()
            seen += [c["id"] for c in page.get_json()["comments"]]
            cursor, pages = page.get_json()["next_cursor"], pages + 1
        assert seen == expected, limit
    # A cursor handed out before ids were added ("<microseconds>") still reads.
    old = client.get("/api/v1/posts/paged/comments?cursor=2000").get_json()
    assert [c["id"] for c in old["comments"]] == [ids[4]]
    bad = client.get(f"/api/v1/posts/paged/comments?cursor=2000~{'z' * 24}")
    assert bad.status_code == 400 and "cursor" in bad.get_json()["errors"]


@pytest.mark.parametrize(
    ("path", "fields"),
    [
        ("/api/v1/moderation/comments/{id}/decision", {"action": "reject"}),
        ("/api/v1/moderation/comments/{id}/notes", {"note": "Checked the source"}),
        ("/api/v1/moderation/bulk", {"action": "reject", "ids": ["{id}"]}),
        ("/api/v1/privacy/export", {"email": EMAIL}),
        ("/api/v1/privacy/erase", {"email": EMAIL}),
    ],
)
def test_a_body_neither_json_nor_a_form_is_415_naming_what_is_taken_and_changes_nothing(
    client: FlaskClient, settings: Settings, path: str, fields: dict[str, object]
) -> None:
    """As on the intake: not a 422 saying a field is missing when the fields were sent in a
    type the endpoint does not read."""
    admin = {"Authorization": f"Bearer {MODERATOR_TOKEN}"}
    comment_id = client.post("/api/v1/comments", json=FORM).get_json()["id"]
    url = path.format(id=comment_id)
    fields = json.loads(json.dumps(fields).replace("{id}", comment_id))
    raw = redis_lib.Redis.from_url(settings.redis_url)
    before = {key: raw.dump(key) for key in raw.scan_iter("mod:*")}
    response = client.post(url, data=urlencode(fields), content_type="text/plain", headers=admin)
    assert response.status_code == 415
    assert response.mimetype == "application/problem+json"
    detail = response.get_json()["detail"]
    assert "application/json" in detail and "application/x-www-form-urlencoded" in detail
    assert {key: raw.dump(key) for key in raw.scan_iter("mod:*")} == before
    raw.close()
    # The same fields, sent as the endpoint reads them, do act.
    assert client.post(url, json=fields, headers=admin).status_code in (200, 201)


@pytest.mark.parametrize("url", ["https://-bad-.com/", "https://999.2.3.4/"])
def test_a_website_no_browser_could_reach_is_422_naming_the_url_and_stores_nothing(
    client: FlaskClient, redis: redis_lib.Redis, url: str
) -> None:
    response = client.post("/api/v1/comments", json={**FORM, "url": url})
    assert response.status_code == 422
    assert response.get_json()["errors"] == {"url": "Website has an invalid host name."}
    assert not list(redis.scan_iter("mod:c:*"))
