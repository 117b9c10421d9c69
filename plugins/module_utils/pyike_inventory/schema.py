# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""JSON Schema (draft 2020-12) of the inventory variables that describe IPsec VPNs.

The published copy is ``schemas/inventory.schema.json``: it is :func:`schema_json`, written with
``PYTHONPATH=plugins/module_utils python3 -c 'import sys; from pyike_inventory.schema import
schema_json; sys.stdout.write(schema_json())' > schemas/inventory.schema.json`` (a unit test keeps
the two identical).  It is embedded here so that the validator works from an installed collection.

The schema describes the ``ipsec_*`` variables as one host sees them (group_vars and host_vars
merged); its ``$defs`` are in :mod:`.schema_defs`.  It uses only the keywords that the engine's
built-in validator implements (:mod:`pyike.config.validate`), so hosts and controllers without
``jsonschema`` check it too.  What it cannot express (proposal syntax, networks, references to
groups and hosts, topology fields per type, overlapping selectors, ...) is checked by the other
modules of this package.
"""

from __future__ import annotations

import difflib
import json
from typing import Any, Dict, Iterable, List

from .schema_defs import DEFS, MAX_SECONDS, NAME_PATTERN

SCHEMA_ID = "urn:pyike:ipsec:schema:inventory:1"

# Variables that describe the whole VPN: define them once for every host (group_vars/all).
GLOBAL_VARIABLES = ("ipsec_ike_groups", "ipsec_esp_groups", "ipsec_tunnels", "ipsec_topologies")
# Variables of one gateway (host_vars/<host>, or a group's vars for settings they share).
HOST_VARIABLES = (
    "ipsec_public_address",
    "ipsec_local_address",
    "ipsec_id",
    "ipsec_lan_subnets",
    "ipsec_listen",
    "ipsec_certificate",
    "ipsec_private_key",
    "ipsec_ca_certificates",
    "ipsec_tun_mtu",
    "ipsec_dataplane",
    "ipsec_retransmit_timeout",
    "ipsec_retransmit_base",
    "ipsec_retransmit_tries",
)
# Host variables that become the engine's daemon-wide settings, by engine setting name.
SETTINGS_VARIABLES = {
    "ipsec_tun_mtu": "tun_mtu",
    "ipsec_dataplane": "dataplane",
    "ipsec_retransmit_timeout": "retransmit_timeout",
    "ipsec_retransmit_base": "retransmit_base",
    "ipsec_retransmit_tries": "retransmit_tries",
}
VARIABLE_PREFIX = "ipsec_"
__all__ = ["MAX_SECONDS", "NAME_PATTERN", "SCHEMA"]

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
        "describe the whole VPN and must be the same for every gateway (group_vars/all, or a group that "
        "holds every gateway); the gateway variables (ipsec_public_address, ipsec_local_address, "
        "ipsec_id, ipsec_lan_subnets, ipsec_listen, the certificate variables and the engine settings "
        "ipsec_tun_mtu, ipsec_dataplane and ipsec_retransmit_*) belong in each gateway's host_vars or its groups' vars. "
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
            "type": "string",
            "minLength": 2,
            "maxLength": 45,
            "pattern": "^(%any|[0-9A-Fa-f.:]+)$",
            "description": (
                "The gateway's public IKE address: where peers send IKE and ESP, and the local address of "
                "its connections unless ipsec_local_address is set. %any for a gateway whose address is "
                "dynamic (a spoke on a DHCP or mobile link): it needs ipsec_local_address and ipsec_id, "
                "initiates its tunnels itself, and its peers accept it from any address by its identity. "
                "Required for every inventory host that is a tunnel end. Per host."
            ),
        },
        "ipsec_local_address": {
            "$ref": "#/$defs/ipAddress",
            "description": (
                "The address the gateway's engine binds and sends from when it differs from "
                "ipsec_public_address: a gateway behind 1:1 NAT, such as a cloud instance with an elastic "
                "IP. Its peers still send to ipsec_public_address; without ipsec_id its identity is then "
                "ipsec_public_address, which its peers expect. Default: ipsec_public_address. Per host."
            ),
        },
        "ipsec_id": {
            "$ref": "#/$defs/identity",
            "description": (
                "The gateway's IKE identity (IDi/IDr) in strongSwan syntax, e.g. gw1.example.com; its "
                "peers expect it too. Default: ipsec_public_address (required when that is %any). Per host."
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
                "ipsec_local_address (else ipsec_public_address) or the wildcard of its family (0.0.0.0, "
                "::). Default: [ipsec_local_address or ipsec_public_address]. Per host."
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
        "ipsec_tun_mtu": {
            "type": "integer",
            "minimum": 576,
            "maximum": 65535,
            "description": (
                "MTU of the engine's TUN device (the engine's settings.tun_mtu, default 1400): leave room "
                "for ESP and UDP encapsulation below the path MTU; at least 1280 when a tunnel carries "
                "IPv6 (RFC 8200 §5). Per host."
            ),
        },
        "ipsec_dataplane": {
            "type": "string",
            "enum": ["auto", "kernel", "userspace"],
            "description": (
                "Who carries ESP on this gateway (the engine's settings.dataplane, default auto): kernel "
                "(XFRM states and policies; needs kernel ESP - esp4/esp6 and xfrm_user, as stock Debian, "
                "Ubuntu and RHEL kernels have), userspace (the engine encrypts, packets pass its TUN device; "
                "any kernel with TUN), or auto (a probe at start picks kernel where an ESP state can be "
                "installed, else userspace). kernel refuses to start without kernel ESP. Per host."
            ),
        },
        "ipsec_retransmit_timeout": {
            "type": "number",
            "minimum": 0.1,
            "maximum": 60,
            "description": (
                "seconds before the engine first retransmits an unanswered IKE request (settings."
                "retransmit_timeout, default 2); retransmission n waits retransmit_timeout * "
                "retransmit_base^n. Per host."
            ),
        },
        "ipsec_retransmit_base": {
            "type": "number",
            "minimum": 1,
            "maximum": 4,
            "description": "growth factor of the retransmission timeout (settings.retransmit_base, default 1.8). Per host.",
        },
        "ipsec_retransmit_tries": {
            "type": "integer",
            "minimum": 0,
            "maximum": 20,
            "description": (
                "retransmissions before the engine declares a peer dead (settings.retransmit_tries, "
                "default 5); with DPD they decide how soon a dead tunnel is noticed. Per host."
            ),
        },
    },
    "$defs": DEFS,
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
