"""Bearer-key auth for the API, sessions and CSRF tokens for the dashboard.

- Keys (``CIO_RELAY_API_KEYS``) are kept only as SHA-256 digests; a presented key is hashed and
  compared with every digest in constant time (``hmac.compare_digest``), so neither the keys nor
  the timing of a comparison say anything about them.
- A dashboard session cookie is ``<issued>.<nonce>.<HMAC-SHA256(key digest,
  "session:<issued>:<nonce>")>``: proof that its holder knew a key, never the key itself. The
  random nonce makes each login its own session, so logging out of one (which revokes it:
  ``session_id`` names it, the dashboard keeps the revocations in ``dashboard/sessions.py``)
  leaves another login of the same second alone. It expires after ``SESSION_SECONDS`` and dies
  with the key (drop a key from the settings and its sessions stop verifying). The issue time is
  read only through ``digits.whole_number``: anything but 1 to 18 ASCII digits is no session,
  never an error.
- The CSRF token of a session is ``HMAC(key digest, "csrf:<issued>:<nonce>")``: forms carry it,
  and POST actions check it against the session. Requests authenticated with an
  ``Authorization`` header need none (a browser never adds that header to a cross-site request
  by itself).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections.abc import Iterable
from dataclasses import dataclass

from cio_relay.digits import whole_number

__all__ = [
    "SESSION_COOKIE",
    "SESSION_SECONDS",
    "ApiKeys",
    "Principal",
    "generate_api_key",
]

SESSION_COOKIE = "cio_relay_session"
SESSION_SECONDS = 12 * 3600


def generate_api_key() -> str:
    """A fresh random key (256 bits) for a service started without configured keys."""
    return "cio_" + secrets.token_urlsafe(32)


def _digest(key: str) -> bytes:
    return hashlib.sha256(key.encode("utf-8", "surrogateescape")).digest()


@dataclass(frozen=True, slots=True)
class Principal:
    """Who a request authenticated as: a digest, never the key.

    ``scope`` is a short hex name for the key (idempotency keys are kept per key); ``session`` is
    the issue time of a cookie session, None for a bearer header, and ``nonce`` tells apart the
    sessions issued in one second.
    """

    digest: bytes
    session: int | None = None
    nonce: str = ""

    @property
    def scope(self) -> str:
        return self.digest[:8].hex()


class ApiKeys:
    """The accepted API keys, as digests."""

    def __init__(self, keys: Iterable[str]) -> None:
        self._digests = tuple(_digest(key) for key in keys if key)
        # Principals are immutable: one per key, made here rather than per request.
        self._principals = {digest: Principal(digest) for digest in self._digests}

    def __repr__(self) -> str:
        return f"ApiKeys({len(self._digests)} keys)"

    def __len__(self) -> int:
        return len(self._digests)

    def verify(self, presented: str) -> Principal | None:
        """The principal of ``presented``, or None; always compares against every digest."""
        candidate = _digest(presented)
        found: bytes | None = None
        for digest in self._digests:
            if hmac.compare_digest(candidate, digest):
                found = digest
        return self._principals[found] if found is not None else None

    def from_authorization(self, header: str | None) -> Principal | None:
        """``Authorization: Bearer <key>``."""
        if not header:
            return None
        scheme, _, key = header.partition(" ")
        if scheme.lower() != "bearer" or not key.strip():
            return None
        return self.verify(key.strip())

    # --- dashboard sessions -------------------------------------------------------------------

    def issue_session(self, principal: Principal, now: float | None = None) -> str:
        issued = int(time.time() if now is None else now)
        nonce = secrets.token_hex(8)
        return f"{issued}.{nonce}.{self._sign(principal.digest, f'session:{issued}:{nonce}')}"

    def from_session(self, cookie: str | None, now: float | None = None) -> Principal | None:
        parts = cookie.split(".") if cookie else ()
        if len(parts) != 3:
            return None
        issued_text, nonce, signature = parts
        issued = whole_number(issued_text)
        if issued is None or not nonce or not signature:
            return None
        age = (time.time() if now is None else now) - issued
        if not 0 <= age <= SESSION_SECONDS:
            return None
        presented = signature.encode("utf-8", "surrogateescape")
        message = f"session:{issued}:{nonce}"
        found: bytes | None = None
        for digest in self._digests:
            if hmac.compare_digest(self._sign(digest, message).encode(), presented):
                found = digest
        return Principal(found, session=issued, nonce=nonce) if found is not None else None

    def session_id(self, principal: Principal) -> str:
        """A name for a cookie session that cannot be turned back into the cookie (for revoking).

        The SHA-256 of the cookie's signature: a revocation list holds no usable credential.
        """
        if principal.session is None:
            raise ValueError("session_id: a bearer-key principal has no session")
        signature = self._sign(principal.digest, f"session:{principal.session}:{principal.nonce}")
        return hashlib.sha256(signature.encode()).hexdigest()

    def csrf_token(self, principal: Principal) -> str:
        """The token forms must carry; empty for header-authenticated requests."""
        if principal.session is None:
            return ""
        return self._sign(principal.digest, f"csrf:{principal.session}:{principal.nonce}")

    def check_csrf(self, principal: Principal, token: str | None) -> bool:
        if principal.session is None:
            return True
        expected = self.csrf_token(principal).encode()
        return hmac.compare_digest(expected, (token or "").encode("utf-8", "surrogateescape"))

    @staticmethod
    def _sign(digest: bytes, message: str) -> str:
        return hmac.new(digest, message.encode(), hashlib.sha256).hexdigest()
