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
    row = await db.fetchrow(GROUP, uri)
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
