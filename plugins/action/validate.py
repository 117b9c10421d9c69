# Copyright: (c) 2026, pyike.ipsec developers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Action plugin pyike.ipsec.validate: checks the IPsec inventory on the controller (see plugins/modules/validate.py)."""

from __future__ import annotations

import errno
from collections.abc import Mapping

from ansible.errors import AnsibleError
from ansible.plugins.action import ActionBase
from ansible_collections.pyike.ipsec.plugins.module_utils.pyike_inventory import (
    CREDENTIAL_FILES,
    Inventory,
    build_configs,
    build_credentials,
    build_private_keys,
    build_secrets,
    check,
    global_names,
    host_names,
    psk_refs,
)

_MISSING = object()

ARGUMENT_SPEC = {
    "data": {"type": "dict"},
    "hosts": {"type": "dict"},
    "groups": {"type": "dict"},
    "fail_on_error": {"type": "bool", "default": True},
    "include_secrets": {"type": "bool", "default": False},
    "limit": {"type": "list", "elements": "str"},
}


def _plain(value):
    """Templated Ansible data -> plain dict/list/str/int/float/bool/None for the pure-Python core."""
    if isinstance(value, Mapping):
        return {str(key): _plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value)
    return str(value)  # str subclasses (tagged strings), decrypted vault values


class ActionModule(ActionBase):
    TRANSFERS_FILES = False
    _requires_connection = False
    _supports_check_mode = True
    _supports_async = False

    def run(self, tmp=None, task_vars=None):
        task_vars = task_vars or {}
        result = super().run(tmp, task_vars)
        del tmp
        params = self.validate_argument_spec(argument_spec=ARGUMENT_SPEC)[1]

        gathered = []  # variables that could not be templated: "path: message"
        data = params["data"]
        if data is None:
            data = self._gather_data(task_vars, gathered)
        else:
            data = _plain(data)
        hosts = params["hosts"]
        if hosts is None:
            hosts = self._gather_hosts(task_vars, data, gathered)
        else:
            hosts = _plain(hosts)
        groups = params["groups"]
        if groups is None:
            groups = _plain(task_vars.get("groups") or {})
            if params["hosts"] is not None:
                groups = None  # explicit hosts: their group_names say which groups they are in
        else:
            groups = _plain(groups)

        inventory = Inventory(data, hosts, groups, read_file=self._read_credential)
        problems = [inventory.scrub(p) for p in gathered] + [str(p) for p in check(inventory)]
        result["changed"] = False
        result["problems"] = problems
        result["tunnels"] = [tunnel.summary() for tunnel in inventory.tunnels] if not problems else []
        result["managed_hosts"] = inventory.managed_hosts() if not problems else []
        result["secrets_included"] = False
        result["engine_configs"] = {}
        result["psk_refs"] = {}
        result["initiates"] = {}
        result["credentials"] = {}
        result["credential_files"] = dict(CREDENTIAL_FILES)
        if problems:
            result["msg"] = "The IPsec inventory has %d problem%s:\n%s" % (
                len(problems),
                "" if len(problems) == 1 else "s",
                "\n".join(problems),
            )
            result["failed"] = bool(params["fail_on_error"])
            return result
        result["engine_configs"] = build_configs(inventory, include_secrets=False, limit=params["limit"])
        result["psk_refs"] = psk_refs(inventory, params["limit"])
        # The connections each host starts itself: the gateway role waits for (and initiates) only
        # those, so that the two ends of a tunnel never initiate it at the same time.
        result["initiates"] = {
            host: sorted(
                name
                for name, conn in config.get("connections", {}).items()
                if any(child.get("start_action") == "start" for child in conn.get("children", {}).values())
            )
            for host, config in result["engine_configs"].items()
        }
        result["credentials"] = build_credentials(inventory, params["limit"])
        if params["include_secrets"]:
            result["engine_secrets"] = build_secrets(inventory, params["limit"])
            result["engine_private_keys"] = build_private_keys(inventory, params["limit"])
            result["secrets_included"] = True
            # The pre-shared keys and private keys are in the result: hide all of it from every callback and log,
            # at any verbosity. A registered variable still holds the full result.
            result["_ansible_no_log"] = True
        result["msg"] = "The IPsec inventory is valid: %d tunnel%s, %d managed host%s" % (
            len(inventory.tunnels),
            "" if len(inventory.tunnels) == 1 else "s",
            len(result["managed_hosts"]),
            "" if len(result["managed_hosts"]) == 1 else "s",
        )
        return result

    def _read_credential(self, path):
        """A certificate or key file named in the inventory, looked up like the copy module's src
        (the role's and the playbook's files/ directories, then the path as given)."""
        try:
            found = self._find_needle("files", path)
        except AnsibleError:
            raise OSError(errno.ENOENT, "no such file (looked in files/ directories and as given)") from None
        with open(found, "rb") as handle:
            return handle.read()

    @staticmethod
    def _value(read, path, gathered):
        """``read()`` templated and made plain, or _MISSING with a problem (no template origin, which
        could quote a neighbouring secret)."""
        try:
            return _plain(read())
        except AnsibleError as error:
            message = (getattr(error, "message", "") or type(error).__name__).splitlines()[0]
            gathered.append("%s: cannot be templated: %s" % (path, message))
            return _MISSING

    def _gather_data(self, task_vars, gathered):
        """The global variables as the task's host sees them, plus misspelt ones (to report them)."""
        data = {}
        for key in global_names(task_vars):
            value = self._value(lambda key=key: self._templar.template(task_vars[key]), key, gathered)
            if value is not _MISSING:
                data[key] = value
        return data

    def _gather_hosts(self, task_vars, data, gathered):
        """Per inventory host: its own ipsec_* variables (templated in its context) and group_names."""
        hostvars = task_vars.get("hostvars") or {}
        names = (task_vars.get("groups") or {}).get("all") or list(hostvars)
        hosts = {}
        for name in names:
            values = hostvars[name]
            own = {}
            for key in host_names(values, data):
                path = "hostvars.%s.%s" % (name, key)
                value = self._value(lambda values=values, key=key: values[key], path, gathered)
                if value is not _MISSING:
                    own[key] = value
            own["group_names"] = _plain(values.get("group_names") or [])
            hosts[str(name)] = own
        return hosts
