"""Moderators' work: decisions (each becomes a training label), bulk, undo, notes, tokens."""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
import secrets
from dataclasses import dataclass, field
from typing import Any, Literal

from workers.metrics import record_moderator_decision
from workers.store import STATE_MODERATED, CommentStore, Transition, iso_now

log = logging.getLogger(__name__)

# poster: a site's back end submitting comments for its readers (exempt from the rate limits
# and the form token, nothing else); moderator: the queue; admin: also deletes, reveals
# addresses, the audit log and privacy requests.
Role = Literal["poster", "moderator", "admin"]
ROLES: tuple[Role, ...] = ("poster", "moderator", "admin")
ROLE_RANK: dict[str, int] = {role: rank for rank, role in enumerate(ROLES)}
# action -> queue it moves the comment to
ACTIONS: dict[str, str] = {
    "approve": "approved",
    "reject": "rejected",
    "spam": "spam",
    "not_spam": "approved",
}
ALL_ACTIONS = (*ACTIONS, "delete")
# Actions a plain moderator may take; admins may take all.
MODERATOR_ACTIONS = frozenset(ACTIONS)
MAX_BULK = 500


@dataclass(frozen=True)
class DecisionResult:
    found: bool
    comment: dict[str, Any] | None = None
    previous_queue: str = ""
    deleted: bool = False
    conflict: bool = False  # undo refused: a later decision changed the comment since
    undo_step: dict[str, Any] | None = field(default=None, repr=False)


@dataclass(frozen=True)
class UndoResult:
    """What undoing a moderator's last action did: one comment, or every comment of a bulk."""

    bulk: bool
    results: dict[str, DecisionResult]


@dataclass(frozen=True)
class Moderator:
    name: str
    role: Role

    def may(self, action: str) -> bool:
        """Return True if this moderator's role allows the action."""
        return self.role == "admin" or (self.role == "moderator" and action in MODERATOR_ACTIONS)


def apply_decision(
    store: CommentStore,
    comment_id: str,
    action: str,
    moderator: str,
    note: str = "",
    *,
    remember: bool = True,
) -> DecisionResult:
    """Apply one moderator action atomically and remember how to undo it.

    With ``remember=False`` the undo step is returned (``undo_step``) instead of pushed, so a
    bulk action can be undone as one (``remember_bulk``)."""
    record = store.get(comment_id)
    if record is None:
        return DecisionResult(found=False)
    audit = {"actor": moderator, "action": action, "from": record.get("queue"), "note": note}
    if action == "delete":
        # Its comment.deleted event goes to the outbox in the same step (with a webhook).
        deletion = store.delete(record, audit={**audit, "to": "deleted"}, reason="deleted")
        if deletion is None:
            return DecisionResult(found=False)
        # The trail as the delete left it (its own entry last), so an undo brings back a trail
        # that says the comment was deleted, as the global audit log does.
        step: dict[str, Any] = {
            "comment_id": comment_id,
            "kind": "delete",
            "record": deletion.record,  # as the delete found it, not as read before
            "trail": deletion.trail,
        }
        if remember:
            store.push_undo(moderator, step)
        return DecisionResult(
            found=True,
            previous_queue=str(record.get("queue")),
            deleted=True,
            undo_step=step,
        )
    queue = ACTIONS[action]
    decision_id = secrets.token_hex(8)
    result = store.transition(
        record,
        queue,
        allowed_states=None,
        fields={
            "state": STATE_MODERATED,
            "moderated_by": moderator,
            "moderated_at": iso_now(),
            "moderator_action": action,
            "decided_by": "moderator",
            "decision_id": decision_id,
        },
        label_it=True,
        audit={**audit, "to": queue},
    )
    if not result.applied:
        return DecisionResult(found=False)
    record_moderator_decision(record, action, queue)
    step = {
        "comment_id": comment_id,
        "kind": "transition",
        "before": result.before,
        "decision_id": decision_id,
    }
    if remember:
        store.push_undo(moderator, step)
    return DecisionResult(
        found=True,
        comment=store.get(comment_id),
        previous_queue=result.previous,
        undo_step=step,
    )


def remember_bulk(store: CommentStore, moderator: str, steps: list[dict[str, Any]]) -> None:
    """Remember a bulk action's undo steps as one entry: one undo reverts all of them."""
    if steps:
        store.push_undo(moderator, {"kind": "bulk", "steps": steps})


def undo_last(store: CommentStore, moderator: str, *, repeat_window: int) -> UndoResult | None:
    """Revert the moderator's most recent action (all of a bulk); None if there is none.

    repeat_window (MODERATION_REPEAT_WINDOW_SECONDS) decides whether a deleted comment's
    repeated-text entry comes back with it."""
    entry = store.pop_undo(moderator)
    if entry is None:
        return None
    if entry.get("kind") == "bulk":
        steps = list(entry.get("steps") or [])
        results = {
            str(s["comment_id"]): _undo_step(store, moderator, s, repeat_window)
            for s in steps[::-1]
        }
        return UndoResult(bulk=True, results=dict(reversed(results.items())))
    return UndoResult(
        bulk=False,
        results={str(entry["comment_id"]): _undo_step(store, moderator, entry, repeat_window)},
    )


def _undo_step(
    store: CommentStore, moderator: str, entry: dict[str, Any], repeat_window: int
) -> DecisionResult:
    comment_id = str(entry["comment_id"])
    audit = {"actor": moderator, "action": "undo", "undone": entry["kind"]}
    if entry["kind"] == "delete":
        record = entry["record"]
        if store.get(comment_id) is not None:
            return DecisionResult(found=True, conflict=True)
        before = {"state": record.get("state", "")}
        queue = str(record.get("queue", "pending"))
        # Stored again and back in its queue and indexes in one step.
        result = store.restore(
            record,
            entry.get("trail", []),
            Transition(record, queue, None, before, {**audit, "to": queue}),
            repeat_window=repeat_window,
        )
    else:
        before = dict(entry["before"])
        queue = before.pop("queue") or "pending"
        record = store.get(comment_id)
        if record is None:
            return DecisionResult(found=False)
        # Entries written before decision ids apply as before.
        expect = ("decision_id", str(entry["decision_id"])) if entry.get("decision_id") else None
        result = store.transition(
            record,
            queue,
            allowed_states=None,
            fields={k: v for k, v in before.items() if k != "status"},
            audit={**audit, "to": queue},
            expect=expect,
        )
    if result.refused:
        return DecisionResult(found=True, conflict=True, comment=store.get(comment_id))
    if not result.applied:
        return DecisionResult(found=False)
    if before.get("state") != STATE_MODERATED:
        # The action being undone was the one that made this comment a training label.
        store.unlabel(comment_id)
    return DecisionResult(found=True, comment=store.get(comment_id), previous_queue=result.previous)


def add_note(store: CommentStore, comment_id: str, moderator: str, text: str) -> bool:
    """Attach a moderator's note to a comment's audit trail."""
    if store.get(comment_id) is None:
        return False
    store.append_audit(comment_id, {"actor": moderator, "action": "note", "note": text})
    return True


# -- tokens -----------------------------------------------------------------------------------


def token_digest(token: str) -> str:
    """Return the stored form of a token (tokens are random, so SHA-256 suffices)."""
    return hashlib.sha256(token.encode()).hexdigest()


# Names the service itself acts under in audit entries and decided_by: a moderator named
# "model" would pass for the classifier, one named "operator" would share the bootstrap
# admin's undo stack (undo is kept per name).
RESERVED_NAMES = frozenset({"operator", "model", "retention"})
# ASCII only: "model" spelled with a Cyrillic "o" would otherwise pass for the model.
_NAME_RE = re.compile(r"[A-Za-z0-9_.-]{1,64}")


def check_token_name(name: str) -> str:
    """Return the name if a moderator may go by it, else raise ValueError saying why."""
    if not _NAME_RE.fullmatch(name):
        raise ValueError(
            "name must be 1-64 letters, digits, '.', '_' or '-' (it is shown in the audit log)"
        )
    if name.casefold() in RESERVED_NAMES:
        raise ValueError(f"name {name!r} is reserved for the service's own actions")
    return name


def create_token(store: CommentStore, name: str, role: Role) -> str:
    """Create a named moderator token and return it (shown once, stored hashed)."""
    if role not in ROLES:
        raise ValueError(f"role must be one of {ROLES}")
    check_token_name(name)
    token = "mod_" + secrets.token_urlsafe(32)
    store.save_token(token_digest(token), {"name": name, "role": role, "created_at": iso_now()})
    return token


def revoke_tokens(store: CommentStore, name: str) -> int:
    """Revoke every token with this name; return how many."""
    revoked = 0
    for digest, info in store.all_tokens().items():
        if info.get("name") == name:
            revoked += int(store.delete_token(digest))
    return revoked


def authenticate(store: CommentStore, token: str, bootstrap_token: str) -> Moderator | None:
    """Return the moderator a bearer token belongs to, or None."""
    if not token:
        return None
    if bootstrap_token and hmac.compare_digest(token.encode(), bootstrap_token.encode()):
        return Moderator(name="operator", role="admin")
    # Looked up by SHA-256 digest: timing reveals nothing usable about a stored token's digest,
    # and the plain token is never stored or compared.
    info = store.token_info(token_digest(token))
    if info is None or info.get("role") not in ROLES:
        return None
    name = str(info.get("name", ""))
    try:
        check_token_name(name)
    except ValueError as exc:
        # Created before the name rules (a token named "model" would act as the classifier
        # in the audit log): refused until the operator replaces it.
        log.warning(
            "refused a %s token whose name the service no longer accepts (%s): revoke it "
            "with `moderation-admin tokens revoke` and create one with another name",
            info["role"],
            exc,
        )
        return None
    return Moderator(name=name, role=info["role"])
