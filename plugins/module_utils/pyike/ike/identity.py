"""Identities (RFC 7296 §3.5) as text for logs and status."""

from __future__ import annotations

from typing import Optional, Tuple

from ..config.identity import identity_text as _text


def identity_text(identity: Optional[Tuple[int, bytes]]) -> str:
    """Addresses and names as text (escaped); binary identities (key id, unknown types) as ``#hex``."""
    return _text(identity[0], identity[1]) if identity else ""
