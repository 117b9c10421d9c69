"""The daemon configuration after loading: parsed, validated, immutable values.

Built by :func:`.load.parse_config`; the ike and runtime layers read it.  Proposals are
:class:`~..crypto.proposals.ProposalSpec` lists, traffic selectors
:class:`~..selectors.TrafficSelector`, identities :class:`~.identity.Identity`
``(IdType, bytes)``, and the PSK a :class:`~.secret.Secret` that never shows in a repr.

:func:`config_digest` / :func:`connection_digest` and :func:`diff_configs` let a reload tell
which connections were added, removed or changed.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Tuple, Union

from cryptography.hazmat.primitives import serialization

from ..crypto.errors import ProposalError
from ..crypto.proposals import ProposalSpec, parse_proposal
from ..crypto.transforms import is_supported, transform_name
from ..ids import DhId, ProtocolId, TransformType
from ..selectors import SelectorError, TrafficSelector
from . import schema as defaults
from . import schema_child as child_defaults
from .identity import Identity, IdentityError, parse_identity
from .secret import Secret

IPAddress = Union[ipaddress.IPv4Address, ipaddress.IPv6Address]

__all__ = [
    "ChildConfig",
    "ConfigDiff",
    "ConnectionConfig",
    "Endpoint",
    "EngineConfig",
    "Identity",
    "IdentityError",
    "ProposalSpec",
    "RouteInterface",
    "Secret",
    "SelectorError",
    "Settings",
    "TrafficSelector",
    "config_digest",
    "connection_digest",
    "default_proposals",
    "diff_configs",
    "parse_identity",
    "parse_proposal_text",
]

_PROTOCOL_DEFAULTS = {
    ProtocolId.IKE: defaults.DEFAULT_IKE_PROPOSAL_STRINGS,
    ProtocolId.ESP: child_defaults.DEFAULT_ESP_PROPOSAL_STRINGS,
}


# -- proposals: the one place that calls crypto.proposals --------------------------------------------------


def default_proposals(protocol: int) -> List[ProposalSpec]:
    """What the keyword ``default`` stands for, restricted to transforms available here."""
    specs = []
    for text in _PROTOCOL_DEFAULTS[ProtocolId(protocol)]:
        spec = parse_proposal(text, protocol)
        kept = {
            ttype: [t for t in alternatives if is_supported(ttype, t[0], t[1])]
            for ttype, alternatives in spec.items()
        }
        spec = ProposalSpec(protocol, kept)
        spec.validate()
        specs.append(spec)
    return specs


def parse_proposal_text(text: str, protocol: int) -> List[ProposalSpec]:
    """One configured proposal string (``default`` gives several); raises ProposalError.

    Besides strongSwan's syntax rules, every transform must be runnable with the installed
    cryptography (ML-KEM needs cryptography 47 or later, for example).
    """
    if isinstance(text, str) and text.strip().lower() == "default":
        return default_proposals(protocol)
    spec = parse_proposal(text, protocol)
    for ttype, alternatives in spec.items():
        for transform_id, key_length in alternatives:
            if not is_supported(ttype, transform_id, key_length):
                raise ProposalError(
                    "algorithm not available with the installed cryptography library",
                    transform_name(ttype, transform_id, key_length),
                    text,
                )
    return [spec]


# -- the model ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Settings:
    """Daemon-wide settings (``settings:``); every field has the schema's default."""

    control_socket: str = defaults.DEFAULT_CONTROL_SOCKET
    tun_name: str = defaults.DEFAULT_TUN_NAME
    tun_mtu: int = defaults.DEFAULT_TUN_MTU
    listen: Tuple[IPAddress, ...] = tuple(ipaddress.ip_address(a) for a in defaults.DEFAULT_LISTEN)
    ike_port: int = defaults.DEFAULT_IKE_PORT
    nat_t_port: int = defaults.DEFAULT_NAT_T_PORT
    log_level: str = defaults.DEFAULT_LOG_LEVEL
    dataplane: str = defaults.DEFAULT_DATAPLANE  # auto | kernel | userspace
    retransmit_timeout: float = defaults.DEFAULT_RETRANSMIT_TIMEOUT
    retransmit_base: float = defaults.DEFAULT_RETRANSMIT_BASE
    retransmit_tries: int = defaults.DEFAULT_RETRANSMIT_TRIES
    impair: Tuple[str, ...] = ()  # lab tests only (ike/impair.py), with the daemon's --allow-impair

    def covers(self, address: IPAddress) -> bool:
        """Whether the listening sockets receive on ``address``. '::' listed without any IPv4 address
        is dual-stack, as on Linux by default: it receives IPv4 too (runtime/udp.py opens it so)."""
        dual_stack = not any(a.version == 4 for a in self.listen)
        return any(
            a == address
            or (a.is_unspecified and (a.version == address.version or (dual_stack and a.version == 6)))
            for a in self.listen
        )

    def as_dict(self) -> Dict[str, Any]:
        return {
            "control_socket": self.control_socket,
            "tun_name": self.tun_name,
            "tun_mtu": self.tun_mtu,
            "listen": [str(a) for a in self.listen],
            "ike_port": self.ike_port,
            "nat_t_port": self.nat_t_port,
            "log_level": self.log_level,
            "dataplane": self.dataplane,
            "retransmit_timeout": self.retransmit_timeout,
            "retransmit_base": self.retransmit_base,
            "retransmit_tries": self.retransmit_tries,
            "impair": list(self.impair),
        }


@dataclass(frozen=True)
class Endpoint:
    """One end of a connection.  ``address`` None is ``%any`` and ``id`` None accepts any
    identity (both only on the remote end); ``dns_name`` is a remote address given as a DNS name
    (then ``address`` is None), resolved by the daemon when it initiates."""

    address: Optional[IPAddress]
    id: Optional[Identity]
    port: int = defaults.DEFAULT_IKE_PORT
    dns_name: Optional[str] = None

    @property
    def is_any(self) -> bool:
        return self.address is None and self.dns_name is None

    @property
    def address_text(self) -> str:
        """The configured address: an IP address, a DNS name or %any."""
        return self.dns_name or ("%any" if self.address is None else str(self.address))

    def as_dict(self, exact: bool = False) -> Dict[str, Any]:
        result: Dict[str, Any] = {
            "address": self.address_text,
            "id": "%any" if self.id is None else str(self.id),
            "id_type": None if self.id is None else self.id.id_type.name,
            "port": self.port,
        }
        if exact and self.id is not None:
            result["id_data"] = self.id.data.hex()
        return result


@dataclass(frozen=True)
class ChildConfig:
    """One Child SA of a connection."""

    name: str
    local_ts: Tuple[TrafficSelector, ...]
    remote_ts: Tuple[TrafficSelector, ...]
    esp_proposals: Tuple[ProposalSpec, ...]
    start_action: str = child_defaults.DEFAULT_START_ACTION
    close_action: str = child_defaults.DEFAULT_CLOSE_ACTION
    rekey_time: int = child_defaults.DEFAULT_CHILD_REKEY_TIME
    life_bytes: int = child_defaults.DEFAULT_LIFE_BYTES
    life_packets: int = child_defaults.DEFAULT_LIFE_PACKETS
    rekey_bytes: int = child_defaults.DEFAULT_REKEY_BYTES
    rekey_packets: int = child_defaults.DEFAULT_REKEY_PACKETS

    @property
    def pfs(self) -> bool:
        """Whether a proposal asks for a fresh key exchange (a DH group in esp_proposals)."""
        return any(
            method != DhId.NONE for spec in self.esp_proposals for method, _bits in spec.get(TransformType.DH)
        )

    def as_dict(self) -> Dict[str, Any]:
        return {
            "local_ts": [str(ts) for ts in self.local_ts],
            "remote_ts": [str(ts) for ts in self.remote_ts],
            "esp_proposals": [str(p) for p in self.esp_proposals],
            "start_action": self.start_action,
            "close_action": self.close_action,
            "rekey_time": self.rekey_time,
            "rekey_bytes": self.rekey_bytes,
            "life_bytes": self.life_bytes,
            "rekey_packets": self.rekey_packets,
            "life_packets": self.life_packets,
        }


@dataclass(frozen=True)
class RouteInterface:
    """The XFRM interface of a route-based connection (mode route): its name, the if_id that binds the
    Child SAs' states and policies to it, its addresses and MTU."""

    name: str
    if_id: int
    addresses: Tuple[str, ...] = ()
    mtu: Optional[int] = None

    def as_dict(self) -> Dict[str, Any]:
        return {"name": self.name, "if_id": self.if_id, "addresses": list(self.addresses), "mtu": self.mtu}


@dataclass(frozen=True)
class ConnectionConfig:
    """One connection: an IKE SA configuration and its Child SAs (in configuration order).

    ``psk`` is set for ``auth: psk`` (``allow_weak_psk`` says whether the loader let a short or
    one-character key through); for ``auth: pubkey`` the loader has read ``credential``
    (a :class:`~..crypto.certs.LocalCredential`: our certificate, its chain and the private key,
    which never shows) and ``ca_certs`` (the CA certificates that verify the peer).
    """

    name: str
    local: Endpoint
    remote: Endpoint
    psk: Optional[Secret]
    ike_proposals: Tuple[ProposalSpec, ...]
    children: Dict[str, ChildConfig]
    auth: str = defaults.DEFAULT_AUTH
    psk_file: Optional[str] = None
    allow_weak_psk: bool = defaults.DEFAULT_ALLOW_WEAK_PSK
    encap: bool = defaults.DEFAULT_ENCAP
    dpd_delay: int = defaults.DEFAULT_DPD_DELAY
    rekey_time: int = defaults.DEFAULT_IKE_REKEY_TIME
    reauth_time: int = defaults.DEFAULT_REAUTH_TIME
    dpd_action: str = defaults.DEFAULT_DPD_ACTION
    mode: str = defaults.DEFAULT_MODE
    interface: Optional[RouteInterface] = None  # mode route
    cert: Optional[str] = None  # the paths as resolved by the loader
    cert_chain: Optional[str] = None
    private_key: Optional[str] = None
    ca_cert_files: Tuple[str, ...] = ()
    auth_method: str = defaults.DEFAULT_SIGNATURE_METHOD
    credential: Optional[Any] = field(default=None, repr=False, compare=False)
    ca_certs: Tuple[Any, ...] = field(default=(), repr=False, compare=False)

    def child(self, name: str) -> ChildConfig:
        return self.children[name]

    def as_dict(self, fingerprint: bool = False) -> Dict[str, Any]:
        """A JSON-able view for listings; the PSK shows as ``<redacted>`` (``fingerprint``: its
        per-process fingerprint, for digests).  With certificates: their files, subjects and
        SHA-256 fingerprints (public facts), never the private key."""
        result: Dict[str, Any] = {
            "local": self.local.as_dict(exact=fingerprint),
            "remote": self.remote.as_dict(exact=fingerprint),
            "auth": self.auth,
            "psk": None if self.psk is None else (self.psk.fingerprint() if fingerprint else str(self.psk)),
            "psk_file": self.psk_file,
            "allow_weak_psk": self.allow_weak_psk,
            "ike_proposals": [str(p) for p in self.ike_proposals],
            "encap": self.encap,
            "dpd_delay": self.dpd_delay,
            "dpd_action": self.dpd_action,
            "rekey_time": self.rekey_time,
            "reauth_time": self.reauth_time,
            "children": {name: child.as_dict() for name, child in self.children.items()},
        }
        if self.mode != defaults.DEFAULT_MODE:
            result.update(mode=self.mode, interface=self.interface.as_dict() if self.interface else None)
        if self.auth == "pubkey":
            result.update(
                {
                    "cert": self.cert,
                    "cert_chain": self.cert_chain,
                    "private_key": self.private_key,
                    "ca_certs": list(self.ca_cert_files),
                    "auth_method": self.auth_method,
                    "cert_subject": _subject(self.credential.certificate) if self.credential else None,
                    "cert_fingerprints": [_fingerprint(c) for c in _chain(self.credential)],
                    "ca_subjects": [_subject(c) for c in self.ca_certs],
                }
            )
            if fingerprint:
                result["ca_fingerprints"] = [_fingerprint(c) for c in self.ca_certs]
        return result


def _chain(credential: Any) -> List[Any]:
    if credential is None:
        return []
    return [credential.certificate, *credential.intermediates]


def _subject(certificate: Any) -> str:
    return certificate.subject.rfc4514_string()


def _fingerprint(certificate: Any) -> str:
    """SHA-256 of the DER certificate: public, and changes whenever the file's certificate does."""
    return hashlib.sha256(certificate.public_bytes(serialization.Encoding.DER)).hexdigest()


@dataclass(frozen=True)
class EngineConfig:
    """A whole configuration: settings and connections by name (in configuration order)."""

    settings: Settings
    connections: Dict[str, ConnectionConfig]
    source: str = field(default="<config>", compare=False)

    def connection(self, name: str) -> ConnectionConfig:
        return self.connections[name]

    def as_dict(self) -> Dict[str, Any]:
        """JSON-able and free of secrets (for ``list-conns`` and logs)."""
        return {
            "settings": self.settings.as_dict(),
            "connections": {name: conn.as_dict() for name, conn in self.connections.items()},
        }


# -- digests and reload diffs -------------------------------------------------------------------------------


def _digest(value: Any) -> str:
    text = json.dumps(value, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def connection_digest(connection: ConnectionConfig) -> str:
    """A hex digest that changes whenever anything in the connection changes, the PSK included.

    The PSK enters through its keyed fingerprint, so digests compare only within one process.
    """
    return _digest(connection.as_dict(fingerprint=True))


def config_digest(config: EngineConfig) -> str:
    """Digest of a whole configuration (settings and every connection)."""
    return _digest(
        {
            "settings": config.settings.as_dict(),
            "connections": {name: connection_digest(conn) for name, conn in config.connections.items()},
        }
    )


@dataclass(frozen=True)
class ConfigDiff:
    """What a reload changes: connection names added, removed, changed or unchanged."""

    added: Tuple[str, ...]
    removed: Tuple[str, ...]
    changed: Tuple[str, ...]
    unchanged: Tuple[str, ...]
    settings_changed: bool

    @property
    def empty(self) -> bool:
        return not (self.added or self.removed or self.changed or self.settings_changed)


def diff_configs(old: Optional[EngineConfig], new: EngineConfig) -> ConfigDiff:
    """Compare the running configuration (None before the first load) with a new one."""
    old_connections: Dict[str, ConnectionConfig] = {} if old is None else old.connections
    added = tuple(name for name in new.connections if name not in old_connections)
    removed = tuple(name for name in old_connections if name not in new.connections)
    changed: List[str] = []
    unchanged: List[str] = []
    for name, conn in new.connections.items():
        if name in old_connections:
            same = connection_digest(old_connections[name]) == connection_digest(conn)
            (unchanged if same else changed).append(name)
    settings_changed = old is not None and old.settings != new.settings
    return ConfigDiff(added, removed, tuple(changed), tuple(unchanged), settings_changed)
