"""Text a peer controls (identities, certificate names) made safe for one log line or one message."""

from __future__ import annotations

MAX_TEXT = 256  # characters of peer-supplied text kept in one message


def printable(text: str, limit: int = MAX_TEXT) -> str:
    """``text`` with every character that could forge or hide output escaped (newlines, terminal
    escape sequences, other control and format characters as ``\\xNN``/``\\uNNNN``; a backslash as
    ``\\\\``, so that escapes stay unambiguous), cut to ``limit`` characters."""
    out = []
    for char in text[:limit]:
        if char == "\\":
            out.append("\\\\")
        elif char.isprintable():
            out.append(char)
        elif ord(char) < 0x100:
            out.append("\\x%02x" % ord(char))
        elif ord(char) < 0x10000:
            out.append("\\u%04x" % ord(char))
        else:
            out.append("\\U%08x" % ord(char))
    if len(text) > limit:
        out.append("...(%d characters)" % len(text))
    return "".join(out)
