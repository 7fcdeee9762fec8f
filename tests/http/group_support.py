"""Acting as members of groups (DESIGN §4.10): a provider's user with Olm and Megolm state."""

from __future__ import annotations

import time
import uuid
from typing import Any

import msgspec

from gateway.sdk.groups import GroupCrypto
from tests.http.relay_support import ThirdPartyUser, events_of


def gid(group: str) -> str:
    """The `{group_id}` path segment of a group URI."""
    return group.rpartition("/g/")[2]


class GroupUser(ThirdPartyUser):
    """A third-party user that creates groups, shares Megolm sessions and sends to groups."""

    def __init__(self, client: Any, client_id: str, local: str) -> None:
        super().__init__(client, client_id, local)
        self.megolm = GroupCrypto(self.party.identity_key)
        self.keys_seen: set[str] = set()  # room_key events imported (an Olm message opens once)

    async def create(self, members: list[str], *, service: str = "whatsapp",
                     id: str | None = None, name: str = "Team") -> Any:  # fmt: skip
        body = {"id": id or uuid.uuid4().hex, "service": service, "creator": self.uri,
                "name": name, "members": members}  # fmt: skip
        return await self.client.post("/v1/groups", json=body, headers=self.headers)

    async def state(self, group: str) -> Any:
        return await self.client.get(f"/v1/groups/{gid(group)}", headers=self.headers)

    async def add(self, group: str, users: list[str]) -> Any:
        return await self.client.post(
            f"/v1/groups/{gid(group)}/members", json={"by": self.uri, "add": users},
            headers=self.headers,
        )  # fmt: skip

    async def remove(self, group: str, users: list[str]) -> Any:
        return await self.client.post(
            f"/v1/groups/{gid(group)}/members/remove", json={"by": self.uri, "remove": users},
            headers=self.headers,
        )  # fmt: skip

    async def share(
        self, group: str, epoch: int, members: list[str], *, skip: tuple[str, ...] = ()
    ) -> tuple[Any, str]:
        """Share this user's session for `epoch` with `members` (a fresh one per epoch)."""
        session, room_key = self.megolm.outbound(group, epoch)
        if room_key is None:  # shared already: share the same key again
            room_key = msgspec.json.encode({"room_key": {
                "group": group, "session_id": session.session_id,
                "session_key": session.session_key.to_base64(),
            }})  # fmt: skip
        shares = [
            {"to": m, "encrypted": await self.encrypt_bytes_for(m, room_key)}
            for m in members
            if m != self.uri and m not in skip
        ]
        body = {"from": self.uri, "session_id": session.session_id, "shares": shares}
        response = await self.client.post(
            f"/v1/groups/{gid(group)}/keys", json=body, headers=self.headers
        )
        return response, session.session_id

    async def send_group(self, group: str, epoch: int, native: dict[str, Any], **kw: Any) -> Any:
        encrypted, _ = self.megolm.encrypt(group, epoch, msgspec.json.encode(native))
        body = {"id": kw.pop("id", uuid.uuid4().hex), "from": self.uri,
                "sent_at": int(time.time() * 1000), "encrypted": encrypted, **kw}  # fmt: skip
        return await self.client.post(
            f"/v1/groups/{gid(group)}/messages", json=body, headers=self.headers
        )

    async def read_group_events(self, group: str) -> list[Any]:
        """Import this user's room keys and decrypt its group messages, in queue order."""
        out = []
        for event in await events_of(self.client, self.client_id, "room_key"):
            mine = event["to"] == self.uri and event["group"] == group
            if mine and event["event_id"] not in self.keys_seen:
                self.keys_seen.add(event["event_id"])
                self.megolm.import_room_key(group, self.decrypt_bytes(event["encrypted"]))
        for event in await events_of(self.client, self.client_id, "group_message"):
            if event["to"] == self.uri and event["group"] == group:
                plain = self.megolm.decrypt(group, event["encrypted"])
                out.append(None if plain is None else msgspec.json.decode(plain))
        return out
