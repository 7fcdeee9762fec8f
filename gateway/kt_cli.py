"""`dma-gateway kt verify|export|public-key|rotate-key` (DESIGN §4.12).

`kt verify --url URL --state FILE` is for a third party or an auditor watching a gateway over
time: each run fetches the signed head, checks it against the log's published key and, with the
RFC 9162 consistency proof, that it extends the last head kept in FILE (JSON lines, one head a
run), then keeps it. `kt verify --export FILE` checks an exported log offline (and, with
`--heads FILE`, heads kept over time against it). Exit 0 when intact, 1 when not, 2 on bad usage.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Callable
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import msgspec

from gateway.audit_cli import UsageError, guarded
from gateway.config import Config, load_config

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    from gateway.crypto.transparency import Head

EXIT_INTACT, EXIT_TAMPERED = 0, 1


def _config(args: argparse.Namespace) -> Config:
    return load_config(args.config)


def _pinned_keys(args: argparse.Namespace) -> list[str]:
    from gateway.crypto.transparency import public_key_from_b64

    texts = []
    for name in args.public_key or []:
        try:
            text = Path(name).read_text(encoding="utf-8").strip()
            public_key_from_b64(text)
        except (OSError, ValueError) as exc:
            raise UsageError(f"--public-key {name}: {exc}") from None
        texts.append(text)
    return texts


def _keyring(texts: list[str]) -> dict[str, Ed25519PublicKey]:
    from gateway.crypto.transparency import keyring, public_key_from_b64

    try:
        return keyring([public_key_from_b64(t) for t in texts])
    except ValueError as exc:
        raise UsageError(f"unusable public key: {exc}") from None


def _read_heads(path: Path) -> list[Head]:
    from gateway.crypto.transparency import Head

    if not path.exists():
        return []
    try:
        lines = path.read_bytes().splitlines()
        return [msgspec.json.decode(line, type=Head) for line in lines if line.strip()]
    except (OSError, msgspec.DecodeError) as exc:
        raise UsageError(f"{path}: not a file of kept heads: {exc}") from None


def cmd_verify(args: argparse.Namespace) -> int:
    """Verify an export offline, or the live log's newest head against the heads kept."""
    if args.export:
        outcome = _verify_export(args)
        print(outcome.render(), file=sys.stdout if outcome.ok else sys.stderr)
        return EXIT_INTACT if outcome.ok else EXIT_TAMPERED
    if not args.url or not args.state:
        raise UsageError("give --export FILE, or --url URL with --state FILE")
    problem, head = asyncio.run(_verify_url(args.url.rstrip("/"), Path(args.state), args))
    if problem is not None:
        print(f"key transparency log NOT intact: {problem}", file=sys.stderr)
        return EXIT_TAMPERED
    assert head is not None
    print(f"key transparency head of {head.tree_size} leaves verified and kept in {args.state}")
    return EXIT_INTACT


def _verify_export(args: argparse.Namespace) -> Any:
    from gateway.service.transparency_verify import verify_export

    path = Path(args.export)
    try:
        lines = path.read_bytes().splitlines()
    except OSError as exc:
        raise UsageError(f"--export {path}: {exc.strerror or exc}") from None
    texts = _pinned_keys(args)
    if not texts:
        # Keys named in the export itself only show the file is self-consistent.
        header = msgspec.json.decode(lines[0]) if lines else {}
        texts = list(header.get("public_keys", [])) if isinstance(header, dict) else []
        print("note: checking with the keys the export names; pin them with --public-key",
              file=sys.stderr)  # fmt: skip
    kept = _read_heads(Path(args.heads)) if args.heads else []
    return verify_export(lines, _keyring(texts), kept_heads=kept)


async def _verify_url(
    base: str, state: Path, args: argparse.Namespace
) -> tuple[str | None, Head | None]:
    import aiohttp

    from gateway.crypto.transparency import Head
    from gateway.service.transparency_verify import check_new_head

    kept = _read_heads(state)
    last = kept[-1] if kept else None
    try:
        async with aiohttp.ClientSession(raise_for_status=True) as http:
            texts = _pinned_keys(args)
            if not texts:
                async with http.get(f"{base}/.well-known/dma-interop") as r:
                    kt = (await r.json()).get("key_transparency") or {}
                texts = [kt.get("public_key", ""), *kt.get("previous_public_keys", [])]
            async with http.get(f"{base}/v1/key-transparency/head") as r:
                head = msgspec.convert(await r.json(), Head)
            proof: list[str] = []
            if last is not None and last.tree_size < head.tree_size:
                params = {"from": str(last.tree_size), "to": str(head.tree_size)}
                url = f"{base}/v1/key-transparency/consistency"
                async with http.get(url, params=params) as r:
                    proof = list((await r.json())["proof"])
    except (aiohttp.ClientError, msgspec.ValidationError, KeyError, ValueError) as exc:
        raise UsageError(f"cannot read the log at {base}: {exc}") from None
    problem = check_new_head(last, head, proof, _keyring([t for t in texts if t]))
    if problem is None and (last is None or head != last):
        with state.open("ab") as out:
            out.write(msgspec.json.encode(head) + b"\n")
    return problem, head


def cmd_export(args: argparse.Namespace) -> int:
    """Write the whole log (leaves and signed heads) as JSON lines, verifiable offline."""
    from gateway.service.transparency import load_head_signer, retired_public_keys
    from gateway.service.transparency_verify import export_lines
    from gateway.store import StoreError, open_store

    config = _config(args)
    keys: list[str] = []
    if (config.data_path / "kt-signing.key").exists():
        keys = [load_head_signer(config.data_path).public_b64]
    keys += retired_public_keys(config.data_path)

    async def run(out: IO[bytes]) -> None:
        try:
            store = await open_store(args.database or config.database_url, readonly=True)
        except StoreError as exc:
            raise UsageError(f"cannot open the database: {exc}") from None
        try:
            async for chunk in export_lines(store, keys):
                out.write(chunk)
        finally:
            await store.close()

    with open(args.out, "wb") as out:
        asyncio.run(run(out))
    print(f"exported to {args.out}")
    return 0


def cmd_public_key(args: argparse.Namespace) -> int:
    """Print the head signing public key (base64 of the raw 32 bytes)."""
    from gateway.service.transparency import KEY_FILE, load_head_signer

    data_dir = _config(args).data_path
    if not (data_dir / KEY_FILE).exists():
        raise UsageError(f"no key transparency key under {data_dir} (start the gateway once)")
    print(load_head_signer(data_dir).public_b64)
    return 0


def cmd_rotate_key(args: argparse.Namespace) -> int:
    """Retire the head signing key (its public half stays published) and make a new one."""
    from gateway.service.transparency import rotate_key

    old, new = rotate_key(_config(args).data_path)
    print(f"retired key {old}; new key {new}: restart every replica to sign with it")
    return 0


def _guarded(command: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    return guarded(command, "kt")


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `kt` and its subcommands to the top-level parser."""
    kt = sub.add_parser("kt", help="verify and export the key transparency log")
    commands = kt.add_subparsers(dest="kt_command", required=True, metavar="SUBCOMMAND")

    verify = commands.add_parser("verify", help="check heads over time or an exported log")
    verify.add_argument("--url", help="the gateway's base URL (with --state)")
    verify.add_argument("--state", help="JSON lines of the heads kept from earlier runs")
    verify.add_argument("--export", help="an export file (JSON lines), checked offline")
    verify.add_argument("--heads", help="with --export: heads kept over time to hold against it")
    verify.add_argument(
        "--public-key",
        action="append",
        help="file with a published head key (base64); repeat for rotated keys",
    )
    verify.set_defaults(run=_guarded(cmd_verify))

    export = commands.add_parser("export", help="write leaves and signed heads as JSON lines")
    export.add_argument("--out", required=True, help="output file")
    export.add_argument("--database", help="database URL (default: the configured one)")
    export.set_defaults(run=_guarded(cmd_export))

    public_key = commands.add_parser("public-key", help="print the head signing public key")
    public_key.set_defaults(run=_guarded(cmd_public_key))

    rotate = commands.add_parser("rotate-key", help="retire the head key and make a new one")
    rotate.set_defaults(run=_guarded(cmd_rotate_key))
