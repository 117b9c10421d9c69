# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Inventory variables -> checked gateways and tunnels (topologies expanded), with every problem.

:class:`Inventory` does the work once; :func:`validate_inventory` and :func:`engine_configs`
(in :mod:`.build`) are the entry points.  Every problem carries the data path of the value at
fault: ``ipsec_tunnels[2].children[0].left_ts[1]`` for the global variables,
``hostvars.gw1.ipsec_lan_subnets[0]`` for a host's own.  Checks run on whatever is well-formed,
so one run reports everything; a field the schema already rejected gets no second message.

Pre-shared keys and private keys never reach a message: messages are composed without them,
and as a last line of defence every secret text met in the input is scrubbed from them.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Any, Dict, List, Mapping, Optional, Sequence, Set, Tuple

from ._engine import (
    IdentityError,
    ProposalError,
    ProtocolId,
    SelectorError,
    TrafficSelector,
    decode_psk,
    format_path,
    narrow,
    parse_identity,
    parse_proposal,
    schema_violations,
)
from .credentials import (
    VARIABLES as CREDENTIAL_VARIABLES,
)
from .credentials import (
    CredentialProblem,
    HostCredential,
    ReadFile,
    identity_problem,
    load_host,
    read_local_file,
    trust_problem,
)
from .model import Child, End, Gateway, Path, Problem, Tunnel
from .schema import NAME_PATTERN, SCHEMA, VARIABLE_PREFIX

REDACTED = "<redacted>"
_MIN_SCRUB_LENGTH = 4  # as the engine: shorter texts would mangle ordinary words
_UNSAFE_NAME = re.compile(r"[^A-Za-z0-9_-]")
_NAME = re.compile(NAME_PATTERN)
HOSTVARS = "hostvars"


def _is_text(value: Any) -> bool:
    return isinstance(value, str)


def _strings(value: Any) -> List[str]:
    """The string items of a list (the schema reports the others)."""
    if not isinstance(value, (list, tuple)):
        return []
    return [item for item in value if isinstance(item, str)]


def network_problem(text: str) -> Optional[str]:
    """Why ``text`` is not a CIDR network, or None."""
    try:
        ipaddress.ip_network(text.strip(), strict=True)
    except ValueError:
        try:
            loose = ipaddress.ip_network(text.strip(), strict=False)
        except ValueError:
            return "%r is not a valid network" % text
        return "%r is not a valid network: host bits are set (the network is %s)" % (text, loose)
    if "/" in text and "%" in text:  # pragma: no cover - ipaddress refuses scoped networks
        return "%r is not a valid network" % text
    return None


def selector_problem(text: str) -> Optional[str]:
    """Why ``text`` is not a traffic selector in strongSwan syntax, or None."""
    try:
        TrafficSelector.parse(text)
    except SelectorError as error:
        if "[" in text or "-" in text:
            return "%r is not a valid traffic selector: %s" % (text, error)
        return "%r is not a valid network" % text
    return None


def _families(selectors: Sequence[str]) -> Set[int]:
    found = set()
    for text in selectors:
        try:
            found.add(TrafficSelector.parse(text).version)
        except SelectorError:
            continue
    return found


def _parsed(selectors: Sequence[str]) -> List[TrafficSelector]:
    out = []
    for text in selectors:
        try:
            out.append(TrafficSelector.parse(text))
        except SelectorError:
            continue
    return out


def safe_name(text: str) -> str:
    """A host name as part of a generated tunnel name."""
    return _UNSAFE_NAME.sub("-", text)


def _listing(names: Sequence[str]) -> str:
    return ", ".join(names) if names else "none"


class Inventory:
    """The checked inventory.

    ``data`` holds the global variables (ipsec_ike_groups, ipsec_esp_groups, ipsec_tunnels,
    ipsec_topologies); ``hosts`` maps every inventory host name to its host variables (only the
    ``ipsec_*`` ones are looked at; ``group_names`` gives its groups when ``groups`` is None);
    ``groups`` maps group names to their hosts (Ansible's ``groups``).  ``engine`` picks the
    schema validator: "jsonschema", "builtin" or None (jsonschema when importable).
    """

    def __init__(
        self,
        data: Optional[Mapping[str, Any]],
        hosts: Optional[Mapping[str, Any]],
        groups: Optional[Mapping[str, Sequence[str]]] = None,
        engine: Optional[str] = None,
        read_file: Optional[ReadFile] = None,
        now: Optional[float] = None,
    ) -> None:
        # A variable set to null (an empty YAML value) counts as not set.
        self.data: Dict[str, Any] = {key: value for key, value in (data or {}).items() if value is not None}
        self.raw_hosts: Dict[str, Dict[str, Any]] = {
            str(name): {key: value for key, value in values.items() if value is not None}
            if isinstance(values, Mapping)
            else {}
            for name, values in (hosts or {}).items()
        }
        self.groups = self._groups(groups)
        self.engine = engine
        self._problems: List[Tuple[Path, str]] = []
        self._flagged: Set[str] = set()
        self._secrets: List[str] = []
        self.gateways: Dict[str, Gateway] = {}
        self.ike_groups: Dict[str, Dict[str, Any]] = {}
        self.esp_groups: Dict[str, Dict[str, Any]] = {}
        self.tunnels: List[Tunnel] = []
        self.credentials: Dict[str, HostCredential] = {}
        self.read_file: ReadFile = read_file or read_local_file
        self.now = now
        self._collect_secrets()
        self._check_schema()
        self._resolve_gateways()
        self._resolve_groups()
        self._resolve_tunnels()
        self._resolve_topologies()
        self._check_names()
        self._check_hosts()
        self._check_credentials()

    # -- problems -----------------------------------------------------------------------------------

    def add(self, path: Path, message: str) -> None:
        """Record a problem unless the schema already flagged that field."""
        if format_path(path) in self._flagged:
            return
        self._add(path, message)

    def _add(self, path: Path, message: str) -> None:
        entry = (tuple(path), message)
        if entry not in self._problems:
            self._problems.append(entry)

    @property
    def problems(self) -> List[Problem]:
        return [
            Problem(self.scrub(format_path(path)), self.scrub(message)) for path, message in self._problems
        ]

    def scrub(self, text: str) -> str:
        for secret in sorted(self._secrets, key=len, reverse=True):
            if len(secret) >= _MIN_SCRUB_LENGTH and secret in text:
                text = text.replace(secret, REDACTED)
        return text

    def _collect_secrets(self) -> None:
        def keep(value: Any) -> None:
            if value is not None and not isinstance(value, (dict, list, tuple, bool)):
                self._secrets.append(str(value))

        for key in ("ipsec_tunnels", "ipsec_topologies"):
            items = self.data.get(key)
            for item in items if isinstance(items, list) else []:
                if isinstance(item, dict):
                    keep(item.get("psk"))
                    psks = item.get("psks")
                    for value in psks.values() if isinstance(psks, dict) else []:
                        keep(value)
        for values in self.raw_hosts.values():
            keep(values.get("ipsec_private_key"))

    # -- schema -------------------------------------------------------------------------------------

    def _check_schema(self) -> None:
        documents: List[Tuple[Path, Dict[str, Any]]] = [((), self.data)]
        for name, values in self.raw_hosts.items():
            own = {key: value for key, value in values.items() if key.startswith(VARIABLE_PREFIX)}
            documents.append(((HOSTVARS, name), own))
        for prefix, document in documents:
            for path, message in schema_violations(document, SCHEMA, self.engine):
                full = (*prefix, *path)
                self._add(full, message)
                self._flagged.add(format_path(full))

    # -- groups of hosts ------------------------------------------------------------------------------

    def _groups(self, groups: Optional[Mapping[str, Sequence[str]]]) -> Dict[str, List[str]]:
        if groups is not None:
            out = {str(name): [str(h) for h in members or []] for name, members in groups.items()}
        else:
            out = {}
            for host, values in self.raw_hosts.items():
                for group in values.get("group_names") or []:
                    out.setdefault(str(group), []).append(host)
        out.setdefault("all", list(self.raw_hosts))
        return out

    # -- gateways (host variables) --------------------------------------------------------------------

    def _resolve_gateways(self) -> None:
        for name, values in self.raw_hosts.items():
            prefix: Path = (HOSTVARS, name)
            gateway = Gateway(name)
            address = values.get("ipsec_public_address")
            gateway.address_given = address is not None
            if _is_text(address):
                problem = self._address_problem(address)
                if problem:
                    self.add((*prefix, "ipsec_public_address"), problem)
                else:
                    gateway.address = address.strip()
            identity = values.get("ipsec_id")
            if _is_text(identity):
                try:
                    parse_identity(identity)
                    gateway.id = identity
                except IdentityError as error:
                    self.add((*prefix, "ipsec_id"), str(error))
            subnets = values.get("ipsec_lan_subnets")
            if isinstance(subnets, list):
                gateway.subnets_given = bool(subnets)
                gateway.subnets = self._networks((*prefix, "ipsec_lan_subnets"), subnets)
            listen = values.get("ipsec_listen")
            if isinstance(listen, list):
                good = []
                for index, text in enumerate(listen):
                    if not _is_text(text):
                        continue
                    try:
                        ipaddress.ip_address(text.strip())
                        good.append(text.strip())
                    except ValueError:
                        self.add((*prefix, "ipsec_listen", index), "%r is not an IPv4 or IPv6 address" % text)
                gateway.listen = good
                for wildcard in [a for a in good if ipaddress.ip_address(a).is_unspecified]:
                    version = ipaddress.ip_address(wildcard).version
                    also = [a for a in good if a != wildcard and ipaddress.ip_address(a).version == version]
                    if also:
                        self.add(
                            (*prefix, "ipsec_listen"),
                            "%s already covers every IPv%d address; binding %s as well would fail"
                            % (wildcard, version, ", ".join(also)),
                        )
                if gateway.address and len(good) == len(listen):
                    self._check_listen(prefix, gateway)
            self.gateways[name] = gateway

    def _check_listen(self, prefix: Path, gateway: Gateway) -> None:
        address = ipaddress.ip_address(gateway.address)
        wildcard = ipaddress.ip_address("0.0.0.0" if address.version == 4 else "::")  # noqa: S104
        covered = any(ipaddress.ip_address(a) in (address, wildcard) for a in gateway.listen or [])
        if not covered:
            self.add(
                (*prefix, "ipsec_listen"),
                "does not include ipsec_public_address %s (or %s): the engine could not use it for IKE"
                % (gateway.address, wildcard),
            )

    @staticmethod
    def _address_problem(text: str, allow_any: bool = False) -> Optional[str]:
        if allow_any and text.strip() == "%any":
            return None
        try:
            address = ipaddress.ip_address(text.strip())
        except ValueError:
            return "%r is not an IPv4 or IPv6 address" % text
        if address.is_unspecified or address.is_multicast:
            return "%s is not a unicast address%s" % (
                address,
                "; use %any to accept any peer" if allow_any else "",
            )
        return None

    def _networks(self, path: Path, items: Sequence[Any]) -> List[str]:
        good = []
        for index, text in enumerate(items):
            if not _is_text(text):
                continue
            problem = network_problem(text)
            if problem:
                self.add((*path, index), problem)
            else:
                good.append(text.strip())
        return good

    # -- proposal groups ------------------------------------------------------------------------------

    def _resolve_groups(self) -> None:
        for key, protocol, target in (
            ("ipsec_ike_groups", ProtocolId.IKE, self.ike_groups),
            ("ipsec_esp_groups", ProtocolId.ESP, self.esp_groups),
        ):
            groups = self.data.get(key)
            if not isinstance(groups, dict):
                continue
            for name, group in groups.items():
                if not isinstance(name, str):
                    continue
                target[name] = group if isinstance(group, dict) else {}
                proposals = target[name].get("proposals")
                for index, text in enumerate(proposals if isinstance(proposals, list) else []):
                    if not _is_text(text) or text.strip().lower() == "default":
                        continue
                    try:
                        parse_proposal(text, protocol)
                    except ProposalError as error:
                        self.add((key, name, "proposals", index), str(error))

    def _check_group(self, path: Path, kind: str, name: Any) -> Optional[str]:
        if not _is_text(name):
            return None
        known = self.ike_groups if kind == "ike" else self.esp_groups
        if name not in known:
            variable = "ipsec_%s_groups" % kind
            self.add(
                path,
                "unknown %s group %r (%s defines: %s)"
                % (kind.upper(), name, variable, _listing(sorted(known))),
            )
            return None
        return name

    # -- tunnel ends ---------------------------------------------------------------------------------

    def _host_end(self, path: Path, name: str) -> End:
        end = End(path, host=name)
        gateway = self.gateways.get(name)
        if gateway is None:
            self.add(path, "unknown host %r: it is not in the inventory" % name)
            end.known = False
            return end
        if not gateway.address_given:
            self.add(
                path,
                "host %r has no ipsec_public_address; every inventory host that is a tunnel end needs one"
                % name,
            )
        end.address = gateway.address
        end.id = gateway.id
        end.subnets = list(gateway.subnets)
        end.subnets_given = gateway.subnets_given
        return end

    def _peer_end(self, path: Path, raw: Dict[str, Any]) -> End:
        end = End(path)
        address = raw.get("address")
        if _is_text(address):
            problem = self._address_problem(address, allow_any=True)
            if problem:
                self.add((*path, "address"), problem)
            else:
                end.address = address.strip()
        identity = raw.get("id")
        if _is_text(identity):
            try:
                parse_identity(identity, allow_any=True)
                end.id = identity
            except IdentityError as error:
                self.add((*path, "id"), str(error))
        subnets = raw.get("subnets")
        if isinstance(subnets, list):
            end.subnets_given = bool(subnets)
            end.subnets = self._networks((*path, "subnets"), subnets)
        port = raw.get("port")
        if isinstance(port, int) and not isinstance(port, bool):
            end.port = port
        return end

    def _end(self, path: Path, raw: Any) -> Optional[End]:
        if _is_text(raw) and raw:
            return self._host_end(path, raw)
        if isinstance(raw, dict):
            return self._peer_end(path, raw)
        return None

    # -- selectors -----------------------------------------------------------------------------------

    def _selectors(self, path: Path, items: Any) -> List[str]:
        good = []
        for index, text in enumerate(items if isinstance(items, list) else []):
            if not _is_text(text):
                continue
            problem = selector_problem(text)
            if problem:
                self.add((*path, index), problem)
            else:
                good.append(text.strip())
        return good

    def _default_selectors(self, path: Path, side: str, end: End) -> List[str]:
        if not end.subnets and not end.subnets_given and end.known:
            if end.managed:
                where = "host %r has no ipsec_lan_subnets" % end.host
            else:
                where = "the unmanaged peer has no subnets"
            self.add(
                path, "no traffic selectors for the %s side: %s; set them or give %s_ts" % (side, where, side)
            )
        return list(end.subnets)

    def _check_families(self, path: Path, left_ts: List[str], right_ts: List[str]) -> None:
        if not left_ts or not right_ts:
            return
        left, right = _families(left_ts), _families(right_ts)
        for side, mine, other_side, other in (
            ("left_ts", left, "right_ts", right),
            ("right_ts", right, "left_ts", left),
        ):
            for version in sorted(mine - other):
                self.add(
                    path,
                    "%s has IPv%d selectors but %s has none, so that traffic could never match"
                    % (side, version, other_side),
                )

    def _children(self, path: Path, raw: Any, left: Optional[End], right: Optional[End]) -> List[Child]:
        if raw is None:
            left_ts = self._default_selectors(path, "left", left) if left else []
            right_ts = self._default_selectors(path, "right", right) if right else []
            self._check_families(path, left_ts, right_ts)
            return [Child("lan", left_ts, right_ts, path)]
        children: List[Child] = []
        seen: Dict[str, int] = {}
        for index, child in enumerate(raw if isinstance(raw, list) else []):
            if not isinstance(child, dict):
                continue
            child_path = (*path, "children", index)
            name = child.get("name")
            if _is_text(name):
                if name in seen:
                    self.add(
                        (*child_path, "name"),
                        "child name %r is already used by children[%d] of this tunnel" % (name, seen[name]),
                    )
                else:
                    seen[name] = index
            sides = {}
            for side, end in (("left", left), ("right", right)):
                key = side + "_ts"
                if key in child:
                    sides[side] = self._selectors((*child_path, key), child[key])
                elif end is not None:
                    sides[side] = self._default_selectors(child_path, side, end)
                else:
                    sides[side] = []
            self._check_families(child_path, sides["left"], sides["right"])
            children.append(Child(name if _is_text(name) else "", sides["left"], sides["right"], child_path))
        return children

    # -- tunnels -------------------------------------------------------------------------------------

    def _psk(self, path: Path, text: Any) -> Optional[str]:
        if not _is_text(text) or not text:
            return None
        try:
            decode_psk(text)
        except ValueError as error:
            self.add(path, "the pre-shared key %s" % error)
            return None
        return text

    def _resolve_tunnels(self) -> None:
        tunnels = self.data.get("ipsec_tunnels")
        for index, raw in enumerate(tunnels if isinstance(tunnels, list) else []):
            if not isinstance(raw, dict):
                continue
            path: Path = ("ipsec_tunnels", index)
            name = raw.get("name")
            left = self._end((*path, "left"), raw.get("left"))
            right = self._end((*path, "right"), raw.get("right"))
            if left is not None and right is not None:
                if not left.managed and not right.managed:
                    self.add(path, "has no managed end: left or right must be an inventory host")
                elif left.managed and left.host == right.host:
                    self.add((*path, "right"), "is the same host as left (%s)" % left.host)
            auth = self._auth(path, raw, ("psk", "psk_file"))
            start_action = raw.get("start_action", "start")
            if start_action == "start" and left is not None and left.managed and right is not None:
                if right.address == "%any":
                    self.add(
                        (*path, "start_action"),
                        "cannot be 'start' while right.address is %any: set start_action: none, or give the "
                        "peer's address",
                    )
            tunnel = Tunnel(
                name=name if _is_text(name) else "",
                path=path,
                left=left or End((*path, "left")),
                right=right or End((*path, "right")),
                ike_group=self._check_group((*path, "ike_group"), "ike", raw.get("ike_group")),
                esp_group=self._check_group((*path, "esp_group"), "esp", raw.get("esp_group")),
                children=self._children(path, raw.get("children"), left, right),
                start_action=start_action if start_action in ("start", "none") else "start",
                encap=raw.get("encap") if isinstance(raw.get("encap"), bool) else None,
                auth=auth,
                psk=self._psk((*path, "psk"), raw.get("psk")) if auth == "psk" else None,
                psk_file=raw.get("psk_file") if _is_text(raw.get("psk_file")) and auth == "psk" else None,
                psk_path=(*path, "psk"),
            )
            self.tunnels.append(tunnel)

    def _auth(self, path: Path, raw: Dict[str, Any], key_fields: Sequence[str]) -> str:
        """The tunnel's or topology's auth method, after checking that its key fields fit it.

        These are structural problems (the schema's job before auth: pubkey existed), so like a
        schema problem they silence later messages about the same tunnel."""
        auth = raw.get("auth", "psk")
        given = [key for key in key_fields if key in raw]
        problem = None
        if auth == "pubkey":
            for key in given:
                self.add(
                    (*path, key),
                    "a pre-shared key is not used with auth: pubkey (remove it or set auth: psk)",
                )
            return auth
        if not given:
            problem = "one of %s or %s is required" % (", ".join(key_fields[:-1]), key_fields[-1])
        elif len(key_fields) == 2 and len(given) == 2:
            problem = "give only one of psk or psk_file, not psk and psk_file"
        elif "psk_file" in given and len(given) > 1:
            problem = "give psk_file or psk/psks, not both"
        if problem and format_path(path) not in self._flagged:
            self._add(path, problem)
            self._flagged.add(format_path(path))
        return "psk"

    # -- topologies ----------------------------------------------------------------------------------

    def _topology_hosts(
        self, path: Path, raw: Dict[str, Any], list_key: str, group_key: str, exclude: Optional[str]
    ) -> List[Tuple[str, Path]]:
        """The hosts of a topology from a list or a group, each with the path to blame."""
        has_list, has_group = list_key in raw, group_key in raw
        if has_list and has_group:
            self.add(path, "give %s or %s, not both" % (list_key, group_key))
            return []
        if not has_list and not has_group:
            self.add(path, "one of %s or %s is required" % (list_key, group_key))
            return []
        if has_list:
            return [
                (host, (*path, list_key, i)) for i, host in enumerate(raw[list_key] or []) if _is_text(host)
            ]
        group = raw[group_key]
        if not _is_text(group):
            return []
        if group not in self.groups:
            self.add((*path, group_key), "unknown group %r" % group)
            return []
        members = [host for host in self.groups[group] if host != exclude]
        if not members:
            self.add(
                (*path, group_key), "group %r has no hosts%s" % (group, " besides the hub" if exclude else "")
            )
        return [(host, (*path, group_key)) for host in members]

    def _resolve_topologies(self) -> None:
        topologies = self.data.get("ipsec_topologies")
        for index, raw in enumerate(topologies if isinstance(topologies, list) else []):
            if not isinstance(raw, dict):
                continue
            path: Path = ("ipsec_topologies", index)
            kind = raw.get("type")
            self._auth(path, raw, ("psk", "psks", "psk_file"))
            if kind == "hub_and_spoke":
                self._hub_and_spoke(path, raw)
            elif kind == "full_mesh":
                self._full_mesh(path, raw)

    def _wrong_fields(
        self, path: Path, raw: Dict[str, Any], fields: Sequence[str], kind: str, use: str
    ) -> None:
        for key in fields:
            if key in raw:
                self.add((*path, key), "is not used by %s topologies, which take %s" % (kind, use))

    def _member_ends(self, members: List[Tuple[str, Path]]) -> List[End]:
        ends: List[End] = []
        seen: Set[str] = set()
        for host, member_path in members:
            if host in seen:
                self.add(member_path, "host %r is listed twice" % host)
                continue
            seen.add(host)
            end = self._host_end(member_path, host)
            if self.gateways.get(host) is not None and not end.subnets and not end.subnets_given:
                self.add(
                    member_path,
                    "host %r has no ipsec_lan_subnets, so its tunnels would carry no traffic" % host,
                )
            ends.append(end)
        return ends

    def _hub_and_spoke(self, path: Path, raw: Dict[str, Any]) -> None:
        self._wrong_fields(
            path, raw, ("members", "members_group"), "hub_and_spoke", "hub and spokes or spokes_group"
        )
        hub_name = raw.get("hub")
        if "hub" not in raw:
            self.add(path, "hub is required for a hub_and_spoke topology")
        members = self._topology_hosts(
            path, raw, "spokes", "spokes_group", hub_name if _is_text(hub_name) else None
        )
        hub: Optional[End] = None
        if _is_text(hub_name) and hub_name:
            hub = self._host_end((*path, "hub"), hub_name)
            for host, member_path in members:
                if host == hub_name:
                    self.add(member_path, "the hub %r cannot also be a spoke" % host)
            members = [(host, member_path) for host, member_path in members if host != hub_name]
        spokes = self._member_ends(members)
        if hub is None:
            return
        for spoke in spokes:
            others = [s for s in spokes if s is not spoke]
            remote = list(hub.subnets)
            for other in others:
                remote.extend(s for s in other.subnets if s not in remote)
            quiet = not hub.known or not all(o.known for o in others)
            if (
                not remote
                and not quiet
                and not hub.subnets_given
                and not any(o.subnets_given for o in others)
            ):
                self.add(
                    (*path, "hub"),
                    "neither the hub %r nor the other spokes have ipsec_lan_subnets: the tunnel of spoke %r "
                    "would carry no traffic" % (hub.host, spoke.host),
                )
            pair = (spoke.host or "", hub.host or "")
            self._generate(
                path,
                raw,
                "%s-%s" % (raw.get("name", ""), safe_name(spoke.host or "")),
                pair,
                spoke,
                hub,
                [Child("lan", list(spoke.subnets), remote, path)],
            )

    def _full_mesh(self, path: Path, raw: Dict[str, Any]) -> None:
        self._wrong_fields(
            path, raw, ("hub", "spokes", "spokes_group"), "full_mesh", "members or members_group"
        )
        members = self._member_ends(self._topology_hosts(path, raw, "members", "members_group", None))
        if len(members) == 1:
            self.add(path, "a full mesh needs at least 2 members, got 1 (%s)" % members[0].host)
        for first in range(len(members)):
            for second in range(first + 1, len(members)):
                left, right = members[first], members[second]
                self._generate(
                    path,
                    raw,
                    "%s-%s-%s"
                    % (raw.get("name", ""), safe_name(left.host or ""), safe_name(right.host or "")),
                    (left.host or "", right.host or ""),
                    left,
                    right,
                    [Child("lan", list(left.subnets), list(right.subnets), path)],
                )

    def _generate(
        self,
        path: Path,
        raw: Dict[str, Any],
        name: str,
        pair: Tuple[str, str],
        left: End,
        right: End,
        children: List[Child],
    ) -> None:
        if _is_text(raw.get("name")) and not _NAME.match(name):
            self.add(
                path,
                "generated tunnel name %r is not a valid name (at most 64 letters, digits, '_' or '-'); "
                "shorten the topology name" % name,
            )
        psk_path: Path = (*path, "psk")
        psk = raw.get("psk")
        psks = raw.get("psks") if isinstance(raw.get("psks"), dict) else {}
        for key in ("%s-%s" % pair, "%s-%s" % pair[::-1]):
            if key in psks:
                psk, psk_path = psks[key], (*path, "psks", key)
                break
        psk_file = raw.get("psk_file") if _is_text(raw.get("psk_file")) else None
        auth = "pubkey" if raw.get("auth") == "pubkey" else "psk"
        if auth == "pubkey":
            psk = psk_file = None
        elif psk is None and psk_file is None and "psks" in raw:
            self.add(
                path,
                "no pre-shared key for the tunnel between %s and %s: give psk, psks[%r] or psk_file"
                % (pair[0], pair[1], "%s-%s" % pair),
            )
        start_action = raw.get("start_action", "start")
        self.tunnels.append(
            Tunnel(
                name=name,
                path=path,
                left=left,
                right=right,
                ike_group=self._check_group((*path, "ike_group"), "ike", raw.get("ike_group")),
                esp_group=self._check_group((*path, "esp_group"), "esp", raw.get("esp_group")),
                children=children,
                start_action=start_action if start_action in ("start", "none") else "start",
                encap=raw.get("encap") if isinstance(raw.get("encap"), bool) else None,
                auth=auth,
                psk=self._psk(psk_path, psk) if psk_file is None else None,
                psk_file=psk_file,
                psk_path=psk_path,
            )
        )

    def _check_psks_keys(self) -> None:
        topologies = self.data.get("ipsec_topologies")
        for index, raw in enumerate(topologies if isinstance(topologies, list) else []):
            if not isinstance(raw, dict) or not isinstance(raw.get("psks"), dict):
                continue
            path: Path = ("ipsec_topologies", index)
            pairs = []
            for tunnel in self.tunnels:
                if tunnel.path == path and tunnel.left.host and tunnel.right.host:
                    pairs.append("%s-%s" % (tunnel.left.host, tunnel.right.host))
                    pairs.append("%s-%s" % (tunnel.right.host, tunnel.left.host))
            for key in raw["psks"]:
                if key not in pairs:
                    self.add(
                        (*path, "psks", key),
                        "names no tunnel of this topology; the keys are host pairs: %s"
                        % _listing(pairs[::2]),
                    )

    # -- checks across tunnels -----------------------------------------------------------------------

    def _check_names(self) -> None:
        self._check_psks_keys()
        seen: Dict[str, Path] = {}
        for tunnel in self.tunnels:
            if not tunnel.name:
                continue
            if tunnel.name in seen:
                first = format_path(seen[tunnel.name])
                if tunnel.path[0] == "ipsec_tunnels":
                    self.add(
                        (*tunnel.path, "name"), "tunnel name %r is already used by %s" % (tunnel.name, first)
                    )
                else:
                    self.add(
                        tunnel.path, "generates tunnel %r, a name already used by %s" % (tunnel.name, first)
                    )
            else:
                seen[tunnel.name] = tunnel.path

    def _check_hosts(self) -> None:
        """Per managed host: connections it could not tell apart, and overlapping selectors."""
        reported: Set[Tuple[str, ...]] = set()
        by_host: Dict[str, List[Tuple[Tunnel, End, End, str]]] = {}
        for tunnel in self.tunnels:
            for side, mine, other in tunnel.ends():
                if mine.managed and mine.host in self.gateways:
                    by_host.setdefault(mine.host or "", []).append((tunnel, mine, other, side))
        for tunnel in self.tunnels:
            self._check_families_of_ends(tunnel)
        for host, entries in by_host.items():
            keys: Dict[Tuple[Any, ...], Tunnel] = {}
            for tunnel, mine, other, _side in entries:
                if mine.address is None or other.address is None:
                    continue
                key = (mine.address, other.address, mine.id or mine.address, other.id or other.address)
                first = keys.setdefault(key, tunnel)
                mark = ("ids", first.name, tunnel.name)
                if first is not tunnel and mark not in reported:
                    reported.add(mark)
                    self.add(
                        tunnel.path,
                        "tunnel %r joins the same addresses and identities as tunnel %r (%s) on %s, so the "
                        "engine could not tell them apart; make them children of one tunnel"
                        % (tunnel.name, first.name, format_path(first.path), host),
                    )
            self._check_overlaps(host, entries, reported)

    def _check_families_of_ends(self, tunnel: Tunnel) -> None:
        addresses = [end.address for end in (tunnel.left, tunnel.right)]
        if None in addresses or "%any" in addresses:
            return
        left, right = (ipaddress.ip_address(a or "") for a in addresses)
        if left.version != right.version:
            self.add(
                tunnel.path,
                "tunnel %r joins %s at %s (IPv%d) and %s at %s (IPv%d): IKE needs both ends in one IP family"
                % (
                    tunnel.name,
                    tunnel.left.label(),
                    left,
                    left.version,
                    tunnel.right.label(),
                    right,
                    right.version,
                ),
            )

    def _check_overlaps(
        self, host: str, entries: List[Tuple[Tunnel, End, End, str]], reported: Set[Tuple[str, ...]]
    ) -> None:
        policies = []
        for tunnel, _mine, _other, side in entries:
            for child in tunnel.children:
                local = child.left_ts if side == "left" else child.right_ts
                remote = child.right_ts if side == "left" else child.left_ts
                policies.append((tunnel, child, _parsed(local), _parsed(remote)))
        for i, (tunnel_a, child_a, local_a, remote_a) in enumerate(policies):
            for tunnel_b, child_b, local_b, remote_b in policies[i + 1 :]:
                if tunnel_a is tunnel_b:
                    continue
                # the engine's narrowing (RFC 7296 §2.9): what both would negotiate is what both match
                common_local = narrow(local_a, local_b)
                common_remote = narrow(remote_a, remote_b)
                mark = ("overlap", tunnel_a.name, child_a.name, tunnel_b.name, child_b.name)
                if not common_local or not common_remote or mark in reported:
                    continue
                reported.add(mark)
                self.add(
                    child_b.path,
                    "on %s, the selectors of tunnel %r child %r overlap those of tunnel %r child %r (%s): "
                    "traffic %s <-> %s would match both"
                    % (
                        host,
                        tunnel_b.name,
                        child_b.name,
                        tunnel_a.name,
                        child_a.name,
                        format_path(child_a.path),
                        common_local[0],
                        common_remote[0],
                    ),
                )

    # -- certificates (auth: pubkey) ------------------------------------------------------------------

    def _check_credentials(self) -> None:
        """Every gateway of a pubkey tunnel has a usable certificate, and each peer trusts it."""
        users: Dict[str, Tunnel] = {}
        for tunnel in self.tunnels:
            for end in (tunnel.left, tunnel.right):
                if tunnel.auth == "pubkey" and end.managed and end.host in self.gateways:
                    users.setdefault(end.host or "", tunnel)
        for host, tunnel in users.items():
            values = self.raw_hosts.get(host, {})
            prefix: Path = (HOSTVARS, host)
            missing = [name for name in CREDENTIAL_VARIABLES if name not in values]
            if missing:
                self.add(
                    prefix,
                    "%s %s required: tunnel %r (%s) uses auth: pubkey"
                    % (
                        " and ".join(missing),
                        "is" if len(missing) == 1 else "are",
                        tunnel.name,
                        format_path(tunnel.path),
                    ),
                )
                continue
            authorities = values["ipsec_ca_certificates"]
            if not (
                _is_text(values["ipsec_certificate"])
                and _is_text(values["ipsec_private_key"])
                and isinstance(authorities, list)
                and authorities
                and all(_is_text(item) and item for item in authorities)
            ):
                continue  # the schema has said what is wrong
            try:
                credential = load_host(values, prefix, self.read_file)
            except CredentialProblem as problem:
                self.add(problem.path, problem.message)
                continue
            self._secrets.append(credential.private_key_pem)
            gateway = self.gateways[host]
            identity = gateway.id or gateway.address
            problem = identity_problem(credential, identity) if identity else None
            if problem:
                self.add((*prefix, "ipsec_certificate"), problem)
                continue
            self.credentials[host] = credential
        for tunnel in self.tunnels:
            for _side, mine, other in tunnel.ends() if tunnel.auth == "pubkey" else ():
                subject, verifier = (
                    self.credentials.get(mine.host or ""),
                    self.credentials.get(other.host or ""),
                )
                identity = mine.id or mine.address
                if subject is None or verifier is None or not identity:
                    continue
                problem = trust_problem(subject, identity, verifier, self.now)
                if problem:
                    self.add(
                        tunnel.path,
                        "%s would refuse the certificate of %s: %s" % (other.host, mine.host, problem),
                    )

    # -- views ---------------------------------------------------------------------------------------

    def managed_hosts(self) -> List[str]:
        """Hosts that get an engine configuration: tunnel ends and hosts with ipsec_public_address."""
        out = []
        for name, gateway in self.gateways.items():
            if gateway.address_given or any(
                t.left.host == name or t.right.host == name for t in self.tunnels
            ):
                out.append(name)
        return out
