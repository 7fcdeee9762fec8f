"""The `dma-gateway` command line (DESIGN §4.1)."""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import sys
from collections.abc import Callable, Sequence

from gateway import __version__, admin_cli, audit_cli, bench, kt_cli
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
    banner(
        config,
        f"dma-gateway {__version__} serving on {config.base_url}",
        f"database: {redact_url(config.database_url)}",
    )
    # As web.run_app, but unparsable requests also get problem+json (gateway.http.server).
    serve_app(
        create_app(config, metrics_sockets=metrics_sockets),
        sockets=sockets,
        shutdown_timeout=config.server.shutdown_timeout_s,
    )
    return 0


def banner(config: Config, *lines: str) -> None:
    """The lines a server prints as it starts, then where its admin token is, if in a file."""
    from gateway import secretfiles

    _, token_path, created = secretfiles.admin_token(config.data_path, config.admin_token)
    for line in lines:
        print(line, flush=True)
    if token_path is not None:
        state = "generated" if created else "kept"
        print(f"admin token ({state}): {token_path}", flush=True)


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


def cmd_sandbox_serve(args: argparse.Namespace) -> int:
    """Run the sandbox platforms as a process of their own, talking to a gateway (DESIGN §4.8)."""
    from gateway.http.sandbox_server import DATABASE, create_sandbox_app
    from gateway.http.server import run as serve_app
    from gateway.logs import configure_logging

    env = dict(os.environ)
    if args.data_dir is not None:
        env["GATEWAY_DATA_DIR"] = args.data_dir
    config = load_config(args.config, env)
    if not config.http_platform.app_secret:
        raise ConfigError(
            "http_platform.app_secret", "the webhook signing secret is required (both sides)"
        )
    if not args.gateway.startswith(("http://", "https://")):
        raise ConfigError("--gateway", "must be an http:// or https:// URL")
    configure_logging(config.log.format, config.log.level)
    try:
        sockets = listen(args.host, args.port)
    except OSError as exc:
        where = f"{args.host}:{args.port}"
        print(f"dma-gateway: cannot listen on {where}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    config.data_path.mkdir(parents=True, exist_ok=True)
    banner(
        config,
        f"dma-gateway {__version__} sandbox serving on http://{args.host}:{args.port}",
        f"gateway: {args.gateway}",
        f"database: sqlite:///{config.data_path / DATABASE}",
    )
    serve_app(
        create_sandbox_app(config, args.gateway),
        sockets=sockets,
        shutdown_timeout=config.server.shutdown_timeout_s,
    )
    return 0


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
    sandbox = sub.add_parser("sandbox", help="the sandbox platforms as a process of their own")
    sandbox_sub = sandbox.add_subparsers(dest="sandbox_command", required=True, metavar="COMMAND")
    sandbox_serve = sandbox_sub.add_parser(
        "serve", help="serve /sandbox/v1/* and speak the http platform protocol to a gateway"
    )
    sandbox_serve.add_argument("--port", type=int, required=True, help="listen port")
    sandbox_serve.add_argument("--host", default="127.0.0.1", help="listen address")
    sandbox_serve.add_argument("--gateway", required=True, help="the gateway's base URL")
    sandbox_serve.add_argument(
        "--data-dir", help="its own data dir (GATEWAY_DATA_DIR; default var)"
    )
    sandbox_serve.set_defaults(run=cmd_sandbox_serve)
    audit_cli.register(sub)
    kt_cli.register(sub)
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
