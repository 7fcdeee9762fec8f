"""The standalone sandbox's side of the `http` platform protocol (DESIGN §4.8).

`GatewayLink` is the gateway as a standalone sandbox reaches it: what the simulated users send
(messages, `delivered` statuses, consent changes) becomes the native webhooks a real service
posts, signed with `X-Hub-Signature-256`, to `<gateway>/platform/v1/{service}/webhook`; third-
party users' keys are claimed, signed, at `<gateway>/platform/v1/{service}/keys`. A webhook the
gateway cannot take now (unreachable, 429, 5xx) waits in a queue kept in the sandbox's data dir
and is posted again, in order, until the gateway takes it: nothing is lost when either process
restarts.

`SendApi` is the other direction: the native send bodies the gateway's `HttpPlatform` posts to
`<sandbox>/{service}/messages`, read back as the `Outgoing` items the sandbox delivers.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import hashlib
import hmac
import os
import random
from pathlib import Path
from typing import Any, Literal

import aiohttp
import msgspec
import structlog

from gateway.clock import now_ms
from gateway.errors import Unavailable
from gateway.platforms.base import ClaimedBundle, Inbound, Outgoing
from gateway.platforms.ingress import key_claim_message
from gateway.platforms.native import TranslationError, receipt_webhook
from gateway.platforms.sandbox import SandboxPlatform
from gateway.translate import platform_uri, split_uri

log = structlog.get_logger(__name__)

# The simulated user on whose behalf third-party keys are being claimed (the `for` of a claim).
CLAIMING_FOR: contextvars.ContextVar[str] = contextvars.ContextVar("claiming_for")
OBJECTS = {"whatsapp": "whatsapp_business_account", "messenger": "page", "instagram": "instagram"}
# How long the first, synchronous attempt at a webhook may take before it is queued.
FIRST_ATTEMPT_S = 5.0
# Queued webhooks posted as one at most (the gateway reads up to 100 users' ids per webhook).
BATCH_MAX = 50
# How long a webhook nobody waits for (a status, typing) waits for others to go with it.
LINGER_S = 0.002


def sign(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


class _Pending(msgspec.Struct, frozen=True):
    service: str
    body: bytes


class _Entry(msgspec.Struct, frozen=True, omit_defaults=True):
    """A line of the queue's journal: a webhook added, or the first `drop` ones taken."""

    add: _Pending | None = None
    drop: int = 0


class GatewayLink:
    """An InboundSink, ThirdPartyKeys and ConsentSetter that speak to the gateway over HTTP."""

    def __init__(
        self,
        gateway_url: str,
        secret: str,
        session: aiohttp.ClientSession,
        queue_path: Path,
        *,
        retry_base_s: float = 0.1,
        retry_max_s: float = 2.0,
    ) -> None:
        self.gateway_url = gateway_url.rstrip("/")
        self.secret = secret
        self.session = session
        self.queue_path = queue_path
        self.retry_base_s = retry_base_s
        self.retry_max_s = retry_max_s
        # (service, third-party URI) -> the native id the gateway gave it (at the key claim).
        self.native_ids: dict[tuple[str, str], str] = {}
        # (platform user, third-party native id) -> the gateway id of the user's last message.
        self.last_sent: dict[tuple[str, str], str] = {}
        # (simulated user, third-party URI) -> the last bundle claimed for it.
        self._bundles: dict[tuple[str, str], ClaimedBundle] = {}
        self._pending: list[_Pending] = read_queue(queue_path)
        # The journal restarts from what is left (it only grows while webhooks wait).
        _write_atomically(queue_path, b"".join(_line(_Entry(add=p)) for p in self._pending))
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        # Webhooks nobody waits for, gathered for LINGER_S before they go as one.
        self._lingering: list[_Pending] = []
        self._linger_task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._drain())
        if self._pending:
            self._wake.set()

    @property
    def pending(self) -> int:
        return len(self._pending)

    # -- InboundSink ----------------------------------------------------------------------

    async def receive(self, item: Inbound) -> str:
        """Post what a simulated user sends as its service's webhook; the gateway id if the
        gateway took it at once, else (queued) the native id."""
        doc = self._webhook(item)
        if doc is None:
            return item.native_id
        ids = await self.post(item.service, doc, wait=item.kind == "message")
        gateway_id = ids[0] if ids else item.native_id
        if item.kind == "message":
            native = self.native_ids.get((item.service, item.recipient), "")
            self.last_sent[(item.sender, native)] = gateway_id
        return gateway_id

    def _webhook(self, item: Inbound) -> dict[str, Any] | None:
        service = item.service
        if item.kind == "receipt":
            try:
                return receipt_webhook(
                    service, message_id=item.payload["message_id"],
                    status=item.payload["status"], sender=item.sender,
                    recipient=item.recipient, sent_at=item.sent_at,
                )  # fmt: skip
            except TranslationError:
                return None  # the service has no native form for it (Instagram: delivered)
        if item.kind != "message" or "encrypted" not in item.payload:
            return None  # typing is shown live; simulated users send only E2EE messages
        sender = split_uri(item.sender)[1]
        recipient = self.native_ids.get((service, item.recipient))
        if recipient is None:
            raise Unavailable("The recipient's keys were not claimed through the gateway.")
        encrypted = item.payload["encrypted"]
        if service == "whatsapp":
            metadata = {"display_phone_number": recipient, "phone_number_id": recipient}
            message = {
                "from": sender, "id": item.native_id, "type": "encrypted",
                "timestamp": str(item.sent_at // 1000), "encrypted": encrypted,
            }  # fmt: skip
            value = {"messaging_product": "whatsapp", "metadata": metadata, "messages": [message]}
            change = {"field": "messages", "value": value}
            return {"object": OBJECTS[service], "entry": [{"id": recipient, "changes": [change]}]}
        event = {
            "sender": {"id": sender}, "recipient": {"id": recipient}, "timestamp": item.sent_at,
            "message": {"mid": item.native_id, "encrypted": encrypted},
        }  # fmt: skip
        entry = {"id": recipient, "time": item.sent_at, "messaging": [event]}
        return {"object": OBJECTS[service], "entry": [entry]}

    # -- consent and keys -----------------------------------------------------------------

    async def set_consent(self, uri: str, consent: list[str] | Literal["all"]) -> None:
        service, native_id = split_uri(uri)
        entry = {"user": native_id, "consent": consent, "time": now_ms()}
        await self.post(service, {"object": "consent", "entry": [entry]}, wait=True)

    async def third_party_keys(self, user_uri: str) -> ClaimedBundle | None:
        """Claim a third-party user's keys for the simulated user in CLAIMING_FOR."""
        sender = CLAIMING_FOR.get()
        service, for_user = split_uri(sender)
        signature = sign(self.secret, key_claim_message(service, user_uri, for_user))
        url = f"{self.gateway_url}/platform/v1/{service}/keys"
        try:
            async with self.session.get(
                url, params={"user": user_uri, "for": for_user},
                headers={"X-Hub-Signature-256": signature},
                timeout=aiohttp.ClientTimeout(total=FIRST_ATTEMPT_S),
            ) as response:  # fmt: skip
                data = await response.read()
                status = response.status
        except (aiohttp.ClientError, TimeoutError):
            # The gateway is down: a user who has a session with the recipient writes on
            # (its webhook waits in the queue); a new conversation needs the gateway.
            known = self._bundles.get((sender, user_uri))
            if known is not None:
                return known
            raise Unavailable("The gateway did not answer; try again.") from None
        if status == 404:
            return None
        if status != 200:
            log.warning("sandbox_key_claim_refused", status=status)
            raise Unavailable("The gateway did not give the keys; try again.")
        answer = msgspec.json.decode(data)
        self.native_ids[(service, user_uri)] = str(answer["id"])
        bundle = self._bundles[(sender, user_uri)] = msgspec.convert(answer, ClaimedBundle)
        return bundle

    # -- posting and the retry queue ------------------------------------------------------

    async def post(self, service: str, doc: dict[str, Any], *, wait: bool) -> list[str]:
        """Post a webhook; unless the gateway takes it at once (tried while the queue is empty,
        so that nothing overtakes what waits), queue it for the retry loop. The ids it produced.
        A webhook the gateway refuses for good is an error with `wait`, else dropped (logged)."""
        pending = _Pending(service, msgspec.json.encode(doc))
        if not wait:
            # What nobody waits for (statuses, typing) lingers a moment and goes with whatever
            # comes meanwhile, as one webhook: a service batches its events.
            self._lingering.append(pending)
            if self._linger_task is None:
                self._linger_task = asyncio.get_running_loop().create_task(self._send_lingering())
            return []
        if not self._pending:
            status, ids = await self._attempt(pending, FIRST_ATTEMPT_S)
            if status is not None and status >= 300 and not _retryable(status) and wait:
                # Refused for good (a wrong app secret, most likely): say so to the caller.
                raise Unavailable(f"The gateway refused the platform's webhook ({status}).")
            if status is not None and not _retryable(status):
                return ids
        self._pending.append(pending)
        await self._journal(_Entry(add=pending))
        self._wake.set()
        return []

    async def _send_lingering(self) -> None:
        """One sender at a time, in order: what lingered, in batches, then again while more
        arrived meanwhile; whatever it cannot deliver at once joins the retry queue."""
        items: list[_Pending] = []
        try:
            while self._lingering:
                await asyncio.sleep(LINGER_S)
                items, self._lingering = self._lingering, []
                while items:
                    count, batch = _batch(items)
                    status = None
                    if not self._pending:  # nothing may overtake what waits for a retry
                        status, _ = await self._attempt(batch, FIRST_ATTEMPT_S)
                    if status is None or _retryable(status):
                        break
                    del items[:count]
                if items:
                    await self._queue(items)  # this batch and the rest, behind the backlog
                    items = []
        except asyncio.CancelledError:
            await self._queue(items)  # close(): nothing lingering is lost
            raise
        finally:
            self._linger_task = None

    async def _queue(self, items: list[_Pending]) -> None:
        """Queue `items` for the retry loop, durably."""
        self._pending.extend(items)
        for item in items:
            await self._journal(_Entry(add=item))
        self._wake.set()

    async def _attempt(self, item: _Pending, timeout_s: float) -> tuple[int | None, list[str]]:
        url = f"{self.gateway_url}/platform/v1/{item.service}/webhook"
        headers = {
            "Content-Type": "application/json",
            "X-Hub-Signature-256": sign(self.secret, item.body),
        }
        try:
            async with self.session.post(
                url, data=item.body, headers=headers,
                timeout=aiohttp.ClientTimeout(total=timeout_s),
            ) as response:  # fmt: skip
                data = await response.read()
                status = response.status
        except (aiohttp.ClientError, TimeoutError):
            return None, []
        if status >= 300 and not _retryable(status):
            # The gateway refused it for good (signature, shape): retrying would not help.
            log.warning("sandbox_webhook_refused", service=item.service, status=status)
            return status, []
        with contextlib.suppress(msgspec.DecodeError, AttributeError, TypeError):
            return status, [str(i) for i in msgspec.json.decode(data).get("ids") or []]
        return status, []

    async def _drain(self) -> None:
        delay = self.retry_base_s
        while True:
            await self._wake.wait()
            while self._pending:
                count, batch = _batch(self._pending)
                status, _ = await self._attempt(batch, 10.0)
                if status is None or _retryable(status):
                    await asyncio.sleep(delay * random.uniform(0.8, 1.2))
                    delay = min(delay * 2, self.retry_max_s)
                    continue
                delay = self.retry_base_s
                del self._pending[:count]
                if self._pending:
                    await self._journal(_Entry(drop=count))
                else:  # all taken: the journal starts over, empty
                    await asyncio.to_thread(_write_atomically, self.queue_path, b"")
            self._wake.clear()

    async def _journal(self, entry: _Entry) -> None:
        """Append one line to the queue's journal, durably: one small write per webhook that
        waits or leaves, rather than the whole queue rewritten each time (which grew with the
        square of a backlog)."""
        await asyncio.to_thread(_append_durably, self.queue_path, _line(entry))

    async def close(self) -> None:
        if self._linger_task is not None:  # what lingers is queued (journaled), not lost
            self._linger_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._linger_task
        if self._lingering:
            items, self._lingering = self._lingering, []
            await self._queue(items)
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task


def _batch(pending: list[_Pending]) -> tuple[int, _Pending]:
    """The webhooks at the head of the queue that go as one (same service and kind, entries
    joined, as a service batches events), and how many of them."""
    head = msgspec.json.decode(pending[0].body)
    count = 1
    for item in pending[1:BATCH_MAX]:
        doc = msgspec.json.decode(item.body)
        if item.service != pending[0].service or doc.get("object") != head.get("object"):
            break
        head["entry"] = [*head["entry"], *doc["entry"]]
        count += 1
    if count == 1:
        return 1, pending[0]
    return count, _Pending(pending[0].service, msgspec.json.encode(head))


def _retryable(status: int) -> bool:
    return status == 429 or status >= 500


def _line(entry: _Entry) -> bytes:
    return msgspec.json.encode(entry) + b"\n"


def read_queue(path: Path) -> list[_Pending]:
    """The webhooks waiting in the journal at `path`, oldest first (its lines replayed)."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return []
    pending: list[_Pending] = []
    for line in data.splitlines():
        if not line.strip():
            continue
        try:
            entry = msgspec.json.decode(line, type=_Entry)
        except msgspec.DecodeError:
            break  # a line torn by a crash while it was appended: it was never acknowledged
        if entry.add is not None:
            pending.append(entry.add)
        else:
            del pending[: entry.drop]
    return pending


def _append_durably(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_atomically(path: Path, data: bytes) -> None:
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


class SendApi:
    """The native send bodies the gateway posts, read as `Outgoing` items for the sandbox."""

    def __init__(self, link: GatewayLink) -> None:
        self.link = link

    def outgoing(self, service: str, body: dict[str, Any], message_id: str) -> Outgoing | None:
        """The item a send body carries (None for nothing the sandbox keeps); `message_id` is
        the native id the sandbox answers with. KeyError/TypeError if the body is malformed."""
        if service == "whatsapp":
            to, sender = str(body["to"]), str(body["from"])
        else:
            to, sender = str(body["recipient"]["id"]), str(body["sender"]["id"])
        common: dict[str, Any] = {
            "service": service, "sender": platform_uri(service, sender),
            "recipient": platform_uri(service, to), "sent_at": now_ms(),
        }  # fmt: skip
        recipient = common["recipient"]
        payload: dict[str, Any]
        if service == "whatsapp":
            if "typing_indicator" in body:
                return None
            if body.get("status") == "read":
                read = str(body["message_id"]).removeprefix("wamid.")
                payload = {"message_id": read, "status": "read"}
                return Outgoing(id=f"{read}:read", kind="receipt", payload=payload, **common)
            if body.get("type") == "encrypted":
                payload = {"encrypted": body["encrypted"]}
            else:
                addressing = ("messaging_product", "recipient_type", "to", "from")
                payload = {"native": [{k: v for k, v in body.items() if k not in addressing}]}
            return Outgoing(id=message_id, kind="message", payload=payload, **common)
        action = body.get("sender_action")
        if action == "mark_seen":
            last = self.link.last_sent.get((recipient, sender))
            if last is None:
                return None
            payload = {"message_id": last, "status": "read"}
            return Outgoing(id=f"{last}:read", kind="receipt", payload=payload, **common)
        if action is not None:
            return None  # typing: shown live, never stored
        message = body["message"]
        if not isinstance(message, dict):
            raise TypeError("message")
        if "encrypted" in message:
            payload = {"encrypted": message["encrypted"]}
        else:
            payload = {"native": [message]}
        return Outgoing(id=message_id, kind="message", payload=payload, **common)


class StandaloneSandbox(SandboxPlatform):
    """The sandbox platforms in a process of their own: a user's send claims the recipient's
    keys from the gateway on that user's behalf (the claim names who it is for)."""

    async def send(self, sender: str, recipient: str, content: dict[str, Any]) -> str:
        token = CLAIMING_FOR.set(sender)
        try:
            return await super().send(sender, recipient, content)
        finally:
            CLAIMING_FOR.reset(token)
