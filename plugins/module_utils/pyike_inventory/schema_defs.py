# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The ``$defs`` of the inventory schema (:mod:`.schema` assembles the whole): groups, tunnels, topologies.

Limits that a schema cannot express (rekey minimums, lifetimes against each other, selectors) are
checked by :mod:`.lifetimes` and the other modules; the descriptions say what they are.
"""

from __future__ import annotations

from typing import Any, Dict

from ._engine import ENGINE_SCHEMA, INTERFACE_NAME_PATTERN

NAME_PATTERN = "^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$"
MAX_SECONDS = 2**31 - 1
MAX_COUNT = 2**64 - 1
# The smallest values that the lifetimes checks accept (0 is always allowed where it means "off"):
# below them a busy tunnel spends its time rekeying, or DPD never runs (see lifetimes.py).
MIN_REKEY_SECONDS = 60
MIN_VOLUME_BYTES = 1000000
MIN_VOLUME_PACKETS = 1000


def seconds(description: str) -> Dict[str, Any]:
    return {"type": "integer", "minimum": 0, "maximum": MAX_SECONDS, "description": description}


def count(description: str) -> Dict[str, Any]:
    return {"type": "integer", "minimum": 0, "maximum": MAX_COUNT, "description": description}


# The engine's own bounds and name pattern for a route-based connection's interface (schemas/pyike-config.schema.json).
ENGINE_INTERFACE = ENGINE_SCHEMA["$defs"]["connection"]["properties"]["interface"]["properties"]
TUNNEL_INTERFACE_NAME_PATTERN = INTERFACE_NAME_PATTERN


def _engine_bounded(key: str, description: str) -> Dict[str, Any]:
    """An integer field with the engine's bounds for interface ``key``; ``description`` takes them."""
    low, high = ENGINE_INTERFACE[key]["minimum"], ENGINE_INTERFACE[key]["maximum"]
    return {"type": "integer", "minimum": low, "maximum": high, "description": description % (low, high)}


def _interface_addresses(side: str) -> Dict[str, Any]:
    return {
        "type": "array",
        "uniqueItems": True,
        "items": {"$ref": "#/$defs/interfaceAddress"},
        "description": (
            "the addresses of the %s end's interface, each with its prefix length, e.g. 169.254.10.1/30 "
            "for a BGP session across the tunnel; only for a managed %s end (an unmanaged peer configures "
            "its own)" % (side, side)
        ),
    }


def _list_of(definition: str, description: str, unique: bool = True) -> Dict[str, Any]:
    """A non-empty array of ``#/$defs/<definition>`` items."""
    schema: Dict[str, Any] = {"type": "array", "minItems": 1}
    if unique:
        schema["uniqueItems"] = True
    schema["items"] = {"$ref": "#/$defs/%s" % definition}
    schema["description"] = description
    return schema


def _proposals(description: str) -> Dict[str, Any]:
    return _list_of("proposal", description)


def _members(description: str) -> Dict[str, Any]:
    return _list_of("member", description)


def _selectors(description: str) -> Dict[str, Any]:
    return _list_of("trafficSelector", description, unique=False)


PSK_DESCRIPTION = (
    "the pre-shared key of the tunnel, the same on both ends: text (UTF-8), or hex after '0x', or "
    "base64 after '0s'; at least 20 octets and not one character repeated (as the engine requires; "
    "allow_weak_psk accepts any). Take it from a vault variable (e.g. vault_psk_hq, templated where the tunnel is defined); it never "
    "appears in results, messages or diffs"
)
PSK_FILE_DESCRIPTION = (
    "path, on each managed end, of a file that holds the pre-shared key (same syntax as psk); the "
    "file must be a regular file with mode 0600 and is not managed by this collection"
)
ALLOW_WEAK_PSK_DESCRIPTION = (
    "accept a pre-shared key shorter than 20 octets or made of one character repeated (the engine's "
    "allow_weak_psk). Whoever takes part in one IKE_AUTH exchange can guess a weak key offline "
    "(RFC 7296 §2.15): use it only to match a peer that cannot change its key yet"
)
START_ACTION_DESCRIPTION = (
    "what the initiating end does when its configuration is loaded: start initiates the tunnel, "
    "trap routes the tunnel's traffic into the engine and initiates on the first packet (held briefly "
    "meanwhile; strongSwan's start_action=trap), none waits for the peer or an explicit "
    "'pyikectl initiate'. The other end always waits"
)
CLOSE_ACTIONS = ["none", "trap", "start"]
START_ACTIONS = ["start", "trap", "none"]
CLOSE_ACTION_DESCRIPTION = (
    "what the initiating end does when the peer closes the tunnel (deletes its Child SA or IKE SA; not "
    "a rekey, not a dead peer, which is dpd_action's): none leaves it down, trap initiates again on the "
    "next packet, start initiates again at once (with a back-off while the peer keeps closing it); "
    "the other end always leaves it. Default none"
)
ENCAP_DESCRIPTION = "force UDP encapsulation of ESP (RFC 3948) even when no NAT is detected"
AUTH_DESCRIPTION = (
    "how both ends authenticate: psk (a pre-shared key; default) or pubkey (X.509 certificates, "
    "RFC 7296 §2.15 and RFC 7427 signatures). With pubkey every managed end needs ipsec_certificate, "
    "ipsec_private_key and ipsec_ca_certificates, and no pre-shared key is given"
)
DEFAULT_ROUTE_DESCRIPTION = (
    "the selectors of one side deliberately capture more than the other end's networks, such as "
    "0.0.0.0/0 (all traffic through the tunnel). Without it, remote selectors that contain a "
    "gateway's own LAN, its own address or its peer's address are refused; with it, the generated "
    "configuration leaves those addresses (and loopback and link-local space) out of the selectors, "
    "as strongSwan's passthrough policies would, so the routes into the tunnel never capture the "
    "tunnel's own IKE and ESP packets or the LAN"
)

DEFS: Dict[str, Any] = {
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
            "an IPv4 or IPv6 network in CIDR notation (10.1.0.0/24, 2001:db8:1::/64) without host bits; a "
            "bare address is a /32 or /128; loopback and link-local networks are refused"
        ),
    },
    "trafficSelector": {
        "type": "string",
        "minLength": 1,
        "maxLength": 128,
        "description": (
            "a traffic selector in strongSwan syntax: a CIDR network (without host bits), an address or a "
            "range (10.1.0.10-10.1.0.20), optionally followed by [proto/port], e.g. 10.1.0.0/24[tcp/443]; "
            "at most 255 per side of a child (the count field of a TS payload is one octet, RFC 7296 §3.13)"
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
                "aes256gcm16-prfsha256-x25519 or aes256-sha256-modp3072 (encryption, integrity or "
                "PRF, key exchange); SHA-1, and modp2048 as the only key exchange, are accepted with a warning"
            ),
            "rekey_time": seconds(
                "seconds after which the IKE SA is rekeyed (RFC 7296 §2.8); 0 never rekeys, else at least "
                "%d; default: the engine's (14400)" % MIN_REKEY_SECONDS
            ),
            "reauth_time": seconds(
                "seconds after which the IKE SA is reauthenticated (a new IKE_SA_INIT and IKE_AUTH, "
                "make-before-break); 0 (the default) never, else at least %d" % MIN_REKEY_SECONDS
            ),
            "dpd_delay": seconds(
                "seconds without traffic from the peer before a liveness check (RFC 7296 §2.4); "
                "0 turns dead peer detection off; it must be shorter than rekey_time (the rekey would "
                "otherwise come first); default: the engine's (30)"
            ),
            "dpd_action": {
                "type": "string",
                "enum": ["restart", "clear", "trap"],
                "description": (
                    "what the initiating end of a tunnel does when DPD finds the peer dead: restart "
                    "(initiate again until the peer answers, so a dead tunnel comes back by itself), "
                    "trap (remove the SAs and initiate again on the next packet for the tunnel) or "
                    "clear (remove its SAs). Default: restart when the tunnel's start_action is start, "
                    "trap when it is trap, else clear. The responding end always clears: it waits for "
                    "the peer to come back"
                ),
            },
        },
    },
    "espGroup": {
        "type": "object",
        "additionalProperties": False,
        "required": ["proposals"],
        "description": "Child SA (ESP) parameters shared by the tunnels and children that name this group.",
        "properties": {
            "proposals": _proposals(
                "ESP proposals in order of preference, strongSwan syntax, e.g. aes256gcm16 or "
                "aes256-sha256; a key exchange method in a proposal (aes256gcm16-x25519) means PFS: "
                "a fresh Diffie-Hellman on every rekey; SHA-1 is accepted with a warning"
            ),
            "rekey_time": seconds(
                "seconds after which Child SAs are rekeyed (RFC 7296 §2.8); 0 never rekeys, else at least "
                "%d; default: the engine's (3600)" % MIN_REKEY_SECONDS
            ),
            "rekey_bytes": count(
                "bytes either ESP SA of a Child SA may carry before it is rekeyed; 0 (the default) rekeys "
                "on time only, else at least %d" % MIN_VOLUME_BYTES
            ),
            "life_bytes": count(
                "bytes after which a Child SA is deleted when rekeying did not happen in time; greater "
                "than rekey_bytes; 0 (the default) is unlimited, else at least %d" % MIN_VOLUME_BYTES
            ),
            "rekey_packets": count(
                "packets either ESP SA may carry before the Child SA is rekeyed; 0 (the default) is "
                "unlimited, else at least %d" % MIN_VOLUME_PACKETS
            ),
            "life_packets": count(
                "packets after which a Child SA is deleted when rekeying did not happen in time; greater "
                "than rekey_packets; 0 (the default) is unlimited, else at least %d" % MIN_VOLUME_PACKETS
            ),
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
                "maxLength": 253,
                "pattern": "^(%any|[0-9A-Fa-f.:]+|[A-Za-z0-9][A-Za-z0-9.-]*)$",
                "description": (
                    "the unmanaged peer's IKE address; a DNS name (vpn.example.com, then id is required), "
                    "which the engine resolves each time it initiates, so a changed address is followed, "
                    "and as a responder accepts the peer from the addresses last resolved; or %any to "
                    "accept the peer from any address (then the managed end cannot initiate)"
                ),
            },
            "id": {
                "$ref": "#/$defs/identity",
                "description": (
                    "the identity the peer authenticates as; default: its address. %any accepts any "
                    "identity (a warning with a pre-shared key: whoever holds the key can pose as it)"
                ),
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
            "left_ts": _selectors(
                "traffic selectors on the left side; default: the left end's subnets (with interface: "
                "0.0.0.0/0 and/or ::/0, in the IP families of right_ts or else the tunnel's)"
            ),
            "right_ts": _selectors(
                "traffic selectors on the right side; default: the right end's subnets (with interface: "
                "0.0.0.0/0 and/or ::/0, in the IP families of left_ts or else the tunnel's)"
            ),
            "esp_group": {
                "$ref": "#/$defs/name",
                "description": "name of an ipsec_esp_groups entry for this child; default: the tunnel's",
            },
            "default_route": {
                "type": "boolean",
                "description": DEFAULT_ROUTE_DESCRIPTION + "; not in a route-based tunnel (interface), whose "
                "policies are bound to its interface and never capture the gateway's own traffic",
            },
        },
    },
    "interfaceName": {
        "type": "string",
        "pattern": TUNNEL_INTERFACE_NAME_PATTERN,
        "description": "an interface name of 1 to 15 letters, digits, '_', '.' or '-', not '.' or '..'",
    },
    "interfaceAddress": {
        "type": "string",
        "minLength": 1,
        "maxLength": 64,
        "description": "an IPv4 or IPv6 address with its prefix length, e.g. 169.254.10.1/30 or fd00:10::1/64",
    },
    "tunnelInterface": {
        "type": "object",
        "additionalProperties": False,
        "required": ["name"],
        "description": (
            "Makes the tunnel route-based (the engine's mode: route) on every managed end: each gets an "
            "interface of this name (an XFRM interface in kernel mode, a TUN device in userspace mode) bound "
            "to the tunnel's Child SAs, "
            "and what is routed into it (static routes, FRR or BIRD) crosses the tunnel. The default child "
            "then carries everything: 0.0.0.0/0 on both sides, and ::/0 when an interface address or "
            "either end's subnets are IPv6."
        ),
        "properties": {
            "name": {
                "$ref": "#/$defs/interfaceName",
                "description": (
                    "the interface's name on each managed end, unique among the route-based tunnels of a "
                    "host: 1 to 15 letters, digits, '_', '.' or '-', not '.' or '..'"
                ),
            },
            "if_id": _engine_bounded(
                "if_id",
                "the interface id that binds the tunnel's Child SAs to the interface (the XFRM if_id in kernel "
                "mode), %d to %d; unique "
                "among the route-based tunnels of a host; default: the engine's, derived from the name",
            ),
            "mtu": _engine_bounded("mtu", "the interface's MTU, %d to %d; default: the kernel's"),
            "left_addresses": _interface_addresses("left"),
            "right_addresses": _interface_addresses("right"),
        },
    },
    "member": {
        "type": ["string", "object"],
        "minLength": 1,
        "maxLength": 255,
        "additionalProperties": False,
        "required": ["host"],
        "description": (
            "a member of a topology: an inventory host name, or {host, local_ts, remote_ts, "
            "default_route} to give that member's tunnels their own selectors"
        ),
        "properties": {
            "host": {"$ref": "#/$defs/hostName", "description": "the inventory host"},
            "local_ts": _selectors("this member's side of its tunnels; default: its ipsec_lan_subnets"),
            "remote_ts": _selectors(
                "hub_and_spoke spokes only: the far side of the spoke's tunnel to each hub; default: the "
                "hub's ipsec_lan_subnets and the other spokes' (with default_route: 0.0.0.0/0, and ::/0 "
                "when the spoke has IPv6 subnets)"
            ),
            "default_route": {"type": "boolean", "description": DEFAULT_ROUTE_DESCRIPTION},
        },
    },
}

DEFS["tunnel"] = {
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
        "psk": {"type": "string", "minLength": 1, "description": PSK_DESCRIPTION},
        "psk_file": {"type": "string", "minLength": 1, "description": PSK_FILE_DESCRIPTION},
        "allow_weak_psk": {"type": "boolean", "description": ALLOW_WEAK_PSK_DESCRIPTION},
        "children": {
            "type": "array",
            "minItems": 1,
            "items": {"$ref": "#/$defs/child"},
            "description": (
                "the Child SAs; default: one child 'lan' with the left end's subnets on the left "
                "and the right end's subnets on the right (with interface: 0.0.0.0/0, and ::/0 for IPv6, "
                "on both sides)"
            ),
        },
        "start_action": {
            "type": "string",
            "enum": START_ACTIONS,
            "description": START_ACTION_DESCRIPTION + "; the left end initiates; default start",
        },
        "close_action": {
            "type": "string",
            "enum": CLOSE_ACTIONS,
            "description": CLOSE_ACTION_DESCRIPTION,
        },
        "encap": {"type": "boolean", "description": ENCAP_DESCRIPTION},
        "auth": {"type": "string", "enum": ["psk", "pubkey"], "description": AUTH_DESCRIPTION},
        "interface": {
            "$ref": "#/$defs/tunnelInterface",
            "description": (
                "makes the tunnel route-based on every managed end: {name, if_id, mtu, left_addresses, "
                "right_addresses}; routes (static, FRR, BIRD) decide what crosses, not the selectors"
            ),
        },
    },
}

DEFS["topology"] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["name", "type", "ike_group", "esp_group"],
    "description": (
        "Tunnels generated from hosts. hub_and_spoke: hub (or hubs) and spokes (or spokes_group); each "
        "spoke initiates a tunnel to each hub whose selectors are the spoke's subnets <-> the hub's and "
        "every other spoke's subnets (adjacent networks joined into ranges), so spokes reach each other "
        "through a hub. full_mesh: members (or members_group); a tunnel per pair, the member listed "
        "first initiates (a member without a public address always does), with the two members' "
        "subnets. The pre-shared key: psk for every tunnel, psks per tunnel, or psk_file; or auth: "
        "pubkey for certificates."
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
        "hub": {
            "$ref": "#/$defs/hostName",
            "description": "hub_and_spoke: the hub host; its tunnels are named '<topology>-<spoke>'",
        },
        "hubs": {
            "type": "array",
            "minItems": 1,
            "uniqueItems": True,
            "items": {"$ref": "#/$defs/hostName"},
            "description": (
                "hub_and_spoke, instead of hub: several hubs for one set of spokes (the most common "
                "redundancy design): every spoke has a tunnel to each, named '<topology>-<hub>-<spoke>', "
                "and reaches the other spokes through whichever is up"
            ),
        },
        "spokes": _members("hub_and_spoke: the spoke hosts (or spokes_group)"),
        "spokes_group": {
            "$ref": "#/$defs/groupName",
            "description": "hub_and_spoke: the group whose hosts are the spokes (the hubs excluded)",
        },
        "members": _members("full_mesh: the member hosts (or members_group)"),
        "members_group": {
            "$ref": "#/$defs/groupName",
            "description": "full_mesh: the group whose hosts are the members",
        },
        "ike_group": {"$ref": "#/$defs/name", "description": "name of an ipsec_ike_groups entry"},
        "esp_group": {"$ref": "#/$defs/name", "description": "name of an ipsec_esp_groups entry"},
        "psk": {
            "type": "string",
            "minLength": 1,
            "description": PSK_DESCRIPTION + "; for every generated tunnel without a psks entry",
        },
        "psks": {"$ref": "#/$defs/psks"},
        "psk_file": {"type": "string", "minLength": 1, "description": PSK_FILE_DESCRIPTION},
        "allow_weak_psk": {"type": "boolean", "description": ALLOW_WEAK_PSK_DESCRIPTION},
        "start_action": {
            "type": "string",
            "enum": START_ACTIONS,
            "description": (
                START_ACTION_DESCRIPTION + "; spokes (hub_and_spoke) and the earlier member "
                "(full_mesh) initiate; default start"
            ),
        },
        "close_action": {
            "type": "string",
            "enum": CLOSE_ACTIONS,
            "description": CLOSE_ACTION_DESCRIPTION,
        },
        "encap": {"type": "boolean", "description": ENCAP_DESCRIPTION},
        "auth": {"type": "string", "enum": ["psk", "pubkey"], "description": AUTH_DESCRIPTION},
    },
}
