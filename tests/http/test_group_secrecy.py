"""What the gateway keeps of a Megolm group conversation, on both backends (issue 13 item 3):
neither a session key nor a plaintext, in any file under the data dir (SQLite database and WAL,
payload keys, blobs), any table row on PostgreSQL, any log line or any audit record.

A third-party user shares a session with a co-member of another provider and a sandbox WhatsApp
member, then sends a message with a unique marker; the sandbox member decrypts it (as a
platform client would) and keeps it sealed, like everything of the simulated platform.
"""

from __future__ import annotations

import base64
import uuid
from pathlib import Path
from typing import Any

import msgspec
import pytest

from gateway.app import create_app
from gateway.config import Config
from gateway.http.app_keys import STORE
from tests.conftest import admin_headers
from tests.http.group_support import GroupUser
from tests.http.providers import act_as_providers
from tests.http.relay_support import eventually, inbox, sandbox_user
from tests.http.test_payloads_at_rest import holders, table_text


@pytest.fixture
async def client(backend_config: Config, aiohttp_client: Any) -> Any:
    return await aiohttp_client(act_as_providers(create_app(backend_config)))


async def test_no_session_key_or_plaintext_is_kept_logged_or_audited(
    client: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    marker = f"group-marker-{uuid.uuid4().hex}"
    alice = GroupUser(client, "acme", "alice")
    bob = GroupUser(client, "globex", "bob")
    for user in (alice, bob):
        await user.publish_keys()
    member = await sandbox_user(client, "whatsapp", "4915100000077", consent=("acme", "globex"))
    group = (await (await alice.create([bob.uri, member])).json())["group"]
    shared, _ = await alice.share(group, 0, [bob.uri, member])
    assert shared.status == 202, await shared.text()
    session, _ = alice.megolm.outbound(group, 0)
    session_key = session.session_key.to_base64()
    native = {"messaging_product": "whatsapp", "type": "text", "text": {"body": marker}}
    assert (await alice.send_group(group, 0, native)).status == 202
    # It went through: the other provider's member and the platform member read it.
    assert await bob.read_group_events(group) == [native]

    async def read_by_member() -> bool:
        return marker in msgspec.json.encode(await inbox(client, member)).decode()

    await eventually(read_by_member)
    audit = await client.get("/admin/v1/audit", headers=admin_headers())
    assert audit.status == 200
    exported = await audit.read()

    secrets = [marker.encode(), base64.b64decode(session_key + "=" * (-len(session_key) % 4))]
    secrets.append(session_key.encode())
    files = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    assert {p: h for p, d in files.items() if (h := holders(secrets, d))} == {}
    store = client.app[STORE]
    if store.dialect == "postgres":
        assert holders(secrets, await table_text(store)) == []
    assert holders(secrets, exported) == []
    logged = capsys.readouterr()
    assert holders(secrets, (logged.out + logged.err).encode()) == []
    # Each group action has its record, with counts (never keys), and no raw user id.
    records = [msgspec.json.decode(line) for line in exported.splitlines() if line.strip()]
    actions = {r.get("action"): r for r in records if "action" in r}
    assert {"group.create", "group.room_keys", "group.message"} <= set(actions)
    assert actions["group.room_keys"]["attrs"]["shares"] == 2
    for raw in (alice.uri, bob.uri, member, group):
        assert raw.encode() not in exported
