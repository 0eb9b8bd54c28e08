"""Intake and public reads over HTTP (no worker needed): what a form, a script and a reader see."""

from __future__ import annotations

import json
from pathlib import Path

import redis as redis_lib
from flask.testing import FlaskClient

from service import create_app
from tests.conftest import MODERATOR_TOKEN
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
    assert response.headers["Location"].startswith("/articles/budget-vote#comment-")


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
    assert fixed.headers["Location"].startswith(article + "#comment-")
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
