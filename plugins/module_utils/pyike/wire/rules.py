"""Which payloads each exchange may carry, checked before any state changes.

In the style of strongSwan's message.c payload rules: per exchange and direction a table of
payload counts (a *shape*).  Some exchanges have several shapes (an IKE_SA_INIT response may
be a bare error notify, a CREATE_CHILD_SA request may create, rekey a Child SA or rekey the
IKE SA); the shape is picked from the payloads present and its name returned, so the IKE
layer knows what it is looking at.  Unknown payloads that were not critical were already
reduced to UnknownPayload and are always allowed (skipped, RFC 7296 §2.5).

For IKE_SA_INIT the plaintext payloads are checked; for every other exchange the decrypted
inner payloads (``check_envelope`` checks the outer layer).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Callable, Dict, FrozenSet, Iterable, List, Mapping, Optional, Sequence, Tuple

from ..ids import ExchangeType, NotifyType, PayloadType, ProtocolId
from .codec import enum_name
from .errors import WireError
from .message import ENCRYPTED_TYPES, Message
from .notify import NotifyPayload
from .payload import Payload, UnknownPayload, payload_name
from .sa import SaPayload

ANY = 0xFFFF
P = PayloadType


@dataclass(frozen=True)
class Shape:
    """Allowed payload counts of one kind of message.

    ``counts``: type -> (min, max); types not listed are not allowed.  ``together``: groups
    that appear all or none.  ``requires``: (a, b) -- if a is present, b must be.
    ``any_of``: at least one of these types must be present.
    ``notify_counts``: notify type -> (min, max).  ``sa_protocols``/``sa_spi_sizes``: what
    the SA proposals may negotiate.
    """

    name: str
    counts: Mapping[int, Tuple[int, int]]
    together: Tuple[FrozenSet[int], ...] = ()
    requires: Tuple[Tuple[int, int], ...] = ()
    any_of: FrozenSet[int] = frozenset()
    notify_counts: Mapping[int, Tuple[int, int]] = field(default_factory=dict)
    sa_protocols: FrozenSet[int] = frozenset()
    sa_spi_sizes: Optional[FrozenSet[int]] = None


def _shape(
    name: str,
    required: Iterable[int] = (),
    optional: Iterable[int] = (),
    many: Iterable[int] = (),
    **extra,
) -> Shape:
    counts: Dict[int, Tuple[int, int]] = {P.NOTIFY: (0, ANY), P.VENDOR_ID: (0, ANY)}
    counts.update({t: (1, 1) for t in required})
    counts.update({t: (0, 1) for t in optional})
    counts.update({t: (0, ANY) for t in many})
    return Shape(name, counts, **extra)


_CHILD_SA_TS = frozenset({P.SA, P.TSi, P.TSr})
_CHILD_PROTOCOLS = frozenset({ProtocolId.AH, ProtocolId.ESP})
_IKE_PROTOCOL = frozenset({ProtocolId.IKE})
_NO_REKEY = {NotifyType.REKEY_SA: (0, 0)}

# RFC 7296 §1.2, §2.6: SA, KE, Nonce; the request may carry one COOKIE (retry after a COOKIE reply).
INIT_REQUEST = _shape(
    "IKE_SA_INIT",
    required=(P.SA, P.KE, P.NONCE),
    notify_counts={NotifyType.COOKIE: (0, 1)},
    sa_protocols=_IKE_PROTOCOL,
)
INIT_RESPONSE = _shape(
    "IKE_SA_INIT", required=(P.SA, P.KE, P.NONCE), many=(P.CERTREQ,), sa_protocols=_IKE_PROTOCOL
)
# §1.2, §2.6, §2.21.1: INVALID_KE_PAYLOAD, COOKIE, NO_PROPOSAL_CHOSEN ... alone.
INIT_ERROR_RESPONSE = _shape("error notify")

# §1.2, §2.16 (EAP: first request without AUTH, then EAP rounds, then AUTH alone), RFC 6023 (childless).
AUTH_REQUEST = _shape(
    "IKE_AUTH",
    required=(P.IDi,),
    optional=(P.AUTH, P.IDr, P.CP, P.SA, P.TSi, P.TSr),
    many=(P.CERT, P.CERTREQ),
    together=(_CHILD_SA_TS,),
    sa_protocols=_CHILD_PROTOCOLS,
)
AUTH_EAP_REQUEST = _shape("EAP", required=(P.EAP,))
AUTH_EAP_FINAL_REQUEST = _shape("EAP AUTH", required=(P.AUTH,))
AUTH_RESPONSE = _shape(
    "IKE_AUTH",
    optional=(P.IDr, P.AUTH, P.CP, P.SA, P.TSi, P.TSr, P.EAP),
    many=(P.CERT,),
    together=(_CHILD_SA_TS,),
    requires=((P.IDr, P.AUTH), (P.CERT, P.AUTH), (P.SA, P.AUTH)),
    any_of=frozenset({P.AUTH, P.EAP, P.NOTIFY}),
    sa_protocols=_CHILD_PROTOCOLS,
)

# §1.3.1 new Child SA, §1.3.3 Child SA rekey (one REKEY_SA notify), §1.3.2 IKE SA rekey.
CHILD_REQUEST = _shape(
    "new Child SA",
    required=(P.SA, P.NONCE, P.TSi, P.TSr),
    optional=(P.KE,),
    notify_counts=_NO_REKEY,
    sa_protocols=_CHILD_PROTOCOLS,
)
CHILD_REKEY_REQUEST = _shape(
    "Child SA rekey",
    required=(P.SA, P.NONCE, P.TSi, P.TSr),
    optional=(P.KE,),
    notify_counts={NotifyType.REKEY_SA: (1, 1)},
    sa_protocols=_CHILD_PROTOCOLS,
)
IKE_REKEY_REQUEST = _shape(
    "IKE SA rekey",
    required=(P.SA, P.NONCE, P.KE),
    notify_counts=_NO_REKEY,
    sa_protocols=_IKE_PROTOCOL,
    sa_spi_sizes=frozenset({8}),
)
CHILD_RESPONSE = _shape(
    "Child SA",
    required=(P.SA, P.NONCE, P.TSi, P.TSr),
    optional=(P.KE,),
    sa_protocols=_CHILD_PROTOCOLS,
)
IKE_REKEY_RESPONSE = _shape(
    "IKE SA rekey",
    required=(P.SA, P.NONCE, P.KE),
    sa_protocols=_IKE_PROTOCOL,
    sa_spi_sizes=frozenset({8}),
)
CHILD_ERROR_RESPONSE = _shape("error notify")

# §1.4: Delete, Notify, CP; an empty one is a liveness check.
INFORMATIONAL = _shape("INFORMATIONAL", optional=(P.CP,), many=(P.DELETE,))
# RFC 9242 §3, RFC 9370 §2.2.2: additional key exchanges.
INTERMEDIATE = _shape("IKE_INTERMEDIATE", optional=(P.KE,))
# RFC 9370 §2.2.4: one additional key exchange after CREATE_CHILD_SA; the request names its link, the
# response carries the next link unless it answers the last exchange (or is an error notify alone).
FOLLOWUP_REQUEST = _shape(
    "IKE_FOLLOWUP_KE", required=(P.KE,), notify_counts={NotifyType.ADDITIONAL_KEY_EXCHANGE: (1, 1)}
)
FOLLOWUP_RESPONSE = _shape(
    "IKE_FOLLOWUP_KE", optional=(P.KE,), notify_counts={NotifyType.ADDITIONAL_KEY_EXCHANGE: (0, 1)}
)


def _types(payloads: Sequence[Payload]) -> Counter:
    return Counter(p.payload_type for p in payloads if not isinstance(p, UnknownPayload))


def _notify_types(payloads: Sequence[Payload]) -> List[int]:
    return [p.notify_type for p in payloads if isinstance(p, NotifyPayload)]


def _has_error_notify(payloads: Sequence[Payload], also: Tuple[int, ...] = ()) -> bool:
    return any(p.is_error or p.notify_type in also for p in payloads if isinstance(p, NotifyPayload))


def _sa_protocol(payloads: Sequence[Payload]) -> Optional[int]:
    for p in payloads:
        if isinstance(p, SaPayload) and p.proposals:
            return p.proposals[0].protocol
    return None


def _select_init_response(payloads: Sequence[Payload]) -> Shape:
    types = _types(payloads)
    if not types.keys() & {P.SA, P.KE, P.NONCE} and _has_error_notify(payloads, (NotifyType.COOKIE,)):
        return INIT_ERROR_RESPONSE
    return INIT_RESPONSE


def _select_auth_request(payloads: Sequence[Payload]) -> Shape:
    types = _types(payloads)
    if P.IDi not in types and P.EAP in types:
        return AUTH_EAP_REQUEST
    if P.IDi not in types and P.AUTH in types:
        return AUTH_EAP_FINAL_REQUEST
    return AUTH_REQUEST


def _select_child_request(payloads: Sequence[Payload]) -> Shape:
    types = _types(payloads)
    if NotifyType.REKEY_SA in _notify_types(payloads):
        return CHILD_REKEY_REQUEST
    if types.keys() & {P.TSi, P.TSr} or _sa_protocol(payloads) != ProtocolId.IKE:
        return CHILD_REQUEST
    return IKE_REKEY_REQUEST


def _select_child_response(payloads: Sequence[Payload]) -> Shape:
    types = _types(payloads)
    if not types.keys() & {P.SA, P.NONCE} and _has_error_notify(payloads):
        return CHILD_ERROR_RESPONSE
    if types.keys() & {P.TSi, P.TSr} or _sa_protocol(payloads) != ProtocolId.IKE:
        return CHILD_RESPONSE
    return IKE_REKEY_RESPONSE


_SELECTORS: Dict[Tuple[int, bool], Callable[[Sequence[Payload]], Shape]] = {
    (ExchangeType.IKE_SA_INIT, False): lambda _payloads: INIT_REQUEST,
    (ExchangeType.IKE_SA_INIT, True): _select_init_response,
    (ExchangeType.IKE_AUTH, False): _select_auth_request,
    (ExchangeType.IKE_AUTH, True): lambda _payloads: AUTH_RESPONSE,
    (ExchangeType.CREATE_CHILD_SA, False): _select_child_request,
    (ExchangeType.CREATE_CHILD_SA, True): _select_child_response,
    (ExchangeType.INFORMATIONAL, False): lambda _payloads: INFORMATIONAL,
    (ExchangeType.INFORMATIONAL, True): lambda _payloads: INFORMATIONAL,
    (ExchangeType.IKE_INTERMEDIATE, False): lambda _payloads: INTERMEDIATE,
    (ExchangeType.IKE_INTERMEDIATE, True): lambda _payloads: INTERMEDIATE,
    (ExchangeType.IKE_FOLLOWUP_KE, False): lambda _payloads: FOLLOWUP_REQUEST,
    (ExchangeType.IKE_FOLLOWUP_KE, True): lambda _payloads: FOLLOWUP_RESPONSE,
}


def _names(types: Iterable[int]) -> str:
    return ", ".join(payload_name(t) for t in sorted(types))


def check_payloads(exchange: int, is_response: bool, payloads: Sequence[Payload]) -> str:
    """Check the payload set of one message; return the name of the shape it matched.

    Raises WireError(notify=INVALID_SYNTAX) naming exchange, direction and payload.
    """
    context = f"{enum_name(ExchangeType, exchange)} {'response' if is_response else 'request'}"
    selector = _SELECTORS.get((exchange, is_response))
    if selector is None:
        raise WireError(f"{context}: exchange type {exchange} is not supported")
    shape = selector(payloads)

    def fail(message: str, payload_type: Optional[int] = None) -> WireError:
        return WireError(f"{context} ({shape.name}): {message}", payload_type=payload_type)

    types = _types(payloads)
    for payload_type in types:
        if payload_type not in shape.counts:
            raise fail(f"{payload_name(payload_type)} payload is not allowed", payload_type)
    for payload_type, (low, high) in shape.counts.items():
        count = types.get(payload_type, 0)
        if count < low:
            raise fail(f"{payload_name(payload_type)} payload is missing", payload_type)
        if count > high:
            raise fail(
                f"{payload_name(payload_type)} payload appears {count} times, at most {high}", payload_type
            )
    for group in shape.together:
        present = group & types.keys()
        if present and present != group:
            raise fail(f"{_names(group)} must appear together; missing {_names(group - present)}", min(group))
    for needs, needed in shape.requires:
        if needs in types and needed not in types:
            raise fail(f"{payload_name(needs)} payload requires {payload_name(needed)}", needed)
    if shape.any_of and not shape.any_of & types.keys():
        raise fail(f"needs one of {_names(shape.any_of)}", min(shape.any_of))
    notifies = Counter(_notify_types(payloads))
    for notify_type, (low, high) in shape.notify_counts.items():
        if not low <= notifies.get(notify_type, 0) <= high:
            raise fail(
                f"NOTIFY {enum_name(NotifyType, notify_type)} appears {notifies.get(notify_type, 0)} times, "
                f"allowed {low}..{high}",
                P.NOTIFY,
            )
    for sa in (p for p in payloads if isinstance(p, SaPayload)):
        _check_sa(sa, shape, is_response, fail)
    if shape is CHILD_REKEY_REQUEST:
        rekey = next(
            p for p in payloads if isinstance(p, NotifyPayload) and p.notify_type == NotifyType.REKEY_SA
        )
        if rekey.protocol not in _CHILD_PROTOCOLS or len(rekey.spi) != 4:
            raise fail("REKEY_SA must name an AH or ESP SPI of 4 bytes (§1.3.3)", P.NOTIFY)
    return shape.name


def _check_sa(sa: SaPayload, shape: Shape, is_response: bool, fail: Callable[..., WireError]) -> None:
    if not sa.proposals:
        raise fail("SA payload has no proposal (§3.3)", P.SA)
    if is_response and len(sa.proposals) != 1:
        raise fail(f"SA payload has {len(sa.proposals)} proposals, a response selects one (§2.7)", P.SA)
    if not is_response and sa.proposals[0].number != 1:
        raise fail(f"first proposal is numbered {sa.proposals[0].number}, not 1 (§3.3.1)", P.SA)
    for proposal in sa.proposals:
        if shape.sa_protocols and proposal.protocol not in shape.sa_protocols:
            raise fail(
                f"SA proposal {proposal.number} is for {enum_name(ProtocolId, proposal.protocol)}, "
                f"expected {' or '.join(enum_name(ProtocolId, p) for p in sorted(shape.sa_protocols))}",
                P.SA,
            )
        if shape.sa_spi_sizes is not None and len(proposal.spi) not in shape.sa_spi_sizes:
            raise fail(f"SA proposal {proposal.number} has an SPI of {len(proposal.spi)} bytes", P.SA)


def check_envelope(message: Message) -> str:
    """Check the outer payloads of a decoded message; return "plain", "encrypted",
    "fragment" or "unprotected".

    IKE_SA_INIT is never encrypted (its payloads go to ``check_payloads`` as they are); every
    later exchange is carried in SK or SKF (§1.2, RFC 7383), except an INFORMATIONAL made only
    of notifications, which §1.5 allows unprotected (INVALID_IKE_SPI) and which must not change
    any state.
    """
    header = message.header
    context = f"{enum_name(ExchangeType, header.exchange)} {'response' if header.response else 'request'}"
    known = [p for p in message.payloads if not isinstance(p, UnknownPayload)]
    if header.exchange == ExchangeType.IKE_SA_INIT:
        for p in known:
            if p.payload_type in ENCRYPTED_TYPES:
                raise WireError(
                    f"{context}: {payload_name(p.payload_type)} payload is not allowed",
                    payload_type=p.payload_type,
                )
        return "plain"
    encrypted = message.encrypted
    if encrypted is not None:
        if known[:-1]:
            raise WireError(
                f"{context}: {payload_name(known[0].payload_type)} payload outside the encrypted payload",
                payload_type=known[0].payload_type,
            )
        return "fragment" if encrypted.payload_type == PayloadType.SKF else "encrypted"
    if (
        header.exchange == ExchangeType.INFORMATIONAL
        and known
        and all(isinstance(p, NotifyPayload) for p in known)
    ):
        return "unprotected"
    raise WireError(
        f"{context}: payloads must be sent inside an encrypted payload (§1.2)", payload_type=PayloadType.SK
    )
