"""The group tables (DESIGN §4.10): groups, their current members and each epoch's members."""

from __future__ import annotations

from dataclasses import dataclass

from gateway.store.base import Reader, Tx


@dataclass(frozen=True, slots=True)
class GroupState:
    """A group as it stands: service, name, epoch and members (uri -> role admin|member)."""

    uri: str
    service: str
    name: str
    epoch: int
    members: dict[str, str]


GROUP = "SELECT uri, service, name, epoch FROM groups WHERE uri = $1"
MEMBERS = "SELECT member_uri, role FROM group_members WHERE group_uri = $1 ORDER BY member_uri"
IS_MEMBER = "SELECT 1 FROM group_members WHERE group_uri = $1 AND member_uri = $2"
CO_MEMBERS = (
    "SELECT 1 FROM group_members a JOIN group_members b ON a.group_uri = b.group_uri "
    "WHERE a.member_uri = $1 AND b.member_uri = $2 LIMIT 1"
)
# Whether `user` shares a group with a user of provider $2 (member URIs `mimi://<client>/u/...`).
SHARES_WITH_PROVIDER = (
    "SELECT 1 FROM group_members a JOIN group_members b ON a.group_uri = b.group_uri "
    "WHERE a.member_uri = $1 AND substr(b.member_uri, 1, length($2)) = $2 LIMIT 1"
)
EPOCH_MEMBERS = (
    "SELECT member_uri FROM group_epoch_members WHERE group_uri = $1 AND epoch = $2 "
    "ORDER BY member_uri"
)
INSERT_GROUP = (
    "INSERT INTO groups (uri, service, name, epoch, created_at, client_id, client_ref, "
    "request_digest) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"
)
SET_EPOCH = "UPDATE groups SET epoch = $2 WHERE uri = $1"
PUT_MEMBER = (
    "INSERT INTO group_members (group_uri, member_uri, role) VALUES ($1, $2, $3) "
    "ON CONFLICT (group_uri, member_uri) DO UPDATE SET role = excluded.role"
)
DROP_MEMBER = "DELETE FROM group_members WHERE group_uri = $1 AND member_uri = $2"
SNAPSHOT = (
    "INSERT INTO group_epoch_members (group_uri, epoch, member_uri, role) "
    "SELECT group_uri, $2, member_uri, role FROM group_members WHERE group_uri = $1"
)


async def group_state(db: Reader, uri: str) -> GroupState | None:
    """The group `uri` with its current members, or None when there is none."""
    return await _state(db, GROUP, uri)


async def _state(db: Reader, sql: str, uri: str) -> GroupState | None:
    row = await db.fetchrow(sql, uri)
    if row is None:
        return None
    members = {r["member_uri"]: r["role"] for r in await db.fetch(MEMBERS, uri)}
    return GroupState(row["uri"], row["service"], row["name"], int(row["epoch"]), members)


async def is_member(db: Reader, group: str, user: str) -> bool:
    """Whether `user` is a current member of `group`."""
    return await db.fetchrow(IS_MEMBER, group, user) is not None


async def co_members(db: Reader, a: str, b: str) -> bool:
    """Whether users `a` and `b` are currently members of one same group."""
    return await db.fetchrow(CO_MEMBERS, a, b) is not None


async def shares_group_with_provider(db: Reader, user: str, client_id: str) -> bool:
    """Whether `user` is in a group with a user of provider `client_id` (the reach hook)."""
    prefix = f"mimi://{client_id}/u/"
    return await db.fetchrow(SHARES_WITH_PROVIDER, user, prefix) is not None


async def epoch_members(db: Reader, group: str, epoch: int) -> list[str]:
    """The members `group` had at `epoch` (empty for an unknown group or epoch)."""
    return [r["member_uri"] for r in await db.fetch(EPOCH_MEMBERS, group, epoch)]


async def create_group(
    tx: Tx,
    *,
    uri: str,
    service: str,
    name: str,
    members: dict[str, str],
    client_id: str,
    client_ref: str,
    digest: str,
    at: int,
) -> None:
    """Create a group at epoch 0 with its members, recording that epoch's membership."""
    await tx.execute(INSERT_GROUP, uri, service, name, 0, at, client_id, client_ref, digest)
    for member, role in members.items():
        await tx.execute(PUT_MEMBER, uri, member, role)
    await tx.execute(SNAPSHOT, uri, 0)


async def change_members(
    tx: Tx, group: str, *, epoch: int, put: dict[str, str], drop: list[str]
) -> None:
    """Add (or re-role) and remove members, move the group to `epoch` and record its members."""
    for member, role in put.items():
        await tx.execute(PUT_MEMBER, group, member, role)
    for member in drop:
        await tx.execute(DROP_MEMBER, group, member)
    await tx.execute(SET_EPOCH, group, epoch)
    await tx.execute(SNAPSHOT, group, epoch)


_LOCK_GROUP = {"sqlite": GROUP, "postgres": GROUP + " FOR UPDATE"}
BY_REF = "SELECT uri, request_digest FROM groups WHERE client_id = $1 AND client_ref = $2"
HAS_PROVIDER_MEMBER = (
    "SELECT 1 FROM group_members WHERE group_uri = $1 "
    "AND substr(member_uri, 1, length($2)) = $2 LIMIT 1"
)
ADD_SESSION = (
    "INSERT INTO group_sessions (group_uri, session_id, sender, epoch, created_at) "
    "VALUES ($1, $2, $3, $4, $5) ON CONFLICT (group_uri, session_id) DO NOTHING"
)
SESSION = "SELECT sender, epoch FROM group_sessions WHERE group_uri = $1 AND session_id = $2"


async def lock_group(tx: Tx, uri: str) -> GroupState | None:
    """The group `uri` as `group_state`, its row locked until the unit commits (PostgreSQL):
    membership changes and the messages checked against its epoch are serialised."""
    return await _state(tx, _LOCK_GROUP[tx.dialect], uri)


async def group_by_ref(db: Reader, client_id: str, client_ref: str) -> tuple[str, str] | None:
    """(uri, request digest) of the group `client_id` created with its id `client_ref`."""
    row = await db.fetchrow(BY_REF, client_id, client_ref)
    return None if row is None else (row["uri"], row["request_digest"])


async def has_provider_member(db: Reader, group: str, client_id: str) -> bool:
    """Whether a user of provider `client_id` is a current member of `group`."""
    return await db.fetchrow(HAS_PROVIDER_MEMBER, group, f"mimi://{client_id}/u/") is not None


async def add_session(
    tx: Tx, group: str, session_id: str, sender: str, epoch: int, at: int
) -> tuple[str, int]:
    """Bind Megolm session `session_id` to `sender` and `epoch` unless it is bound already;
    return (sender, epoch) as bound (the first binding stays)."""
    await tx.execute(ADD_SESSION, group, session_id, sender, epoch, at)
    row = await tx.fetchrow(SESSION, group, session_id)
    assert row is not None
    return row["sender"], int(row["epoch"])


async def session_of(db: Reader, group: str, session_id: str) -> tuple[str, int] | None:
    """(sender, epoch) of a shared Megolm session, or None if it was never shared."""
    row = await db.fetchrow(SESSION, group, session_id)
    return None if row is None else (row["sender"], int(row["epoch"]))


async def exists(db: Reader, uri: str) -> bool:
    """Whether the group `uri` exists."""
    return await db.fetchrow("SELECT 1 FROM groups WHERE uri = $1", uri) is not None


async def totals(db: Reader) -> tuple[int, int]:
    """(groups with at least one member, current memberships) over every group."""
    row = await db.fetchrow(
        "SELECT COUNT(DISTINCT group_uri) AS n_groups, COUNT(*) AS n_members FROM group_members"
    )
    return (0, 0) if row is None else (int(row["n_groups"]), int(row["n_members"]))
