"""Loading the daemon configuration: file -> document -> schema check -> semantic checks -> model.

``load_config(path)`` reads JSON always and YAML when PyYAML is importable (by extension;
other names are sniffed).  ``parse_config(data, source)`` validates a document already read.
Both raise :class:`~.errors.ConfigError` listing every problem as
``<file>: <field path>: <message>``; nothing is half-applied.

Checks beyond the schema (which :mod:`.validate` applies, with jsonschema or the built-in
validator): duplicate keys, addresses, identities, proposal strings, traffic selectors,
pre-shared key syntax and strength (:func:`psk_weakness`, unless ``allow_weak_psk``), psk_file
existence and permissions (and, in :func:`load_config`, the permissions of a configuration file
that holds a psk itself), listen coverage, unambiguous
connections, a %any peer never started, and selector families present on both sides.  With
``auth: pubkey`` the certificate, chain, private key (0600 like psk_file, and matching the
certificate) and CA certificates (which must be CAs) are read and checked, and the local id must
be an identity of the certificate.
A pre-shared key never reaches a message: messages are composed without it, and as a last
line of defence every PSK text met while loading is scrubbed from them.
"""

from __future__ import annotations

import os
import shlex
import stat
from typing import Any, Dict, List, Optional, Tuple

from ..ids import ProtocolId
from ..ike.impair import ImpairError
from ..ike.impair import parse as parse_impairment
from . import schema as defaults
from .build_child import ChildParts
from .build_route import RouteParts
from .credentials import _PUBKEY_KEYS, CredentialParts
from .documents import _problem, key_problems, parse_document
from .errors import ConfigError, Path, Problem, format_path
from .identity import Identity, IdentityError, parse_identity
from .model import (
    ChildConfig,
    ConfigDiff,
    ConnectionConfig,
    Endpoint,
    EngineConfig,
    IPAddress,
    Settings,
    config_digest,
    connection_digest,
    diff_configs,
)
from .peer_name import parse_peer_address
from .psk import _WEAK_PSK_FIX, _strip_newline, decode_psk, psk_weakness
from .secret import Secret
from .validate import schema_violations, type_phrase

__all__ = [
    "ConfigDiff",
    "ConfigError",
    "config_digest",
    "connection_digest",
    "decode_psk",
    "diff_configs",
    "load_config",
    "parse_config",
    "parse_document",
    "psk_weakness",
]

REDACTED = "<redacted>"
_MIN_SCRUB_LENGTH = 4


def load_config(path: str) -> EngineConfig:
    """Read, validate and build the configuration in ``path``; raise ConfigError on any problem.

    A file that holds a pre-shared key itself (``psk``) must be as private as a psk_file: no
    access for group or others.
    """
    source = os.fspath(path)
    try:
        with open(source, "rb") as handle:
            mode = stat.S_IMODE(os.fstat(handle.fileno()).st_mode)
            raw = handle.read()
    except OSError as error:
        raise _problem(source, "", "cannot read the configuration: %s" % (error.strerror or error)) from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise _problem(source, "", "not UTF-8 text (byte offset %d)" % error.start) from None
    data = parse_document(text, source)
    exposed = _exposed_psks(data, source, mode)
    try:
        config = parse_config(data, source, base_dir=os.path.dirname(os.path.abspath(source)))
    except ConfigError as error:
        raise ConfigError([*exposed, *error.problems]) from None
    if exposed:
        raise ConfigError(exposed)
    return config


def _exposed_psks(data: Any, source: str, mode: int) -> List[Problem]:
    """A problem for each connection whose inline psk sits in a file that group or others can read."""
    if not mode & 0o077:
        return []
    connections = data.get("connections") if isinstance(data, dict) else None
    if not isinstance(connections, dict):
        return []
    return [
        Problem(
            source,
            format_path(("connections", name, "psk")),
            "holds a pre-shared key, but this configuration file is accessible by group or others "
            "(mode %04o); restrict it with chmod 600 %s, or move the key to a psk_file (mode 0600)"
            % (mode, shlex.quote(source)),
        )
        for name, conn in connections.items()
        if isinstance(conn, dict) and "psk" in conn
    ]


# -- building the model ---------------------------------------------------------------------------------------


class _Builder(CredentialParts, ChildParts, RouteParts):
    """The document to the model, collecting every problem (see parse_config)."""

    def build(self, data: Dict[str, Any]) -> Optional[EngineConfig]:
        settings = self.settings(data.get("settings", {}))
        connections: Dict[str, ConnectionConfig] = {}
        complete = settings is not None
        raw_connections = data.get("connections")
        if not isinstance(raw_connections, dict):
            return None
        for name, raw in raw_connections.items():
            if not isinstance(name, str):
                complete = False
                continue
            conn = self.attempt(self.connection, name, raw, settings or Settings())
            if conn is None:
                complete = False
            else:
                connections[name] = conn
        self.check_unique(connections)
        self.check_interfaces(connections, (settings or Settings()).tun_name)
        if not complete or settings is None:
            return None
        return EngineConfig(settings, connections)

    def settings(self, raw: Any) -> Optional[Settings]:
        path: Path = ("settings",)
        if not isinstance(raw, dict):
            return None
        attempt, get = self.attempt, self._get
        listen_texts = attempt(get, raw, "listen", path, "list", defaults.DEFAULT_LISTEN) or []
        ike_port = attempt(get, raw, "ike_port", path, "int", defaults.DEFAULT_IKE_PORT)
        impair = attempt(get, raw, "impair", path, "list", [])
        nat_t_port = attempt(get, raw, "nat_t_port", path, "int", defaults.DEFAULT_NAT_T_PORT)
        values = {
            "control_socket": attempt(
                get, raw, "control_socket", path, "str", defaults.DEFAULT_CONTROL_SOCKET
            ),
            "tun_name": attempt(get, raw, "tun_name", path, "str", defaults.DEFAULT_TUN_NAME),
            "tun_mtu": attempt(get, raw, "tun_mtu", path, "int", defaults.DEFAULT_TUN_MTU),
            "log_level": attempt(get, raw, "log_level", path, "str", defaults.DEFAULT_LOG_LEVEL),
            "dataplane": attempt(get, raw, "dataplane", path, "str", defaults.DEFAULT_DATAPLANE),
            "retransmit_timeout": attempt(
                get, raw, "retransmit_timeout", path, "number", defaults.DEFAULT_RETRANSMIT_TIMEOUT
            ),
            "retransmit_base": attempt(
                get, raw, "retransmit_base", path, "number", defaults.DEFAULT_RETRANSMIT_BASE
            ),
            "retransmit_tries": attempt(
                get, raw, "retransmit_tries", path, "int", defaults.DEFAULT_RETRANSMIT_TRIES
            ),
        }
        ok = True
        listen: List[IPAddress] = []
        for index, text in enumerate(listen_texts):
            address = self.address((*path, "listen", index), text)
            if address is None:
                ok = False
            elif address in listen:
                self.add((*path, "listen", index), "%s is listed twice" % address)
                ok = False
            else:
                listen.append(address)
        for wildcard in [a for a in listen if a.is_unspecified]:
            overlapping = [str(a) for a in listen if a.version == wildcard.version and not a.is_unspecified]
            if overlapping:
                self.add(
                    (*path, "listen"),
                    "%s already covers every IPv%d address; binding %s as well would fail"
                    % (wildcard, wildcard.version, ", ".join(overlapping)),
                )
                ok = False
        if ike_port is not None and ike_port == nat_t_port:
            self.add((*path, "nat_t_port"), "must differ from ike_port (%d)" % ike_port)
            ok = False
        for index, line in enumerate(impair or []):
            try:
                parse_impairment(line)
            except (ImpairError, AttributeError):
                self.add(
                    (*path, "impair", index), "%r is not an impairment: see pyike/ike/impair.py" % (line,)
                )
                ok = False
        if not ok or not listen or None in (ike_port, nat_t_port, impair, *values.values()):
            return None
        return Settings(
            listen=tuple(listen), ike_port=ike_port, nat_t_port=nat_t_port, impair=tuple(impair), **values
        )

    def connection(self, name: str, raw: Any, settings: Settings) -> Optional[ConnectionConfig]:
        path: Path = ("connections", name)
        if not isinstance(raw, dict):
            return None
        attempt, get = self.attempt, self._get
        local = attempt(
            lambda: self.endpoint((*path, "local"), get(raw, "local", path, "dict"), settings, True)
        )
        remote = attempt(
            lambda: self.endpoint((*path, "remote"), get(raw, "remote", path, "dict"), settings, False)
        )
        auth = attempt(get, raw, "auth", path, "str", defaults.DEFAULT_AUTH)
        allow_weak_psk = attempt(get, raw, "allow_weak_psk", path, "bool", defaults.DEFAULT_ALLOW_WEAK_PSK)
        psk, psk_file, credentials = None, None, None
        if auth == "pubkey":
            for key in ("psk", "psk_file", "allow_weak_psk"):
                if key in raw:
                    self.add((*path, key), "is not used with auth: pubkey; remove it, or set auth: psk")
            credentials = attempt(self.credentials, path, raw)
        else:
            if allow_weak_psk is not None:  # else the schema reports its type
                psk, psk_file = attempt(self.psk, path, raw, allow_weak_psk) or (None, None)
            for key in _PUBKEY_KEYS:
                if key in raw:
                    self.add((*path, key), "is only used with auth: pubkey")
        ike_proposals = attempt(
            lambda: self.proposals(
                (*path, "ike_proposals"),
                get(raw, "ike_proposals", path, "list", defaults.DEFAULT_IKE_PROPOSALS),
                ProtocolId.IKE,
            )
        )
        encap = attempt(get, raw, "encap", path, "bool", defaults.DEFAULT_ENCAP)
        dpd_delay = attempt(get, raw, "dpd_delay", path, "int", defaults.DEFAULT_DPD_DELAY)
        rekey_time = attempt(get, raw, "rekey_time", path, "int", defaults.DEFAULT_IKE_REKEY_TIME)
        dpd_action = attempt(get, raw, "dpd_action", path, "str", defaults.DEFAULT_DPD_ACTION)
        reauth_time = attempt(get, raw, "reauth_time", path, "int", defaults.DEFAULT_REAUTH_TIME)
        route = attempt(self.route_mode, path, raw)
        raw_children = attempt(get, raw, "children", path, "dict") or {}
        authenticator = credentials if auth == "pubkey" else psk
        ok = None not in (
            local,
            remote,
            auth,
            authenticator,
            ike_proposals,
            encap,
            dpd_delay,
            rekey_time,
            dpd_action,
        )
        if dpd_action == "trap" and remote is not None and remote.is_any:
            self.add(
                (*path, "dpd_action"),
                "cannot be 'trap' while remote.address is %any: a responder-only connection has no "
                "peer to initiate to",
            )
            ok = False
        if credentials is not None and local is not None:
            local = self.local_identity(path, raw, local, credentials.credential.certificate)
            ok = ok and local is not None
        if local is not None and local.address is not None and not settings.covers(local.address):
            self.add(
                (*path, "local", "address"),
                "%s is not covered by settings.listen (%s)"
                % (local.address, ", ".join(str(a) for a in settings.listen)),
            )
            ok = False
        if local is not None and remote is not None and remote.address is not None:
            if local.address is not None and local.address.version != remote.address.version:
                self.add(
                    (*path, "remote", "address"),
                    "%s is IPv%d but local.address %s is IPv%d"
                    % (remote.address, remote.address.version, local.address, local.address.version),
                )
                ok = False
        children: Dict[str, ChildConfig] = {}
        for child_name, child_raw in raw_children.items():
            child = attempt(self.child, (*path, "children", child_name), child_name, child_raw, remote)
            if child is None:
                ok = False
            else:
                children[child_name] = child
        if reauth_time is None or route is None:
            ok = False
        if not children:
            ok = False
        if not ok:
            return None
        return ConnectionConfig(
            name=name,
            local=local,
            remote=remote,
            psk=psk,
            ike_proposals=ike_proposals,
            children=children,
            auth=auth,
            psk_file=psk_file,
            allow_weak_psk=bool(allow_weak_psk),
            encap=encap,
            dpd_delay=dpd_delay,
            rekey_time=rekey_time,
            reauth_time=reauth_time,
            dpd_action=dpd_action,
            mode=route[0],
            interface=route[1],
            **(credentials.fields() if credentials is not None else {}),
        )

    def endpoint(
        self, path: Path, raw: Dict[str, Any], settings: Settings, is_local: bool
    ) -> Optional[Endpoint]:
        address_text = self._get(raw, "address", path, "str")
        address: Optional[IPAddress] = None
        dns_name: Optional[str] = None
        ok = True
        if address_text.strip() == "%any":
            if is_local:
                self.add((*path, "address"), "the local address must be a concrete address, not %any")
                return None
        elif not is_local:
            try:
                address, dns_name = parse_peer_address(address_text)
            except ValueError as error:
                self.add((*path, "address"), str(error))
                return None
            if dns_name is not None and "id" not in raw:
                self.add(
                    (*path, "id"),
                    "is required when remote.address is a DNS name (%s): its address may change, so "
                    "say which identity the peer authenticates as (the name itself, fqdn:%s, is usual)"
                    % (dns_name, dns_name),
                )
                ok = False
        else:
            address = self.address((*path, "address"), address_text)
            if address is None:
                return None
        if address is not None:
            if address.is_unspecified or address.is_multicast:
                hint = "" if is_local else "; use %any to accept any peer"
                self.add((*path, "address"), "%s is not a unicast address%s" % (address, hint))
                ok = False
        identity: Optional[Identity] = None
        if "id" in raw:
            id_text = self._get(raw, "id", path, "str")
            try:
                identity = parse_identity(id_text, allow_any=not is_local)
            except IdentityError as error:
                self.add((*path, "id"), str(error))
                ok = False
        elif address is not None:
            identity = Identity.from_address(address)
        port = settings.ike_port if is_local else self._get(raw, "port", path, "int", settings.ike_port)
        if not ok:
            return None
        return Endpoint(address, identity, port, dns_name)

    def psk(
        self, path: Path, raw: Dict[str, Any], allow_weak: bool
    ) -> Tuple[Optional[Secret], Optional[str]]:
        if ("psk" in raw) == ("psk_file" in raw):
            return None, None  # the schema's oneOf reports it
        if "psk" in raw:
            text = self._get(raw, "psk", path, "str")
            self.secret_texts.append(text)
            try:
                value = decode_psk(text)
            except ValueError as error:
                self.add((*path, "psk"), "the pre-shared key %s" % error)
                return None, None
            return self.strong_enough((*path, "psk"), "the pre-shared key", value, allow_weak), None
        file_path = self.file_path(self._get(raw, "psk_file", path, "str"))
        value = self.psk_from_file((*path, "psk_file"), file_path)
        if value is None:
            return None, file_path
        where = "the pre-shared key in %s" % file_path
        return self.strong_enough((*path, "psk_file"), where, value, allow_weak), file_path

    def strong_enough(self, path: Path, what: str, value: bytes, allow_weak: bool) -> Optional[Secret]:
        """``value`` as a Secret, unless it is too weak and the connection did not allow that."""
        reason = "" if allow_weak else psk_weakness(value)
        if reason:
            self.add(path, "%s %s; %s" % (what, reason, _WEAK_PSK_FIX))
            return None
        return Secret(value)

    def psk_from_file(self, path: Path, file_path: str) -> Optional[bytes]:
        """The decoded key in ``file_path``; None (and a problem) when it is unusable."""
        raw = self.read_protected(path, file_path)
        if raw is None:
            return None
        content = _strip_newline(raw)
        try:
            text = content.decode("utf-8")
        except UnicodeDecodeError:
            if not content:
                self.add(path, "%s is empty" % file_path)
                return None
            return content  # binary key material, used as is
        self.secret_texts.append(text)
        try:
            return decode_psk(text)
        except ValueError as error:
            self.add(path, "the pre-shared key in %s %s" % (file_path, error))
            return None

    def check_unique(self, connections: Dict[str, ConnectionConfig]) -> None:
        """A responder picks the connection by addresses and identities: no two may share all four."""
        seen: Dict[Tuple[Any, ...], str] = {}
        for name, conn in connections.items():
            key = (conn.local.address, conn.remote.address_text, conn.local.id, conn.remote.id)
            if key in seen:
                self.add(
                    ("connections", name),
                    "has the same local and remote addresses and identities as connection %r, so a "
                    "peer could not be told apart; give one of them a different id" % seen[key],
                )
            else:
                seen[key] = name


def _raw_psk_texts(data: Any) -> List[str]:
    texts: List[str] = []
    connections = data.get("connections") if isinstance(data, dict) else None
    if isinstance(connections, dict):
        for conn in connections.values():
            if isinstance(conn, dict) and "psk" in conn and not isinstance(conn["psk"], (dict, list)):
                texts.append(str(conn["psk"]))
    return texts


def _scrub(text: str, secrets: List[str]) -> str:
    for secret in sorted(secrets, key=len, reverse=True):
        if len(secret) >= _MIN_SCRUB_LENGTH and secret in text:
            text = text.replace(secret, REDACTED)
    return text


def parse_config(
    data: Any, source: str = "<config>", base_dir: Optional[str] = None, engine: Optional[str] = None
) -> EngineConfig:
    """Validate a configuration document (already parsed from JSON or YAML) and build the model.

    ``source`` names the file in messages; relative psk_file paths resolve against
    ``base_dir`` (default: the directory of ``source`` if it is a path, else the working
    directory).  ``engine`` picks the schema validator (see :func:`.validate.schema_violations`).
    """
    problems: List[Problem] = []

    def add(path: Path, message: str) -> None:
        problem = Problem(source, format_path(path), message)
        if problem not in problems:
            problems.append(problem)

    if base_dir is None and os.path.isfile(source):
        base_dir = os.path.dirname(os.path.abspath(source))
    if data is None:
        raise _problem(source, "", "the configuration is empty; expected a mapping with 'connections'")
    if not isinstance(data, dict):
        raise _problem(
            source, "", "expected a mapping with 'connections' at the top level, got %s" % type_phrase(data)
        )
    key_problems(data, (), add)
    violations = schema_violations(data, defaults.SCHEMA, engine)
    for path, message in violations:
        add(path, message)
    flagged = {format_path(path) for path, _message in violations}

    def add_semantic(path: Path, message: str) -> None:
        if format_path(path) not in flagged:  # one message per field: the schema's comes first
            add(path, message)

    builder = _Builder(add_semantic, base_dir, schema_failed=bool(violations))
    config = builder.build(data)
    if problems or config is None:
        secrets = _raw_psk_texts(data) + builder.secret_texts
        if not problems:  # pragma: no cover - every refusal adds a problem
            problems.append(Problem(source, "", "invalid configuration"))
        raise ConfigError(
            Problem(p.source, _scrub(p.path, secrets), _scrub(p.message, secrets)) for p in problems
        )
    return EngineConfig(config.settings, config.connections, source)
