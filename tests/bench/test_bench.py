"""`dma-gateway bench`: the harness end to end (--quick), its load generators and wrk script.

Correctness only: no assertion here depends on how fast anything is.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from gateway.bench import loadgen, wrk
from gateway.bench.baseline import create_baseline
from tests.conftest import REPO

ROUND_FIELDS = {"requests", "accepted", "errors", "rps", "accepted_per_s", "p50_ms", "p99_ms"}


def run_bench(tmp_path: Path, *extra: str) -> tuple[dict[str, Any], str]:
    out = tmp_path / "bench.json"
    env = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
    env["PYTHONPATH"] = str(REPO)
    done = subprocess.run(
        [sys.executable, "-m", "gateway", "bench", "--quick", "--out", str(out), *extra],
        env=env, capture_output=True, text=True, timeout=120, cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return json.loads(out.read_text()), done.stdout


def test_quick_run_reports_every_figure(tmp_path: Path) -> None:
    # One PostgreSQL replica too where a server is at hand (CI); a schema of its own, dropped.
    postgres = os.environ.get("GATEWAY_TEST_POSTGRES_URL")
    report, stdout = run_bench(
        tmp_path, "--tool", "asyncio", *(("--postgres", postgres) if postgres else ())
    )
    assert report["machine"]["load_generator"] == "asyncio"
    assert len(report["rounds"]) == 1
    (first,) = report["rounds"]
    for side in ("baseline", "gateway"):
        assert first[side].keys() >= ROUND_FIELDS
        assert first[side]["requests"] > 0
    # Every message of the gateway round was accepted: onboarding and users worked for real.
    assert first["gateway"]["accepted"] == first["gateway"]["requests"] > 0
    assert first["ratio"] > 0
    assert set(report["median"]) >= {"baseline_rps", "gateway_accepted_per_s", "ratio",
                                     "gateway_p50_ms", "gateway_p99_ms"}  # fmt: skip
    e2e = report["end_to_end"]
    # Fresh ciphertext per message: every one decrypts on the platform side.
    assert e2e["delivered"] == e2e["accepted"] == e2e["messages"] == 100
    assert e2e["failed"] == 0 and e2e["delivered_per_s"] > 0
    memory = report["memory"]
    assert memory["accepted"] == 300
    assert memory["subscribers"] == 20
    assert memory["rss_mb_after_messages"] > 0 and memory["rss_mb_with_subscribers"] > 0
    assert report["gateway_exit_code"] == 0
    # The standalone topology (gateway with platforms = http, sandbox process) in the same
    # rounds: every message accepted, and end to end every one decrypted by the sandbox process.
    topologies = ["standalone", *(["postgres"] if postgres else [])]
    for name in topologies:
        assert first[name]["accepted"] == first[name]["requests"] > 0
        assert report["median"][name]["accepted_per_s"] > 0
        e2e = report[f"end_to_end_{name}"]
        assert e2e["delivered"] == e2e["accepted"] == e2e["messages"] == 100
    assert set(report["exit_codes"]) == {"gateway", *topologies}
    assert set(report["exit_codes"].values()) == {0}
    assert set(report["targets"]) == {
        "ratio_at_least_0.5", "p99_at_most_20ms", "end_to_end_at_least_3000_per_s",
        "rss_after_messages_at_most_150mb", "rss_with_subscribers_at_most_200mb",
        "standalone_ratio_at_least_0.5", "standalone_p99_at_most_20ms",
        "standalone_end_to_end_at_least_3000_per_s",
        *(["postgres_cost_at_most_1.5x_sqlite"] if postgres else []),
    }  # fmt: skip
    assert "median" in stdout and "targets:" in stdout and "standalone: median" in stdout


@pytest.mark.skipif(wrk.available() is None, reason="wrk is not on PATH")
def test_quick_run_with_wrk(tmp_path: Path) -> None:
    report, _ = run_bench(
        tmp_path, "--tool", "wrk", "--messages", "0", "--e2e-messages", "0", "--no-standalone"
    )
    assert report["machine"]["load_generator"] == "wrk"
    gateway = report["rounds"][0]["gateway"]
    assert gateway["tool"] == "wrk"
    assert gateway["accepted"] == gateway["requests"] > 0
    assert "memory" not in report and "end_to_end" not in report


async def test_loadgen_counts_statuses_and_latencies(aiohttp_server: Any) -> None:
    server = await aiohttp_server(create_baseline())
    bodies = iter([b'{"n": 1}', b"not json"] * 50)
    result = await loadgen.drive(
        str(server.make_url("/v1/messages")), lambda c, s: next(bodies), connections=2, total=40
    )
    assert result.requests == 40
    assert result.statuses == {"202": 20, "400": 20}
    assert result.accepted == 20 and result.errors == 20
    assert 0 < result.p50_ms <= result.p99_ms <= result.max_ms


def test_wrk_script_makes_unique_ids_and_parse_reads_done() -> None:
    lua = wrk.script([f'{{"id":"{wrk.ID_SLOT}"}}'], "run1", {"Authorization": "Bearer t"})
    assert '[==[{"id":"]==]' in lua and "counter = counter + 1" in lua
    assert "wrk.headers[ [==[Authorization]==] ] = [==[Bearer t]==]" in lua
    with pytest.raises(ValueError):
        wrk.script(['{"id": 1}'], "run1", {})
    line = (
        'WRKJSON {"requests":100,"accepted":90,"duration_us":2000000,"status_errors":10,'
        '"socket_errors":0,"p50_us":1500,"p90_us":3000,"p99_us":9000,"max_us":12000}'
    )
    result = wrk.parse(f"Running 2s test\n{line}\n", 8)
    assert (result.rps, result.accepted_per_s, result.errors) == (50.0, 45.0, 10)
    assert (result.p50_ms, result.p99_ms) == (1.5, 9.0)
    with pytest.raises(RuntimeError):
        wrk.parse("PANIC: lua error", 8)


def test_percentile_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert loadgen.percentile(values, 0.5) == 50.0
    assert loadgen.percentile(values, 0.99) == 99.0
    assert loadgen.percentile([], 0.99) == 0.0
