"""EventQueue.subscribe and sweep: idle event sockets are woken without a task of their own."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from gateway.service.event_types import TypingEvent
from gateway.service.events import EventQueue
from gateway.store import Store, open_store


@pytest.fixture
async def store(store_url: str) -> AsyncIterator[Store]:
    opened = await open_store(store_url, pool_size=4)
    yield opened
    await opened.close()


def typing() -> TypingEvent:
    return TypingEvent(sender="mimi://whatsapp/u/1", recipient="mimi://acme/u/a", state="on", at=1)


async def test_a_commit_here_wakes_the_providers_subscribers_only(store: Store) -> None:
    queue = EventQueue(store)
    woken: list[str] = []
    queue.subscribe("acme", lambda: woken.append("acme"))
    queue.subscribe("globex", lambda: woken.append("globex"))
    await queue.append("acme", typing())
    assert woken == ["acme"]
    queue.heard(None)  # another replica's notifications may have been lost: everyone looks
    assert sorted(woken) == ["acme", "acme", "globex"]


async def test_the_sweep_wakes_those_whose_queue_grew_unannounced(store: Store) -> None:
    here, elsewhere = EventQueue(store), EventQueue(store)  # two replicas' queues
    woken: list[str] = []

    def wake() -> None:
        woken.append("acme")

    here.subscribe("acme", wake)
    await here.sweep()  # the first sweep only notes where the queue stands
    assert woken == []
    await elsewhere.append("acme", typing())  # its notification never reached `here`
    await here.sweep()
    assert woken == ["acme"]
    await here.sweep()  # nothing new since
    assert woken == ["acme"]
    here.unsubscribe("acme", wake)
    await elsewhere.append("acme", typing())
    await here.sweep()
    assert woken == ["acme"]
