"""Two replicas on one PostgreSQL database append to one key transparency log, never forking it."""

from __future__ import annotations

import asyncio
from pathlib import Path

import msgspec

from gateway.crypto import KeyBundle, OlmParty
from gateway.crypto.transparency import keyring, public_key_from_b64
from gateway.http.app_keys import KEY_DIRECTORY, KEY_TRANSPARENCY, STORE
from gateway.service.transparency_verify import export_lines, verify_export
from tests.system.test_scale_out import replica_config, started


def bundle(party: OlmParty) -> KeyBundle:
    return msgspec.convert(msgspec.to_builtins(party.key_bundle(1)), KeyBundle)


async def test_replicas_append_to_one_log_without_forks(tmp_path: Path, postgres_url: str) -> None:
    one = await started(replica_config(tmp_path / "data", postgres_url, "gw-1"))
    two = await started(replica_config(tmp_path / "data", postgres_url, "gw-2"))
    try:
        apps = [one.app, two.app]
        # 30 users, each publishing twice (a new identity the second time, through the other
        # replica), all users at once on both replicas: 60 leaves, whichever replica logs each,
        # while both sign heads and sequence concurrently.
        parties = {f"u{i}": (OlmParty(), OlmParty()) for i in range(30)}
        for round_ in (0, 1):
            await asyncio.gather(
                *(
                    apps[(i + round_) % 2][KEY_DIRECTORY].publish("acme", local, bundle(p[round_]))
                    for i, (local, p) in enumerate(parties.items())
                ),
                *(app[KEY_TRANSPARENCY].sign_head() for app in apps),
            )
        # Both replicas sign heads as the log grows; each answers proofs from the shared log.
        heads = await asyncio.gather(*(app[KEY_TRANSPARENCY].sign_head() for app in apps))
        assert {h.tree_size for h in heads} == {60}
        assert len({h.root_hash for h in heads}) == 1
        store = one.app[STORE]
        indexes = [r["leaf_index"] for r in await store.fetch("SELECT leaf_index FROM kt_leaves")]
        assert sorted(indexes) == list(range(60))
        per_user = await store.fetch("SELECT user_uri, version FROM kt_users ORDER BY user_uri")
        assert {r["version"] for r in per_user} == {2} and len(per_user) == 30
        lines = [chunk async for chunk in export_lines(store, [])]
        keys = keyring([public_key_from_b64(one.app[KEY_TRANSPARENCY].signer.public_b64)])
        outcome = verify_export(b"".join(lines).splitlines(), keys)
        assert outcome.ok, outcome.problems
        assert (outcome.leaves, outcome.heads) == (60, outcome.heads)
        local, (_, second) = next(iter(parties.items()))
        proof = await two.app[KEY_TRANSPARENCY].proof_for(
            f"mimi://acme/u/{local}", second.identity_key, second.signing_key
        )
        assert proof is not None and proof["head"]["tree_size"] == 60
    finally:
        await two.close()
        await one.close()
