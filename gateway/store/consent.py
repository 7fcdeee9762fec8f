"""Consents (Art. 7(7)): which providers each platform user agreed to be reachable by."""

from __future__ import annotations

from gateway.store.base import Reader, Tx

# A consent to every provider.
ALL = "*"

ALLOWS = "SELECT 1 FROM consents WHERE user_uri = $1 AND client_id IN ($2, $3)"


async def consent_allows(db: Reader, user: str, client_id: str) -> bool:
    """Whether `user` consented to `client_id` (or to all providers)."""
    return await db.fetchval(ALLOWS, user, client_id, ALL) is not None


async def consented_providers(db: Reader, user: str) -> set[str]:
    """The client ids `user` consented to (`ALL` standing for every provider)."""
    rows = await db.fetch("SELECT client_id FROM consents WHERE user_uri = $1", user)
    return {row["client_id"] for row in rows}


async def grant_consent(tx: Tx, user: str, client_id: str, *, at: int) -> None:
    """Record that `user` consents to `client_id`."""
    await tx.execute(
        "INSERT INTO consents (user_uri, client_id, granted_at) VALUES ($1, $2, $3) "
        "ON CONFLICT (user_uri, client_id) DO NOTHING",
        user,
        client_id,
        at,
    )


async def revoke_consent(tx: Tx, user: str, client_id: str) -> None:
    """Remove `user`'s consent to `client_id`."""
    await tx.execute(
        "DELETE FROM consents WHERE user_uri = $1 AND client_id = $2", user, client_id
    )
