# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Checked inventory -> one engine configuration per managed host (schemas/pyike-config.schema.json).

Each tunnel a host takes part in becomes one connection named after the tunnel: ``local`` is the
host's end, ``remote`` the other; children keep their names, with ``local_ts``/``remote_ts``
from the host's side; proposals and lifetimes come from the named groups; the initiating (left)
end gets the tunnel's ``start_action``, the other end ``none``; ``settings.listen`` is the
host's ``ipsec_listen`` or its public address; a route-based tunnel (``interface``) is ``mode: route``
with the interface and the addresses of the host's side.
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
    if remote:
        out: Dict[str, Any] = {"address": end.address}
    else:  # behind 1:1 NAT (or with a dynamic public address) the engine binds the local address
        out = {"address": end.local_address or end.address}
    if end.id is not None:
        out["id"] = end.id
    elif end.local_address and end.reachable and not remote:
        # Peers send to the public address and expect it as the identity (their default for remote.id);
        # the engine's default would be the local address.
        out["id"] = end.address
    elif auth == "pubkey" and end.reachable:
        # Both ends must agree on the identity; the engine's default for the local end would be
        # the certificate's subject DN, for the remote one the address.
        out["id"] = end.address
    if remote and end.port is not None:
        out["port"] = end.port
    return out


DEFAULT_DPD_ACTIONS = {"start": "restart", "trap": "trap", "none": "clear"}


def _dpd_action(tunnel: Tunnel, side: str, ike: Dict[str, Any]) -> str:
    """The initiating (left) end brings a dead tunnel back by default (at once after a start, on the
    next packet after a trap); the responder waits for it."""
    if side != "left" or not tunnel.right.reachable:
        return "clear"
    return ike.get("dpd_action") or DEFAULT_DPD_ACTIONS[tunnel.start_action]


def _connection(inventory: Inventory, tunnel: Tunnel, side: str, include_secrets: bool) -> Dict[str, Any]:
    mine, other = (tunnel.left, tunnel.right) if side == "left" else (tunnel.right, tunnel.left)
    ike = inventory.ike_groups.get(tunnel.ike_group or "", {})
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
    if tunnel.auth == "psk" and tunnel.allow_weak_psk:
        conn["allow_weak_psk"] = True
    conn["ike_proposals"] = list(ike.get("proposals") or ["default"])
    for key in ("rekey_time", "reauth_time", "dpd_delay"):
        if key in ike:
            conn[key] = ike[key]
    dpd_action = _dpd_action(tunnel, side, ike)
    if dpd_action != "clear":
        conn["dpd_action"] = dpd_action
    if tunnel.encap is not None:
        conn["encap"] = tunnel.encap
    if tunnel.interface is not None:
        conn["mode"] = "route"
        conn["interface"] = tunnel.interface.engine_form(side)
    children: Dict[str, Any] = {}
    for child in tunnel.children:
        esp = inventory.esp_groups.get(child.esp_group or tunnel.esp_group or "", {})
        entry: Dict[str, Any] = {
            "local_ts": list(child.left_ts if side == "left" else child.right_ts),
            "remote_ts": list(child.right_ts if side == "left" else child.left_ts),
            "esp_proposals": list(esp.get("proposals") or ["default"]),
            "start_action": tunnel.start_action if side == "left" else "none",
        }
        if side == "left" and tunnel.close_action != "none":
            entry["close_action"] = tunnel.close_action
        for key in ("rekey_time", "rekey_bytes", "life_bytes", "rekey_packets", "life_packets"):
            if key in esp:
                entry[key] = esp[key]
        children[child.name] = entry
    conn["children"] = children
    return conn


def _hosts(inventory: Inventory, limit: Optional[Sequence[str]]) -> List[str]:
    return [host for host in inventory.managed_hosts() if limit is None or host in limit]


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
        for tunnel, side in inventory.host_tunnels(host):
            connections[tunnel.name] = _connection(inventory, tunnel, side, include_secrets)
        listen = gateway.listen or ([gateway.bind_address] if gateway.bind_address else None)
        settings: Dict[str, Any] = {"listen": list(listen)} if listen else {}
        settings.update(gateway.settings)
        config: Dict[str, Any] = {"settings": settings} if settings else {}
        config["connections"] = connections
        configs[host] = config
    return configs


def build_secrets(inventory: Inventory, limit: Optional[Sequence[str]] = None) -> Dict[str, Dict[str, str]]:
    """Per host, the pre-shared key of each of its connections (not those with psk_file)."""
    return {
        host: {t.name: t.psk for t, _side in inventory.host_tunnels(host) if t.psk_file is None and t.psk}
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
            for t, _side in inventory.host_tunnels(host)
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

    What the engine refuses is reported at the inventory path that generated it (the tunnel or
    topology of the connection, the host for its settings).  A host with certificates gets its
    files in a private temporary directory (0700, removed right after), laid out as on the
    gateway, because the engine reads them at load time."""
    problems: List[Problem] = []
    origin = {tunnel.name: tunnel for tunnel in inventory.tunnels}
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
                # The built-in schema validator, as on the gateways (which rarely have jsonschema): the
                # same verdict, in half the time of jsonschema on a thousand connections.
                parse_config(trial, source=host, base_dir=directory, engine="builtin")
            except ConfigError as error:
                problems.extend(
                    _engine_problem(inventory, host, origin, p.path, p.message) for p in error.problems
                )
    return problems


def _parse_as_on_the_gateway(inventory: Inventory, host: str, config: Dict[str, Any]) -> None:
    """The engine's parse_config, with the built-in schema validator as on the gateways (which rarely have
    jsonschema: the same verdict, in half the time on a thousand connections)."""
    if host not in inventory.credentials:
        parse_config(config, source=host, base_dir=os.sep, engine="builtin")  # no file is read
        return
    with tempfile.TemporaryDirectory(prefix="pyike-validate-") as directory:
        _write_credentials(directory, inventory.credentials[host])
        parse_config(config, source=host, base_dir=directory, engine="builtin")


def _engine_problem(
    inventory: Inventory, host: str, origin: Dict[str, Tunnel], path: str, message: str
) -> Problem:
    parts = path.split(".", 2)
    if parts[0] == "connections" and len(parts) > 1 and parts[1] in origin:
        tunnel = origin[parts[1]]
        where = ".".join(parts[2:]) or "the connection"
        text = "on %s, the engine refuses the connection of tunnel %r: %s: %s" % (
            host,
            tunnel.name,
            where,
            message,
        )
        return Problem(inventory.scrub(format_path(tunnel.path)), inventory.scrub(text))
    text = "the engine refuses the configuration generated for %s: %s: %s" % (host, path, message)
    return Problem(inventory.scrub(format_path(("hostvars", host))), inventory.scrub(text))


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
