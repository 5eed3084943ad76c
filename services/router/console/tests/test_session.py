"""Sealed sessions and CSRF tokens: what opens, what does not (property tests)."""

from __future__ import annotations

import pytest
from aiohttp.test_utils import make_mocked_request
from hypothesis import given, settings
from hypothesis import strategies as st

from rationer.errors import PermissionDenied
from services.router.console.csrf import Csrf, check_origin
from services.router.console.session import SessionCodec, unb64

SECRET = "a-console-secret-of-some-length"
NOW = 1_900_000_000_000_000
keys = st.text(min_size=1, max_size=256)


@settings(max_examples=60)
@given(key=keys, ttl=st.integers(1, 10**12), role=st.sampled_from(["admin", "finops", "member", "viewer"]))
def test_a_sealed_session_opens_to_itself_until_it_expires(key: str, ttl: int, role: str) -> None:
    codec = SessionCodec(SECRET)
    s = codec.new(key, NOW, NOW + ttl, role=role, key_id="k_1", team_id="acme/<eng>")
    cookie = codec.seal(s)
    if len(key.encode()) >= 8:
        assert key.encode() not in unb64(cookie[3:])  # encrypted, not encoded
    assert codec.open(cookie, NOW) == s
    assert codec.open(cookie, NOW + ttl - 1) == s
    assert codec.open(cookie, NOW + ttl) is None  # expired
    assert codec.open(cookie, NOW - 1) is None  # issued in the future: a clock rolled back
    assert SessionCodec(SECRET + "x").open(cookie, NOW) is None  # another deployment's secret


@settings(max_examples=80)
@given(key=keys, where=st.integers(0, 10_000), flip=st.integers(1, 255))
def test_any_tampered_byte_is_no_session(key: str, where: int, flip: int) -> None:
    codec = SessionCodec(SECRET)
    cookie = codec.seal(codec.new(key, NOW, NOW + 10**9))
    raw = bytearray(unb64(cookie[3:]))
    raw[where % len(raw)] ^= flip
    import base64

    forged = "v1." + base64.urlsafe_b64encode(bytes(raw)).rstrip(b"=").decode()
    assert codec.open(forged, NOW) is None


@pytest.mark.parametrize("junk", ["", "v1.", "v2.abc", "v1.!!!!", "v1." + "A" * 5000, "v1.AAAA"])
def test_junk_cookies_are_no_session(junk: str) -> None:
    assert SessionCodec(SECRET).open(junk, NOW) is None


def test_csrf_tokens_are_per_session_and_checked_in_constant_time() -> None:
    codec, csrf = SessionCodec(SECRET), Csrf(SECRET)
    a, b = codec.new("rk_a", NOW, NOW + 10), codec.new("rk_a", NOW, NOW + 10)
    assert csrf.token(a) != csrf.token(b)  # a fresh seed per sign-in
    csrf.check_token(a, csrf.token(a))
    for sent in ("", csrf.token(b), csrf.token(a) + "x"):
        with pytest.raises(PermissionDenied) as err:
            csrf.check_token(a, sent)
        assert err.value.openai_code == "csrf"
    assert Csrf(SECRET + "x").token(a) != csrf.token(a)


@pytest.mark.parametrize("headers, ok", [
    ({}, True),  # not a browser: the token alone decides
    ({"Origin": "http://console.example:8080"}, True),
    ({"Sec-Fetch-Site": "same-origin"}, True),
    ({"Origin": "https://evil.example"}, False),
    ({"Origin": "http://console.example:9999"}, False),
    ({"Origin": "null"}, False),
    ({"Sec-Fetch-Site": "cross-site"}, False),
    ({"Sec-Fetch-Site": "same-site"}, False),
])  # fmt: skip
def test_the_origin_check(headers: dict[str, str], ok: bool) -> None:
    request = make_mocked_request("POST", "/console/logout", headers={"Host": "console.example:8080", **headers})
    if ok:
        check_origin(request)
    else:
        with pytest.raises(PermissionDenied):
            check_origin(request)
