"""The audit log service: one record per request or internal event, appended to the chain.

A request's record is written either by the service, inside the write unit of the effect it
records (`append_in`), or, when no service did, by the HTTP middleware after the handler
(`record_request`). The context's `committed` flag, set only when that unit commits, keeps it
to exactly one record per request.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Callable, Iterable, Mapping

import structlog

from gateway import metrics
from gateway.clock import now_ms
from gateway.service.audit.chain import append_records
from gateway.service.audit.pseudonym import Pseudonymizer
from gateway.service.audit.records import AttrValue, AuditRecord, check_attrs
from gateway.service.principal import ANONYMOUS, Principal
from gateway.store import Store, Tx

log = structlog.get_logger(__name__)

SYSTEM = "system"


class AuditContext:
    """What the audit record of one HTTP request needs; made by the middleware per request."""

    __slots__ = (
        "_who",
        "action",
        "at",
        "attrs",
        "committed",
        "ended",
        "method",
        "payload_sha256",
        "payload_size",
        "request_id",
        "route",
        "started",
        "subjects",
    )

    def __init__(
        self,
        *,
        request_id: str,
        method: str,
        route: str,
        action: str,
        who: Callable[[], Principal] = lambda: ANONYMOUS,
    ) -> None:
        self.request_id = request_id
        self.method = method
        self.route = route
        self.action = action
        self._who = who
        self.at = now_ms()
        self.started = time.perf_counter()
        self.ended: float | None = None
        self.subjects: list[str] = []
        self.attrs: dict[str, AttrValue] = {}
        self.payload_sha256: str | None = None
        self.payload_size: int | None = None
        # True once a record for this request is durable; the middleware then writes none.
        self.committed = False

    @property
    def principal(self) -> Principal:
        """Who the request acts as, at the time of asking (authentication may set it late)."""
        return self._who()

    def add_subjects(self, *uris: str) -> None:
        """User URIs the request concerns; only their pseudonyms reach the record."""
        self.subjects.extend(uris)

    def note_payload(self, body: bytes) -> None:
        """Record the digest and size of the request body (never the body)."""
        self.payload_sha256 = hashlib.sha256(body).hexdigest()
        self.payload_size = len(body)

    def note_payload_digest(self, sha256_hex: str, size: int) -> None:
        """Record a digest computed while streaming (e.g. media uploads)."""
        self.payload_sha256 = sha256_hex
        self.payload_size = size

    def finish(self) -> None:
        """Stop the clock: the response is ready (the audit write is not part of it)."""
        if self.ended is None:
            self.ended = time.perf_counter()

    def elapsed_us(self) -> int:
        """Microseconds from the request's arrival to finish() (or to now)."""
        end = time.perf_counter() if self.ended is None else self.ended
        return int((end - self.started) * 1_000_000)


class Appended:
    """A record appended inside a write unit: chained (seq and hash) when its batch flushes."""

    __slots__ = ("draft", "record")

    def __init__(self, draft: AuditRecord) -> None:
        self.draft = draft
        self.record: AuditRecord | None = None


class AuditLog:
    """Appends audit records to this gateway's chain; pseudonymises subjects on the way.

    A unit's records are chained when its group-commit batch ends (`Tx.defer`): the head is
    read once and the batch's records go in with one multi-row insert, still in the batch's
    transaction, so they commit or roll back with the units that wrote them.
    """

    def __init__(
        self,
        store: Store,
        *,
        chain_id: str,
        pseudonymize: Pseudonymizer,
        on_append: Callable[[], None] | None = None,
    ) -> None:
        self.store = store
        self.chain_id = chain_id
        self.pseudonymize = pseudonymize
        self._on_append = on_append
        self._pending: set[asyncio.Task[AuditRecord | None]] = set()

    def _draft(
        self,
        *,
        action: str,
        actor: Principal | None,
        subjects: Iterable[str],
        attrs: Mapping[str, AttrValue] | None,
        status: int | None,
        ctx: AuditContext | None = None,
        request_id: str | None = None,
    ) -> AuditRecord:
        kind = SYSTEM if actor is None else actor.kind
        return AuditRecord(
            chain_id=self.chain_id,
            seq=0,
            at=now_ms() if ctx is None else ctx.at,
            request_id=request_id if ctx is None else ctx.request_id,
            actor=kind,
            client_id=None if actor is None else actor.client_id,
            method=None if ctx is None else ctx.method,
            route=None if ctx is None else ctx.route,
            status=status,
            duration_us=None if ctx is None else ctx.elapsed_us(),
            action=action,
            subjects=[self.pseudonymize(uri) for uri in subjects],
            pseudonym_key=self.pseudonymize.key_id,
            payload_sha256=None if ctx is None else ctx.payload_sha256,
            payload_size=None if ctx is None else ctx.payload_size,
            attrs=check_attrs(attrs or {}),
        )

    def _append(self, tx: Tx, draft: AuditRecord) -> Appended:
        appended = Appended(draft)
        tx.defer(self._flush, appended)
        tx.on_commit(metrics.AUDIT_RECORDS.inc)
        if self._on_append is not None:
            tx.on_commit(self._on_append)
        return appended

    async def _flush(self, tx: Tx, items: list[Appended]) -> None:
        """Chain and insert a batch's records (the writer calls this once per batch)."""
        chained = await append_records(tx, [item.draft for item in items])
        for item, (record, _) in zip(items, chained, strict=True):
            item.record = record

    async def append_in(
        self,
        tx: Tx,
        ctx: AuditContext,
        *,
        status: int,
        action: str | None = None,
        subjects: Iterable[str] = (),
        attrs: Mapping[str, AttrValue] | None = None,
    ) -> Appended:
        """Append the request's record inside the caller's write unit (same transaction).

        `status` is the HTTP status the request will answer with; `subjects` are raw user URIs
        (pseudonymised here) added to those already on `ctx`; `attrs` add to `ctx.attrs`.
        """
        if ctx.committed:
            raise RuntimeError("this request already has its audit record")
        draft = self._draft(
            action=action or ctx.action,
            actor=ctx.principal,
            subjects=[*ctx.subjects, *subjects],
            attrs={**ctx.attrs, **(attrs or {})},
            status=status,
            ctx=ctx,
        )
        appended = self._append(tx, draft)

        def committed() -> None:
            ctx.committed = True

        tx.on_commit(committed)
        return appended

    async def event_in(
        self,
        tx: Tx,
        *,
        action: str,
        subjects: Iterable[str] = (),
        attrs: Mapping[str, AttrValue] | None = None,
        actor: Principal | None = None,
        request_id: str | None = None,
        status: int | None = None,
    ) -> Appended:
        """Append an internal event (delivery, key claim, decision, ...) inside a write unit."""
        draft = self._draft(
            action=action,
            actor=actor,
            subjects=subjects,
            attrs=attrs,
            status=status,
            request_id=request_id,
        )
        return self._append(tx, draft)

    async def record_event(
        self,
        *,
        action: str,
        subjects: Iterable[str] = (),
        attrs: Mapping[str, AttrValue] | None = None,
        actor: Principal | None = None,
        request_id: str | None = None,
        status: int | None = None,
    ) -> AuditRecord:
        """Append an internal event in a write unit of its own; return once durable."""
        subjects = list(subjects)

        async def unit(tx: Tx) -> Appended:
            return await self.event_in(
                tx,
                action=action,
                subjects=subjects,
                attrs=attrs,
                actor=actor,
                request_id=request_id,
                status=status,
            )

        return _committed(await self.store.write("audit_event", unit))

    async def record_request(
        self, ctx: AuditContext, *, status: int, action: str | None = None
    ) -> AuditRecord | None:
        """The middleware's record of a request no service recorded; None if one did."""
        if ctx.committed:
            return None

        async def unit(tx: Tx) -> Appended:
            return await self.append_in(tx, ctx, status=status, action=action)

        return _committed(await self.store.write("audit_request", unit))

    def record_request_soon(self, ctx: AuditContext, *, status: int) -> None:
        """record_request in the background, for a request whose handler was cancelled."""
        task = asyncio.get_running_loop().create_task(self.record_request(ctx, status=status))
        self._pending.add(task)
        task.add_done_callback(self._settled)

    def _settled(self, task: asyncio.Task[AuditRecord | None]) -> None:
        self._pending.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("audit_write_failed", error=type(task.exception()).__name__)

    async def drain(self) -> None:
        """Wait for background records (at shutdown)."""
        await asyncio.gather(*self._pending, return_exceptions=True)


def _committed(appended: Appended) -> AuditRecord:
    """The chained record of a committed unit (its batch's flush gave it seq and hash)."""
    assert appended.record is not None, "a committed unit's record is chained at its flush"
    return appended.record
