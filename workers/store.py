"""Everything stored in Redis: key names, TTLs, and the atomic transitions between states.

No other module builds a key name. Comments live in one hash each; sorted sets index them
by moderation queue, by post (approved only), by author digest and by "not yet scored".
Every state change of a comment runs in one Lua script, so indexes never disagree.
"""

from __future__ import annotations

import hashlib
import json
import re
import secrets
import time
import unicodedata
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import redis

PREFIX = "mod:"
# Flask-Limiter's counters (service/abuse.py) live under this prefix; erasure finds them by
# the author digest in their names.
RATE_LIMIT_PREFIX = "mod-rl"
QUEUES = ("pending", "approved", "rejected", "spam")
# Errors after which Redis may answer again shortly (a lost connection, a timeout, a full
# Redis under noeviction, a replica after a failover): retry later, never blame the comment.
TRANSIENT_STORE_ERRORS: tuple[type[Exception], ...] = (
    redis.exceptions.ConnectionError,
    redis.exceptions.TimeoutError,
    redis.exceptions.OutOfMemoryError,  # type: ignore[attr-defined]  # missing from the stubs
    redis.exceptions.ReadOnlyError,
)
Queue = Literal["pending", "approved", "rejected", "spam"]
# How many index entries one moderation-queue page examines at most: filters may reject most
# of a long queue, and a request must stay bounded (the cursor then continues the scan).
QUEUE_SCAN_LIMIT = 5000
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


SCORE_INDEXES = ("spam", "toxic", "uncertainty")


def score_index_key(queue: str, index: str) -> str:
    """Return the key of a queue's index ordered by a score (spam, toxic or uncertainty)."""
    return f"{PREFIX}q:{queue}:by:{index}"


def audit_stream_key() -> str:
    return f"{PREFIX}audit"


def tokens_key() -> str:
    return f"{PREFIX}tokens"


def undo_key(moderator: str) -> str:
    return f"{PREFIX}undo:{moderator}"


def duplicate_key(fingerprint: str) -> str:
    return f"{PREFIX}dup:{fingerprint}"


def repeat_key(text_digest: str) -> str:
    """Return the key of the comments (by arrival time) whose text folds to this digest."""
    return f"{PREFIX}repeat:{text_digest}"


# Texts with fewer letters and digits than this are never counted as repeats: stock phrases
# ("Thank you for this article, very informative!") are written independently by many
# readers; copy-and-paste campaigns carry a pitch.
REPEAT_MIN_CHARS = 50
_NOT_ALNUM_RE = re.compile(r"[\W_]+")


def form_token_key(token_id: str) -> str:
    """Return the key that marks a form token as used (tokens are single-use)."""
    return f"{PREFIX}formtok:{token_id}"


# How long a used form token is remembered: longer than any reader keeps a tab open.
FORM_TOKEN_USED_TTL = 31 * 86400


def webhook_dedupe_key(comment_id: str, event: str) -> str:
    return f"{PREFIX}webhook:{comment_id}:{event}"


def labeled_key() -> str:
    return f"{PREFIX}labeled"


def outbox_key() -> str:
    """Return the key of the webhook events written with their changes, not yet queued."""
    return f"{PREFIX}outbox"


# Why a comment disappeared (its comment.deleted event says): a moderator deleted it, its
# author's data was erased on request, or the retention period of rejected comments ended.
DELETION_REASONS = ("deleted", "erased", "expired")


def deletion_event_id(comment_id: str) -> str:
    """Return a new event id for a comment's deletion (its audit trail is gone with it)."""
    return f"{comment_id}.deleted.{uuid.uuid4().hex[:16]}"


def operation_key(operation_id: str) -> str:
    """Return the key that keeps an applied transition's reply, for a replay of the same call."""
    return f"{PREFIX}op:{operation_id}"


# How long an applied transition's reply is kept for a replay: redis-py resends a call whose
# reply was lost within its retries (runtime.COMMAND_RETRY: two, each after at most a 5 s
# socket timeout and a 0.2 s wait), well inside this.
OPERATION_REPLY_TTL = 60


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


def decode_record(raw: Mapping[Any, Any]) -> dict[str, Any]:
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
    for name in ("created_us", "attempts", "repeats"):
        if name in record:
            record[name] = int(record[name])
    return record


# -- atomic transitions ----------------------------------------------------------------------

# Fields a transition reports back as they were before it, so a moderator's action can be undone.
UNDO_FIELDS = (
    "queue",
    "status",
    "state",
    "decided_by",
    "moderated_by",
    "moderated_at",
    "moderator_action",
    "decision_id",  # a fresh id per moderator action: undo applies only while it is current
)

# KEYS: 1 comment, 2 unscored, 3 post list, 4 labeled set, 5 audit list, 6 audit stream,
#       then for each queue in QUEUES order: created index, spam, toxic, uncertainty indexes,
#       then 23 the webhook outbox, 24 this call's operation key (a fresh id per call)
# ARGV: 1 allowed states ("*" = any; "@field=value": only while that field holds value),
#       2 new queue, 3 comment id, 4 label it ("1"/"0"),
#       5 audit entry JSON or "" (the comment's trail), 6 now (us), 7 audit max length,
#       8 the entry as the global log keeps it (no free text), 9 "1" to record the change's
#       webhook event in the outbox, 10 how long to keep the reply for a replay (s),
#       11.. field/value pairs
# Returns {1, the UNDO_FIELDS as they were..., the event id or ""} when applied.
_TRANSITION = """
-- The same call again (redis-py resends it when its reply was lost): answer what the first
-- run answered and apply nothing twice (a moderator's move has no state guard to stop it).
local done = redis.call('GET', KEYS[24])
if done then return cjson.decode(done) end
if redis.call('EXISTS', KEYS[1]) == 0 then return {0, ''} end
local state = redis.call('HGET', KEYS[1], 'state') or ''
if string.sub(ARGV[1], 1, 1) == '@' then
  local eq = string.find(ARGV[1], '=', 1, true)
  local have = redis.call('HGET', KEYS[1], string.sub(ARGV[1], 2, eq - 1)) or ''
  if have ~= string.sub(ARGV[1], eq + 1) then return {-1, state} end
elseif ARGV[1] ~= '*' then
  local ok = false
  for s in string.gmatch(ARGV[1], '[^,]+') do if s == state then ok = true end end
  if not ok then return {-1, state} end
end
local id = ARGV[3]
-- Read before any write: Redis keeps a script's earlier writes when a later command fails, so
-- a record that lost its arrival time must not fail half-way (it would leave every queue).
local created = tonumber(redis.call('HGET', KEYS[1], 'created_us') or '') or tonumber(ARGV[6])
local before = redis.call('HMGET', KEYS[1], %s)
redis.call('ZREM', KEYS[2], id)
local queues = {'pending', 'approved', 'rejected', 'spam'}
local target = 0
for q = 1, 4 do
  for j = 0, 3 do redis.call('ZREM', KEYS[6 + (q - 1) * 4 + 1 + j], id) end
  if queues[q] == ARGV[2] then target = 6 + (q - 1) * 4 + 1 end
end
if #ARGV >= 11 then redis.call('HSET', KEYS[1], unpack(ARGV, 11)) end
-- Back to "queued" (an undo of a decision taken before scoring): unscored again, in this same
-- step, so the sweep sends it to a worker (score 0: due at once).
if redis.call('HGET', KEYS[1], 'state') == 'queued' then redis.call('ZADD', KEYS[2], 0, id) end
redis.call('HSET', KEYS[1], 'queue', ARGV[2])
local f = redis.call('HMGET', KEYS[1], 'created_us', 'spam', 'toxic', 'uncertainty')
redis.call('ZADD', KEYS[target], string.format('%d', created), id)
-- A comment without scores (scoring failed; decided before scoring) is in every sort too:
-- after all scored ones by spam or toxic (-1), before them by uncertainty (2: unknown).
local unscored = {-1, -1, 2}
for j = 2, 4 do
  local v = f[j]
  if not tonumber(v) then v = unscored[j - 1] end  -- none yet, or a mangled value
  redis.call('ZADD', KEYS[target + j - 1], v, id)
end
if ARGV[2] == 'approved' then
  redis.call('ZADD', KEYS[3], string.format('%d', created), id)
else
  redis.call('ZREM', KEYS[3], id)
end
if ARGV[4] == '1' then redis.call('ZADD', KEYS[4], ARGV[6], id) end
if ARGV[5] ~= '' then
  redis.call('RPUSH', KEYS[5], ARGV[5])
  redis.call('XADD', KEYS[6], 'MAXLEN', '~', ARGV[7], '*', 'entry', ARGV[8])
end
-- The change's webhook event, `{id}.{n}` with n the audit length after it, is recorded in
-- this same step: a crash or a failed publish after it cannot lose the event.
-- Score 0: due at once (a drain claims an entry by setting its score to a lease's end).
local event = ''
if ARGV[9] == '1' then
  event = id .. '.' .. redis.call('LLEN', KEYS[5])
  redis.call('ZADD', KEYS[23], 0, event)
end
local out = {1}
for i = 1, #before do out[i + 1] = before[i] or '' end
out[#before + 2] = event
redis.call('SET', KEYS[24], cjson.encode(out), 'EX', ARGV[10])
return out
""".replace("%s", ", ".join(f"'{name}'" for name in UNDO_FIELDS))

# Replaces the first list item equal to ARGV[1] by ARGV[2] (or removes it if ARGV[2] is "").
_REPLACE_LIST_ITEM = """
local items = redis.call('LRANGE', KEYS[1], 0, -1)
for i, v in ipairs(items) do
  if v == ARGV[1] then
    if ARGV[2] == '' then
      redis.call('LREM', KEYS[1], 1, v)
    else
      redis.call('LSET', KEYS[1], i - 1, ARGV[2])
    end
    return 1
  end
end
return 0
"""

# Deletes a comment and every index entry that names it. KEYS: 1-22 as for _TRANSITION, then
# 23 author index, 24 duplicate fingerprint, 25 repeat index of its text, 26 the webhook outbox,
# 27 this call's operation key (a replay returns the first run's reply, as for _TRANSITION).
# ARGV: 1 id, 2 audit entry JSON or "" (the trail), 3 audit max length, 4 "1" to delete the
#       fingerprint, 5 repeat member or "" (text too short to be indexed), 6 the entry as the
#       global log keeps it, 7 the deletion's reason to record its webhook event in the outbox
#       or "" (no webhook), 8 that event's id, 9 how long to keep the reply for a replay (s)
_DELETE = """
-- The same call again (its reply was lost): the first run's answer, so the moderator is told
-- it was deleted (not "not found") and the undo entry keeps the record and trail.
local done = redis.call('GET', KEYS[27])
if done then return cjson.decode(done) end
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
local id = ARGV[1]
redis.call('ZREM', KEYS[2], id)
redis.call('ZREM', KEYS[3], id)
redis.call('ZREM', KEYS[4], id)
for i = 7, 22 do redis.call('ZREM', KEYS[i], id) end
redis.call('ZREM', KEYS[23], id)
if ARGV[4] == '1' then redis.call('DEL', KEYS[24]) end
if ARGV[5] ~= '' then redis.call('ZREM', KEYS[25], ARGV[5]) end
local changes = redis.call('LLEN', KEYS[5])
if ARGV[2] ~= '' then
  redis.call('RPUSH', KEYS[5], ARGV[2])
  redis.call('XADD', KEYS[6], 'MAXLEN', '~', ARGV[3], '*', 'entry', ARGV[6])
end
-- The trail as it ends, the delete's own entry included, and the record as it was at the
-- delete (not as read before it): an undo of the delete restores both.
local trail = redis.call('LRANGE', KEYS[5], 0, -1)
local record = redis.call('HGETALL', KEYS[1])
-- The deletion's webhook event is recorded in this same step, with everything its delivery
-- needs (the record is gone after it): the deletion task's arguments, `after` being the
-- number of the comment's last change. A crash or a failed publish after it cannot lose it.
-- The comment's decision events still waiting (`{id}.{n}`, n up to `after`) go: their
-- delivery would find no comment and send nothing.
if ARGV[7] ~= '' then
  for n = 1, changes do redis.call('ZREM', KEYS[26], id .. '.' .. n) end
  local post = redis.call('HGET', KEYS[1], 'post_id') or ''
  redis.call('ZADD', KEYS[26], 0, cjson.encode({id, post, ARGV[7], ARGV[8], changes}))
end
redis.call('DEL', KEYS[1], KEYS[5])
local out = {1, changes, trail, record}
redis.call('SET', KEYS[27], cjson.encode(out), 'EX', ARGV[9])
return out
"""

# KEYS: 1 duplicate fingerprint, 2 comment, 3 unscored, 4 author index, 5 broker list (or ""),
#       6 repeat index of the folded text, 7 used-form-token marker
# ARGV: 1 id, 2 created (us), 3 duplicate window (s, 0 = off), 4 broker message or "",
#       5 repeat window (s, 0 = off), 6 repeat member (author digest + post),
#       7 used-token TTL (s, 0 = no token), 8.. field/value pairs
_ADD = """
-- Already stored: redis-py retried a call whose reply was lost. Nothing more to do (running
-- on would find its own duplicate fingerprint, or count the comment as its own repeat).
if redis.call('EXISTS', KEYS[2]) == 1 then return '' end
if ARGV[3] ~= '0' then
  local existing = redis.call('GET', KEYS[1])
  if existing then return existing end
  redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[3])
end
redis.call('HSET', KEYS[2], unpack(ARGV, 8))
if ARGV[7] ~= '0' and not redis.call('SET', KEYS[7], '1', 'NX', 'EX', ARGV[7]) then
  redis.call('HSET', KEYS[2], 'form_token_reused', '1')
end
if ARGV[5] ~= '0' then
  -- Other (author, article) pairs that posted this text within the window.
  local since = tonumber(ARGV[2]) - tonumber(ARGV[5]) * 1000000
  redis.call('ZREMRANGEBYSCORE', KEYS[6], '-inf', '(' .. string.format('%d', since))
  local others = redis.call('ZCARD', KEYS[6])
  if redis.call('ZSCORE', KEYS[6], ARGV[6]) then others = others - 1 end
  redis.call('HSET', KEYS[2], 'repeats', others)
  redis.call('ZADD', KEYS[6], ARGV[2], ARGV[6])
  redis.call('EXPIRE', KEYS[6], ARGV[5])
end
redis.call('ZADD', KEYS[3], ARGV[2], ARGV[1])
redis.call('ZADD', KEYS[4], ARGV[2], ARGV[1])
if ARGV[4] ~= '' then redis.call('LPUSH', KEYS[5], ARGV[4]) end
return ''
"""

# Drops ids from the unscored index, each only while its comment is missing or no longer
# queued: a worker read it decided, but an undo since may have made it queued again (and put
# it back in the index for the sweep). KEYS: 1 unscored index, 2.. the comments' hashes.
# ARGV: the ids, in the same order.
_FORGET_UNSCORED = """
local n = 0
for i = 2, #KEYS do
  if redis.call('HGET', KEYS[i], 'state') ~= 'queued' then
    n = n + redis.call('ZREM', KEYS[1], ARGV[i - 1])
  end
end
return n
"""

# Marks stale unscored ids as sent again by the sweep, each waiting twice as long as the last
# time before the next resend (first: base, then 2x, 4x ... up to cap), so a backlog that no
# worker drains gets a few copies of its messages, not one per sweep. Ids gone from the index
# are skipped; an id whose comment is gone leaves it. Returns the ids to send.
# KEYS: 1 unscored index, 2.. the comments' hashes. ARGV: 1 now, 2 base, 3 cap (us), 4.. ids
_TOUCH_UNSCORED = """
local send = {}
local now, base, cap = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
for i = 2, #KEYS do
  local id = ARGV[i + 2]
  if redis.call('ZSCORE', KEYS[1], id) then
    if redis.call('EXISTS', KEYS[i]) == 1 then
      local k = redis.call('HINCRBY', KEYS[i], 'resends', 1)
      local wait = math.min(base * 2 ^ (k - 1), cap)
      -- Due again once it is older than base: wait from now.
      redis.call('ZADD', KEYS[1], 'XX', string.format('%d', now + wait - base), id)
      send[#send + 1] = id
    else
      redis.call('ZREM', KEYS[1], id)
    end
  end
end
return send
"""

# Claims up to ARGV[3] outbox entries due by ARGV[1] (us): each is due again at ARGV[2], the
# lease's end, unless the drain that claimed it removes it first (after publishing it).
# KEYS: 1 outbox.
_CLAIM_OUTBOX = """
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, ARGV[3])
for _, event in ipairs(due) do redis.call('ZADD', KEYS[1], 'XX', ARGV[2], event) end
return due
"""

# Holds a queued comment for a moderator using only what a damaged record still has (the last
# resort when the ordinary hold failed on it, e.g. a field lost): pending queue and indexes,
# state and reason, unscored no more. KEYS: 1 comment, 2 unscored, 3-6 pending's created,
# spam, toxic and uncertainty indexes, 7 audit list, 8 audit stream, 9 the webhook outbox.
# ARGV: 1 id, 2 now (us), 3 decision label, 4 reasons JSON, 5 scored_at, 6 trail entry,
# 7 log entry, 8 log max length, 9 "1" to record the hold's webhook event (as _TRANSITION)
_HOLD_DAMAGED = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
if redis.call('HGET', KEYS[1], 'state') ~= 'queued' then return -1 end
redis.call('HSET', KEYS[1], 'state', 'scored', 'queue', 'pending', 'status', 'pending',
  'decision_label', ARGV[3], 'decision_reasons', ARGV[4], 'scored_at', ARGV[5],
  'decided_by', 'model')
redis.call('ZREM', KEYS[2], ARGV[1])
local created = tonumber(redis.call('HGET', KEYS[1], 'created_us') or '') or tonumber(ARGV[2])
redis.call('ZADD', KEYS[3], string.format('%d', created), ARGV[1])
redis.call('ZADD', KEYS[4], -1, ARGV[1])
redis.call('ZADD', KEYS[5], -1, ARGV[1])
redis.call('ZADD', KEYS[6], 2, ARGV[1])
redis.call('RPUSH', KEYS[7], ARGV[6])
redis.call('XADD', KEYS[8], 'MAXLEN', '~', ARGV[8], '*', 'entry', ARGV[7])
if ARGV[9] == '1' then
  redis.call('ZADD', KEYS[9], 0, ARGV[1] .. '.' .. redis.call('LLEN', KEYS[7]))
end
return 1
"""

# Stores a deleted comment again (undo of a delete): its record, author-index entry and trail,
# unless it exists already. That makes the restore's MULTI safe to resend after a lost reply
# (the transition in it answers a replay from its operation key): the trail is not pushed
# twice. KEYS: 1 comment, 2 author index, 3 audit list. ARGV: 1 id, 2 arrival (us), 3 "1" to
# index the author, 4 n, 5..4+n the trail entries, then field/value pairs.
_RESTORE = """
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
local n = tonumber(ARGV[4])
redis.call('HSET', KEYS[1], unpack(ARGV, 5 + n))
if ARGV[3] == '1' then redis.call('ZADD', KEYS[2], ARGV[2], ARGV[1]) end
for i = 5, 4 + n do redis.call('RPUSH', KEYS[3], ARGV[i]) end
return 1
"""

# Puts a restored comment's member back in its text's repeat index (undo of a delete), if it
# arrived within the window: never over a later arrival of the same (author, post), and with
# the index kept at least until this arrival leaves the window.
# KEYS: 1 repeat index. ARGV: 1 member, 2 arrival (us), 3 window (s), 4 now (us)
_RESTORE_REPEAT = """
local left = tonumber(ARGV[2]) + tonumber(ARGV[3]) * 1000000 - tonumber(ARGV[4])
if left <= 0 then return 0 end
local have = redis.call('ZSCORE', KEYS[1], ARGV[1])
if not have or tonumber(have) < tonumber(ARGV[2]) then
  redis.call('ZADD', KEYS[1], ARGV[2], ARGV[1])
end
local ms = math.ceil(left / 1000)
if redis.call('PTTL', KEYS[1]) < ms then redis.call('PEXPIRE', KEYS[1], ms) end
return 1
"""

# How many entries the global audit stream keeps at most (retention trims it by age too).
AUDIT_STREAM_MAX = 1_000_000
UNDO_DEPTH = 20
WEBHOOK_DEDUPE_TTL = 7 * 24 * 3600
UNDO_TTL_SECONDS = 7 * 24 * 3600


@dataclass(frozen=True)
class TransitionResult:
    """Outcome of a state change: applied, missing, or refused because of the current state."""

    applied: bool
    found: bool
    previous: str  # previous queue when applied; current state when refused
    before: dict[str, str] | None = None  # UNDO_FIELDS as they were, when applied
    event_id: str = ""  # the webhook event recorded in the outbox with the change, if any

    @property
    def refused(self) -> bool:
        return self.found and not self.applied


@dataclass(frozen=True)
class Deletion:
    """What deleting a comment took away with it."""

    # The number of its last change: its audit length before the delete, the ``<n>`` of its
    # webhook decision events, so a deletion event can say which changes it follows.
    changes: int
    # Its audit trail, oldest first, ending with the delete's own entry (when it has one).
    trail: list[dict[str, Any]]
    # The record as the delete found it (read in the same atomic step).
    record: dict[str, Any]
    # The comment.deleted event recorded in the outbox with the delete, if any.
    event_id: str = ""


@dataclass(frozen=True)
class OutboxEvent:
    """A webhook event waiting in the outbox, as its delivery task takes it."""

    entry: str  # the outbox member (what release_outbox removes)
    comment_id: str
    event_id: str
    # A deletion's (post id, reason, after): the record is gone, so its event carries them.
    deletion: tuple[str, str, int] | None = None


def outbox_event(entry: str) -> OutboxEvent:
    """Read an outbox member: a decision's event id ``{id}.{n}``, or a deletion's JSON list
    [comment id, post id, reason, event id, after] (written by _DELETE).

    Raises ValueError for a member neither script writes."""
    if not entry.startswith("["):
        return OutboxEvent(entry=entry, comment_id=entry.partition(".")[0], event_id=entry)
    comment_id, post_id, reason, event_id, after = json.loads(entry)
    return OutboxEvent(
        entry=entry,
        comment_id=str(comment_id),
        event_id=str(event_id),
        deletion=(str(post_id), str(reason), int(after)),
    )


@dataclass(frozen=True)
class Transition:
    """One state change for transition_many (same meaning as CommentStore.transition's args)."""

    comment: Mapping[str, Any]
    queue: str
    allowed_states: tuple[str, ...] | None
    fields: Mapping[str, Any]
    audit: Mapping[str, Any] | None = None


def _transition_result(reply: Any) -> TransitionResult:
    code = int(reply[0])
    if code != 1:
        return TransitionResult(applied=False, found=code != 0, previous=_s(reply[1]))
    before = {name: _s(v) for name, v in zip(UNDO_FIELDS, reply[1:-1], strict=True)}
    return TransitionResult(
        applied=True, found=True, previous=before["queue"], before=before, event_id=_s(reply[-1])
    )


def public_status(queue: str) -> str:
    """Map a moderation queue to the status readers see."""
    return "rejected" if queue == "spam" else queue


class CommentStore:
    """All reads and writes of comments in Redis.

    With ``outbox`` (a webhook is configured) every applied transition records its decision
    event in the outbox, and every delete its deletion event, in the same script: see
    claim_outbox."""

    def __init__(self, client: redis.Redis[bytes], *, outbox: bool = False) -> None:
        self.redis = client
        self.outbox = outbox
        self._transition = client.register_script(_TRANSITION)
        self._delete = client.register_script(_DELETE)
        self._replace_item = client.register_script(_REPLACE_LIST_ITEM)
        self._add = client.register_script(_ADD)
        self._restore_repeat = client.register_script(_RESTORE_REPEAT)
        self._forget_unscored = client.register_script(_FORGET_UNSCORED)
        self._hold_damaged = client.register_script(_HOLD_DAMAGED)
        self._restore = client.register_script(_RESTORE)
        self._claim_outbox = client.register_script(_CLAIM_OUTBOX)
        self._touch_unscored = client.register_script(_TOUCH_UNSCORED)

    # intake ---------------------------------------------------------------------------------

    def add(
        self,
        new: NewComment,
        *,
        duplicate_window: int = 0,
        repeat_window: int = 0,
        form_token_id: str = "",
        comment_id: str | None = None,
        enqueue: tuple[str, str] | None = None,
    ) -> tuple[str, int, str | None]:
        """Store a new comment as queued for scoring, in one atomic step.

        enqueue is (broker list, message): pushed in the same step, unless it is a duplicate.
        Returns (id, created_us, duplicate_of): when the same author posted the same text on
        the same post from the same client (IP digest) within duplicate_window seconds,
        nothing is stored and duplicate_of names the original. With a repeat_window, the
        record's ``repeats`` counts the other (author, post) pairs that sent the same text
        (see text_digest) within that many seconds. A form_token_id is marked used; when it
        already was, the record gets ``form_token_reused``.
        """
        comment_id = comment_id or new_comment_id()
        created = now_us()
        record: dict[str, Any] = {
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
        fingerprint = self.fingerprint(record)
        queue, message = enqueue or ("", "")
        # The text's digest only when the signal is on: folding a long comment is not free.
        text_digest = self.text_digest(record) if repeat_window > 0 else ""
        repeats = int(repeat_window) if text_digest else 0
        args: list[Any] = [
            comment_id,
            created,
            max(0, int(duplicate_window)),
            message,
            repeats,
            self.repeat_member(record),
            FORM_TOKEN_USED_TTL if form_token_id else 0,
        ]
        for key, value in record.items():
            args.extend([key, value])
        keys = [
            duplicate_key(fingerprint),
            comment_key(comment_id),
            unscored_key(),
            author_key(new.email_digest),
            queue or unscored_key(),  # an unused key when nothing is enqueued
            repeat_key(text_digest) if text_digest else unscored_key(),  # unused when short
            form_token_key(form_token_id) if form_token_id else unscored_key(),  # unused
        ]
        existing = _s(self._add(keys=keys, args=args))
        if existing:
            return existing, created, existing
        return comment_id, created, None

    @staticmethod
    def text_digest(comment: Mapping[str, Any]) -> str:
        """Return the digest of a comment's folded text, or "" when it is too short to count.

        Only its letters and digits count, compatibility-normalised and case-folded, so a
        campaign cannot look new by adding a zero-width space, "!" or a different quote mark.
        Every part is on the stored record, so deleting a comment can recompute it.
        """
        text = unicodedata.normalize("NFKC", str(comment.get("comment", ""))).casefold()
        folded = _NOT_ALNUM_RE.sub("", text)
        if len(folded) < REPEAT_MIN_CHARS:
            return ""
        return hashlib.sha256(folded.encode()).hexdigest()[:32]

    @staticmethod
    def repeat_member(comment: Mapping[str, Any]) -> str:
        """Return who sent a text where, for the repeat index: a digest of author and post.

        Short (24 characters), so a window's members fit Redis's compact listpack encoding:
        a longer member turns each text's index into a skiplist of about 1 KB.
        """
        who = f"{comment.get('email_digest', '')}\0{comment.get('post_id', '')}"
        return hashlib.sha256(who.encode()).hexdigest()[:24]

    @staticmethod
    def fingerprint(comment: Mapping[str, Any]) -> str:
        """Return the duplicate-detection fingerprint: post, author, client and folded text.

        The client's IP digest is part of it, so only the same client resubmitting is told
        about the original: anyone else guessing the author's address gets no 409 that would
        confirm who wrote a comment. Every part is on the stored record, so erasure can
        recompute the fingerprint and delete it.
        """
        text = " ".join(str(comment.get("comment", "")).casefold().split())
        parts = (
            str(comment["post_id"]),
            str(comment["email_digest"]),
            str(comment.get("ip_digest") or ""),
            text,
        )
        return hashlib.sha256("\0".join(parts).encode()).hexdigest()

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

    def get_by_ids(self, ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        """Return the records of ids that exist, by id, read in one round trip."""
        pipe = self.redis.pipeline(transaction=False)
        for comment_id in ids:
            pipe.hgetall(comment_key(comment_id))
        return {i: decode_record(raw) for i, raw in zip(ids, pipe.execute(), strict=True) if raw}

    def list_post(
        self, post_id: str, *, after: tuple[int, str | None] | None, limit: int
    ) -> tuple[list[dict[str, Any]], tuple[int, str] | None]:
        """Return approved comments of a post, oldest first, and the next cursor.

        The cursor is the (creation time, id) of the last comment returned: comments stored in
        the same microsecond (two API processes) follow in the index's own order, by id, so
        none is skipped. An id of None (a cursor from before ids were added) skips every
        comment of that microsecond, as those cursors did.
        """
        key = post_key(post_id)
        entries: list[tuple[str, float]] = []
        low = "-inf"
        if after is not None:
            after_us, after_id = after
            if after_id is not None:
                ties = self.redis.zrangebyscore(key, after_us, after_us, withscores=True)
                entries = [(_s(m), s) for m, s in ties if _s(m) > after_id][: limit + 1]
            low = f"({after_us}"
        if len(entries) <= limit:
            more = self.redis.zrangebyscore(
                key, low, "+inf", start=0, num=limit + 1 - len(entries), withscores=True
            )
            entries += [(_s(m), s) for m, s in more]
        records = self.get_many([member for member, _ in entries[:limit]])
        last = entries[limit - 1] if len(entries) > limit else None
        return records, (int(last[1]), last[0]) if last else None

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
        expect: tuple[str, str] | None = None,
    ) -> TransitionResult:
        """Move a comment to a queue and set fields, atomically, if its state allows it.

        With ``expect=(field, value)`` the move applies only while the field holds that value
        (undo uses it, so it never overwrites a later decision); ``allowed_states`` is then
        ignored."""
        guard = f"@{expect[0]}={expect[1]}" if expect else _state_guard(allowed_states)
        keys, argv = self._transition_call(comment, queue, guard, fields, label_it, audit)
        return _transition_result(self._transition(keys=keys, args=argv))

    def transition_many(self, moves: Sequence[Transition]) -> list[TransitionResult]:
        """Apply many transitions in one round trip; each is atomic and checks state alone."""
        if not moves:
            return []
        pipe = self.redis.pipeline(transaction=False)
        for move in moves:
            keys, argv = self._transition_call(
                move.comment,
                move.queue,
                _state_guard(move.allowed_states),
                move.fields,
                False,
                move.audit,
            )
            self._transition(keys=keys, args=argv, client=pipe)
        return [_transition_result(reply) for reply in pipe.execute()]

    def _transition_call(
        self,
        comment: Mapping[str, Any],
        queue: str,
        guard: str,
        fields: Mapping[str, Any],
        label_it: bool,
        audit: Mapping[str, Any] | None,
    ) -> tuple[list[str], list[Any]]:
        if queue not in QUEUES:
            raise ValueError(f"unknown queue {queue!r}")
        comment_id = str(comment["id"])
        now = now_us()
        values: dict[str, Any] = {**fields, "status": public_status(queue)}
        trail, logged = _audit_texts(comment_id, audit, _iso(now))
        argv: list[Any] = [
            guard,
            queue,
            comment_id,
            "1" if label_it else "0",
            trail,
            now,
            AUDIT_STREAM_MAX,
            logged,
            "1" if self.outbox else "0",
            OPERATION_REPLY_TTL,
        ]
        for key, value in values.items():
            argv.extend([key, json.dumps(value) if key in JSON_FIELDS else _field(value)])
        operation = operation_key(secrets.token_hex(12))
        return [*self._comment_keys(comment), outbox_key(), operation], argv

    def _comment_keys(self, comment: Mapping[str, Any]) -> list[str]:
        comment_id = str(comment["id"])
        keys = [
            comment_key(comment_id),
            unscored_key(),
            post_key(str(comment["post_id"])),
            labeled_key(),
            audit_key(comment_id),
            audit_stream_key(),
        ]
        for queue in QUEUES:
            keys.append(queue_key(queue))
            keys.extend(score_index_key(queue, index) for index in SCORE_INDEXES)
        return keys

    def delete(
        self,
        comment: Mapping[str, Any],
        audit: Mapping[str, Any] | None = None,
        *,
        reason: str,
    ) -> Deletion | None:
        """Delete a comment, its audit list, every index entry, its duplicate fingerprint and
        its repeated-text entry, in one atomic step.

        The audit entry goes to the global log and ends the trail returned (kept for an undo
        of the delete). With the outbox on, the deletion's comment.deleted event (``reason``:
        one of DELETION_REASONS) is recorded in the same step. None if the comment was
        already gone."""
        if reason not in DELETION_REASONS:
            raise ValueError(f"unknown deletion reason {reason!r}")
        fingerprinted = bool(comment.get("email_digest"))
        text_digest = self.text_digest(comment)
        keys = [
            *self._comment_keys(comment),
            author_key(str(comment.get("email_digest", ""))),
            duplicate_key(self.fingerprint(comment)) if fingerprinted else unscored_key(),
            repeat_key(text_digest) if text_digest else unscored_key(),  # unused when short
            outbox_key(),
            # Named after the comment: its reply holds the record, which an erasure must find.
            operation_key(f"{comment['id']}:{secrets.token_hex(12)}"),
        ]
        comment_id = str(comment["id"])
        trail, logged = _audit_texts(comment_id, audit, iso_now())
        event_id = deletion_event_id(comment_id) if self.outbox else ""
        args = [
            comment_id,
            trail,
            AUDIT_STREAM_MAX,
            "1" if fingerprinted else "0",
            self.repeat_member(comment) if text_digest else "",
            logged,
            reason if self.outbox else "",
            event_id,
            OPERATION_REPLY_TTL,
        ]
        reply = self._delete(keys=keys, args=args)
        if not reply:
            return None
        pairs = reply[3]
        return Deletion(
            changes=int(reply[1]),
            trail=[json.loads(e) for e in reply[2]],
            record=decode_record(dict(zip(pairs[::2], pairs[1::2], strict=True))),
            event_id=event_id,
        )

    def restore(
        self,
        record: Mapping[str, Any],
        audit_entries: Sequence[Mapping[str, Any]],
        then: Transition,
        *,
        repeat_window: int = 0,
    ) -> TransitionResult:
        """Put back a deleted comment (undo of a delete) and apply ``then`` (the transition
        that puts it back in its queue and every index), in one MULTI: a crash cannot leave it
        stored but in no queue.

        With a repeat_window its repeated-text entry comes back too, if it arrived within that
        many seconds (the delete removed it)."""
        comment_id = str(record["id"])
        digest = str(record.get("email_digest") or "")
        fields: list[Any] = []
        for k, v in record.items():
            fields.extend([k, json.dumps(v) if k in JSON_FIELDS else _field(v)])
        pipe = self.redis.pipeline(transaction=True)
        self._restore(
            keys=[comment_key(comment_id), author_key(digest), audit_key(comment_id)],
            args=[
                comment_id,
                record.get("created_us", 0),
                "1" if digest else "0",
                len(audit_entries),
                *(json.dumps(entry) for entry in audit_entries),
                *fields,
            ],
            client=pipe,
        )
        text_digest = self.text_digest(record) if repeat_window > 0 else ""
        if text_digest:
            self._restore_repeat(
                keys=[repeat_key(text_digest)],
                args=[self.repeat_member(record), record["created_us"], repeat_window, now_us()],
                client=pipe,
            )
        keys, argv = self._transition_call(
            then.comment,
            then.queue,
            _state_guard(then.allowed_states),
            then.fields,
            False,
            then.audit,
        )
        self._transition(keys=keys, args=argv, client=pipe)
        return _transition_result(pipe.execute()[-1])

    def bump_attempts(self, comment_id: str) -> int:
        """Count one more scoring attempt; return the total."""
        return int(self.redis.hincrby(comment_key(comment_id), "attempts", 1))

    # sweep ----------------------------------------------------------------------------------

    def stale_unscored(self, older_than_us: int, limit: int = 1000) -> list[str]:
        """Return ids accepted before older_than_us that are still unscored."""
        ids = self.redis.zrangebyscore(unscored_key(), "-inf", older_than_us, start=0, num=limit)
        return [_s(i) for i in ids]

    def touch_unscored(self, ids: Sequence[str], base_us: int, cap_us: int) -> list[str]:
        """Mark stale ids as sent again now; return those still unscored, to send.

        Each comment then waits twice as long as before it is due again (base, 2x, 4x ...,
        at most cap): while no worker drains the queue, a comment gets a handful of copies of
        its message, not one per sweep. Never resurrects an id scored in the meantime."""
        if not ids:
            return []
        keys = [unscored_key(), *(comment_key(i) for i in ids)]
        sent = self._touch_unscored(keys=keys, args=[now_us(), base_us, cap_us, *ids])
        return [_s(i) for i in sent]

    def hold_damaged(
        self, comment_id: str, label: str, reasons: Sequence[str], audit: Mapping[str, Any]
    ) -> bool:
        """Hold a queued comment in pending whatever else its record lacks; return True if
        it was held (False: gone, or no longer queued)."""
        pending = [queue_key("pending"), *(score_index_key("pending", i) for i in SCORE_INDEXES)]
        keys = [
            comment_key(comment_id),
            unscored_key(),
            *pending,
            audit_key(comment_id),
            audit_stream_key(),
            outbox_key(),
        ]
        now = now_us()
        trail, logged = _audit_texts(comment_id, audit, _iso(now))
        args = [
            comment_id,
            now,
            label,
            json.dumps(list(reasons)),
            _iso(now),
            trail,
            logged,
            AUDIT_STREAM_MAX,
            "1" if self.outbox else "0",
        ]
        return int(self._hold_damaged(keys=keys, args=args)) == 1

    def forget_unscored(self, comment_ids: Sequence[str]) -> None:
        """Drop ids from the unscored list that a worker found missing or already decided
        (left behind by a race), so the sweep stops sending them; an id whose comment is
        queued again by now (an undo since the worker's read) stays."""
        if comment_ids:
            keys = [unscored_key(), *(comment_key(i) for i in comment_ids)]
            self._forget_unscored(keys=keys, args=list(comment_ids))

    # labels ---------------------------------------------------------------------------------

    def labeled_ids(self, *, since_us: int | None = None) -> list[str]:
        """Return ids of comments a moderator decided, oldest decision first."""
        low = since_us if since_us is not None else "-inf"
        return [_s(i) for i in self.redis.zrangebyscore(labeled_key(), low, "+inf")]

    def drop_delete_replies(self, comment_ids: set[str]) -> int:
        """Delete the kept replies of recent deletes of these comments (erasure): each holds
        the deleted record for OPERATION_REPLY_TTL seconds, for a replay."""
        removed = 0
        for key in self.redis.scan_iter(match=operation_key("*:*"), count=1000):
            if _s(key).split(":")[2] in comment_ids:
                removed += int(self.redis.delete(key))
        return removed

    def delete_keys_mentioning(self, fragment: str) -> int:
        """Delete every key whose name contains fragment (erasure of digest-keyed data)."""
        removed = 0
        for key in self.redis.scan_iter(match=f"*{fragment}*", count=1000):
            removed += int(self.redis.delete(key))
        return removed

    def webhook_sent(self, comment_id: str, event_id: str) -> bool:
        return bool(self.redis.exists(webhook_dedupe_key(comment_id, event_id)))

    def mark_webhook_sent(self, comment_id: str, event_id: str) -> None:
        self.redis.set(webhook_dedupe_key(comment_id, event_id), "1", ex=WEBHOOK_DEDUPE_TTL)

    def claim_outbox(self, limit: int, lease_seconds: float) -> list[str]:
        """Claim up to limit webhook events waiting in the outbox; return their entries (a
        decision's is its event id; outbox_event reads either kind).

        A claimed event is due again after lease_seconds unless release_outbox removes it
        first: a drain that crashes or cannot publish loses nothing, and one that is merely
        slow may see its events published twice (delivery is at least once)."""
        now = now_us()
        due = self._claim_outbox(
            keys=[outbox_key()], args=[now, now + int(lease_seconds * 1_000_000), limit]
        )
        return [_s(event) for event in due]

    def release_outbox(self, entries: Sequence[str]) -> None:
        """Remove published events (their outbox entries) from the outbox."""
        if entries:
            self.redis.zrem(outbox_key(), *entries)

    def outbox_size(self) -> int:
        """Return how many webhook events wait in the outbox (claimed or not)."""
        return int(self.redis.zcard(outbox_key()))

    def unlabel(self, comment_id: str) -> None:
        """Stop treating a comment as moderator-labelled (its decision was undone)."""
        self.redis.zrem(labeled_key(), comment_id)

    def ping(self) -> bool:
        """Return True when Redis answers."""
        return bool(self.redis.ping())

    # moderation queue, filtered and sorted ------------------------------------------------

    def scan_queue(
        self,
        queue: str,
        *,
        sort: str = "newest",
        cursor: tuple[float, str] | None = None,
        limit: int = 50,
        accept: Callable[[dict[str, Any]], bool] | None = None,
        score_range: tuple[float, float] | None = None,
        max_examined: int | None = None,
    ) -> tuple[list[dict[str, Any]], tuple[float, str] | None]:
        """Return a page of a queue in the given order, filtered, and the next cursor.

        The cursor is the (sort value, id) of the last item returned (or examined, below), so
        new arrivals never shift a page. Sorts: newest, oldest (creation time), spam, toxic
        (highest first), uncertainty (closest to the decision boundary first). A comment
        without scores sorts last by spam or toxic and first by uncertainty.

        One call examines at most max_examined entries (QUEUE_SCAN_LIMIT by default). When a
        filter rejects that many before the page is full, the page holds fewer items than
        limit (maybe none) and the cursor is the last entry examined, so the next call goes
        on from there; the cursor is None only when the index has nothing left.
        """
        budget = max(1, QUEUE_SCAN_LIMIT if max_examined is None else max_examined)
        if sort in ("newest", "oldest"):
            key, descending = queue_key(queue), sort == "newest"
        else:
            key, descending = score_index_key(queue, sort), True
        low, high = ("-inf", "+inf") if score_range is None else score_range
        if cursor is not None:
            if descending:
                high = cursor[0]
            else:
                low = cursor[0]

        def fetch(offset: int, count: int) -> list[tuple[str, float]]:
            if descending:
                raw = self.redis.zrevrangebyscore(
                    key, high, low, start=offset, num=count, withscores=True
                )
            else:
                raw = self.redis.zrangebyscore(
                    key, low, high, start=offset, num=count, withscores=True
                )
            return [(_s(member), float(score)) for member, score in raw]

        page: list[dict[str, Any]] = []
        examined = 0
        last_examined: tuple[float, str] | None = None
        exhausted = False
        batch = max(limit * 2, 50)
        offset = 0
        while len(page) <= limit and examined < budget:
            count = min(batch, budget - examined)
            fetched = fetch(offset, count)
            offset += len(fetched)
            exhausted = len(fetched) < count
            entries = fetched
            if cursor is not None:
                # Entries tied with the cursor's score but at or before it are skipped without
                # counting as examined: a run of equal scores longer than the scan budget
                # must not stop paging from moving forward.
                entries = [e for e in entries if _after(e, cursor, descending)]
            records = {r["id"]: r for r in self.get_many([e[0] for e in entries])}
            for member, score in entries:
                examined += 1
                last_examined = (score, member)
                record = records.get(member)
                if record is None or (accept is not None and not accept(record)):
                    continue
                record["_sort"] = score
                page.append(record)
                if len(page) > limit:
                    break
            if exhausted:
                break
        next_cursor: tuple[float, str] | None = None
        if len(page) > limit:
            page = page[:limit]
            next_cursor = (page[-1]["_sort"], page[-1]["id"])
        elif not exhausted and last_examined is not None and fetch(offset, 1):
            # The scan budget ran out before the page filled and entries remain: continue
            # after the last one examined, not the last one accepted (which may be none).
            next_cursor = last_examined
        for record in page:
            record.pop("_sort", None)
        return page, next_cursor

    # authors ------------------------------------------------------------------------------

    def author_comment_ids(self, email_digest: str) -> list[str]:
        """Return the ids of every comment stored for an author digest, oldest first."""
        return [_s(i) for i in self.redis.zrange(author_key(email_digest), 0, -1)]

    def author_history(self, email_digest: str, *, exclude: str = "") -> dict[str, int]:
        """Count an author's comments per queue (the comment being decided excluded)."""
        ids = [i for i in self.author_comment_ids(email_digest) if i != exclude]
        counts = dict.fromkeys(QUEUES, 0)
        if not ids:
            return counts
        pipe = self.redis.pipeline(transaction=False)
        for comment_id in ids:
            pipe.hget(comment_key(comment_id), "queue")
        for queue in pipe.execute():
            if queue is not None and _s(queue) in counts:
                counts[_s(queue)] += 1
        return counts

    # audit --------------------------------------------------------------------------------

    def audit_log(self, *, count: int = 100, before: str | None = None) -> list[dict[str, Any]]:
        """Return global audit entries, newest first (stream ids are the cursor)."""
        high = f"({before}" if before else "+"
        entries = self.redis.xrevrange(audit_stream_key(), max=high, min="-", count=count)
        out = []
        for entry_id, fields in entries:
            data = {_s(k): _s(v) for k, v in fields.items()}
            item = json.loads(data.get("entry", "{}"))
            item["audit_id"] = _s(entry_id)
            out.append(item)
        return out

    def append_audit_event(self, entry: Mapping[str, Any]) -> None:
        """Append an entry about no single comment (e.g. an erasure) to the global audit log."""
        text = json.dumps({"at": iso_now(), **entry})
        self.redis.xadd(
            audit_stream_key(), {"entry": text}, maxlen=AUDIT_STREAM_MAX, approximate=True
        )

    def append_audit(self, comment_id: str, entry: Mapping[str, Any]) -> None:
        """Append an entry (note, reveal) to a comment's trail and the global audit log."""
        trail, logged = _audit_texts(comment_id, entry, iso_now())
        pipe = self.redis.pipeline(transaction=True)
        pipe.rpush(audit_key(comment_id), trail)
        pipe.xadd(audit_stream_key(), {"entry": logged}, maxlen=AUDIT_STREAM_MAX, approximate=True)
        pipe.execute()

    # undo ---------------------------------------------------------------------------------

    def push_undo(self, moderator: str, entry: Mapping[str, Any]) -> None:
        """Remember how to undo a moderator's action (a short stack per moderator)."""
        pipe = self.redis.pipeline(transaction=True)
        pipe.lpush(undo_key(moderator), json.dumps(entry))
        pipe.ltrim(undo_key(moderator), 0, UNDO_DEPTH - 1)
        pipe.expire(undo_key(moderator), UNDO_TTL_SECONDS)
        pipe.execute()

    def pop_undo(self, moderator: str) -> dict[str, Any] | None:
        """Take the moderator's most recent undoable action, if any."""
        raw = self.redis.lpop(undo_key(moderator))
        return json.loads(raw) if raw else None

    def deleted_comment_emails_by_author(self, digest: str) -> dict[str, str]:
        """Return {id: encrypted email} of an author's deleted comments kept for undo.

        A deleted comment has left the author index, but the undo stack holds its whole
        record (encrypted email included) until it expires; erasure must find it there."""
        found: dict[str, str] = {}
        for key in self.redis.scan_iter(f"{PREFIX}undo:*", count=500):
            for raw in self.redis.lrange(key, 0, -1):
                for step in _undo_steps(json.loads(raw)):
                    record = step.get("record") or {}
                    if step.get("kind") == "delete" and record.get("email_digest") == digest:
                        found[str(step.get("comment_id"))] = str(record.get("email_enc", ""))
        return found

    def rewrite_persistence(self) -> str:
        """Ask Redis to rewrite its files on disk, so erased data stops lingering there.

        Deleted keys stay in the append-only log (and the last snapshot) until Redis rewrites
        it, which it otherwise does only once the log has doubled. Returns "started",
        "not_persisted" (Redis keeps nothing on disk), "busy" (a rewrite that began before the
        erasure is running: retry later) or "unavailable" (CONFIG is disabled, as on some
        managed services: their own retention applies)."""
        try:
            aof = _s(self.redis.config_get("appendonly").get("appendonly", "no")) == "yes"
            save = bool(_s(self.redis.config_get("save").get("save", "")))
        except redis.exceptions.ResponseError:
            return "unavailable"
        if not aof and not save:
            return "not_persisted"
        try:
            if aof:
                self.redis.bgrewriteaof()
            if save:
                self.redis.bgsave(schedule=True)
        except redis.exceptions.ResponseError:
            return "busy"
        return "started"

    def drop_undo_entries(self, comment_ids: set[str]) -> int:
        """Remove undo entries that mention any of comment_ids (for erasure); return count."""
        removed = 0
        for key in self.redis.scan_iter(f"{PREFIX}undo:*", count=500):
            for raw in self.redis.lrange(key, 0, -1):
                entry = json.loads(raw)
                steps = _undo_steps(entry)
                kept = [s for s in steps if s.get("comment_id") not in comment_ids]
                if len(kept) == len(steps):
                    continue
                # A bulk entry keeps the steps about other comments.
                new = (
                    json.dumps({**entry, "steps": kept})
                    if entry.get("kind") == "bulk" and kept
                    else ""
                )
                if self._replace_item(keys=[key], args=[raw, new]):
                    removed += len(steps) - len(kept)
        return removed

    # moderator tokens ---------------------------------------------------------------------

    def save_token(self, token_digest: str, info: Mapping[str, Any]) -> None:
        self.redis.hset(tokens_key(), token_digest, json.dumps(dict(info)))

    def token_info(self, token_digest: str) -> dict[str, Any] | None:
        raw = self.redis.hget(tokens_key(), token_digest)
        return json.loads(raw) if raw else None

    def all_tokens(self) -> dict[str, dict[str, Any]]:
        return {_s(k): json.loads(v) for k, v in self.redis.hgetall(tokens_key()).items()}

    def delete_token(self, token_digest: str) -> bool:
        return bool(self.redis.hdel(tokens_key(), token_digest))

    # retention ----------------------------------------------------------------------------

    def expired_ids(self, queue: str, created_before_us: int, limit: int = 1000) -> list[str]:
        """Return ids in a queue created before the cutoff (for retention)."""
        raw = self.redis.zrangebyscore(
            queue_key(queue), "-inf", f"({created_before_us}", start=0, num=limit
        )
        return [_s(i) for i in raw]

    def trim_audit(self, older_than_ms: int) -> int:
        """Drop global audit entries older than the cutoff; return how many."""
        return int(
            self.redis.xtrim(audit_stream_key(), minid=f"{older_than_ms}-0", approximate=False)
        )

    def drop_audit_entries(self, comment_ids: set[str]) -> int:
        """Delete global audit entries about these comments (erasure); return how many."""
        doomed = []
        cursor = "-"
        while True:  # a page at a time: the log holds up to AUDIT_STREAM_MAX entries
            page = self.redis.xrange(audit_stream_key(), min=cursor, count=1000)
            for entry_id, fields in page:
                raw = fields.get(b"entry") or fields.get("entry") or "{}"
                if json.loads(raw).get("comment_id") in comment_ids:
                    doomed.append(entry_id)
            if len(page) < 1000:
                break
            cursor = f"({_s(page[-1][0])}"
        for start in range(0, len(doomed), 1000):
            self.redis.xdel(audit_stream_key(), *doomed[start : start + 1000])
        return len(doomed)


def _audit_texts(comment_id: str, audit: Mapping[str, Any] | None, at: str) -> tuple[str, str]:
    """Return an audit entry as the comment's own trail keeps it and as the global log does.

    The global log keeps no free text: a note (a moderator's words, possibly about the reader)
    stays in the comment's trail, which is deleted with the comment, and the log says only
    ``has_note``. Redis frees a stream's memory a node of entries at a time, so an entry
    deleted from the log on erasure (XDEL) lingers in memory and snapshots until its whole node
    is trimmed; what lingers is then opaque ids and action codes only."""
    if not audit:
        return "", ""
    entry = {"at": at, "comment_id": comment_id, **audit}
    trail = json.dumps(entry)
    if "note" in entry:
        entry["has_note"] = bool(entry.pop("note"))
    return trail, json.dumps(entry)


def _state_guard(allowed_states: Iterable[str] | None) -> str:
    """Return the transition script's state check: "*" (any state) or the allowed states."""
    return "*" if allowed_states is None else ",".join(allowed_states)


def _undo_steps(entry: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Return the single-comment steps of an undo entry (a bulk entry holds many)."""
    return list(entry.get("steps") or []) if entry.get("kind") == "bulk" else [dict(entry)]


def _iso(us: int) -> str:
    seconds, micro = divmod(us, 1_000_000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{micro // 1000:03d}Z"


def _after(entry: tuple[str, float], cursor: tuple[float, str], descending: bool) -> bool:
    """Return True if entry comes after the cursor in the listing order (ids break ties)."""
    member, score = entry
    if score != cursor[0]:
        return score < cursor[0] if descending else score > cursor[0]
    return member < cursor[1] if descending else member > cursor[1]


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
