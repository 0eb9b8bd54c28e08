"""Readers' privacy requests (export, erase) and retention of rejected comments and audit."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from workers.privacy import PUBLIC_FIELDS, EmailVault, normalise_email
from workers.store import CommentStore

EXPORT_FIELDS = (*PUBLIC_FIELDS, "status")


def export_by_email(store: CommentStore, vault: EmailVault, email: str) -> list[dict[str, Any]]:
    """Return every stored comment by that address, as the reader would recognise it."""
    out = []
    for record in _records_by(store, vault, email):
        item = {name: record.get(name) or None for name in EXPORT_FIELDS}
        item["email"] = vault.decrypt(record.get("email_enc", ""))
        out.append(item)
    return out


def _records_by(store: CommentStore, vault: EmailVault, email: str) -> list[dict[str, Any]]:
    """Return the stored comments written from this address.

    Comments stored before digests were lower-cased (instead of case-folded) are filed under
    the case-folded digest, which another mailbox may share ("straße" and "strasse"): there,
    only the records whose decrypted address is this one count."""
    digest, *legacy = vault.lookup_digests(email)
    found: list[dict[str, Any]] = []
    seen: set[str] = set()
    for lookup in (digest, *legacy):
        for record in store.get_many(store.author_comment_ids(lookup)):
            # Under the current digest an address that no key can decrypt any more (retired
            # keys) still counts; a case-folded digest needs the address itself to match.
            if record["id"] not in seen and _same_address(
                vault, record.get("email_enc"), email, unreadable=lookup == digest
            ):
                found.append(record)
                seen.add(record["id"])
    return found


def _same_address(vault: EmailVault, encrypted: Any, email: str, *, unreadable: bool) -> bool:
    """Return True if the encrypted address is this one (``unreadable`` if it cannot tell)."""
    clear = vault.decrypt(encrypted) if isinstance(encrypted, str) and encrypted else None
    if clear is None:
        return unreadable
    return normalise_email(clear) == normalise_email(email)


@dataclass
class ErasureReport:
    """What an erasure removed, so the operator can answer the reader."""

    comments_deleted: int = 0
    audit_entries_removed: int = 0
    undo_entries_removed: int = 0
    other_keys_removed: int = 0
    comment_ids: list[str] = field(default_factory=list)
    storage_rewrite: str = ""  # what Redis was asked to do about its files on disk

    def to_dict(self) -> dict[str, Any]:
        return {
            "comments_deleted": self.comments_deleted,
            "audit_entries_removed": self.audit_entries_removed,
            "undo_entries_removed": self.undo_entries_removed,
            "other_keys_removed": self.other_keys_removed,
            "comment_ids": self.comment_ids,
            "storage_rewrite": self.storage_rewrite,
        }


def erase_by_email(
    store: CommentStore,
    vault: EmailVault,
    email: str,
    actor: str,
) -> ErasureReport:
    """Remove every comment by that address and every record that could point back to it.

    Each delete records the comment's comment.deleted event (reason "erased") in the outbox
    when a webhook is configured; the caller drains it."""
    digest, *legacy = vault.lookup_digests(email)
    report = ErasureReport()
    records = _records_by(store, vault, email)
    ids = [str(r["id"]) for r in records]
    for record in records:
        if store.delete(record, reason="erased") is not None:
            report.comments_deleted += 1
            report.comment_ids.append(record["id"])
    # Comments a moderator deleted are no longer indexed by author, but an undo entry still
    # holds each whole record: those, and every audit entry about them, go as well (checked
    # like the stored comments, see _records_by).
    gone = set(ids)
    for lookup in (digest, *legacy):
        gone |= {
            i
            for i, enc in store.deleted_comment_emails_by_author(lookup).items()
            if _same_address(vault, enc, email, unreadable=lookup == digest)
        }
    # Audit entries may hold moderators' notes about the reader: they go too, and one entry
    # records the erasure itself (opaque ids only).
    report.audit_entries_removed = store.drop_audit_entries(gone)
    store.append_audit_event(
        {"actor": actor, "action": "erase", "comments_deleted": report.comments_deleted}
    )
    report.undo_entries_removed = store.drop_undo_entries(gone)
    # A delete's reply, kept a minute for a replay after a lost reply, holds the record too.
    store.drop_delete_replies(gone)
    # Anything else keyed by the author's digest: the author index, rate-limit counters.
    # (Not the legacy digest's keys: they may belong to another mailbox, see _records_by.)
    report.other_keys_removed = store.delete_keys_mentioning(digest)
    # Until Redis rewrites its append-only file, the deleted values are still in it on disk.
    report.storage_rewrite = store.rewrite_persistence()
    return report


def purge_expired(
    store: CommentStore,
    *,
    rejected_days: float,
    audit_days: float,
) -> dict[str, int]:
    """Delete rejected/spam comments and audit entries older than the retention periods.

    Each delete records the comment's comment.deleted event (reason "expired") in the
    outbox when a webhook is configured; the caller drains it."""
    now = time.time()
    cutoff_us = int((now - rejected_days * 86400) * 1_000_000)
    deleted = 0
    for queue in ("rejected", "spam"):
        while True:
            ids = store.expired_ids(queue, cutoff_us)
            records = store.get_many(ids)
            if not records:
                break
            for record in records:
                audit = {"actor": "retention", "action": "expire"}
                if store.delete(record, audit=audit, reason="expired") is not None:
                    deleted += 1
    trimmed = store.trim_audit(int((now - audit_days * 86400) * 1000))
    return {"comments_deleted": deleted, "audit_entries_trimmed": trimmed}
