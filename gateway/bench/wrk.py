"""Drive a server with `wrk` (when on PATH): a Lua script makes each body with a unique id."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path

from gateway.bench.loadgen import LoadResult

ID_SLOT = "__BENCH_ID__"
_MARK = "WRKJSON "

_SCRIPT = """
local templates = {%(templates)s}
local run = %(run)s
counter = 0
accepted = 0
local threads = {}

function setup(thread)
  table.insert(threads, thread)
  thread:set("tid", #threads)
end

function init(args)
  wrk.method = "POST"
%(headers)s
end

function request()
  counter = counter + 1
  local t = templates[(counter %% #templates) + 1]
  return wrk.format(nil, nil, nil, t[1] .. run .. "-" .. tid .. "-" .. counter .. t[2])
end

function response(status, headers, body)
  if status >= 200 and status < 300 then accepted = accepted + 1 end
end

function done(summary, latency, requests)
  local ok = 0
  for _, thread in ipairs(threads) do ok = ok + thread:get("accepted") end
  local e = summary.errors
  io.write(string.format(
    '%(mark)s{"requests":%%d,"accepted":%%d,"duration_us":%%d,"status_errors":%%d,' ..
    '"socket_errors":%%d,"p50_us":%%d,"p90_us":%%d,"p99_us":%%d,"max_us":%%d}\\n',
    summary.requests, ok, summary.duration, e.status, e.connect + e.read + e.write + e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max))
end
"""


def available() -> str | None:
    """The wrk executable, or None."""
    return shutil.which("wrk")


def _lua(text: str) -> str:
    # A long bracket string: JSON never contains "]==]".
    assert "]==]" not in text
    return f"[==[{text}]==]"


def script(templates: Sequence[str], run: str, headers: Mapping[str, str]) -> str:
    """The Lua script: bodies round-robin over `templates`, ID_SLOT replaced by a unique id."""
    pairs = []
    for template in templates:
        prefix, slot, suffix = template.partition(ID_SLOT)
        if not slot:
            raise ValueError(f"template without {ID_SLOT}")
        pairs.append(f"{{{_lua(prefix)}, {_lua(suffix)}}}")
    header_lines = "\n".join(
        f"  wrk.headers[ {_lua(k)} ] = {_lua(v)}"
        for k, v in {"Content-Type": "application/json", **headers}.items()
    )
    return _SCRIPT % {
        "templates": ", ".join(pairs),
        "run": _lua(run),
        "headers": header_lines,
        "mark": _MARK,
    }


def parse(output: str, connections: int) -> LoadResult:
    """The LoadResult of wrk's output (the line our done() printed)."""
    for line in output.splitlines():
        if line.startswith(_MARK):
            raw = json.loads(line[len(_MARK) :])
            break
    else:
        raise RuntimeError(f"wrk printed no result: {output[-2000:]}")
    elapsed = max(raw["duration_us"] / 1e6, 1e-9)
    requests, accepted = raw["requests"], raw["accepted"]
    return LoadResult(
        tool="wrk",
        connections=connections,
        duration_s=round(elapsed, 3),
        requests=requests,
        accepted=accepted,
        errors=requests - accepted + raw["socket_errors"],
        rps=round(requests / elapsed, 1),
        accepted_per_s=round(accepted / elapsed, 1),
        p50_ms=raw["p50_us"] / 1000,
        p90_ms=raw["p90_us"] / 1000,
        p99_ms=raw["p99_us"] / 1000,
        max_ms=raw["max_us"] / 1000,
        statuses={"non_2xx": raw["status_errors"], "socket_errors": raw["socket_errors"]},
    )


async def drive(
    url: str,
    templates: Sequence[str],
    *,
    run: str,
    connections: int,
    duration_s: float,
    headers: Mapping[str, str],
    cpu: int | None,
) -> LoadResult:
    """Run wrk (one thread, on `cpu`) against `url` for `duration_s`."""
    exe = available()
    if exe is None:
        raise RuntimeError("wrk is not on PATH")
    with tempfile.TemporaryDirectory(prefix="bench-wrk-") as tmp:
        lua = Path(tmp) / "bench.lua"
        lua.write_text(script(templates, run, headers))
        argv = [
            exe, "-t1", f"-c{connections}", f"-d{max(1, round(duration_s))}s",
            "--timeout", "10s", "-s", str(lua), url,
        ]  # fmt: skip
        proc = await asyncio.create_subprocess_exec(
            *argv,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            preexec_fn=(lambda: os.sched_setaffinity(0, {cpu})) if cpu is not None else None,
        )
        out, _ = await proc.communicate()
    return parse(out.decode(errors="replace"), connections)
