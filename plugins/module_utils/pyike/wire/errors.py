"""The one error class the wire codec raises.

Every malformed input -- truncated data, a length that does not add up, a value out of range,
a payload that is not allowed where it appears -- ends in a :class:`WireError`; no other
exception escapes ``decode_*`` or ``check_payloads``.  Encoding an object that cannot be
represented on the wire (a value too large for its field, a bad nonce length) raises it too.

How to react is carried by the error itself (RFC 7296 §2.21):

* ``drop`` -- the datagram is not an IKEv2 message we can answer; discard it silently.
* ``notify`` / ``notify_data`` -- the Notify payload an answer would carry.  INVALID_SYNTAX may
  only be sent inside an authenticated (encrypted) exchange (§3.10.1); whether a reply is sent
  at all is the caller's decision, since only it knows if the message was authenticated.
"""

from __future__ import annotations

from typing import Optional

from ..ids import NotifyType


class WireError(Exception):
    """Malformed or disallowed IKEv2 input (or an unencodable object).

    ``payload_type``, ``offset`` and ``field`` locate the problem when known; ``offset`` is
    the byte offset from the start of the decoded buffer (the IKE header for whole messages).
    """

    def __init__(
        self,
        message: str,
        *,
        notify: Optional[int] = NotifyType.INVALID_SYNTAX,
        notify_data: bytes = b"",
        drop: bool = False,
        payload_type: Optional[int] = None,
        offset: Optional[int] = None,
        field: Optional[str] = None,
    ) -> None:
        super().__init__(message)
        self.notify = NotifyType(notify) if notify is not None else None
        self.notify_data = bytes(notify_data)
        self.drop = drop
        self.payload_type = payload_type
        self.offset = offset
        self.field = field

    def __repr__(self) -> str:
        notify = self.notify.name if self.notify is not None else None
        return f"WireError({self.args[0]!r}, notify={notify}, drop={self.drop})"
