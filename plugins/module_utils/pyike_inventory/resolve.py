# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Inventory variables -> checked gateways and tunnels (topologies expanded), with every problem.

:class:`Inventory` does the work once, in this order: the schema (:mod:`.schema`), the gateways'
host variables (:mod:`.gateways`), the proposal groups and their lifetimes (:mod:`.proposals`),
the tunnels (:mod:`.tunnels`) and topologies (:mod:`.topologies`), the checks across tunnels
(:mod:`.crosscheck`, :mod:`.capture`, :mod:`.overlaps`) and the certificates
(:mod:`.credentials`).  :func:`validate_inventory` and :func:`engine_configs` (in :mod:`.build`)
are the entry points.  Every problem carries the data path of the value at fault:
``ipsec_tunnels[2].children[0].left_ts[1]`` for the global variables,
``hostvars.gw1.ipsec_lan_subnets[0]`` for a host's own.  Checks run on whatever is well-formed,
so one run reports everything; a field the schema (or the templating, see ``flagged``) already
rejected gets no second message.  Warnings (weak but working choices) are kept apart.

Pre-shared keys and private keys never reach a message: messages about secret fields are composed
without their values (:mod:`.secrets`), and as a last line of defence every secret text met in
the input is scrubbed from them.
"""

from __future__ import annotations

import difflib
import re
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Set, Tuple

from . import capture, crosscheck, gateways, overlaps, proposals, secrets, topologies, tunnels
from ._engine import format_path, schema_violations
from .credentials import HostCredential, ReadFile, check_credentials, read_local_file
from .model import Gateway, Path, Problem, Tunnel
from .schema import SCHEMA, VARIABLE_PREFIX

HOSTVARS = "hostvars"
_UNKNOWN_FIELD = re.compile(r"^unknown field \(allowed: (.*)\)$")


def _suggest(path: Path, message: str) -> str:
    """``unknown field (allowed: ...)`` with the allowed name closest to a misspelt one, if any."""
    match = _UNKNOWN_FIELD.match(message)
    if not match or not path or not isinstance(path[-1], str):
        return message
    close = difflib.get_close_matches(path[-1], match.group(1).split(", "), n=1, cutoff=0.75)
    return "%s; did you mean %s?" % (message, close[0]) if close else message


class Inventory:
    """The checked inventory.

    ``data`` holds the global variables (ipsec_ike_groups, ipsec_esp_groups, ipsec_tunnels,
    ipsec_topologies); ``hosts`` maps every inventory host name to its host variables (only the
    ``ipsec_*`` ones are looked at; ``group_names`` gives its groups when ``groups`` is None);
    ``groups`` maps group names to their hosts (Ansible's ``groups``).  ``engine`` picks the
    schema validator: "jsonschema", "builtin" or None (jsonschema when importable).  ``flagged``
    lists data paths already reported (values that could not be templated): they get no second
    message.
    """

    def __init__(
        self,
        data: Optional[Mapping[str, Any]],
        hosts: Optional[Mapping[str, Any]],
        groups: Optional[Mapping[str, Sequence[str]]] = None,
        engine: Optional[str] = None,
        read_file: Optional[ReadFile] = None,
        now: Optional[float] = None,
        flagged: Iterable[str] = (),
    ) -> None:
        # A variable set to null (an empty YAML value) counts as not set.  Hosts are taken in name order,
        # so that nothing (which host a problem is reported on) depends on the inventory's host order.
        self.data: Dict[str, Any] = {key: value for key, value in (data or {}).items() if value is not None}
        self.raw_hosts: Dict[str, Dict[str, Any]] = {
            str(name): {key: value for key, value in values.items() if value is not None}
            if isinstance(values, Mapping)
            else {}
            for name, values in sorted((hosts or {}).items(), key=lambda item: str(item[0]))
        }
        self.groups = self._groups(groups)
        self.engine = engine
        self._problems: List[Tuple[Path, str]] = []
        self._seen: Set[Tuple[Path, str]] = set()
        self._warnings: List[Tuple[Path, str]] = []
        self._flagged: Set[str] = set(flagged)
        self.secrets: List[str] = []
        self.gateways: Dict[str, Gateway] = {}
        self.ike_groups: Dict[str, Dict[str, Any]] = {}
        self.esp_groups: Dict[str, Dict[str, Any]] = {}
        self.tunnels: List[Tunnel] = []
        self.credentials: Dict[str, HostCredential] = {}
        self.read_file: ReadFile = read_file or read_local_file
        self.now = now
        # Selector comparisons of the checks across tunnels, so a test can pin how they grow.
        self.comparisons = [0]
        self.secrets.extend(secrets.collect(self.data, self.raw_hosts))
        self._check_schema()
        gateways.resolve(self)
        proposals.resolve(self)
        tunnels.resolve(self)
        topologies.resolve(self)
        capture.run(self)  # default routes first: they change the selectors the other checks see
        crosscheck.run(self)
        overlaps.run(self)
        check_credentials(self)

    # -- problems -----------------------------------------------------------------------------------

    def add(self, path: Path, message: str) -> None:
        """Record a problem unless the schema (or the templating) already flagged that field."""
        if format_path(path) in self._flagged:
            return
        self._add(path, message)

    def _add(self, path: Path, message: str) -> None:
        entry = (tuple(path), message)
        if entry not in self._seen:
            self._seen.add(entry)
            self._problems.append(entry)

    def flag(self, path: Path, message: str) -> None:
        """Record a structural problem that silences later messages about the same field."""
        if format_path(path) not in self._flagged:
            self._add(path, message)
            self._flagged.add(format_path(path))

    def flagged(self, path: Path) -> bool:
        return format_path(path) in self._flagged

    def warn(self, path: Path, message: str) -> None:
        entry = (tuple(path), message)
        if entry not in self._warnings:
            self._warnings.append(entry)

    @property
    def problems(self) -> List[Problem]:
        return [
            Problem(self.scrub(format_path(path)), self.scrub(message)) for path, message in self._problems
        ]

    @property
    def warnings(self) -> List[Problem]:
        return [
            Problem(self.scrub(format_path(path)), self.scrub(message)) for path, message in self._warnings
        ]

    def scrub(self, text: str) -> str:
        return secrets.scrub(text, self.secrets)

    # -- schema -------------------------------------------------------------------------------------

    def _check_schema(self) -> None:
        documents: List[Tuple[Path, Dict[str, Any]]] = [((), self.data)]
        for name, values in self.raw_hosts.items():
            own = {key: value for key, value in values.items() if key.startswith(VARIABLE_PREFIX)}
            documents.append(((HOSTVARS, name), own))
        templated = set(self._flagged)  # values that could not be templated: already reported
        for prefix, document in documents:
            for path, message in schema_violations(document, SCHEMA, self.engine):
                full = (*prefix, *path)
                if format_path(full) not in templated:
                    self._add(full, _suggest(path, secrets.schema_message(document, path, message)))
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

    # -- views ---------------------------------------------------------------------------------------

    def managed_hosts(self) -> List[str]:
        """Hosts that get an engine configuration: tunnel ends and hosts with ipsec_public_address."""
        ends = {end.host for t in self.tunnels for end in (t.left, t.right) if end.host is not None}
        return [name for name, gateway in self.gateways.items() if gateway.address_given or name in ends]

    def host_tunnels(self, host: str) -> List[Tuple[Tunnel, str]]:
        """(tunnel, side) for every tunnel that ``host`` is an end of, in inventory order."""
        if not hasattr(self, "_by_host"):
            by_host: Dict[str, List[Tuple[Tunnel, str]]] = {}
            for tunnel in self.tunnels:
                for side, end, _other in tunnel.ends():
                    if end.host is not None:
                        by_host.setdefault(end.host, []).append((tunnel, side))
            self._by_host = by_host
        return list(self._by_host.get(host, []))
