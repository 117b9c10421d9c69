"""Pre-shared keys as configured: strongSwan's encodings, and the rule that refuses weak ones."""

from __future__ import annotations

import base64
import binascii
from typing import Any

from . import schema as defaults


def decode_psk(text: str) -> bytes:
    """A pre-shared key as strongSwan writes secrets: ``0x`` hex, ``0s`` base64, else UTF-8 text.

    Raises ValueError with a message that does not contain the key.
    """
    if text.startswith("0x"):
        digits = "".join(text[2:].split()).replace(":", "")
        try:
            value = binascii.unhexlify(digits)
        except (binascii.Error, ValueError):
            raise ValueError("is not valid hexadecimal after '0x'") from None
    elif text.startswith("0s"):
        try:
            value = base64.b64decode("".join(text[2:].split()), validate=True)
        except (binascii.Error, ValueError):
            raise ValueError("is not valid base64 after '0s'") from None
    else:
        value = text.encode("utf-8")
    if not value:
        raise ValueError("is empty")
    return value


def psk_weakness(value: bytes) -> str:
    """Why the decoded pre-shared key ``value`` is too weak to use, or "" when it is not.

    RFC 7296 §2.15: the key must be as unpredictable as the keys it protects, because a peer (or
    an attacker posing as one) that sees an AUTH payload can test guesses offline.  The rule is
    deliberately plain: at least MIN_PSK_OCTETS octets and not one character repeated.  The
    reason never contains the key, its length or any of its characters.
    """
    if len(value) < defaults.MIN_PSK_OCTETS:
        return "is shorter than %d octets" % defaults.MIN_PSK_OCTETS
    try:
        units: Any = value.decode("utf-8")
    except UnicodeDecodeError:
        units = value
    if len(set(units)) == 1:
        return "is one character repeated"
    return ""


_WEAK_PSK_FIX = (
    "use a random key of at least %d octets (for example the output of 'openssl rand -base64 32'), or "
    "set allow_weak_psk: true on the connection to accept it anyway" % defaults.MIN_PSK_OCTETS
)


def _strip_newline(content: bytes) -> bytes:
    if content.endswith(b"\r\n"):
        return content[:-2]
    if content.endswith(b"\n"):
        return content[:-1]
    return content
