"""Client assertion ids seen at the token endpoint, kept until they expire (RFC 7523 §3)."""

from __future__ import annotations

from gateway.store.base import Tx


async def remember_assertion(tx: Tx, client_id: str, jti: str, *, until: int) -> bool:
    """Keep `jti` of `client_id` until `until`; False when it was seen before (a replay)."""
    inserted = await tx.execute(
        "INSERT INTO oauth_assertion_jtis (client_id, jti, expires_at) "
        "VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
        client_id,
        jti,
        until,
    )
    return inserted > 0


async def forget_expired_assertions(tx: Tx, *, before: int) -> int:
    """Drop the assertion ids that expired before `before`; return how many."""
    return await tx.execute("DELETE FROM oauth_assertion_jtis WHERE expires_at < $1", before)
