"""The `dma-gateway` command line (DESIGN §4.1)."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Callable, Sequence

from gateway import __version__, audit_cli, bench
from gateway.config import Config, ConfigError, load_config
from gateway.store.base import StoreError

Command = Callable[[argparse.Namespace], int]


def _config(args: argparse.Namespace) -> Config:
    return load_config(args.config)


def cmd_serve(args: argparse.Namespace) -> int:
    """Run the gateway until SIGINT/SIGTERM."""
    from gateway import secretfiles
    from gateway.app import create_app
    from gateway.http.server import run as serve_app
    from gateway.logs import configure_logging
    from gateway.store import redact_url

    config = _config(args)
    configure_logging(config.log.format, config.log.level)
    _, token_path, created = secretfiles.admin_token(config.data_path, config.admin_token)
    try:
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    except ImportError:
        pass
    print(f"dma-gateway {__version__} serving on {config.base_url}", flush=True)
    print(f"database: {redact_url(config.database_url)}", flush=True)
    if token_path is not None:
        state = "generated" if created else "kept"
        print(f"admin token ({state}): {token_path}", flush=True)
    # As web.run_app, but unparsable requests also get problem+json (gateway.http.server).
    serve_app(
        create_app(config),
        host=config.server.host,
        port=config.server.port,
        shutdown_timeout=config.server.shutdown_timeout_s,
    )
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    """Run the end-to-end encrypted demo scenario in one process."""
    from gateway.demo import main as demo_main

    return demo_main()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dma-gateway", description="DMA Art. 7 messaging interoperability gateway"
    )
    parser.add_argument("--version", action="version", version=f"dma-gateway {__version__}")
    parser.add_argument("--config", help="TOML configuration file (GATEWAY_* variables win)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    serve = sub.add_parser("serve", help="run the gateway")
    serve.set_defaults(run=cmd_serve)
    demo = sub.add_parser("demo", help="a third-party user and a sandbox WhatsApp user, E2EE")
    demo.set_defaults(run=cmd_demo)
    audit_cli.register(sub)
    bench.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script; exit 2 with one line on a configuration error."""
    parser = build_parser()
    args = parser.parse_args(argv)
    run: Command = args.run
    try:
        return run(args)
    except ConfigError as exc:
        print(f"dma-gateway: configuration error: {exc}", file=sys.stderr)
        return 2
    except StoreError as exc:  # unreachable database, schema newer than the code, ...
        print(f"dma-gateway: storage error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
