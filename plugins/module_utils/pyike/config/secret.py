"""A wrapper that keeps a secret (a pre-shared key) out of reprs, strings, logs and digests."""

from __future__ import annotations

import hashlib
import hmac
import os

# Fingerprints are keyed with a per-process random key: they tell whether two secrets loaded
# by the same daemon are equal (a reload detects a changed PSK) but are useless for guessing
# the secret offline, even if a digest ends up in a log.
_FINGERPRINT_KEY = os.urandom(32)


class Secret:
    """Holds secret bytes.  ``repr``/``str``/``format`` show ``<redacted>``; :meth:`reveal` gives the bytes."""

    __slots__ = ("_value",)

    def __init__(self, value: bytes) -> None:
        if not isinstance(value, (bytes, bytearray)):
            raise TypeError("Secret needs bytes, not %s" % type(value).__name__)
        self._value = bytes(value)

    def reveal(self) -> bytes:
        """The secret itself; only for the code that computes with it (RFC 7296 §2.15 AUTH)."""
        return self._value

    def fingerprint(self) -> str:
        """A keyed hash, stable within this process only; safe to log or compare."""
        return hmac.new(_FINGERPRINT_KEY, self._value, hashlib.sha256).hexdigest()[:32]

    def __repr__(self) -> str:
        return "Secret(<redacted>)"

    def __str__(self) -> str:
        return "<redacted>"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Secret):
            return NotImplemented
        return hmac.compare_digest(self._value, other._value)

    def __hash__(self) -> int:
        return hash(self.fingerprint())

    def __copy__(self) -> Secret:
        return self

    def __deepcopy__(self, memo: dict) -> Secret:
        return self

    def __reduce__(self):
        raise TypeError("a Secret is not serialised")
