"""Readers' privacy: export and erase by address, retention, nothing identifying left behind."""

from __future__ import annotations

import json
import time
from urllib.parse import urlencode

import pytest
import redis as redis_lib
from flask.testing import FlaskClient

from tests.conftest import client_for, post_chunked, wait_for
from workers.embedded_redis import EmbeddedRedis
from workers.erasure import purge_expired
from workers.moderation import create_token
from workers.pipeline import score_and_decide
from workers.runtime import Runtime
from workers.settings import Settings

EMAIL = "Erase.Me@Example.org"
OTHER = "keep.me@example.org"
DAY_US = 86400 * 1_000_000


def dump_everything(redis: redis_lib.Redis) -> str:
    """Return every key and value in Redis as one string, to search for traces."""
    parts = []
    for key in redis.scan_iter("*"):
        kind = redis.type(key)
        if kind == "hash":
            value = redis.hgetall(key)
        elif kind == "list":
            value = redis.lrange(key, 0, -1)
        elif kind == "zset":
            value = redis.zrange(key, 0, -1)
        elif kind == "set":
            value = sorted(redis.smembers(key))
        elif kind == "stream":
            value = redis.xrange(key)
        elif kind == "string":
            value = redis.get(key)
        else:
            value = ""
        parts.append(f"{key}={json.dumps(value, default=str)}")
    return "\n".join(parts)


def test_export_then_erase_leaves_no_trace_of_the_address(
    client: FlaskClient, settings: Settings, redis: redis_lib.Redis
) -> None:
    runtime = Runtime(settings)
    store = runtime.store
    admin = {"Authorization": "Bearer " + create_token(store, "dpo", "admin")}
    moderator = {"Authorization": "Bearer " + create_token(store, "mia", "moderator")}
    mine = []
    for n, text in enumerate(["First thoughts on the budget.", "A follow-up on the budget."]):
        body = {"post_id": f"post-{n}", "comment": text, "author": "Erin", "email": EMAIL}
        mine.append(client.post("/api/v1/comments", json=body).get_json()["id"])
    score_and_decide(runtime, mine[0])  # one scored, one still queued
    kept = client.post(
        "/api/v1/comments",
        json={"post_id": "post-0", "comment": "Unrelated reader.", "author": "Kim", "email": OTHER},
    ).get_json()["id"]
    # A moderator acted on it (undo stack, audit log, training label now mention it).
    client.post(
        f"/api/v1/moderation/comments/{mine[0]}/decision",
        json={"action": "approve"},
        headers=moderator,
    )

    exported = client.post("/api/v1/privacy/export", json={"email": EMAIL.lower()}, headers=admin)
    assert exported.status_code == 200
    body = exported.get_json()
    assert body["count"] == 2
    assert {c["id"] for c in body["comments"]} == set(mine)
    assert all(c["email"].lower() == EMAIL.lower() for c in body["comments"])

    digest = runtime.vault.digest(EMAIL)
    encrypted = [store.get(i)["email_enc"] for i in mine]
    erased = client.post("/api/v1/privacy/erase", json={"email": EMAIL}, headers=admin)
    assert erased.status_code == 200
    report = erased.get_json()
    assert report["comments_deleted"] == 2 and set(report["comment_ids"]) == set(mine)
    assert report["undo_entries_removed"] == 1
    assert report["audit_entries_removed"] >= 2  # the model's score and the approval

    everything = dump_everything(redis)
    for trace in [EMAIL, EMAIL.lower(), "Erase.Me", digest, *encrypted]:
        assert trace not in everything, trace
    # Ids are opaque, but nothing of ours may still point at the erased comments (Celery's
    # queued task messages may: a task for a missing comment does nothing).
    ours = "\n".join(line for line in everything.splitlines() if line.startswith("mod:"))
    for comment_id in mine:
        assert comment_id not in ours
    # The texts are gone too, from records, lists and training labels.
    assert "budget" not in everything
    assert store.get(kept) is not None
    assert (
        client.post("/api/v1/privacy/export", json={"email": EMAIL}, headers=admin).get_json()[
            "count"
        ]
        == 0
    )
    assert client.post("/api/v1/moderation/undo", headers=moderator).status_code == 409


def test_erasure_leaves_no_note_text_even_in_bytes_redis_has_not_freed(
    client: FlaskClient, settings: Settings, redis: redis_lib.Redis
) -> None:
    """A moderator's note about a reader goes with the erasure, in memory too.

    Redis frees a stream's memory a node at a time: an entry deleted from the global audit log
    stays in memory, and in every snapshot, until its node is trimmed. So the log keeps no
    free text; the note lives in the comment's own trail, which is deleted outright. DUMP
    serialises a value as a snapshot writes it, deleted-but-not-freed entries included."""
    runtime = Runtime(settings)
    admin = {"Authorization": "Bearer " + create_token(runtime.store, "dpo", "admin")}
    body = {"post_id": "p-note", "comment": "Bus lanes again.", "author": "E", "email": EMAIL}
    comment_id = client.post("/api/v1/comments", json=body).get_json()["id"]
    other = {"post_id": "p-note", "comment": "Kept remark.", "author": "K", "email": OTHER}
    kept = client.post("/api/v1/comments", json=other).get_json()["id"]
    # Entries about another comment share the log's memory node with the erased ones.
    client.post(f"/api/v1/moderation/comments/{kept}/notes", json={"note": "ok"}, headers=admin)
    marker, decided = "lives-at-12-main-street", "phoned-the-desk-twice"
    noted = client.post(
        f"/api/v1/moderation/comments/{comment_id}/notes", json={"note": marker}, headers=admin
    )
    assert noted.status_code in (200, 201)
    decision = client.post(
        f"/api/v1/moderation/comments/{comment_id}/decision",
        json={"action": "reject", "note": decided},
        headers=admin,
    )
    assert decision.status_code == 200
    # Moderators still read the notes in the comment's trail; the global log only flags them.
    trail = client.get(f"/api/v1/moderation/comments/{comment_id}", headers=admin).get_json()
    assert {e.get("note") for e in trail["audit"]} >= {marker, decided}
    log = client.get("/api/v1/moderation/audit", headers=admin).get_json()["entries"]
    about = [e for e in log if e.get("comment_id") == comment_id]
    assert {e["action"] for e in about} >= {"note", "reject"}
    assert all("note" not in e for e in about)
    assert all(e["has_note"] for e in about if e["action"] in ("note", "reject"))

    erased = client.post("/api/v1/privacy/erase", json={"email": EMAIL}, headers=admin)
    assert erased.get_json()["comments_deleted"] == 1
    raw = redis_lib.Redis.from_url(settings.redis_url)  # bytes: DUMP output is binary
    serialised = b"".join(raw.dump(key) or b"" for key in raw.scan_iter("*"))
    for text in (marker, decided):
        assert text.encode() not in serialised, text


def test_erasure_reaches_a_comment_a_moderator_deleted_and_it_cannot_be_undone_back(
    client: FlaskClient, settings: Settings, redis: redis_lib.Redis
) -> None:
    """A deleted comment leaves the author index but stays on the admin's undo stack."""
    runtime = Runtime(settings)
    store = runtime.store
    admin = {"Authorization": "Bearer " + create_token(store, "dpo", "admin")}
    body = {"post_id": "p-del", "comment": "Zebra crossing remark.", "author": "E", "email": EMAIL}
    comment_id = client.post("/api/v1/comments", json=body).get_json()["id"]
    encrypted = store.get(comment_id)["email_enc"]
    deleted = client.post(
        f"/api/v1/moderation/comments/{comment_id}/decision",
        json={"action": "delete", "note": "reader asked by phone"},
        headers=admin,
    )
    assert deleted.status_code == 200

    report = client.post("/api/v1/privacy/erase", json={"email": EMAIL}, headers=admin).get_json()
    assert report["undo_entries_removed"] == 1
    assert report["audit_entries_removed"] >= 1  # the deletion, with its note

    assert client.post("/api/v1/moderation/undo", headers=admin).status_code == 409
    exported = client.post("/api/v1/privacy/export", json={"email": EMAIL}, headers=admin)
    assert exported.get_json()["count"] == 0
    everything = dump_everything(redis)
    for trace in [encrypted, runtime.vault.digest(EMAIL), "Zebra", "reader asked by phone"]:
        assert trace not in everything, trace


def test_erasure_takes_the_reader_out_of_a_bulk_undo_and_keeps_the_rest(
    client: FlaskClient, settings: Settings, redis: redis_lib.Redis
) -> None:
    runtime = Runtime(settings)
    admin = {"Authorization": "Bearer " + create_token(runtime.store, "dpo", "admin")}
    ids = {}
    for email in (EMAIL, OTHER):
        body = {"post_id": "p-bulk", "comment": f"Bulk remark by {email[:4]}.", "author": "B"}
        ids[email] = client.post("/api/v1/comments", json={**body, "email": email}).get_json()["id"]
    client.post(
        "/api/v1/moderation/bulk",
        json={"action": "delete", "ids": list(ids.values())},
        headers=admin,
    )
    report = client.post("/api/v1/privacy/erase", json={"email": EMAIL}, headers=admin).get_json()
    assert report["undo_entries_removed"] == 1
    undone = client.post("/api/v1/moderation/undo", headers=admin).get_json()
    assert list(undone["results"]) == [ids[OTHER]]
    assert runtime.store.get(ids[OTHER]) is not None and runtime.store.get(ids[EMAIL]) is None
    assert runtime.vault.digest(EMAIL) not in dump_everything(redis)


def test_erasure_has_redis_rewrite_its_append_only_file_so_the_text_leaves_the_disk(
    client: FlaskClient, settings: Settings, redis: redis_lib.Redis, redis_server: EmbeddedRedis
) -> None:
    runtime = Runtime(settings)
    admin = {"Authorization": "Bearer " + create_token(runtime.store, "dpo", "admin")}
    marker = "Quokka-" + str(time.time_ns())  # unique text, to search the files for
    body = {"post_id": "p-aof", "comment": f"{marker} remark.", "author": "E", "email": EMAIL}
    assert client.post("/api/v1/comments", json=body).status_code == 202

    def on_disk() -> bool:
        files = (redis_server.directory / "appendonlydir").glob("*")
        return any(marker.encode() in path.read_bytes() for path in files if path.is_file())

    def rewriting() -> bool:
        info = redis.info("persistence")
        return bool(info["aof_rewrite_in_progress"] or info["aof_rewrite_scheduled"])

    wait_for(lambda: not rewriting(), timeout=10)
    assert on_disk()  # the log holds what was written, until it is rewritten
    report = client.post("/api/v1/privacy/erase", json={"email": EMAIL}, headers=admin)
    assert report.get_json()["storage_rewrite"] in ("started", "busy")
    if report.get_json()["storage_rewrite"] == "busy":  # another test's rewrite was running
        wait_for(lambda: not rewriting(), timeout=10)
        assert runtime.store.rewrite_persistence() == "started"
    wait_for(lambda: not rewriting() and not on_disk(), timeout=10)


def test_privacy_requests_need_a_valid_address(client: FlaskClient, settings: Settings) -> None:
    admin = {"Authorization": "Bearer " + create_token(Runtime(settings).store, "dpo", "admin")}
    for body in ({}, {"email": ""}, {"email": "no-at-sign"}, {"email": ["x@y.org"]}):
        response = client.post("/api/v1/privacy/erase", json=body, headers=admin)
        assert response.status_code == 422
        assert "email" in response.get_json()["errors"]
    assert client.post("/api/v1/privacy/erase", json={"email": OTHER}).status_code == 401


def test_a_chunked_request_over_the_size_limit_is_413_and_erases_nobody(
    settings: Settings, redis: redis_lib.Redis
) -> None:
    """Without Content-Length the body used to be read up to the limit and parsed as if it
    were complete: an address cut short there could name another reader, who was erased."""
    client = client_for(settings, max_content_length=1024)
    admin = {"Authorization": "Bearer " + create_token(Runtime(settings).store, "dpo", "admin")}
    kept = client.post(
        "/api/v1/comments",
        json={"post_id": "p1", "comment": "Keep this one.", "author": "Kim", "email": OTHER},
    ).get_json()["id"]
    # The request is about OTHER + ".uk"; its first 1,024 bytes end with OTHER.
    tail = "&" + urlencode({"email": OTHER})
    head = "reason=" + "x" * (1024 - len("reason=") - len(tail))
    body = (head + tail + ".uk").encode()
    assert len(body) == 1027 and urlencode({"email": OTHER + ".uk"}) in body.decode()
    form = "application/x-www-form-urlencoded"
    for path in ("/api/v1/privacy/export", "/api/v1/privacy/erase"):
        response = post_chunked(client, path, body, form, **admin)
        assert response.status_code == 413, (path, response.get_data(as_text=True))
        assert response.mimetype == "application/problem+json"
    padded = json.dumps({"email": OTHER + ".uk", "reason": "x" * 1024}).encode()
    response = post_chunked(client, "/api/v1/privacy/erase", padded, "application/json", **admin)
    assert response.status_code == 413
    assert redis.exists(f"mod:c:{kept}")
    assert not [e for e in redis.xrange("mod:audit") if "erase" in e[1]["entry"]]
    # Within the limit a chunked request is read whole, as before.
    whole = post_chunked(client, "/api/v1/privacy/export", tail[1:].encode(), form, **admin)
    assert whole.status_code == 200 and whole.get_json()["count"] == 1


def test_retention_expires_rejected_comments_and_old_audit_entries(
    client: FlaskClient, settings: Settings, redis: redis_lib.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    runtime = Runtime(settings)
    store = runtime.store
    # Submitted 29 days ago: a day inside the default period for rejected and spam comments.
    submitted = time.time_ns() // 1000 - 29 * DAY_US
    with monkeypatch.context() as past:
        past.setattr("workers.store.now_us", lambda: submitted)
        ids = [
            client.post(
                "/api/v1/comments",
                json={"post_id": "p", "comment": f"Comment {n}", "author": "A", "email": OTHER},
            ).get_json()["id"]
            for n in range(3)
        ]
    assert {store.get(i)["created_us"] for i in ids} == {submitted}
    for comment_id, queue in zip(ids, ("spam", "rejected", "approved"), strict=True):
        store.transition(
            store.get(comment_id),
            queue,
            allowed_states=None,
            fields={"state": "moderated"},
            audit={"actor": "t", "action": queue},
        )
    assert redis.xlen("mod:audit") == 3
    trails = {i: store.audit_trail(i) for i in ids}
    time.sleep(0.01)  # the audit cutoff has millisecond resolution
    # The documented periods (30 days, 365 days) keep everything younger: the moderators'
    # spam and rejected queues, and what the audit log says about them.
    assert (settings.retention_rejected_days, settings.retention_audit_days) == (30, 365)
    report = purge_expired(
        store,
        rejected_days=settings.retention_rejected_days,
        audit_days=settings.retention_audit_days,
    )
    assert report == {"comments_deleted": 0, "audit_entries_trimmed": 0}
    assert [store.get(i)["queue"] for i in ids] == ["spam", "rejected", "approved"]
    assert {i: store.audit_trail(i) for i in ids} == trails
    assert [json.loads(e["entry"])["action"] for _, e in redis.xrange("mod:audit")] == [
        "spam",
        "rejected",
        "approved",
    ]
    report = purge_expired(store, rejected_days=0, audit_days=0)
    assert report["comments_deleted"] == 2
    assert store.get(ids[0]) is None and store.get(ids[1]) is None
    assert store.get(ids[2])["queue"] == "approved"  # published comments are kept
    assert report["audit_entries_trimmed"] == 3
    assert [json.loads(e["entry"])["action"] for _, e in redis.xrange("mod:audit")] == [
        "expire",
        "expire",
    ]


def test_erasure_removes_duplicate_fingerprints_so_a_resubmission_is_new(
    settings: Settings, redis: redis_lib.Redis
) -> None:
    """With duplicate detection on, erasure leaves no fingerprint: the same client sending
    the same text again is a new comment, not a 409 naming the erased one."""

    client = client_for(settings, duplicate_window_seconds=600)
    runtime = Runtime(settings)
    admin = {"Authorization": "Bearer " + create_token(runtime.store, "dpo", "admin")}
    reader = {"REMOTE_ADDR": "203.0.113.50"}
    body = {"post_id": "p-dup", "comment": "Quokka sighting report.", "author": "Q", "email": EMAIL}
    first = client.post("/api/v1/comments", json=body, environ_base=reader)
    assert client.post("/api/v1/comments", json=body, environ_base=reader).status_code == 409
    assert len(list(redis.scan_iter("mod:dup:*"))) == 1

    erased = client.post("/api/v1/privacy/erase", json={"email": EMAIL}, headers=admin)
    assert erased.get_json()["comments_deleted"] == 1
    assert list(redis.scan_iter("mod:dup:*")) == []
    everything = dump_everything(redis)
    for trace in [runtime.vault.digest(EMAIL), "Quokka"]:
        assert trace not in everything, trace
    # Celery's queued scoring message may still name the id (a no-op for a missing comment).
    ours = "\n".join(line for line in everything.splitlines() if line.startswith("mod:"))
    assert first.get_json()["id"] not in ours
    again = client.post("/api/v1/comments", json=body, environ_base=reader)
    assert again.status_code == 202 and again.get_json()["id"] != first.get_json()["id"]


def test_erasure_takes_the_comments_out_of_the_repeated_text_count(
    settings: Settings, redis: redis_lib.Redis
) -> None:
    """The repeated-text index names comment ids; an erased reader's must leave it, and a
    later copy of the text no longer counts theirs."""
    from service import create_app

    repeat = settings.with_overrides(repeat_window_seconds=3600)
    client = create_app(repeat, configure_logs=False).test_client()
    runtime = Runtime(repeat)
    admin = {"Authorization": "Bearer " + create_token(runtime.store, "dpo", "admin")}
    text = "Platypus colony relocation notes: see the wetland survey for details."
    ids = [
        client.post(
            "/api/v1/comments",
            json={"post_id": f"p{n}", "comment": text, "author": "P", "email": email},
        ).get_json()["id"]
        for n, email in enumerate([EMAIL, EMAIL, OTHER])
    ]
    # The erased reader's two copies are one (author, article) pair each: 0, then 1.
    assert [runtime.store.get(i)["repeats"] for i in ids] == [0, 1, 2]

    erased = client.post("/api/v1/privacy/erase", json={"email": EMAIL}, headers=admin)
    assert erased.get_json()["comments_deleted"] == 2
    ours = "\n".join(
        line for line in dump_everything(redis).splitlines() if line.startswith("mod:")
    )
    assert ids[0] not in ours and ids[1] not in ours
    assert runtime.vault.digest(EMAIL) not in ours
    later = client.post(
        "/api/v1/comments",
        json={"post_id": "p9", "comment": text, "author": "R", "email": "r@example.org"},
    ).get_json()["id"]
    assert runtime.store.get(later)["repeats"] == 1  # only the kept reader's copy


def test_addresses_equal_only_under_case_folding_are_different_readers(
    client: FlaskClient, settings: Settings
) -> None:
    """'straße@' and 'strasse@' are two mailboxes: exporting or erasing one never reaches
    the other's comments; ASCII case still does not matter (existing digests unchanged)."""
    import hashlib
    import hmac

    runtime = Runtime(settings)
    admin = {"Authorization": "Bearer " + create_token(runtime.store, "dpo", "admin")}
    body = {"post_id": "p-ss", "comment": "Street names are hard.", "author": "S"}
    mine = client.post("/api/v1/comments", json={**body, "email": "straße@example.com"})
    assert mine.status_code == 202
    comment_id = mine.get_json()["id"]

    def export(email: str) -> list[str]:
        found = client.post("/api/v1/privacy/export", json={"email": email}, headers=admin)
        return [c["id"] for c in found.get_json()["comments"]]

    assert export("strasse@example.com") == []
    erased = client.post(
        "/api/v1/privacy/erase", json={"email": "strasse@example.com"}, headers=admin
    )
    assert erased.get_json()["comments_deleted"] == 0
    assert runtime.store.get(comment_id) is not None
    assert export("straße@example.com") == [comment_id]
    assert export("Straße@Example.com") == [comment_id]
    # Digests of ASCII addresses are what they were (case-insensitive, same HMAC input).
    expected = hmac.new(b"test-hmac-key", b"ann@example.com", hashlib.sha256).hexdigest()
    assert runtime.vault.digest(" Ann@Example.COM ") == expected


def test_comments_filed_under_the_old_case_folded_digest_are_exported_and_erased(
    client: FlaskClient, settings: Settings, redis: redis_lib.Redis
) -> None:
    """Stored before digests were lower-cased: "straße" was filed as "strasse". Export and
    erasure still find it, and never take the real "strasse" reader's comment with it."""
    runtime = Runtime(settings)
    admin = {"Authorization": "Bearer " + create_token(runtime.store, "dpo", "admin")}
    body = {"post_id": "p-old", "author": "S"}
    old = client.post(
        "/api/v1/comments", json={**body, "comment": "Old one.", "email": "straße@example.com"}
    ).get_json()["id"]
    other = client.post(
        "/api/v1/comments", json={**body, "comment": "Other.", "email": "strasse@example.com"}
    ).get_json()["id"]
    # Re-file the first as the old code did: under the case-folded address's digest.
    legacy = runtime.vault.digest("strasse@example.com")
    current = runtime.vault.digest("straße@example.com")
    redis.hset(f"mod:c:{old}", "email_digest", legacy)
    redis.zadd(f"mod:author:{legacy}", {old: redis.zscore(f"mod:author:{current}", old)})
    redis.delete(f"mod:author:{current}")

    def export(email: str) -> list[str]:
        found = client.post("/api/v1/privacy/export", json={"email": email}, headers=admin)
        return sorted(c["id"] for c in found.get_json()["comments"])

    assert export("straße@example.com") == [old]
    assert export("strasse@example.com") == [other]
    erased = client.post(
        "/api/v1/privacy/erase", json={"email": "straße@example.com"}, headers=admin
    )
    assert erased.get_json()["comment_ids"] == [old]
    assert runtime.store.get(old) is None and runtime.store.get(other) is not None
    assert export("strasse@example.com") == [other]


def test_after_an_email_key_rotation_old_addresses_still_open_and_new_ones_use_the_new_key(
    settings: Settings, redis: redis_lib.Redis
) -> None:
    """MODERATION_EMAIL_ENCRYPTION_KEYS: the first key encrypts, all of them decrypt. After
    "new,old" replaces "old", an admin still reads every stored address."""
    from cryptography.fernet import Fernet, InvalidToken

    old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    before = settings.with_overrides(email_encryption_keys=(old,))
    address = "rotated.reader@example.org"  # as stored: intake lower-cases the domain
    body = {"post_id": "p-keys", "author": "K", "email": address}
    stored = client_for(before).post(
        "/api/v1/comments", json={**body, "comment": "Written under the old key."}
    )
    assert stored.status_code == 202
    first = stored.get_json()["id"]
    runtime = Runtime(before)
    old_token = runtime.store.get(first)["email_enc"].encode()
    assert Fernet(old.encode()).decrypt(old_token).decode() == address

    rotated = client_for(settings, email_encryption_keys=(new, old))
    admin = {"Authorization": "Bearer " + create_token(runtime.store, "dpo", "admin")}
    revealed = rotated.get(f"/api/v1/moderation/comments/{first}/email", headers=admin)
    assert revealed.status_code == 200 and revealed.get_json()["email"] == address

    second = rotated.post(
        "/api/v1/comments", json={**body, "comment": "Written under the new key."}
    ).get_json()["id"]
    encrypted = runtime.store.get(second)["email_enc"].encode()
    assert Fernet(new.encode()).decrypt(encrypted).decode() == address
    with pytest.raises(InvalidToken):
        Fernet(old.encode()).decrypt(encrypted)

    exported = rotated.post("/api/v1/privacy/export", json={"email": address}, headers=admin)
    assert exported.status_code == 200
    assert {c["id"]: c["email"] for c in exported.get_json()["comments"]} == {
        first: address,
        second: address,
    }


def test_erasure_finds_the_readers_entries_past_the_first_thousand_of_the_audit_log(
    client: FlaskClient, settings: Settings, redis: redis_lib.Redis
) -> None:
    """The global log is read a page at a time; entries far down it are found all the same."""
    runtime = Runtime(settings)
    admin = {"Authorization": "Bearer " + create_token(runtime.store, "dpo", "admin")}
    for n in range(2100):
        runtime.store.append_audit_event({"actor": "operator", "action": "filler", "n": n})
    body = {"post_id": "p-far", "comment": "Late remark.", "author": "E", "email": EMAIL}
    comment_id = client.post("/api/v1/comments", json=body).get_json()["id"]
    for _ in range(3):
        client.post(
            f"/api/v1/moderation/comments/{comment_id}/notes", json={"note": "n"}, headers=admin
        )
    report = client.post("/api/v1/privacy/erase", json={"email": EMAIL}, headers=admin).get_json()
    assert report["audit_entries_removed"] == 3
    assert not [e for e in redis.xrange("mod:audit") if comment_id in e[1]["entry"]]
    assert redis.xlen("mod:audit") == 2100 + 1  # the fillers and the erasure's own entry
