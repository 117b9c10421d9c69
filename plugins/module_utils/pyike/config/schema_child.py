"""The Child SA part of the configuration schema (schema.py), its defaults, and the field helpers both use."""

from __future__ import annotations

from typing import Any, Dict, List

DEFAULT_START_ACTION = "none"
DEFAULT_CLOSE_ACTION = "none"
START_ACTIONS = ["none", "start", "trap"]
CLOSE_ACTIONS = ["none", "trap", "start"]
DEFAULT_CHILD_REKEY_TIME = 3600  # strongSwan: 1 h
DEFAULT_LIFE_BYTES = 0
DEFAULT_LIFE_PACKETS = 0
DEFAULT_REKEY_BYTES = 0
DEFAULT_REKEY_PACKETS = 0
DEFAULT_ESP_PROPOSALS: List[str] = ["default"]
# What the keyword "default" stands for (only transforms the installed cryptography supports are kept;
# see model.default_proposals).
DEFAULT_ESP_PROPOSAL_STRINGS = [
    "aes256gcm16-aes128gcm16",
    "aes256-aes128-sha256-sha384-sha512",
]
MAX_SECONDS = 2**31 - 1
MAX_COUNT = 2**64 - 1


def seconds_field(description: str, default: int) -> Dict[str, Any]:
    return {
        "type": "integer",
        "minimum": 0,
        "maximum": MAX_SECONDS,
        "default": default,
        "description": description,
    }


def count_field(description: str, default: int) -> Dict[str, Any]:
    return {
        "type": "integer",
        "minimum": 0,
        "maximum": MAX_COUNT,
        "default": default,
        "description": description,
    }


def proposals_field(description: str, default: List[str]) -> Dict[str, Any]:
    return {
        "type": "array",
        "minItems": 1,
        "uniqueItems": True,
        "items": {"$ref": "#/$defs/proposal"},
        "default": default,
        "description": description,
    }


CHILD_SCHEMA: Dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["local_ts", "remote_ts"],
    "description": "One Child SA: the traffic it protects and how.",
    "properties": {
        "local_ts": {
            "type": "array",
            "minItems": 1,
            "items": {"$ref": "#/$defs/trafficSelector"},
            "description": "traffic selectors on this side (TSi when initiating)",
        },
        "remote_ts": {
            "type": "array",
            "minItems": 1,
            "items": {"$ref": "#/$defs/trafficSelector"},
            "description": "traffic selectors on the peer's side (TSr when initiating)",
        },
        "esp_proposals": proposals_field(
            "ESP proposals in order of preference (strongSwan syntax); a key exchange method such "
            "as x25519 or modp2048 in a proposal means PFS; 'default' is "
            + ", ".join(DEFAULT_ESP_PROPOSAL_STRINGS)
            + " (no PFS)",
            DEFAULT_ESP_PROPOSALS,
        ),
        "start_action": {
            "type": "string",
            "enum": START_ACTIONS,
            "default": DEFAULT_START_ACTION,
            "description": (
                "none: wait for the peer or an explicit initiate; start: initiate when the "
                "configuration is loaded; trap: install a trap when the configuration is loaded, "
                "i.e. routes for remote_ts into the TUN device and a policy without an SA (RFC 4301 "
                "§4.4.1), so that the first packet matching the child's selectors initiates it (an "
                "acquire, §5.1). One acquire per child at a time; after a failed one the next waits "
                "1 s, doubling up to 30 s. Packets that meet the trap while the Child SA comes up "
                "are held, 8 at most and for 3 s, and sent once it is up; others are dropped and "
                "counted. The trap outlives the Child SA (a peer's DELETE, an expiry): the next "
                "packet brings it back. start and trap need a remote address other than %any"
            ),
        },
        "close_action": {
            "type": "string",
            "enum": CLOSE_ACTIONS,
            "default": DEFAULT_CLOSE_ACTION,
            "description": (
                "what to do when the peer closes the Child SA: deletes it, or deletes its IKE SA "
                "(not a rekey, not a reauthentication that replaces it, not our own terminate or "
                "expiry; a peer that stops answering is dpd_action's). none: nothing; trap: install "
                "a trap as start_action trap does (a terminate removes it again); start: initiate it "
                "again after 2 s, the delay doubling (up to 300 s) each time the peer closes it "
                "again within 60 s of its start, so a peer that keeps deleting it is not flooded. "
                "trap and start need a remote address other than %any"
            ),
        },
        "rekey_time": seconds_field(
            "seconds after which the Child SA is rekeyed (RFC 7296 §2.8); 0 never rekeys",
            DEFAULT_CHILD_REKEY_TIME,
        ),
        "rekey_bytes": count_field(
            "bytes (of inner packets, RFC 4301 §4.4.2.1) that either ESP SA of the Child SA may carry "
            "before the Child SA is rekeyed, up to 10% fewer at random so that both ends do not "
            "rekey at once (like rekey_time); 0 (the default) rekeys on time only, unless "
            "life_bytes is set",
            DEFAULT_REKEY_BYTES,
        ),
        "life_bytes": count_field(
            "hard byte limit: an ESP SA that has carried this many bytes is deleted with its "
            "Child SA (when rekeying did not happen in time). Defaults to rekey_bytes + 10%; must "
            "be greater than rekey_bytes. Given alone, the Child SA is rekeyed at rekey_bytes = "
            "life_bytes / 1.1 (so a tunnel is replaced, not cut). 0 is unlimited",
            DEFAULT_LIFE_BYTES,
        ),
        "rekey_packets": count_field(
            "packets that either ESP SA may carry before the Child SA is rekeyed (with jitter as "
            "rekey_bytes); 0 (the default) is unlimited. Without extended sequence numbers an ESP "
            "SA is rekeyed anyway well before its 32-bit sequence number would wrap (RFC 4303 "
            "§3.3.3)",
            DEFAULT_REKEY_PACKETS,
        ),
        "life_packets": count_field(
            "hard packet limit, as life_bytes: defaults to rekey_packets + 10%, must be greater "
            "than rekey_packets; given alone, the Child SA is rekeyed at life_packets / 1.1. 0 is "
            "unlimited",
            DEFAULT_LIFE_PACKETS,
        ),
    },
}
