# Copyright: (c) 2026, pyike.ipsec developers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Action plugin pyike.ipsec.validate: checks the IPsec inventory on the controller (see plugins/modules/validate.py).

Without ``data`` and ``hosts`` it reads every inventory host's variables as that host sees them
(hostvars: all, group_vars, host_vars), so the outcome is the same whichever host runs it and in
whatever order the hosts come; pyike_inventory.check_views compares the gateways' views.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Mapping

from ansible.errors import AnsibleError
from ansible.plugins.action import ActionBase
from ansible_collections.pyike.ipsec.plugins.module_utils.pyike_inventory import (
    CREDENTIAL_FILES,
    HostView,
    Inventory,
    build_configs,
    build_credentials,
    build_private_keys,
    build_secrets,
    check,
    check_views,
    format_path,
    global_names,
    host_names,
    psk_refs,
    templating_message,
)

ARGUMENT_SPEC = {
    "data": {"type": "dict"},
    "hosts": {"type": "dict"},
    "groups": {"type": "dict"},
    "fail_on_error": {"type": "bool", "default": True},
    "include_secrets": {"type": "bool", "default": False},
    "limit": {"type": "list", "elements": "str"},
    "require_tunnels": {"type": "bool", "default": False},
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


class _Context:
    """The templar of one host, made the first time one of its values holds a template."""

    def __init__(self, templar, variables):
        self.templar = templar
        self._variables = variables
        self._host = None

    def host_templar(self):
        if self._host is None:
            self._host = self.templar.copy_with_new_env(available_variables=self._variables)
        return self._host


def _first_line(error):
    return (getattr(error, "message", "") or str(error) or type(error).__name__).splitlines()[0]


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

        if params["data"] is None and params["hosts"] is None:
            inventory, problems, warnings = self._check_inventory(task_vars, params)
        else:
            inventory, problems, warnings = self._check_explicit(task_vars, params)
        result["changed"] = False
        result["problems"] = problems
        result["warnings"] = warnings
        valid = inventory is not None and not problems
        result["tunnels"] = [tunnel.summary() for tunnel in inventory.tunnels] if valid else []
        result["managed_hosts"] = inventory.managed_hosts() if valid else []
        result["secrets_included"] = False
        result["engine_configs"] = {}
        result["psk_refs"] = {}
        result["initiates"] = {}
        result["credentials"] = {}
        result["credential_files"] = dict(CREDENTIAL_FILES)
        if not valid:
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

    # -- the inventory as every host sees it ------------------------------------------------------------

    def _check_inventory(self, task_vars, params):
        hostvars = task_vars.get("hostvars") or {}
        groups = _plain(params["groups"] if params["groups"] is not None else task_vars.get("groups") or {})
        names = sorted(groups.get("all") or list(hostvars))
        gathered = [self._view(hostvars, name) for name in names]
        views = [view for view, _source in gathered]
        problems = self._source_problems(task_vars, [source for _view, source in gathered if source])
        outcome = check_views(
            views,
            groups,
            read_file=self._read_credential,
            require_tunnels=params["require_tunnels"],
        )
        return outcome.inventory, problems + outcome.problems, outcome.warnings

    def _view(self, hostvars, name):
        """One host's global variables, gateway variables, group_names and inventory_file, from its
        untemplated variables (all, group_vars, host_vars merged), templating only the values that hold a
        template, in the host's context: far cheaper than templating whole structures through hostvars.
        A value that cannot be templated is replaced by None and named with its full data path."""
        raw = hostvars.raw_get(name)
        context = _Context(self._templar, raw)
        keys = list(raw)
        view, own, errors = {}, {}, []
        global_keys = global_names(keys)
        for key in global_keys:
            view[key] = self._leaves(context, raw[key], (key,), errors)
        for key in host_names(keys, global_keys):
            own[key] = self._leaves(context, raw[key], ("hostvars", name, key), errors)
        own["group_names"] = _plain(raw.get("group_names") or [])
        source = raw.get("inventory_file")
        return HostView(str(name), own, view, errors), str(source) if source else None

    def _leaves(self, context, value, path, found):
        if isinstance(value, Mapping):
            return {str(k): self._leaves(context, v, (*path, str(k)), found) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [self._leaves(context, v, (*path, i), found) for i, v in enumerate(value)]
        try:
            if isinstance(value, str) and context.templar.is_possibly_template(value):
                return _plain(context.host_templar().template(value))
            return _plain(value)  # a vaulted value is decrypted here
        except AnsibleError as error:
            found.append(
                (format_path(path), "cannot be templated: %s" % templating_message(path, _first_line(error)))
            )
            return None

    @staticmethod
    def _source_problems(task_vars, used):
        """Inventory sources (-i) that do not exist, or from which no host came (unparsable, or empty);
        ``used`` lists the inventory_file of every host."""
        problems = []
        used = {os.path.abspath(item) for item in used}
        for source in task_vars.get("ansible_inventory_sources") or []:
            source = str(source)
            if "," in source and not os.path.exists(source):
                continue  # a host list such as "gw1,gw2,"
            path = os.path.abspath(source)
            if not os.path.exists(path):
                problems.append("inventory source %s does not exist" % source)
            elif not any(item == path or item.startswith(path.rstrip(os.sep) + os.sep) for item in used):
                problems.append(
                    "inventory source %s gave no host: Ansible could not parse it (see its warnings) or it defines "
                    "none; 'ansible-inventory -i %s --graph' shows what Ansible reads" % (source, source)
                )
        return problems

    # -- explicit data ----------------------------------------------------------------------------------

    def _check_explicit(self, task_vars, params):
        gathered = []
        data = (
            _plain(params["data"]) if params["data"] is not None else self._gather_data(task_vars, gathered)
        )
        hosts = (
            _plain(params["hosts"])
            if params["hosts"] is not None
            else self._gather_hosts(task_vars, data, gathered)
        )
        groups = params["groups"]
        if groups is None:
            groups = _plain(task_vars.get("groups") or {}) if params["hosts"] is None else None
        else:
            groups = _plain(groups)
        inventory = Inventory(data, hosts, groups, read_file=self._read_credential)
        problems = [inventory.scrub(p) for p in gathered] + [str(p) for p in check(inventory)]
        if params["require_tunnels"] and not inventory.tunnels and not problems:
            problems.append("no tunnel: neither ipsec_tunnels nor ipsec_topologies describe one")
        return inventory, problems, [str(w) for w in inventory.warnings]

    def _gather_data(self, task_vars, gathered):
        data = {}
        for key in global_names(task_vars):
            try:
                data[key] = _plain(self._templar.template(task_vars[key]))
            except AnsibleError as error:
                gathered.append(
                    "%s: cannot be templated: %s" % (key, templating_message((key,), _first_line(error)))
                )
        return data

    def _gather_hosts(self, task_vars, data, gathered):
        hostvars = task_vars.get("hostvars") or {}
        hosts = {}
        for name in (task_vars.get("groups") or {}).get("all") or list(hostvars):
            view, _source = self._view(hostvars, name)
            gathered.extend(
                "%s: %s" % (path, message) for path, message in view.errors if path.startswith("hostvars.")
            )
            hosts[str(name)] = view.own
        return hosts

    def _read_credential(self, path):
        """A certificate or key file named in the inventory, looked up like the copy module's src
        (the role's and the playbook's files/ directories, then the path as given)."""
        try:
            found = self._find_needle("files", path)
        except AnsibleError:
            raise OSError(errno.ENOENT, "no such file (looked in files/ directories and as given)") from None
        with open(found, "rb") as handle:
            return handle.read()
