"""The `http` platform (DESIGN §4.8): native payloads POSTed to each service's endpoint.

Send bodies follow the services' send APIs (WhatsApp Cloud API `/messages`, Messenger
Platform Send API), with the sender named as the service knows it (`from` on WhatsApp,
`sender` on Messenger and Instagram). An Olm message travels in place of the content:
WhatsApp `{"type": "encrypted", "encrypted": {...}}`, Messenger and Instagram
`{"message": {"encrypted": {...}}}`; the service decrypts on its users' devices.
Timeouts, connection errors, 429 and 5xx are retryable; other answers are permanent.

Groups (DESIGN §4.10), one POST per platform member and item, to the same per-service URL:
- group_message: WhatsApp a `/messages` body with `recipient_type: "group"`, `to` the group id,
  `from` the sender and `recipient_participant_id` the member it is for (the gateway fans out
  per member); Messenger/Instagram the 1:1 send body (`recipient` the member) extended with
  `thread: {id, thread_type: "GROUP"}`. A Megolm message travels as the Olm one does
  (`type: "encrypted"` / `message.encrypted`), with `protocol: "megolm.v1"`.
- room_key and group_membership have no send API in the services' contracts, so they are
  posted as JSON objects `{"type": "room_key", "group", "from", "to", "session_id",
  "encrypted"}` and `{"type": "group_membership", "group", "to", "by", "added", "removed",
  "epoch", "members": [{id, role}]}`, users named by their native ids as in every body and
  `group` the service's group id.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import aiohttp
import msgspec
import structlog

from gateway.clock import now_ms
from gateway.config import HttpPlatformConfig, PlatformEndpoint
from gateway.errors import Unavailable
from gateway.platforms.base import (
    ClaimedBundle,
    GroupOutgoing,
    Outgoing,
    PermanentDelivery,
    RetryableDelivery,
    service_of,
)
from gateway.store import Store, Tx
from gateway.store import platform as platform_store
from gateway.translate import TRANSLATORS, Envelope, NeutralEvent, TranslationError, receipt_event
from gateway.translate.groups import THREAD_TYPE, split_group_uri

log = structlog.get_logger(__name__)


# Senders remembered as stored (HttpPlatform._senders); past this the set starts over.
SENDERS_KEPT = 100_000


class HttpPlatform:
    """Talks to the real services; their webhooks come back through `gateway.platforms.ingress`."""

    name = "http"

    def __init__(
        self,
        config: HttpPlatformConfig,
        store: Store,
        session: aiohttp.ClientSession,
        *,
        id_key: bytes,
    ) -> None:
        self.config = config
        self.store = store
        self.session = session
        self.id_key = id_key
        self._timeout = aiohttp.ClientTimeout(total=config.timeout_s)
        # Senders whose native id -> URI record is known to be stored (it is never deleted).
        self._senders: set[tuple[str, str]] = set()
        # Set, and replaced, each time a message's native id record commits (`record_written`).
        self._recorded = asyncio.Event()
        # (service, native id) -> gateway id, from the service's answer until the record of it
        # commits: a status that comes back meanwhile finds its message here.
        self._unrecorded: dict[tuple[str, str], str] = {}
        # Records of native ids waiting for their write unit, and the future it resolves.
        self._records: list[tuple[str, str, str]] = []
        self._records_written: asyncio.Future[None] | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    def endpoint(self, service: str) -> PlatformEndpoint | None:
        endpoint = self.config.services.get(service)
        return endpoint if endpoint is not None and endpoint.url else None

    def native_id(self, service: str, uri: str) -> str:
        return TRANSLATORS[service].native_user_id(uri, self.id_key)

    async def user_exists(self, user_uri: str) -> bool:
        # The service knows its users; consent (checked by the relay) is what makes them visible.
        service = service_of(user_uri)
        return service is not None and self.endpoint(service) is not None

    async def claim_key_bundle(self, user_uri: str) -> ClaimedBundle | None:
        service = service_of(user_uri)
        endpoint = self.config.services.get(service or "")
        if service is None or endpoint is None or not endpoint.keys_url:
            return None
        params = {"user": self.native_id(service, user_uri)}
        try:
            async with self.session.get(
                endpoint.keys_url, params=params, timeout=self._timeout
            ) as response:
                if response.status == 404:
                    return None
                if response.status != 200:
                    raise Unavailable("The platform's key service did not answer.")
                bundle = msgspec.json.decode(await response.read(), type=ClaimedBundle)
        except (aiohttp.ClientError, TimeoutError, msgspec.DecodeError):
            raise Unavailable("The platform's key service did not answer.") from None
        return msgspec.structs.replace(bundle, user=user_uri)

    # -- delivery -------------------------------------------------------------------------

    async def deliver(self, item: Outgoing) -> None:
        endpoint = self.endpoint(item.service)
        if endpoint is None:
            raise PermanentDelivery("no_endpoint")
        bodies = self._bodies(item)
        await self._remember_sender(item.service, item.sender)
        for body in bodies:
            native_id = await self._post(endpoint.url, body)
            if native_id and item.kind == "message":
                await self._remember_message(item, native_id)

    async def _remember_sender(self, service: str, uri: str) -> None:
        """Store the sender's native id -> URI (the service's replies name the native id)
        before its first send; once per sender and process, not once per message."""
        native_id = self.native_id(service, uri)
        if (service, native_id) in self._senders:
            return

        async def unit(tx: Tx) -> None:
            await platform_store.remember_user(tx, service, native_id, uri)

        await self.store.write("platform_user_id", unit)
        if len(self._senders) >= SENDERS_KEPT:
            self._senders.clear()
        self._senders.add((service, native_id))

    async def _remember_message(self, item: Outgoing, native_id: str) -> None:
        """Record the service's native id of a message sent; return once it is committed. The
        records of the sends answered in one turn of the event loop are one write unit."""
        key = (item.service, native_id)
        self._unrecorded[key] = item.id  # before any await: the answer is read, the id known
        self._records.append((item.service, native_id, item.id))
        written = self._records_written
        if written is None:
            written = self._records_written = asyncio.get_running_loop().create_future()
            written.add_done_callback(_retrieved)
            self._keep(asyncio.get_running_loop().create_task(self._write_records(written)))
        try:
            await asyncio.shield(written)
        finally:
            self._unrecorded.pop(key, None)

    async def _write_records(self, written: asyncio.Future[None]) -> None:
        await asyncio.sleep(0)  # the sends answered in this turn of the loop join
        records, self._records, self._records_written = self._records, [], None

        async def unit(tx: Tx) -> None:
            await platform_store.remember_messages(tx, records, now_ms())
            tx.on_commit(self._announce_record)

        try:
            await self.store.write("platform_message_ids", unit)
        except Exception as exc:  # each sender's delivery fails with it (and is retried)
            written.set_exception(exc)
        else:
            written.set_result(None)

    def _keep(self, task: asyncio.Task[None]) -> None:
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def unrecorded_message_id(self, service: str, *native_ids: str) -> str | None:
        """The gateway id of a message this process sent as one of `native_ids` (spellings of
        one id) whose record is still being written, else None (look in the store)."""
        for native_id in native_ids:
            found = self._unrecorded.get((service, native_id))
            if found is not None:
                return found
        return None

    def _announce_record(self) -> None:
        recorded, self._recorded = self._recorded, asyncio.Event()
        recorded.set()

    async def record_written(self, timeout_s: float) -> None:
        """Wait (at most `timeout_s`) until the next message's native id record commits: a
        status can overtake the record of its message (the service answered the send and its
        user's device acknowledged before our write committed)."""
        recorded = self._recorded
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout_s):
                await recorded.wait()

    def _bodies(self, item: Outgoing) -> list[dict[str, Any]]:
        service, whatsapp = item.service, item.service == "whatsapp"
        sender = self.native_id(service, item.sender)
        recipient = self.native_id(service, item.recipient)
        if whatsapp:
            head: dict[str, Any] = {
                "messaging_product": "whatsapp", "recipient_type": "individual",
                "to": recipient, "from": sender,
            }  # fmt: skip
        else:
            head = {"recipient": {"id": recipient}, "sender": {"id": sender}}
        if item.kind == "message":
            if "encrypted" in item.payload:
                enc = item.payload["encrypted"]
                if whatsapp:
                    return [head | {"type": "encrypted", "encrypted": enc}]
                return [head | {"messaging_type": "RESPONSE", "message": {"encrypted": enc}}]
            objects = item.payload["native"]
            if whatsapp:
                return [head | obj for obj in objects]
            return [head | {"messaging_type": "RESPONSE", "message": obj} for obj in objects]
        env = Envelope(
            id=item.id, sender=item.sender, recipient=item.recipient, sent_at=item.sent_at,
            kind=item.kind,
        )  # fmt: skip
        translator = TRANSLATORS[service]
        try:
            if item.kind == "receipt":
                event = receipt_event(
                    item.payload["message_id"], item.payload["status"], sender=item.sender,
                    recipient=item.recipient, sent_at=item.sent_at,
                )  # fmt: skip
                natives = translator.send_request_from_neutral(event, key=self.id_key)
            else:
                typing = translator.typing_to_native(
                    NeutralEvent(envelope=env, typing=item.payload["state"]), key=self.id_key
                )
                natives = [] if typing is None else [typing]
        except TranslationError:
            return []  # the service has no native form for this signal: nothing to send
        return [{k: v for k, v in head.items() if k not in n} | n for n in natives]

    async def deliver_group(self, item: GroupOutgoing) -> None:
        endpoint = self.endpoint(item.service)
        if endpoint is None:
            raise PermanentDelivery("no_endpoint")
        try:
            service, gid = split_group_uri(item.group)
            if service != item.service:
                raise TranslationError("group", "not a group of this service")
            bodies = self._group_bodies(item, gid)
        except (TranslationError, KeyError, TypeError, ValueError):
            raise PermanentDelivery("invalid_group_item") from None
        await self._remember_sender(item.service, item.sender)
        for body in bodies:
            await self._post(endpoint.url, body)

    def _group_bodies(self, item: GroupOutgoing, gid: str) -> list[dict[str, Any]]:
        service, payload = item.service, item.payload
        sender = self.native_id(service, item.sender)
        member = self.native_id(service, item.recipient)
        if item.kind == "room_key":
            return [{
                "type": "room_key", "group": gid, "from": sender, "to": member,
                "session_id": str(payload["session_id"]), "encrypted": dict(payload["encrypted"]),
            }]  # fmt: skip
        if item.kind == "group_membership":
            by = payload.get("by")
            return [{
                "type": "group_membership", "group": gid, "to": member,
                "by": None if by is None else self.native_id(service, by),
                "added": [self.native_id(service, u) for u in payload.get("added") or []],
                "removed": [self.native_id(service, u) for u in payload.get("removed") or []],
                "epoch": int(payload["epoch"]),
                "members": [
                    {"id": self.native_id(service, m["uri"]), "role": m["role"]}
                    for m in payload["members"]
                ],
            }]  # fmt: skip
        encrypted = "encrypted" in payload
        objects = [{"encrypted": dict(payload["encrypted"])}] if encrypted else payload["native"]
        if service == "whatsapp":
            head: dict[str, Any] = {
                "messaging_product": "whatsapp", "recipient_type": "group", "to": gid,
                "from": sender, "recipient_participant_id": member,
            }  # fmt: skip
            if encrypted:
                return [head | {"type": "encrypted"} | objects[0]]
            return [head | obj for obj in objects]
        thread = {"id": gid, "thread_type": THREAD_TYPE}
        head = {"recipient": {"id": member}, "sender": {"id": sender}, "thread": thread}
        return [head | {"messaging_type": "RESPONSE", "message": obj} for obj in objects]

    async def _post(self, url: str, body: dict[str, Any]) -> str | None:
        """POST one body; return the service's id of the message, if it says."""
        try:
            async with self.session.post(
                url, data=msgspec.json.encode(body), timeout=self._timeout,
                headers={"Content-Type": "application/json"},
            ) as response:  # fmt: skip
                data = await response.read()
                status = response.status
        except (aiohttp.ClientError, TimeoutError):
            raise RetryableDelivery("platform_unreachable") from None
        if status == 429 or status >= 500:
            raise RetryableDelivery(f"platform_status_{status}")
        if status >= 300:
            # Never forward a platform's error body (STYLE.md): only its status.
            raise PermanentDelivery(f"platform_refused_{status}")
        return _message_id(data)

    async def close(self) -> None:
        await asyncio.gather(*self._tasks, return_exceptions=True)  # records being written


def _retrieved(future: asyncio.Future[None]) -> None:
    """Mark a failure seen even if every waiter was cancelled (each one sees it otherwise)."""
    if not future.cancelled():
        future.exception()


def _message_id(data: bytes) -> str | None:
    try:
        answer = msgspec.json.decode(data)
    except msgspec.DecodeError:
        return None
    if not isinstance(answer, dict):
        return None
    messages = answer.get("messages")
    if isinstance(messages, list) and messages and isinstance(messages[0], dict):
        return str(messages[0].get("id") or "") or None
    mid = answer.get("message_id")
    return mid if isinstance(mid, str) else None
