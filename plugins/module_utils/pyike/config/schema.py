"""JSON Schema (draft 2020-12) of the daemon configuration, with the defaults it documents.

The published copy is ``schemas/pyike-config.schema.json``: it is :func:`schema_json`, written
with ``PYTHONPATH=plugins/module_utils python3 -c 'import sys; from pyike.config.schema import
schema_json; sys.stdout.write(schema_json())' > schemas/pyike-config.schema.json`` (a unit test
keeps the two identical).  The
schema is embedded here because the engine ships to hosts as ``module_utils`` without the
repository's ``schemas/`` directory, and the loader validates against it on every load.

The schema checks structure, types, ranges and names.  What it cannot express (proposal
strings, traffic selectors, identities, file permissions, cross-field rules) is checked by
:mod:`.load`.
"""

from __future__ import annotations

import json
from typing import Any, Dict, List

from .peer_name import MAX_NAME_LENGTH
from .peer_name import NAME_PATTERN as DNS_NAME_PATTERN
from .schema_child import CHILD_SCHEMA, proposals_field, seconds_field

SCHEMA_ID = "urn:pyike:ipsec:schema:pyike-config:1"

# Defaults: the loader applies exactly these, and the schema documents them as "default".
DEFAULT_CONTROL_SOCKET = "/run/pyike/pyike.ctl"
DEFAULT_TUN_NAME = "pyike0"
DEFAULT_TUN_MTU = 1400
DEFAULT_LISTEN: List[str] = ["0.0.0.0"]  # noqa: S104 - the daemon listens on every IPv4 address by default
DEFAULT_IKE_PORT = 500  # RFC 7296 §2
DEFAULT_NAT_T_PORT = 4500  # RFC 3948 / RFC 7296 §2.23
DEFAULT_LOG_LEVEL = "info"
DEFAULT_DATAPLANE = "auto"
DATAPLANES = ["auto", "kernel", "userspace"]
DEFAULT_AUTH = "psk"
MIN_PSK_OCTETS = 20  # shorter keys, or one character repeated, need allow_weak_psk
DEFAULT_ALLOW_WEAK_PSK = False
DEFAULT_IKE_PROPOSALS: List[str] = ["default"]
DEFAULT_ENCAP = False
DEFAULT_DPD_DELAY = 30
DEFAULT_DPD_ACTION = "clear"
DEFAULT_RETRANSMIT_TIMEOUT = 2.0
DEFAULT_RETRANSMIT_BASE = 1.8
DEFAULT_RETRANSMIT_TRIES = 5
DPD_ACTIONS = ["clear", "restart", "trap"]
DEFAULT_MODE = "policy"
MODES = ["policy", "route"]
INTERFACE_NAME_PATTERN = (
    r"^(?!\.\.?$)[A-Za-z0-9_.-]{1,15}$"  # IFNAMSIZ - 1, no slash, colon or space; not . or ..
)
DEFAULT_IKE_REKEY_TIME = 14400  # strongSwan: 4 h
DEFAULT_REAUTH_TIME = 0  # strongSwan: reauthentication is off by default

LOG_LEVELS = ["debug", "info", "warning", "error"]
AUTH_METHODS = ["psk", "pubkey"]
SIGNATURE_METHODS = ["signature", "classic"]
DEFAULT_SIGNATURE_METHOD = "signature"

# The proposals that the keyword "default" stands for (only transforms that the installed
# cryptography supports are kept; see model.default_proposals).
DEFAULT_IKE_PROPOSAL_STRINGS = [
    "aes256gcm16-aes128gcm16-prfsha256-prfsha384-prfsha512-x25519-ecp256-ecp384-modp3072-modp2048",
    "aes256-aes128-sha256-sha384-sha512-x25519-ecp256-ecp384-modp3072-modp2048",
]

NAME_PATTERN = "^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$"


SCHEMA: Dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "$id": SCHEMA_ID,
    "title": "pyike daemon configuration",
    "description": (
        "Configuration of the pyike IKEv2 daemon (python3 -m pyike daemon --config FILE), as YAML or "
        "JSON. Daemon-wide settings plus named site-to-site connections, each with named Child SAs. "
        "Proposal strings, traffic selectors and identities follow strongSwan's swanctl.conf syntax "
        "so they can be copied from the peer's configuration."
    ),
    "type": "object",
    "additionalProperties": False,
    "required": ["connections"],
    "properties": {
        "settings": {"$ref": "#/$defs/settings"},
        "connections": {
            "type": "object",
            "description": "The connections (IKE SAs) by name. May be empty: the daemon then only idles.",
            "propertyNames": {"$ref": "#/$defs/name"},
            "additionalProperties": {"$ref": "#/$defs/connection"},
        },
    },
    "$defs": {
        "name": {
            "type": "string",
            "pattern": NAME_PATTERN,
            "description": ("a name of 1 to 64 letters, digits, '_' or '-', starting with a letter or digit"),
        },
        "ipAddress": {
            "type": "string",
            "minLength": 2,
            "maxLength": 45,
            "pattern": "^[0-9A-Fa-f.:]+$",
            "description": "an IPv4 or IPv6 address (host names are not resolved)",
        },
        "port": {"type": "integer", "minimum": 1, "maximum": 65535, "description": "a UDP port"},
        "identity": {
            "type": "string",
            "minLength": 1,
            "maxLength": 1024,
            "description": (
                "An IKE identity (RFC 7296 §3.5) in strongSwan's syntax: an IPv4/IPv6 address gives "
                "ID_IPV4_ADDR/ID_IPV6_ADDR; 'name' or '@name' gives ID_FQDN; 'user@host' (or '@@user@host') "
                "gives ID_RFC822_ADDR; 'C=CH, O=Example, CN=gw1' (or '/C=CH/O=Example/CN=gw1') gives "
                "ID_DER_ASN1_DN; '@#hex' gives ID_KEY_ID. A prefix forces a type: ipv4:, ipv6:, fqdn:, dns:, "
                "email:, rfc822:, userfqdn:, asn1dn:, keyid: ('#hex' after the prefix for binary data)."
            ),
        },
        "proposal": {
            "type": "string",
            "minLength": 1,
            "maxLength": 512,
            "pattern": "^[A-Za-z0-9_]+(-[A-Za-z0-9_]+)*$",
            "description": (
                "one proposal in strongSwan syntax, algorithm keywords joined by '-', e.g. "
                "'aes256gcm16-prfsha256-x25519'; the keyword 'default' stands for the built-in list"
            ),
        },
        "trafficSelector": {
            "type": "string",
            "minLength": 1,
            "maxLength": 128,
            "description": (
                "A traffic selector (RFC 7296 §3.13.1) in strongSwan syntax: a CIDR subnet (10.1.0.0/24), a "
                "single address, or a range (10.1.0.10-10.1.0.20), optionally followed by [proto/port]: "
                "[tcp], [tcp/443], [udp/1000-2000], [/53], [udp/opaque]. Protocols by number or name "
                "(tcp, udp, icmp, ipv6-icmp, sctp, gre, esp, ah, ...); ports by number, range, well-known "
                "service name, 'any' or 'opaque'. For ICMP the port field is type << 8 | code (RFC 7296 "
                "§3.13.1), given as a number."
            ),
        },
        "settings": {
            "type": "object",
            "additionalProperties": False,
            "description": "Daemon-wide settings; every one has a default.",
            "properties": {
                "control_socket": {
                    "type": "string",
                    "pattern": "^/",
                    "maxLength": 107,
                    "default": DEFAULT_CONTROL_SOCKET,
                    "description": "absolute path of the unix control socket (created with mode 0600)",
                },
                "tun_name": {
                    "type": "string",
                    "pattern": "^(?!\\.\\.?$)[A-Za-z0-9_.-]{1,15}$",
                    "default": DEFAULT_TUN_NAME,
                    "description": (
                        "name of the TUN device that carries the tunnelled traffic: 1 to 15 letters, digits, "
                        "'_', '.' or '-', but not '.' or '..'"
                    ),
                },
                "dataplane": {
                    "type": "string",
                    "enum": DATAPLANES,
                    "default": DEFAULT_DATAPLANE,
                    "description": (
                        "who carries ESP: 'kernel' installs the Child SAs as XFRM states and policies "
                        "(needs kernel ESP: esp4/esp6 and xfrm_user, as every stock Debian, Ubuntu or RHEL "
                        "kernel has), 'userspace' encrypts in the daemon and moves packets through the TUN "
                        "device (works on any kernel with TUN, hundreds of Mbit/s), 'auto' probes at start by "
                        "installing a throw-away ESP state and picks kernel if that works, else userspace; "
                        "'kernel' refuses to start without kernel ESP. `pyikectl stats` and sa_info show the "
                        "choice and why"
                    ),
                },
                "tun_mtu": {
                    "type": "integer",
                    "minimum": 576,
                    "maximum": 65535,
                    "default": DEFAULT_TUN_MTU,
                    "description": "MTU of the TUN device; leave room for ESP and UDP encapsulation overhead",
                },
                "listen": {
                    "type": "array",
                    "minItems": 1,
                    "uniqueItems": True,
                    "items": {"$ref": "#/$defs/ipAddress"},
                    "default": DEFAULT_LISTEN,
                    "description": (
                        "local addresses to bind the IKE and NAT-T UDP ports on; 0.0.0.0 and :: mean every "
                        "address of that family. Each connection's local address must be covered."
                    ),
                },
                "ike_port": {
                    "$ref": "#/$defs/port",
                    "default": DEFAULT_IKE_PORT,
                    "description": "UDP port for IKE (RFC 7296 §2)",
                },
                "nat_t_port": {
                    "$ref": "#/$defs/port",
                    "default": DEFAULT_NAT_T_PORT,
                    "description": "UDP port for IKE and ESP after NAT detection (RFC 3948, RFC 7296 §2.23)",
                },
                "log_level": {
                    "type": "string",
                    "enum": LOG_LEVELS,
                    "default": DEFAULT_LOG_LEVEL,
                    "description": "log verbosity; secrets are never logged at any level",
                },
                "retransmit_timeout": {
                    "type": "number",
                    "minimum": 0.1,
                    "maximum": 60,
                    "default": DEFAULT_RETRANSMIT_TIMEOUT,
                    "description": "seconds before the first retransmission of an unanswered IKE request "
                    "(RFC 7296 §2.1); retransmission n waits retransmit_timeout * retransmit_base^n",
                },
                "retransmit_base": {
                    "type": "number",
                    "minimum": 1,
                    "maximum": 4,
                    "default": DEFAULT_RETRANSMIT_BASE,
                    "description": "growth factor of the retransmission timeout",
                },
                "retransmit_tries": {
                    "type": "integer",
                    "minimum": 0,
                    "maximum": 20,
                    "default": DEFAULT_RETRANSMIT_TRIES,
                    "description": "retransmissions before the peer is declared dead (RFC 7296 §2.4)",
                },
                "impair": {
                    "type": "array",
                    "items": {"type": "string", "minLength": 1},
                    "default": [],
                    "description": "lab tests only: faults to inject (drop, duplicate, corrupt or delay "
                    "messages, exceptions in handlers, collisions, exhausted limits; the syntax is in "
                    "pyike/ike/impair.py); the daemon refuses to start with any unless it was given "
                    "--allow-impair",
                },
            },
        },
        "localEndpoint": {
            "type": "object",
            "additionalProperties": False,
            "required": ["address"],
            "description": "This host's end of the IKE SA.",
            "properties": {
                "address": {
                    "$ref": "#/$defs/ipAddress",
                    "description": "local IKE address; must be covered by settings.listen",
                },
                "id": {
                    "$ref": "#/$defs/identity",
                    "description": "identity sent in IDi/IDr; defaults to the address",
                },
            },
        },
        "remoteEndpoint": {
            "type": "object",
            "additionalProperties": False,
            "required": ["address"],
            "description": (
                "The peer's end of the IKE SA. An address given as a DNS name (vpn.example.com) is resolved, "
                "off the daemon's event loop and within 5 s, whenever an IKE SA is initiated (initiate, "
                "start_action, close_action start, dpd_action restart, a trap's acquire), so a changed "
                "address is followed; only addresses of local.address's family count, the first is "
                "initiated to, at most 8 are kept. As a responder the connection accepts IKE_SA_INIT only "
                "from the addresses of its last resolution (at load and reload, at each initiation, and "
                "at most every 30 s when a request comes from an address that no connection names). A "
                "failed resolution is logged and listed by `pyikectl stats` with the connection and the "
                "name, and tried again after 2 s, doubling up to 60 s, until it works or the connection "
                "is terminated."
            ),
            "properties": {
                "address": {
                    "type": "string",
                    "minLength": 1,
                    "maxLength": MAX_NAME_LENGTH + 1,
                    "pattern": "^(%%any|[0-9A-Fa-f.:]+|%s)$" % DNS_NAME_PATTERN,
                    "description": (
                        "peer IKE address: an IPv4 or IPv6 address, a DNS name (with remote.id), or %any "
                        "for a responder-only connection"
                    ),
                },
                "id": {
                    "$ref": "#/$defs/identity",
                    "description": (
                        "identity the peer must authenticate as; defaults to the address (required when the "
                        "address is a DNS name); %any accepts any"
                    ),
                },
                "port": {
                    "$ref": "#/$defs/port",
                    "description": "peer IKE port; defaults to settings.ike_port",
                },
            },
        },
        "connection": {
            "type": "object",
            "additionalProperties": False,
            "required": ["local", "remote", "children"],
            "description": "One IKE SA configuration and the Child SAs negotiated under it.",
            "properties": {
                "local": {"$ref": "#/$defs/localEndpoint"},
                "remote": {"$ref": "#/$defs/remoteEndpoint"},
                "auth": {
                    "type": "string",
                    "enum": AUTH_METHODS,
                    "default": DEFAULT_AUTH,
                    "description": (
                        "authentication method (strongSwan's words): psk is a pre-shared key (RFC 7296 "
                        "§2.15, needs psk or psk_file); pubkey is an X.509 certificate and its private key "
                        "(RFC 7296 §2.15, RFC 7427; needs cert, private_key and ca_certs). Both ends of a "
                        "connection must use the same method."
                    ),
                },
                "psk": {
                    "type": "string",
                    "minLength": 1,
                    "description": (
                        "the pre-shared key: text (UTF-8), or hex after '0x', or base64 after '0s'. With auth "
                        "psk exactly one of psk and psk_file is required. It must be at least %d octets "
                        "(after decoding) and not one character repeated, unless allow_weak_psk is true. A "
                        "configuration file that holds a psk must be a file that neither group nor others can "
                        "access (chmod 600); otherwise keep the key in psk_file." % MIN_PSK_OCTETS
                    ),
                },
                "psk_file": {
                    "type": "string",
                    "minLength": 1,
                    "description": (
                        "file holding the pre-shared key (same syntax as psk, one trailing newline ignored); "
                        "relative paths are relative to the configuration file. It must be a regular file "
                        "that neither group nor others can access (chmod 600). The key it holds must meet the "
                        "same rule as psk (at least %d octets, not one character repeated) unless "
                        "allow_weak_psk is true." % MIN_PSK_OCTETS
                    ),
                },
                "allow_weak_psk": {
                    "type": "boolean",
                    "default": DEFAULT_ALLOW_WEAK_PSK,
                    "description": (
                        "auth psk: accept a pre-shared key shorter than %d octets or made of one character "
                        "repeated (any non-empty key). RFC 7296 §2.15 asks for a key as unpredictable as the "
                        "keys it protects: whoever takes part in one IKE_AUTH exchange, posing as a peer, can "
                        "guess a weak key offline. Use it only to match a peer that cannot be changed yet."
                        % MIN_PSK_OCTETS
                    ),
                },
                "cert": {
                    "type": "string",
                    "minLength": 1,
                    "description": (
                        "auth pubkey: file holding this host's X.509 certificate (PEM or DER), sent in CERT "
                        "payloads (RFC 7296 §3.6); in a PEM file the intermediate CA certificates may follow "
                        "it, end entity first. Relative paths are relative to the configuration file. The "
                        "local id must be one of its identities (subjectAltName, or the subject DN); without "
                        "local.id the subject DN is used."
                    ),
                },
                "cert_chain": {
                    "type": "string",
                    "minLength": 1,
                    "description": (
                        "auth pubkey, optional: file holding intermediate CA certificates (PEM) to send after "
                        "cert, for a peer that knows only the root CA"
                    ),
                },
                "private_key": {
                    "type": "string",
                    "minLength": 1,
                    "description": (
                        "auth pubkey: file holding the private key of cert (PEM or DER; PKCS#1, PKCS#8 or "
                        "SEC1; RSA of at least 2048 bits or ECDSA P-256/P-384/P-521; not encrypted). It must "
                        "be a regular file that neither group nor others can access (chmod 600). The key is "
                        "never logged or shown."
                    ),
                },
                "ca_certs": {
                    "type": "array",
                    "minItems": 1,
                    "uniqueItems": True,
                    "items": {"type": "string", "minLength": 1},
                    "description": (
                        "auth pubkey: files (PEM with one or more certificates, or DER) or directories of CA "
                        "certificates trusted to issue the peer's certificate. The peer's certificate must "
                        "chain to one of them (intermediates come from its CERT payloads), be valid now and "
                        "carry the peer's identity (remote.id). Their key hashes go into CERTREQ payloads "
                        "(RFC 7296 §3.7)."
                    ),
                },
                "auth_method": {
                    "type": "string",
                    "enum": SIGNATURE_METHODS,
                    "default": DEFAULT_SIGNATURE_METHOD,
                    "description": (
                        "auth pubkey: how our AUTH payload is signed. signature: RFC 7427 Digital Signature "
                        "(RSASSA-PSS or ECDSA with SHA-2) with a hash the peer announced in "
                        "SIGNATURE_HASH_ALGORITHMS; a peer that announced none gets the RFC 4754 ECDSA "
                        "methods, and with an RSA key the exchange fails. classic: the methods of RFC 7296 "
                        "§3.8 for old peers, RSA Digital Signature (PKCS#1 v1.5 with SHA-1) or ECDSA (RFC "
                        "4754); only then is the SHA-1 RSA method accepted from the peer too."
                    ),
                },
                "ike_proposals": proposals_field(
                    "IKE proposals in order of preference (strongSwan syntax); 'default' is "
                    + ", ".join(DEFAULT_IKE_PROPOSAL_STRINGS)
                    + " (restricted to what the installed cryptography supports)",
                    DEFAULT_IKE_PROPOSALS,
                ),
                "encap": {
                    "type": "boolean",
                    "default": DEFAULT_ENCAP,
                    "description": "force UDP encapsulation of ESP (RFC 3948) even without a NAT",
                },
                "mode": {
                    "type": "string",
                    "enum": MODES,
                    "default": DEFAULT_MODE,
                    "description": (
                        "policy: the Child SAs' traffic selectors decide what the kernel or the daemon "
                        "encrypts (policy-based, strongSwan's default). route: a route-based tunnel; what "
                        "is routed into the connection's interface (below) is encrypted, and the interface "
                        "carries what arrives, so static routes or a routing daemon (FRR, BIRD: BGP, OSPF) "
                        "decide; usually with 0.0.0.0/0 and ::/0 as traffic selectors. The kernel dataplane "
                        "makes the interface an XFRM interface (Linux 4.19+), the userspace one a TUN device"
                    ),
                },
                "interface": {
                    "type": "object",
                    "additionalProperties": False,
                    "required": ["name"],
                    "description": "mode route: the interface of this connection (XFRM interface or TUN "
                    "device), created at start and removed at stop (strongSwan: if_id_in/if_id_out with an "
                    "interface made by hand)",
                    "properties": {
                        "name": {
                            "type": "string",
                            "pattern": INTERFACE_NAME_PATTERN,
                            "description": "interface name, 1 to 15 characters (letters, digits, _ . -)",
                        },
                        "if_id": {
                            "type": "integer",
                            "minimum": 1,
                            "maximum": 0xFFFFFFFF,
                            "description": "interface id binding the interface to the Child SAs (the XFRM "
                            "if_id in kernel mode); default: derived from the name (unique per host)",
                        },
                        "addresses": {
                            "type": "array",
                            "items": {"type": "string"},
                            "description": "addresses with prefix length on the interface, e.g. "
                            "169.254.10.1/30 for a BGP session across the tunnel",
                        },
                        "mtu": {
                            "type": "integer",
                            "minimum": 1280,
                            "maximum": 9000,
                            "description": "interface MTU; default: the kernel's",
                        },
                    },
                },
                "dpd_delay": seconds_field(
                    "seconds without traffic from the peer before a liveness check (RFC 7296 §2.4); "
                    "0 turns dead peer detection off",
                    DEFAULT_DPD_DELAY,
                ),
                "dpd_action": {
                    "type": "string",
                    "enum": DPD_ACTIONS,
                    "default": DEFAULT_DPD_ACTION,
                    "description": "when the peer stops answering (DPD, or any request retransmitted "
                    "retransmit_tries times; RFC 7296 §2.4): clear (remove its SAs), restart (remove them "
                    "and initiate again, 2 s later, until the peer answers) or trap (remove them and install "
                    "a trap for each Child SA that was up, as start_action trap does: the next packet for "
                    "it initiates again)",
                },
                "rekey_time": seconds_field(
                    "seconds after which the IKE SA is rekeyed (RFC 7296 §2.8); 0 never rekeys",
                    DEFAULT_IKE_REKEY_TIME,
                ),
                "reauth_time": seconds_field(
                    "seconds after which the IKE SA is reauthenticated (RFC 7296 §2.8.3): a new IKE SA with "
                    "IKE_SA_INIT and IKE_AUTH and new Child SAs for the same traffic selectors is built "
                    "first, then the old IKE SA and its Child SAs are deleted (make-before-break, traffic "
                    "keeps flowing). Up to 10% less, at random, so that both ends do not start at once. "
                    "0 (the default) never reauthenticates; rekey_time still applies",
                    DEFAULT_REAUTH_TIME,
                ),
                "children": {
                    "type": "object",
                    "minProperties": 1,
                    "description": "the Child SAs by name (at least one); names are unique within the connection",
                    "propertyNames": {"$ref": "#/$defs/name"},
                    "additionalProperties": {"$ref": "#/$defs/child"},
                },
            },
            "if": {"properties": {"auth": {"const": "pubkey"}}, "required": ["auth"]},
            "then": {"required": ["cert", "private_key", "ca_certs"]},
            "else": {"oneOf": [{"required": ["psk"]}, {"required": ["psk_file"]}]},
        },
        "child": CHILD_SCHEMA,
    },
}


def schema_json() -> str:
    """The schema as the text of ``schemas/pyike-config.schema.json``."""
    return json.dumps(SCHEMA, indent=2, ensure_ascii=False) + "\n"
