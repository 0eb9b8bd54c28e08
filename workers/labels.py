"""Moderators' decisions as training labels (no email, no digest: text and labels only)."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from workers.store import STATE_MODERATED, CommentStore

# What each final moderator action teaches the model. A rejection that is not spam is taken
# as "not fit to publish", which this model calls toxic.
LABELS_BY_ACTION: dict[str, tuple[int, int]] = {
    "approve": (0, 0),
    "not_spam": (0, 0),
    "spam": (1, 0),
    "reject": (0, 1),
}


def moderator_labels(store: CommentStore, since_us: int | None = None) -> Iterator[dict[str, Any]]:
    """Yield one label row per comment whose current state is a moderator's decision."""
    ids = store.labeled_ids(since_us=since_us)
    for start in range(0, len(ids), 500):
        for record in store.get_many(ids[start : start + 500]):
            labels = LABELS_BY_ACTION.get(record.get("moderator_action", ""))
            if record.get("state") != STATE_MODERATED or labels is None:
                continue
            yield {
                "text": record["comment"],
                "spam": labels[0],
                "toxic": labels[1],
                "source": "moderator",
                "comment_id": record["id"],
                "decided_at": record.get("moderated_at", ""),
            }


def export_labels(store: CommentStore, out: Path) -> int:
    """Write moderator labels as JSONL to out; return how many rows.

    The file holds readers' comments (personal data), so only its owner may read it (0600),
    whatever the umask.
    """
    out.parent.mkdir(parents=True, exist_ok=True)
    count = 0
    tmp = out.with_suffix(out.suffix + ".tmp")
    tmp.unlink(missing_ok=True)  # a left-over from a crash may carry looser permissions
    descriptor = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with open(descriptor, "w", encoding="utf-8") as handle:
        for row in moderator_labels(store):
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")
            count += 1
    tmp.replace(out)
    return count
