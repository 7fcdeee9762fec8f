"""`dma-gateway demo`: a third-party user and a sandbox WhatsApp user talk end to end encrypted.

In one process: a gateway on sandbox platforms and a temporary data dir, a provider onboarded
through the API, and the SDK. Each step prints what the sender meant, the envelope the gateway
handled (ciphertext only) and what the other end saw.
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
        enc["body"] = f"{body[:24]}… ({len(base64.b64decode(body))} bytes of Olm ciphertext)"
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
        self.step = 0

    def title(self, text: str) -> None:
        self.step += 1
        print(f"\n[{self.step}] {text}", flush=True)

    async def onboard(self, state_dir: Path) -> None:
        key = SigningKey.generate()
        created = await request_interop(
            self.http, self.base, organisation="Demo Messenger GmbH",
            contact_email="interop@demo.example", key=key, services=["whatsapp"],
            functionalities=["text", "images", "reactions", "replies", "receipts"],
        )  # fmt: skip
        url = f"{self.base}/admin/v1/interop-requests/{created['id']}/decision"
        async with self.http.post(url, json={"decision": "approve", "reason": "demo"},
                                  headers=self.admin) as r:  # fmt: skip
            r.raise_for_status()
        status = await request_status(self.http, self.base, created["id"], created["status_token"])
        client_id = status["client_id"]
        self.title(f"Provider onboarded through the API: client_id {client_id}")
        self.sdk = InteropClient(
            self.base,
            client_id,
            key,
            state_dir / "sdk-state.db",
            os.urandom(32),
            session=self.http,
        )
        await self._admin_post(
            "/sandbox/v1/users",
            {"service": "whatsapp", "id": WA_ID, "name": "Wanda", "consent": [client_id]},
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

    async def inbox(self, count: int) -> list[dict[str, Any]]:
        """Wait until Wanda's inbox holds `count` items; return them."""
        deadline = time.monotonic() + 15
        while True:
            async with self.http.get(
                f"{self.base}/sandbox/v1/inbox", params={"user": self.wa}, headers=self.admin
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
        print("\nThe gateway relayed every message as Olm ciphertext; it never held a key.")

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
        finally:
            await runner.cleanup()
    return 0


def main() -> int:
    """Entry point of `dma-gateway demo`."""
    return asyncio.run(run_demo())
