"""Errors raised by the IKE crypto layer.

Every failure caused by input (a configuration string, a peer's message) surfaces as one of
these classes; callers catch :class:`CryptoError` to handle them all.  Messages never carry
key material, pre-shared keys or shared secrets.
"""

from __future__ import annotations

from typing import Optional


class CryptoError(Exception):
    """Base class of every error raised by ``pyike.crypto``."""


class UnsupportedTransformError(CryptoError):
    """A transform id (or id and key length) that this implementation cannot run."""


class ProposalError(CryptoError):
    """A proposal string or proposal structure that cannot be used.

    ``token`` is the offending algorithm keyword (None when the problem is something
    missing) and ``proposal`` the whole string being parsed, so a user sees both.
    """

    def __init__(self, reason: str, token: Optional[str] = None, proposal: Optional[str] = None) -> None:
        self.reason = reason
        self.token = token
        self.proposal = proposal
        message = reason
        if token is not None:
            message += f": {token!r}"
        if proposal is not None:
            message += f" in proposal {proposal!r}"
        super().__init__(message)


class KeyExchangeError(CryptoError):
    """The peer's key exchange data is malformed or fails validation (RFC 7296 §3.4)."""


class IntegrityError(CryptoError):
    """An encrypted payload failed authentication or decryption.

    Deliberately carries no detail: which check failed (length, ICV, padding) must not be
    observable to a peer.
    """

    def __init__(self, message: str = "encrypted payload failed the integrity check") -> None:
        super().__init__(message)
