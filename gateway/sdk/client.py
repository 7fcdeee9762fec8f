"""The async client a third-party server uses to talk to dma-gateway end to end encrypted.

    async with InteropClient(base_url, client_id, key, state_path, pickle_key) as sdk:
        await sdk.publish_keys("alice")
        await sdk.send_text("alice", "mimi://whatsapp/u/4915112345678", "Hallo!")
        async for event in sdk.events():
            ...

Every message is translated for the recipient's service and encrypted with Olm here; the
gateway only relays ciphertext. Sessions persist in the state file across restarts.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import msgspec

from gateway.content import ExternalPart, MimiContent, content_from_json, message_id
from gateway.crypto import (
    DecryptionFailed,
    OlmCiphertext,
    decrypt_media,
    encrypt_media,
    verify_key_signature,
)
from gateway.sdk import content as c
from gateway.sdk.auth import SigningKey, TokenSource
from gateway.sdk.events import Event, GroupChange, Message, Notice, Receipt, Typing
from gateway.sdk.groups import GroupCrypto
from gateway.sdk.state import SdkState
from gateway.sdk.transparency import TransparencyChecker
from gateway.translate.groups import parse_group_uri

DEFAULT_ONE_TIME_KEYS = 50
RATE_LIMIT_RETRIES = 3
# How often the event iterator checks the key transparency log for keys of our users that we
# did not publish.
MONITOR_EVERY_S = 300.0


class GatewayError(Exception):
    """The gateway answered with a problem; `problem` is its RFC 9457 body."""

    def __init__(self, status: int, problem: dict[str, Any]) -> None:
        super().__init__(f"{status} {problem.get('type')}: {problem.get('detail')}")
        self.status = status
        self.problem = problem


class Sent(msgspec.Struct, frozen=True, kw_only=True):
    """A message accepted by the gateway: its gateway id, the id we gave it (receipts name
    that one), and its MIMI message id."""

    id: str
    client_message_id: str
    mimi_id: bytes
    envelope: dict[str, Any]  # what went over the wire (ciphertext, never plaintext)


class InteropClient:
    """One provider's connection: tokens, keys, encrypted sends and the event stream."""

    def __init__(
        self,
        base_url: str,
        client_id: str,
        key: SigningKey,
        state_path: str | Path,
        pickle_key: bytes,
        *,
        one_time_keys: int = DEFAULT_ONE_TIME_KEYS,
        session: aiohttp.ClientSession | None = None,
        kt_public_keys: list[str] | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.client_id = client_id
        self.state = SdkState(state_path, pickle_key)
        self.one_time_keys = one_time_keys
        self._own_session = session is None
        self.session = session or aiohttp.ClientSession()
        self.tokens = TokenSource(self.session, f"{self.base_url}/v1/oauth/token", client_id, key)
        self.cursor: str | None = None
        self._megolm: dict[str, GroupCrypto] = {}
        self._groups: dict[str, dict[str, Any]] = {}  # the last state seen of each group
        # Key transparency: every claimed key checked against the signed log (DESIGN §4.12);
        # the log's keys come from the reference offer unless pinned in `kt_public_keys`.
        self.kt = TransparencyChecker(
            self.state.db,
            lambda path, params: self._request("GET", path, params=params),
            public_keys=kt_public_keys,
        )

    async def __aenter__(self) -> InteropClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        """Close the HTTP session (if the client made it) and the state file."""
        if self._own_session:
            await self.session.close()
        self.state.close()

    def uri(self, local: str) -> str:
        """The URI of one of this provider's users."""
        return f"mimi://{self.client_id}/u/{local}"

    # -- HTTP ------------------------------------------------------------------------------

    async def _request(self, method: str, path: str, **kw: Any) -> Any:
        extra = kw.pop("headers", {})
        refreshed = False
        for attempt in range(RATE_LIMIT_RETRIES + 2):
            headers = {"Authorization": f"Bearer {await self.tokens.token()}", **extra}
            async with self.session.request(
                method, self.base_url + path, headers=headers, **kw
            ) as r:
                if r.status == 401 and not refreshed:
                    self.tokens.invalidate()  # revoked or expired early: one fresh try
                    refreshed = True
                    continue
                if r.status == 429 and attempt < RATE_LIMIT_RETRIES:
                    # The gateway says when (RFC 9110 Retry-After); wait that long, bounded.
                    await asyncio.sleep(min(float(r.headers.get("Retry-After", "1")), 5.0))
                    continue
                if r.status >= 400:
                    raise GatewayError(r.status, await r.json(content_type=None))
                if r.content_type == "application/json":
                    return await r.json()
                return await r.read()
        raise AssertionError("unreachable")

    # -- keys ------------------------------------------------------------------------------

    async def publish_keys(self, local: str, count: int | None = None) -> dict[str, Any]:
        """Publish (or replenish) a user's identity, one-time and fallback keys."""
        uri = self.uri(local)
        party = self.state.party(uri)
        bundle = party.key_bundle(self.one_time_keys if count is None else count, fallback=True)
        # Saved before the upload: the private halves must exist for any key the gateway holds.
        self.state.save(uri)
        self.kt.published(uri, bundle.identity_key, bundle.signing_key)
        return await self._request(
            "PUT", f"/v1/users/{local}/keys", json=msgspec.to_builtins(bundle)
        )

    async def _session_key(self, sender: str, peer: str) -> tuple[str, str | None]:
        """The peer's identity key and, without a session yet, a claimed one-time key."""
        party = self.state.party(sender)
        known = self.state.peer_key(peer)
        if known is not None and party.has_session(known):
            return known, None
        bundle = await self._request("GET", "/v1/keys", params={"user": peer})
        await self.kt.check_bundle(peer, bundle)  # raises KeyTransparencyError
        signed = bundle["one_time_key"] or bundle["fallback_key"]
        if signed is None:
            raise GatewayError(404, {"type": "no-keys", "detail": "the peer has no keys left"})
        if not verify_key_signature(bundle["signing_key"], signed["key"], signed["signature"]):
            raise DecryptionFailed("the peer's one-time key is not signed by its signing key")
        self.state.set_peer_key(peer, bundle["identity_key"])
        return bundle["identity_key"], signed["key"]

    # -- sending ---------------------------------------------------------------------------

    async def send(self, local: str, peer: str, content: MimiContent) -> Sent:
        """Translate `content` for the peer's service, encrypt it and hand it to the gateway."""
        sender = self.uri(local)
        mimi_id = message_id(content, sender_uri=sender)
        service = c.service_of(peer) or "mimi"
        plaintexts = c.to_plaintexts(peer, content, self.state)
        identity_key, one_time_key = await self._session_key(sender, peer)
        party = self.state.party(sender)
        client_id = uuid.uuid4().hex
        sent: Sent | None = None
        for index, plaintext in enumerate(plaintexts):
            ciphertext = party.encrypt(identity_key, plaintext, one_time_key=one_time_key)
            self.state.save(sender)  # a ratchet step is never reused, even after a crash
            envelope = {
                "id": client_id if index == 0 else f"{client_id}.{index}",
                "from": sender,
                "to": peer,
                "sent_at": int(time.time() * 1000),
                "encrypted": ciphertext.to_wire(),
            }
            answer = await self._request("POST", "/v1/messages", json=envelope)
            self.state.remember(service, c.native_message_id(service, answer["id"]), mimi_id)
            if sent is None:
                sent = Sent(
                    id=answer["id"], client_message_id=client_id, mimi_id=mimi_id,
                    envelope=envelope,
                )  # fmt: skip
        assert sent is not None
        return sent

    def _ref(self, peer: str, message_id_: str) -> bytes:
        """The MIMI id of a message named by its gateway id (as events and `Sent` give it)."""
        service = c.service_of(peer) or "mimi"
        return self.state.mimi_id(service, c.native_message_id(service, message_id_))

    async def send_text(self, local: str, peer: str, body: str) -> Sent:
        """Send a text message."""
        return await self.send(local, peer, c.text(body))

    async def reply(self, local: str, peer: str, message_id_: str, body: str) -> Sent:
        """Reply with text to a message (by its gateway id)."""
        return await self.send(local, peer, c.text(body, reply_to=self._ref(peer, message_id_)))

    async def react(self, local: str, peer: str, message_id_: str, emoji: str) -> Sent:
        """React to a message; an empty emoji removes the reaction."""
        return await self.send(local, peer, c.reaction(self._ref(peer, message_id_), emoji))

    async def edit(self, local: str, peer: str, message_id_: str, body: str) -> Sent:
        """Replace the text of a message this user sent."""
        return await self.send(local, peer, c.edit(self._ref(peer, message_id_), body))

    async def delete(self, local: str, peer: str, message_id_: str) -> Sent:
        """Withdraw a message this user sent."""
        return await self.send(local, peer, c.delete(self._ref(peer, message_id_)))

    async def send_media(
        self,
        local: str,
        peer: str,
        data: bytes,
        *,
        content_type: str,
        filename: str = "",
        caption: str = "",
    ) -> Sent:
        """Encrypt a file (AES-256-GCM), upload the ciphertext, send its key inside Olm."""
        part = await self._upload(peer, data, content_type, filename, caption)
        return await self.send(local, peer, part)

    async def _upload(
        self, to: str, data: bytes, content_type: str, filename: str, caption: str
    ) -> MimiContent:
        """Encrypt a file (AES-256-GCM), upload the ciphertext for `to` (a user or group);
        the MIMI content that carries its URL and key."""
        ciphertext, key = encrypt_media(data)
        params = {"to": to}
        service = c.service_of(to) or _hub_of(to)
        kind = c.upload_kind(service, content_type) if service else None
        if kind is not None:
            params["kind"] = kind
        info = await self._request(
            "POST",
            "/v1/media",
            params=params,
            data=ciphertext,
            headers={"Content-Type": "application/octet-stream"},
        )
        url = f"{self.base_url}/v1/media/{info['id']}"
        return c.media(
            url, key, content_type=content_type, size=len(data), filename=filename, caption=caption
        )

    async def download_media(self, part: ExternalPart) -> bytes:
        """Fetch an ExternalPart's ciphertext from the gateway and decrypt it."""
        if not part.url.startswith(self.base_url + "/v1/media/"):
            raise ValueError("the media is not stored at this gateway")
        data: bytes = await self._request("GET", part.url[len(self.base_url) :])
        return decrypt_media(data, c.media_key_of(part, len(data)))

    async def receipt(self, local: str, peer: str, message_id_: str, status: str = "read") -> None:
        """Tell the sender a message was delivered or read (receipts are not encrypted)."""
        body = {"message_id": message_id_, "from": self.uri(local), "to": peer, "status": status}
        await self._request("POST", "/v1/receipts", json=body)

    async def typing(self, local: str, peer: str, state: str = "on") -> None:
        """Show or stop the typing indicator."""
        body = {"from": self.uri(local), "to": peer, "state": state}
        await self._request("POST", "/v1/typing", json=body)

    # -- groups (DESIGN §4.10) --------------------------------------------------------------

    def _crypto(self, user: str) -> GroupCrypto:
        """A local user's Megolm sessions, kept in the state file."""
        crypto = self._megolm.get(user)
        if crypto is None:
            identity = self.state.party(user).identity_key
            crypto = self._megolm[user] = GroupCrypto(identity, store=self.state, user=user)
        return crypto

    def _seen_group(self, state: dict[str, Any]) -> dict[str, Any]:
        self._groups[state["group"]] = state
        return state

    async def create_group(
        self, local: str, service: str, name: str, members: list[str], *, id: str | None = None
    ) -> dict[str, Any]:
        """Create a group hosted on `service` with `local` as its admin; its state."""
        body = {"id": id or uuid.uuid4().hex, "service": service, "creator": self.uri(local),
                "name": name, "members": members}  # fmt: skip
        return self._seen_group(await self._request("POST", "/v1/groups", json=body))

    async def group(self, group: str) -> dict[str, Any]:
        """A group's current state (members, roles, epoch)."""
        return self._seen_group(await self._request("GET", f"/v1/groups/{_group_id(group)}"))

    async def add_members(self, local: str, group: str, users: list[str]) -> dict[str, Any]:
        """Add members (`local` must be an admin); the epoch grows, sessions rotate."""
        body = {"by": self.uri(local), "add": users}
        path = f"/v1/groups/{_group_id(group)}/members"
        return self._seen_group(await self._request("POST", path, json=body))

    async def remove_members(self, local: str, group: str, users: list[str]) -> dict[str, Any]:
        """Remove members (an admin), or `local` itself (leave); the epoch grows."""
        body = {"by": self.uri(local), "remove": users}
        path = f"/v1/groups/{_group_id(group)}/members/remove"
        return self._seen_group(await self._request("POST", path, json=body))

    async def leave(self, local: str, group: str) -> dict[str, Any]:
        """`local` leaves the group."""
        return await self.remove_members(local, group, [self.uri(local)])

    async def _share_room_key(
        self, sender: str, state: dict[str, Any], session_id: str, room_key: bytes
    ) -> None:
        """Send the room key to every other current member over Olm (claiming keys as needed)."""
        party = self.state.party(sender)
        shares = []
        for member in (m["uri"] for m in state["members"]):
            if member == sender:
                continue
            identity_key, one_time_key = await self._session_key(sender, member)
            ciphertext = party.encrypt(identity_key, room_key, one_time_key=one_time_key)
            self.state.save(sender)
            shares.append({"to": member, "encrypted": ciphertext.to_wire()})
        body = {"from": sender, "session_id": session_id, "shares": shares}
        path = f"/v1/groups/{_group_id(state['group'])}/keys"
        await self._request("POST", path, json=body)

    async def send_group(self, local: str, group: str, content: MimiContent) -> Sent:
        """Encrypt `content` with the group's Megolm session (shared first when the epoch moved)
        and send it to every member; after a membership change the gateway had not yet told
        us of (409 stale-group-session), share a new session and send once more."""
        sender = self.uri(local)
        mimi_id = message_id(content, sender_uri=sender)
        crypto = self._crypto(sender)
        state = self._groups.get(group) or await self.group(group)
        for attempt in range(2):
            try:
                return await self._send_group_once(sender, state, crypto, content, mimi_id)
            except GatewayError as exc:
                stale = exc.problem.get("type") == "/problems/stale-group-session"
                if not stale or attempt:
                    raise
            crypto.forget_outbound(group)
            state = await self.group(group)
        raise AssertionError("unreachable")

    async def _send_group_once(
        self,
        sender: str,
        state: dict[str, Any],
        crypto: GroupCrypto,
        content: MimiContent,
        mimi_id: bytes,
    ) -> Sent:
        group, service, epoch = state["group"], state["service"], int(state["epoch"])
        client_id = uuid.uuid4().hex
        sent: Sent | None = None
        for index, plaintext in enumerate(c.native_plaintexts(service, content, self.state)):
            encrypted, room_key = crypto.encrypt(group, epoch, plaintext)
            if room_key is not None:
                await self._share_room_key(sender, state, encrypted["session_id"], room_key)
            envelope = {
                "id": client_id if index == 0 else f"{client_id}.{index}",
                "from": sender, "sent_at": int(time.time() * 1000), "encrypted": encrypted,
            }  # fmt: skip
            path = f"/v1/groups/{_group_id(group)}/messages"
            answer = await self._request("POST", path, json=envelope)
            self.state.remember(service, c.native_message_id(service, answer["id"]), mimi_id)
            if sent is None:
                sent = Sent(id=answer["id"], client_message_id=client_id, mimi_id=mimi_id,
                            envelope=envelope)  # fmt: skip
        assert sent is not None
        return sent

    async def send_group_text(self, local: str, group: str, body: str) -> Sent:
        """Send a text message to a group."""
        return await self.send_group(local, group, c.text(body))

    async def send_group_media(
        self,
        local: str,
        group: str,
        data: bytes,
        *,
        content_type: str,
        filename: str = "",
        caption: str = "",
    ) -> Sent:
        """Upload an encrypted file for the group's members; send its key inside Megolm."""
        part = await self._upload(group, data, content_type, filename, caption)
        return await self.send_group(local, group, part)

    def _room_key(self, raw: dict[str, Any]) -> Event | None:
        """Import a room key sent to one of our members (over Olm); nothing to show."""
        if not self.state.first_time(f"room_key:{raw['event_id']}"):
            return None
        recipient, wire = raw["to"], raw["encrypted"]
        party = self.state.party(recipient)
        try:
            plaintext = party.decrypt(
                OlmCiphertext.from_wire(wire["type"], wire["body"], wire["sender_key"])
            )
        except DecryptionFailed:
            return Notice(type="undecryptable", raw=raw)
        self.state.save(recipient)
        if self._crypto(recipient).import_room_key(raw["group"], plaintext) is None:
            return Notice(type="bad_room_key", raw=raw)
        return None

    def _group_message(self, raw: dict[str, Any]) -> Event | None:
        if not self.state.first_time(f"{raw['id']}:{raw['to']}"):
            return None  # a redelivery (one event per member of ours)
        group, service = raw["group"], _hub_of(raw["group"])
        assert service is not None
        native: dict[str, Any] | None = None
        if raw.get("encrypted") is not None:
            plaintext = self._crypto(raw["to"]).decrypt(group, raw["encrypted"])
            if plaintext is None:
                return Notice(type="undecryptable", raw=raw)
            content, native = c.from_native_plaintext(service, plaintext, self.state)
        elif raw.get("content") is not None:
            content = content_from_json(raw["content"])
        else:
            return Notice(type="undecryptable", raw=raw)
        return Message(
            id=raw["id"], sender=raw["from"], recipient=raw["to"], sent_at=raw["sent_at"],
            content=content, native=native, raw=raw, group=group,
        )  # fmt: skip

    def _group_membership(self, raw: dict[str, Any]) -> Event:
        known = self._groups.get(raw["group"])
        if known is None or int(known["epoch"]) <= raw["epoch"]:
            self._groups[raw["group"]] = {
                **(known or {}), "group": raw["group"], "service": _hub_of(raw["group"]),
                "members": raw["members"], "epoch": raw["epoch"],
            }  # fmt: skip
        return GroupChange(
            group=raw["group"], by=raw["by"], added=raw["added"], removed=raw["removed"],
            epoch=raw["epoch"], members=raw["members"], raw=raw,
        )  # fmt: skip

    # -- receiving -------------------------------------------------------------------------

    async def events(
        self,
        *,
        wait: float = 20.0,
        stop_when_idle: bool = False,
        monitor_every_s: float = MONITOR_EVERY_S,
    ) -> AsyncIterator[Event]:
        """Pull events (long poll), decrypt messages, ack each page once handled.

        Every `monitor_every_s` (and once at the start) the key transparency log's history of
        each user this SDK published keys for is checked: a key version it did not publish
        (someone else's keys in its user's name) is yielded as a Notice of type
        `unpublished_key_change`, once.
        """
        monitor_due = 0.0
        while True:
            if time.monotonic() >= monitor_due:
                monitor_due = time.monotonic() + monitor_every_s
                for alert in await self.kt.monitor_all():
                    yield Notice(type=alert.type, raw=msgspec.to_builtins(alert))
            params: dict[str, Any] = {"wait": str(wait), "limit": "100"}
            if self.cursor is not None:
                params["after"] = self.cursor
            page = await self._request("GET", "/v1/events", params=params)
            for raw in page["events"]:
                event = await self._handle(raw)
                if event is not None:
                    yield event
            if page["events"]:
                self.cursor = str(page["next"])
                await self._request("POST", "/v1/events/ack", json={"cursor": self.cursor})
            elif stop_when_idle:
                return

    async def _handle(self, raw: dict[str, Any]) -> Event | None:
        kind = raw.get("type")
        if kind == "message":
            return self._decrypt(raw)
        if kind == "receipt":
            return Receipt(
                message_id=raw["message_id"], sender=raw["from"], recipient=raw["to"],
                status=raw["status"], raw=raw,
            )  # fmt: skip
        if kind == "typing":
            return Typing(sender=raw["from"], recipient=raw["to"], state=raw["state"], raw=raw)
        if kind == "room_key":
            return self._room_key(raw)
        if kind == "group_message":
            return self._group_message(raw)
        if kind == "group_membership":
            return self._group_membership(raw)
        if kind == "keys_low":
            local = raw["user"].rsplit("/u/", 1)[-1]
            await self.publish_keys(local)
        elif kind == "identity_changed":
            self.state.set_peer_key(raw["user"], None)  # claim afresh before the next send
        return Notice(type=str(kind), raw=raw)

    def _decrypt(self, raw: dict[str, Any]) -> Event | None:
        if not self.state.first_time(raw["id"]):
            return None  # a redelivery of a message already handled
        recipient = raw["to"]
        if "encrypted" not in raw or raw["encrypted"] is None:
            return Notice(type="plaintext_message", raw=raw)
        wire = raw["encrypted"]
        party = self.state.party(recipient)
        try:
            plaintext = party.decrypt(
                OlmCiphertext.from_wire(wire["type"], wire["body"], wire["sender_key"])
            )
        except DecryptionFailed:
            return Notice(type="undecryptable", raw=raw)
        self.state.save(recipient)
        self.state.set_peer_key(raw["from"], wire["sender_key"])
        content, native = c.from_plaintext(raw["from"], plaintext, self.state)
        return Message(
            id=raw["id"], sender=raw["from"], recipient=recipient, sent_at=raw["sent_at"],
            content=content, native=native, raw=raw,
        )  # fmt: skip


def _group_id(group: str) -> str:
    """The `{group_id}` of a group URI `mimi://<service>/g/<group_id>` (or the id itself)."""
    return group.rpartition("/g/")[2]


def _hub_of(uri: str) -> str | None:
    """The hub service of a group URI, else None."""
    parsed = parse_group_uri(uri)
    return None if parsed is None else parsed[0]
