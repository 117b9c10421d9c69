"""The builder's Child SA part: traffic selectors, ESP proposals, lifetimes and actions of each child."""

from __future__ import annotations

from typing import Any, List, Optional, Tuple

from ..crypto.errors import ProposalError
from ..ids import ProtocolId
from ..selectors import SelectorError, TrafficSelector
from . import schema_child as child_defaults
from .build_base import BuilderBase
from .errors import Path
from .model import ChildConfig, Endpoint, parse_proposal_text


class ChildParts(BuilderBase):
    """Proposals, selectors and one child."""

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
            get(raw, "esp_proposals", path, "list", child_defaults.DEFAULT_ESP_PROPOSALS),
            ProtocolId.ESP,
        )
        start_action = get(raw, "start_action", path, "str", child_defaults.DEFAULT_START_ACTION)
        close_action = get(raw, "close_action", path, "str", child_defaults.DEFAULT_CLOSE_ACTION)
        rekey_time = get(raw, "rekey_time", path, "int", child_defaults.DEFAULT_CHILD_REKEY_TIME)
        life_bytes = get(raw, "life_bytes", path, "int", child_defaults.DEFAULT_LIFE_BYTES)
        life_packets = get(raw, "life_packets", path, "int", child_defaults.DEFAULT_LIFE_PACKETS)
        rekey_bytes = get(raw, "rekey_bytes", path, "int", child_defaults.DEFAULT_REKEY_BYTES)
        rekey_packets = get(raw, "rekey_packets", path, "int", child_defaults.DEFAULT_REKEY_PACKETS)
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
