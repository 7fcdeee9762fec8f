"""Text messages per second translated both ways, neutral -> WhatsApp webhook -> neutral.

The webhook goes through its JSON bytes in between, as it travels on the wire. One core:

    .venv/bin/python bench/translate_bench.py [--seconds 1] [--rounds 7]
"""

from __future__ import annotations

import argparse
import statistics
import time

from gateway.content import MimiContent, SinglePart
from gateway.translate import Envelope, MemoryUserDirectory, NeutralEvent
from gateway.translate import whatsapp as wa

SENDER = "mimi://client-7/u/alice"
RECIPIENT = "mimi://whatsapp/u/4915112345678"


def _event(i: int) -> NeutralEvent:
    return NeutralEvent(
        envelope=Envelope(
            id=f"msg-{i}", sender=SENDER, recipient=RECIPIENT, sent_at=1_700_000_000_000
        ),
        content=MimiContent(
            nested_part=SinglePart(content_type="text/plain;charset=utf-8", content=b"hi there")
        ),
        sender_name="Alice",
    )


def run(seconds: float) -> float:
    """Translate until `seconds` have passed; return messages per second."""
    users = MemoryUserDirectory()
    users.remember("whatsapp", SENDER)
    events = [_event(i) for i in range(1000)]
    to_native, to_neutral = wa.encode_webhook, wa.webhook_to_neutral
    done = 0
    start = time.perf_counter()
    deadline = start + seconds
    while time.perf_counter() < deadline:
        for event in events:
            (back,) = to_neutral(to_native(event), users=users)
        done += len(events)
    elapsed = time.perf_counter() - start
    assert back.envelope.sender == SENDER and back.content is not None
    return done / elapsed


def main() -> None:
    """Print the best and the median rate over several rounds (shared machines are noisy)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=1.0, help="length of one round")
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    rates = sorted(run(args.seconds) for _ in range(args.rounds))
    print(
        f"{rates[-1]:,.0f} messages/s best, {statistics.median(rates):,.0f} median "
        f"of {args.rounds} rounds (text, neutral -> WhatsApp webhook JSON -> neutral, 1 core)"
    )


if __name__ == "__main__":
    main()
