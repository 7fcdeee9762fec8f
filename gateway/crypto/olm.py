"""Olm parties on vodozemac: key bundles, sessions per peer, encrypt/decrypt, encrypted pickles.

Wire conventions (DESIGN §4.4-4.5): keys are vodozemac's unpadded base64; a key's signature is
the account's Ed25519 signature over the UTF-8 of that key's base64; a message body is the
standard base64 of `AnyOlmMessage.to_parts()` bytes, with its type (0 pre-key, 1 normal).
"""

from __future__ import annotations

import base64
import binascii

import msgspec
import vodozemac

PROTOCOL = "olm.v1"
# Olm allows several sessions per peer (both sides may start one at once); keep the newest few.
SESSIONS_PER_PEER = 5


class DecryptionFailed(Exception):
    """A message could not be decrypted (malformed, wrong session, replayed pre-key)."""


# Inbound wire types of the key directory: unknown fields are refused, not ignored.
class SignedKey(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    key: str
    signature: str


class IdentifiedKey(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    key_id: str
    key: str
    signature: str


class KeyBundle(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """The body of `PUT /v1/users/{user}/keys`."""

    identity_key: str
    signing_key: str
    one_time_keys: dict[str, SignedKey] = {}
    fallback_key: IdentifiedKey | None = None


class OlmCiphertext(msgspec.Struct, frozen=True, kw_only=True):
    """One Olm message as it crosses the gateway (`encrypted` in DESIGN §4.5)."""

    type: int
    body: bytes
    sender_key: str

    def to_wire(self) -> dict[str, object]:
        """The JSON object of DESIGN §4.5 (`protocol`, `type`, base64 `body`, `sender_key`)."""
        return {
            "protocol": PROTOCOL,
            "type": self.type,
            "body": base64.b64encode(self.body).decode(),
            "sender_key": self.sender_key,
        }

    @classmethod
    def from_wire(cls, type_: int, body_b64: str, sender_key: str) -> OlmCiphertext:
        """Parse the wire fields; raise DecryptionFailed when the body is not base64."""
        try:
            body = base64.b64decode(body_b64, validate=True)
        except (binascii.Error, ValueError):
            raise DecryptionFailed("the body is not standard base64") from None
        return cls(type=type_, body=body, sender_key=sender_key)


def verify_key_signature(signing_key: str, key: str, signature: str) -> bool:
    """True when `signature` is `signing_key`'s Ed25519 signature over the UTF-8 of `key`."""
    try:
        public = vodozemac.Ed25519PublicKey.from_base64(signing_key)
        sig = vodozemac.Ed25519Signature.from_base64(signature)
        public.verify_signature(key.encode(), sig)
    except (vodozemac.KeyException, vodozemac.SignatureException, ValueError, TypeError):
        return False
    return True


class _Pickled(msgspec.Struct, frozen=True):
    account: str
    sessions: dict[str, list[str]]


class OlmParty:
    """One end of Olm conversations: an account and its sessions, keyed by peer identity key."""

    def __init__(
        self,
        account: vodozemac.Account | None = None,
        sessions: dict[str, list[vodozemac.Session]] | None = None,
    ) -> None:
        self.account = account or vodozemac.Account()
        self.sessions: dict[str, list[vodozemac.Session]] = sessions or {}
        # Pickles of sessions unchanged since they were last pickled, under `_pickle_key`:
        # id(session) -> (the session, its pickle). The entry holds the session, so its id is
        # not reused while the entry exists; a session that encrypts or decrypts loses it.
        self._pickled: dict[int, tuple[vodozemac.Session, str]] = {}
        # The account's pickle under `_pickle_key` while the account is unchanged (it changes
        # when it makes keys or an inbound session takes a one-time key).
        self._account_pickle: str | None = None
        self._pickle_key = b""

    @property
    def identity_key(self) -> str:
        return str(self.account.curve25519_key.to_base64())

    @property
    def signing_key(self) -> str:
        return str(self.account.ed25519_key.to_base64())

    def sign(self, key: str) -> str:
        """Sign the UTF-8 of a key's base64, as the key directory expects."""
        return str(self.account.sign(key.encode()).to_base64())

    def key_bundle(self, one_time_keys: int, *, fallback: bool = False) -> KeyBundle:
        """Generate `one_time_keys` fresh signed keys (and a fallback key) to publish."""
        self._account_pickle = None
        if one_time_keys:
            self.account.generate_one_time_keys(one_time_keys)
        otks = {
            key_id: SignedKey(key=key.to_base64(), signature=self.sign(key.to_base64()))
            for key_id, key in self.account.one_time_keys.items()
        }
        fallback_key = None
        if fallback:
            # Both exist at run time; vodozemac's bundled type stubs omit them.
            self.account.generate_fallback_key()  # type: ignore[attr-defined]
            for key_id, key in self.account.fallback_key.items():  # type: ignore[attr-defined]
                b64 = key.to_base64()
                fallback_key = IdentifiedKey(key_id=key_id, key=b64, signature=self.sign(b64))
        self.account.mark_keys_as_published()
        return KeyBundle(
            identity_key=self.identity_key,
            signing_key=self.signing_key,
            one_time_keys=otks,
            fallback_key=fallback_key,
        )

    def has_session(self, peer_identity_key: str) -> bool:
        return bool(self.sessions.get(peer_identity_key))

    def _remember(self, peer: str, session: vodozemac.Session) -> None:
        sessions = self.sessions.setdefault(peer, [])
        sessions.insert(0, session)
        del sessions[SESSIONS_PER_PEER:]

    def encrypt(
        self, peer_identity_key: str, plaintext: bytes, *, one_time_key: str | None = None
    ) -> OlmCiphertext:
        """Encrypt for a peer, starting a session from its claimed key when there is none."""
        sessions = self.sessions.get(peer_identity_key)
        if sessions:
            session = sessions[0]
        else:
            if one_time_key is None:
                raise ValueError("no session with this peer: a claimed one-time key is needed")
            session = self.account.create_outbound_session(
                vodozemac.Curve25519PublicKey.from_base64(peer_identity_key),
                vodozemac.Curve25519PublicKey.from_base64(one_time_key),
            )
            self._remember(peer_identity_key, session)
        self._pickled.pop(id(session), None)
        msg_type, body = session.encrypt(plaintext).to_parts()
        return OlmCiphertext(type=msg_type, body=body, sender_key=self.identity_key)

    def decrypt(self, message: OlmCiphertext) -> bytes:
        """Decrypt a message from `message.sender_key`, creating the inbound session if new."""
        peer = message.sender_key
        try:
            olm_message = vodozemac.AnyOlmMessage.from_parts(message.type, message.body)
            sender = vodozemac.Curve25519PublicKey.from_base64(peer)
        except (vodozemac.DecodeException, vodozemac.KeyException, ValueError) as exc:
            raise DecryptionFailed(f"malformed Olm message: {exc}") from None
        pre_key = olm_message.to_pre_key() if message.type == 0 else None
        if message.type == 0 and pre_key is None:
            raise DecryptionFailed("malformed Olm message: not a pre-key message")
        for session in self.sessions.get(peer, []):
            try:
                if pre_key is not None and not session.session_matches(pre_key):
                    continue
                self._pickled.pop(id(session), None)  # its ratchet may move
                return bytes(session.decrypt(olm_message))
            except vodozemac.OlmDecryptionException:
                continue
        if pre_key is None:
            raise DecryptionFailed("no session with this sender decrypts the message")
        self._account_pickle = None  # a one-time key is taken
        try:
            session, plaintext = self.account.create_inbound_session(sender, pre_key)
        except (vodozemac.SessionCreationException, vodozemac.DecodeException) as exc:
            raise DecryptionFailed(f"cannot start a session: {exc}") from None
        self._remember(peer, session)
        return bytes(plaintext)

    def pickle(self, key: bytes) -> bytes:
        """Serialise account and sessions, vodozemac-pickled under the caller's 32-byte key;
        what did not change since the last pickle under that key is not pickled again."""
        if key != self._pickle_key:
            self._pickled, self._account_pickle, self._pickle_key = {}, None, key
        if self._account_pickle is None:
            self._account_pickle = self.account.pickle(key)
        known, pickled = self._pickled, {}
        sessions: dict[str, list[str]] = {}
        for peer, peer_sessions in self.sessions.items():
            pickles = sessions[peer] = []
            for session in peer_sessions:
                hit = known.get(id(session))
                if hit is None or hit[0] is not session:
                    hit = (session, session.pickle(key))
                pickled[id(session)] = hit
                pickles.append(hit[1])
        self._pickled = pickled  # sessions dropped since are forgotten
        return msgspec.json.encode(_Pickled(account=self._account_pickle, sessions=sessions))

    @classmethod
    def from_pickle(cls, data: bytes, key: bytes) -> OlmParty:
        """Restore a party pickled with `pickle(key)`; a wrong key raises DecryptionFailed."""
        try:
            state = msgspec.json.decode(data, type=_Pickled)
            account = vodozemac.Account.from_pickle(state.account, key)
            sessions = {
                peer: [vodozemac.Session.from_pickle(p, key) for p in pickles]
                for peer, pickles in state.sessions.items()
            }
        except (msgspec.DecodeError, vodozemac.PickleException) as exc:
            raise DecryptionFailed(f"cannot restore Olm state: {exc}") from None
        return cls(account, sessions)
