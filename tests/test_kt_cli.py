"""`dma-gateway kt verify|export|rotate-key`: an intact log passes, a rewritten one is caught."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import msgspec
import pytest

from gateway.cli import main
from gateway.crypto import KeyBundle, OlmParty
from gateway.http.app_keys import KEY_DIRECTORY, KEY_TRANSPARENCY, STORE
from tests.sdk.conftest import Gateway, gateway  # noqa: F401  (the live gateway fixture)


async def publish(gw: Gateway, local: str) -> None:
    bundle = msgspec.convert(msgspec.to_builtins(OlmParty().key_bundle(1)), KeyBundle)
    await gw.app[KEY_DIRECTORY].publish("acme", local, bundle)
    await gw.app[KEY_TRANSPARENCY].sign_head()


async def kt(capsys: pytest.CaptureFixture[str], gw: Gateway, *args: str) -> tuple[int, str]:
    """Run `dma-gateway kt ...` on the live gateway's data dir and database."""
    config = Path(gw.config.data_dir).parent / "gateway.toml"
    config.write_text(f'data_dir = "{gw.config.data_dir}"\n', encoding="utf-8")
    code = await asyncio.to_thread(main, ["--config", str(config), "kt", *args])
    out = capsys.readouterr()
    return code, out.out + out.err


@pytest.fixture
def gw(gateway: Gateway) -> Gateway:  # noqa: F811
    return gateway


async def test_heads_over_time_pass_until_the_history_is_rewritten(
    gw: Gateway, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    state = tmp_path / "heads.jsonl"
    url = ["verify", "--url", gw.base, "--state", str(state)]
    for local in ("bob", "carol"):
        await publish(gw, local)
        code, said = await kt(capsys, gw, *url)
        assert code == 0, said
    assert [json.loads(line)["tree_size"] for line in state.read_text().splitlines()] == [1, 2]

    async def rewrite(tx: Any) -> None:  # the operator swaps bob's leaf for another
        await tx.execute("UPDATE kt_leaves SET leaf_hash = $1 WHERE leaf_index = 0", b"\1" * 32)

    await gw.app[STORE].write("rewrite", rewrite)
    log = gw.app[KEY_TRANSPARENCY]
    log.tree = type(log.tree)()
    await publish(gw, "dave")
    code, said = await kt(capsys, gw, *url)
    assert code == 1 and "does not extend the tree of 2 leaves" in said, said
    assert len(state.read_text().splitlines()) == 2  # the bad head is not kept


async def test_an_export_verifies_offline_and_a_rewritten_leaf_is_found(
    gw: Gateway, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for local in ("bob", "carol", "bob2"):
        await publish(gw, local)
    key = tmp_path / "kt-key.txt"
    code, said = await kt(capsys, gw, "public-key")
    published = gw.app[KEY_TRANSPARENCY].signer.public_b64
    assert code == 0 and published in said.splitlines()  # (the gateway logs here too)
    key.write_text(published)
    export = tmp_path / "kt.jsonl"
    assert (await kt(capsys, gw, "export", "--out", str(export)))[0] == 0
    code, said = await kt(capsys, gw, "verify", "--export", str(export), "--public-key", str(key))
    assert code == 0 and "intact: 3 leaves" in said, said

    lines = export.read_text().splitlines()
    leaf = json.loads(lines[1])
    leaf["leaf"] = leaf["leaf"].replace(leaf["leaf"][60:70], "A" * 10)
    rewritten = tmp_path / "rewritten.jsonl"
    rewritten.write_text("\n".join([lines[0], json.dumps(leaf), *lines[2:]]) + "\n")
    code, said = await kt(
        capsys, gw, "verify", "--export", str(rewritten), "--public-key", str(key)
    )
    assert code == 1 and "history rewritten" in said, said
    dropped = tmp_path / "dropped.jsonl"
    dropped.write_text("\n".join([lines[0], *lines[2:]]) + "\n")
    code, said = await kt(capsys, gw, "verify", "--export", str(dropped), "--public-key", str(key))
    assert code == 1 and "leaf 1 where leaf 0 was due" in said, said
    code, said = await kt(capsys, gw, "verify")
    assert code == 2


async def test_rotate_key_keeps_the_old_key_published(
    gw: Gateway, capsys: pytest.CaptureFixture[str]
) -> None:
    before = gw.app[KEY_TRANSPARENCY].signer.public_b64
    code, said = await kt(capsys, gw, "rotate-key")
    assert code == 0 and "retired key" in said
    _, after = await kt(capsys, gw, "public-key")
    assert before not in after
    folder = Path(gw.config.data_dir) / "kt-retired-keys"
    assert [p.read_text().strip() for p in folder.glob("*.pub")] == [before]
