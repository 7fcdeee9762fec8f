"""Audit verification speed: build N records (default 200 000) with a checkpoint every 1 000,
then time `verify` on the database and on an export of it.

    python bench/audit_verify_bench.py [--records N] [--dir DIR]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gateway.service.audit.chain import write_checkpoint
from gateway.service.audit.checkpoints import keyring, load_signer
from gateway.service.audit.export import export_lines
from gateway.service.audit.log import AuditLog
from gateway.service.audit.pseudonym import load_pseudonymizer
from gateway.service.audit.verify import verify_database, verify_export
from gateway.service.principal import Principal
from gateway.store import Tx, open_store

BATCH = 5000
CHECKPOINT_EVERY = 1000
PROVIDER = Principal(kind="provider", client_id="bench")


async def build(data_dir: Path, url: str, records: int) -> None:
    signer = load_signer(data_dir)
    assert signer is not None
    store = await open_store(url)
    log = AuditLog(store, chain_id="main", pseudonymize=load_pseudonymizer(data_dir))

    async def batch(tx: Tx, start: int, count: int) -> None:
        for i in range(start, start + count):
            await log.event_in(
                tx,
                action="message.deliver",
                actor=PROVIDER,
                subjects=[f"mimi://whatsapp/u/49151{i:07d}", f"mimi://bench/u/{i}"],
                attrs={"service": "whatsapp", "kind": "text", "direction": "to_platform"},
                request_id=f"req-{i:08x}",
                status=200,
            )
            if i % CHECKPOINT_EVERY == 0:
                await write_checkpoint(tx, "main", signer)

    try:
        for start in range(1, records + 1, BATCH):
            count = min(BATCH, records + 1 - start)
            await store.write("bench_fill", lambda tx, s=start, c=count: batch(tx, s, c))
    finally:
        await store.close()


def report(source: str, records: int, started: float, cpu: float) -> None:
    """Wall-clock and CPU rates: on a shared machine the CPU figure is the steadier one."""
    wall, cpu = time.perf_counter() - started, time.process_time() - cpu
    print(
        f"verify ({source}): {records} records in {wall:.2f} s = {records / wall:,.0f} "
        f"records/s wall-clock, {records / cpu:,.0f} records/s of CPU time"
    )


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--records", type=int, default=200_000)
    parser.add_argument("--dir", help="work directory (default: a temporary one)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        data_dir = Path(args.dir or tmp)
        url = f"sqlite:///{data_dir / 'bench.db'}"
        started = time.perf_counter()
        await build(data_dir, url, args.records)
        print(f"built {args.records} records in {time.perf_counter() - started:.1f} s")
        signer = load_signer(data_dir)
        assert signer is not None
        keys = keyring([signer.public])

        store = await open_store(url, readonly=True)
        started, cpu = time.perf_counter(), time.process_time()
        outcome = await verify_database(store, keys)
        report("database", outcome.records, started, cpu)
        assert outcome.ok, outcome.render()
        export = data_dir / "bench.jsonl"
        started = time.perf_counter()
        with export.open("wb") as out:
            async for chunk in export_lines(store, signer=signer):
                out.write(chunk)
        elapsed = time.perf_counter() - started
        print(f"export: {export.stat().st_size / 1e6:.0f} MB in {elapsed:.2f} s")
        await store.close()

        started, cpu = time.perf_counter(), time.process_time()
        outcome = verify_export(export, keys)
        report("export", outcome.records, started, cpu)
        assert outcome.ok, outcome.render()


if __name__ == "__main__":
    asyncio.run(main())
