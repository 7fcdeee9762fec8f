"""Groups (DESIGN §4.10): rooms on a hub service, membership, Megolm room keys, fan-out.

The gateway keeps each group's membership, with an `epoch` that grows by one at every change,
and fans every group item out to the members of the epoch it was accepted in: one outbox row
per platform member (delivered through the platform, in order per member, retried per member)
and one event per third-party member (or per provider, for membership changes). A 2xx means the
item, every delivery job and the audit record are in one committed unit.

Megolm sessions are bound to the epoch they were shared in (`group_sessions`); a message under a
session of an older epoch is refused (409 stale-group-session), so a removed member reads nothing
sent after its removal and a new member nothing sent before it joined. The gateway never holds a
session key: shares are Olm ciphertext for one member each.

Who may be in a group (Art. 7(7)): platform users of the hub service and third-party users of
providers approved for it; every platform member must have consented to every provider with a
member in the group. A user who may not be added is answered exactly as one who does not exist
(404 unknown-recipient, nothing changed). A group is visible only to providers with a current
member; to any other it is a 404, as a group that does not exist.

Both sides act here: providers through the HTTP routes (`create`, `add`, `remove`, `share_keys`,
`send`), the platforms' own users through the `GroupSink` methods (`create_group`, ...).
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any

import msgspec
import structlog

from gateway import metrics
from gateway.clock import now_ms
from gateway.config import Config
from gateway.errors import (
    Conflict,
    E2EERequired,
    Forbidden,
    IdempotencyConflict,
    LimitExceeded,
    NotFound,
    SenderNotOwned,
    UnknownRecipient,
    ValidationFailed,
)
from gateway.ids import new_id
from gateway.platforms.base import Platform, provider_of, service_of
from gateway.service.audit.log import AuditLog
from gateway.service.consent import ConsentRegistry
from gateway.service.event_types import (
    GroupMember,
    GroupMembershipEvent,
    GroupMessageEvent,
    RoomKeyEvent,
)
from gateway.service.events import EventQueue
from gateway.service.group_types import (
    GroupCreateIn,
    GroupMessageIn,
    GroupOut,
    MegolmMessage,
    MembersAddIn,
    MembersRemoveIn,
    RoomKeyShare,
    RoomKeysIn,
)
from gateway.service.payload_seal import PayloadSealer
from gateway.service.reach import Reach
from gateway.service.relay import check_ciphertext, digest_of
from gateway.service.relay_content import native_send_objects
from gateway.store import Store, Tx, groups, messages, outbox
from gateway.store import keys as key_store
from gateway.store.groups import GroupState
from gateway.store.messages import Envelope
from gateway.uris import parse_user_uri

log = structlog.get_logger(__name__)

# Writes the request's audit record in the unit: (tx, subjects, attrs).
GroupAudit = Callable[[Tx, list[str], dict[str, str | int]], Awaitable[object]]
CapacityCheck = Callable[[str], Awaitable[None]]


class StaleGroupSession(Conflict):
    """A Megolm session shared before the group's latest membership change."""

    type, title = "/problems/stale-group-session", "Stale group session"


def _no_group() -> NotFound:
    # One body for a group that does not exist and one the caller may not see.
    return NotFound("No such group.", field="group_id")


@dataclass(frozen=True, slots=True)
class Actor:
    """Who acts: a provider's user (`client_id` its provider) or a platform user (`client_id`
    its service name, under which its submissions are recorded)."""

    user: str
    client_id: str
    platform: bool


class GroupService:
    """Group rooms and their traffic; implements the platforms' `GroupSink` too."""

    def __init__(
        self,
        store: Store,
        config: Config,
        platform: Platform,
        reach: Reach,
        consent: ConsentRegistry,
        events: EventQueue,
        *,
        audit_events: AuditLog,
        sealer: PayloadSealer,
        on_outbox: Callable[[], None],
        check_capacity: CapacityCheck,
    ) -> None:
        self.store = store
        self.config = config
        self.platform = platform
        self.reach = reach
        self.consent = consent
        self.events = events
        self.audit_events = audit_events
        self.sealer = sealer
        self._on_outbox = on_outbox
        self._check_capacity = check_capacity

    # -- lookups ------------------------------------------------------------------------

    async def _visible(self, client_id: str, group_id: str) -> GroupState:
        """The group, if `client_id` has a current member in it; else the 404 of no group."""
        uri = await self._resolve(group_id)
        if uri is None or not await groups.has_provider_member(self.store, uri, client_id):
            raise _no_group()
        state = await groups.group_state(self.store, uri)
        if state is None:
            raise _no_group()
        return state

    async def _resolve(self, group_id: str) -> str | None:
        """The URI of the group with id `group_id` (ids are unique across services)."""
        if not group_id or "/" in group_id or len(group_id) > 128:
            return None
        for service in self.config.services:
            uri = f"mimi://{service}/g/{group_id}"
            if await groups.exists(self.store, uri):
                return uri
        return None

    async def state(self, client_id: str, group_id: str) -> GroupOut:
        """`GET /v1/groups/{group_id}`."""
        return _out(await self._visible(client_id, group_id))

    # -- checks ---------------------------------------------------------------------------

    def _own(self, client_id: str, user: str, field: str) -> Actor:
        if provider_of(user) != client_id:
            raise SenderNotOwned(
                "This must be one of your own users: mimi://<your client_id>/u/<id>.", field=field
            )
        return Actor(user, client_id, platform=False)

    async def _check_service(self, client_id: str, service: str) -> None:
        await self.reach.require_functionality(client_id, "group_text")
        hub = self.config.services.get(service)
        if (
            hub is None
            or not hub.enabled
            or not await self.reach.service_approved(client_id, service)
        ):
            raise Forbidden(f"You are not approved for {service}.", field="$.service")
        group_text = hub.functionalities.get("group_text")
        if group_text is None or group_text.state != "available":
            raise Forbidden(f"Groups are not available on {service}.", field="$.service")

    async def _admit(
        self,
        service: str,
        actor: Actor,
        after: Iterable[str],
        new: dict[str, str],
    ) -> None:
        """Refuse (404, as for nobody) a new member who may not be in the group.

        `new` maps each new member to the field naming it; `after` is the whole membership.
        """
        members = list(after)
        limit = self.config.services[service].group_max_members
        if len(members) > limit:
            field = next(iter(new.values()), "$.members").rpartition("[")[0] or "$.members"
            raise LimitExceeded(
                f"A {service} group has at most {limit} members.", field=field, limit=limit
            )
        for user, field in new.items():
            await self._admit_one(service, actor, user, field)
        providers = {p for m in members if (p := provider_of(m)) is not None}
        platform_members = [m for m in members if provider_of(m) is None]
        # Every platform member consents to every provider with a member (Art. 7(7)).
        for member in platform_members:
            for provider in providers:
                if await self.reach.allows(member, provider):
                    continue
                if member in new:
                    raise UnknownRecipient("No such user is reachable by you.", field=new[member])
                culprit = next(
                    (f for u, f in new.items() if provider_of(u) == provider),
                    next(iter(new.values()), "$.members"),
                )
                raise UnknownRecipient("No such user is reachable by you.", field=culprit)

    async def _admit_one(self, service: str, actor: Actor, user: str, field: str) -> None:
        uri = parse_user_uri(user)
        if uri is None:
            raise ValidationFailed("Not a user URI.", field=field)
        unknown = UnknownRecipient("No such user is reachable by you.", field=field)
        if uri.is_platform:
            if uri.authority != service:
                raise ValidationFailed(
                    f"A {service} group holds {service} users and third-party users.",
                    field=field,
                )
            if not await self.platform.user_exists(user):
                raise unknown
            if not actor.platform and not await self.reach.allows(user, actor.client_id):
                raise unknown
            return
        provider = uri.authority
        if provider != actor.client_id and not await self.reach.service_approved(
            provider, service
        ):
            raise unknown
        if actor.platform and not await self.consent.allows(actor.user, provider):
            raise unknown
        if await key_store.identity(self.store, user) is None:
            raise unknown

    # -- membership -----------------------------------------------------------------------

    async def create(
        self, client_id: str, body: GroupCreateIn, *, audit: GroupAudit | None = None
    ) -> tuple[GroupOut, bool]:
        """`POST /v1/groups`: (state, created); the same `id` and body again: the group."""
        actor = self._own(client_id, body.creator, "$.creator")
        await self._check_service(client_id, body.service)
        return await self._create(actor, body.service, body.name, body.members, body.id,
                                  digest_of(body), audit)  # fmt: skip

    async def _create(
        self,
        actor: Actor,
        service: str,
        name: str,
        members: list[str],
        ref: str,
        digest: str,
        audit: GroupAudit | None,
    ) -> tuple[GroupOut, bool]:
        known = await groups.group_by_ref(self.store, actor.client_id, ref)
        roles = {actor.user: "admin"}
        if known is None:
            new: dict[str, str] = {}
            for i, member in enumerate(members):
                if member not in roles:
                    roles[member] = "member"
                    new[member] = f"$.members[{i}]"
            await self._admit(service, actor, roles, new)
        uri = f"mimi://{service}/g/{uuid.uuid4().hex}"
        at = now_ms()

        async def unit(tx: Tx) -> tuple[str, bool]:
            again = await groups.group_by_ref(tx, actor.client_id, ref)
            if again is not None:
                if again[1] != digest:
                    raise IdempotencyConflict("This id was used with another body.", field="$.id")
                return again[0], False
            await groups.create_group(
                tx, uri=uri, service=service, name=name, members=roles,
                client_id=actor.client_id, client_ref=ref, digest=digest, at=at,
            )  # fmt: skip
            state = GroupState(uri, service, name, 0, dict(roles))
            await self._membership_in(tx, state, actor, added=list(roles), removed=[], at=at)
            attrs: dict[str, str | int] = {"service": service, "members": len(roles)}
            await self._audit_in(tx, actor, audit, "group.create", [actor.user, uri], attrs)
            return uri, True

        if known is not None and known[1] != digest:
            raise IdempotencyConflict("This id was used with another body.", field="$.id")
        created_uri, created = await self.store.write("group_create", unit)
        state = await groups.group_state(self.store, created_uri)
        assert state is not None
        if created:
            metrics.GROUP_CHANGES.labels(service, "create").inc()
            log.info("group_created", service=service, members=len(state.members))
        return _out(state), created

    async def add(
        self, client_id: str, group_id: str, body: MembersAddIn, *, audit: GroupAudit | None = None
    ) -> GroupOut:
        """`POST /v1/groups/{group_id}/members`: admins add members (epoch + 1)."""
        actor = self._own(client_id, body.by, "$.by")
        state = await self._visible(client_id, group_id)
        return await self._change(actor, state, add=body.add, remove=[], audit=audit)

    async def remove(
        self,
        client_id: str,
        group_id: str,
        body: MembersRemoveIn,
        *,
        audit: GroupAudit | None = None,
    ) -> GroupOut:
        """`POST /v1/groups/{group_id}/members/remove`: admins remove; anyone leaves."""
        actor = self._own(client_id, body.by, "$.by")
        state = await self._visible(client_id, group_id)
        return await self._change(actor, state, add=[], remove=body.remove, audit=audit)

    def _check_change(
        self, actor: Actor, state: GroupState, add: list[str], remove: list[str]
    ) -> tuple[dict[str, str], list[str]]:
        role = state.members.get(actor.user)
        if role is None:
            raise Forbidden("`by` must be a current member of the group.", field="$.by")
        if role != "admin" and (add or any(u != actor.user for u in remove)):
            raise Forbidden("Only admins add members or remove others.", field="$.by")
        new = {}
        for i, user in enumerate(add):
            if user not in state.members and user not in new:
                new[user] = f"$.add[{i}]"
        gone = []
        for i, user in enumerate(remove):
            if user not in state.members:
                raise ValidationFailed("Not a member of the group.", field=f"$.remove[{i}]")
            if user not in gone:
                gone.append(user)
        return new, gone

    async def _change(
        self,
        actor: Actor,
        state: GroupState,
        *,
        add: list[str],
        remove: list[str],
        audit: GroupAudit | None,
    ) -> GroupOut:
        new, gone = self._check_change(actor, state, add, remove)
        after = {u: r for u, r in state.members.items() if u not in gone}
        after.update(dict.fromkeys(new, "member"))
        await self._admit(state.service, actor, after, new)
        at = now_ms()

        async def unit(tx: Tx) -> GroupState:
            current = await groups.lock_group(tx, state.uri)
            assert current is not None
            # Checked again under the lock: another change may have come first.
            fresh, dropped = self._check_change(actor, current, list(new), gone)
            put = dict.fromkeys(fresh, "member")
            members = {u: r for u, r in current.members.items() if u not in dropped}
            members.update(put)
            if members and "admin" not in members.values():
                # The last admin left: the first remaining member (by URI) becomes admin.
                first = min(members)
                members[first] = put[first] = "admin"
            epoch = current.epoch + 1
            await groups.change_members(tx, current.uri, epoch=epoch, put=put, drop=dropped)
            changed = GroupState(current.uri, current.service, current.name, epoch, members)
            await self._membership_in(
                tx, changed, actor, added=list(fresh), removed=dropped, at=at
            )
            attrs: dict[str, str | int] = {
                "service": current.service, "epoch": epoch,
                "added": len(fresh), "removed": len(dropped),
            }  # fmt: skip
            await self._audit_in(tx, actor, audit, "group.members", [actor.user, current.uri],
                                 attrs)  # fmt: skip
            return changed

        changed = await self.store.write("group_members", unit)
        metrics.GROUP_CHANGES.labels(state.service, "members").inc()
        return _out(changed)

    async def _membership_in(
        self,
        tx: Tx,
        state: GroupState,
        actor: Actor,
        *,
        added: list[str],
        removed: list[str],
        at: int,
    ) -> None:
        """Tell every member (removed ones included, once) about a membership change."""
        members = [GroupMember(uri=u, role=r) for u, r in sorted(state.members.items())]  # type: ignore[arg-type]
        reached = [*state.members, *removed]
        event = GroupMembershipEvent(
            group=state.uri, by=actor.user, added=added, removed=removed, epoch=state.epoch,
            members=members,
        )  # fmt: skip
        payload = {
            "by": actor.user, "added": added, "removed": removed, "epoch": state.epoch,
            "members": msgspec.to_builtins(members),
        }  # fmt: skip
        provider_events = {p: [event] for m in reached if (p := provider_of(m)) is not None}
        key = f"members:{state.uri}:{state.epoch}"
        await self._fan_out_in(
            tx, state, actor, "group_membership", key, "", payload, at,
            platform_members=[m for m in reached if provider_of(m) is None],
            provider_events=provider_events, sent_at=at,
        )  # fmt: skip

    # -- room keys and messages -----------------------------------------------------------

    async def share_keys(
        self, client_id: str, group_id: str, body: RoomKeysIn, *, audit: GroupAudit | None = None
    ) -> str:
        """`POST /v1/groups/{group_id}/keys`: relay a member's session to every other member."""
        actor = self._own(client_id, body.sender, "$.from")
        state = await self._visible(client_id, group_id)
        return await self._share(actor, state, body.session_id, body.shares, digest_of(body),
                                 audit)  # fmt: skip

    def _check_shares(self, actor: Actor, state: GroupState, shares: list[RoomKeyShare]) -> None:
        if actor.user not in state.members:
            raise Forbidden("`from` must be a current member of the group.", field="$.from")
        seen: set[str] = set()
        for i, share in enumerate(shares):
            if share.recipient not in state.members or share.recipient == actor.user:
                raise ValidationFailed(
                    "Shares go to the other current members only.", field=f"$.shares[{i}].to"
                )
            if share.recipient in seen:
                raise ValidationFailed("One share per member.", field=f"$.shares[{i}].to")
            seen.add(share.recipient)
        missing = sorted(set(state.members) - seen - {actor.user})
        if missing:
            raise ValidationFailed(
                f"Every other current member needs a share; missing: {', '.join(missing)}.",
                field="$.shares",
            )

    async def _share(
        self,
        actor: Actor,
        state: GroupState,
        session_id: str,
        shares: list[RoomKeyShare],
        digest: str,
        audit: GroupAudit | None,
    ) -> str:
        self._check_shares(actor, state, shares)
        await self._check_capacity(actor.client_id)
        at = now_ms()

        async def unit(tx: Tx) -> tuple[str, bool]:
            key = f"keys:{state.uri}:{session_id}:{digest[:32]}"
            known = await messages.find_by_key(tx, actor.client_id, key)
            if known is not None:
                return known.id, False
            current = await groups.lock_group(tx, state.uri)
            assert current is not None
            self._check_shares(actor, current, shares)
            sender, epoch = await groups.add_session(
                tx, current.uri, session_id, actor.user, current.epoch, at
            )
            if sender != actor.user:
                raise ValidationFailed(
                    "This session id belongs to another member.", field="$.session_id"
                )
            if epoch != current.epoch:
                raise StaleGroupSession(
                    "This session was shared before the latest membership change; share a new "
                    "one.",
                    field="$.session_id",
                )
            encrypted = {s.recipient: msgspec.to_builtins(s.encrypted) for s in shares}
            provider_events: dict[str, list[Any]] = {}
            reaches = await self._reaches(tx, actor, encrypted)
            for member, olm in encrypted.items():
                provider = provider_of(member)
                if provider in reaches:
                    provider_events.setdefault(provider, []).append(RoomKeyEvent(
                        group=current.uri, sender=actor.user, recipient=member,
                        session_id=session_id, encrypted=olm,
                    ))  # fmt: skip
            platform = [m for m in encrypted if provider_of(m) is None]
            payload = {
                "session_id": session_id,
                "shares": {m: encrypted[m] for m in platform},
            }
            gateway_id = await self._fan_out_in(
                tx, current, actor, "room_key", key, digest, payload, at,
                platform_members=platform, provider_events=provider_events, sent_at=at,
            )  # fmt: skip
            attrs: dict[str, str | int] = {
                "service": current.service,
                "epoch": current.epoch,
                "shares": len(shares),
            }
            await self._audit_in(tx, actor, audit, "group.room_keys", [actor.user, current.uri],
                                 attrs)  # fmt: skip
            return gateway_id, True

        gateway_id, fresh = await self.store.write("group_room_keys", unit)
        if fresh:
            metrics.GROUP_ITEMS.labels(state.service, "room_key").inc()
        return gateway_id

    async def send(
        self,
        client_id: str,
        group_id: str,
        body: GroupMessageIn,
        *,
        audit: GroupAudit | None = None,
    ) -> str:
        """`POST /v1/groups/{group_id}/messages`: fan a message out to the epoch's members."""
        actor = self._own(client_id, body.sender, "$.from")
        state = await self._visible(client_id, group_id)
        payload = self._message_payload(state.service, body.encrypted, body.content)
        return await self._send(actor, state, body.id, digest_of(body), body.sent_at, payload,
                                audit)  # fmt: skip

    def _message_payload(
        self, service: str, encrypted: MegolmMessage | None, content: dict[str, Any] | None
    ) -> dict[str, Any]:
        if (encrypted is None) == (content is None):
            raise ValidationFailed(
                "Give exactly one of `encrypted`, `content`.",
                field="$.content" if encrypted is not None else "$.encrypted",
            )
        if encrypted is None:
            if self.config.services[service].e2ee == "required":
                raise E2EERequired(
                    f"{service} requires end-to-end encryption: send `encrypted`.",
                    field="$.encrypted",
                )
            # Checked (and translated) now: bad content is a 422 before anything is stored.
            native_send_objects(service, content, None)
            return {"content": content}
        check_ciphertext(encrypted.body, self.config.relay.max_ciphertext_bytes)
        return {"encrypted": msgspec.to_builtins(encrypted)}

    async def _send(
        self,
        actor: Actor,
        state: GroupState,
        ref: str,
        digest: str,
        sent_at: int,
        payload: dict[str, Any],
        audit: GroupAudit | None,
    ) -> str:
        if actor.user not in state.members:
            raise Forbidden("`from` must be a current member of the group.", field="$.from")
        await self._check_capacity(actor.client_id)
        at = now_ms()
        session_id = payload.get("encrypted", {}).get("session_id")

        async def unit(tx: Tx) -> tuple[str, bool]:
            known = await messages.find_by_key(tx, actor.client_id, ref)
            if known is not None:
                if known.digest != digest:
                    raise IdempotencyConflict("This id was used with another body.", field="$.id")
                return known.id, False
            current = await groups.lock_group(tx, state.uri)
            assert current is not None
            if actor.user not in current.members:
                raise Forbidden("`from` must be a current member of the group.", field="$.from")
            if session_id is not None:
                await self._check_session(tx, current, actor, session_id)
            recipients = [m for m in current.members if m != actor.user]
            gateway_id = f"gw_{new_id()}"
            provider_events: dict[str, list[Any]] = {}
            reaches = await self._reaches(tx, actor, recipients)
            for member in recipients:
                provider = provider_of(member)
                if provider in reaches:
                    provider_events.setdefault(provider, []).append(GroupMessageEvent(
                        id=gateway_id, group=current.uri, sender=actor.user, recipient=member,
                        sent_at=sent_at, encrypted=payload.get("encrypted"),
                        content=payload.get("content"),
                    ))  # fmt: skip
            platform = [m for m in recipients if provider_of(m) is None]
            to_platform = payload
            if "content" in payload and platform:
                to_platform = {
                    "native": native_send_objects(current.service, payload["content"], None)
                }
            await self._fan_out_in(
                tx, current, actor, "group_message", ref, digest, to_platform, at,
                platform_members=platform, provider_events=provider_events, sent_at=sent_at,
                gateway_id=gateway_id,
            )  # fmt: skip
            attrs: dict[str, str | int] = {
                "service": current.service, "epoch": current.epoch,
                "recipients": len(recipients),
                "type": "encrypted" if session_id is not None else "plaintext",
            }  # fmt: skip
            await self._audit_in(tx, actor, audit, "group.message", [actor.user, current.uri],
                                 attrs)  # fmt: skip
            return gateway_id, True

        gateway_id, fresh = await self.store.write("group_message", unit)
        if fresh:
            metrics.GROUP_ITEMS.labels(state.service, "group_message").inc()
            log.info("group_message_accepted", service=state.service)
        return gateway_id

    async def _reaches(self, tx: Tx, actor: Actor, members: Iterable[str]) -> set[str]:
        """The providers of `members` that `actor` still reaches: all of them for a provider's
        user; for a platform user, those it still consents to (a revocation since it joined
        the group stops what it sends from reaching that provider, Art. 7(7))."""
        providers = {p for m in members if (p := provider_of(m)) is not None}
        if not actor.platform:
            return providers
        return {p for p in providers if await self.consent.allows_in(tx, actor.user, p)}

    async def _check_session(
        self, tx: Tx, state: GroupState, actor: Actor, session_id: str
    ) -> None:
        bound = await groups.session_of(tx, state.uri, session_id)
        if bound is None or bound[0] != actor.user:
            raise ValidationFailed(
                "Unknown session: share it with the members first (POST .../keys).",
                field="$.encrypted.session_id",
            )
        if bound[1] != state.epoch:
            raise StaleGroupSession(
                "This session was shared before the latest membership change; share a new "
                "session with the current members, then send again.",
                field="$.encrypted.session_id",
            )

    # -- fan-out --------------------------------------------------------------------------

    async def _fan_out_in(
        self,
        tx: Tx,
        state: GroupState,
        actor: Actor,
        kind: str,
        key: str,
        digest: str,
        payload: dict[str, Any],
        at: int,
        *,
        platform_members: list[str],
        provider_events: dict[str, list[Any]],
        sent_at: int,
        gateway_id: str | None = None,
    ) -> str:
        """Record the item and, in the same unit, one outbox row per platform member and the
        providers' events. Returns the item's gateway id."""
        gateway_id = gateway_id or f"gw_{new_id()}"
        body = msgspec.json.encode(payload)
        envelope = Envelope(
            id=gateway_id, client_id=actor.client_id, client_msg_id=key, digest=digest,
            kind=kind, service=state.service, sender=actor.user, recipient=state.uri,
            sent_at=sent_at, size=len(body),
        )  # fmt: skip
        if platform_members:
            sealed = await self.sealer.seal(gateway_id, body, at)
            await messages.add_group_item(tx, envelope, sealed, at)
            await outbox.enqueue_members(
                tx, gateway_id, state.uri, state.service, at, platform_members
            )
            tx.on_commit(self._on_outbox)
            tx.notify(outbox.TOPIC)
        else:
            await messages.add_group_item(tx, envelope, None, at)
        for provider, items in provider_events.items():
            for event in items:
                await self.events.append_in(tx, provider, event)
        targets = {"platform": len(platform_members), "provider": len(provider_events)}

        def count() -> None:
            for target, n in targets.items():
                if n:
                    metrics.GROUP_FANOUT.labels(state.service, kind, target).inc(n)

        tx.on_commit(count)
        return gateway_id

    async def _audit_in(
        self,
        tx: Tx,
        actor: Actor,
        audit: GroupAudit | None,
        action: str,
        subjects: list[str],
        attrs: dict[str, str | int],
    ) -> None:
        if audit is not None:
            await audit(tx, subjects, attrs)
        else:  # a platform user's action: no request of a provider to record it under
            await self.audit_events.event_in(tx, action=action, subjects=subjects, attrs=attrs)

    # -- the platforms' side (GroupSink) ------------------------------------------------

    def _platform_actor(self, user: str, service: str | None = None) -> Actor:
        own = service_of(user)
        if own is None or (service is not None and own != service):
            raise ValidationFailed("Not a user of this service.", field="creator")
        return Actor(user, own, platform=True)

    async def _member_state(self, group: str, actor: Actor) -> GroupState:
        state = await groups.group_state(self.store, group)
        if state is None or actor.user not in state.members:
            raise _no_group()
        return state

    async def create_group(
        self, *, native_id: str, service: str, creator: str, name: str, members: list[str]
    ) -> dict[str, Any]:
        """A platform user creates a group on its own service."""
        actor = self._platform_actor(creator, service)
        if not self.config.services[service].enabled:
            raise UnknownRecipient("No such service.", field="service")
        digest = digest_of({"service": service, "name": name, "members": members})
        out, _ = await self._create(actor, service, name, members, f"create:{native_id}",
                                    digest, None)  # fmt: skip
        return msgspec.to_builtins(out)  # type: ignore[no-any-return]

    async def share_room_keys(
        self, *, native_id: str, group: str, sender: str, session_id: str,
        shares: list[dict[str, Any]],
    ) -> None:  # fmt: skip
        """A platform member shares its Megolm session with every other member."""
        actor = self._platform_actor(sender)
        state = await self._member_state(group, actor)
        typed = msgspec.convert(shares, list[RoomKeyShare])
        digest = digest_of({"native_id": native_id, "session_id": session_id, "shares": shares})
        await self._share(actor, state, session_id, typed, digest, None)

    async def send_group_message(
        self, *, native_id: str, group: str, sender: str, sent_at: int, payload: dict[str, Any]
    ) -> str:
        """A platform member's group message (`{"encrypted": megolm}` or `{"content": ...}`)."""
        actor = self._platform_actor(sender)
        state = await self._member_state(group, actor)
        encrypted = payload.get("encrypted")
        typed = None if encrypted is None else msgspec.convert(encrypted, MegolmMessage)
        checked = self._message_payload(state.service, typed, payload.get("content"))
        ref = f"in:{state.service}:group_message:{native_id}"
        return await self._send(actor, state, ref, digest_of(payload), sent_at, checked, None)

    async def group_state(self, group: str) -> dict[str, Any] | None:
        """The group's state, or None (the platform asks for its own members only)."""
        state = await groups.group_state(self.store, group)
        return None if state is None else msgspec.to_builtins(_out(state))  # type: ignore[no-any-return]


def _out(state: GroupState) -> GroupOut:
    return GroupOut(
        group=state.uri,
        service=state.service,
        name=state.name,
        members=[GroupMember(uri=u, role=r) for u, r in sorted(state.members.items())],  # type: ignore[arg-type]
        epoch=state.epoch,
    )
