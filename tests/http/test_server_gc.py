"""The serving process's collector settings (gateway/http/server.py: settle_gc)."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from gateway.http.server import GC_YOUNG_THRESHOLD, settle_gc


@pytest.fixture
def restored_gc() -> Iterator[None]:
    threshold = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*threshold)


def test_what_exists_at_start_is_frozen_and_the_young_are_collected_less_often(
    restored_gc: None,
) -> None:
    gc.unfreeze()
    kept = [object() for _ in range(100)]
    _, middle, old = gc.get_threshold()
    settle_gc()
    assert gc.get_freeze_count() > len(kept)  # out of the collector's sight from now on
    assert gc.get_threshold() == (GC_YOUNG_THRESHOLD, middle, old)
