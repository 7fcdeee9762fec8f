"""The delivery outbox: work items, their claims and leases, outcomes and dead letters.

Owns the tables `relay_outbox` and `relay_dead_letters` (the only module writing them); a
finished item's message is finished through gateway/store/messages.py, which owns its row
(`accept_outbound` runs that module's insert inside its own statement).

A claim takes an unbroken run of due, unleased rows from the head of each conversation (one
row, or up to `per_conversation`) and leases them to this replica (`claimed_by`,
`lease_until`). A row leaves the outbox only once delivered or dead-lettered, and nothing
behind a leased, not yet due or locked row is claimable, so a conversation's next message
waits for the one before it, whichever replica holds that (order per conversation). A lease
that expires (its replica was killed) makes the rows claimable again: at least once, and the
platforms drop a message id they have seen.

On PostgreSQL the claim locks with `FOR UPDATE SKIP LOCKED`, so replicas claim disjoint rows
without waiting on each other. A write unit must never wait on another replica (it would hold
up this replica's whole group commit), yet another replica's claim may hold a row lock on a
row it did not take (a claim locks a head, then finds it leased meanwhile, and keeps the lock
until its COMMIT): so updates of a claimed row lock it `NOWAIT` (`_OWN_ROW`) and the caller
tries again a moment later (`is_lock_not_available`). SQLite has one writer, so its units are
serial and the plain spellings do.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import msgspec

from gateway.store import messages
from gateway.store.base import Reader, Row, Tx

_CLAIM = (
    "SELECT o.seq, o.message_id, o.service, o.attempts, o.conversation, o.member, m.client_id, "
    "m.client_msg_id, m.kind, m.sender, m.recipient, m.sent_at, m.accepted_at, m.payload "
    "FROM relay_outbox o JOIN relay_messages m ON m.id = o.message_id "
    "WHERE o.next_attempt_at <= $1 AND o.lease_until <= $1 "
    "AND o.seq = (SELECT MIN(h.seq) FROM relay_outbox h WHERE h.conversation = o.conversation) "
    "ORDER BY o.seq LIMIT $2"
)
CLAIM_SQL = {"sqlite": _CLAIM, "postgres": _CLAIM + " FOR UPDATE OF o SKIP LOCKED"}
# Runs: up to $3 rows from the head of each conversation, with each row's position in it
# (`pos`, 0 for the head), so that only an unbroken run from the head is claimed even where a
# row before it is leased, not due, or locked by another replica's claim (skipped).
# The conversations are walked through the (conversation, seq) index from the one after $4
# (a loose index scan: one probe per conversation, at most $2 of them), so the cost does not
# grow with the rows queued behind a head; a worker passes the last conversation it claimed,
# so rounds go round the conversations.
_CLAIM_RUNS = (
    "WITH RECURSIVE c(conversation, n) AS ("
    "SELECT MIN(conversation), 1 FROM relay_outbox WHERE conversation > $4 "
    "UNION ALL SELECT (SELECT MIN(r.conversation) FROM relay_outbox r "
    "WHERE r.conversation > c.conversation), c.n + 1 "
    "FROM c WHERE c.conversation IS NOT NULL AND c.n < $2) "
    "SELECT o.seq, o.message_id, o.service, o.attempts, o.conversation, o.member, m.client_id, "
    "m.client_msg_id, m.kind, m.sender, m.recipient, m.sent_at, m.accepted_at, m.payload, "
    "(SELECT COUNT(*) FROM relay_outbox p WHERE p.conversation = o.conversation "
    "AND p.seq < o.seq) AS pos "
    "FROM c JOIN relay_outbox o ON o.conversation = c.conversation "
    "AND o.seq < COALESCE((SELECT h.seq FROM relay_outbox h WHERE h.conversation = "
    "c.conversation ORDER BY h.seq LIMIT 1 OFFSET $3), 9223372036854775807) "
    "JOIN relay_messages m ON m.id = o.message_id "
    "WHERE o.next_attempt_at <= $1 AND o.lease_until <= $1 "
    "ORDER BY c.n, o.seq LIMIT $2"
)
CLAIM_RUNS_SQL = {"sqlite": _CLAIM_RUNS, "postgres": _CLAIM_RUNS + " FOR UPDATE OF o SKIP LOCKED"}
# The claimed row `$1`; on PostgreSQL an error (never a wait) while another transaction has
# it locked.
_OWN_ROW = {
    "sqlite": "seq = $1",
    "postgres": "seq = (SELECT seq FROM relay_outbox WHERE seq = $1 FOR UPDATE NOWAIT)",
}
# The topic of Store notifications that new work is in the outbox (wakes other replicas).
TOPIC = "outbox"


class Claimed(msgspec.Struct, frozen=True, kw_only=True):
    """An outbox item leased to this replica, with what delivering it needs."""

    seq: int
    message_id: str
    conversation: str
    service: str
    attempts: int
    client_id: str
    client_msg_id: str
    kind: Literal["message", "receipt", "typing", "group_message", "room_key", "group_membership"]
    sender: str
    recipient: str
    sent_at: int
    accepted_at: int
    payload: str | None
    # The group member a group item goes to (its message's recipient is the group); None: 1:1.
    member: str | None = None


def _claimed(rows: list[Row]) -> list[Claimed]:
    fields = Claimed.__struct_fields__
    return [Claimed(**{f: row[f] for f in fields}) for row in rows]


async def enqueue(
    tx: Tx, message_id: str, conversation: str, service: str, at: int, member: str | None = None
) -> None:
    """Queue `message_id` for delivery, due at once, behind its conversation's earlier items.

    A group item is queued once per platform `member`, each in a conversation of its own.
    """
    await tx.execute(
        "INSERT INTO relay_outbox (message_id, conversation, service, attempts, "
        "next_attempt_at, lease_until, created_at, member) VALUES ($1, $2, $3, 0, $4, 0, $4, $5)",
        message_id,
        conversation,
        service,
        at,
        member,
    )


# PostgreSQL: the message and its outbox row in one statement (one round trip); the outbox
# row is made only if the message was (its idempotency key was free).
_ACCEPT_OUTBOUND_PG = (
    f"WITH m AS ({messages.ADD_OUTBOUND_SQL} RETURNING id) "
    "INSERT INTO relay_outbox (message_id, conversation, service, attempts, next_attempt_at, "
    "lease_until, created_at, member) SELECT m.id, $13, $6, 0, $10, 0, $10, NULL FROM m"
)


async def accept_outbound(
    tx: Tx, envelope: messages.Envelope, payload: str, at: int, conversation: str
) -> messages.KnownMessage | None:
    """Record a provider's message (messages.add_outbound) and queue it in `conversation`.

    None when both are written; when the idempotency key is taken, nothing is written and
    the message holding it is returned. One statement on PostgreSQL, two on SQLite.
    """
    if tx.dialect == "postgres":
        args = messages.outbound_args(envelope, payload, at)
        if await tx.execute(_ACCEPT_OUTBOUND_PG, *args, conversation):
            return None
        return await messages.holder(tx, envelope)
    known = await messages.add_outbound(tx, envelope, payload, at)
    if known is None:
        await enqueue(tx, envelope.id, conversation, envelope.service, at)
    return known


async def enqueue_members(
    tx: Tx, message_id: str, group: str, service: str, at: int, members: list[str]
) -> None:
    """Queue a group item once per platform member, each behind that member's earlier ones."""
    if members:
        await tx.executemany(
            "INSERT INTO relay_outbox (message_id, conversation, service, attempts, "
            "next_attempt_at, lease_until, created_at, member) "
            "VALUES ($1, $2, $3, 0, $4, 0, $4, $5)",
            [(message_id, f"{group}\n{m}", service, at, m) for m in members],
        )


async def claim(
    tx: Tx,
    now: int,
    lease_ms: int,
    limit: int,
    replica: str = "",
    *,
    per_conversation: int = 1,
    after: str = "",
) -> list[Claimed]:
    """Lease up to `limit` due rows to `replica`; return them with their messages.

    At most `per_conversation` rows of one conversation, an unbroken run from its head, in
    order; with runs, conversations after `after` first, then from the start.
    """
    runs_sql = CLAIM_RUNS_SQL[tx.dialect]
    if per_conversation == 1:
        rows = await tx.fetch(CLAIM_SQL[tx.dialect], now, limit)
        await _lease(tx, rows, now + lease_ms, replica)
        return _claimed(rows)
    rows = _runs(await tx.fetch(runs_sql, now, limit, per_conversation, after))
    await _lease(tx, rows, now + lease_ms, replica)
    if after and len(rows) < limit:  # round the corner: leased rows are not claimed twice
        left = limit - len(rows)
        wrapped = _runs(await tx.fetch(runs_sql, now, left, per_conversation, ""))
        await _lease(tx, wrapped, now + lease_ms, replica)
        rows += wrapped
    return _claimed(rows)


async def _lease(tx: Tx, rows: list[Row], until: int, replica: str) -> None:
    if rows:
        await tx.executemany(
            "UPDATE relay_outbox SET lease_until = $1, claimed_by = $2 WHERE seq = $3",
            [(until, replica, row["seq"]) for row in rows],
        )


def _runs(rows: list[Row]) -> list[Row]:
    """The rows that continue their conversation's run from its head (pos 0, 1, 2...)."""
    by_conversation: dict[str, list[Row]] = {}
    for row in rows:  # in the order the conversations were walked
        by_conversation.setdefault(row["conversation"], []).append(row)
    kept = []
    for run in by_conversation.values():
        for expected, row in enumerate(sorted(run, key=lambda r: r["pos"])):
            if row["pos"] != expected:
                break  # nothing after a gap
            kept.append(row)
    return kept


async def release(tx: Tx, seq: int, *, replica: str = "") -> None:
    """Give a claimed row back untried (the one before it is to be retried first)."""
    await tx.execute(
        "UPDATE relay_outbox SET lease_until = 0, claimed_by = NULL "
        f"WHERE {_OWN_ROW[tx.dialect]} AND claimed_by = $2",
        seq,
        replica,
    )


async def release_own(tx: Tx, replica: str) -> int:
    """Drop the leases this process holds: every lease on SQLite (one process), on PostgreSQL
    those of `replica`, an id no other live process holds (Store.hold_exclusive)."""
    if tx.dialect == "sqlite":
        return await release_all(tx)
    return await release_replica(tx, replica)


async def release_all(tx: Tx) -> int:
    """Drop every lease: only safe where this process is the only worker (SQLite)."""
    return await tx.execute("UPDATE relay_outbox SET lease_until = 0 WHERE lease_until > 0")


async def release_replica(tx: Tx, replica: str) -> int:
    """Drop the leases `replica` holds: at its start, they are a previous life's (killed).

    Safe because a replica holds its id exclusively while it lives (Store.hold_exclusive).
    """
    return await tx.execute(
        "UPDATE relay_outbox SET lease_until = 0, claimed_by = NULL "
        "WHERE claimed_by = $1 AND lease_until > 0",
        replica,
    )


async def retry_later(tx: Tx, seq: int, attempts: int, at: int, *, replica: str = "") -> None:
    """Give the row back to be retried at `at`, unless another replica has taken it over."""
    await tx.execute(
        "UPDATE relay_outbox SET attempts = $2, next_attempt_at = $3, lease_until = 0, "
        f"claimed_by = NULL WHERE {_OWN_ROW[tx.dialect]} AND claimed_by = $4",
        seq,
        attempts,
        at,
        replica,
    )


async def finish(
    tx: Tx, seq: int, message_id: str, status: str, at: int, *, group: bool = False
) -> bool:
    """Remove the work item and drop the payload: only the envelope stays (Art. 7(8)).

    A row already gone was finished by a replica that took it over after our lease expired
    (the platform dropped the duplicate id): its message is left as that replica set it, and
    False is returned. A `group` item has a row per member and is finished (its payload
    dropped) with the last of them; on PostgreSQL its message row is locked first (NOWAIT),
    so that two replicas finishing its last two rows at once see each other's deletion.
    """
    if group and tx.dialect == "postgres":
        await tx.fetchrow(_LOCK_MESSAGE, message_id)
    if not await tx.execute(f"DELETE FROM relay_outbox WHERE {_OWN_ROW[tx.dialect]}", seq):
        return False
    if not group or await tx.fetchrow(_PENDING_OF_MESSAGE, message_id) is None:
        await messages.finish(tx, message_id, status, at)
    return True


# PostgreSQL: every row of a round in one statement, each row locked NOWAIT as `_OWN_ROW`
# does, and the messages of the rows actually removed finished with them.
_FINISH_MANY_PG = (
    "WITH gone AS (DELETE FROM relay_outbox WHERE seq IN (SELECT seq FROM relay_outbox "
    "WHERE seq = ANY($3::bigint[]) FOR UPDATE NOWAIT) RETURNING message_id) "
    + messages.FINISH_SQL.format(ids="SELECT message_id FROM gone")
)


async def finish_many(tx: Tx, items: Sequence[tuple[int, str]], status: str, at: int) -> None:
    """`finish` for many 1:1 items (seq, message id) at once: one statement on PostgreSQL
    (one round trip for a delivery round instead of two per message), a row at a time on
    SQLite. Rows already gone leave their messages as they are, as in `finish`."""
    if not items:
        return
    if tx.dialect == "postgres":
        await tx.execute(_FINISH_MANY_PG, status, at, [seq for seq, _ in items])
        return
    for seq, message_id in items:
        await finish(tx, seq, message_id, status, at)


_LOCK_MESSAGE = "SELECT 1 FROM relay_messages WHERE id = $1 FOR UPDATE NOWAIT"
_PENDING_OF_MESSAGE = "SELECT 1 FROM relay_outbox WHERE message_id = $1 LIMIT 1"


async def dead_letter(
    tx: Tx, message_id: str, service: str, attempts: int, reason: str, at: int
) -> None:
    """Keep a given-up message's reason for operators (for a group item, its first failure)."""
    await tx.execute(
        "INSERT INTO relay_dead_letters (message_id, service, attempts, reason, failed_at) "
        "VALUES ($1, $2, $3, $4, $5) ON CONFLICT (message_id) DO NOTHING",
        message_id, service, attempts, reason, at,
    )  # fmt: skip


async def dead_letter_reason(db: Reader, message_id: str) -> str | None:
    """Why `message_id` was given up on, if it was."""
    value = await db.fetchval(
        "SELECT reason FROM relay_dead_letters WHERE message_id = $1", message_id
    )
    return None if value is None else str(value)


async def stats(db: Reader) -> tuple[int, int | None]:
    """(depth, created_at of the oldest row) of the outbox."""
    row = await db.fetchrow("SELECT COUNT(*) AS n, MIN(created_at) AS oldest FROM relay_outbox")
    return (int(row["n"]), row["oldest"]) if row else (0, None)
