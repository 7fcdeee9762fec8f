"""`dma-gateway demo`: a third-party user and a sandbox WhatsApp user talk end to end encrypted,
then a WhatsApp group with a second WhatsApp user and a user of a second provider.

In one process: a gateway on sandbox platforms and a temporary data dir, two providers onboarded
through the API, and the SDK. Each step prints what the sender meant, the envelope the gateway
handled (ciphertext only) and what the other ends saw. The group part shows Megolm: one session
per sender and epoch, shared over Olm, and a new one after a member is removed.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import socket
import struct
import tempfile
import time
import zlib
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from gateway.config import load_config
from gateway.content import ExternalPart, content_to_json
from gateway.crypto import decrypt_media
from gateway.sdk import (
    InteropClient,
    Message,
    Receipt,
    SigningKey,
    request_interop,
    request_status,
)
from gateway.sdk.content import media_key_of, text
from gateway.translate import TRANSLATORS

WA_ID = "4915112345678"
WALTER_ID = "4915187654321"
GROUP_FUNCTIONALITIES = ["group_text", "group_files"]
WIDTH = 14


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def tiny_png() -> bytes:
    """A real 2x2 PNG, so the image step carries a real file."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    raw = b"".join(b"\0" + b"\xff\x80\x00" * 2 for _ in range(2))
    header = struct.pack(">IIBBBBB", 2, 2, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(raw))
        + chunk(b"IEND", b"")
    )


def show(label: str, value: Any) -> None:
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    print(f"    {label:<{WIDTH}}: {text}", flush=True)


def seen_by_gateway(envelope: dict[str, Any]) -> dict[str, Any]:
    """The envelope as the gateway handled it, the ciphertext shortened for the page."""
    shown = dict(envelope)
    if "encrypted" in shown:
        enc = dict(shown["encrypted"])
        body = enc["body"]
        kind = "Megolm" if enc.get("protocol") == "megolm.v1" else "Olm"
        enc["body"] = f"{body[:24]}… ({len(base64.b64decode(body))} bytes of {kind} ciphertext)"
        enc["sender_key"] = enc["sender_key"][:12] + "…"
        shown["encrypted"] = enc
    return shown


class Demo:
    """The scenario's parties: the gateway, the provider's SDK and the WhatsApp user."""

    def __init__(self, base: str, admin: str, http: aiohttp.ClientSession) -> None:
        self.base = base
        self.admin = {"Authorization": f"Bearer {admin}"}
        self.http = http
        self.wa = f"mimi://whatsapp/u/{WA_ID}"
        self.sdk: InteropClient
        self.other: InteropClient  # a second provider, in the group
        self.step = 0

    def title(self, text: str) -> None:
        self.step += 1
        print(f"\n[{self.step}] {text}", flush=True)

    async def _provider(self, organisation: str, state_file: Path) -> InteropClient:
        """Request interop through the API, approve it as the gatekeeper, connect the SDK."""
        key = SigningKey.generate()
        domain = organisation.split()[0].lower()
        created = await request_interop(
            self.http, self.base, organisation=organisation,
            contact_email=f"interop@{domain}.example", key=key, services=["whatsapp"],
            functionalities=["text", "images", "reactions", "replies", "receipts",
                             *GROUP_FUNCTIONALITIES],
        )  # fmt: skip
        url = f"{self.base}/admin/v1/interop-requests/{created['id']}/decision"
        async with self.http.post(url, json={"decision": "approve", "reason": "demo"},
                                  headers=self.admin) as r:  # fmt: skip
            r.raise_for_status()
        status = await request_status(self.http, self.base, created["id"], created["status_token"])
        return InteropClient(
            self.base, status["client_id"], key, state_file, os.urandom(32), session=self.http
        )

    async def onboard(self, state_dir: Path) -> None:
        self.sdk = await self._provider("Demo Messenger GmbH", state_dir / "sdk-state.db")
        self.other = await self._provider("Other Chat Oy", state_dir / "other-sdk-state.db")
        client_id = self.sdk.client_id
        self.title(f"Provider onboarded through the API: client_id {client_id}")
        consent = [client_id, self.other.client_id]
        await self._admin_post(
            "/sandbox/v1/users",
            {"service": "whatsapp", "id": WA_ID, "name": "Wanda", "consent": consent},
        )
        published = await self.sdk.publish_keys("alice")
        show("alice", f"{self.sdk.uri('alice')}, published {published['one_time_key_count']} "
                      "signed one-time keys + a fallback key")  # fmt: skip
        show("Wanda", f"{self.wa} (sandbox WhatsApp user, consented to {client_id})")

    async def _admin_post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        async with self.http.post(self.base + path, json=body, headers=self.admin) as r:
            answer: dict[str, Any] = await r.json()
            if r.status >= 300:
                raise RuntimeError(f"{path}: {answer}")
            return answer

    async def inbox(self, count: int, user: str | None = None) -> list[dict[str, Any]]:
        """Wait until Wanda's (or `user`'s) inbox holds `count` items; return them."""
        deadline = time.monotonic() + 15
        while True:
            async with self.http.get(
                f"{self.base}/sandbox/v1/inbox",
                params={"user": user or self.wa},
                headers=self.admin,
            ) as r:
                items: list[dict[str, Any]] = (await r.json())["items"]
            if len(items) >= count or time.monotonic() > deadline:
                return items
            await asyncio.sleep(0.05)

    async def wanda_saw(self, count: int) -> dict[str, Any]:
        payload = (await self.inbox(count))[count - 1]["payload"]
        value = payload["entry"][0]["changes"][0]["value"]
        return value.get("messages", value.get("statuses", [{}]))[0]

    async def next_event(self, kind: type) -> Any:
        async for event in self.sdk.events(wait=5):
            if isinstance(event, kind):
                return event
        raise RuntimeError("the event stream ended")

    async def run(self) -> None:
        alice, wa = "alice", self.wa
        self.title("alice -> Wanda: text")
        sent = await self.sdk.send_text(alice, wa, "Hallo Wanda! Kaffee um drei?")
        show("alice wrote", "Hallo Wanda! Kaffee um drei?")
        show("gateway saw", seen_by_gateway(sent.envelope))
        first = await self.wanda_saw(1)
        show("Wanda got", first)

        self.title("alice -> Wanda: image with caption (AES-256-GCM, key inside Olm)")
        png = tiny_png()
        sent = await self.sdk.send_media(
            alice, wa, png, content_type="image/png", caption="Unser Café"
        )
        show("alice sent", f"image/png, {len(png)} bytes, caption 'Unser Café'")
        show("gateway saw", seen_by_gateway(sent.envelope))
        image = await self.wanda_saw(2)
        show("Wanda got", image)
        await self.wanda_opens(image)

        self.title("Wanda -> alice: text")
        reply = "Gern! Bis gleich ☕"
        await self._admin_post(
            "/sandbox/v1/send",
            {"from": wa, "to": self.sdk.uri(alice), "content": content_to_json(text(reply))},
        )
        show("Wanda wrote", reply)
        message: Message = await self.next_event(Message)
        show("gateway saw", seen_by_gateway(message.raw))
        show("alice got", f"{message.text!r} (WhatsApp object {message.native})")

        self.title("alice reacts 👍 to Wanda's message")
        sent = await self.sdk.react(alice, wa, message.id, "👍")
        show("gateway saw", seen_by_gateway(sent.envelope))
        show("Wanda got", await self.wanda_saw(3))

        self.title("alice replies to Wanda's message")
        sent = await self.sdk.reply(alice, wa, message.id, "Perfekt, ich bringe Kuchen mit.")
        show("gateway saw", seen_by_gateway(sent.envelope))
        show("Wanda got", await self.wanda_saw(4))

        self.title("Read receipts")
        await self.sdk.receipt(alice, wa, message.id, "read")
        show("alice sent", {"message_id": message.id, "status": "read"})
        show("Wanda got", await self.wanda_saw(5))
        receipt: Receipt = await self.next_event(Receipt)
        show("alice got", f"'{receipt.status}' for her message {receipt.message_id}")
        await self.group()
        print("\nThe gateway relayed every message as Olm or Megolm ciphertext; it never held a "
              "key.")  # fmt: skip

    async def group(self) -> None:
        """A WhatsApp group: alice, Wanda, Walter (WhatsApp) and bob (another provider)."""
        alice, other = "alice", self.other
        walter = f"mimi://whatsapp/u/{WALTER_ID}"
        await self._admin_post("/sandbox/v1/users", {
            "service": "whatsapp", "id": WALTER_ID, "name": "Walter",
            "consent": [self.sdk.client_id, other.client_id],
        })  # fmt: skip
        await other.publish_keys("bob")
        bob = other.uri("bob")
        self.title("alice creates a WhatsApp group with Wanda, Walter and bob (Other Chat Oy)")
        state = await self.sdk.create_group(
            alice, "whatsapp", "Kaffeerunde", [self.wa, walter, bob]
        )
        group = state["group"]
        show("group", f"{group}, epoch {state['epoch']}, "
                      f"{len(state['members'])} members (alice admin)")  # fmt: skip
        show("Wanda got", await self.group_item(self.wa, "group_participants_add"))

        self.title("alice -> group: text (Megolm; the session key went to each member over Olm)")
        sent = await self.sdk.send_group_text(alice, group, "Kuchen für alle am Samstag!")
        show("gateway saw", seen_by_gateway(sent.envelope))
        show("Wanda got", await self.group_item(self.wa, "Kuchen"))
        show("Walter got", await self.group_item(walter, "Kuchen"))
        show("bob got", repr((await self.group_message(other)).text))

        self.title("Wanda -> group: text")
        await self._admin_post("/sandbox/v1/send", {
            "from": self.wa, "to": group, "content": content_to_json(text("Ich bin dabei!")),
        })  # fmt: skip
        show("alice got", repr((await self.group_message(self.sdk)).text))
        show("bob got", repr((await self.group_message(other)).text))

        self.title("alice removes Walter: epoch 1, and her next message is under a new session")
        state = await self.sdk.remove_members(alice, group, [walter])
        show("group", f"epoch {state['epoch']}, members "
                      f"{', '.join(m['uri'] for m in state['members'])}")  # fmt: skip
        after = await self.sdk.send_group_text(alice, group, "Ohne Walter geht's weiter.")
        before_id = sent.envelope["encrypted"]["session_id"]
        after_id = after.envelope["encrypted"]["session_id"]
        show(
            "session", f"{before_id[:12]}… -> {after_id[:12]}… (rotated: {before_id != after_id})"
        )
        show("Wanda got", await self.group_item(self.wa, "Ohne Walter"))
        show("bob got", repr((await self.group_message(other)).text))
        walter_texts = json.dumps(await self.inbox(1, walter), ensure_ascii=False)
        show("Walter got", "nothing after his removal" if "Ohne" not in walter_texts else "!")

    async def group_item(self, user: str, needle: str) -> dict[str, Any]:
        """The first group item (WhatsApp: `group_id`) in `user`'s inbox that holds `needle`."""
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            for item in await self.inbox(1, user):
                value = item["payload"]["entry"][0]["changes"][0]["value"]
                shown = value.get("messages", value.get("groups", [{}]))[0]
                text = json.dumps(shown, ensure_ascii=False)
                if "group_id" in shown and needle in text:
                    return dict(shown)
            await asyncio.sleep(0.05)
        raise RuntimeError(f"{user} did not get {needle!r}")

    async def group_message(self, sdk: InteropClient) -> Message:
        async for event in sdk.events(wait=5):
            if isinstance(event, Message) and event.group is not None:
                return event
        raise RuntimeError("the event stream ended")

    async def wanda_opens(self, native: dict[str, Any]) -> None:
        """Wanda's client fetches the ciphertext and decrypts it with the key from the message."""
        from gateway.http.app_keys import MEDIA

        content = TRANSLATORS["whatsapp"].native_to_content(native)
        part = content.nested_part
        assert isinstance(part, ExternalPart)
        media_id = part.url.rsplit("/", 1)[-1]
        ciphertext = await self.app[MEDIA].read_for_platform(self.wa, media_id)
        assert ciphertext is not None
        plain = decrypt_media(ciphertext, media_key_of(part, len(ciphertext)))
        show("Wanda opened", f"{len(plain)} bytes, {plain[:4]!r}…, hash and GCM tag verified")

    app: web.Application


async def run_demo() -> int:
    """Start a gateway on a temporary data dir, run the scenario, stop."""
    from gateway.app import create_app
    from gateway.logs import configure_logging

    configure_logging("console", "warning")  # the transcript is the output

    with tempfile.TemporaryDirectory(prefix="dma-gateway-demo-") as tmp:
        port = _free_port()
        config = load_config(env={
            "GATEWAY_DATA_DIR": str(Path(tmp) / "data"), "GATEWAY_PORT": str(port),
            "GATEWAY_PLATFORMS": "sandbox", "GATEWAY_ADMIN_TOKEN": os.urandom(16).hex(),
            "GATEWAY_LOG_LEVEL": "warning",
        })  # fmt: skip
        app = create_app(config)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        print(f"dma-gateway demo: gateway on {config.base_url}, sandbox platforms, data in {tmp}")
        try:
            async with aiohttp.ClientSession() as http:
                demo = Demo(config.base_url, config.admin_token, http)
                demo.app = app
                await demo.onboard(Path(tmp))
                await demo.run()
                demo.sdk.state.close()
                demo.other.state.close()
        finally:
            await runner.cleanup()
    return 0


def main() -> int:
    """Entry point of `dma-gateway demo`."""
    return asyncio.run(run_demo())
