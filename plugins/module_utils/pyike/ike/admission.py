"""The responder's stateless half of IKE_SA_INIT (RFC 7296 §1.2, §2.6): retransmitted requests, limits
on half-open SAs and COOKIEs under load (cookies.py), the connections a peer may be, and answers that
create no SA. A request admitted here gets its half-open IKE SA and IkeInit task (tasks/ike_init.py);
nothing is kept for one that is refused.
"""

from __future__ import annotations

import ipaddress
import logging
from typing import Dict, List, Optional, Tuple

from ..ids import ExchangeType, NotifyType, PayloadType
from ..wire.errors import WireError
from ..wire.header import Header
from ..wire.message import Message, encode_message, find_notifies, find_payload
from ..wire.notify import NotifyPayload
from ..wire.rules import check_payloads
from .cookies import COOKIE, DROP
from .events import Address, PeerUnmatched, SendDatagram
from .policy import IkePolicy
from .tasks.base import Refused
from .tasks.ike_init import ZERO_SPI, IkeInit

log = logging.getLogger("pyike.ike")


def on_init_request(engine, message: Message, local: Address, remote: Address, now: float) -> None:
    header = message.header
    existing = engine.half_open.get((header.spi_i, remote[0]))
    if existing is not None:
        # §2.1: a retransmission gets the same answer. Anything else with this SPIi from this address is
        # not a new IKE SA either (it would orphan the half-open one): it is dropped.
        if existing.init_response and message.raw == existing.init_request and remote == existing.remote:
            engine.count("replayed_responses")
            engine.emit(SendDatagram(existing.init_response, local, remote))
        else:
            engine.count("retransmissions_refused")
        return
    try:
        check_payloads(ExchangeType.IKE_SA_INIT, False, message.payloads)
    except WireError as exc:
        engine.count("invalid_messages")
        log.info("IKE_SA_INIT request from %s rejected: %s", remote[0], exc)
        if exc.notify is not None:
            init_error(engine, header.spi_i, local, remote, exc.notify, exc.notify_data)
        return
    nonce = find_payload(message.payloads, PayloadType.NONCE).data
    cookies = find_notifies(message.payloads, NotifyType.COOKIE)
    verdict = engine.guard.admit(
        remote[0],
        lambda: bool(cookies) and engine.cookies.check(cookies[0].data, nonce, remote[0], header.spi_i, now),
    )
    if engine.impair.limit("half_open", 1) == 0:
        verdict = DROP
    if verdict not in (DROP, COOKIE) and cookies and engine.guard.require_cookie(remote[0]):
        engine.count("cookies_accepted")  # §2.6: the initiator came back with a valid cookie
    if verdict == DROP:
        engine.count("half_open_dropped")
        return
    if verdict == COOKIE:  # §2.6: too many half-open SAs; answer statelessly with a cookie
        engine.count("cookies_sent")
        cookie = engine.cookies.make(nonce, remote[0], header.spi_i, now)
        init_error(engine, header.spi_i, local, remote, NotifyType.COOKIE, cookie)
        return
    policies = candidates(engine.policies.values(), local[0], remote[0], engine.peer_addresses)
    if not policies:
        engine.count("no_matching_connection")
        log.info(
            "IKE_SA_INIT from %s to %s: no connection configured for these addresses", remote[0], local[0]
        )
        if any(p.remote_host for p in engine.policies.values()):
            engine.emit(PeerUnmatched(local, remote))  # a peer's name may point elsewhere by now
        init_error(engine, header.spi_i, local, remote, NotifyType.NO_PROPOSAL_CHOSEN)
        return
    sa = engine.new_sa(policies[0], False, header.spi_i, engine.random_bytes(8), local, remote, now)
    sa.init_request = message.raw
    sa.tasks.next_peer_request_id = 1
    task = IkeInit(engine, sa, candidates=policies)
    try:
        task.process_request(message.payloads, now)
    except Refused as refused:
        init_error(engine, header.spi_i, local, remote, refused.payload.notify_type, refused.payload.data)
        return
    engine.register(sa)
    engine.half_open[(sa.spi_i, remote[0])] = sa
    engine.guard.opened(remote[0])
    sa.tasks.respond(message, task.build_response(now))


def init_error(engine, spi_i: bytes, local: Address, remote: Address, notify: int, data: bytes = b"") -> None:
    """A stateless IKE_SA_INIT answer holding one notify (§2.6 COOKIE, §1.3 INVALID_KE_PAYLOAD, §2.7)."""
    header = Header(
        spi_i=spi_i, spi_r=ZERO_SPI, exchange=ExchangeType.IKE_SA_INIT, message_id=0, response=True
    )
    engine.emit(SendDatagram(encode_message(header, [NotifyPayload(notify, data)]), local, remote))


def candidates(policies, local_ip: str, remote_ip: str,
               peer_addresses: Optional[Dict[str, Tuple[str, ...]]] = None) -> List[IkePolicy]:  # fmt: skip
    """The connections a peer at `remote_ip` reaching us at `local_ip` may be: those naming both
    addresses first (a peer given as a DNS name: one of the addresses it resolved to last,
    `peer_addresses` by connection), then those for any peer (IDi in IKE_AUTH picks one,
    authenticate.policy_for_peer)."""

    def matches(configured: Optional[str], actual: str) -> bool:
        if configured in (None, "", "%any", "0.0.0.0", "::"):  # noqa: S104 - wildcards, not a bind
            return True
        try:
            return ipaddress.ip_address(configured) == ipaddress.ip_address(actual)
        except ValueError:
            return False

    resolved = peer_addresses or {}
    ours = [p for p in policies if matches(p.local_address, local_ip)]
    exact = [
        p
        for p in ours
        if (p.remote_address and matches(p.remote_address, remote_ip))
        or (p.remote_host and any(matches(a, remote_ip) for a in resolved.get(p.name, ())))
    ]
    return exact + [p for p in ours if not p.can_initiate]
