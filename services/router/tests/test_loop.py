"""The router's event-loop choice (loop.py)."""

from __future__ import annotations

import importlib.util

import pytest

from rationer.errors import FailedPrecondition
from services.router.loop import loop_factory

HAVE_UVLOOP = importlib.util.find_spec("uvloop") is not None


def test_asyncio_is_asyncio_s_own_loop() -> None:
    assert loop_factory("asyncio") is None


def test_auto_takes_uvloop_only_when_installed() -> None:
    factory = loop_factory("auto")
    assert (factory is not None) == HAVE_UVLOOP


@pytest.mark.skipif(HAVE_UVLOOP, reason="uvloop is installed here")
def test_asking_for_a_missing_uvloop_says_how_to_get_it() -> None:
    with pytest.raises(FailedPrecondition, match=r"rationer\[fast\]"):
        loop_factory("uvloop")
