"""`dma-gateway admin`: the gatekeeper's command line for what /admin/v1 does (DESIGN §4.11).

It reads the same configuration as `serve` (the gateway's URL and admin token) and calls the
running gateway's admin API, so every step is validated, recorded and audited exactly as when
it comes over HTTP. Exit codes: 0 done, 1 the gateway refused (its problem is printed), 2 a
usage or configuration error, 3 the gateway could not be reached.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import sys
from collections.abc import Callable
from typing import Any

import aiohttp

from gateway.config import Config, load_config
from gateway.service.working_days import WorkingDays

REFUSED, USAGE, UNREACHABLE = 1, 2, 3
Args = argparse.Namespace


class Refused(Exception):
    """The gateway answered with a problem document."""

    def __init__(self, status: int, problem: dict[str, Any]) -> None:
        super().__init__(problem.get("detail") or problem.get("title") or str(status))
        self.status = status
        self.problem = problem


class UsageError(Exception):
    pass


def _admin_token(config: Config) -> str:
    if config.admin_token:
        return config.admin_token
    path = config.data_path / "admin-token"
    if not path.exists():
        raise UsageError(
            f"no admin token: set GATEWAY_ADMIN_TOKEN or start the gateway once ({path})"
        )
    return path.read_text().strip()


class AdminClient:
    """The admin API of one gateway."""

    def __init__(self, base_url: str, token: str, session: aiohttp.ClientSession) -> None:
        self._base = base_url.rstrip("/")
        self._headers = {"Authorization": f"Bearer {token}"}
        self._session = session

    async def call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        async with self._session.request(
            method, self._base + path, json=body, headers=self._headers
        ) as response:
            data = await response.json(content_type=None)
            if response.status >= 400:
                raise Refused(response.status, data if isinstance(data, dict) else {})
            return data


def _day(ms: int | None) -> str:
    if ms is None:
        return "-"
    return dt.datetime.fromtimestamp(ms / 1000, dt.UTC).strftime("%Y-%m-%d")


def _table(headers: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(str(c)) for c in col) for col in zip(headers, *rows, strict=False)]
    lines = [headers, *rows]
    return "\n".join(
        "  ".join(str(c).ljust(w) for c, w in zip(line, widths, strict=True)).rstrip()
        for line in lines
    )


def _next_deadline(item: dict[str, Any]) -> dict[str, Any] | None:
    open_ = [d for d in item["deadlines"] if d["met_at"] is None and d["name"] != "comments"]
    return min(open_, key=lambda d: d["due_at"]) if open_ else None


def requests_table(items: list[dict[str, Any]], now_ms: int, days: WorkingDays) -> str:
    """Requests with the working days left before their next deadline, overdue first."""
    rows: list[tuple[tuple[int, int], list[str]]] = []
    for item in items:
        deadline = _next_deadline(item)
        organisation = item["organisation"] + (" (confidential)" if item["confidential"] else "")
        if deadline is None:
            rows.append(((2, 0), [item["id"], item["status"], organisation, "-", "-", "-"]))
            continue
        due = deadline["due_at"]
        left = days.between(now_ms, due)
        overdue = due < now_ms
        shown = f"OVERDUE by {-left}" if overdue else str(left)
        row = [item["id"], item["status"], organisation, deadline["name"], _day(due), shown]
        rows.append(((0 if overdue else 1, due), row))
    rows.sort(key=lambda r: r[0])
    return _table(
        ["ID", "PHASE", "ORGANISATION", "NEXT DEADLINE", "DUE", "WORKING DAYS LEFT"],
        [row for _, row in rows],
    )


def show_request(item: dict[str, Any]) -> str:
    """One request: fields, plan, deadlines and log."""
    lines = [
        f"id:              {item['id']}",
        f"phase:           {item['status']}",
        f"organisation:    {item['organisation']}"
        + (" (confidential)" if item["confidential"] else ""),
        f"contact:         {item['contact_email']}",
        f"services:        {', '.join(item['services'])}",
        f"functionalities: {', '.join(item['functionalities'])}",
        f"received:        {_day(item['received_at'])}",
        f"client id:       {item['client_id'] or '-'}",
    ]
    if item["plan"]:
        plan = item["plan"]
        lines.append(
            f"plan:            next update {_day(plan['next_update_at'])}, "
            f"live {_day(plan['live_at'])}, comments until {_day(plan['comment_due_at'])}"
        )
    lines += ["", "deadlines:"]
    for d in item["deadlines"]:
        state = (
            f"met {_day(d['met_at'])}" if d["met_at"] else "OVERDUE" if d["overdue"] else "open"
        )
        lines.append(f"  {d['label']:<40} {_day(d['due_at'])}  {state}")
    lines += ["", "log:"]
    for t in item.get("transitions") or []:
        step = t["event"] or f"{t['from_status'] or '-'} -> {t['to_status']}"
        reason = f": {t['reason']}" if t["reason"] else ""
        lines.append(f"  {_day(t['at'])}  {t['actor']:<10} {step}{reason}")
    return "\n".join(lines)


def _print_view(item: dict[str, Any]) -> None:
    print(f"{item['id']}: {item['status']}")


async def _run(args: Args, config: Config) -> int:
    token = _admin_token(config)
    base = args.url or config.base_url
    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        client = AdminClient(base, token, session)
        action: Callable[[AdminClient, Args, Config], Any] = args.admin_action
        await action(client, args, config)
    return 0


async def _requests_list(client: AdminClient, args: Args, config: Config) -> None:
    path = "/admin/v1/interop-requests?limit=500"
    if args.status:
        path += f"&status={args.status}"
    items = (await client.call("GET", path))["items"]
    if not items:
        print("no requests")
        return
    now = int(dt.datetime.now(dt.UTC).timestamp() * 1000)
    print(requests_table(items, now, WorkingDays(config.requests.holidays)))


async def _requests_show(client: AdminClient, args: Args, config: Config) -> None:
    print(show_request(await client.call("GET", f"/admin/v1/interop-requests/{args.id}")))


def _step(path: str, body: Callable[[Args], dict[str, Any]]) -> Any:
    async def action(client: AdminClient, args: Args, config: Config) -> None:
        url = f"/admin/v1/interop-requests/{args.id}/{path}"
        _print_view(await client.call("POST", url, body(args)))

    return action


def _drop_none(**fields: Any) -> dict[str, Any]:
    return {k: v for k, v in fields.items() if v is not None}


async def _providers_list(client: AdminClient, args: Args, config: Config) -> None:
    path = "/admin/v1/providers" + (f"?state={args.state}" if args.state else "")
    items = (await client.call("GET", path))["items"]
    if not items:
        print("no providers")
        return
    print(
        _table(
            ["CLIENT ID", "STATE", "ORGANISATION", "SERVICES"],
            [
                [p["client_id"], p["state"], p["organisation"], ",".join(p["services"])]
                for p in items
            ],
        )
    )


def _provider_state(verb: str) -> Any:
    async def action(client: AdminClient, args: Args, config: Config) -> None:
        view = await client.call(
            "POST", f"/admin/v1/providers/{args.client_id}/{verb}", _drop_none(reason=args.reason)
        )
        print(f"{view['client_id']}: {view['state']}")

    return action


async def _rotate(client: AdminClient, args: Args, config: Config) -> None:
    result = await client.call("POST", "/admin/v1/token-keys/rotate")
    print(f"signing with {result['kid']}; still published: {', '.join(result['retiring']) or '-'}")


def cmd_admin(args: Args) -> int:
    """Run one admin subcommand against the configured gateway."""
    try:
        config = load_config(args.config)
        return asyncio.run(_run(args, config))
    except UsageError as exc:
        print(f"dma-gateway admin: {exc}", file=sys.stderr)
        return USAGE
    except Refused as exc:
        problem = exc.problem
        field = f" (field {problem['field']})" if problem.get("field") else ""
        title = problem.get("title", "refused")
        print(f"dma-gateway admin: {exc.status} {title}: {exc}{field}", file=sys.stderr)
        return REFUSED
    except (aiohttp.ClientError, TimeoutError) as exc:
        print(f"dma-gateway admin: cannot reach the gateway: {exc}", file=sys.stderr)
        return UNREACHABLE


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `admin` and its subcommands to the top-level parser."""
    admin = sub.add_parser("admin", help="the gatekeeper's operations (requests, providers)")
    admin.add_argument("--url", help="the gateway's URL (default: the configured one)")
    admin.set_defaults(run=cmd_admin)
    groups = admin.add_subparsers(dest="admin_group", required=True, metavar="GROUP")

    requests = groups.add_parser("requests", help="interop requests")
    rsub = requests.add_subparsers(dest="admin_command", required=True, metavar="COMMAND")
    p = rsub.add_parser("list", help="requests, overdue first, with working days left")
    p.add_argument("--status", help="only requests in this phase")
    p.set_defaults(admin_action=_requests_list)
    p = rsub.add_parser("show", help="one request: plan, deadlines, log")
    p.add_argument("id")
    p.set_defaults(admin_action=_requests_show)
    p = rsub.add_parser("decide", help="approve or reject (with a reason) a received request")
    p.add_argument("id")
    p.add_argument("decision", choices=["approve", "reject"])
    p.add_argument("--reason")
    p.set_defaults(
        admin_action=_step("decision", lambda a: _drop_none(decision=a.decision, reason=a.reason))
    )
    p = rsub.add_parser("plan", help="commit to dates for the next update and going live")
    p.add_argument("id")
    p.add_argument("--next-update", required=True, help="YYYY-MM-DD")
    p.add_argument("--live", required=True, help="YYYY-MM-DD")
    p.add_argument("--note")
    p.set_defaults(
        admin_action=_step(
            "plan", lambda a: _drop_none(next_update=a.next_update, live=a.live, note=a.note)
        )
    )
    p = rsub.add_parser("extend", help="extend the Art. 7(5) deadline (Art. 7(6))")
    p.add_argument("id")
    p.add_argument("--until", required=True, help="YYYY-MM-DD")
    p.add_argument("--reason", required=True)
    p.set_defaults(admin_action=_step("extend", lambda a: {"until": a.until, "reason": a.reason}))
    p = rsub.add_parser("live", help="the requested functionalities are operational")
    p.add_argument("id")
    p.add_argument("--note")
    p.set_defaults(admin_action=_step("live", lambda a: _drop_none(note=a.note)))
    p = rsub.add_parser("review", help="uphold or revise a disputed step")
    p.add_argument("id")
    p.add_argument("outcome", choices=["upheld", "revised"])
    p.add_argument("--reason", required=True)
    p.set_defaults(
        admin_action=_step("review", lambda a: {"outcome": a.outcome, "reason": a.reason})
    )

    providers = groups.add_parser("providers", help="approved providers")
    psub = providers.add_subparsers(dest="admin_command", required=True, metavar="COMMAND")
    p = psub.add_parser("list", help="providers and their state")
    p.add_argument("--state", choices=["active", "suspended"])
    p.set_defaults(admin_action=_providers_list)
    for verb, help_ in (("suspend", "suspend a provider (Art. 7(9))"), ("resume", "let it in")):
        p = psub.add_parser(verb, help=help_)
        p.add_argument("client_id")
        p.add_argument("--reason")
        p.set_defaults(admin_action=_provider_state(verb))

    keys = groups.add_parser("token-keys", help="the keys that sign access tokens")
    ksub = keys.add_subparsers(dest="admin_command", required=True, metavar="COMMAND")
    p = ksub.add_parser("rotate", help="sign with a new key; old ones stay published a while")
    p.set_defaults(admin_action=_rotate)
