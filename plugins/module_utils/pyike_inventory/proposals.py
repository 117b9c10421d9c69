# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""IKE and ESP proposal groups: proposal syntax, weak-but-working algorithms (warnings) and lifetimes.

Lifetime minimums (0 is always allowed where it means "never" or "unlimited"):

* ``rekey_time`` (IKE and ESP) and ``reauth_time``: at least 60 s.  A tunnel that rekeys every
  second spends its time in CREATE_CHILD_SA exchanges, and a lost exchange stalls it.
* ``rekey_bytes``/``life_bytes``: at least 1,000,000; ``rekey_packets``/``life_packets``: at least
  1,000.  ``life_packets: 1`` deletes the Child SA after its first packet.
* ``life_*`` must be greater than ``rekey_*`` (the hard limit comes after the rekey), as the
  engine requires.
* ``dpd_delay`` must be shorter than the IKE ``rekey_time`` (the engine's default 14400 when
  unset): otherwise the rekey always comes first, DPD never runs, and a dead peer is noticed only
  when a rekey fails.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Dict, List, Optional, Set

from ._engine import DhId, IntegId, PrfId, ProposalError, ProtocolId, TransformType, parse_proposal
from .model import Path
from .schema_defs import MIN_REKEY_SECONDS, MIN_VOLUME_BYTES, MIN_VOLUME_PACKETS

if TYPE_CHECKING:  # pragma: no cover
    from .resolve import Inventory

ENGINE_IKE_REKEY_TIME = 14400  # pyike.config.schema.DEFAULT_IKE_REKEY_TIME
ENGINE_DPD_DELAY = 30  # pyike.config.schema.DEFAULT_DPD_DELAY
_SHA1 = {(TransformType.PRF, PrfId.HMAC_SHA1), (TransformType.INTEG, IntegId.HMAC_SHA1_96)}


def resolve(inv: Inventory) -> None:
    for key, protocol, target in (
        ("ipsec_ike_groups", ProtocolId.IKE, inv.ike_groups),
        ("ipsec_esp_groups", ProtocolId.ESP, inv.esp_groups),
    ):
        groups = inv.data.get(key)
        if not isinstance(groups, dict):
            continue
        for name, group in groups.items():
            if not isinstance(name, str):
                continue
            target[name] = group if isinstance(group, dict) else {}
            _proposals(inv, (key, name), target[name], protocol)
            _lifetimes(inv, (key, name), target[name], protocol)


def _proposals(inv: Inventory, path: Path, group: Dict[str, Any], protocol: int) -> None:
    proposals = group.get("proposals")
    exchanges: Set[int] = set()
    specs = 0
    for index, text in enumerate(proposals if isinstance(proposals, list) else []):
        if not isinstance(text, str) or text.strip().lower() == "default":
            exchanges.add(-1)  # the engine's default list: modern methods first
            continue
        try:
            spec = parse_proposal(text, protocol)
        except ProposalError as error:
            inv.add((*path, "proposals", index), str(error))
            continue
        specs += 1
        used = {(ttype, transform) for ttype, entries in spec.items() for transform, _length in entries}
        if used & _SHA1:
            inv.warn(
                (*path, "proposals", index),
                "%r uses SHA-1, which RFC 8247 deprecates for IKEv2 and ESP; offer a SHA-2 proposal "
                "(e.g. prfsha256, sha256) first" % text,
            )
        exchanges.update(transform for transform, _length in spec.get(TransformType.DH) if transform)
    if specs and exchanges == {DhId.MODP_2048}:
        inv.warn(
            (*path, "proposals"),
            "modp2048 is the only key exchange offered: 2048-bit MODP gives about 112-bit security (RFC 8247 "
            "calls for moving on); offer x25519 or ecp256 first and keep modp2048 for old peers",
        )


def _number(group: Dict[str, Any], key: str) -> Optional[int]:
    value = group.get(key)
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _lifetimes(inv: Inventory, path: Path, group: Dict[str, Any], protocol: int) -> None:
    keys = ("rekey_time", "reauth_time") if protocol == ProtocolId.IKE else ("rekey_time",)
    for key in keys:
        value = _number(group, key)
        if value and value < MIN_REKEY_SECONDS:
            inv.add(
                (*path, key),
                "%d second%s is too short: at least %d (0 means never); a tunnel that rekeys every few seconds "
                "spends its time rekeying" % (value, "" if value == 1 else "s", MIN_REKEY_SECONDS),
            )
    if protocol == ProtocolId.IKE:
        _dpd(inv, path, group)
        return
    for unit, minimum in (("bytes", MIN_VOLUME_BYTES), ("packets", MIN_VOLUME_PACKETS)):
        rekey, life = _number(group, "rekey_" + unit), _number(group, "life_" + unit)
        bad: List[str] = []
        for key, value in (("rekey_" + unit, rekey), ("life_" + unit, life)):
            if value and value < minimum:
                bad.append(key)
                inv.add(
                    (*path, key),
                    "%d %s too few: at least %d %s (0 means unlimited); a Child SA that ends after so little "
                    "traffic spends its time rekeying"
                    % (value, "is" if value == 1 else "are", minimum, unit),
                )
        if rekey and life and life <= rekey and not bad:
            inv.add(
                (*path, "life_" + unit),
                "%d must be greater than rekey_%s (%d): the hard limit comes after the rekey"
                % (life, unit, rekey),
            )


def _dpd(inv: Inventory, path: Path, group: Dict[str, Any]) -> None:
    if inv.flagged((*path, "dpd_delay")) or inv.flagged((*path, "rekey_time")):
        return
    delay = _number(group, "dpd_delay")
    rekey = _number(group, "rekey_time")
    if rekey and rekey < MIN_REKEY_SECONDS:
        return  # the rekey time is refused already
    delay = ENGINE_DPD_DELAY if delay is None else delay
    rekey = ENGINE_IKE_REKEY_TIME if rekey is None else rekey
    if delay and rekey and delay >= rekey:
        inv.add(
            (*path, "dpd_delay"),
            "%d seconds is not shorter than the IKE rekey_time (%d%s): the rekey would always come first, so "
            "DPD would never run and a dead peer would be noticed only when a rekey fails"
            % (delay, rekey, "" if "rekey_time" in group else ", the engine's default"),
        )
