# Copyright: (c) 2026, pyike.ipsec developers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""pyike.ipsec.config's work: build, validate, write, reload, and restore on refusal."""

from __future__ import annotations

import os
import traceback

from ansible_collections.pyike.ipsec.plugins.module_utils.pyike_ansible import configfile
from ansible_collections.pyike.ipsec.plugins.module_utils.pyike_ansible.client import (
    DaemonError,
    DaemonRefused,
    DaemonUnavailable,
    request,
)
from ansible_collections.pyike.ipsec.plugins.module_utils.pyike_ansible.common import (
    missing_dependencies_message,
    os_family,
    probe_dependencies,
)
from ansible_collections.pyike.ipsec.plugins.module_utils.pyike_ansible.configfile import ConfigTaskError

try:  # the engine's loader, which the daemon uses too; it needs cryptography
    from ansible_collections.pyike.ipsec.plugins.module_utils.pyike.config import (
        ConfigError,
        parse_config,
        parse_document,
    )

    ENGINE_IMPORT_ERROR = None
except ImportError:
    ConfigError = parse_config = parse_document = None
    ENGINE_IMPORT_ERROR = traceback.format_exc()

__all__ = ["ConfigTask", "ConfigTaskError", "secret_values"]


def secret_values(params):
    """Every key the task was given (secrets, and misplaced psks), for the module's no_log_values."""
    values = set()
    for value in (params.get("secrets") or {}).values():
        if value is not None and str(value):
            values.add(str(value))
    for option in ("config", "connections"):
        document = params.get(option)
        if isinstance(document, dict):
            values.update(str(key) for _where, key in configfile.inline_psks(document, option) if str(key))
    return values


class ConfigTask:
    def __init__(self, params, check_mode, hide):
        self.params = params
        self.check_mode = check_mode
        self.hide = hide  # registers a string that must never appear in output
        self.path = params["path"]

    def _check_options(self):
        params = self.params
        connections = params.get("connections")
        state = params["state"]
        if params.get("config") is not None and state == "absent":
            raise ConfigTaskError("state=absent removes named connections: give connections, not config")
        if state == "absent":
            if params.get("settings") is not None:
                raise ConfigTaskError("settings cannot be combined with state=absent")
            if isinstance(connections, dict):
                connections = list(connections)
            if connections is None or not isinstance(connections, list):
                raise ConfigTaskError("state=absent needs connections: a list of names (or a mapping)")
            if not all(isinstance(name, str) for name in connections):
                raise ConfigTaskError("connections must be names (strings) with state=absent")
            if params.get("secrets"):
                raise ConfigTaskError("secrets cannot be combined with state=absent")
        elif connections is not None and not isinstance(connections, dict):
            raise ConfigTaskError(
                "connections must be a mapping of connection name to definition with state=present"
            )
        for option in ("config", "connections"):
            document = params.get(option)
            if isinstance(document, dict):
                misplaced = configfile.inline_psks(document, option)
                if misplaced and state == "present":
                    for _where, key in misplaced:
                        self.hide(str(key))
                    raise ConfigTaskError(
                        "%s: pre-shared keys go in the no_log option secrets ({connection: key}), not in %s, "
                        "so that they never reach logs or task output"
                        % (", ".join(where for where, _key in misplaced), option)
                    )
        return connections

    def _check_engine(self):
        if ENGINE_IMPORT_ERROR:
            found = probe_dependencies()
            message = missing_dependencies_message(found, os_family())
            if message:
                raise ConfigTaskError(message, dependencies=found)
            raise ConfigTaskError(
                "the pyike engine does not import here: %s" % ENGINE_IMPORT_ERROR.strip().splitlines()[-1]
            )
        return ConfigError, parse_config, parse_document

    def execute(self):
        connections = self._check_options()
        config_error, parse_config, parse_document = self._check_engine()
        path = self.path
        result = {"changed": False, "path": path, "reloaded": False}
        raw, existing, read_error = configfile.read_existing(path, parse_document)
        if existing is not None:
            for key in configfile.all_psks(existing):
                self.hide(key)
        if read_error and self.params.get("config") is None:
            raise ConfigTaskError(
                "cannot add or remove connections in %s, which does not parse: %s; fix it or write the whole "
                "file with the config option" % (path, read_error),
                **result,
            )
        if raw is None and self.params["state"] == "absent":
            result.update(connections=[], added=[], removed=[], modified=[])
            result["control_socket"] = self.params.get("control_socket") or configfile.control_socket_of(None)
            return result
        desired = configfile.build_document(
            existing,
            config=self.params.get("config"),
            connections=connections,
            settings=self.params.get("settings"),
            state=self.params["state"],
            secrets=self.params.get("secrets"),
        )
        for key in configfile.all_psks(desired):
            self.hide(key)
        try:
            parse_config(desired, path, base_dir=os.path.dirname(os.path.abspath(path)))
        except config_error as exc:
            problems = list(exc.messages)
            raise ConfigTaskError(
                "the new configuration for %s is invalid (%d problem%s), nothing was written:\n%s"
                % (path, len(problems), "" if len(problems) == 1 else "s", "\n".join(problems)),
                problems=problems,
                **result,
            ) from None
        content = configfile.render(desired, path)
        content_changed = existing is None or configfile.plain(existing) != desired
        mode_changed = raw is not None and configfile.file_mode(path) != configfile.FILE_MODE
        dir_action = configfile.directory_needs_fix(os.path.dirname(os.path.abspath(path)))
        socket_path = self.params.get("control_socket") or configfile.control_socket_of(
            existing if existing is not None else desired
        )
        before_masked, after_masked = configfile.masked_pair(existing, desired)
        result.update(configfile.changed_connections(existing, desired))
        result["connections"] = sorted(desired.get("connections") or {})
        result["control_socket"] = socket_path
        result["diff"] = {
            "before_header": path,
            "after_header": path,
            "before": configfile.diff_text(before_masked, path) if existing is not None else "",
            "after": configfile.diff_text(after_masked, path),
        }
        result["changed"] = bool(content_changed or mode_changed or dir_action)
        if self.check_mode or not result["changed"]:
            return result
        configfile.prepare_directory(os.path.dirname(os.path.abspath(path)))
        if content_changed:
            configfile.write_atomic(path, content)
        elif mode_changed:
            os.chmod(path, configfile.FILE_MODE)
        if content_changed and self.params["reload"]:
            self._reload(result, raw, socket_path)
        return result

    def _reload(self, result, previous, socket_path):
        try:
            answer = request(socket_path, "reload", timeout=self.params["reload_timeout"])
        except DaemonUnavailable:
            result["reload_message"] = (
                "no daemon answers on %s; it reads the file when it starts" % socket_path
            )
            return
        except DaemonRefused as exc:
            configfile.restore(self.path, previous)
            raise ConfigTaskError(
                "the daemon refused the new configuration, so %s was restored and the daemon keeps running "
                "its current configuration: %s" % (self.path, exc),
                restored=True,
                problems=[line for line in str(exc).splitlines()[1:] if line.strip()] or [str(exc)],
                **{key: value for key, value in result.items() if key not in ("changed", "diff")},
            ) from None
        except DaemonError as exc:
            raise ConfigTaskError(
                "%s was written, but the daemon did not confirm the reload: %s" % (self.path, exc),
                restored=False,
                **{key: value for key, value in result.items() if key not in ("changed", "diff")},
            ) from None
        result["reloaded"] = True
        result["reload_message"] = (
            (answer or {}).get("message", "reloaded") if isinstance(answer, dict) else "reloaded"
        )
