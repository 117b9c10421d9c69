# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Checked inventory -> one engine configuration per managed host (schemas/pyike-config.schema.json).

Each tunnel a host takes part in becomes one connection named after the tunnel: ``local`` is the
host's end, ``remote`` the other; children keep their names, with ``local_ts``/``remote_ts``
from the host's side; proposals and lifetimes come from the named groups; the initiating (left)
end gets the tunnel's ``start_action``, the other end ``none``; ``settings.listen`` is the
host's ``ipsec_listen`` or its public address.
"""

from __future__ import annotations

import copy
import os
import tempfile
from typing import Any, Dict, List, Mapping, Optional, Sequence

from ._engine import ConfigError, format_path, parse_config
from .model import End, InventoryError, Problem, Tunnel
from .resolve import Inventory

PSK_FILE_PLACEHOLDER = "psk-file-placeholder-for-validation"
# Where a gateway's certificate files go, relative to its engine configuration file (the engine
# resolves relative paths against that file's directory); the gateway role writes them there.
CREDENTIAL_FILES = {
    "certificate": "x509/gateway.pem",
    "private_key": "private/gateway.key",
    "ca_certificates": "x509ca/trusted.pem",
}


def _endpoint(end: End, remote: bool, auth: str) -> Dict[str, Any]:
    out: Dict[str, Any] = {"address": end.address}
    if end.id is not None:
        out["id"] = end.id
    elif auth == "pubkey" and end.address not in (None, "%any"):
        # Both ends must agree on the identity; the engine's default for the local end would be
        # the certificate's subject DN, for the remote one the address.
        out["id"] = end.address
    if remote and end.port is not None:
        out["port"] = end.port
    return out


def _connection(inventory: Inventory, tunnel: Tunnel, side: str, include_secrets: bool) -> Dict[str, Any]:
    mine, other = (tunnel.left, tunnel.right) if side == "left" else (tunnel.right, tunnel.left)
    ike = inventory.ike_groups.get(tunnel.ike_group or "", {})
    esp = inventory.esp_groups.get(tunnel.esp_group or "", {})
    conn: Dict[str, Any] = {
        "local": _endpoint(mine, remote=False, auth=tunnel.auth),
        "remote": _endpoint(other, remote=True, auth=tunnel.auth),
        "auth": tunnel.auth,
    }
    if tunnel.auth == "pubkey":
        conn["cert"] = CREDENTIAL_FILES["certificate"]
        conn["private_key"] = CREDENTIAL_FILES["private_key"]
        conn["ca_certs"] = [CREDENTIAL_FILES["ca_certificates"]]
    elif tunnel.psk_file is not None:
        conn["psk_file"] = tunnel.psk_file
    elif include_secrets:
        conn["psk"] = tunnel.psk
    conn["ike_proposals"] = list(ike.get("proposals") or ["default"])
    for key in ("rekey_time", "dpd_delay"):
        if key in ike:
            conn[key] = ike[key]
    if tunnel.encap is not None:
        conn["encap"] = tunnel.encap
    children: Dict[str, Any] = {}
    for child in tunnel.children:
        entry: Dict[str, Any] = {
            "local_ts": list(child.left_ts if side == "left" else child.right_ts),
            "remote_ts": list(child.right_ts if side == "left" else child.left_ts),
            "esp_proposals": list(esp.get("proposals") or ["default"]),
            "start_action": tunnel.start_action if side == "left" else "none",
        }
        for key in ("rekey_time", "life_bytes", "life_packets"):
            if key in esp:
                entry[key] = esp[key]
        children[child.name] = entry
    conn["children"] = children
    return conn


def _hosts(inventory: Inventory, limit: Optional[Sequence[str]]) -> List[str]:
    return [host for host in inventory.managed_hosts() if limit is None or host in limit]


def _host_tunnels(inventory: Inventory, host: str) -> List[Any]:
    """(tunnel, side) for every tunnel that ``host`` is an end of, in inventory order."""
    return [(t, side) for t in inventory.tunnels for side, end, _other in t.ends() if end.host == host]


def build_configs(
    inventory: Inventory, include_secrets: bool = True, limit: Optional[Sequence[str]] = None
) -> Dict[str, Dict[str, Any]]:
    """Engine configurations of the managed hosts (or of those in ``limit``) of a checked inventory.

    Without ``include_secrets`` the connections have no ``psk`` (``psk_file`` stays): the form
    that pyike.ipsec.config takes together with :func:`build_secrets`, and safe to show.
    """
    configs: Dict[str, Dict[str, Any]] = {}
    for host in _hosts(inventory, limit):
        gateway = inventory.gateways[host]
        connections: Dict[str, Any] = {}
        for tunnel, side in _host_tunnels(inventory, host):
            connections[tunnel.name] = _connection(inventory, tunnel, side, include_secrets)
        listen = gateway.listen or ([gateway.address] if gateway.address else None)
        config: Dict[str, Any] = {}
        if listen:
            config["settings"] = {"listen": list(listen)}
        config["connections"] = connections
        configs[host] = config
    return configs


def build_secrets(inventory: Inventory, limit: Optional[Sequence[str]] = None) -> Dict[str, Dict[str, str]]:
    """Per host, the pre-shared key of each of its connections (not those with psk_file)."""
    return {
        host: {t.name: t.psk for t, _side in _host_tunnels(inventory, host) if t.psk_file is None and t.psk}
        for host in _hosts(inventory, limit)
    }


def build_credentials(
    inventory: Inventory, limit: Optional[Sequence[str]] = None
) -> Dict[str, Dict[str, str]]:
    """Per host with certificate tunnels, the public files: ``certificate`` (its chain, PEM) and
    ``ca_certificates`` (the CA bundle it trusts, PEM); the paths are :data:`CREDENTIAL_FILES`."""
    return {
        host: {"certificate": credential.certificate_pem, "ca_certificates": credential.ca_pem}
        for host, credential in inventory.credentials.items()
        if host in _hosts(inventory, limit)
    }


def build_private_keys(inventory: Inventory, limit: Optional[Sequence[str]] = None) -> Dict[str, str]:
    """Per host with certificate tunnels, its private key (PEM): a secret, like the PSKs."""
    return {
        host: credential.private_key_pem
        for host, credential in inventory.credentials.items()
        if host in _hosts(inventory, limit)
    }


def psk_refs(inventory: Inventory, limit: Optional[Sequence[str]] = None) -> Dict[str, Dict[str, str]]:
    """Per host, for each of its connections, where its key comes from: the data path of the psk in
    the inventory (``ipsec_topologies[0].psks.gw1-gw2``) or ``psk_file:<path>``."""
    return {
        host: {
            t.name: ("psk_file:%s" % t.psk_file) if t.psk_file is not None else format_path(t.psk_path)
            for t, _side in _host_tunnels(inventory, host)
            if t.auth == "psk"
        }
        for host in _hosts(inventory, limit)
    }


def _write_credentials(directory: str, credential: Any) -> None:
    """The files of CREDENTIAL_FILES under ``directory``, as the gateway role writes them."""
    contents = {
        "certificate": credential.certificate_pem,
        "private_key": credential.private_key_pem,
        "ca_certificates": credential.ca_pem,
    }
    for key, relative in CREDENTIAL_FILES.items():
        path = os.path.join(directory, relative)
        os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "w") as handle:
            handle.write(contents[key])


def _engine_problems(inventory: Inventory) -> List[Problem]:
    """Last check: would the engine load each generated configuration?  (psk_file is not read.)

    A host with certificates gets its files in a private temporary directory (0700, removed
    right after), laid out as on the gateway, because the engine reads them at load time."""
    problems: List[Problem] = []
    for host, config in build_configs(inventory, include_secrets=True).items():
        trial = copy.deepcopy(config)
        for conn in trial["connections"].values():
            if "psk_file" in conn:
                del conn["psk_file"]
                conn["psk"] = PSK_FILE_PLACEHOLDER
        with tempfile.TemporaryDirectory(prefix="pyike-validate-") as directory:
            if host in inventory.credentials:
                _write_credentials(directory, inventory.credentials[host])
            try:
                parse_config(
                    trial,
                    source="engine configuration of %s" % host,
                    base_dir=directory,
                    engine=inventory.engine,
                )
            except ConfigError as error:
                problems.extend(
                    Problem(inventory.scrub(p.source), inventory.scrub("%s: %s" % (p.path, p.message)))
                    for p in error.problems
                )
    return problems


def validate_inventory(
    data: Optional[Mapping[str, Any]],
    hosts: Optional[Mapping[str, Any]],
    groups: Optional[Mapping[str, Sequence[str]]] = None,
    engine: Optional[str] = None,
) -> List[Problem]:
    """Every problem of the inventory, each with its data path; empty when it is usable.

    ``data``: the global variables (ipsec_ike_groups, ipsec_esp_groups, ipsec_tunnels,
    ipsec_topologies); ``hosts``: inventory host name -> its host variables; ``groups``: group
    name -> hosts (default: from each host's ``group_names``); ``engine``: the schema validator
    ("jsonschema", "builtin", or None for jsonschema when importable).
    """
    return check(Inventory(data, hosts, groups, engine))


def check(inventory: Inventory) -> List[Problem]:
    """The problems of an already resolved inventory, including the engine's own verdict."""
    problems = inventory.problems
    if not problems:
        problems = _engine_problems(inventory)
    return problems


def engine_configs(
    data: Optional[Mapping[str, Any]],
    hosts: Optional[Mapping[str, Any]],
    groups: Optional[Mapping[str, Sequence[str]]] = None,
    include_secrets: bool = True,
) -> Dict[str, Dict[str, Any]]:
    """The engine configuration of every managed host, pre-shared keys included (without
    ``include_secrets``: left out); raises :class:`InventoryError` listing every problem when the
    inventory is not usable."""
    inventory = Inventory(data, hosts, groups)
    problems = check(inventory)
    if problems:
        raise InventoryError(problems)
    return build_configs(inventory, include_secrets)
