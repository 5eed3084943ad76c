"""Stateless console sessions: the API key sealed in the cookie with AES-GCM.

The ledger checks roles against the key of each call, so every router
replica must be able to recover the key from the cookie alone; nothing is
stored server side. The cookie is ``v1.<base64url(nonce || ciphertext)>``
over a JSON body ``{k: key secret, iat, exp, n: csrf seed}``, sealed with a
key derived from the console secret (``http.console.secret``). Tampered,
foreign-secret or expired cookies open to ``None``: the caller signs in again.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import secrets
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

COOKIE = "rationer_console"
_AAD = b"rationer console session v1"
_PREFIX = "v1."


def derive(secret: str, label: str) -> bytes:
    """A 32-byte key for one purpose, so the sealing and CSRF keys never coincide."""
    return hmac.new(secret.encode(), f"rationer console {label}".encode(), hashlib.sha256).digest()


def b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass(frozen=True)
class Session:
    """What the cookie holds. ``key`` is the bearer secret: never logged, never sent to the page."""

    key: str
    issued_at_us: int
    expires_at_us: int
    csrf_seed: str
    # Shown by the shell; the ledger, not these, decides what the key may do.
    role: str = ""
    key_id: str = ""
    org_id: str = ""
    team_id: str = ""
    user_id: str = ""


class SessionCodec:
    def __init__(self, secret: str) -> None:
        self._aead = AESGCM(derive(secret, "session"))

    def new(self, key: str, now_us: int, expires_at_us: int, **who: str) -> Session:
        return Session(key, now_us, expires_at_us, b64(secrets.token_bytes(16)), **who)

    def seal(self, s: Session) -> str:
        body = json.dumps({"k": s.key, "iat": s.issued_at_us, "exp": s.expires_at_us, "n": s.csrf_seed,
                           "w": [s.role, s.key_id, s.org_id, s.team_id, s.user_id]},
                          separators=(",", ":")).encode()  # fmt: skip
        nonce = secrets.token_bytes(12)
        return _PREFIX + b64(nonce + self._aead.encrypt(nonce, body, _AAD))

    def open(self, cookie: str, now_us: int) -> Session | None:
        """The session in ``cookie``, or None when it is absent, forged, sealed elsewhere or expired."""
        if not cookie.startswith(_PREFIX) or len(cookie) > 4096:
            return None
        try:
            raw = unb64(cookie[len(_PREFIX):])
            body = json.loads(self._aead.decrypt(raw[:12], raw[12:], _AAD))
            who = [str(v) for v in body["w"]]
            s = Session(str(body["k"]), int(body["iat"]), int(body["exp"]), str(body["n"]), *who[:5])
        except (InvalidTag, ValueError, KeyError, TypeError, IndexError, binascii.Error):
            return None
        return s if s.issued_at_us <= now_us < s.expires_at_us else None
