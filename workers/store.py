"""Everything stored in Redis: key names, TTLs, and the atomic transitions between states.

No other module builds a key name. Comments live in one hash each; sorted sets index them
by moderation queue, by post (approved only), by author digest and by "not yet scored".
Every state change of a comment runs in one Lua script, so indexes never disagree.
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import redis

PREFIX = "mod:"
QUEUES = ("pending", "approved", "rejected", "spam")
Queue = Literal["pending", "approved", "rejected", "spam"]
# Processing state of a comment: "queued" until scored, then "scored" or "moderated".
STATE_QUEUED = "queued"
STATE_SCORED = "scored"
STATE_MODERATED = "moderated"

COMMENT_ID_ALPHABET = "0123456789abcdef"
COMMENT_ID_LENGTH = 24


# -- key names -------------------------------------------------------------------------------


def comment_key(comment_id: str) -> str:
    return f"{PREFIX}c:{comment_id}"


def audit_key(comment_id: str) -> str:
    return f"{PREFIX}c:{comment_id}:audit"


def queue_key(queue: str) -> str:
    return f"{PREFIX}q:{queue}"


def post_key(post_id: str) -> str:
    return f"{PREFIX}post:{post_id}:approved"


def author_key(email_digest: str) -> str:
    return f"{PREFIX}author:{email_digest}"


def unscored_key() -> str:
    return f"{PREFIX}unscored"


def labeled_key() -> str:
    return f"{PREFIX}labeled"


def new_comment_id() -> str:
    """Return a random, URL-safe comment id."""
    return secrets.token_hex(COMMENT_ID_LENGTH // 2)


def is_comment_id(value: str) -> bool:
    """Return True when value has the shape of a comment id."""
    return len(value) == COMMENT_ID_LENGTH and all(c in COMMENT_ID_ALPHABET for c in value)


def now_us() -> int:
    return time.time_ns() // 1000


def iso_now() -> str:
    """Return the current UTC time as an ISO 8601 string with milliseconds."""
    return _iso(now_us())


# -- records ---------------------------------------------------------------------------------

# Fields holding JSON; everything else is a plain string.
JSON_FIELDS = ("categories", "reasons", "decision_reasons", "signals")


@dataclass(frozen=True)
class NewComment:
    """A validated submission, ready to store (email already encrypted and digested)."""

    post_id: str
    author: str
    comment: str
    email_enc: str
    email_digest: str
    url: str = ""
    parent_id: str = ""
    signals: Mapping[str, Any] | None = None
    request_id: str = ""
    ip_digest: str = ""


def decode_record(raw: Mapping[bytes | str, bytes | str]) -> dict[str, Any]:
    """Turn a raw Redis hash into a dict with JSON fields parsed and numbers typed."""
    record: dict[str, Any] = {}
    for key, value in raw.items():
        k = key.decode() if isinstance(key, bytes) else key
        v = value.decode() if isinstance(value, bytes) else value
        record[k] = v
    for name in JSON_FIELDS:
        if name in record:
            try:
                record[name] = json.loads(record[name])
            except ValueError:
                record[name] = None
    for name in ("spam", "toxic"):
        if record.get(name, "") != "":
            record[name] = float(record[name])
        else:
            record[name] = None
    for name in ("created_us", "attempts"):
        if name in record:
            record[name] = int(record[name])
    return record


# -- atomic transitions ----------------------------------------------------------------------

# KEYS: 1 comment, 2 unscored, 3-6 queues (pending, approved, rejected, spam), 7 post list,
#       8 labeled set, 9 audit list
# ARGV: 1 allowed states ("*" = any), 2 new queue, 3 comment id, 4 label it ("1"/"0"),
#       5 audit entry JSON or "", 6 now (us), 7.. field/value pairs to set
_TRANSITION = """
if redis.call('EXISTS', KEYS[1]) == 0 then return {0, ''} end
local state = redis.call('HGET', KEYS[1], 'state') or ''
if ARGV[1] ~= '*' then
  local ok = false
  for s in string.gmatch(ARGV[1], '[^,]+') do if s == state then ok = true end end
  if not ok then return {-1, state} end
end
local id = ARGV[3]
local created = redis.call('HGET', KEYS[1], 'created_us')
local previous = redis.call('HGET', KEYS[1], 'queue') or ''
redis.call('ZREM', KEYS[2], id)
local slot = {pending=3, approved=4, rejected=5, spam=6}
for _, i in pairs(slot) do redis.call('ZREM', KEYS[i], id) end
redis.call('ZADD', KEYS[slot[ARGV[2]]], created, id)
if ARGV[2] == 'approved' then
  redis.call('ZADD', KEYS[7], created, id)
else
  redis.call('ZREM', KEYS[7], id)
end
if ARGV[4] == '1' then redis.call('ZADD', KEYS[8], ARGV[6], id) end
if ARGV[5] ~= '' then redis.call('RPUSH', KEYS[9], ARGV[5]) end
if #ARGV >= 7 then redis.call('HSET', KEYS[1], unpack(ARGV, 7)) end
redis.call('HSET', KEYS[1], 'queue', ARGV[2])
return {1, previous}
"""


@dataclass(frozen=True)
class TransitionResult:
    """Outcome of a state change: applied, missing, or refused because of the current state."""

    applied: bool
    found: bool
    previous: str  # previous queue when applied; current state when refused

    @property
    def refused(self) -> bool:
        return self.found and not self.applied


def public_status(queue: str) -> str:
    """Map a moderation queue to the status readers see."""
    return "rejected" if queue == "spam" else queue


class CommentStore:
    """All reads and writes of comments in Redis."""

    def __init__(self, client: redis.Redis) -> None:
        self.redis = client
        self._transition = client.register_script(_TRANSITION)

    # intake ---------------------------------------------------------------------------------

    def add(self, new: NewComment) -> tuple[str, int]:
        """Store a new comment as queued for scoring; return (id, created_us)."""
        comment_id = new_comment_id()
        created = now_us()
        record = {
            "id": comment_id,
            "post_id": new.post_id,
            "parent_id": new.parent_id,
            "author": new.author,
            "url": new.url,
            "comment": new.comment,
            "email_enc": new.email_enc,
            "email_digest": new.email_digest,
            "created_us": created,
            "created_at": _iso(created),
            "state": STATE_QUEUED,
            "queue": "pending",
            "status": "pending",
            "signals": json.dumps(dict(new.signals or {})),
            "request_id": new.request_id,
            "ip_digest": new.ip_digest,
            "attempts": 0,
        }
        pipe = self.redis.pipeline(transaction=True)
        pipe.hset(comment_key(comment_id), mapping=record)
        pipe.zadd(unscored_key(), {comment_id: created})
        pipe.zadd(author_key(new.email_digest), {comment_id: created})
        pipe.execute()
        return comment_id, created

    # reads ----------------------------------------------------------------------------------

    def get(self, comment_id: str) -> dict[str, Any] | None:
        """Return one comment record, or None."""
        raw = self.redis.hgetall(comment_key(comment_id))
        return decode_record(raw) if raw else None

    def get_many(self, ids: Sequence[str]) -> list[dict[str, Any]]:
        """Return the records of ids that still exist, in the given order."""
        if not ids:
            return []
        pipe = self.redis.pipeline(transaction=False)
        for comment_id in ids:
            pipe.hgetall(comment_key(comment_id))
        return [decode_record(raw) for raw in pipe.execute() if raw]

    def list_post(
        self, post_id: str, *, after: int | None, limit: int
    ) -> tuple[list[dict[str, Any]], int | None]:
        """Return approved comments of a post, oldest first, and the next cursor."""
        low = f"({after}" if after is not None else "-inf"
        ids = self.redis.zrangebyscore(post_key(post_id), low, "+inf", start=0, num=limit + 1)
        return self._page([_s(i) for i in ids], limit, newest_first=False)

    def list_queue(
        self, queue: str, *, before: int | None, limit: int, newest_first: bool = True
    ) -> tuple[list[dict[str, Any]], int | None]:
        """Return a moderation queue page; the cursor is a creation time, stable under inserts."""
        if newest_first:
            high = f"({before}" if before is not None else "+inf"
            ids = self.redis.zrevrangebyscore(
                queue_key(queue), high, "-inf", start=0, num=limit + 1
            )
        else:
            low = f"({before}" if before is not None else "-inf"
            ids = self.redis.zrangebyscore(queue_key(queue), low, "+inf", start=0, num=limit + 1)
        return self._page([_s(i) for i in ids], limit, newest_first=newest_first)

    def _page(
        self, ids: list[str], limit: int, *, newest_first: bool
    ) -> tuple[list[dict[str, Any]], int | None]:
        records = self.get_many(ids[:limit])
        cursor = records[-1]["created_us"] if len(ids) > limit and records else None
        return records, cursor

    def queue_sizes(self) -> dict[str, int]:
        """Return how many comments each queue holds, plus those awaiting scoring."""
        pipe = self.redis.pipeline(transaction=False)
        for queue in QUEUES:
            pipe.zcard(queue_key(queue))
        pipe.zcard(unscored_key())
        counts = pipe.execute()
        sizes = dict(zip(QUEUES, counts, strict=False))
        sizes["unscored"] = counts[-1]
        return sizes

    def audit_trail(self, comment_id: str) -> list[dict[str, Any]]:
        """Return the audit entries of a comment, oldest first."""
        return [json.loads(e) for e in self.redis.lrange(audit_key(comment_id), 0, -1)]

    # transitions ----------------------------------------------------------------------------

    def transition(
        self,
        comment: Mapping[str, Any],
        queue: str,
        *,
        allowed_states: Iterable[str] | None,
        fields: Mapping[str, Any],
        label_it: bool = False,
        audit: Mapping[str, Any] | None = None,
    ) -> TransitionResult:
        """Move a comment to a queue and set fields, atomically, if its state allows it."""
        if queue not in QUEUES:
            raise ValueError(f"unknown queue {queue!r}")
        comment_id = str(comment["id"])
        now = now_us()
        values: dict[str, Any] = {**fields, "status": public_status(queue)}
        argv: list[Any] = [
            ",".join(allowed_states) if allowed_states is not None else "*",
            queue,
            comment_id,
            "1" if label_it else "0",
            json.dumps({"at": _iso(now), **audit}) if audit else "",
            now,
        ]
        for key, value in values.items():
            argv.extend([key, json.dumps(value) if key in JSON_FIELDS else _field(value)])
        keys = [
            comment_key(comment_id),
            unscored_key(),
            *(queue_key(q) for q in QUEUES),
            post_key(str(comment["post_id"])),
            labeled_key(),
            audit_key(comment_id),
        ]
        code, detail = self._transition(keys=keys, args=argv)
        return TransitionResult(applied=code == 1, found=code != 0, previous=_s(detail))

    def bump_attempts(self, comment_id: str) -> int:
        """Count one more scoring attempt; return the total."""
        return int(self.redis.hincrby(comment_key(comment_id), "attempts", 1))

    # sweep ----------------------------------------------------------------------------------

    def stale_unscored(self, older_than_us: int, limit: int = 1000) -> list[str]:
        """Return ids accepted before older_than_us that are still unscored."""
        ids = self.redis.zrangebyscore(unscored_key(), "-inf", older_than_us, start=0, num=limit)
        return [_s(i) for i in ids]

    def touch_unscored(self, ids: Sequence[str]) -> None:
        """Mark ids as re-enqueued now, so the next sweep waits again before retrying them."""
        if ids:
            stamp = now_us()
            # XX: never resurrect an id that was scored in the meantime.
            self.redis.zadd(unscored_key(), dict.fromkeys(ids, stamp), xx=True)

    # labels ---------------------------------------------------------------------------------

    def labeled_ids(self, *, since_us: int | None = None) -> list[str]:
        """Return ids of comments a moderator decided, oldest decision first."""
        low = since_us if since_us is not None else "-inf"
        return [_s(i) for i in self.redis.zrangebyscore(labeled_key(), low, "+inf")]

    def ping(self) -> bool:
        """Return True when Redis answers."""
        return bool(self.redis.ping())


def _iso(us: int) -> str:
    seconds, micro = divmod(us, 1_000_000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{micro // 1000:03d}Z"


def _s(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _field(value: Any) -> str | int | float:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, int | float | str):
        return value
    return json.dumps(value)
