"""The SDK's local state in one small SQLite file: Olm accounts and sessions, peers, message ids.

Olm state is stored only as vodozemac pickles encrypted under the caller's 32-byte key, so the
file alone does not open any conversation. A restart picks up every session where it was.
The file's schema and statements are in `gateway/store/sdk_state.py`.
"""

from __future__ import annotations

from pathlib import Path

import vodozemac

from gateway.crypto import OlmParty
from gateway.store import sdk_state as store
from gateway.translate.neutral import derived_message_id


class SdkState:
    """Olm parties per local user, peers' identity keys, and MIMI <-> native message ids.

    Also the translators' `MessageRefs`: a reaction or reply names a native message id; the
    MIMI message id it stands for is remembered here when the message is sent or received.
    """

    def __init__(self, path: str | Path, pickle_key: bytes) -> None:
        if len(pickle_key) != 32:
            raise ValueError("the pickle key must be 32 bytes")
        self.key = pickle_key
        self.db_path = Path(path)
        self.db = store.open_state(path)
        self._parties: dict[str, OlmParty] = {}

    def close(self) -> None:
        self.db.close()

    # -- Olm -----------------------------------------------------------------------------

    def party(self, user_uri: str) -> OlmParty:
        """The user's Olm party, created on first use."""
        party = self._parties.get(user_uri)
        if party is None:
            pickle = store.party_pickle(self.db, user_uri)
            party = OlmParty() if pickle is None else OlmParty.from_pickle(pickle, self.key)
            self._parties[user_uri] = party
            if pickle is None:
                self.save(user_uri)
        return party

    def save(self, user_uri: str) -> None:
        """Persist the user's account and sessions (after every encrypt and decrypt)."""
        store.save_party_pickle(self.db, user_uri, self._parties[user_uri].pickle(self.key))

    def peer_key(self, peer_uri: str) -> str | None:
        return store.peer_key(self.db, peer_uri)

    def set_peer_key(self, peer_uri: str, identity_key: str | None) -> None:
        store.set_peer_key(self.db, peer_uri, identity_key)

    # -- Megolm (gateway.sdk.groups.MegolmStore) -------------------------------------------

    def load_outbound(self, user: str, group: str) -> tuple[int, vodozemac.GroupSession] | None:
        found = store.megolm_outbound(self.db, user, group)
        if found is None or found[0] < 0:
            return None
        return found[0], vodozemac.GroupSession.from_pickle(found[1], self.key)

    def save_outbound(
        self, user: str, group: str, epoch: int, session: vodozemac.GroupSession
    ) -> None:
        store.save_megolm_outbound(self.db, user, group, epoch, session.pickle(self.key))

    def load_inbound(
        self, user: str, group: str, session_id: str
    ) -> vodozemac.InboundGroupSession | None:
        pickle = store.megolm_inbound(self.db, user, group, session_id)
        if pickle is None:
            return None
        return vodozemac.InboundGroupSession.from_pickle(pickle, self.key)

    def save_inbound(self, user: str, group: str, session: vodozemac.InboundGroupSession) -> None:
        store.save_megolm_inbound(
            self.db, user, group, session.session_id, session.pickle(self.key)
        )

    # -- received messages, once ------------------------------------------------------------

    def first_time(self, message_id: str) -> bool:
        """True the first time a message id is seen (redeliveries are at-least-once)."""
        return store.mark_seen(self.db, message_id)

    # -- MessageRefs -----------------------------------------------------------------------

    def remember(self, service: str, native_id: str, mimi_id: bytes) -> None:
        """Record that `native_id` on `service` is the MIMI message `mimi_id`."""
        store.remember_ref(self.db, service, native_id, mimi_id)

    def mimi_id(self, service: str, native_id: str) -> bytes:
        found = store.mimi_id(self.db, service, native_id)
        if found is not None:
            return found
        derived = derived_message_id(service, native_id)
        self.remember(service, native_id, derived)
        return derived

    def native_id(self, service: str, mimi_id: bytes) -> str | None:
        return store.native_id(self.db, service, mimi_id)
