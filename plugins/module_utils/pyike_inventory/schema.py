# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""JSON Schema (draft 2020-12) of the inventory variables that describe IPsec VPNs.

The published copy is ``schemas/inventory.schema.json``: it is :func:`schema_json`, written with
``PYTHONPATH=plugins/module_utils python3 -c 'import sys; from pyike_inventory.schema import
schema_json; sys.stdout.write(schema_json())' > schemas/inventory.schema.json`` (a unit test keeps
the two identical).  It is embedded here so that the validator works from an installed collection.

The schema describes the ``ipsec_*`` variables as one host sees them (group_vars and host_vars
merged).  It uses only the keywords that the engine's built-in validator implements
(:mod:`pyike.config.validate`), so hosts and controllers without ``jsonschema`` check it too.
What it cannot express (proposal syntax, networks, references to groups and hosts, topology
fields per type, overlapping selectors, ...) is checked by :mod:`.resolve`.
"""

from __future__ import annotations

import difflib
import json
from typing import Any, Dict, Iterable, List

SCHEMA_ID = "urn:pyike:ipsec:schema:inventory:1"
NAME_PATTERN = "^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$"
MAX_SECONDS = 2**31 - 1
MAX_COUNT = 2**64 - 1

# Variables that describe the whole VPN: define them once for every host (group_vars/all).
GLOBAL_VARIABLES = ("ipsec_ike_groups", "ipsec_esp_groups", "ipsec_tunnels", "ipsec_topologies")
# Variables of one gateway (host_vars/<host>).
HOST_VARIABLES = (
    "ipsec_public_address",
    "ipsec_id",
    "ipsec_lan_subnets",
    "ipsec_listen",
    "ipsec_certificate",
    "ipsec_private_key",
    "ipsec_ca_certificates",
)
VARIABLE_PREFIX = "ipsec_"


def _seconds(description: str) -> Dict[str, Any]:
    return {"type": "integer", "minimum": 0, "maximum": MAX_SECONDS, "description": description}


def _proposals(description: str) -> Dict[str, Any]:
    return {
        "type": "array",
        "minItems": 1,
        "uniqueItems": True,
        "items": {"$ref": "#/$defs/proposal"},
        "description": description,
    }


def _host_list(description: str) -> Dict[str, Any]:
    return {
        "type": "array",
        "minItems": 1,
        "uniqueItems": True,
        "items": {"$ref": "#/$defs/hostName"},
        "description": description,
    }


_PSK_DESCRIPTION = (
    "the pre-shared key of the tunnel, the same on both ends: text (UTF-8), or hex after '0x', or "
    "base64 after '0s'. Take it from a vault variable ('{{ vault_psk_hq }}'); it never appears in "
    "results, messages or diffs"
)
_PSK_FILE_DESCRIPTION = (
    "path, on each managed end, of a file that holds the pre-shared key (same syntax as psk); the "
    "file must be a regular file with mode 0600 and is not managed by this collection"
)
_START_ACTION_DESCRIPTION = (
    "what the initiating end does when its configuration is loaded: start initiates the tunnel, "
    "none waits for the peer or an explicit 'pyikectl initiate'. The other end always waits"
)
_ENCAP_DESCRIPTION = "force UDP encapsulation of ESP (RFC 3948) even when no NAT is detected"
_AUTH_DESCRIPTION = (
    "how both ends authenticate: psk (a pre-shared key; default) or pubkey (X.509 certificates, "
    "RFC 7296 §2.15 and RFC 7427 signatures). With pubkey every managed end needs ipsec_certificate, "
    "ipsec_private_key and ipsec_ca_certificates, and no pre-shared key is given"
)
_CREDENTIAL_SOURCE = (
    "a path on the controller (a relative path is looked up like the copy module's src: in the "
    "role's or playbook's files/ directory) or the PEM text itself"
)

SCHEMA: Dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "$id": SCHEMA_ID,
    "title": "pyike.ipsec inventory variables",
    "description": (
        "The inventory variables that describe site-to-site IPsec VPNs built with the pyike.ipsec "
        "collection, as one host sees them. Named IKE and ESP proposal groups, tunnels and topologies "
        "describe the whole VPN and belong in group_vars/all (the same for every host); the gateway "
        "variables (ipsec_public_address, ipsec_id, ipsec_lan_subnets, ipsec_listen, "
        "ipsec_certificate, ipsec_private_key) belong in each gateway's host_vars. "
        "pyike.ipsec.validate checks them and computes each gateway's engine configuration "
        "(schemas/pyike-config.schema.json). Proposals follow strongSwan's syntax."
    ),
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "ipsec_ike_groups": {
            "type": "object",
            "description": (
                "Named IKE proposal groups (the seed's 'IKE proposal', vyos.vyos' ike-group) that tunnels "
                "and topologies refer to by name. Global (group_vars/all)."
            ),
            "propertyNames": {"$ref": "#/$defs/name"},
            "additionalProperties": {"$ref": "#/$defs/ikeGroup"},
        },
        "ipsec_esp_groups": {
            "type": "object",
            "description": (
                "Named ESP proposal groups (the seed's 'IPsec proposal', vyos.vyos' esp-group) that "
                "tunnels and topologies refer to by name. Global (group_vars/all)."
            ),
            "propertyNames": {"$ref": "#/$defs/name"},
            "additionalProperties": {"$ref": "#/$defs/espGroup"},
        },
        "ipsec_tunnels": {
            "type": "array",
            "items": {"$ref": "#/$defs/tunnel"},
            "description": (
                "Site-to-site tunnels (the seed's 'IKE peer' plus 'IPsec policy'), each between an "
                "inventory host and another inventory host or an unmanaged peer. Every managed end gets "
                "one engine connection named after the tunnel. Global (group_vars/all)."
            ),
        },
        "ipsec_topologies": {
            "type": "array",
            "items": {"$ref": "#/$defs/topology"},
            "description": (
                "Tunnels generated from lists or groups of hosts: hub_and_spoke (every spoke has a tunnel "
                "to the hub; spokes reach each other through the hub) and full_mesh (a tunnel per pair of "
                "members). Generated tunnels are named '<topology>-<spoke>' and "
                "'<topology>-<member>-<member>' (characters other than letters, digits, '_' and '-' in "
                "host names become '-'); names must not clash with ipsec_tunnels. Global (group_vars/all)."
            ),
        },
        "ipsec_public_address": {
            "$ref": "#/$defs/ipAddress",
            "description": (
                "The gateway's IKE address: where peers send IKE and ESP, and the local address of its "
                "connections. Required for every inventory host that is a tunnel end. Per host."
            ),
        },
        "ipsec_id": {
            "$ref": "#/$defs/identity",
            "description": (
                "The gateway's IKE identity (IDi/IDr) in strongSwan syntax, e.g. gw1.example.com; its "
                "peers expect it too. Default: ipsec_public_address. Per host."
            ),
        },
        "ipsec_lan_subnets": {
            "type": "array",
            "uniqueItems": True,
            "items": {"$ref": "#/$defs/network"},
            "description": (
                "The networks behind the gateway (CIDR), the default traffic selectors of its side of "
                "every tunnel (the seed's 'ACL'). Per host."
            ),
        },
        "ipsec_listen": {
            "type": "array",
            "minItems": 1,
            "uniqueItems": True,
            "items": {"$ref": "#/$defs/ipAddress"},
            "description": (
                "Local addresses the engine binds IKE (UDP 500 and 4500) to; must include "
                "ipsec_public_address or the wildcard of its family (0.0.0.0, ::). "
                "Default: [ipsec_public_address]. Per host."
            ),
        },
        "ipsec_certificate": {
            "type": "string",
            "minLength": 1,
            "description": (
                "The gateway's X.509 certificate in PEM, optionally followed by the intermediate CA "
                "certificates that issued it: " + _CREDENTIAL_SOURCE + ". Its subjectAltName (or "
                "subject DN) must match ipsec_id. Needed by tunnels with auth: pubkey. Per host."
            ),
        },
        "ipsec_private_key": {
            "type": "string",
            "minLength": 1,
            "description": (
                "The unencrypted private key (RSA or ECDSA) of ipsec_certificate: "
                + _CREDENTIAL_SOURCE
                + " (from a vault). It never appears in results, messages or diffs, and is written "
                "on the gateway with mode 0600. Per host."
            ),
        },
        "ipsec_ca_certificates": {
            "type": "array",
            "minItems": 1,
            "items": {"type": "string", "minLength": 1},
            "description": (
                "The CA certificates this gateway trusts for its peers' certificates, each "
                + _CREDENTIAL_SOURCE
                + ". Usually the same for every gateway (group_vars/all). "
                "Per host."
            ),
        },
    },
    "$defs": {
        "name": {
            "type": "string",
            "pattern": NAME_PATTERN,
            "description": "a name of 1 to 64 letters, digits, '_' or '-', starting with a letter or digit",
        },
        "hostName": {
            "type": "string",
            "minLength": 1,
            "maxLength": 255,
            "description": "an inventory host name",
        },
        "groupName": {
            "type": "string",
            "minLength": 1,
            "maxLength": 255,
            "description": "an inventory group name ('all' is every host)",
        },
        "ipAddress": {
            "type": "string",
            "minLength": 2,
            "maxLength": 45,
            "pattern": "^[0-9A-Fa-f.:]+$",
            "description": "an IPv4 or IPv6 address (host names are not resolved)",
        },
        "identity": {
            "type": "string",
            "minLength": 1,
            "maxLength": 1024,
            "description": (
                "an IKE identity in strongSwan syntax: an IP address, a host name (ID_FQDN), user@host "
                "(ID_RFC822_ADDR), a distinguished name 'C=CH, O=Example, CN=gw1', or a typed form such as "
                "fqdn:, email:, keyid:#hex (see schemas/pyike-config.schema.json)"
            ),
        },
        "network": {
            "type": "string",
            "minLength": 1,
            "maxLength": 64,
            "description": (
                "an IPv4 or IPv6 network in CIDR notation (10.1.0.0/24, 2001:db8:1::/64); a bare address "
                "is a /32 or /128"
            ),
        },
        "trafficSelector": {
            "type": "string",
            "minLength": 1,
            "maxLength": 128,
            "description": (
                "a traffic selector in strongSwan syntax: a CIDR network, an address or a range "
                "(10.1.0.10-10.1.0.20), optionally followed by [proto/port], e.g. 10.1.0.0/24[tcp/443]"
            ),
        },
        "proposal": {
            "type": "string",
            "minLength": 1,
            "maxLength": 512,
            "pattern": "^[A-Za-z0-9_]+(-[A-Za-z0-9_]+)*$",
            "description": (
                "one proposal in strongSwan syntax, algorithm keywords joined by '-', e.g. "
                "'aes256gcm16-prfsha256-x25519'; the keyword 'default' stands for the engine's built-in list"
            ),
        },
        "port": {"type": "integer", "minimum": 1, "maximum": 65535, "description": "a UDP port"},
        "psks": {
            "type": "object",
            "minProperties": 1,
            "description": (
                "per-tunnel pre-shared keys of a topology, keyed by the two hosts of the tunnel joined by "
                "'-' in either order ('hub-spoke1', 'gw1-gw2'); tunnels without an entry use psk"
            ),
            "propertyNames": {"type": "string", "minLength": 3},
            "additionalProperties": {"type": "string", "minLength": 1},
        },
        "ikeGroup": {
            "type": "object",
            "additionalProperties": False,
            "required": ["proposals"],
            "description": "IKE SA parameters shared by the tunnels that name this group.",
            "properties": {
                "proposals": _proposals(
                    "IKE proposals in order of preference, strongSwan syntax, e.g. "
                    "aes256gcm16-prfsha256-x25519 or aes256-sha256-modp2048 (encryption, integrity or "
                    "PRF, key exchange)"
                ),
                "rekey_time": _seconds(
                    "seconds after which the IKE SA is rekeyed (RFC 7296 §2.8); 0 never rekeys; "
                    "default: the engine's (14400)"
                ),
                "dpd_delay": _seconds(
                    "seconds without traffic from the peer before a liveness check (RFC 7296 §2.4); "
                    "0 turns dead peer detection off; default: the engine's (30)"
                ),
            },
        },
        "espGroup": {
            "type": "object",
            "additionalProperties": False,
            "required": ["proposals"],
            "description": "Child SA (ESP) parameters shared by the tunnels that name this group.",
            "properties": {
                "proposals": _proposals(
                    "ESP proposals in order of preference, strongSwan syntax, e.g. aes256gcm16 or "
                    "aes256-sha256; a key exchange method in a proposal (aes256gcm16-x25519) means PFS: "
                    "a fresh Diffie-Hellman on every rekey"
                ),
                "rekey_time": _seconds(
                    "seconds after which Child SAs are rekeyed (RFC 7296 §2.8); 0 never rekeys; "
                    "default: the engine's (3600)"
                ),
                "life_bytes": {
                    "type": "integer",
                    "minimum": 0,
                    "maximum": MAX_COUNT,
                    "description": "bytes after which a Child SA is replaced; 0 (the default) is unlimited",
                },
                "life_packets": {
                    "type": "integer",
                    "minimum": 0,
                    "maximum": MAX_COUNT,
                    "description": "packets after which a Child SA is replaced; 0 (the default) is unlimited",
                },
            },
        },
        "tunnelEnd": {
            "type": ["string", "object"],
            "minLength": 1,
            "additionalProperties": False,
            "required": ["address"],
            "description": (
                "An end of a tunnel: an inventory host name (a managed gateway, which gets the tunnel in "
                "its engine configuration), or an unmanaged peer such as a strongSwan gateway given by "
                "address, id and subnets. At least one end of every tunnel is an inventory host."
            ),
            "properties": {
                "address": {
                    "type": "string",
                    "minLength": 2,
                    "maxLength": 45,
                    "pattern": "^(%any|[0-9A-Fa-f.:]+)$",
                    "description": (
                        "the unmanaged peer's IKE address, or %any to accept the peer from any address "
                        "(then the managed end cannot initiate)"
                    ),
                },
                "id": {
                    "$ref": "#/$defs/identity",
                    "description": "the identity the peer authenticates as; default: its address",
                },
                "subnets": {
                    "type": "array",
                    "uniqueItems": True,
                    "items": {"$ref": "#/$defs/network"},
                    "description": "the networks behind the peer (CIDR), the default selectors of its side",
                },
                "port": {"$ref": "#/$defs/port", "description": "the peer's IKE port; default 500"},
            },
        },
        "child": {
            "type": "object",
            "additionalProperties": False,
            "required": ["name"],
            "description": "A Child SA of a tunnel: the traffic it protects (the seed's 'ACL').",
            "properties": {
                "name": {"$ref": "#/$defs/name"},
                "left_ts": {
                    "type": "array",
                    "minItems": 1,
                    "items": {"$ref": "#/$defs/trafficSelector"},
                    "description": "traffic selectors on the left side; default: the left end's subnets",
                },
                "right_ts": {
                    "type": "array",
                    "minItems": 1,
                    "items": {"$ref": "#/$defs/trafficSelector"},
                    "description": "traffic selectors on the right side; default: the right end's subnets",
                },
            },
        },
        "tunnel": {
            "type": "object",
            "additionalProperties": False,
            "required": ["name", "left", "right", "ike_group", "esp_group"],
            "description": "One site-to-site tunnel (an IKE SA and its Child SAs).",
            "properties": {
                "name": {
                    "$ref": "#/$defs/name",
                    "description": "unique tunnel name; the engine connection on each managed end",
                },
                "left": {
                    "$ref": "#/$defs/tunnelEnd",
                    "description": "the initiating end (see start_action): a host name or an unmanaged peer",
                },
                "right": {
                    "$ref": "#/$defs/tunnelEnd",
                    "description": "the responding end: a host name or an unmanaged peer",
                },
                "ike_group": {"$ref": "#/$defs/name", "description": "name of an ipsec_ike_groups entry"},
                "esp_group": {"$ref": "#/$defs/name", "description": "name of an ipsec_esp_groups entry"},
                "psk": {"type": "string", "minLength": 1, "description": _PSK_DESCRIPTION},
                "psk_file": {"type": "string", "minLength": 1, "description": _PSK_FILE_DESCRIPTION},
                "children": {
                    "type": "array",
                    "minItems": 1,
                    "items": {"$ref": "#/$defs/child"},
                    "description": (
                        "the Child SAs; default: one child 'lan' with the left end's subnets on the left "
                        "and the right end's subnets on the right"
                    ),
                },
                "start_action": {
                    "type": "string",
                    "enum": ["start", "none"],
                    "description": _START_ACTION_DESCRIPTION + "; the left end initiates; default start",
                },
                "encap": {"type": "boolean", "description": _ENCAP_DESCRIPTION},
                "auth": {"type": "string", "enum": ["psk", "pubkey"], "description": _AUTH_DESCRIPTION},
            },
        },
        "topology": {
            "type": "object",
            "additionalProperties": False,
            "required": ["name", "type", "ike_group", "esp_group"],
            "description": (
                "Tunnels generated from hosts. hub_and_spoke: hub and spokes (or spokes_group); each spoke "
                "initiates a tunnel to the hub whose selectors are the spoke's subnets <-> the hub's and "
                "every other spoke's subnets, so spokes reach each other through the hub. full_mesh: "
                "members (or members_group); a tunnel per pair, the member listed first initiates, with "
                "the two members' subnets. The pre-shared key: psk for every tunnel, psks per tunnel, or "
                "psk_file; or auth: pubkey for certificates."
            ),
            "properties": {
                "name": {
                    "$ref": "#/$defs/name",
                    "description": "topology name, the prefix of the generated tunnel names",
                },
                "type": {
                    "type": "string",
                    "enum": ["hub_and_spoke", "full_mesh"],
                    "description": "hub_and_spoke or full_mesh",
                },
                "hub": {"$ref": "#/$defs/hostName", "description": "hub_and_spoke: the hub host"},
                "spokes": _host_list("hub_and_spoke: the spoke hosts (or spokes_group)"),
                "spokes_group": {
                    "$ref": "#/$defs/groupName",
                    "description": "hub_and_spoke: the group whose hosts are the spokes (the hub excluded)",
                },
                "members": _host_list("full_mesh: the member hosts (or members_group)"),
                "members_group": {
                    "$ref": "#/$defs/groupName",
                    "description": "full_mesh: the group whose hosts are the members",
                },
                "ike_group": {"$ref": "#/$defs/name", "description": "name of an ipsec_ike_groups entry"},
                "esp_group": {"$ref": "#/$defs/name", "description": "name of an ipsec_esp_groups entry"},
                "psk": {
                    "type": "string",
                    "minLength": 1,
                    "description": _PSK_DESCRIPTION + "; for every generated tunnel without a psks entry",
                },
                "psks": {"$ref": "#/$defs/psks"},
                "psk_file": {"type": "string", "minLength": 1, "description": _PSK_FILE_DESCRIPTION},
                "start_action": {
                    "type": "string",
                    "enum": ["start", "none"],
                    "description": (
                        _START_ACTION_DESCRIPTION + "; spokes (hub_and_spoke) and the earlier member "
                        "(full_mesh) initiate; default start"
                    ),
                },
                "encap": {"type": "boolean", "description": _ENCAP_DESCRIPTION},
                "auth": {"type": "string", "enum": ["psk", "pubkey"], "description": _AUTH_DESCRIPTION},
            },
        },
    },
}


def schema_json() -> str:
    """The schema as the text of ``schemas/inventory.schema.json``."""
    return json.dumps(SCHEMA, indent=2, ensure_ascii=False) + "\n"


def _misspelt(name: str) -> bool:
    """An unknown ``ipsec_*`` name close to a known variable (``ipsec_tunnel``): a likely typo.

    Other ``ipsec_*`` names (registered results such as ``ipsec_check``, role variables) are
    not inventory data and are left alone.
    """
    known = GLOBAL_VARIABLES + HOST_VARIABLES
    return name not in known and bool(difflib.get_close_matches(name, known, n=1, cutoff=0.85))


def global_names(names: Iterable[Any]) -> List[str]:
    """Of the variable names one host sees, those that go into the global data: the global
    variables, and misspelt variable names that are not close to a gateway variable (so that
    the typo is reported once, globally)."""
    out = []
    for name in names:
        if not isinstance(name, str) or not name.startswith(VARIABLE_PREFIX):
            continue
        if name in GLOBAL_VARIABLES or (_misspelt(name) and not _close_to_host_variable(name)):
            out.append(name)
    return out


def _close_to_host_variable(name: str) -> bool:
    return bool(difflib.get_close_matches(name, HOST_VARIABLES, n=1, cutoff=0.85))


def host_names(names: Iterable[Any], global_keys: Iterable[str] = ()) -> List[str]:
    """Of a host's variable names, those checked as its own: the gateway variables, and misspelt
    names that are not in the global data (a typo in host_vars is reported for that host)."""
    taken = set(global_keys)
    return [
        n
        for n in names
        if isinstance(n, str)
        and n.startswith(VARIABLE_PREFIX)
        and (n in HOST_VARIABLES or (_misspelt(n) and n not in taken))
    ]
