"""The one request-id rule both doors apply (services/router/request_ids.py)."""

from __future__ import annotations

import re
import string

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rationer.errors import InvalidArgument
from services.router.request_ids import check_request_id

ALPHABET = string.ascii_letters + string.digits + "._:-"
VALID = st.text(st.sampled_from(ALPHABET), min_size=1, max_size=64)


@given(VALID)
def test_ids_that_keep_the_rule_pass_unchanged(rid: str) -> None:
    assert check_request_id(rid) == rid


@given(st.text())
def test_anything_else_is_refused_naming_the_rule(raw: str) -> None:
    keeps_rule = re.fullmatch(r"[A-Za-z0-9._:-]{1,64}", raw) is not None
    if not raw or keeps_rule:
        assert check_request_id(raw) == raw
        return
    with pytest.raises(InvalidArgument, match="x-request-id") as info:
        check_request_id(raw)
    assert ("'#'" in info.value.message) == ("#" in raw)


@given(VALID.filter(lambda r: len(r) < 60), st.sampled_from(["local-large", "frontier", "local-small.2"]))
def test_the_routers_own_fallback_form_is_refused(rid: str, tier: str) -> None:
    # holds.attempt_id makes "<id>#<tier>" for fallbacks: a caller may never claim one.
    with pytest.raises(InvalidArgument, match="reserves"):
        check_request_id(f"{rid}#{tier}")


def test_none_sent_is_fine_and_the_bounds_are_exact() -> None:
    assert check_request_id("") == ""
    assert check_request_id("a" * 64) == "a" * 64
    with pytest.raises(InvalidArgument, match="got 65 characters"):
        check_request_id("a" * 65)
    with pytest.raises(InvalidArgument) as info:
        check_request_id("secret-looking id " * 10)
    assert "secret-looking" not in info.value.message  # the id itself is never echoed
