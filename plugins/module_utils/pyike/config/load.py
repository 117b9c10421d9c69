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

import base64
import binascii
import dataclasses
import ipaddress
import json
import os
import shlex
import stat
from typing import Any, Callable, Dict, List, Optional, Tuple

from cryptography import x509

from ..crypto.certs import (
    CertLoadError,
    LocalCredential,
    is_ca,
    load_ca_bundle,
    load_certificates,
    parse_private_key,
    subject_text,
)
from ..crypto.certs_verify import identity_matches, san_text
from ..crypto.errors import ProposalError
from ..ids import IdType, ProtocolId
from ..ike.impair import ImpairError
from ..ike.impair import parse as parse_impairment
from ..selectors import SelectorError, TrafficSelector
from . import schema as defaults
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
    parse_proposal_text,
)
from .peer_name import parse_peer_address
from .secret import Secret
from .validate import schema_violations, type_phrase

try:  # optional on targets: Debian's python3-yaml
    import yaml
except ImportError:  # pragma: no cover - depends on the interpreter
    yaml = None

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
_YAML_SUFFIXES = (".yaml", ".yml")
_MISSING = object()


# -- reading documents --------------------------------------------------------------------------------------


class _Mapping(dict):
    """A JSON object / YAML mapping that remembers keys it saw twice or could not keep."""

    def __init__(self) -> None:
        super().__init__()
        self.duplicates: List[str] = []
        self.bad_keys: List[Any] = []


def _json_pairs(pairs: List[Tuple[str, Any]]) -> _Mapping:
    mapping = _Mapping()
    for key, value in pairs:
        if key in mapping:
            mapping.duplicates.append(key)
        mapping[key] = value
    return mapping


def _json_constant(name: str) -> Any:
    raise ValueError("%s is not valid JSON" % name)


def _problem(source: str, where: str, message: str) -> ConfigError:
    return ConfigError([Problem(source, where, message)])


def _load_json(text: str, source: str) -> Any:
    try:
        return json.loads(text, object_pairs_hook=_json_pairs, parse_constant=_json_constant)
    except json.JSONDecodeError as error:
        where = "line %d column %d" % (error.lineno, error.colno)
        raise _problem(source, where, "JSON syntax error: %s" % error.msg) from None
    except ValueError as error:
        raise _problem(source, "", "JSON syntax error: %s" % error) from None


if yaml is not None:

    class _YamlLoader(yaml.SafeLoader):
        """SafeLoader whose mappings record duplicate and non-string keys instead of hiding them."""

    def _construct_mapping(loader: _YamlLoader, node: Any) -> _Mapping:
        mapping = _Mapping()
        explicit = [(k, v) for k, v in node.value if k.tag != "tag:yaml.org,2002:merge"]
        seen = []
        for key_node, _value_node in explicit:
            key = loader.construct_object(key_node, deep=True)
            if key in seen and isinstance(key, str):
                mapping.duplicates.append(key)
            seen.append(key)
        loader.flatten_mapping(node)
        for key_node, value_node in node.value:
            key = loader.construct_object(key_node, deep=True)
            if not isinstance(key, str):
                if key not in mapping.bad_keys:
                    mapping.bad_keys.append(key)
                continue
            mapping[key] = loader.construct_object(value_node, deep=True)
        return mapping

    _YamlLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def _load_yaml(text: str, source: str) -> Any:
    if yaml is None:
        raise _problem(
            source,
            "",
            "reading YAML needs PyYAML, which is not installed: install python3-yaml (or pip install "
            "pyyaml), or write the configuration as JSON (a .json file)",
        )
    loader = _YamlLoader(text)
    try:
        return loader.get_single_data()
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        where = "line %d column %d" % (mark.line + 1, mark.column + 1) if mark is not None else ""
        reason = error.problem or error.context or "invalid document"
        raise _problem(source, where, "YAML syntax error: %s" % reason) from None
    except yaml.YAMLError as error:
        raise _problem(source, "", "YAML error: %s" % type(error).__name__) from None
    finally:
        loader.dispose()


def parse_document(text: str, source: str) -> Any:
    """The document in ``text``: JSON for ``*.json``, YAML for ``*.yaml``/``*.yml``, else by content."""
    suffix = os.path.splitext(source)[1].lower()
    if suffix == ".json":
        return _load_json(text, source)
    if suffix in _YAML_SUFFIXES:
        return _load_yaml(text, source)
    if text.lstrip().startswith("{") or yaml is None:
        return _load_json(text, source)
    return _load_yaml(text, source)


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


# -- secrets --------------------------------------------------------------------------------------------------


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


# -- building the model ---------------------------------------------------------------------------------------


class _Skip(Exception):
    """A value has the wrong type; the schema check reports it, the builder skips the object."""

    def __init__(self, path: Path) -> None:
        super().__init__(format_path(path))
        self.path = path


def _integer(value: Any) -> Optional[int]:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return None


class _Builder:
    def __init__(
        self, add: Callable[[Path, str], None], base_dir: Optional[str], schema_failed: bool
    ) -> None:
        self.add = add
        self.base_dir = base_dir
        self.schema_failed = schema_failed
        self.secret_texts: List[str] = []

    # typed access; a wrong type means the schema already complained
    def _get(self, raw: Any, key: str, path: Path, kind: str, default: Any = _MISSING) -> Any:
        if not isinstance(raw, dict):
            raise _Skip(path)
        if key not in raw:
            if default is _MISSING:
                raise _Skip((*path, key))
            return list(default) if isinstance(default, list) else default
        value = raw[key]
        if kind == "int":
            number = _integer(value)
            if number is None:
                raise _Skip((*path, key))
            return number
        if kind == "number":
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise _Skip((*path, key))
            return float(value)
        checks = {"str": str, "bool": bool, "dict": dict, "list": list}
        if not isinstance(value, checks[kind]):
            raise _Skip((*path, key))
        if kind == "list" and not all(isinstance(item, str) for item in value):
            raise _Skip((*path, key))
        return value

    def skipped(self, skip: _Skip) -> None:
        if not self.schema_failed:
            self.add(skip.path, "unexpected value (the loader and the schema disagree)")

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

    def address(self, path: Path, text: Any) -> Optional[IPAddress]:
        if not isinstance(text, str):
            return None
        try:
            return ipaddress.ip_address(text.strip())
        except ValueError:
            self.add(path, "%r is not an IPv4 or IPv6 address" % text)
            return None

    def attempt(self, function: Callable[..., Any], *args: Any) -> Any:
        """``function(*args)``, or None when it met a value of the wrong type."""
        try:
            return function(*args)
        except _Skip as skip:
            self.skipped(skip)
            return None

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
        if reauth_time is None:
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

    def credentials(self, path: Path, raw: Dict[str, Any]) -> Optional[_Credentials]:
        """``auth: pubkey``: our certificate (and chain), its private key and the CA certificates.

        Every file is read now, so a broken one refuses the configuration (at start and on
        reload) with the file and the field named; no message carries key material.
        """
        get = self._get
        cert_path = self.file_path(get(raw, "cert", path, "str"))
        chain_text = get(raw, "cert_chain", path, "str", None)
        key_text = get(raw, "private_key", path, "str")
        if "-----BEGIN" in key_text or "\n" in key_text:
            self.secret_texts.append(key_text)
            self.add(
                (*path, "private_key"),
                "must be the path of the key file, not the key itself (keep the key out of the configuration)",
            )
            return None
        key_path = self.file_path(key_text)
        ca_texts = get(raw, "ca_certs", path, "list")
        method = get(raw, "auth_method", path, "str", defaults.DEFAULT_SIGNATURE_METHOD)
        chain_path = None if chain_text is None else self.file_path(chain_text)
        ok = True
        certificate, intermediates = None, []
        try:
            certificate, *intermediates = load_certificates(cert_path)
        except CertLoadError as error:
            self.add((*path, "cert"), str(error))
            ok = False
        if chain_path is not None:
            try:
                intermediates += load_certificates(chain_path)
            except CertLoadError as error:
                self.add((*path, "cert_chain"), str(error))
                ok = False
        key = None
        key_data = self.read_protected((*path, "private_key"), key_path)
        if key_data is None:
            ok = False
        else:
            try:
                key = parse_private_key(key_data, key_path)
            except CertLoadError as error:
                message = str(error)
                if "the private key is encrypted" in message:
                    message = "%s: the private key is encrypted; store it unencrypted (chmod 600)" % key_path
                self.add((*path, "private_key"), message)
                ok = False
        ca_certs: List[Any] = []
        ca_files: List[str] = []
        for index, text in enumerate(ca_texts):
            ca_path = self.file_path(text)
            ca_files.append(ca_path)
            try:
                found = load_ca_bundle(ca_path)
            except CertLoadError as error:
                self.add((*path, "ca_certs", index), str(error))
                ok = False
                continue
            for anchor in found:
                problem = _not_a_ca(anchor)
                if problem:
                    self.add((*path, "ca_certs", index), "%s: %s" % (ca_path, problem))
                    ok = False
                elif anchor not in ca_certs:
                    ca_certs.append(anchor)
        if not ok or certificate is None or key is None:
            return None
        try:
            credential = LocalCredential(certificate, key, intermediates, source=key_path)
        except CertLoadError as error:
            self.add((*path, "private_key"), str(error))
            return None
        return _Credentials(
            credential, tuple(ca_certs), cert_path, chain_path, key_path, tuple(ca_files), method
        )

    def local_identity(
        self, path: Path, raw: Dict[str, Any], local: Endpoint, certificate: Any
    ) -> Optional[Endpoint]:
        """With a certificate the local id must be one of its identities (RFC 4945 §3.1), or the peer
        rejects it; without ``local.id`` it is the certificate's subject DN, as strongSwan does."""
        explicit = isinstance(raw.get("local"), dict) and "id" in raw["local"]
        if not explicit:
            return dataclasses.replace(
                local, id=Identity(IdType.ID_DER_ASN1_DN, certificate.subject.public_bytes())
            )
        if local.id is not None and not identity_matches(certificate, local.id):
            self.add(
                (*path, "local", "id"),
                "%s is not an identity of the certificate %s (subjectAltName: %s); the peer would reject it"
                % (local.id, subject_text(certificate), san_text(certificate)),
            )
            return None
        return local

    def file_path(self, text: str) -> str:
        """A configured file name: ``~`` expanded, relative to the configuration file's directory."""
        return os.path.normpath(os.path.join(self.base_dir or os.getcwd(), os.path.expanduser(text)))

    def read_protected(self, path: Path, file_path: str) -> Optional[bytes]:
        """The content of a secret file (PSK or private key), which must be a regular file that
        neither group nor others can access; None (and a problem) otherwise."""
        try:
            with open(file_path, "rb") as handle:
                info = os.fstat(handle.fileno())
                if not stat.S_ISREG(info.st_mode):
                    self.add(path, "%s is not a regular file" % file_path)
                    return None
                mode = stat.S_IMODE(info.st_mode)
                if mode & 0o077:
                    self.add(
                        path,
                        "%s is accessible by group or others (mode %04o); restrict it with chmod 600"
                        % (file_path, mode),
                    )
                    return None
                return handle.read()
        except FileNotFoundError:
            self.add(path, "%s does not exist" % file_path)
            return None
        except OSError as error:
            self.add(path, "cannot read %s: %s" % (file_path, error.strerror or type(error).__name__))
            return None

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

    def proposals(self, path: Path, items: List[str], protocol: int) -> Optional[Tuple[Any, ...]]:
        specs: List[Any] = []
        ok = True
        for index, text in enumerate(items):
            try:
                parsed = parse_proposal_text(text, protocol)
            except ProposalError as error:
                self.add((*path, index), str(error))
                ok = False
                continue
            specs.extend(spec for spec in parsed if spec not in specs)
        return tuple(specs) if ok else None

    def selectors(self, path: Path, items: List[str]) -> Optional[Tuple[TrafficSelector, ...]]:
        result: List[TrafficSelector] = []
        ok = True
        for index, text in enumerate(items):
            try:
                selector = TrafficSelector.parse(text)
            except SelectorError as error:
                self.add((*path, index), "invalid traffic selector %r: %s" % (text, error))
                ok = False
                continue
            if selector in result:
                self.add((*path, index), "%r repeats selector %s" % (text, selector))
                ok = False
                continue
            result.append(selector)
        return tuple(result) if ok else None

    def child(self, path: Path, name: str, raw: Any, remote: Optional[Endpoint]) -> Optional[ChildConfig]:
        get = self._get
        local_ts = self.selectors((*path, "local_ts"), get(raw, "local_ts", path, "list"))
        remote_ts = self.selectors((*path, "remote_ts"), get(raw, "remote_ts", path, "list"))
        esp_proposals = self.proposals(
            (*path, "esp_proposals"),
            get(raw, "esp_proposals", path, "list", defaults.DEFAULT_ESP_PROPOSALS),
            ProtocolId.ESP,
        )
        start_action = get(raw, "start_action", path, "str", defaults.DEFAULT_START_ACTION)
        close_action = get(raw, "close_action", path, "str", defaults.DEFAULT_CLOSE_ACTION)
        rekey_time = get(raw, "rekey_time", path, "int", defaults.DEFAULT_CHILD_REKEY_TIME)
        life_bytes = get(raw, "life_bytes", path, "int", defaults.DEFAULT_LIFE_BYTES)
        life_packets = get(raw, "life_packets", path, "int", defaults.DEFAULT_LIFE_PACKETS)
        rekey_bytes = get(raw, "rekey_bytes", path, "int", defaults.DEFAULT_REKEY_BYTES)
        rekey_packets = get(raw, "rekey_packets", path, "int", defaults.DEFAULT_REKEY_PACKETS)
        ok = None not in (local_ts, remote_ts, esp_proposals)
        for unit, rekey, life in (
            ("bytes", rekey_bytes, life_bytes),
            ("packets", rekey_packets, life_packets),
        ):
            if rekey and life and life <= rekey:
                self.add(
                    (*path, "life_" + unit),
                    "%d must be greater than rekey_%s (%d): the hard limit comes after the rekey"
                    % (life, unit, rekey),
                )
                ok = False
        for key, action in (("start_action", start_action), ("close_action", close_action)):
            if action in ("start", "trap") and remote is not None and remote.is_any:
                self.add(
                    (*path, key),
                    "cannot be '%s' while remote.address is %%any: a responder-only connection has no "
                    "peer to initiate to" % action,
                )
                ok = False
        if local_ts and remote_ts:
            local_families = {ts.version for ts in local_ts}
            remote_families = {ts.version for ts in remote_ts}
            for side, mine, other_side, other in (
                ("remote_ts", remote_families, "local_ts", local_families),
                ("local_ts", local_families, "remote_ts", remote_families),
            ):
                for version in sorted(mine - other):
                    self.add(
                        (*path, side),
                        "has IPv%d selectors but %s has none, so that traffic could never match"
                        % (version, other_side),
                    )
                    ok = False
        if not ok:
            return None
        return ChildConfig(
            name=name,
            local_ts=local_ts,
            remote_ts=remote_ts,
            esp_proposals=esp_proposals,
            start_action=start_action,
            close_action=close_action,
            rekey_time=rekey_time,
            life_bytes=life_bytes,
            life_packets=life_packets,
            rekey_bytes=rekey_bytes,
            rekey_packets=rekey_packets,
        )

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


_PUBKEY_KEYS = ("cert", "cert_chain", "private_key", "ca_certs", "auth_method")


class _Credentials:
    """What ``auth: pubkey`` loaded, with the paths it came from."""

    def __init__(
        self,
        credential: LocalCredential,
        ca_certs: Tuple[Any, ...],
        cert: str,
        cert_chain: Optional[str],
        private_key: str,
        ca_files: Tuple[str, ...],
        auth_method: str,
    ) -> None:
        self.credential = credential
        self.ca_certs = ca_certs
        self.paths = (cert, cert_chain, private_key, ca_files)
        self.auth_method = auth_method

    def fields(self) -> Dict[str, Any]:
        cert, cert_chain, private_key, ca_files = self.paths
        return {
            "credential": self.credential,
            "ca_certs": self.ca_certs,
            "cert": cert,
            "cert_chain": cert_chain,
            "private_key": private_key,
            "ca_cert_files": ca_files,
            "auth_method": self.auth_method,
        }

    def __repr__(self) -> str:
        return "_Credentials(%r, %d CA certificate(s))" % (self.credential, len(self.ca_certs))


def _not_a_ca(certificate: Any) -> str:
    """Why ``certificate`` cannot be a trust anchor for peer certificates ("" if it can)."""
    if not is_ca(certificate):
        return (
            "certificate %s is not a CA certificate (its basicConstraints do not say cA); ca_certs lists "
            "the CAs that issue peer certificates, not the peer's own certificate" % subject_text(certificate)
        )
    try:
        usage = certificate.extensions.get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound:
        return ""
    if not usage.key_cert_sign:
        return "CA certificate %s has a keyUsage without keyCertSign" % subject_text(certificate)
    return ""


def _key_problems(value: Any, path: Path, add: Callable[[Path, str], None]) -> None:
    """Duplicate keys (JSON and YAML keep the last silently) and non-string YAML keys."""
    if isinstance(value, dict):
        for key in getattr(value, "duplicates", []):
            add((*path, key), "appears more than once (names must be unique)")
        for key in getattr(value, "bad_keys", []):
            add(path, "key %r is %s, not a string; quote it" % (key, type_phrase(key)))
        for key, item in value.items():
            _key_problems(item, (*path, key), add)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            _key_problems(item, (*path, index), add)


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
    _key_problems(data, (), add)
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
