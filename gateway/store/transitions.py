"""The onboarding history: who moved a request or a provider between states, when and why."""

from __future__ import annotations

from typing import Literal

import msgspec

from gateway.store.base import Reader, Tx

SubjectKind = Literal["request", "provider"]


class Transition(msgspec.Struct, frozen=True, kw_only=True):
    from_status: str | None
    to_status: str
    actor: str
    reason: str | None
    at: int
    # A step that is not a change of phase (comment, extension), or the kind of a review.
    event: str | None = None


async def record_transition(
    tx: Tx,
    *,
    kind: SubjectKind,
    subject: str,
    before: str | None,
    after: str,
    actor: str,
    reason: str | None,
    at: int,
    event: str | None = None,
) -> None:
    """Keep who moved `subject` from `before` to `after`, when and why."""
    await tx.execute(
        "INSERT INTO onboarding_transitions "
        "(subject_kind, subject_id, from_state, to_state, actor, reason, at, event) "
        "VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        kind,
        subject,
        before,
        after,
        actor,
        reason,
        at,
        event,
    )


async def transitions_of(db: Reader, kind: SubjectKind, subject: str) -> list[Transition]:
    """The transitions of `subject`, in the order they happened."""
    rows = await db.fetch(
        "SELECT from_state, to_state, actor, reason, at, event FROM onboarding_transitions "
        "WHERE subject_kind = $1 AND subject_id = $2 ORDER BY seq",
        kind,
        subject,
    )
    return [
        Transition(
            from_status=r["from_state"],
            to_status=r["to_state"],
            actor=r["actor"],
            reason=r["reason"],
            at=r["at"],
            event=r["event"],
        )
        for r in rows
    ]
