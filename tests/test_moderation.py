"""Moderators over HTTP: roles, queue filters and cursors, bulk, undo, notes, audit, reveal."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
from collections.abc import Callable
from typing import Any
from urllib.parse import urlencode

import pytest
import redis as redis_lib
from flask.testing import FlaskClient

from tests.conftest import (
    ROOT,
    DropOneReply,
    Stack,
    WebhookWorkerProcess,
    WorkerProcess,
    client_for,
    post_chunked,
    wait_for,
)
from workers.moderation import create_token, token_digest
from workers.pipeline import score_and_decide
from workers.runtime import Runtime
from workers.settings import Settings
from workers.store import CommentStore, Transition

EMAIL = "mod.reader@example.com"
JSON = "application/json"
BASE = {"post_id": "elections", "author": "Mod Reader", "email": EMAIL}
TEXTS = [
    "Interesting analysis of the turnout numbers, thanks.",
    "WIN FREE CASH NOW!!! Click http://cheap-pills.example.biz for a limited offer",
    "You are a complete idiot and so is everyone who agrees with you.",
    "I disagree with the second point, but the article is well argued.",
    "Buy followers cheap, visit http://followers.example.ru today, best price guaranteed",
]


@pytest.fixture
def tokens(settings: Settings, redis: redis_lib.Redis) -> dict[str, dict[str, str]]:
    """Authorization headers for a moderator and an admin (named tokens, stored hashed)."""
    store = Runtime(settings).store
    return {
        "alice": {"Authorization": "Bearer " + create_token(store, "alice", "moderator")},
        "root": {"Authorization": "Bearer " + create_token(store, "root", "admin")},
    }


def trail_actions(redis: redis_lib.Redis, comment_id: str) -> list[str]:
    """Return the actions of a comment's audit trail, oldest first."""
    return [json.loads(e)["action"] for e in redis.lrange(f"mod:c:{comment_id}:audit", 0, -1)]


def submit_scored(client: FlaskClient, settings: Settings, texts: list[str]) -> list[str]:
    """Post comments and score them in-process (real model, real Redis).

    A session worker, if one is running, may score a comment first: either way it is decided.
    """
    runtime = Runtime(settings)
    ids = []
    for text in texts:
        response = client.post("/api/v1/comments", json={**BASE, "comment": text})
        assert response.status_code == 202, response.get_json()
        ids.append(response.get_json()["id"])
        assert score_and_decide(runtime, ids[-1]) in ("decided", "already_decided")
        assert runtime.store.get(ids[-1])["state"] == "scored"
    return ids


def queue_ids(client: FlaskClient, headers: dict[str, str], query: str) -> list[str]:
    response = client.get(f"/api/v1/moderation/queue?{query}", headers=headers)
    assert response.status_code == 200, response.get_json()
    return [item["id"] for item in response.get_json()["items"]]


def test_tokens_are_stored_hashed_and_roles_are_enforced(
    client: FlaskClient,
    redis: redis_lib.Redis,
    tokens: dict[str, dict[str, str]],
    settings: Settings,
) -> None:
    (comment_id,) = submit_scored(client, settings, TEXTS[:1])
    token = tokens["alice"]["Authorization"].split()[1]
    assert not any(
        token in str(redis.hgetall(k)) for k in redis.scan_iter("mod:*") if redis.type(k) == "hash"
    )

    alice, root = tokens["alice"], tokens["root"]
    assert client.get("/api/v1/moderation/queue").status_code == 401
    assert client.get("/api/v1/moderation/queue", headers=alice).status_code == 200
    # Moderators moderate; only admins delete, reveal addresses, read the audit log, handle privacy.
    decide = f"/api/v1/moderation/comments/{comment_id}/decision"
    assert client.post(decide, json={"action": "reject"}, headers=alice).status_code == 200
    assert client.post(decide, json={"action": "delete"}, headers=alice).status_code == 403
    reveal = f"/api/v1/moderation/comments/{comment_id}/email"
    assert client.get(reveal, headers=alice).status_code == 403
    assert client.get("/api/v1/moderation/audit", headers=alice).status_code == 403
    assert (
        client.post("/api/v1/privacy/export", json={"email": EMAIL}, headers=alice).status_code
        == 403
    )
    assert client.get(reveal, headers=root).get_json()["email"] == EMAIL
    assert client.get("/api/v1/moderation/audit", headers=root).status_code == 200


def test_cli_creates_lists_and_revokes_tokens(
    client: FlaskClient, settings_values: dict[str, str], settings: Settings, redis: redis_lib.Redis
) -> None:
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("MODERATION_")},
        **settings_values,
    }
    env["MODERATION_REDIS_URL"] = settings.redis_url
    admin = [sys.executable, "-m", "service.cli"]

    def run(*args: str) -> str:
        done = subprocess.run(
            [*admin, *args], env=env, cwd=ROOT, capture_output=True, text=True, timeout=60
        )
        assert done.returncode == 0, done.stderr
        return done.stdout.strip()

    token = run("tokens", "create", "--name", "bob", "--role", "moderator")
    headers = {"Authorization": f"Bearer {token}"}
    assert client.get("/api/v1/moderation/queue", headers=headers).status_code == 200
    listing = run("tokens", "list")
    assert "bob\tmoderator" in listing and token not in listing
    run("tokens", "revoke", "bob")
    assert client.get("/api/v1/moderation/queue", headers=headers).status_code == 401

    # Names the service acts under, empty names and control characters are refused: a
    # moderator named "operator" would share the bootstrap admin's undo stack, one named
    # "model" would pass for the classifier in the audit log.
    for name in ("operator", "Model", "retention", "", "x\ny", "two words", "m\u043ederator"):
        done = subprocess.run(
            [*admin, "tokens", "create", "--name", name],
            env=env,
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 2 and "--name" in done.stderr, (name, done.stderr)
    names = [line.split("\t")[0] for line in run("tokens", "list").splitlines()]
    assert not {"operator", "Model", "retention", "", "x"} & set(names)

    # Tokens stored before these rules (here written straight to Redis) no longer let anyone
    # in under those names, and the listing says what to do.
    store = Runtime(settings).store
    for name in ("model", "m\u043ederator"):
        stored = f"mod_old_{len(name)}"
        store.save_token(token_digest(stored), {"name": name, "role": "admin"})
        old = {"Authorization": f"Bearer {stored}"}
        assert client.get("/api/v1/moderation/queue", headers=old).status_code == 401
        line = next(x for x in run("tokens", "list").splitlines() if x.startswith(name + "\t"))
        assert "refused:" in line and "revoke" in line
        run("tokens", "revoke", name)


def test_queue_filters_and_sorts(
    client: FlaskClient, settings: Settings, tokens: dict[str, dict[str, str]]
) -> None:
    ids = submit_scored(client, settings, TEXTS)
    root = tokens["root"]
    everything = []
    for status in ("pending", "approved", "rejected", "spam"):
        everything += client.get(
            f"/api/v1/moderation/queue?status={status}", headers=root
        ).get_json()["items"]
    assert {item["id"] for item in everything} == set(ids)
    spam_first = []
    for status in ("pending", "approved", "spam"):
        items = client.get(
            f"/api/v1/moderation/queue?status={status}&sort=spam", headers=root
        ).get_json()["items"]
        scores = [item["scores"]["spam"] for item in items]
        assert scores == sorted(scores, reverse=True)
        spam_first += items
    # Score range filter: only comments whose spam score is at least 0.5.
    high = [i for i in everything if i["scores"]["spam"] >= 0.5]
    found = []
    for status in ("pending", "approved", "spam"):
        found += queue_ids(client, root, f"status={status}&min_spam=0.5")
    assert set(found) == {i["id"] for i in high}
    # Post and author filters.
    digest = everything[0]["author_digest"]
    assert all(
        queue_ids(client, root, f"status={s}&author_digest=nobody") == []
        for s in ("pending", "approved")
    )
    mine = []
    for status in ("pending", "approved", "rejected", "spam"):
        mine += queue_ids(client, root, f"status={status}&author_digest={digest}&post_id=elections")
    assert set(mine) == set(ids)
    bad = client.get("/api/v1/moderation/queue?status=nope&sort=x&min_spam=2", headers=root)
    assert bad.status_code == 400
    assert set(bad.get_json()["errors"]) == {"status", "sort", "min_spam"}


def test_label_filter_finds_a_comment_under_every_score_that_held_it(
    client: FlaskClient, settings: Settings, tokens: dict[str, dict[str, str]]
) -> None:
    """A comment held as both uncertain spam and toxic has the main label "spam"; a moderator
    working through toxic comments must still find it."""
    from model.policy import Decision, Signals, decide
    from workers.store import NewComment, Transition

    store = Runtime(settings).store

    class Cut:
        spam_reject, spam_hold, toxic_hold = 0.9, 0.1, 0.1

    class Scores:
        def __init__(self, spam: float, toxic: float) -> None:
            self.spam, self.toxic = spam, toxic

    cases = {
        "both": decide(Scores(0.5, 0.2), Cut()),  # spam further past its threshold
        "toxic": decide(Scores(0.01, 0.5), Cut()),
        "spam": decide(Scores(0.5, 0.01), Cut()),
        "signal": decide(Scores(0.01, 0.01), Cut(), Signals(repeats=2, repeat_hold_after=2)),
    }
    assert cases["both"] == Decision("pending", "spam", ("spam_score_uncertain", "toxic_score"))
    ids = {}
    for name, decision in cases.items():
        comment_id, _, _ = store.add(
            NewComment(post_id="p", author="A", comment=name, email_enc="", email_digest="d")
        )
        fields = {"decision_label": decision.label, "decision_reasons": list(decision.reasons)}
        move = Transition({"id": comment_id, "post_id": "p"}, "pending", None, fields)
        assert store.transition_many([move])[0].applied
        ids[name] = comment_id
    alice = tokens["alice"]
    assert set(queue_ids(client, alice, "label=toxic")) == {ids["both"], ids["toxic"]}
    assert set(queue_ids(client, alice, "label=spam")) == {ids["both"], ids["spam"]}
    assert set(queue_ids(client, alice, "label=signal")) == {ids["signal"]}
    detail = client.get(f"/api/v1/moderation/comments/{ids['both']}", headers=alice).get_json()
    assert (detail["label"], detail["labels"]) == ("spam", ["spam", "toxic"])


def test_cursor_pagination_stays_correct_while_comments_arrive(
    client: FlaskClient, settings: Settings, tokens: dict[str, dict[str, str]]
) -> None:
    root = tokens["root"]
    for sort in ("newest", "spam"):
        approve = [f"Thoughtful comment number {n} about the local elections." for n in range(7)]
        ids = submit_scored(client, settings, approve)
        queue = next(
            s
            for s in ("approved", "pending")
            if client.get(f"/api/v1/moderation/queue?status={s}", headers=root).get_json()["items"]
        )
        seen: list[str] = []
        cursor = ""
        while True:
            page = client.get(
                f"/api/v1/moderation/queue?status={queue}&sort={sort}&limit=2&cursor={cursor}",
                headers=root,
            ).get_json()
            seen += [item["id"] for item in page["items"]]
            # New comments arriving mid-listing must not shift or repeat what follows.
            submit_scored(client, settings, [f"A late arrival during paging {len(seen)} {sort}."])
            if not page["next_cursor"]:
                break
            cursor = page["next_cursor"]
        assert len(seen) == len(set(seen))
        assert set(i for i in ids if Runtime(settings).store.get(i)["queue"] == queue) <= set(seen)


def test_bulk_actions_return_a_result_per_id(
    client: FlaskClient,
    settings: Settings,
    tokens: dict[str, dict[str, str]],
    redis: redis_lib.Redis,
) -> None:
    ids = submit_scored(client, settings, TEXTS[:3])
    missing = "f" * 24
    response = client.post(
        "/api/v1/moderation/bulk",
        json={"action": "spam", "ids": [*ids, missing]},
        headers=tokens["alice"],
    )
    assert response.status_code == 200
    results = response.get_json()["results"]
    assert all(results[i]["status"] == 200 and results[i]["queue"] == "spam" for i in ids)
    assert results[missing]["status"] == 404
    assert all(redis.hget(f"mod:c:{i}", "queue") == "spam" for i in ids)
    refused = client.post(
        "/api/v1/moderation/bulk", json={"action": "delete", "ids": ids}, headers=tokens["alice"]
    )
    assert all(r["status"] == 403 for r in refused.get_json()["results"].values())
    invalid = client.post(
        "/api/v1/moderation/bulk", json={"action": "zap", "ids": "x"}, headers=tokens["alice"]
    )
    assert invalid.status_code == 422 and set(invalid.get_json()["errors"]) == {"action", "ids"}


def test_a_chunked_body_over_the_size_limit_is_413_and_decides_nothing(
    settings: Settings, redis: redis_lib.Redis, tokens: dict[str, dict[str, str]]
) -> None:
    """Without Content-Length the body used to be read up to the limit and parsed as if it
    were complete: a form's long note came out cut short and the decision was applied."""
    client = client_for(settings, max_content_length=1024)
    (comment_id,) = submit_scored(client, settings, TEXTS[:1])
    before = redis.hgetall(f"mod:c:{comment_id}")
    trail = redis.lrange(f"mod:c:{comment_id}:audit", 0, -1)
    path = f"/api/v1/moderation/comments/{comment_id}"
    form = "application/x-www-form-urlencoded"
    note = "Spam ring, see the thread. " * 60  # 1,620 characters: under 2,000, over the limit
    over = [
        (f"{path}/decision", urlencode({"action": "reject", "note": note}).encode(), form),
        (f"{path}/decision", json.dumps({"action": "reject", "note": note}).encode(), JSON),
        (f"{path}/notes", urlencode({"note": note}).encode(), form),
        (
            "/api/v1/moderation/bulk",
            json.dumps({"action": "reject", "ids": [comment_id], "note": note}).encode(),
            JSON,
        ),
    ]
    for where, body, content_type in over:
        response = post_chunked(client, where, body, content_type, **tokens["alice"])
        assert response.status_code == 413, (where, response.get_data(as_text=True))
        assert response.mimetype == "application/problem+json"
        assert response.get_json()["status"] == 413
    assert redis.hgetall(f"mod:c:{comment_id}") == before
    assert redis.lrange(f"mod:c:{comment_id}:audit", 0, -1) == trail
    # A chunked body within the limit is read whole, as before.
    within = urlencode({"action": "reject", "note": note[:500]}).encode()
    decided = post_chunked(client, f"{path}/decision", within, form, **tokens["alice"])
    assert decided.status_code == 200 and decided.get_json()["queue"] == "rejected"
    assert json.loads(redis.lrange(f"mod:c:{comment_id}:audit", -1, -1)[0])["note"] == note[:500]


def test_a_lost_reply_applies_a_moderators_decision_once_and_undo_restores_the_queue(
    client: FlaskClient,
    settings: Settings,
    tokens: dict[str, dict[str, str]],
    redis: redis_lib.Redis,
    drop_one_reply: Callable[[Settings, bytes], tuple[Settings, DropOneReply]],
) -> None:
    """redis-py sends the decision's script again when its reply is lost; the second run
    answers as the first did: one audit entry, and an undo step that goes back to before."""
    (comment_id,) = submit_scored(client, settings, TEXTS[1:2])
    before = redis.hget(f"mod:c:{comment_id}", "queue")
    action = "reject" if before == "approved" else "approve"
    via_proxy, proxy = drop_one_reply(settings, b"EVALSHA")
    decided = client_for(via_proxy).post(
        f"/api/v1/moderation/comments/{comment_id}/decision",
        json={"action": action},
        headers=tokens["alice"],
    )
    assert decided.status_code == 200 and proxy.dropped == 1
    assert decided.get_json()["previous_queue"] == before
    assert trail_actions(redis, comment_id) == ["score", action]
    assert client.post("/api/v1/moderation/undo", headers=tokens["alice"]).status_code == 200
    assert redis.hget(f"mod:c:{comment_id}", "queue") == before
    assert redis.hget(f"mod:c:{comment_id}", "state") == "scored"


def test_a_lost_reply_to_a_delete_still_answers_deleted_and_keeps_its_undo(
    client: FlaskClient,
    settings: Settings,
    tokens: dict[str, dict[str, str]],
    redis: redis_lib.Redis,
    drop_one_reply: Callable[[Settings, bytes], tuple[Settings, DropOneReply]],
) -> None:
    """redis-py sends the delete's script again when its reply is lost; the second run found
    the comment gone: the moderator was told 404, no undo entry was kept, and the next undo
    brought back an earlier deletion instead. It now answers as the first run did."""
    earlier, comment_id = submit_scored(client, settings, TEXTS[1:3])
    root = tokens["root"]
    decide = "/api/v1/moderation/comments/{}/decision"
    # An earlier delete through the plain client: the script is loaded, so the proxy's one
    # lost reply is the delete's own.
    first = client.post(decide.format(earlier), json={"action": "delete"}, headers=root)
    assert first.status_code == 200
    via_proxy, proxy = drop_one_reply(settings, b"EVALSHA")
    deleted = client_for(via_proxy).post(
        decide.format(comment_id), json={"action": "delete"}, headers=root
    )
    assert deleted.status_code == 200 and proxy.dropped == 1, deleted.get_data(as_text=True)
    assert not redis.exists(f"mod:c:{comment_id}")
    assert client.post("/api/v1/moderation/undo", headers=root).status_code == 200
    assert redis.exists(f"mod:c:{comment_id}") and not redis.exists(f"mod:c:{earlier}")
    assert trail_actions(redis, comment_id) == ["score", "delete", "undo"]


def test_a_lost_reply_to_the_undo_of_a_delete_restores_the_trail_once(
    client: FlaskClient,
    settings: Settings,
    tokens: dict[str, dict[str, str]],
    redis: redis_lib.Redis,
    drop_one_reply: Callable[[Settings, bytes], tuple[Settings, DropOneReply]],
) -> None:
    """The undo of a delete is one MULTI, which redis-py sends again when its reply is lost:
    the trail was pushed twice (score, delete, undo, score, delete)."""
    (comment_id,) = submit_scored(client, settings, TEXTS[1:2])
    root = tokens["root"]
    decide = f"/api/v1/moderation/comments/{comment_id}/decision"
    assert client.post(decide, json={"action": "delete"}, headers=root).status_code == 200
    via_proxy, proxy = drop_one_reply(settings, b"EXEC")
    undone = client_for(via_proxy).post("/api/v1/moderation/undo", headers=root)
    assert undone.status_code == 200 and proxy.dropped == 1, undone.get_data(as_text=True)
    assert trail_actions(redis, comment_id) == ["score", "delete", "undo"]


def test_undo_reverts_the_moderators_last_action_only(
    client: FlaskClient,
    settings: Settings,
    tokens: dict[str, dict[str, str]],
    redis: redis_lib.Redis,
) -> None:
    (comment_id,) = submit_scored(client, settings, TEXTS[1:2])
    before = redis.hget(f"mod:c:{comment_id}", "queue")
    alice, root = tokens["alice"], tokens["root"]
    client.post(
        f"/api/v1/moderation/comments/{comment_id}/decision",
        json={"action": "approve"},
        headers=alice,
    )
    assert redis.hget(f"mod:c:{comment_id}", "queue") == "approved"
    assert (
        client.post("/api/v1/moderation/undo", headers=root).status_code == 409
    )  # root did nothing
    undone = client.post("/api/v1/moderation/undo", headers=alice)
    assert undone.status_code == 200
    assert redis.hget(f"mod:c:{comment_id}", "queue") == before
    assert redis.hget(f"mod:c:{comment_id}", "state") == "scored"
    listing = client.get("/api/v1/posts/elections/comments").get_json()["comments"]
    assert comment_id not in [c["id"] for c in listing] or before == "approved"
    # Undo of a delete brings the comment back with its whole trail, the delete included.
    detail_path = f"/api/v1/moderation/comments/{comment_id}"
    trail = client.get(detail_path, headers=root).get_json()["audit"]
    assert [(e["actor"], e["action"]) for e in trail] == [
        ("model", "score"),
        ("alice", "approve"),
        ("alice", "undo"),
    ]
    client.post(f"{detail_path}/decision", json={"action": "delete"}, headers=root)
    assert not redis.exists(f"mod:c:{comment_id}")
    assert client.get(detail_path, headers=root).status_code == 404
    assert client.post("/api/v1/moderation/undo", headers=root).status_code == 200
    assert redis.hget(f"mod:c:{comment_id}", "queue") == before
    audit = client.get(detail_path, headers=root).get_json()["audit"]
    # The comment's own trail: every entry from before the delete, unchanged, then the delete,
    # then the undo, which names what it undid.
    assert audit[:-2] == trail
    delete, undo = audit[-2:]
    assert {k: delete.get(k) for k in ("comment_id", "actor", "action", "from", "to")} == {
        "comment_id": comment_id,
        "actor": "root",
        "action": "delete",
        "from": before,
        "to": "deleted",
    }
    assert {k: undo.get(k) for k in ("comment_id", "actor", "action", "undone", "to")} == {
        "comment_id": comment_id,
        "actor": "root",
        "action": "undo",
        "undone": "delete",
        "to": before,
    }
    # The global audit log (newest first) holds the same two entries: the undo, the delete
    # (a note only as has_note: the log keeps no free text).
    log = client.get("/api/v1/moderation/audit?limit=1000", headers=root).get_json()["entries"]
    mine = [e for e in log if e.get("comment_id") == comment_id]
    assert [(e["actor"], e["action"]) for e in mine[:2]] == [("root", "undo"), ("root", "delete")]
    logged = {k: v for k, v in delete.items() if k != "note"} | {"has_note": bool(delete["note"])}
    assert [{k: v for k, v in e.items() if k != "audit_id"} for e in mine[:2]] == [undo, logged]


def test_undo_never_overwrites_a_later_decision_by_someone_else(
    client: FlaskClient,
    settings: Settings,
    tokens: dict[str, dict[str, str]],
    redis: redis_lib.Redis,
) -> None:
    (comment_id,) = submit_scored(client, settings, TEXTS[3:4])
    alice, root = tokens["alice"], tokens["root"]
    decide = f"/api/v1/moderation/comments/{comment_id}/decision"
    client.post(decide, json={"action": "reject"}, headers=alice)
    client.post(decide, json={"action": "approve"}, headers=root)
    refused = client.post("/api/v1/moderation/undo", headers=alice)
    assert refused.status_code == 409
    assert "later decision" in refused.get_json()["detail"]
    assert redis.hget(f"mod:c:{comment_id}", "queue") == "approved"
    assert redis.hget(f"mod:c:{comment_id}", "moderated_by") == "root"
    assert redis.zscore("mod:labeled", comment_id) is not None  # root's label stays
    # root's own undo still works, and then alice's earlier decision is current again.
    assert client.post("/api/v1/moderation/undo", headers=root).status_code == 200
    assert redis.hget(f"mod:c:{comment_id}", "queue") == "rejected"


def test_one_undo_reverts_a_whole_bulk_action(
    client: FlaskClient,
    settings: Settings,
    tokens: dict[str, dict[str, str]],
    redis: redis_lib.Redis,
) -> None:
    """More comments than the undo stack is deep (20): one undo still brings all back."""
    ids = submit_scored(client, settings, [f"{TEXTS[0]} ({n})" for n in range(30)])
    before = {i: redis.hget(f"mod:c:{i}", "queue") for i in ids}
    alice = tokens["alice"]
    client.post(
        f"/api/v1/moderation/comments/{ids[0]}/decision", json={"action": "approve"}, headers=alice
    )
    bulk = client.post(
        "/api/v1/moderation/bulk", json={"action": "spam", "ids": ids}, headers=alice
    )
    assert all(r["status"] == 200 for r in bulk.get_json()["results"].values())
    undone = client.post("/api/v1/moderation/undo", headers=alice)
    assert undone.status_code == 200
    results = undone.get_json()["results"]
    assert set(results) == set(ids) and all(r["status"] == 200 for r in results.values())
    assert redis.hget(f"mod:c:{ids[0]}", "queue") == "approved"  # the earlier single action
    assert all(redis.hget(f"mod:c:{i}", "queue") == before[i] for i in ids[1:])
    assert client.post("/api/v1/moderation/undo", headers=alice).status_code == 200
    assert redis.hget(f"mod:c:{ids[0]}", "queue") == before[ids[0]]


def test_undoing_a_decision_made_before_scoring_sends_the_comment_to_be_scored(
    client: FlaskClient,
    settings: Settings,
    tokens: dict[str, dict[str, str]],
    redis: redis_lib.Redis,
) -> None:
    comment_id = client.post("/api/v1/comments", json={**BASE, "comment": TEXTS[0]}).get_json()[
        "id"
    ]
    assert redis.hget(f"mod:c:{comment_id}", "state") == "queued"
    client.post(
        f"/api/v1/moderation/comments/{comment_id}/decision",
        json={"action": "approve"},
        headers=tokens["alice"],
    )
    assert redis.zscore("mod:unscored", comment_id) is None
    assert client.post("/api/v1/moderation/undo", headers=tokens["alice"]).status_code == 200
    assert redis.hget(f"mod:c:{comment_id}", "state") == "queued"
    store = Runtime(settings).store
    assert comment_id in store.stale_unscored(older_than_us=1)


def test_an_unscored_entry_without_a_queued_comment_is_dropped_when_a_worker_sees_it(
    settings: Settings, redis: redis_lib.Redis
) -> None:
    """Left behind by a race (deleted meanwhile), it would otherwise be re-sent every sweep."""
    from workers.pipeline import score_and_decide_many

    runtime = Runtime(settings)
    redis.zadd("mod:unscored", {"a" * 24: 0, "b" * 24: 0})
    assert score_and_decide(runtime, "a" * 24) == "missing"
    assert score_and_decide_many(runtime, ["b" * 24]) == {"b" * 24: "missing"}
    assert redis.zcard("mod:unscored") == 0


def test_detail_shows_history_and_an_append_only_audit_trail(
    client: FlaskClient, settings: Settings, tokens: dict[str, dict[str, str]]
) -> None:
    first, second = submit_scored(client, settings, [TEXTS[0], TEXTS[3]])
    alice, root = tokens["alice"], tokens["root"]
    client.post(
        f"/api/v1/moderation/comments/{first}/decision", json={"action": "approve"}, headers=alice
    )
    client.post(
        f"/api/v1/moderation/comments/{second}/decision",
        json={"action": "reject", "note": "off topic"},
        headers=alice,
    )
    assert (
        client.post(
            f"/api/v1/moderation/comments/{second}/notes",
            json={"note": "author warned"},
            headers=alice,
        ).status_code
        == 201
    )
    client.get(f"/api/v1/moderation/comments/{second}/email", headers=root)
    detail = client.get(f"/api/v1/moderation/comments/{second}", headers=alice).get_json()
    assert detail["email"] == "m***@example.com"
    assert detail["author_history"]["approved"] == 1
    actions = [(e["actor"], e["action"]) for e in detail["audit"]]
    assert actions == [
        ("model", "score"),
        ("alice", "reject"),
        ("alice", "note"),
        ("root", "reveal_email"),
    ]
    assert (
        detail["audit"][1]["from"]
        and detail["audit"][1]["to"] == "rejected"
        and detail["audit"][1]["note"] == "off topic"
    )
    log = client.get("/api/v1/moderation/audit?limit=100", headers=root).get_json()["entries"]
    assert ("root", "reveal_email", second) in [
        (e["actor"], e["action"], e["comment_id"]) for e in log
    ]


def test_not_spam_publishes_and_labels_the_comment(
    client: FlaskClient, settings: Settings, tokens: dict[str, dict[str, str]]
) -> None:
    from workers.labels import moderator_labels

    (comment_id,) = submit_scored(client, settings, TEXTS[1:2])
    client.post(
        f"/api/v1/moderation/comments/{comment_id}/decision",
        json={"action": "not_spam"},
        headers=tokens["alice"],
    )
    listing = client.get("/api/v1/posts/elections/comments").get_json()["comments"]
    assert comment_id in [c["id"] for c in listing]
    labels = list(moderator_labels(Runtime(settings).store))
    assert (
        labels == [labels[0]] and labels[0]["comment_id"] == comment_id and labels[0]["spam"] == 0
    )
    assert "email" not in labels[0] and EMAIL not in str(labels[0])


def test_the_same_text_from_many_addresses_is_held_as_a_repeat(
    settings: Settings, tokens: dict[str, dict[str, str]]
) -> None:
    """A copy-and-paste campaign: the third copy of a text within the window, from a third
    (author, article) pair, waits for a moderator, even with its punctuation, case, spacing or
    invisible characters changed; the same author re-sending on one article, and short stock
    phrases, never count."""
    from service import create_app

    # Hold thresholds of 1: only the repeat signal can hold these clean texts.
    repeat = settings.with_overrides(
        repeat_window_seconds=3600, spam_hold_threshold=1.0, toxic_hold_threshold=1.0
    )
    client = create_app(repeat, configure_logs=False).test_client()
    runtime = Runtime(repeat)
    campaign = "Local elections matter: read the candidates' answers before you vote."
    stock = "Thank you for this article, very informative!"  # under 50 letters and digits
    disguised = "LOCAL elections matter!!  read the candidates\u2019 answers before you VOTE\u200b"
    sends = [
        # (author, article, text)
        ("r0", "post-0", campaign),
        ("r0", "post-0", campaign),  # the same author again on the same article: not a repeat
        ("r1", "post-1", campaign),
        ("r2", "post-2", disguised),
        *((f"s{n}", f"post-{n}", stock) for n in range(4)),
    ]
    decided = []
    for author, post_id, text in sends:
        body = {"post_id": post_id, "author": author, "email": f"{author}@example.org"}
        comment_id = client.post("/api/v1/comments", json={**body, "comment": text}).get_json()[
            "id"
        ]
        assert score_and_decide(runtime, comment_id) in ("decided", "already_decided")
        decided.append(runtime.store.get(comment_id))
    assert [r["repeats"] for r in decided[:4]] == [0, 0, 1, 2]
    assert [r["queue"] for r in decided] == ["approved"] * 3 + ["pending"] + ["approved"] * 4
    assert decided[3]["decision_reasons"] == ["repeated_text"]
    detail = client.get(f"/api/v1/moderation/comments/{decided[3]['id']}", headers=tokens["alice"])
    assert detail.get_json()["signals"]["repeats"] == 2  # what the moderator sees
    held = queue_ids(client, tokens["alice"], "label=signal")
    assert decided[3]["id"] in held

    # Off (window 0), the same text again is judged on its own.
    off = repeat.with_overrides(repeat_window_seconds=0)
    comment_id = (
        create_app(off, configure_logs=False)
        .test_client()
        .post("/api/v1/comments", json={**BASE, "post_id": "post-x", "comment": campaign})
        .get_json()["id"]
    )
    score_and_decide(Runtime(off), comment_id)
    assert runtime.store.get(comment_id)["queue"] == "approved"


def test_storing_a_comment_again_after_a_lost_reply_changes_nothing(settings: Settings) -> None:
    """redis-py retries a call whose reply was lost: the intake script, run twice for one
    comment, must not report it as its own duplicate or count it as its own repeat."""
    from workers.store import NewComment

    store = Runtime(settings).store
    text = "A long enough comment about the harbour redevelopment plans and the ferry."
    new = NewComment(post_id="p-retry", author="A", comment=text, email_enc="", email_digest="d")
    first = store.add(new, duplicate_window=600, repeat_window=3600, comment_id="c" * 24)
    again = store.add(new, duplicate_window=600, repeat_window=3600, comment_id="c" * 24)
    assert first[2] is None and again[2] is None  # not a duplicate of itself
    assert store.get("c" * 24)["repeats"] == 0


def test_a_connection_lost_after_a_delete_leaves_nothing_of_the_comment_indexed(
    settings: Settings, redis: redis_lib.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The repeated-text entry and the duplicate fingerprint go in the delete's own atomic
    step: were they separate commands after it, a connection lost in between would leave the
    deleted comment counted as a repeat of the next copy of its text."""
    from workers.store import NewComment

    store = Runtime(settings).store
    text = "A long enough comment about the harbour redevelopment plans and the ferry."
    new = NewComment(post_id="p-lost", author="A", comment=text, email_enc="", email_digest="d")
    comment_id, _, _ = store.add(new, duplicate_window=600, repeat_window=3600)
    record = store.get(comment_id)
    repeat = f"mod:repeat:{store.text_digest(record)}"
    duplicate = f"mod:dup:{store.fingerprint(record)}"
    assert redis.zcard(repeat) == 1 and redis.get(duplicate) == comment_id
    run = store.redis.execute_command

    def only_scripts(*args: Any, **options: Any) -> Any:
        if str(args[0]).upper() in ("EVALSHA", "EVAL", "SCRIPT LOAD"):
            return run(*args, **options)
        raise redis_lib.ConnectionError("connection lost")

    monkeypatch.setattr(store.redis, "execute_command", only_scripts)
    with contextlib.suppress(redis_lib.ConnectionError):
        store.delete(record, audit={"actor": "root", "action": "delete"}, reason="deleted")
    assert not redis.exists(f"mod:c:{comment_id}")
    assert not redis.exists(repeat) and not redis.exists(duplicate)


def test_undoing_a_delete_puts_the_comment_back_in_the_repeated_text_count(
    settings: Settings, redis: redis_lib.Redis, tokens: dict[str, dict[str, str]]
) -> None:
    """A deleted comment leaves its text's repeat index; brought back by undo, it counts
    again, as it would had it never been deleted (and not once it is outside the window)."""
    from service import create_app

    repeat = settings.with_overrides(repeat_window_seconds=3600)
    client = create_app(repeat, configure_logs=False).test_client()
    store = Runtime(repeat).store
    text = "Vote on the harbour plan next Tuesday: the ferry timetable depends on it."

    def send(author: str) -> str:
        body = {"post_id": f"post-{author}", "author": author, "email": f"{author}@example.org"}
        response = client.post("/api/v1/comments", json={**body, "comment": text})
        return str(response.get_json()["id"])

    first = send("r0")
    record = store.get(first)
    index = f"mod:repeat:{store.text_digest(record)}"
    deleted = client.post(
        f"/api/v1/moderation/comments/{first}/decision",
        json={"action": "delete"},
        headers=tokens["root"],
    )
    assert deleted.status_code == 200 and not redis.exists(index)
    assert client.post("/api/v1/moderation/undo", headers=tokens["root"]).status_code == 200
    assert redis.zrange(index, 0, -1, withscores=True) == [
        (store.repeat_member(record), record["created_us"])
    ]
    assert 3500 < redis.ttl(index) <= 3600  # expires with the window, like the intake's entries
    assert store.get(send("r1"))["repeats"] == 1

    # Brought back once its arrival has left the window, it stays out of the count.
    assert store.delete(record, reason="deleted") is not None
    two_hours_ago = record["created_us"] - 7200 * 10**6
    old = {**record, "created_us": two_hours_ago}
    back = Transition(old, "pending", None, {"state": "queued"}, None)
    assert store.restore(old, [], back, repeat_window=3600).applied
    assert redis.zscore(index, store.repeat_member(record)) is None


def test_undo_of_a_delete_brings_back_the_comment_as_the_delete_found_it(
    client: FlaskClient,
    settings: Settings,
    redis: redis_lib.Redis,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A change landing between the moderator's read and the delete (here a note another
    moderator set on the record) is in what the undo brings back: the delete itself reads the
    record it removes."""
    from workers.moderation import apply_decision, undo_last

    (comment_id,) = submit_scored(client, settings, TEXTS[:1])
    store = Runtime(settings).store
    delete = CommentStore.delete

    def late_change(self: CommentStore, comment: dict[str, object], **kw: object) -> object:
        self.redis.hset(f"mod:c:{comment_id}", "moderated_by", "bob")
        return delete(self, comment, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(CommentStore, "delete", late_change)
    assert apply_decision(store, comment_id, "delete", "root").deleted
    monkeypatch.undo()
    result = undo_last(store, "root", repeat_window=0)
    assert result is not None and result.results[comment_id].found
    assert store.get(comment_id)["moderated_by"] == "bob"


def test_undo_of_a_delete_is_one_step_a_lost_connection_cannot_leave_it_in_no_queue(
    client: FlaskClient,
    settings: Settings,
    redis: redis_lib.Redis,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The comment is stored again and put back in its queue and indexes in one MULTI: if
    the connection drops after it was sent, it is fully back; any separate later step (here:
    every transition call) may fail without leaving it stored but unlisted."""
    from workers.moderation import apply_decision, undo_last

    (comment_id,) = submit_scored(client, settings, TEXTS[:1])
    store = Runtime(settings).store
    queue = store.get(comment_id)["queue"]
    assert apply_decision(store, comment_id, "delete", "root").deleted

    def lost(*args: object, **kw: object) -> object:
        raise redis_lib.ConnectionError("connection lost")

    monkeypatch.setattr(CommentStore, "transition", lost)
    with contextlib.suppress(redis_lib.ConnectionError):
        undo_last(store, "root", repeat_window=0)
    assert redis.exists(f"mod:c:{comment_id}")
    assert redis.zscore(f"mod:q:{queue}", comment_id) is not None


def test_an_undo_between_a_workers_read_and_its_cleanup_leaves_the_comment_for_the_sweep(
    stack_factory: Callable[..., Stack], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A moderator approves a comment before it is scored, a worker reads it as decided, and
    the moderator undoes the approval before the worker drops it from the unscored index: the
    comment is queued again and must stay there, or nothing would ever score it."""
    from workers.moderation import apply_decision, undo_last
    from workers.pipeline import score_and_decide_many

    stack = stack_factory()  # no worker: the comment stays queued until this test scores it
    body = {"post_id": "p-race", "comment": "A remark.", "author": "A", "email": EMAIL}
    comment_id = stack.client().post("/api/v1/comments", json=body).get_json()["id"]
    runtime = Runtime(stack.settings)
    store = runtime.store
    assert apply_decision(store, comment_id, "approve", "root").found
    read = CommentStore.get_by_ids

    def read_then_undo(self: CommentStore, ids: list[str]) -> dict[str, dict[str, Any]]:
        found = read(self, ids)
        undo_last(store, "root", repeat_window=0)
        return found

    monkeypatch.setattr(CommentStore, "get_by_ids", read_then_undo)
    assert score_and_decide_many(runtime, [comment_id]) == {comment_id: "already_decided"}
    assert store.get(comment_id)["state"] == "queued"
    assert stack.redis.zscore("mod:unscored", comment_id) is not None


def test_trusted_authors_are_auto_approved(client: FlaskClient, settings: Settings) -> None:
    trusted = settings.with_overrides(auto_approve_after=2, spam_hold_threshold=0.0)
    runtime = Runtime(trusted)
    ids = submit_scored(client, settings, [TEXTS[0], TEXTS[3]])
    for comment_id in ids:  # a moderator approved this author's first two comments
        runtime.store.transition(
            runtime.store.get(comment_id),
            "approved",
            allowed_states=None,
            fields={"state": "moderated"},
        )
    response = client.post(
        "/api/v1/comments", json={**BASE, "comment": "Another fair point, thanks."}
    )
    comment_id = response.get_json()["id"]
    score_and_decide(runtime, comment_id)
    record = runtime.store.get(comment_id)
    assert record["queue"] == "approved" and "trusted_author" in record["decision_reasons"]
    # With the feature off, the same (forced-uncertain) comment waits for a human.
    response = client.post(
        "/api/v1/comments",
        json={**BASE, "email": "new@example.com", "comment": "Another fair point."},
    )
    other = response.get_json()["id"]
    score_and_decide(Runtime(trusted.with_overrides(auto_approve_after=0)), other)
    assert runtime.store.get(other)["queue"] == "pending"


@pytest.mark.integration
def test_decisions_reach_the_site_as_signed_webhooks(
    tmp_path,
    settings_values: dict[str, str],
    worker_env: dict[str, str],  # type: ignore[no-untyped-def]
) -> None:
    import json
    import threading
    from http.server import BaseHTTPRequestHandler, HTTPServer

    from service import create_app
    from workers.embedded_redis import EmbeddedRedis
    from workers.webhooks import SIGNATURE_HEADER, verify

    received: list[tuple[bytes, str]] = []
    failures = {"left": 1}  # the first delivery fails with 503: it must be retried

    class Receiver(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            if failures["left"]:
                failures["left"] -= 1
                self.send_response(503)
            else:
                received.append((body, self.headers[SIGNATURE_HEADER]))
                self.send_response(204)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Receiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    redis_server = EmbeddedRedis(tmp_path / "redis").start()
    values = {
        **settings_values,
        "MODERATION_REDIS_URL": redis_server.url,
        "MODERATION_WEBHOOK_URL": f"http://127.0.0.1:{server.server_port}/hooks/comments",
        "MODERATION_WEBHOOK_SECRET": "site-shared-secret",
    }
    hook_settings = Settings.from_mapping(values).check()
    worker = WorkerProcess({**worker_env, **values}, tmp_path / "worker.log")
    hooks = WebhookWorkerProcess({**worker_env, **values}, tmp_path / "webhooks.log")
    try:
        hooks.start(hook_settings)  # the default worker only scores; this one delivers
        worker.start(hook_settings)
        client = create_app(hook_settings, configure_logs=False).test_client()
        comment_id = client.post("/api/v1/comments", json={**BASE, "comment": TEXTS[0]}).get_json()[
            "id"
        ]
        wait_for(lambda: received, timeout=20)  # the retry waits at least 5 s
        body, signature = received[0]
        assert verify("site-shared-secret", signature, body)
        assert not verify("wrong-secret", signature, body)
        event = json.loads(body)
        assert event["comment"]["id"] == comment_id and event["type"] == "comment.decided"
        assert EMAIL not in body.decode() and "spam" not in event["comment"]
    finally:
        worker.stop()
        hooks.stop()
        server.shutdown()
        server.server_close()
        redis_server.stop()


@pytest.mark.parametrize("batched", [False, True])
def test_every_comment_held_on_a_score_shows_the_words_behind_it(
    client: FlaskClient, settings: Settings, tokens: dict[str, dict[str, str]], batched: bool
) -> None:
    """Mildly toxic or spammy comments are held below 0.2 too (the hold thresholds are low);
    the moderator still sees which words raised the score, in both the single and the
    batched scoring path."""
    from workers.pipeline import score_and_decide_many

    texts = [
        "I disagree with the mayor on this one. Taxes are already too high.",
        "Thanks for the clear explanation of the council budget, very helpful.",
        "This is a dumb decision by the council.",
        "Check the prices at my shop, best deals in town.",
    ]
    runtime = Runtime(settings)
    ids = []
    for text in texts:
        response = client.post("/api/v1/comments", json={**BASE, "comment": text})
        ids.append(response.get_json()["id"])
    if batched:
        score_and_decide_many(runtime, ids)
    else:
        for comment_id in ids:
            score_and_decide(runtime, comment_id)
    checked = 0
    for comment_id in ids:
        item = client.get(f"/api/v1/moderation/comments/{comment_id}", headers=tokens["alice"])
        record = item.get_json()
        for label, code in (("toxic", "toxic_score"), ("spam", "spam_score_uncertain")):
            if code in record["decision_reasons"]:
                checked += 1
                words = [r for r in record["reasons"] if r["label"] == label]
                assert words, (record["comment"], record["scores"], record["reasons"])
    assert checked >= 2  # the texts above are held on a score, most below 0.2


def _hold_in_pending(settings: Settings, entries: list[tuple[str, str]]) -> list[str]:
    """Store comments straight into the pending queue, in this order of age (no model: fast).

    Each entry is (post_id, email_digest); the list order is the creation order."""
    from workers.store import NewComment, Transition

    store = Runtime(settings).store
    moves = []
    for n, (post_id, digest) in enumerate(entries):
        comment_id, _, _ = store.add(
            NewComment(
                post_id=post_id,
                author="Filler",
                comment=f"Filler comment {n}.",
                email_enc="",
                email_digest=digest,
            )
        )
        moves.append(Transition({"id": comment_id, "post_id": post_id}, "pending", None, {}))
    for start in range(0, len(moves), 1000):
        results = store.transition_many(moves[start : start + 1000])
        assert all(r.applied for r in results)
    return [str(m.comment["id"]) for m in moves]


def _follow_cursors(
    client: FlaskClient, headers: dict[str, str], query: str
) -> list[dict[str, object]]:
    """Return every page of a queue listing, following next_cursor until it is null."""
    pages = []
    cursor = ""
    for _ in range(10):
        response = client.get(f"/api/v1/moderation/queue?{query}&cursor={cursor}", headers=headers)
        assert response.status_code == 200, response.get_json()
        pages.append(response.get_json())
        cursor = pages[-1]["next_cursor"]
        if cursor is None:
            return pages
    pytest.fail(f"no end of list after {len(pages)} pages of {query}")


def test_filtered_queue_pages_continue_past_the_scan_limit_to_every_match(
    client: FlaskClient, settings: Settings, tokens: dict[str, dict[str, str]]
) -> None:
    """6,000 pending comments, matches beyond the 5,000 a page may examine: a page comes back
    short (even empty) with a cursor, the cursor goes on from the last comment examined, and
    only the true end of the queue has a null cursor, for both creation-time orders."""
    from workers.store import QUEUE_SCAN_LIMIT

    assert QUEUE_SCAN_LIMIT == 5000
    # By age: the oldest is on the target post by one author, number 5,500 by another.
    entries = [("busy", "filler-digest")] * 6000
    entries[0] = ("target", "first-author")
    entries[5499] = ("target", "second-author")
    ids = _hold_in_pending(settings, entries)
    oldest, later = ids[0], ids[5499]
    root = tokens["root"]

    # The reported case: only the oldest comment matches, 5,000 newer ones fill the scan.
    pages = _follow_cursors(client, root, "post_id=target&author_digest=first-author")
    assert pages[0]["items"] == [] and pages[0]["next_cursor"] is not None
    assert [item["id"] for page in pages for item in page["items"]] == [oldest]

    for sort, expected in (("newest", [later, oldest]), ("oldest", [oldest, later])):
        pages = _follow_cursors(client, root, f"post_id=target&sort={sort}")
        assert [item["id"] for page in pages for item in page["items"]] == expected
        assert len(pages) == 2  # 6,000 comments: two scans of at most 5,000, then the end
        assert all(len(page["items"]) == 1 for page in pages)


def test_queue_cursor_is_null_when_the_scan_ends_exactly_at_the_end_of_the_queue(
    client: FlaskClient,
    settings: Settings,
    tokens: dict[str, dict[str, str]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """No cursor to an empty page: a scan that used its whole budget on the last comment
    of the queue says the list ended."""
    import workers.store

    monkeypatch.setattr(workers.store, "QUEUE_SCAN_LIMIT", 30)
    ids = _hold_in_pending(settings, [("target", "d")] + [("busy", "d")] * 29)
    for sort in ("newest", "oldest"):
        page = client.get(
            f"/api/v1/moderation/queue?post_id=target&sort={sort}", headers=tokens["root"]
        ).get_json()
        assert [item["id"] for item in page["items"]] == [ids[0]]
        assert page["next_cursor"] is None


def test_queue_paging_moves_past_more_equal_scores_than_one_scan_examines(
    settings: Settings, redis: redis_lib.Redis
) -> None:
    """Comments with equal spam scores (one text posted many times) never stall paging: the
    comments before the cursor in a tie do not use up the scan budget."""
    store = Runtime(settings).store
    ids = _hold_in_pending(settings, [("busy", "d")] * 40)
    redis.zadd("mod:q:pending:by:spam", dict.fromkeys(ids, 0.5))
    wanted = set(ids[::7])
    seen: list[str] = []
    cursor = None
    for _ in range(40):
        page, cursor = store.scan_queue(
            "pending",
            sort="spam",
            cursor=cursor,
            limit=2,
            accept=lambda record: record["id"] in wanted,
            max_examined=5,
        )
        seen += [record["id"] for record in page]
        if cursor is None:
            break
    assert cursor is None
    assert sorted(seen) == sorted(wanted) and len(seen) == len(wanted)


def _hold_scored_in_pending(
    settings: Settings, scores: list[tuple[float, float] | None]
) -> list[str]:
    """Store comments straight into the pending queue with these (spam, toxic) scores, in this
    order of age; None is a comment whose scoring failed (no scores, held as an error)."""
    from workers.pipeline import uncertainty
    from workers.store import NewComment, Transition

    store = Runtime(settings).store
    moves = []
    for n, pair in enumerate(scores):
        comment_id, _, _ = store.add(
            NewComment(
                post_id="sorted",
                author="Scored",
                comment=f"Scored comment {n}.",
                email_enc="",
                email_digest="scored-digest",
            )
        )
        fields: dict[str, object] = {"state": "scored", "decided_by": "model"}
        if pair is None:
            fields.update(decision_label="error", decision_reasons=["scoring_failed"])
        else:
            spam, toxic = pair
            fields.update(spam=spam, toxic=toxic, uncertainty=round(uncertainty(spam, toxic), 6))
        moves.append(Transition({"id": comment_id, "post_id": "sorted"}, "pending", None, fields))
    assert all(r.applied for r in store.transition_many(moves))
    return [str(m.comment["id"]) for m in moves]


def test_queue_sorts_and_score_filters_give_exact_orders_with_inclusive_bounds(
    client: FlaskClient,
    settings: Settings,
    tokens: dict[str, dict[str, str]],
    redis: redis_lib.Redis,
) -> None:
    """Each sort has its own order (none of them the order of age), the comment without
    scores is first by uncertainty and last by spam or toxic, and every score bound, alone or
    combined, keeps exactly the comments within it, bounds included."""
    # (spam, toxic); uncertainty = max(1 - |2 spam - 1|, 1 - |2 toxic - 1|) in brackets.
    c0, c1, c2, c3, c4, c5 = _hold_scored_in_pending(
        settings,
        [
            (0.30, 0.90),  # [0.6]
            (0.95, 0.10),  # [0.2]
            None,  # scoring failed: created in the middle, so age alone cannot place it
            (0.50, 0.50),  # [1.0]
            (0.10, 0.65),  # [0.7]
            (0.75, 0.20),  # [0.5]
        ],
    )
    alice = tokens["alice"]
    assert queue_ids(client, alice, "sort=newest") == [c5, c4, c3, c2, c1, c0]
    assert queue_ids(client, alice, "sort=oldest") == [c0, c1, c2, c3, c4, c5]
    orders = {
        "spam": [c1, c5, c3, c0, c4, c2],
        "toxic": [c0, c4, c3, c5, c1, c2],
        "uncertainty": [c2, c3, c4, c0, c5, c1],
    }
    for sort, expected in orders.items():
        assert queue_ids(client, alice, f"sort={sort}") == expected, sort
        # The same order page by page, following the (score, id) cursors.
        pages = _follow_cursors(client, alice, f"sort={sort}&limit=2")
        assert [item["id"] for page in pages for item in page["items"]] == expected, sort

    # Bounds are inclusive; a comment without scores matches no score bound. Each query is
    # checked in age order (the filter alone) and in the order of the score it bounds (the
    # range is then also applied to the score index).
    cases = {
        "min_spam=0.5": [c1, c3, c5],
        "max_spam=0.3": [c0, c4],
        "min_toxic=0.65": [c0, c4],
        "max_toxic=0.2": [c1, c5],
        "min_spam=0": [c0, c1, c3, c4, c5],
        "max_toxic=1": [c0, c1, c3, c4, c5],
        "min_spam=0.3&max_spam=0.75": [c0, c3, c5],
        "min_toxic=0.2&max_toxic=0.65": [c3, c4, c5],
        "min_spam=0.3&max_spam=0.75&min_toxic=0.5": [c0, c3],
        "min_spam=0.3&max_toxic=0.5": [c1, c3, c5],
        "max_spam=0.5&min_toxic=0.5&max_toxic=0.65": [c3, c4],
        "min_spam=0.5&max_spam=0.5&min_toxic=0.5&max_toxic=0.5": [c3],
        "min_spam=0.96": [],
        "max_toxic=0.09": [],
    }
    for query, expected in cases.items():
        assert queue_ids(client, alice, f"sort=oldest&{query}") == expected, query
        for sort in ("spam", "toxic"):
            ranked = [i for i in orders[sort] if i in expected]
            assert queue_ids(client, alice, f"sort={sort}&{query}") == ranked, (sort, query)


def test_bulk_takes_at_most_500_ids(
    client: FlaskClient,
    settings: Settings,
    tokens: dict[str, dict[str, str]],
    redis: redis_lib.Redis,
) -> None:
    (held,) = _hold_in_pending(settings, [("limits", "d")])
    alice = tokens["alice"]
    unknown = [f"{n:024x}" for n in range(1, 501)]
    # 501 ids: refused as a whole, naming ids, before anything is applied.
    refused = client.post(
        "/api/v1/moderation/bulk", json={"action": "spam", "ids": [held, *unknown]}, headers=alice
    )
    assert refused.status_code == 422
    assert set(refused.get_json()["errors"]) == {"ids"}
    assert "500" in refused.get_json()["errors"]["ids"]
    assert redis.hget(f"mod:c:{held}", "queue") == "pending"
    assert client.post("/api/v1/moderation/undo", headers=alice).status_code == 409
    # 500 ids: taken, a result for each.
    taken = client.post(
        "/api/v1/moderation/bulk",
        json={"action": "spam", "ids": [held, *unknown[:499]]},
        headers=alice,
    )
    assert taken.status_code == 200
    results = taken.get_json()["results"]
    assert len(results) == 500 and results[held] == {"status": 200, "queue": "spam"}
    assert all(results[i]["status"] == 404 for i in unknown[:499])


def test_undo_goes_back_20_actions_and_remembers_them_for_at_most_7_days(
    client: FlaskClient,
    settings: Settings,
    tokens: dict[str, dict[str, str]],
    redis: redis_lib.Redis,
) -> None:
    ids = _hold_in_pending(settings, [("limits", "d")] * 21)
    alice = tokens["alice"]
    for comment_id in ids:
        decided = client.post(
            f"/api/v1/moderation/comments/{comment_id}/decision",
            json={"action": "approve"},
            headers=alice,
        )
        assert decided.status_code == 200
    ttl = redis.ttl("mod:undo:alice")
    assert 7 * 86400 - 60 <= ttl <= 7 * 86400
    # The last 20 decisions come back, newest first; the 21st (the oldest) is out of reach.
    undone = []
    for _ in range(20):
        response = client.post("/api/v1/moderation/undo", headers=alice)
        assert response.status_code == 200, response.get_json()
        undone.append(response.get_json()["id"])
    assert undone == ids[:0:-1]
    assert [redis.hget(f"mod:c:{i}", "queue") for i in ids[1:]] == ["pending"] * 20
    last = client.post("/api/v1/moderation/undo", headers=alice)
    assert last.status_code == 409
    assert last.get_json()["detail"] == "There is nothing to undo."
    assert redis.hget(f"mod:c:{ids[0]}", "queue") == "approved"
