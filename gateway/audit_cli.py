"""`dma-gateway audit verify|export|report|public-key` (DESIGN §4.7)."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import IO, TYPE_CHECKING, TypeVar

from gateway.config import Config, load_config

if TYPE_CHECKING:
    from gateway.service.audit.verify import Keys
    from gateway.store import Store

T = TypeVar("T")

EXIT_INTACT, EXIT_TAMPERED, EXIT_USAGE = 0, 1, 2


class UsageError(Exception):
    """Bad arguments or an unreachable source: exit 2 with one line."""


def _config(args: argparse.Namespace) -> Config:
    return load_config(args.config)


def _database(args: argparse.Namespace) -> str:
    return args.database or _config(args).database_url


def _on_store(args: argparse.Namespace, work: Callable[[Store], Awaitable[T]]) -> T:
    """Run `work` on the database opened read only (works while the gateway runs)."""

    async def run() -> T:
        store = await _open(_database(args))
        try:
            return await work(store)
        finally:
            await store.close()

    return asyncio.run(run())


async def _open(url: str) -> Store:
    from gateway.store import StoreError, open_store

    try:
        return await open_store(url, readonly=True)
    except StoreError as exc:
        raise UsageError(f"cannot open the database: {exc}") from None


def _keys(args: argparse.Namespace, *, from_data_dir: bool) -> Keys | None:
    from gateway.service.audit.checkpoints import keyring, load_signer, parse_public_key

    keys = []
    for name in args.public_key or []:
        try:
            keys.append(parse_public_key(Path(name).read_text(encoding="utf-8")))
        except (OSError, ValueError) as exc:
            raise UsageError(f"--public-key {name}: {exc}") from None
    if keys:
        return keyring(keys)
    if not from_data_dir:
        return None
    signer = load_signer(_config(args).data_path, create=False)
    if signer is None:
        raise UsageError("no public key: pass --public-key FILE (see `audit public-key`)")
    return keyring([signer.public])


def cmd_verify(args: argparse.Namespace) -> int:
    """Verify the live database (read only) or an export file; exit 0 only when intact."""
    from gateway.service.audit.verify import verify_database, verify_export

    if args.export:
        path = Path(args.export)
        if not path.is_file():
            raise UsageError(f"--export {path}: no such file")
        outcome = verify_export(path, _keys(args, from_data_dir=False))
    else:
        keys = _keys(args, from_data_dir=True)
        assert keys is not None  # from the data dir or a usage error

        outcome = _on_store(args, lambda store: verify_database(store, keys))
    print(outcome.render(), file=sys.stdout if outcome.ok else sys.stderr)
    return EXIT_INTACT if outcome.ok else EXIT_TAMPERED


def cmd_export(args: argparse.Namespace) -> int:
    """Write the export (JSON lines), sealed when the signing key is at hand."""
    from gateway.service.audit.checkpoints import load_signer
    from gateway.service.audit.export import export_lines, parse_instant

    try:
        start = parse_instant(args.start) if args.start else None
        end = parse_instant(args.end) if args.end else None
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    signer = load_signer(_config(args).data_path, create=False)
    if signer is None:
        print("note: no signing key in the data dir, the export is not sealed", file=sys.stderr)

    def write_to(out: IO[bytes]) -> None:
        async def work(store: Store) -> None:
            async for chunk in export_lines(store, start_ms=start, end_ms=end, signer=signer):
                out.write(chunk)

        _on_store(args, work)

    if args.out == "-":
        write_to(sys.stdout.buffer)
    else:
        with open(args.out, "wb") as out:
            write_to(out)
        print(f"exported to {args.out}")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    """Write the compliance report as self-contained HTML or JSON (by --out's suffix)."""
    from gateway.service.audit.report import build_report, render_json
    from gateway.service.audit.report_html import render_html

    out = Path(args.out)
    if out.suffix not in (".html", ".json"):
        raise UsageError("--out must end in .html or .json")
    config = _config(args)
    from gateway.service.audit.export import parse_instant

    try:
        start = parse_instant(args.start) if args.start else None
        end = parse_instant(args.end) if args.end else None
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    if end is not None and len(args.end.strip()) == 10:  # a date: up to the end of that day
        end += 86_400_000 - 1
    report = _on_store(args, lambda store: build_report(store, config, start_ms=start, end_ms=end))
    out.write_text(render_html(report) if out.suffix == ".html" else render_json(report))
    print(f"report written to {out}")
    return 0


def cmd_public_key(args: argparse.Namespace) -> int:
    """Print the checkpoint public key (base64 of the raw key, or PEM)."""
    from gateway.service.audit.checkpoints import load_signer

    data_dir = _config(args).data_path
    signer = load_signer(data_dir, create=False)
    if signer is None:
        raise UsageError(f"no audit signing key under {data_dir} (start the gateway once)")
    print(signer.public_pem().strip() if args.pem else signer.public_b64)
    return 0


def guarded(
    command: Callable[[argparse.Namespace], int], group: str = "audit"
) -> Callable[[argparse.Namespace], int]:
    """`command`, a UsageError becoming one line on stderr and exit 2."""

    def run(args: argparse.Namespace) -> int:
        try:
            return command(args)
        except UsageError as exc:
            print(f"dma-gateway {group}: {exc}", file=sys.stderr)
            return EXIT_USAGE

    return run


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `audit` and its subcommands to the top-level parser."""
    audit = sub.add_parser("audit", help="verify, export and report on the audit log")
    commands = audit.add_subparsers(dest="audit_command", required=True, metavar="SUBCOMMAND")

    verify = commands.add_parser("verify", help="check the hash chain and signed checkpoints")
    source = verify.add_mutually_exclusive_group()
    source.add_argument("--database", help="database URL (default: the configured one)")
    source.add_argument("--export", help="an export file (JSON lines), checked offline")
    verify.add_argument(
        "--public-key",
        action="append",
        help="published checkpoint key (base64 or PEM); repeat for rotated keys",
    )
    verify.set_defaults(run=guarded(cmd_verify))

    export = commands.add_parser("export", help="write records and checkpoints as JSON lines")
    export.add_argument("--out", required=True, help="output file (- for stdout)")
    export.add_argument("--from", dest="start", help="ISO 8601 date or date-time, inclusive")
    export.add_argument("--to", dest="end", help="ISO 8601 date or date-time, inclusive")
    export.add_argument("--database", help="database URL (default: the configured one)")
    export.set_defaults(run=guarded(cmd_export))

    report = commands.add_parser("report", help="compliance report as HTML or JSON")
    report.add_argument("--out", required=True, help="FILE.html or FILE.json")
    report.add_argument("--from", dest="start", help="ISO 8601 date or date-time, inclusive")
    report.add_argument("--to", dest="end", help="ISO 8601 date or date-time, inclusive")
    report.add_argument("--database", help="database URL (default: the configured one)")
    report.set_defaults(run=guarded(cmd_report))

    public_key = commands.add_parser("public-key", help="print the checkpoint public key")
    public_key.add_argument("--pem", action="store_true", help="PEM instead of base64")
    public_key.set_defaults(run=guarded(cmd_public_key))
