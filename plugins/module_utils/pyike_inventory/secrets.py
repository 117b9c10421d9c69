# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Secret fields of the inventory: which they are, messages about them, and pre-shared key strength.

A message about a secret field is composed without its value, whatever the value's length or type
(:func:`schema_message`, :func:`templating_message`); :func:`scrub` removes every secret text met
in the input from any message as a last line of defence (texts of at least 4 characters that
stand alone: shorter ones, or parts of words, would mangle ordinary text, and are covered by the
composition rule).
"""

from __future__ import annotations

import re
from typing import Any, Iterable, List, Mapping, Optional, Sequence

from ._engine import MIN_PSK_OCTETS, decode_psk, psk_weakness, type_phrase

REDACTED = "<redacted>"
MIN_SCRUB_LENGTH = 4
_QUOTED = re.compile(r"'[^']*'|\"[^\"]*\"")
_UNDEFINED = re.compile(r"^'([A-Za-z_][A-Za-z0-9_]*)' is undefined\b")
GLOBAL_KEYS = ("ipsec_tunnels", "ipsec_topologies")


def is_secret(path: Sequence[Any]) -> bool:
    """Whether the data path is (inside) a secret: a tunnel's or topology's psk, a psks entry, a
    host's ipsec_private_key; with or without the ``hostvars.<host>.`` prefix."""
    items = list(path)
    if len(items) >= 2 and items[0] == "hostvars":
        items = items[2:]
    if not items:
        return False
    if items[0] == "ipsec_private_key":
        return True
    if items[0] not in GLOBAL_KEYS or len(items) < 3:
        return False
    return items[2] == "psk" or (items[2] == "psks" and len(items) >= 4)


def collect(data: Mapping[str, Any], hosts: Mapping[str, Mapping[str, Any]]) -> List[str]:
    """Every secret text of the input (pre-shared keys, private keys), as given."""
    found: List[str] = []

    def keep(value: Any) -> None:
        if value is not None and not isinstance(value, (dict, list, tuple, bool)):
            found.append(str(value))

    for key in GLOBAL_KEYS:
        items = data.get(key)
        for item in items if isinstance(items, list) else []:
            if isinstance(item, dict):
                keep(item.get("psk"))
                psks = item.get("psks")
                for value in psks.values() if isinstance(psks, dict) else []:
                    keep(value)
    for values in hosts.values():
        keep(values.get("ipsec_private_key"))
    return found


def scrub(text: str, secrets: Iterable[str]) -> str:
    """``text`` with every secret of at least 4 characters that stands alone (not inside a longer word:
    a key 'short' must not turn "shorter" into "<redacted>er") replaced by <redacted>."""
    for secret in sorted(set(secrets), key=len, reverse=True):
        if len(secret) >= MIN_SCRUB_LENGTH and secret in text:
            text = re.sub(r"(?<![A-Za-z0-9])%s(?![A-Za-z0-9])" % re.escape(secret), REDACTED, text)
    return text


def _value_at(document: Any, path: Sequence[Any]) -> Any:
    for item in path:
        try:
            document = document[item]
        except (KeyError, IndexError, TypeError):
            return None
    return document


def schema_message(document: Mapping[str, Any], path: Sequence[Any], message: str) -> str:
    """A schema violation's message; for a secret field one that names the value's type only."""
    if not is_secret(path):
        return message
    value = _value_at(document, path)
    if not isinstance(value, str):
        return "expected a string, got %s" % type_phrase(value)
    if not value:
        return "must not be empty"
    return "is not valid (the value is not shown: it is a secret)"


def templating_message(path: Sequence[Any], message: str, secrets: Iterable[str] = ()) -> str:
    """A templating error's message; for a secret field every quoted text in it is redacted, since an
    error can quote the value it failed on (``time data 'the-key' does not match format``).  That a
    variable is undefined names the variable, which the template itself holds: that stays."""
    if is_secret(path):
        undefined = _UNDEFINED.match(message)
        if undefined:
            return undefined.group(0)
        message = _QUOTED.sub(REDACTED, message)
    return scrub(message, secrets)


def psk_problem(text: str, allow_weak: bool) -> Optional[str]:
    """Why a pre-shared key cannot be used (it cannot be decoded, or it is weak), or None.

    The same rule as the engine's (``psk_weakness``: at least 20 octets after decoding, and not one
    character repeated), so that the inventory is refused here, with its own data path, rather than
    by the engine on the gateway.  The reason never contains the key.
    """
    try:
        value = decode_psk(text)
    except ValueError as error:
        return "the pre-shared key %s" % error
    if allow_weak:
        return None
    weakness = psk_weakness(value)
    if weakness:
        return (
            "the pre-shared key %s: whoever takes part in one IKE exchange can guess a weak key offline; use a "
            "random key of at least %d octets (e.g. 'openssl rand -base64 32'), or set allow_weak_psk: true"
            % (weakness, MIN_PSK_OCTETS)
        )
    return None
