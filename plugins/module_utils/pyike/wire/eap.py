"""EAP payload (RFC 7296 §3.16): one EAP message (RFC 3748 §4), parsed but not interpreted."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

from ..ids import PayloadType
from .codec import REDACTED, FailFn, Int, Length, Rest, When
from .payload import Payload

EAP_SUCCESS = 3
EAP_FAILURE = 4
_NO_TYPE_CODES = (EAP_SUCCESS, EAP_FAILURE)  # RFC 3748 §4.2: Success/Failure have no Type


def _has_type(values: Any) -> bool:
    return values["code"] not in _NO_TYPE_CODES


@dataclass(repr=False)
class EapPayload(Payload):
    """EAP message: Code, Identifier, Length (must equal the payload body), Type, Type-Data.

    Type-Data may carry credentials (EAP-GTC, MSCHAPv2), so it stays out of reprs.
    """

    code: int
    identifier: int
    eap_type: Optional[int] = None
    type_data: bytes = field(default=b"", metadata=REDACTED)

    payload_type = PayloadType.EAP
    LAYOUT = (
        Int("code", 1),
        Int("identifier", 1),
        Length(),
        When(_has_type, Int("eap_type", 1)),
        Rest("type_data"),
    )

    def validate(self, fail: FailFn) -> None:
        if self.code in _NO_TYPE_CODES:
            if self.eap_type is not None or self.type_data:
                raise fail("eap type", "EAP Success/Failure carry no Type or data (RFC 3748 §4.2)")
        elif self.eap_type is None:
            raise fail("eap type", f"EAP code {self.code} needs a Type (RFC 3748 §4)")

    def describe(self) -> str:
        kind = {1: "request", 2: "response", 3: "success", 4: "failure"}.get(self.code, f"code {self.code}")
        return f"EAP({kind}" + (f" type {self.eap_type})" if self.eap_type is not None else ")")
