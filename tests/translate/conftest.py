"""Shared fixtures for translator tests."""

from __future__ import annotations

import pytest

from gateway.translate import MemoryMessageRefs, MemoryUserDirectory
from tests.translate.helpers import new_refs, new_users


@pytest.fixture
def refs() -> MemoryMessageRefs:
    return new_refs()


@pytest.fixture
def users() -> MemoryUserDirectory:
    return new_users()
