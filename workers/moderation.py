"""Moderators' decisions on comments; each becomes a training label."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from workers.store import STATE_MODERATED, CommentStore, iso_now

Action = Literal["approve", "reject", "spam"]
ACTIONS: dict[str, str] = {"approve": "approved", "reject": "rejected", "spam": "spam"}


@dataclass(frozen=True)
class DecisionResult:
    found: bool
    comment: dict[str, Any] | None = None
    previous_queue: str = ""


def apply_decision(
    store: CommentStore, comment_id: str, action: str, moderator: str, note: str = ""
) -> DecisionResult:
    """Move a comment as the moderator decided and record who and when."""
    queue = ACTIONS[action]
    record = store.get(comment_id)
    if record is None:
        return DecisionResult(found=False)
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
        },
        label_it=True,
        audit={
            "actor": moderator,
            "action": action,
            "from": record.get("queue"),
            "to": queue,
            "note": note,
        },
    )
    if not result.found:
        return DecisionResult(found=False)
    return DecisionResult(found=True, comment=store.get(comment_id), previous_queue=result.previous)
