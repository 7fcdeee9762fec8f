"""The `dma-gateway` command line (DESIGN §4.1)."""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import sys
from collections.abc import Callable, Sequence

from gateway import __version__, admin_cli, audit_cli, bench
from gateway.config import Config, ConfigError, load_config, parse_listen
from gateway.store.base import StoreError

Command = Callable[[argparse.Namespace], int]


def _config(args: argparse.Namespace) -> Config:
    env = dict(os.environ)
    # Command-line options win over the file and the environment.
    for option, name in (("host", "GATEWAY_HOST"), ("port", "GATEWAY_PORT")):
        value = getattr(args, option, None)
        if value is not None:
            env[name] = str(value)
    return load_config(args.config, env)


def cmd_serve(args: argparse.Namespace) -> int:
    """Run the gateway until SIGINT/SIGTERM."""
    from gateway import secretfiles
    from gateway.app import create_app
    from gateway.http.server import run as serve_app
    from gateway.logs import configure_logging
    from gateway.store import redact_url

    config = _config(args)
    configure_logging(config.log.format, config.log.level)
    try:
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    except ImportError:
        pass
    # One clear line before anything else is printed (a port in use, a foreign address).
    where = f"{config.server.host}:{config.server.port}"
    try:
        sockets = listen(config.server.host, config.server.port)
        metrics_sockets = None
        if config.metrics.listen:
            where = f"{config.metrics.listen} (metrics.listen)"
            metrics_sockets = listen(*parse_listen(config.metrics.listen))
    except OSError as exc:
        print(f"dma-gateway: cannot listen on {where}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    _, token_path, created = secretfiles.admin_token(config.data_path, config.admin_token)
    print(f"dma-gateway {__version__} serving on {config.base_url}", flush=True)
    print(f"database: {redact_url(config.database_url)}", flush=True)
    if token_path is not None:
        state = "generated" if created else "kept"
        print(f"admin token ({state}): {token_path}", flush=True)
    # As web.run_app, but unparsable requests also get problem+json (gateway.http.server).
    serve_app(
        create_app(config, metrics_sockets=metrics_sockets),
        sockets=sockets,
        shutdown_timeout=config.server.shutdown_timeout_s,
    )
    return 0


def listen(host: str, port: int) -> list[socket.socket]:
    """Bound listening sockets for every address of `host` (as aiohttp would bind them)."""
    infos = socket.getaddrinfo(
        host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )
    sockets: list[socket.socket] = []
    try:
        for family, _, _, _, address in dict.fromkeys(infos):
            sock = socket.create_server(address, family=family, backlog=128)
            sock.setblocking(False)
            sockets.append(sock)
    except OSError:
        for sock in sockets:
            sock.close()
        raise
    return sockets


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
    serve.add_argument("--host", help="listen address (GATEWAY_HOST; default 127.0.0.1)")
    serve.add_argument("--port", help="listen port (GATEWAY_PORT; default 8080)")
    serve.set_defaults(run=cmd_serve)
    demo = sub.add_parser("demo", help="a third-party user and a sandbox WhatsApp user, E2EE")
    demo.set_defaults(run=cmd_demo)
    audit_cli.register(sub)
    admin_cli.register(sub)
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
