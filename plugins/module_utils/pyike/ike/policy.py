"""What the IKE engine needs to know about a connection, independent of how it was configured.

`policy_from_config` is the single adapter from the daemon's configuration model (pyike.config);
tests build policies directly.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Tuple

from cryptography.hazmat.primitives import serialization

from ..crypto.proposals import ProposalSpec
from ..ids import IdType
from ..selectors import TrafficSelector

Identity = Tuple[int, bytes]  # (IdType, identification data) as in the ID payload (RFC 7296 §3.5)


@dataclass
class ChildPolicy:
    name: str
    local_ts: List[TrafficSelector]
    remote_ts: List[TrafficSelector]
    esp_proposals: List[ProposalSpec]
    start_action: str = "none"  # none | start | trap (the runtime acts on it at load)
    close_action: str = "none"  # none | trap | start: when the peer closes it (restarts.py)
    rekey_time: float = 3600.0  # seconds; 0 disables rekeying
    life_bytes: int = 0  # hard volume limits (RFC 4301 §4.4.2.1); 0: none, or rekey_* + 10%
    life_packets: int = 0
    rekey_bytes: int = 0  # soft volume limits: rekey (with jitter); 0: none, or life_* / 1.1
    rekey_packets: int = 0


@dataclass
class IkePolicy:
    name: str
    local_address: str
    remote_address: Optional[str]  # None: any peer may connect (responder only), or see remote_host
    local_id: Identity
    remote_id: Optional[Identity]  # None: accept any identity that authenticates
    psk: bytes = field(repr=False)
    ike_proposals: List[ProposalSpec]
    children: Dict[str, ChildPolicy]
    force_encap: bool = False
    dpd_delay: float = 0.0
    remote_port: int = 500
    rekey_time: float = 14400.0  # IKE SA, seconds; 0 disables rekeying
    reauth_time: float = 0.0  # seconds until a make-before-break reauthentication (§2.8.3); 0: never
    dpd_action: str = "clear"  # clear | restart | trap
    # A peer given as a DNS name (remote_address None): the runtime resolves it for each new IKE SA we
    # initiate (events.ResolvePeer) and tells the engine what it found (Engine.peer_addresses).
    remote_host: Optional[str] = None
    auth: str = "psk"  # psk (RFC 7296 §2.15 shared key MIC) | pubkey (certificates, RFC 7427)
    # auth pubkey: our crypto.certs.LocalCredential (certificate, chain, private key never shown),
    # the CA certificates that verify the peer, and how we sign (signature: RFC 7427 | classic).
    credential: Optional[Any] = field(default=None, repr=False)
    ca_certs: List[Any] = field(default_factory=list, repr=False)
    auth_method: str = "signature"

    def __repr__(self) -> str:
        return "IkePolicy(%s: %s -> %s)" % (self.name, self.local_address, self.remote_text)

    @property
    def remote_text(self) -> str:
        """The configured peer: an address, a DNS name or %any."""
        return self.remote_address or self.remote_host or "%any"

    @property
    def can_initiate(self) -> bool:
        return bool(self.remote_address or self.remote_host)


def policy_from_config(conn: Any) -> IkePolicy:
    """Adapt one pyike.config ConnectionConfig; the local id defaults to the local address."""
    children = {
        name: ChildPolicy(
            name=name,
            local_ts=list(child.local_ts),
            remote_ts=list(child.remote_ts),
            esp_proposals=list(child.esp_proposals),
            start_action=child.start_action,
            close_action=str(getattr(child, "close_action", "none")),
            rekey_time=float(child.rekey_time),
            life_bytes=int(child.life_bytes),
            life_packets=int(child.life_packets),
            rekey_bytes=int(child.rekey_bytes),
            rekey_packets=int(child.rekey_packets),
        )
        for name, child in conn.children.items()
    }
    local_id = conn.local.id
    if local_id is None:
        local_id = (
            IdType.ID_IPV4_ADDR if conn.local.address.version == 4 else IdType.ID_IPV6_ADDR,
            conn.local.address.packed,
        )
    return IkePolicy(
        name=conn.name,
        local_address=str(conn.local.address),
        remote_address=None if conn.remote.address is None else str(conn.remote.address),
        local_id=(int(local_id[0]), bytes(local_id[1])),
        remote_id=None if conn.remote.id is None else (int(conn.remote.id[0]), bytes(conn.remote.id[1])),
        psk=conn.psk.reveal() if conn.psk is not None else b"",
        ike_proposals=list(conn.ike_proposals),
        children=children,
        force_encap=bool(conn.encap),
        dpd_delay=float(conn.dpd_delay or 0),
        remote_port=int(conn.remote.port),
        rekey_time=float(conn.rekey_time),
        reauth_time=float(conn.reauth_time),
        dpd_action=str(getattr(conn, "dpd_action", "clear")),
        remote_host=getattr(conn.remote, "dns_name", None),
        auth=str(getattr(conn, "auth", "psk")),
        credential=getattr(conn, "credential", None),
        ca_certs=list(getattr(conn, "ca_certs", ())),
        auth_method=str(getattr(conn, "auth_method", "signature")),
    )


def _certificates_digest(certificates: List[Any]) -> str:
    """SHA-256 over the DER certificates: a reload with other certificate files restarts the SA."""
    digest = hashlib.sha256()
    for certificate in certificates:
        digest.update(certificate.public_bytes(serialization.Encoding.DER))
    return digest.hexdigest()


def policy_signature(policy: IkePolicy) -> tuple:
    """A comparable summary of everything that shapes an IKE SA: a reload that changes it restarts the SA."""

    children = tuple(
        (
            name,
            tuple(c.local_ts),
            tuple(c.remote_ts),
            tuple(str(p) for p in c.esp_proposals),
            c.start_action,
        )
        for name, c in sorted(policy.children.items())
    )
    return (
        policy.local_address,
        policy.remote_address,
        policy.remote_host,
        policy.local_id,
        policy.remote_id,
        policy.psk,
        tuple(str(p) for p in policy.ike_proposals),
        children,
        policy.force_encap,
        policy.dpd_delay,
        policy.remote_port,
        policy.rekey_time,
        policy.reauth_time,
        policy.dpd_action,
        policy.auth,
        policy.auth_method,
        _certificates_digest(
            [policy.credential.certificate, *policy.credential.intermediates] if policy.credential else []
        ),
        _certificates_digest(policy.ca_certs),
    )
